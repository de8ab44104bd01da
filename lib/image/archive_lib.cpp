#include "lib/image/archive_lib.h"

#include "lib/image/dyn_lib.h"

namespace petrel::internal {
namespace {

// Every libarchive function petrel calls. A new call site needs its name here.
[[maybe_unused]] constexpr const char* kFunctions[] = {
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
    "archive_filter_count",
    "archive_write_new",
    "archive_write_free",
    "archive_write_set_format_pax_restricted",
    "archive_write_set_bytes_in_last_block",
    "archive_write_open",
    "archive_write_header",
    "archive_write_data",
    "archive_write_close",
    "archive_entry_new",
    "archive_entry_free",
    "archive_entry_set_pathname",
    "archive_entry_set_filetype",
    "archive_entry_set_perm",
    "archive_entry_set_size",
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
[[maybe_unused]] constexpr int kCount = sizeof(kFunctions) / sizeof(kFunctions[0]);

#ifdef PETREL_DLOPEN_LIBARCHIVE
DynLib& Lib() {
  static DynLib lib("libarchive.so.13", "libarchive13", kFunctions, kCount, nullptr, nullptr);
  return lib;
}
#endif

}  // namespace

#ifdef PETREL_DLOPEN_LIBARCHIVE

ArchiveUse::ArchiveUse() : status_(Lib().Acquire()) {}

ArchiveUse::~ArchiveUse() {
  if (status_.ok()) Lib().Release();
}

int ArchiveIndex(const char* name) { return Lib().Index(name); }

void* ArchiveSymbolAt(int index) { return Lib().At(index); }

#else

ArchiveUse::ArchiveUse() = default;
ArchiveUse::~ArchiveUse() = default;

#endif

}  // namespace petrel::internal
