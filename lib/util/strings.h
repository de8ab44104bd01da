// Text put into one-line messages: a user's or an image's values may hold quotes,
// control characters or megabytes, and an error message must stay one short,
// printable line whatever they hold.
//
// Thread-safety: pure functions.
#ifndef PETREL_LIB_UTIL_STRINGS_H_
#define PETREL_LIB_UTIL_STRINGS_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace petrel::internal {

// How much of a value Escape and Quote show unless told otherwise: enough to
// recognise it, short enough for one line.
inline constexpr size_t kQuoteMaxBytes = 64;

// `value` with JSON-style escapes (\" \\ \n \t, and \u00XX for other control
// characters and DEL), cut after `max_bytes` bytes (at a UTF-8 character boundary)
// with "..." when longer. std::string_view::npos shows it whole.
std::string Escape(std::string_view value, size_t max_bytes = kQuoteMaxBytes);

// Escape(value, max_bytes) in double quotes.
std::string Quote(std::string_view value, size_t max_bytes = kQuoteMaxBytes);

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_STRINGS_H_
