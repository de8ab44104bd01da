// An image in a file on this machine, as its reference names it (image_store.h):
//   oci:DIR[:TAG]  oci-archive:FILE[:TAG]  docker-archive:FILE
// What turns such a reference into an ImageSource and an ImagePlan, for every reader of
// local images (the image store, the docker-archive writer).
//
// Thread-safety: pure functions, but for the file system they read.
#ifndef PETREL_LIB_IMAGE_LOCAL_IMAGE_H_
#define PETREL_LIB_IMAGE_LOCAL_IMAGE_H_

#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "lib/image/layout.h"
#include "lib/image/source.h"
#include "petrel/status.h"

namespace petrel::internal {

enum class LocalFormat { kOciDir, kOciArchive, kDockerArchive };

struct LocalRef {
  LocalFormat format = LocalFormat::kOciDir;
  std::string path;
  std::string tag;  // "" for the first manifest; always "" for docker-archive
};

// Parses `ref`. InvalidArgument without the reference itself (the caller names it):
// "unsupported image reference (use oci:DIR[:TAG], ...)", "no path in the image reference".
Result<LocalRef> ParseLocalRef(const std::string& ref);

// The stat of the file whose identity stands for the image: the archive, or the layout's
// index.json. Errors name `ref`: NotFound "<ref>: no such file or directory",
// InvalidArgument "<ref>: not a directory" / "not a regular file" / "not an OCI image
// layout (no index.json)", IOError.
Result<struct stat> StatLocalImage(const std::string& ref, const LocalRef& parsed);

// The files of the image. REQUIRES: an ArchiveUse alive while the source reads.
std::unique_ptr<ImageSource> OpenLocalImage(const LocalRef& parsed);

// The reference of the archive `path`, an OCI archive or `docker save` output told
// apart by its content (index.json or manifest.json): "oci-archive:PATH" or
// "docker-archive:PATH"; `carried` gets the names its (first) image carries: for
// docker-archive its RepoTags, for an OCI index the annotations io.containerd.image.name
// and org.opencontainers.image.ref.name (a bare tag such as "latest" names nothing).
// Errors name `path`. Loads libarchive for the call.
Result<std::string> ArchiveReference(const std::string& path, std::vector<std::string>* carried);

// Reads the image's plan from `source` (OpenLocalImage's, or one wrapping it) as its
// format says. Errors as ReadOciLayout's and ReadDockerArchive's, without the reference.
Result<ImagePlan> ReadLocalPlan(ImageSource* source, const LocalRef& parsed);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_LOCAL_IMAGE_H_
