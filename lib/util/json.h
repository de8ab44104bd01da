// JSON read from outside petrel: API bodies, image configs and manifests, specs an
// embedder or a peer hands over. nlohmann's parser keeps its own stack, so any depth
// parses, but what walks the value afterwards (dump(), copies, comparisons) recurses
// once per level: a 200 KB body of brackets would overflow the stack. So such text is
// refused past kMaxJsonDepth nested arrays and objects, before it is parsed.
//
// Thread-safety: pure functions.
#ifndef PETREL_LIB_UTIL_JSON_H_
#define PETREL_LIB_UTIL_JSON_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "petrel/status.h"

namespace petrel::internal {

// Deeper than any shape petrel reads (a spec nests 5 levels), shallow enough for any
// recursion over the value on a small thread stack.
inline constexpr int kMaxJsonDepth = 64;

// "" when `text` nests at most `max_depth` arrays and objects, else where it goes
// deeper: "nested deeper than 64 levels at line 1, column 66" (columns in bytes).
// Brackets inside strings do not count; the text need not be valid JSON.
std::string JsonNestingError(std::string_view text, int max_depth = kMaxJsonDepth);

// Parses `text` as JSON nested at most kMaxJsonDepth levels. InvalidArgument naming
// `what`: "body: invalid JSON: [json.exception.parse_error.101] parse error at line 1,
// ..." or "body: JSON nested deeper than 64 levels at line 1, column 66".
Result<nlohmann::json> ParseJson(std::string_view text, const std::string& what);

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_JSON_H_
