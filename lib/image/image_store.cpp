#include "lib/image/image_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

#include "lib/image/archive_lib.h"
#include "lib/image/curl_lib.h"
#include "lib/image/digest.h"
#include "lib/image/layer.h"
#include "lib/image/layout.h"
#include "lib/image/registry.h"
#include "lib/image/rootfs.h"
#include "lib/image/source.h"
#include "lib/spec/image_ref.h"
#include "lib/util/fs.h"

namespace petrel::internal {

namespace {

using nlohmann::json;

constexpr const char* kRefsFile = "refs.json";
constexpr std::string_view kTmpPrefix = "tmp-";

enum class RefKind { kOciDir, kOciArchive, kDockerArchive };

struct ParsedRef {
  RefKind kind = RefKind::kOciDir;
  std::string path;
  std::string tag;
};

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// "PATH:TAG" -> PATH, TAG when the part after the last ':' has no '/'; else all is PATH.
void SplitTag(const std::string& rest, ParsedRef* parsed) {
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && colon > 0 && colon + 1 < rest.size() &&
      rest.find('/', colon) == std::string::npos) {
    parsed->path = rest.substr(0, colon);
    parsed->tag = rest.substr(colon + 1);
  } else {
    parsed->path = rest;
  }
}

Result<ParsedRef> ParseRef(const std::string& ref) {
  ParsedRef parsed;
  if (StartsWith(ref, "oci:")) {
    parsed.kind = RefKind::kOciDir;
    SplitTag(ref.substr(4), &parsed);
  } else if (StartsWith(ref, "oci-archive:")) {
    parsed.kind = RefKind::kOciArchive;
    SplitTag(ref.substr(12), &parsed);
  } else if (StartsWith(ref, "docker-archive:")) {
    parsed.kind = RefKind::kDockerArchive;
    parsed.path = ref.substr(15);
  } else {
    return Status::InvalidArgument(
        "unsupported image reference (use oci:DIR[:TAG], oci-archive:FILE[:TAG] or "
        "docker-archive:FILE)");
  }
  if (parsed.path.empty()) return Status::InvalidArgument("no path in the image reference");
  return parsed;
}

bool IsImageDirName(std::string_view name) {
  return name.size() == 64 && IsSha256Digest(std::string("sha256:") + std::string(name));
}

// Fails with FailedPrecondition when `path` exists and is not an empty directory.
Status CheckMissingOrEmpty(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::OK();
    return ErrnoError(path, "stat", errno);
  }
  if (!S_ISDIR(st.st_mode)) return Status::FailedPrecondition(path + ": not a directory");
  PETREL_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDir(path));
  if (!entries.empty()) return Status::FailedPrecondition(path + ": not empty");
  return Status::OK();
}

// The stat of the file whose identity stands for the image `ref`: the archive, or the
// layout's index.
Result<struct stat> StatImageFile(const std::string& ref, const ParsedRef& parsed) {
  struct stat st;
  if (stat(parsed.path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Status::NotFound(ref + ": no such file or directory");
    }
    return ErrnoError(parsed.path, "stat", errno).WithContext(ref);
  }
  if (parsed.kind == RefKind::kOciDir) {
    if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(ref + ": not a directory");
    const std::string index = parsed.path + "/index.json";
    if (stat(index.c_str(), &st) != 0) {
      if (errno == ENOENT) {
        return Status::InvalidArgument(ref + ": not an OCI image layout (no index.json)");
      }
      return ErrnoError(index, "stat", errno).WithContext(ref);
    }
  } else if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(ref + ": not a regular file");
  }
  return st;
}

}  // namespace

Result<std::unique_ptr<ImageStore>> ImageStore::Open(const std::string& dir) {
  ImageStoreOptions options;
  options.dir = dir;
  return Open(options);
}

Result<std::unique_ptr<ImageStore>> ImageStore::Open(const ImageStoreOptions& options) {
  if (options.dir.empty()) return Status::InvalidArgument("image store: no directory");
  PETREL_RETURN_IF_ERROR(MakeDirs(options.dir, 0700));

  ImageStoreOptions with_port = options;
  if (!with_port.port) with_port.port = DefaultPort();
  std::unique_ptr<ImageStore> store(new ImageStore(with_port));
  if (!options.registry.auth_file.empty()) {
    PETREL_ASSIGN_OR_RETURN(store->credentials_, ReadRegistryAuth(options.registry.auth_file));
  }
  if (!options.registry.ca_file.empty()) {
    PETREL_RETURN_IF_ERROR(CheckPemBundle(options.registry.ca_file));
  }
  // What a crash in the middle of an unpack left behind.
  PETREL_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDir(options.dir));
  for (const DirEntry& e : entries) {
    if (StartsWith(e.name, kTmpPrefix)) {
      PETREL_RETURN_IF_ERROR(RemoveTree(options.dir + "/" + e.name));
    }
  }

  // refs.json is a cache: whatever cannot be read from it is unpacked again.
  Result<std::string> text = ReadSmallFile(options.dir + "/" + kRefsFile, kMaxJsonSize);
  if (text.ok()) {
    json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    try {
      if (j.is_object() && j.contains("refs") && j["refs"].is_array()) {
        for (const json& r : j["refs"]) {
          CachedRef c;
          c.dev = r.at("dev").get<uint64_t>();
          c.ino = r.at("ino").get<uint64_t>();
          c.size = r.at("size").get<uint64_t>();
          c.mtime_ns = r.at("mtime_ns").get<int64_t>();
          c.id = r.at("id").get<std::string>();
          if (IsSha256Digest(c.id)) store->refs_[r.at("ref").get<std::string>()] = c;
        }
      }
    } catch (const json::exception&) {
      store->refs_.clear();
    }
  }
  return store;
}

ImageStore::~ImageStore() = default;

std::string ImageStore::ImageDir(const std::string& id) const {
  return options_.dir + "/" + id.substr(7);  // REQUIRES: IsSha256Digest(id)
}

Result<Image> ImageStore::Load(const std::string& id) const {
  const std::string dir = ImageDir(id);
  Image image;
  image.id = id;
  image.rootfs = dir + "/rootfs";
  struct stat st;
  if (stat(image.rootfs.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::NotFound(id + " is not unpacked");
  }
  PETREL_ASSIGN_OR_RETURN(std::string config_json,
                          ReadSmallFile(dir + "/config.json", kMaxJsonSize));
  if (Sha256Digest(config_json) != id) return Status::Corruption(dir + "/config.json: changed");
  PETREL_ASSIGN_OR_RETURN(image.config, ParseImageConfig(config_json, nullptr));
  return image;
}

Status ImageStore::SaveRefs() const {
  json refs = json::array();
  for (const auto& [ref, c] : refs_) {
    refs.push_back(json{{"ref", ref},
                        {"dev", c.dev},
                        {"ino", c.ino},
                        {"size", c.size},
                        {"mtime_ns", c.mtime_ns},
                        {"id", c.id}});
  }
  // A reference that is not UTF-8 is stored mangled: it only misses the cache.
  const std::string text =
      json{{"refs", refs}}.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
  return WriteFileAtomic(options_.dir + "/" + kRefsFile, text);
}

Result<Image> ImageStore::Pull(const std::string& ref) {
  // A registry image has no file whose identity stands for it: once pulled, the image
  // a reference gave is used until it is garbage-collected (IfNotPresent).
  CachedRef file;
  const bool registry = !HasPathTransport(ref);
  Result<ImageReference> remote = ImageReference();
  Result<ParsedRef> parsed = ParsedRef();
  if (registry) {
    remote = ParseImageReference(ref);
    if (!remote.ok()) return remote.status().WithContext(ref);
  } else {
    parsed = ParseRef(ref);
    if (!parsed.ok()) return parsed.status().WithContext(ref);
    PETREL_ASSIGN_OR_RETURN(const struct stat st, StatImageFile(ref, *parsed));
    file.dev = st.st_dev;
    file.ino = st.st_ino;
    file.size = static_cast<uint64_t>(st.st_size);
    file.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }

  {
    // One import per reference at a time: a second Pull waits, then finds it cached.
    std::unique_lock<std::mutex> lock(mu_);
    pulled_cv_.wait(lock, [&] { return pulling_.count(ref) == 0; });
    Result<Image> cached = CachedLocked(ref, file);
    if (cached.ok()) return cached;
    pulling_.insert(ref);
  }
  Result<Image> image = [&]() -> Result<Image> {
    // Declared before the source: libarchive stays loaded until the source's readers
    // are freed.
    ArchiveUse archive;
    if (!archive.status().ok()) return archive.status().WithContext(ref);
    std::unique_ptr<CurlUse> curl;  // before the source, which uses it
    std::unique_ptr<ImageSource> source;
    if (registry) {
      curl = std::make_unique<CurlUse>();
      if (!curl->status().ok()) return curl->status().WithContext(ref);
      RegistryOptions options;
      options.store_dir = options_.dir;
      options.max_blob_bytes = options_.max_layer_bytes;
      options.insecure_registries = options_.registry.insecure;
      options.ca_file = options_.registry.ca_file;
      options.auth_file = options_.registry.auth_file;
      auto credential = credentials_.find(RegistryAuthKey(remote->domain));
      if (credential != credentials_.end()) options.credential = credential->second;
      source = RegistrySource(*remote, options);
    } else {
      source = parsed->kind == RefKind::kOciDir ? ImageSource::Dir(parsed->path)
                                                : ImageSource::Tar(parsed->path);
    }
    Result<ImagePlan> plan = parsed->kind == RefKind::kDockerArchive
                                 ? ReadDockerArchive(source.get())
                                 : ReadOciLayout(source.get(), parsed->tag);
    if (!plan.ok()) return plan.status().WithContext(ref);
    Result<Image> loaded = Load(plan->id);
    if (loaded.ok()) return loaded;
    Result<Image> unpacked = Unpack(source.get(), *plan);
    if (!unpacked.ok()) return unpacked.status().WithContext(ref);
    return unpacked;
  }();
  std::lock_guard<std::mutex> lock(mu_);
  pulling_.erase(ref);
  pulled_cv_.notify_all();
  if (!image.ok()) return image;
  file.id = image->id;
  refs_[ref] = file;
  loaded_[image->id] = *image;
  // The cache file only saves work after a restart; failing to write it fails nothing.
  (void)SaveRefs();
  return image;
}

Result<Image> ImageStore::CachedLocked(const std::string& ref, const CachedRef& file) {
  auto it = refs_.find(ref);
  if (it == refs_.end() || it->second.dev != file.dev || it->second.ino != file.ino ||
      it->second.size != file.size || it->second.mtime_ns != file.mtime_ns) {
    return Status::NotFound(ref + ": not cached");
  }
  // Loaded before in this process: its config is in memory; only check the unpacked
  // tree is still there.
  auto memo = loaded_.find(it->second.id);
  struct stat rootfs;
  if (memo != loaded_.end() && stat(memo->second.rootfs.c_str(), &rootfs) == 0 &&
      S_ISDIR(rootfs.st_mode)) {
    return memo->second;
  }
  Result<Image> image = Load(it->second.id);
  if (image.ok()) {
    loaded_[image->id] = *image;
    return image;
  }
  loaded_.erase(it->second.id);
  return Status::NotFound(ref + ": unpacked image is gone or damaged");  // read it again
}

Result<Image> ImageStore::Unpack(ImageSource* source, const ImagePlan& plan) {
  std::string tmp = options_.dir + "/" + std::string(kTmpPrefix) + "XXXXXX";
  if (mkdtemp(tmp.data()) == nullptr) return ErrnoError(options_.dir, "mkdtemp", errno);
  Status s = [&]() -> Status {
    const std::string rootfs = tmp + "/rootfs";
    PETREL_RETURN_IF_ERROR(MakeDirs(rootfs, 0755));
    UniqueFd root(open(rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root.valid()) return ErrnoError(rootfs, "open", errno);
    for (const LayerRef& layer : plan.layers) {
      const std::string what = "layer " + (layer.digest.empty() ? layer.diff_id : layer.digest);
      LayerDigests got;
      Status applied = source->StreamFile(layer.name, [&](ByteSource* bytes) {
        return ApplyLayer(bytes, root.get(), options_.max_layer_bytes, &got);
      });
      // A blob that is not what the manifest names is reported as such, however it failed.
      if (!layer.digest.empty() && !got.blob.empty() && got.blob != layer.digest) {
        return Status::InvalidArgument(what + ": digest mismatch (content is " + got.blob + ")");
      }
      if (!applied.ok()) return applied.WithContext(what);
      if (layer.size >= 0 && got.blob_size != static_cast<uint64_t>(layer.size)) {
        return Status::InvalidArgument(what + ": size is " + std::to_string(got.blob_size) +
                                       " bytes, descriptor says " + std::to_string(layer.size));
      }
      if (got.diff_id != layer.diff_id) {
        return Status::InvalidArgument(what + ": uncompressed content is " + got.diff_id +
                                       ", the config says " + layer.diff_id);
      }
    }
    PETREL_RETURN_IF_ERROR(WriteFileAtomic(tmp + "/config.json", plan.config_json));
    const std::string dir = ImageDir(plan.id);
    if (rename(tmp.c_str(), dir.c_str()) != 0) {
      if (errno != EEXIST && errno != ENOTEMPTY) return ErrnoError(dir, "rename", errno);
      // Another reference to the same image was unpacked meanwhile: keep that one
      // (containers may already use it). Else it is a damaged copy (Load refused it).
      if (Load(plan.id).ok()) return RemoveTree(tmp);
      PETREL_RETURN_IF_ERROR(RemoveTree(dir));
      if (rename(tmp.c_str(), dir.c_str()) != 0) return ErrnoError(dir, "rename", errno);
    }
    return Status::OK();
  }();
  if (!s.ok()) {
    (void)RemoveTree(tmp);  // best effort; Open() removes what is left
    return s;
  }
  unpack_count_.fetch_add(1);
  Image image;
  image.id = plan.id;
  image.rootfs = ImageDir(plan.id) + "/rootfs";
  image.config = plan.config;
  return image;
}

Result<ImageStore::RootfsKind> ImageStore::PrepareRootfs(const Image& image,
                                                         const std::string& target,
                                                         const std::string& scratch_dir,
                                                         std::string* mount_options) {
  struct stat lower;
  if (stat(image.rootfs.c_str(), &lower) != 0 || !S_ISDIR(lower.st_mode)) {
    return Status::NotFound("image " + image.id + " is not unpacked (" + image.rootfs + ")");
  }
  PETREL_RETURN_IF_ERROR(CheckMissingOrEmpty(target));
  PETREL_RETURN_IF_ERROR(CheckMissingOrEmpty(scratch_dir));
  Status s = [&]() -> Status {
    PETREL_RETURN_IF_ERROR(MakeDirs(target, 0755));
    PETREL_RETURN_IF_ERROR(MakeDirs(scratch_dir, 0700));
    return Status::OK();
  }();

  if (s.ok() && options_.allow_overlay) {
    Port& port = *options_.port;
    const std::string upper = scratch_dir + "/upper";
    const std::string work = scratch_dir + "/work";
    const std::string data = port.OverlayMountData(image.rootfs, upper, work);
    s = [&]() -> Status {
      PETREL_RETURN_IF_ERROR(MakeDirs(upper, 0755));
      PETREL_RETURN_IF_ERROR(MakeDirs(work, 0700));
      // The mount's root takes its attributes from the upper directory.
      if (chown(upper.c_str(), lower.st_uid, lower.st_gid) != 0 && geteuid() == 0) {
        return ErrnoError(upper, "chown", errno);
      }
      if (chmod(upper.c_str(), lower.st_mode & 07777) != 0) {
        return ErrnoError(upper, "chmod", errno);
      }
      return Status::OK();
    }();
    if (s.ok() && mount_options != nullptr) {
      // Deferred: the first time, one trial mount (and unmount) here says whether the
      // kernel takes this overlay at all; after that the caller mounts.
      bool overlay = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (overlay_works_ < 0) {
          overlay_works_ = port.MountOverlay(target, data).ok() ? 1 : 0;
          if (overlay_works_ == 1) s = port.UnmountAll(target);
        }
        overlay = overlay_works_ == 1;
      }
      if (s.ok() && overlay) {
        *mount_options = data;
        return RootfsKind::kOverlay;
      }
    } else if (s.ok() && port.MountOverlay(target, data).ok()) {
      return RootfsKind::kOverlay;
    }
    // Refused (no overlayfs, no right to mount, unsuitable file system): copy instead.
    if (s.ok()) s = RemoveTree(upper);
    if (s.ok()) s = RemoveTree(work);
  }
  if (s.ok()) s = CopyTree(image.rootfs, target).WithContext("copy image " + image.id);
  if (s.ok()) return RootfsKind::kCopy;
  (void)ReleaseRootfs(target, scratch_dir);
  return s;
}

Status ImageStore::ReleaseRootfs(const std::string& target, const std::string& scratch_dir) {
  PETREL_RETURN_IF_ERROR(options_.port->UnmountAll(target));
  Status s = RemoveTree(target);
  Status scratch = RemoveTree(scratch_dir);
  return s.ok() ? scratch : s;
}

Status ImageStore::GarbageCollect(const std::set<std::string>& keep) {
  PETREL_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDir(options_.dir));
  Status first;
  for (const DirEntry& e : entries) {
    if (!IsImageDirName(e.name) || keep.count("sha256:" + e.name) != 0) continue;
    Status s = RemoveTree(options_.dir + "/" + e.name);
    if (!s.ok() && first.ok()) first = s;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = loaded_.begin(); it != loaded_.end();) {
    it = keep.count(it->first) == 0 ? loaded_.erase(it) : std::next(it);
  }
  bool changed = false;
  for (auto it = refs_.begin(); it != refs_.end();) {
    if (keep.count(it->second.id) == 0) {
      it = refs_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  if (changed) {
    Status s = SaveRefs();
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

}  // namespace petrel::internal
