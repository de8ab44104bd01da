#include "lib/oci/runc_words.h"

namespace petrel::internal {

std::string RuncNotFoundWords(std::string_view message, std::string_view binary) {
  const size_t at = message.find("exec: \"" + std::string(binary) + "\"");
  if (at == std::string_view::npos ||
      (message.find("not found", at) == std::string_view::npos &&
       message.find("no such file or directory", at) == std::string_view::npos)) {
    return "";
  }
  std::string said(message.substr(at));
  while (!said.empty() && (said.back() == '\n' || said.back() == '\r')) said.pop_back();
  const std::string_view tail = ": unknown";
  if (said.size() > tail.size() &&
      said.compare(said.size() - tail.size(), tail.size(), tail) == 0) {
    said.resize(said.size() - tail.size());
  }
  return said;
}

}  // namespace petrel::internal
