// The ImageBackend of petrel's own image store: each call is the store's.
#include "runtime-adapters/crun/image_backend.h"

#include <sys/stat.h>

#include <utility>

namespace petrel::internal {
namespace {

class StoreImageBackend final : public ImageBackend {
 public:
  explicit StoreImageBackend(std::unique_ptr<ImageStore> store) : store_(std::move(store)) {}

  Result<Image> Pull(const std::string& ref, const PullOptions& options) override {
    return store_->Pull(ref, options);
  }
  Result<Image> ImportArchive(const std::string& path, std::vector<std::string>* names) override {
    return store_->ImportArchive(path, names);
  }
  Result<std::vector<StoredImage>> List() override { return store_->List(); }
  Result<std::string> Resolve(const std::string& name) override { return store_->Resolve(name); }
  Result<int64_t> Remove(const std::string& id) override { return store_->Remove(id); }
  Result<int64_t> RemoveUnusedBlobs() override { return store_->RemoveUnusedBlobs(); }
  Result<std::vector<StoredImage>> ShrinkTo(int64_t max_bytes, const std::set<std::string>& keep,
                                            int64_t* left) override {
    return store_->ShrinkTo(max_bytes, keep, left);
  }

  bool Has(const Image& image) override {
    struct stat st;
    return stat(image.rootfs.c_str(), &st) == 0;
  }

  // The root at dir/rootfs; an overlay is mounted by the driver at Run, in the
  // runtime's own mount namespace.
  Result<ContainerRoot> PrepareRoot(const Image& image, const std::string& id,
                                    const std::string& dir) override {
    (void)id;
    ContainerRoot root;
    PETREL_ASSIGN_OR_RETURN(
        const ImageStore::RootfsKind kind,
        store_->PrepareRootfs(image, dir + "/rootfs", dir + "/scratch", &root.overlay));
    root.kind = kind == ImageStore::RootfsKind::kOverlay ? "overlay" : "copy";
    root.image_dirs = {image.rootfs};
    return root;
  }

  Status ReleaseRoot(const std::string& id, const std::string& dir) override {
    (void)id;
    return store_->ReleaseRootfs(dir + "/rootfs", dir + "/scratch");
  }

  // Every root is in its container's directory.
  Status ReleaseRootsBut(const std::function<bool(const std::string& id)>& present) override {
    (void)present;
    return Status::OK();
  }

 private:
  const std::unique_ptr<ImageStore> store_;
};

}  // namespace

Result<std::unique_ptr<ImageBackend>> NewStoreImageBackend(const ImageStoreOptions& options) {
  PETREL_ASSIGN_OR_RETURN(std::unique_ptr<ImageStore> store, ImageStore::Open(options));
  return std::unique_ptr<ImageBackend>(std::make_unique<StoreImageBackend>(std::move(store)));
}

}  // namespace petrel::internal
