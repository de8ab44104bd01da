// Text put into one-line messages: a user's or an image's values may hold quotes,
// control characters or megabytes, and an error message must stay one short,
// printable line whatever they hold.
//
// Thread-safety: pure functions.
#ifndef PETREL_LIB_UTIL_STRINGS_H_
#define PETREL_LIB_UTIL_STRINGS_H_

#include <cstddef>
#include <cstdint>
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

// Writes `v` in decimal into `out`, zero-padded to `width` digits (0: as short as
// possible), NUL-terminated, and returns the number of digits. `out` holds at least
// max(width, 20) + 1 bytes. ASYNC-SIGNAL-SAFE: for code between fork() and exec().
size_t FormatDecimal(uint64_t v, char* out, size_t width = 0);

// True for a name safe as one path component and in a command line: 1 to `max_bytes`
// of A-Z a-z 0-9 '_' '-' '.', not starting with '.' (so never "." or "..").
bool IsPlainName(std::string_view name, size_t max_bytes);

// The index of the first byte of `name` that is none of A-Z a-z 0-9 '_' '-' '.', or npos.
size_t FirstNotPlain(std::string_view name);

// True for 1 or more bytes of printable ASCII without spaces: what may go as it is into
// an HTTP header or a form (a token, a password).
bool IsPrintableToken(std::string_view s);

// `text` with all but RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~)
// %-escaped: for a URL's path segment, a query value or a form field.
std::string UrlEscape(std::string_view text);

// %XX-decodes `in`; with plus_is_space, '+' becomes ' ' (query strings). False on a
// malformed escape.
bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out);

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_STRINGS_H_
