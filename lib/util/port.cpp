#include "petrel/port.h"

#include <string>

#include "lib/util/strings.h"

namespace petrel {

const char* CgroupLayoutName(CgroupLayout layout) {
  switch (layout) {
    case CgroupLayout::kV1: return "v1";
    case CgroupLayout::kV2: return "v2";
    case CgroupLayout::kHybrid: return "hybrid";
  }
  return "?";
}

Status CheckCgroupParent(std::string_view parent) {
  const std::string quoted = "cgroup parent " + internal::Quote(parent) + ": ";
  if (parent.empty()) return Status::InvalidArgument(quoted + "must not be empty");
  if (parent.front() == '/') {
    return Status::InvalidArgument(quoted + "must be relative to the cgroup root (e.g. petrel)");
  }
  size_t start = 0;
  while (start <= parent.size()) {
    size_t end = parent.find('/', start);
    if (end == std::string_view::npos) end = parent.size();
    const std::string_view name = parent.substr(start, end - start);
    if (name.empty()) return Status::InvalidArgument(quoted + "has an empty name between '/'s");
    if (name == "." || name == "..") {
      return Status::InvalidArgument(quoted + "\"" + std::string(name) + "\" is not a name");
    }
    if (name.size() > 255) return Status::InvalidArgument(quoted + "a name is over 255 bytes");
    for (char c : name) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '@' || c == '-';
      if (!ok) {
        return Status::InvalidArgument(quoted + "'" + internal::Escape(std::string_view(&c, 1)) +
                                       "' is not allowed (names are of A-Z a-z 0-9 _ . @ -)");
      }
    }
    start = end + 1;
  }
  return Status::OK();
}

}  // namespace petrel
