#include "lib/image/archive_lib.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace petrel::internal {
namespace {

// Every libarchive function petrel calls. A new call site needs its name here.
constexpr const char* kFunctions[] = {
    "archive_errno",
    "archive_error_string",
    "archive_set_error",
    "archive_read_new",
    "archive_read_free",
    "archive_read_open",
    "archive_read_open_filename",
    "archive_read_next_header",
    "archive_read_data",
    "archive_read_data_block",
    "archive_read_support_format_tar",
    "archive_read_support_format_empty",
    "archive_read_support_format_raw",
    "archive_read_support_filter_gzip",
    "archive_read_support_filter_zstd",
    "archive_read_support_filter_xz",
    "archive_read_support_filter_bzip2",
    "archive_entry_filetype",
    "archive_entry_uid",
    "archive_entry_gid",
    "archive_entry_mode",
    "archive_entry_size",
    "archive_entry_size_is_set",
    "archive_entry_symlink",
    "archive_entry_symlink_utf8",
    "archive_entry_hardlink",
    "archive_entry_pathname",
    "archive_entry_pathname_utf8",
    "archive_entry_mtime",
    "archive_entry_mtime_nsec",
    "archive_entry_mtime_is_set",
    "archive_entry_xattr_reset",
    "archive_entry_xattr_next",
};
constexpr int kCount = sizeof(kFunctions) / sizeof(kFunctions[0]);
constexpr char kSoname[] = "libarchive.so.13";

#ifdef PETREL_DLOPEN_LIBARCHIVE
std::mutex mu;
int users = 0;
void* handle = nullptr;
#endif
void* table[kCount];

}  // namespace

#ifdef PETREL_DLOPEN_LIBARCHIVE

ArchiveUse::ArchiveUse() {
  std::lock_guard<std::mutex> lock(mu);
  if (users == 0) {
    handle = dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* err = dlerror();
      status_ =
          Status::IOError(std::string("cannot load ") + kSoname +
                          " (package libarchive13): " + (err != nullptr ? err : "unknown error"));
      return;
    }
    for (int i = 0; i < kCount; i++) {
      table[i] = dlsym(handle, kFunctions[i]);
      if (table[i] == nullptr) {
        status_ = Status::IOError(std::string(kSoname) + " has no " + kFunctions[i]);
        dlclose(handle);
        handle = nullptr;
        return;
      }
    }
  }
  users++;
}

ArchiveUse::~ArchiveUse() {
  if (!status_.ok()) return;
  std::lock_guard<std::mutex> lock(mu);
  if (--users == 0) {
    dlclose(handle);
    handle = nullptr;
    std::memset(table, 0, sizeof(table));
  }
}

#else

ArchiveUse::ArchiveUse() = default;
ArchiveUse::~ArchiveUse() = default;

#endif

int ArchiveIndex(const char* name) {
  for (int i = 0; i < kCount; i++) {
    if (std::strcmp(kFunctions[i], name) == 0) return i;
  }
  std::abort();  // a call site whose function is missing from kFunctions
}

void* ArchiveSymbolAt(int index) {
  void* p = table[index];
  if (p == nullptr) std::abort();  // called without an ArchiveUse
  return p;
}

}  // namespace petrel::internal
