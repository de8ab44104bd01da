// ImageStore: the OCI images of the daemonless runtimes (crun, runc), unpacked once into
// a directory, and the root filesystems of containers made from them.
//
// An image is named by a reference to a file on this machine:
//   oci:DIR[:TAG]              an OCI image layout directory
//   oci-archive:FILE[:TAG]     a tar of an OCI image layout
//   docker-archive:FILE        `docker save` output (its first image)
// TAG picks the manifest whose "org.opencontainers.image.ref.name" annotation is TAG;
// without it the first manifest of index.json is used. Or by a registry reference as
// Docker writes it ("busybox", "ghcr.io/org/app:1.2", "127.0.0.1:5000/app@sha256:..",
// lib/spec/image_ref.h), pulled over the OCI distribution API (lib/image/registry.h).
// An image index or manifest list (multi-platform) is resolved to the manifest for this
// machine's os, architecture and variant.
//
// Every blob is checked against its digest (manifest, config, compressed layer) and
// every layer's uncompressed tar against the config's rootfs.diff_ids, for all three
// formats. Layers are untrusted; see lib/image/layer.h for what is refused. Nothing is
// half-unpacked: an image is built in <dir>/tmp-* and renamed into place, and Open()
// removes what a crash left behind.
//
// Layout of `dir`:
//   <hex>/rootfs       the flattened root filesystem of image sha256:<hex>
//   <hex>/config.json  its config blob, as stored in the image
//   refs.json          which file (path, size, mtime, inode) gave which image, so a
//                      second Pull of an unchanged file is one stat(), also after a restart;
//                      for a registry reference (kept in its canonical form, so "busybox"
//                      and "docker.io/library/busybox:latest" are one), the blobs it needs
//   <hex>/             its mtime is when a Pull last gave the image (least recently used
//                      images go first when the store is over its size limit)
//   blobs/sha256/<hex> blobs pulled from registries, each complete and checked against
//                      its digest; shared between images, never fetched twice
//   partial/sha256/<hex> a blob being downloaded, or left so by a broken link or a
//                      crash: the next pull goes on from its end (registry.h)
//   tmp-*              being unpacked or downloaded (or left by a crash)
//
// Thread-safety: every method may be called from any thread, at the same time. Pulls
// of different references unpack side by side; a Pull of a reference another thread
// is pulling waits for it and then finds the image cached. One store per directory
// (the state dir's lock ensures it).
#ifndef PETREL_LIB_IMAGE_IMAGE_STORE_H_
#define PETREL_LIB_IMAGE_IMAGE_STORE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "lib/image/registry_auth.h"
#include "lib/oci/image_config.h"
#include "lib/util/workers.h"
#include "petrel/port.h"
#include "petrel/runtime.h"
#include "petrel/runtimes.h"
#include "petrel/status.h"

namespace petrel::internal {

class ImageSource;
class ProgressReporter;  // pull_progress.h
struct ImageReference;   // lib/spec/image_ref.h
struct ImagePlan;

struct Image {
  std::string id;      // "sha256:<hex>": the digest of the image's config blob
  std::string rootfs;  // absolute path of the unpacked, flattened root filesystem;
                       // read-only by convention: containers get their own (PrepareRootfs)
  ImageConfig config;
};

// An image in the store, as List sees it.
struct StoredImage {
  std::string id;                 // "sha256:<hex>"
  std::vector<std::string> refs;  // the references that name it (canonical for registries)
  int64_t size_bytes = 0;         // its unpacked root and the blobs its references need
  int64_t created_ms = 0;         // when it was unpacked (Unix time, ms)
  int64_t used_ms = 0;            // when a Pull last gave it (Unix time, ms)
};

struct ImageStoreOptions {
  std::string dir;  // e.g. <state_dir>/images; created 0700 if missing
  // false: PrepareRootfs always copies, never mounts overlayfs (for kernels or file
  // systems where overlayfs misbehaves, and for tests of the copy path).
  bool allow_overlay = true;
  // A layer that decompresses to more than this many bytes is refused (a small blob
  // can hold a decompression bomb): the pull fails, naming the layer.
  uint64_t max_layer_bytes = uint64_t{4} << 30;
  // Credentials (a Docker config.json, read by Open: a bad file or entry fails it),
  // registries reached over plain HTTP, and CAs trusted besides the system store.
  RegistryAccess registry;
  // Mounts and unmounts the overlays. Defaults to DefaultPort().
  std::shared_ptr<Port> port;
};

// Checks `access` (downloads at once, its CA bundle) and reads its credentials file,
// as an image store does when it opens (ImageStore::Open says the errors).
Result<RegistryAuth> OpenRegistryAccess(const RegistryAccess& access);

// A registry's image `ref` as a source whose downloads go into `store`'s directory
// (registry.h), with `credentials` (OpenRegistryAccess's) for its registry, `slots` the
// limit on downloads at once, `options.cancelled`, its layers' bytes told to
// `progress`, and `durable` (RegistryOptions::durable: may be empty) saying which
// cached blobs need no second hash. REQUIRES: a CurlUse alive as long as the source;
// `progress` outlives it.
Result<std::unique_ptr<ImageSource>> OpenRegistrySource(
    const ImageStoreOptions& store, const RegistryAuth& credentials, const ImageReference& ref,
    Semaphore* slots, const PullOptions& options, ProgressReporter* progress,
    std::function<bool(const std::string& digest)> durable);

// Downloads every layer of registry image `plan` (sizes by digest) from `source` but
// those in `have`, telling `progress` the phase "downloading", the layers and their
// bytes: every layer is downloaded before the first is applied, so "downloading" and
// "unpacking" are two phases and a broken link fails before any unpacking. Errors name
// the layer.
Status DownloadLayers(ImageSource* source, const ImagePlan& plan,
                      const std::map<std::string, int64_t>& sizes,
                      const std::set<std::string>& have, ProgressReporter* progress);

class ImageStore {
 public:
  // Opens (creating it 0700 if missing) the store in `options.dir` and removes the
  // temporary directories a crash left there. A missing or unreadable refs.json only
  // means the next Pulls unpack again. A bad options.registry.auth_file or ca_file fails
  // it, naming the file (and the entry: "/x/auth.json: auths[\"ghcr.io\"]: ...").
  static Result<std::unique_ptr<ImageStore>> Open(const ImageStoreOptions& options);
  static Result<std::unique_ptr<ImageStore>> Open(const std::string& dir);

  ~ImageStore();
  ImageStore(const ImageStore&) = delete;
  ImageStore& operator=(const ImageStore&) = delete;

  // Makes the image `ref` available unpacked. A second Pull of the same unchanged file
  // (same path, size, mtime and inode) reads neither the file nor the layers; an image
  // whose config digest is already unpacked is not unpacked again either. A registry
  // reference once pulled is not asked for again (Kubernetes' IfNotPresent).
  // Errors, each naming `ref` first:
  //   NotFound         the file or directory does not exist, or no manifest has TAG
  //   InvalidArgument  a bad reference or image: what and where, one line, e.g.
  //     "oci-archive:/x/evil.tar: layer sha256:ab..: entry \"../../etc/passwd\": path escapes the
  //     image root"
  //   NotSupported     a digest algorithm other than sha256, a Docker schema 1 manifest
  //   PermissionDenied the registry wants credentials and has none ("registry R wants
  //                    credentials and none are configured ..."), refused them
  //                    ("registry R refused the credentials of U (401 from URL)"), or
  //                    they would go over plain HTTP to a host that is not loopback
  //   Unavailable      the registry could not be reached, or answered 5xx, 3 times
  //   IOError          the machine failed: path and strerror
  // `options.policy` (PullPolicy, petrel/runtime.h): IfNotPresent as above; Never gives
  // only an image the store has for `ref`, else FailedPrecondition "<ref>: not present,
  // and imagePullPolicy is Never"; Always resolves a registry reference by tag again
  // (its manifest fetched anew) and pulls what changed (a reference by digest and a
  // local file are as IfNotPresent). `options.progress` hears the phases "resolving",
  // "downloading" (registry layers; those already in the store count as done) and
  // "unpacking", and the bytes in between at most 4 times a second, on this thread and
  // without the store's lock held.
  Result<Image> Pull(const std::string& ref, const PullOptions& options = PullOptions());

  // The images unpacked in the store, oldest first.
  Result<std::vector<StoredImage>> List();
  // The id of the image that `name` names: a reference it came by (a registry one in any
  // spelling) or its id. NotFound "<name>: no such image".
  Result<std::string> Resolve(const std::string& name);
  // Removes image `id`, forgets every reference to it, and removes the blobs that only
  // those references needed: the bytes freed. FailedPrecondition while a reference to
  // it is being pulled. REQUIRES: no container uses the image (the caller checks).
  Result<int64_t> Remove(const std::string& id);
  // Removes the blobs no reference needs (left by failed pulls), and partial downloads:
  // the bytes freed. Does nothing while a pull runs (its blobs are not named by a
  // reference yet).
  Result<int64_t> RemoveUnusedBlobs();
  // What the store takes on disk: unpacked images and blobs.
  Result<int64_t> Size();
  // While the store takes more than `max_bytes`: removes the blobs no reference needs,
  // then the least recently used images not in `keep`, one by one. Returns the images
  // removed (size_bytes: what each removal freed) and, in *left, what the store takes
  // after. REQUIRES: `keep` holds every image a container uses.
  Result<std::vector<StoredImage>> ShrinkTo(int64_t max_bytes, const std::set<std::string>& keep,
                                            int64_t* left);
  // Names image `id` also by registry reference `name` (an image imported from an
  // archive that carries that name), so that Pull(name) finds it without a registry.
  // InvalidArgument for a bad reference; NotFound when `id` is not unpacked.
  Status Tag(const std::string& name, const std::string& id);

  // Imports the archive `path`, an OCI archive or `docker save` output told apart by
  // its content (index.json or manifest.json), and Tags its (first) image with the names
  // it carries: docker-archive's RepoTags; an OCI index's annotations
  // io.containerd.image.name and org.opencontainers.image.ref.name (a bare tag such as
  // "latest" names nothing). `names` gets the names given, in canonical form.
  // Errors name `path`; a name that is not a reference is an error too.
  Result<Image> ImportArchive(const std::string& path, std::vector<std::string>* names);

  // How a container's root filesystem was made.
  enum class RootfsKind { kOverlay, kCopy };

  // Gives a container its own root filesystem at `target` (missing or an empty
  // directory; created 0755): an overlayfs mount whose lower layer is `image.rootfs` and
  // whose upper and work directories are made in `scratch_dir` (missing or empty;
  // created 0700), or, where the kernel refuses the mount (or the store was opened with
  // allow_overlay = false), a full copy of the image keeping modes, owners, times,
  // symbolic and hard links and the xattrs security.capability and user.*.
  // Writes to `target` never reach the image or another container.
  // On failure nothing is left mounted and `target` and `scratch_dir` are removed.
  // With `mount_options`, an overlay is not mounted here: *mount_options gets the
  // options of mount("overlay", target, "overlay", 0, options) for the caller to mount
  // in the mount namespace the container starts from, so the host's mount table does
  // not grow by a mount per container (each of which the kernel would propagate into
  // every container that is a mount slave of the host). A trial mount, once per
  // store, decides between overlay and copy.
  // REQUIRES: `image` came from Pull on this store and was not garbage-collected since.
  Result<RootfsKind> PrepareRootfs(const Image& image, const std::string& target,
                                   const std::string& scratch_dir,
                                   std::string* mount_options = nullptr);

  // Undoes PrepareRootfs: unmounts `target` (detaching it when it is busy) and removes
  // `target` and `scratch_dir` with everything in them, never following a symbolic link
  // and never entering another file system mounted below them. OK when already gone.
  // REQUIRES: the container using `target` is gone.
  Status ReleaseRootfs(const std::string& target, const std::string& scratch_dir);

  // How many images this object has unpacked (for tests and metrics; cached Pulls and
  // already-unpacked images do not count).
  int64_t unpack_count() const { return unpack_count_.load(); }

 private:
  struct CachedRef {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0;
    std::string id;
    std::vector<std::string> blobs;  // in blobs/, for registry references
  };

  explicit ImageStore(const ImageStoreOptions& options)
      : options_(options), download_slots_(options.registry.max_downloads) {}
  // The image `ref` when its file is still `file` and it is unpacked; else NotFound.
  // REQUIRES: mu_ held.
  Result<Image> CachedLocked(const std::string& ref, const CachedRef& file);
  // Unpacked image `id`, from memory when it was loaded before. REQUIRES: mu_ held.
  Result<Image> LoadedLocked(const std::string& id);
  std::string BlobPath(const std::string& digest) const;
  // Whether a reference in refs_ names blob `digest`: it was written before the syncfs
  // that committed that reference's image (Unpack; Pull's own when it unpacked
  // nothing), so it is whole on disk.
  bool BlobCommitted(const std::string& digest);
  // Whether BlobCommitted holds for each of `digests`.
  bool AllCommitted(const std::set<std::string>& digests);
  // Applies the layers of `plan` into a new image directory.
  Result<Image> Unpack(ImageSource* source, const ImagePlan& plan);
  Result<Image> Load(const std::string& id) const;
  // What unpacked image `id` takes (cached: an unpacked image never changes).
  int64_t ImageBytes(const std::string& id);
  // Marks image `id` as used now (its directory's mtime).
  void Touch(const std::string& id) const;
  Status SaveRefs() const;
  std::string ImageDir(const std::string& id) const;

  const ImageStoreOptions options_;
  RegistryAuth credentials_;  // from options_.registry.auth_file, set by Open
  Semaphore download_slots_;  // options_.registry.max_downloads, for every pull
  std::atomic<int64_t> unpack_count_{0};

  std::mutex mu_;  // guards everything below
  std::condition_variable pulled_cv_;
  std::set<std::string> pulling_;               // references a Pull is importing now
  std::map<std::string, CachedRef> refs_;       // by reference as given to Pull
  std::map<std::string, Image> loaded_;         // images Load()ed in this process, by id
  std::map<std::string, int64_t> image_bytes_;  // ImageBytes, by id
  int overlay_works_ = -1;  // deferred overlays: -1 not tried yet, 0 refused, 1 mounts
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_IMAGE_STORE_H_
