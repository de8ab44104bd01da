// A shared library loaded with dlopen() only while something uses it, with a table of
// the functions petrel calls in it: how libarchive (archive_lib.h) and libcurl
// (curl_lib.h) stay out of an idle daemon's memory.
//
// Thread-safety: every method may be called from any thread.
#ifndef PETREL_LIB_IMAGE_DYN_LIB_H_
#define PETREL_LIB_IMAGE_DYN_LIB_H_

#include <mutex>
#include <vector>

#include "petrel/status.h"

namespace petrel::internal {

class DynLib {
 public:
  // `soname` is dlopen()ed, `package` names the Debian package in errors, `functions`
  // (`count` of them, static storage) are looked up at load. `on_load` runs after the
  // first Acquire loaded the library and `on_unload` before the last Release unloads
  // it (a library's global init and cleanup); either may be null.
  DynLib(const char* soname, const char* package, const char* const* functions, int count,
         Status (*on_load)(), void (*on_unload)());
  DynLib(const DynLib&) = delete;
  DynLib& operator=(const DynLib&) = delete;

  // Loads the library unless loaded, and counts a user. IOError naming the library,
  // its package and dlerror() when it cannot be loaded or lacks a function; the user
  // is then not counted.
  Status Acquire();
  // Counts a user off; the last one unloads the library. REQUIRES: a successful Acquire.
  void Release();

  // The index of `name` in the table; aborts when `name` is not in it (a call site
  // whose function was not listed).
  int Index(const char* name) const;
  // The address of function `index`. Aborts when the library is not loaded (a call
  // without an Acquire).
  void* At(int index) const;

 private:
  const char* const soname_;
  const char* const package_;
  const char* const* const functions_;
  const int count_;
  Status (*const on_load_)();
  void (*const on_unload_)();
  std::mutex mu_;  // guards users_, handle_ and the writes to table_
  int users_ = 0;
  void* handle_ = nullptr;
  std::vector<void*> table_;  // read without mu_ by callers that hold a use
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_DYN_LIB_H_
