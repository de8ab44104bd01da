// libarchive, loaded only while an image is being imported.
//
// A device imports an image once and then runs it for months; libarchive and the
// libraries it drags in (libxml2, ICU, nettle, lzma, zstd, lz4, bzip2: about 1.5 MiB
// resident) would otherwise sit in petrel's memory all that time. With
// PETREL_DLOPEN_LIBARCHIVE (the default) libarchive is dlopen()ed by an ArchiveUse
// and dlclose()d when the last one ends; without it (static firmware builds) it is
// linked as usual and ArchiveUse does nothing.
//
// Every call into libarchive goes through PETREL_ARCHIVE(name)(args...).
#ifndef PETREL_LIB_IMAGE_ARCHIVE_LIB_H_
#define PETREL_LIB_IMAGE_ARCHIVE_LIB_H_

#include <archive.h>
#include <archive_entry.h>

#include "petrel/status.h"

namespace petrel::internal {

// Holds libarchive loaded while alive. REQUIRES: status().ok() before any
// PETREL_ARCHIVE call, and every libarchive object freed before the last ArchiveUse
// ends. Thread-safe.
class ArchiveUse {
 public:
  ArchiveUse();
  ~ArchiveUse();
  ArchiveUse(const ArchiveUse&) = delete;
  ArchiveUse& operator=(const ArchiveUse&) = delete;
  // IOError naming the library and dlerror() when it could not be loaded.
  const Status& status() const { return status_; }

 private:
  Status status_;
};

// The index of a libarchive function in the loaded table; the address at an index.
int ArchiveIndex(const char* name);
void* ArchiveSymbolAt(int index);

}  // namespace petrel::internal

#ifdef PETREL_DLOPEN_LIBARCHIVE
#define PETREL_ARCHIVE(f)                                                    \
  (reinterpret_cast<decltype(&::f)>(::petrel::internal::ArchiveSymbolAt([] { \
    static const int index = ::petrel::internal::ArchiveIndex(#f);           \
    return index;                                                            \
  }())))
#else
#define PETREL_ARCHIVE(f) ::f
#endif

#endif  // PETREL_LIB_IMAGE_ARCHIVE_LIB_H_
