#include "lib/util/json.h"

#include <exception>

namespace petrel::internal {

std::string JsonNestingError(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  size_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < text.size(); i++) {
    const char c = text[i];
    if (c == '\n') {
      line++;
      line_start = i + 1;
    }
    if (in_string) {
      if (c == '\\') {
        i++;  // an escaped quote does not end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return "nested deeper than " + std::to_string(max_depth) + " levels at line " +
               std::to_string(line) + ", column " + std::to_string(i - line_start + 1);
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      depth--;
    }
  }
  return "";
}

Result<nlohmann::json> ParseJson(std::string_view text, const std::string& what) {
  if (std::string deep = JsonNestingError(text); !deep.empty()) {
    return Status::InvalidArgument(what + ": JSON " + deep);
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(what + ": invalid JSON: " + e.what());
  }
}

}  // namespace petrel::internal
