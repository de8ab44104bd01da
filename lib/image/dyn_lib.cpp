#include "lib/image/dyn_lib.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace petrel::internal {

DynLib::DynLib(const char* soname, const char* package, const char* const* functions, int count,
               Status (*on_load)(), void (*on_unload)())
    : soname_(soname),
      package_(package),
      functions_(functions),
      count_(count),
      on_load_(on_load),
      on_unload_(on_unload),
      table_(static_cast<size_t>(count), nullptr) {}

Status DynLib::Acquire() {
  std::lock_guard<std::mutex> lock(mu_);
  if (users_ == 0) {
    handle_ = dlopen(soname_, RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) {
      const char* err = dlerror();
      return Status::IOError(std::string("cannot load ") + soname_ + " (package " + package_ +
                             "): " + (err != nullptr ? err : "unknown error"));
    }
    Status s;
    for (int i = 0; i < count_ && s.ok(); i++) {
      table_[i] = dlsym(handle_, functions_[i]);
      if (table_[i] == nullptr)
        s = Status::IOError(std::string(soname_) + " has no " + functions_[i]);
    }
    if (s.ok() && on_load_ != nullptr) s = on_load_();
    if (!s.ok()) {
      std::fill(table_.begin(), table_.end(), nullptr);
      dlclose(handle_);
      handle_ = nullptr;
      return s;
    }
  }
  users_++;
  return Status::OK();
}

void DynLib::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--users_ > 0) return;
  if (on_unload_ != nullptr) on_unload_();
  dlclose(handle_);
  handle_ = nullptr;
  std::fill(table_.begin(), table_.end(), nullptr);
}

int DynLib::Index(const char* name) const {
  for (int i = 0; i < count_; i++) {
    if (std::strcmp(functions_[i], name) == 0) return i;
  }
  std::abort();  // a call site whose function is missing from the table
}

void* DynLib::At(int index) const {
  void* p = table_[static_cast<size_t>(index)];
  if (p == nullptr) std::abort();  // called without a use
  return p;
}

}  // namespace petrel::internal
