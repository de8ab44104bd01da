// Where an image's files come from: an OCI image layout or `docker save` output, either
// as a directory or packed in a tar file. Files are streamed, never loaded whole, except
// the small JSON documents (index, manifests, configs) through ReadFile.
//
// Thread-safety: none; a source belongs to one owner.
#ifndef PETREL_LIB_IMAGE_SOURCE_H_
#define PETREL_LIB_IMAGE_SOURCE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "lib/image/archive_lib.h"
#include "petrel/status.h"

namespace petrel::internal {

// A stream of bytes, read once from start to end.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to `size` bytes into `buf`; 0 at the end of the stream.
  virtual Result<size_t> Read(void* buf, size_t size) = 0;
  // How many bytes the whole stream holds, or -1 when that is not known beforehand.
  virtual int64_t Size() const { return -1; }
};

// The files of one image, named relative to the layout's root ("index.json",
// "blobs/sha256/<hex>", "manifest.json").
class ImageSource {
 public:
  virtual ~ImageSource() = default;

  // The files below the directory `path`. REQUIRES: names passed to this source are
  // relative and free of ".." (the layout code only asks for fixed names and validated
  // digests).
  static std::unique_ptr<ImageSource> Dir(const std::string& path);
  // The entries of the tar file `path` (optionally gzip-compressed). Each StreamFile is
  // one pass over the tar, seeking over the data of the entries it does not want. An
  // entry that is a symbolic or hard link to another entry is followed, within the tar.
  static std::unique_ptr<ImageSource> Tar(const std::string& path);

  // Calls `fn` once with the bytes of file `name` and returns what it returns.
  // InvalidArgument when there is no such file.
  virtual Status StreamFile(const std::string& name,
                            const std::function<Status(ByteSource*)>& fn) = 0;

  // The whole of file `name`; InvalidArgument when it is missing or larger than
  // `max_size` bytes.
  Result<std::string> ReadFile(const std::string& name, size_t max_size);
};

// Frees a libarchive reader.
struct ArchiveReadFree {
  void operator()(struct archive* a) const { PETREL_ARCHIVE(archive_read_free)(a); }
};
using ArchiveReader = std::unique_ptr<struct archive, ArchiveReadFree>;

// The Status for a failed libarchive call on `a`: IOError for failures of the system
// (read errors, no memory), InvalidArgument for bad data. "<what>: <libarchive message>".
Status ArchiveError(struct archive* a, const std::string& what);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_SOURCE_H_
