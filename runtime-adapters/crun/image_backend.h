// ImageBackend: where the bundle runtime (crun_runtime.cpp) keeps its images and gets a
// container's root filesystem from. Two implementations: petrel's own image store
// (lib/image/image_store.h: images unpacked and flattened into a directory, a root an
// overlay on it or a copy), NewStoreImageBackend, for crun and runc; and containerd's
// content, image and snapshot stores (runtime-adapters/containerd/image_backend.cpp),
// for the containerd adapter, whose roots are containerd snapshots.
//
// Images are named and answered as ImageStore names and answers them (its header has
// the references, the errors and the pull policies); an image's id is the digest of its
// config blob in both.
//
// Thread-safety: every method may be called from any thread, at the same time.
#ifndef PETREL_RUNTIME_ADAPTERS_CRUN_IMAGE_BACKEND_H_
#define PETREL_RUNTIME_ADAPTERS_CRUN_IMAGE_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "lib/image/image_store.h"
#include "petrel/runtime.h"
#include "petrel/status.h"

namespace petrel::internal {

// A container's root filesystem as the backend made it, recorded in the container's
// meta.json and given to the driver (Bundle).
struct ContainerRoot {
  std::string kind;  // "overlay", "copy" (ImageStore) or "snapshot" (containerd)
  // ImageStore's overlay mount data, for the driver to mount at Run; "" when the root
  // is a plain directory.
  std::string overlay;
  // containerd: the key of the container's active snapshot; "" for none.
  std::string snapshot;
  // The directories that hold the image's files below the container's own, topmost
  // first: where the runtime reads the image's /etc/passwd (not recorded).
  std::vector<std::string> image_dirs;
};

class ImageBackend {
 public:
  virtual ~ImageBackend() = default;

  // As ImageStore::Pull, ImportArchive, List, Resolve, Remove, RemoveUnusedBlobs and
  // ShrinkTo. An Image's rootfs is "" where the backend has no flattened root.
  virtual Result<Image> Pull(const std::string& ref, const PullOptions& options) = 0;
  virtual Result<Image> ImportArchive(const std::string& path, std::vector<std::string>* names) = 0;
  virtual Result<std::vector<StoredImage>> List() = 0;
  virtual Result<std::string> Resolve(const std::string& name) = 0;
  virtual Result<int64_t> Remove(const std::string& id) = 0;
  virtual Result<int64_t> RemoveUnusedBlobs() = 0;
  virtual Result<std::vector<StoredImage>> ShrinkTo(int64_t max_bytes,
                                                    const std::set<std::string>& keep,
                                                    int64_t* left) = 0;

  // Whether `image`, which a Pull gave, is still there (a removal may come in between).
  virtual bool Has(const Image& image) = 0;

  // Gives container `id`, whose directory is `dir`, its own root filesystem from
  // `image` (at dir/rootfs, or wherever the backend keeps it). On failure nothing is
  // left of it.
  virtual Result<ContainerRoot> PrepareRoot(const Image& image, const std::string& id,
                                            const std::string& dir) = 0;

  // Undoes PrepareRoot for container `id` in `dir`: OK when there is nothing (left) to
  // undo. REQUIRES: the container's process is gone.
  virtual Status ReleaseRoot(const std::string& id, const std::string& dir) = 0;

  // Undoes PrepareRoot for each container whose root the backend keeps apart from the
  // container's directory and for which `present` says no: what a container whose
  // directory went without petrel (deleted by hand) left behind. OK when none is left.
  virtual Status ReleaseRootsBut(const std::function<bool(const std::string& id)>& present) = 0;
};

// The backend of petrel's own image store, made by ImageStore::Open(options).
Result<std::unique_ptr<ImageBackend>> NewStoreImageBackend(const ImageStoreOptions& options);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CRUN_IMAGE_BACKEND_H_
