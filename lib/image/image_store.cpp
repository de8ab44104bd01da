#include "lib/image/image_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

#include "lib/image/archive_lib.h"
#include "lib/image/curl_lib.h"
#include "lib/image/digest.h"
#include "lib/image/layer.h"
#include "lib/image/layout.h"
#include "lib/image/local_image.h"
#include "lib/image/pull_progress.h"
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

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The digests of the blobs among `files`, names a pull read from its source
// ("blobs/sha256/<hex>", "index.json", ...).
std::set<std::string> BlobsOf(const std::set<std::string>& files) {
  constexpr std::string_view kBlob = "blobs/sha256/";
  std::set<std::string> digests;
  for (const std::string& name : files) {
    if (StartsWith(name, kBlob)) digests.insert("sha256:" + name.substr(kBlob.size()));
  }
  return digests;
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

// The blocks `path` and everything below it take, a hard-linked file counted once;
// symbolic links are not followed.
int64_t DiskUsage(const std::string& path) {
  std::set<std::pair<dev_t, ino_t>> seen;
  int64_t total = 0;
  auto add = [&](const std::string& p) {
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) return;
    if (st.st_nlink > 1 && !S_ISDIR(st.st_mode) && !seen.insert({st.st_dev, st.st_ino}).second) {
      return;
    }
    total += static_cast<int64_t>(st.st_blocks) * 512;
  };
  add(path);
  std::error_code ec;
  namespace fs = std::filesystem;
  for (fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    add(it->path().string());
  }
  return total;
}

// Size of the regular file `path`; 0 when there is none.
int64_t FileBytes(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  return static_cast<int64_t>(st.st_blocks) * 512;
}

int64_t MtimeMs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

// Notes the files a pull reads from its source: which blobs it needed.
class RecordingSource : public ImageSource {
 public:
  RecordingSource(ImageSource* inner, std::set<std::string>* names)
      : inner_(inner), names_(names) {}
  Status StreamFile(const std::string& name,
                    const std::function<Status(ByteSource*)>& fn) override {
    names_->insert(name);
    return inner_->StreamFile(name, fn);
  }

 private:
  ImageSource* inner_;
  std::set<std::string>* names_;
};

}  // namespace

Result<std::unique_ptr<ImageStore>> ImageStore::Open(const std::string& dir) {
  ImageStoreOptions options;
  options.dir = dir;
  return Open(options);
}

Result<RegistryAuth> OpenRegistryAccess(const RegistryAccess& access) {
  if (access.max_downloads < 1 || access.max_downloads > RegistryAccess::kMaxDownloadsLimit) {
    return Status::InvalidArgument("image store: downloads at once must be 1.." +
                                   std::to_string(RegistryAccess::kMaxDownloadsLimit) + ", not " +
                                   std::to_string(access.max_downloads));
  }
  RegistryAuth credentials;
  if (!access.auth_file.empty()) {
    PETREL_ASSIGN_OR_RETURN(credentials, ReadRegistryAuth(access.auth_file));
  }
  if (!access.ca_file.empty()) PETREL_RETURN_IF_ERROR(CheckPemBundle(access.ca_file));
  return credentials;
}

Result<std::unique_ptr<ImageSource>> OpenRegistrySource(
    const ImageStoreOptions& store, const RegistryAuth& credentials, const ImageReference& ref,
    Semaphore* slots, const PullOptions& options, ProgressReporter* progress,
    std::function<bool(const std::string& digest)> durable) {
  RegistryOptions ro;
  ro.store_dir = store.dir;
  ro.max_blob_bytes = store.max_layer_bytes;
  ro.insecure_registries = store.registry.insecure;
  ro.ca_file = store.registry.ca_file;
  ro.auth_file = store.registry.auth_file;
  ro.download_slots = slots;
  ro.cancelled = options.cancelled;
  ro.durable = std::move(durable);
  PETREL_ASSIGN_OR_RETURN(ro.credential, CredentialFor(credentials, RegistryAuthKey(ref.domain)));
  ro.on_bytes = [progress](const std::string& digest, uint64_t bytes) {
    progress->Bytes(digest, bytes);
  };
  return RegistrySource(ref, ro);
}

Status DownloadLayers(ImageSource* source, const ImagePlan& plan,
                      const std::map<std::string, int64_t>& sizes,
                      const std::set<std::string>& have, ProgressReporter* progress) {
  progress->Layers(sizes, have);
  progress->Phase("downloading");
  for (const LayerRef& layer : plan.layers) {
    if (have.count(layer.digest) != 0) continue;
    Status fetched = source->StreamFile(layer.name, [](ByteSource*) { return Status::OK(); });
    if (!fetched.ok()) return fetched.WithContext("layer " + layer.digest);
    progress->LayerDone(layer.digest);
  }
  return Status::OK();
}

Result<std::unique_ptr<ImageStore>> ImageStore::Open(const ImageStoreOptions& options) {
  if (options.dir.empty()) return Status::InvalidArgument("image store: no directory");
  PETREL_ASSIGN_OR_RETURN(RegistryAuth credentials, OpenRegistryAccess(options.registry));
  PETREL_RETURN_IF_ERROR(MakeDurableDirs(options.dir, 0700));
  PETREL_RETURN_IF_ERROR(MakeRegistryDirs(options.dir));

  ImageStoreOptions with_port = options;
  if (!with_port.port) with_port.port = DefaultPort();
  std::unique_ptr<ImageStore> store(new ImageStore(with_port));
  store->credentials_ = std::move(credentials);
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
          if (r.contains("blobs") && r["blobs"].is_array()) {
            for (const json& b : r["blobs"]) {
              if (b.is_string() && IsSha256Digest(b.get<std::string>())) {
                c.blobs.push_back(b.get<std::string>());
              }
            }
          }
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
                        {"id", c.id},
                        {"blobs", c.blobs}});
  }
  // A reference that is not UTF-8 is stored mangled: it only misses the cache.
  const std::string text =
      json{{"refs", refs}}.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
  return WriteFileAtomic(options_.dir + "/" + kRefsFile, text);
}

Result<Image> ImageStore::Pull(const std::string& given, const PullOptions& options) {
  // A registry image has no file whose identity stands for it: once pulled, the image
  // a reference gave is used until it is removed (IfNotPresent), or until its tag is
  // asked again (Always).
  CachedRef file;
  std::string ref = given;  // the key in refs_: a registry reference in canonical form
  const bool registry = !HasPathTransport(given);
  Result<ImageReference> remote = ImageReference();
  Result<LocalRef> parsed = LocalRef();
  if (registry) {
    remote = ParseImageReference(given);
    if (!remote.ok()) return remote.status().WithContext(given);
    ref = remote->Canonical();
  } else {
    parsed = ParseLocalRef(given);
    if (!parsed.ok()) return parsed.status().WithContext(given);
  }
  ProgressReporter progress(options.progress);
  if (options.policy == PullPolicy::kNever) {
    std::unique_lock<std::mutex> lock(mu_);
    pulled_cv_.wait(lock, [&] { return pulling_.count(ref) == 0; });
    auto it = refs_.find(ref);
    Result<Image> had =
        it == refs_.end() ? Result<Image>(Status::NotFound(ref)) : LoadedLocked(it->second.id);
    if (!had.ok()) {
      return Status::FailedPrecondition(given + ": not present, and imagePullPolicy is Never");
    }
    Touch(had->id);
    return had;
  }
  if (!registry) {
    PETREL_ASSIGN_OR_RETURN(const struct stat st, StatLocalImage(given, *parsed));
    file.dev = st.st_dev;
    file.ino = st.st_ino;
    file.size = static_cast<uint64_t>(st.st_size);
    file.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  // Always: a tag is resolved again; a digest never moves.
  const bool recheck = registry && options.policy == PullPolicy::kAlways && remote->digest.empty();

  {
    // One import per reference at a time: a second Pull waits, then finds it cached.
    std::unique_lock<std::mutex> lock(mu_);
    pulled_cv_.wait(lock, [&] { return pulling_.count(ref) == 0; });
    if (!recheck) {
      Result<Image> cached = CachedLocked(ref, file);
      if (cached.ok()) {
        Touch(cached->id);
        return cached;
      }
    }
    pulling_.insert(ref);
  }
  progress.Phase("resolving");
  std::set<std::string> read;  // the files the pull read from its source
  std::vector<std::string> layer_blobs;
  Result<Image> image = [&]() -> Result<Image> {
    // Declared before the source: libarchive stays loaded until the source's readers
    // are freed. A registry pull loads it only to unpack, after its downloads.
    std::optional<ArchiveUse> archive;
    if (!registry) {
      archive.emplace();
      if (!archive->status().ok()) return archive->status().WithContext(given);
    }
    std::unique_ptr<CurlUse> curl;  // before the source, which uses it
    std::unique_ptr<ImageSource> source;
    if (registry) {
      curl = std::make_unique<CurlUse>();
      if (!curl->status().ok()) return curl->status().WithContext(given);
      Result<std::unique_ptr<ImageSource>> opened =
          OpenRegistrySource(options_, credentials_, *remote, &download_slots_, options, &progress,
                             [this](const std::string& digest) { return BlobCommitted(digest); });
      if (!opened.ok()) return opened.status().WithContext(given);
      source = std::move(*opened);
    } else {
      source = OpenLocalImage(*parsed);
    }
    RecordingSource recording(source.get(), &read);
    // A registry's plan is read as an OCI layout's (parsed is the default LocalRef).
    Result<ImagePlan> plan = ReadLocalPlan(&recording, *parsed);
    if (!plan.ok()) return plan.status().WithContext(given);
    Result<Image> loaded = Load(plan->id);
    if (registry) {
      // Every layer is downloaded before the first is applied: "downloading" and
      // "unpacking" are two phases, and a broken link fails before any unpacking.
      std::map<std::string, int64_t> sizes;
      std::set<std::string> have;
      for (const LayerRef& layer : plan->layers) {
        sizes[layer.digest] = layer.size;
        layer_blobs.push_back(layer.digest);
        if (loaded.ok() || BlobCommitted(layer.digest)) have.insert(layer.digest);
      }
      Status fetched = DownloadLayers(&recording, *plan, sizes, have, &progress);
      if (!fetched.ok()) return fetched.WithContext(given);
    }
    if (loaded.ok()) {
      // A blob this pull read that no reference names yet (a manifest or config it
      // wrote, or one a failed pull left unsynced) is on disk before one does
      // (BlobCommitted); Unpack's syncfs does it otherwise.
      if (registry && !AllCommitted(BlobsOf(read))) {
        PETREL_RETURN_IF_ERROR(SyncFileSystem(options_.dir));
      }
      return loaded;
    }
    if (!archive) {
      archive.emplace();
      if (!archive->status().ok()) return archive->status().WithContext(given);
    }
    progress.Phase("unpacking");
    Result<Image> unpacked = Unpack(&recording, *plan);
    if (!unpacked.ok()) return unpacked.status().WithContext(given);
    return unpacked;
  }();
  std::lock_guard<std::mutex> lock(mu_);
  pulling_.erase(ref);
  pulled_cv_.notify_all();
  if (!image.ok()) return image;
  file.id = image->id;
  if (registry) {
    // The blobs this reference needs: what the pull read, and its layers, when kept.
    std::set<std::string> blobs = BlobsOf(read);
    blobs.insert(layer_blobs.begin(), layer_blobs.end());
    for (const std::string& b : blobs) {
      if (IsSha256Digest(b) && FileBytes(BlobPath(b)) > 0) file.blobs.push_back(b);
    }
  }
  refs_[ref] = file;
  loaded_[image->id] = *image;
  Touch(image->id);
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
  Result<Image> image = LoadedLocked(it->second.id);
  if (image.ok()) return image;
  return Status::NotFound(ref + ": unpacked image is gone or damaged");  // read it again
}

Result<Image> ImageStore::LoadedLocked(const std::string& id) {
  // Loaded before in this process: its config is in memory; only check the unpacked
  // tree is still there.
  auto memo = loaded_.find(id);
  struct stat rootfs;
  if (memo != loaded_.end() && stat(memo->second.rootfs.c_str(), &rootfs) == 0 &&
      S_ISDIR(rootfs.st_mode)) {
    return memo->second;
  }
  Result<Image> image = Load(id);
  if (image.ok()) {
    loaded_[image->id] = *image;
    return image;
  }
  loaded_.erase(id);
  return image.status();
}

std::string ImageStore::BlobPath(const std::string& digest) const {
  return options_.dir + "/blobs/sha256/" + digest.substr(7);  // REQUIRES: IsSha256Digest
}

bool ImageStore::AllCommitted(const std::set<std::string>& digests) {
  for (const std::string& d : digests) {
    if (!BlobCommitted(d)) return false;
  }
  return true;
}

bool ImageStore::BlobCommitted(const std::string& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [ref, c] : refs_) {
    if (std::find(c.blobs.begin(), c.blobs.end(), digest) != c.blobs.end()) return true;
  }
  return false;
}

void ImageStore::Touch(const std::string& id) const {
  // Best effort: a failure only makes the image look less recently used.
  (void)utimensat(AT_FDCWD, ImageDir(id).c_str(), nullptr, 0);
}

int64_t ImageStore::ImageBytes(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = image_bytes_.find(id);
    if (it != image_bytes_.end()) return it->second;
  }
  const int64_t bytes = DiskUsage(ImageDir(id));  // outside the lock: a walk of a tree
  std::lock_guard<std::mutex> lock(mu_);
  image_bytes_[id] = bytes;
  return bytes;
}

Result<std::vector<StoredImage>> ImageStore::List() {
  PETREL_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDir(options_.dir));
  std::vector<StoredImage> out;
  for (const DirEntry& e : entries) {
    if (!IsImageDirName(e.name)) continue;
    const std::string dir = options_.dir + "/" + e.name;
    struct stat config, used;
    if (stat((dir + "/config.json").c_str(), &config) != 0 || stat(dir.c_str(), &used) != 0) {
      continue;  // being removed
    }
    StoredImage image;
    image.id = "sha256:" + e.name;
    image.created_ms = MtimeMs(config);
    image.used_ms = MtimeMs(used);
    out.push_back(std::move(image));
  }
  for (StoredImage& image : out) {
    image.size_bytes = ImageBytes(image.id);
    std::set<std::string> blobs;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [ref, c] : refs_) {
        if (c.id != image.id) continue;
        image.refs.push_back(ref);
        blobs.insert(c.blobs.begin(), c.blobs.end());
      }
    }
    for (const std::string& b : blobs) image.size_bytes += FileBytes(BlobPath(b));
  }
  std::stable_sort(out.begin(), out.end(), [](const StoredImage& a, const StoredImage& b) {
    return a.created_ms < b.created_ms;
  });
  return out;
}

Result<std::string> ImageStore::Resolve(const std::string& name) {
  std::string key = name;
  if (!HasPathTransport(name)) {
    if (Result<ImageReference> r = ParseImageReference(name); r.ok()) key = r->Canonical();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = refs_.find(key);
    if (it != refs_.end() && Load(it->second.id).ok()) return it->second.id;
  }
  if (IsSha256Digest(name) && Load(name).ok()) return name;
  return Status::NotFound(name + ": no such image");
}

Result<int64_t> ImageStore::Remove(const std::string& id) {
  if (!IsSha256Digest(id)) return Status::InvalidArgument(id + ": not an image id");
  std::string doomed = options_.dir + "/" + std::string(kTmpPrefix) + "rm-XXXXXX";
  int64_t freed = 0;
  std::set<std::string> blobs;  // the blobs only the removed references needed
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [ref, c] : refs_) {
      if (c.id == id && pulling_.count(ref) != 0) {
        return Status::FailedPrecondition(id + ": being pulled as " + ref);
      }
    }
    for (auto it = refs_.begin(); it != refs_.end();) {
      if (it->second.id == id) {
        blobs.insert(it->second.blobs.begin(), it->second.blobs.end());
        it = refs_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& [ref, c] : refs_) {
      for (const std::string& b : c.blobs) blobs.erase(b);
    }
    // A pull that runs may be about to read a blob no reference names yet.
    if (!pulling_.empty()) blobs.clear();
    PETREL_RETURN_IF_ERROR(SaveRefs());
    loaded_.erase(id);
    auto bytes = image_bytes_.find(id);
    if (bytes != image_bytes_.end()) {
      freed += bytes->second;
      image_bytes_.erase(bytes);
    } else {
      freed += DiskUsage(ImageDir(id));
    }
    // Out of the way at once (a tmp- name, which Open removes after a crash), removed
    // below without the lock.
    if (mkdtemp(doomed.data()) == nullptr) return ErrnoError(options_.dir, "mkdtemp", errno);
    if (rename(ImageDir(id).c_str(), (doomed + "/image").c_str()) != 0 && errno != ENOENT) {
      return ErrnoError(ImageDir(id), "rename", errno);
    }
    for (const std::string& b : blobs) {
      const int64_t bytes_of = FileBytes(BlobPath(b));
      if (unlink(BlobPath(b).c_str()) == 0) freed += bytes_of;
    }
  }
  PETREL_RETURN_IF_ERROR(RemoveTree(doomed));
  return freed;
}

Result<int64_t> ImageStore::RemoveUnusedBlobs() {
  const std::string dir = options_.dir + "/blobs/sha256";
  Result<std::vector<DirEntry>> entries = ListDir(dir);
  if (!entries.ok()) return entries.status().IsNotFound() ? Result<int64_t>(0) : entries.status();
  std::lock_guard<std::mutex> lock(mu_);
  if (!pulling_.empty()) return 0;
  std::set<std::string> needed;
  for (const auto& [ref, c] : refs_) needed.insert(c.blobs.begin(), c.blobs.end());
  int64_t freed = 0;
  for (const DirEntry& e : *entries) {
    const std::string digest = "sha256:" + e.name;
    if (!IsSha256Digest(digest) || needed.count(digest) != 0) continue;
    const int64_t bytes = FileBytes(BlobPath(digest));
    if (unlink(BlobPath(digest).c_str()) == 0) freed += bytes;
  }
  const std::string partial = options_.dir + "/partial/sha256";
  Result<std::vector<DirEntry>> partials = ListDir(partial);
  for (const DirEntry& e : partials.ok() ? *partials : std::vector<DirEntry>()) {
    const int64_t bytes = FileBytes(partial + "/" + e.name);
    if (unlink((partial + "/" + e.name).c_str()) == 0) freed += bytes;
  }
  return freed;
}

Result<int64_t> ImageStore::Size() {
  PETREL_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDir(options_.dir));
  int64_t total = 0;
  for (const DirEntry& e : entries) {
    if (IsImageDirName(e.name)) total += ImageBytes("sha256:" + e.name);
  }
  Result<std::vector<DirEntry>> blobs = ListDir(options_.dir + "/blobs/sha256");
  if (blobs.ok()) {
    for (const DirEntry& e : *blobs) total += FileBytes(options_.dir + "/blobs/sha256/" + e.name);
  }
  return total;
}

Result<std::vector<StoredImage>> ImageStore::ShrinkTo(int64_t max_bytes,
                                                      const std::set<std::string>& keep,
                                                      int64_t* left) {
  std::vector<StoredImage> removed;
  PETREL_ASSIGN_OR_RETURN(int64_t size, Size());
  if (size > max_bytes) {
    PETREL_ASSIGN_OR_RETURN(const int64_t blobs, RemoveUnusedBlobs());
    size -= blobs;
  }
  if (size > max_bytes) {
    PETREL_ASSIGN_OR_RETURN(std::vector<StoredImage> images, List());
    std::stable_sort(images.begin(), images.end(), [](const StoredImage& a, const StoredImage& b) {
      return a.used_ms < b.used_ms;
    });
    for (StoredImage& image : images) {
      if (size <= max_bytes) break;
      if (keep.count(image.id) != 0) continue;
      PETREL_ASSIGN_OR_RETURN(image.size_bytes, Remove(image.id));
      size -= image.size_bytes;
      removed.push_back(std::move(image));
    }
  }
  if (left != nullptr) *left = size;
  return removed;
}

Status ImageStore::Tag(const std::string& name, const std::string& id) {
  Result<ImageReference> r = ParseImageReference(name);
  if (!r.ok() || HasPathTransport(name)) {
    return Status::InvalidArgument(name + ": not a registry reference" +
                                   (r.ok() ? "" : " (" + r.status().message() + ")"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  PETREL_RETURN_IF_ERROR(LoadedLocked(id).status());
  CachedRef c;
  c.id = id;
  refs_[r->Canonical()] = c;
  return SaveRefs();
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
    // The tree is on disk before its name is: after a power cut an image that is there
    // is whole, never one whose files are empty or missing (a container of it would
    // fail for ever). One syncfs for the whole tree, not an fsync per file; it also
    // makes the pull's blobs durable, which the cache took unsynced (registry.h).
    PETREL_RETURN_IF_ERROR(SyncFileSystem(tmp));
    const std::string dir = ImageDir(plan.id);
    if (rename(tmp.c_str(), dir.c_str()) != 0) {
      if (errno != EEXIST && errno != ENOTEMPTY) return ErrnoError(dir, "rename", errno);
      // Another reference to the same image was unpacked meanwhile: keep that one
      // (containers may already use it). Else it is a damaged copy (Load refused it).
      if (Load(plan.id).ok()) return RemoveTree(tmp);
      PETREL_RETURN_IF_ERROR(RemoveTree(dir));
      if (rename(tmp.c_str(), dir.c_str()) != 0) return ErrnoError(dir, "rename", errno);
    }
    return SyncDir(Dirname(dir));
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

Result<Image> ImageStore::ImportArchive(const std::string& path, std::vector<std::string>* names) {
  std::vector<std::string> carried;
  PETREL_ASSIGN_OR_RETURN(const std::string ref, ArchiveReference(path, &carried));
  PETREL_ASSIGN_OR_RETURN(Image image, Pull(ref));
  for (const std::string& name : carried) {
    PETREL_RETURN_IF_ERROR(Tag(name, image.id).WithContext(path));
    if (names != nullptr) names->push_back(ParseImageReference(name)->Canonical());
  }
  return image;
}

}  // namespace petrel::internal
