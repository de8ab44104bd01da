// The containerd adapter's images in containerd's own stores (issue 16): the
// ImageBackend (runtime-adapters/crun/image_backend.h) whose images are in containerd's
// content store, named in its Images service and unpacked into its snapshotter
// (images.h), and whose containers' roots are active snapshots on them.
//
// An image is read as petrel reads it (lib/image: an OCI layout, `docker save` output,
// or a registry's image through petrel's puller, each blob checked against its digest)
// and imported by ContainerdImportImage. Its containerd image is named by the reference
// as Pull was given it (a registry reference in canonical form), with these labels:
//   petrel.image.id     the digest of its config: petrel's image id
//   petrel.image.size   the bytes of its blobs (layers and config) in the content store
//   petrel.image.file   for a local file: "<dev>:<ino>:<size>:<mtime ns>" of the file
//                       that gave it, so that a second Pull of the unchanged file is one
//                       Get (ImageStore's rule)
// A registry's blobs are downloaded into <store dir>/blobs (partial downloads in
// partial/ resume, as ImageStore's do), imported, and deleted there once containerd has
// them: on disk they are kept once, by containerd. Each image's config is also kept in
// <store dir>/configs/<hex>.json (checked against its digest when read) for what a
// container is made from; an image whose config file is missing is imported again.
//
// A container's root is the active snapshot "petrel-<id>" on the image's top layer,
// made under a lease of its own ("petrel-root-<id>", no expiry, labelled petrel.root
// with a hash of the store's directory: whose it is), which holds it from containerd's garbage
// collection from Create until ReleaseRoot; the container record the driver makes at Run names it
// too. The runtime's start releases the roots whose containers' directories are gone. Its
// /etc/passwd and /etc/group are read from the snapshot's lower directories, top first.
//
// Removal deletes the image's names; containerd's garbage collection then takes the
// blobs and snapshots nothing else holds. Sizes are those of the blobs: a snapshot's
// unpacked bytes are not counted, and "used" is when the image was named.
//
// Thread-safety: every method may be called from any thread; pulls of one reference
// wait for each other.
#ifndef PETREL_RUNTIME_ADAPTERS_CONTAINERD_IMAGE_BACKEND_H_
#define PETREL_RUNTIME_ADAPTERS_CONTAINERD_IMAGE_BACKEND_H_

#include <chrono>
#include <memory>
#include <string>

#include "lib/image/image_store.h"
#include "petrel/status.h"
#include "runtime-adapters/crun/image_backend.h"

namespace petrel::internal {

struct ContainerdImageBackendOptions {
  std::string socket_path;  // containerd's gRPC socket
  std::string ns;           // containerd's namespace of the runtime
  std::string snapshotter = "overlayfs";
  // Its dir (made 0700; blobs/, partial/, configs/), registries and limits.
  ImageStoreOptions store;
  std::chrono::milliseconds call_timeout{30000};  // per gRPC call
};

// The label of a containerd image that holds petrel's image id.
inline constexpr char kContainerdImageIdLabel[] = "petrel.image.id";

// The key of container `id`'s root snapshot, and the lease that holds it.
std::string ContainerdRootSnapshot(const std::string& id);
std::string ContainerdRootLease(const std::string& id);
// The label petrel.root of the roots' leases of the backend whose store is `store_dir`.
inline constexpr char kContainerdRootLeaseLabel[] = "petrel.root";
std::string ContainerdRootOwner(const std::string& store_dir);

Result<std::unique_ptr<ImageBackend>> NewContainerdImageBackend(
    ContainerdImageBackendOptions options);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CONTAINERD_IMAGE_BACKEND_H_
