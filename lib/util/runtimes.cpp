#include "petrel/runtimes.h"

#include <algorithm>

namespace petrel {

Status RuntimeRegistry::Register(RuntimeEntry entry) {
  const std::string& name = entry.name;
  bool valid = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
  if (!valid) {
    return Status::InvalidArgument("runtime name \"" + name +
                                   "\": want letters, digits, '-' and '_'");
  }
  if (!entry.factory) return Status::InvalidArgument("runtime " + name + ": no factory");
  if (Find(name).ok()) {
    return Status::AlreadyExists("runtime " + name + " is registered already");
  }
  entries_.push_back(std::move(entry));
  return Status::OK();
}

Result<const RuntimeEntry*> RuntimeRegistry::Find(std::string_view name) const {
  for (const RuntimeEntry& e : entries_) {
    if (e.name == name) return &e;
  }
  const std::string quoted = "runtime \"" + std::string(name) + "\"";
  if (entries_.empty()) return Status::NotFound(quoted + ": no runtime is registered");
  return Status::NotFound(quoted + " is not " + Names());
}

std::string RuntimeRegistry::Names(std::string_view last) const {
  std::string out;
  for (size_t i = 0; i < entries_.size(); i++) {
    if (i > 0) out += i + 1 == entries_.size() ? last : std::string_view(", ");
    out += entries_[i].name;
  }
  return out;
}

Result<std::shared_ptr<ContainerRuntime>> RuntimeRegistry::Create(
    std::string_view name, const RuntimeConfig& config) const {
  PETREL_ASSIGN_OR_RETURN(const RuntimeEntry* entry, Find(name));
  return entry->factory(config);
}

}  // namespace petrel
