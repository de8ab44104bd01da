#include "runtime-adapters/containerd/image_backend.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/image/archive_lib.h"
#include "lib/image/curl_lib.h"
#include "lib/image/layout.h"
#include "lib/image/local_image.h"
#include "lib/image/pull_progress.h"
#include "lib/image/registry.h"
#include "lib/spec/image_ref.h"
#include "lib/util/fs.h"
#include "lib/util/sha256.h"
#include "lib/util/strings.h"
#include "lib/util/workers.h"
#include "runtime-adapters/containerd/images.h"
#include "runtime-adapters/containerd/services.h"

namespace petrel::internal {
namespace {

constexpr char kSizeLabel[] = "petrel.image.size";
constexpr char kFileLabel[] = "petrel.image.file";
constexpr char kConfigsDir[] = "configs";
constexpr char kTmpPrefix[] = "tmp-";

int64_t ToMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// What a local file's identity is: its stat, as the label petrel.image.file keeps it.
std::string FileIdentity(const struct stat& st) {
  const int64_t mtime_ns =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(mtime_ns);
}

// The bytes of image `image`'s blobs, as its label says; 0 without one.
int64_t SizeOf(const ContainerdImage& image) {
  auto size = image.labels.find(kSizeLabel);
  if (size == image.labels.end()) return 0;
  return static_cast<int64_t>(std::strtoll(size->second.c_str(), nullptr, 10));
}

// The bytes of the regular files in `dir` (not below), removing them when `remove`.
int64_t FilesIn(const std::string& dir, bool remove) {
  Result<std::vector<DirEntry>> entries = ListDir(dir);
  if (!entries.ok()) return 0;
  int64_t bytes = 0;
  for (const DirEntry& e : *entries) {
    const std::string path = dir + "/" + e.name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    bytes += static_cast<int64_t>(st.st_blocks) * 512;
    if (remove) unlink(path.c_str());
  }
  return bytes;
}

// The directories of `mounts` below the snapshot's own, topmost first: an overlay's
// lowerdir option ("lowerdir=/a:/b"), a bind mount's source.
std::vector<std::string> LowerDirs(const std::vector<ContainerdMount>& mounts) {
  std::vector<std::string> dirs;
  for (const ContainerdMount& m : mounts) {
    if (m.type == "bind") dirs.push_back(m.source);
    for (const std::string& option : m.options) {
      constexpr std::string_view kLower = "lowerdir=";
      if (option.rfind(kLower, 0) != 0) continue;
      for (size_t at = kLower.size(); at <= option.size();) {
        size_t colon = option.find(':', at);
        if (colon == std::string::npos) colon = option.size();
        if (colon > at) dirs.push_back(option.substr(at, colon - at));
        at = colon + 1;
      }
    }
  }
  return dirs;
}

class ContainerdImageBackend final : public ImageBackend {
 public:
  ContainerdImageBackend(ContainerdImageBackendOptions options, RegistryAuth credentials)
      : opts_(std::move(options)),
        credentials_(std::move(credentials)),
        download_slots_(opts_.store.registry.max_downloads) {}

  Result<Image> Pull(const std::string& given, const PullOptions& options) override {
    const bool registry = !HasPathTransport(given);
    std::string name = given;  // the containerd image's
    Result<ImageReference> remote = ImageReference();
    Result<LocalRef> local = LocalRef();
    if (registry) {
      remote = ParseImageReference(given);
      if (!remote.ok()) return remote.status().WithContext(given);
      name = remote->Canonical();
    } else {
      local = ParseLocalRef(given);
      if (!local.ok()) return local.status().WithContext(given);
    }
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    if (options.policy == PullPolicy::kNever) {
      WaitForPullsOf(name);
      Result<Image> had = Named(channel.get(), name, "");
      if (!had.ok()) {
        if (!had.status().IsNotFound()) return had.status().WithContext(given);
        return Status::FailedPrecondition(given + ": not present, and imagePullPolicy is Never");
      }
      return had;
    }
    std::string file;  // a local file's identity
    if (!registry) {
      PETREL_ASSIGN_OR_RETURN(const struct stat st, StatLocalImage(given, *local));
      file = FileIdentity(st);
    }
    const bool recheck =
        registry && options.policy == PullPolicy::kAlways && remote->digest.empty();
    WaitForPullsOf(name, /*then_pull=*/true);
    Result<Image> image = [&]() -> Result<Image> {
      if (!recheck) {
        Result<Image> had = Named(channel.get(), name, file);
        if (had.ok() || !had.status().IsNotFound()) return had;
      }
      return Import(given, name, file, registry ? &*remote : nullptr, *local, options);
    }();
    std::lock_guard<std::mutex> lock(mu_);
    pulling_.erase(name);
    pulled_cv_.notify_all();
    // The download cache is only a way into containerd: once a pull has worked and no
    // other runs, what is in it (manifests, what an earlier failed pull left) goes. A
    // failed pull leaves its whole blobs there, for the next one to go on from.
    if (image.ok() && pulling_.empty()) FilesIn(opts_.store.dir + "/" + kRegistryBlobDir, true);
    return image;
  }

  Result<Image> ImportArchive(const std::string& path, std::vector<std::string>* names) override {
    std::vector<std::string> carried;
    PETREL_ASSIGN_OR_RETURN(const std::string ref, ArchiveReference(path, &carried));
    PETREL_ASSIGN_OR_RETURN(Image image, Pull(ref, PullOptions()));
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    PETREL_ASSIGN_OR_RETURN(const ContainerdImage named, ContainerdGetImage(channel.get(), ref));
    for (const std::string& n : carried) {
      Result<ImageReference> parsed = ParseImageReference(n);
      if (!parsed.ok()) return parsed.status().WithContext(n).WithContext(path);
      ContainerdImage tagged = named;
      tagged.labels.erase(kFileLabel);  // a name, not the file
      PETREL_RETURN_IF_ERROR(
          ContainerdNameImage(channel.get(), parsed->Canonical(), tagged).WithContext(path));
      if (names != nullptr) names->push_back(parsed->Canonical());
    }
    return image;
  }

  Result<std::vector<StoredImage>> List() override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    PETREL_ASSIGN_OR_RETURN(const std::vector<ContainerdImage> images,
                            ContainerdListImages(channel.get(), {}));
    std::map<std::string, StoredImage> by_id;
    for (const ContainerdImage& i : images) {
      auto id = i.labels.find(kContainerdImageIdLabel);
      if (id == i.labels.end()) continue;  // not petrel's
      StoredImage& s = by_id[id->second];
      s.id = id->second;
      s.refs.push_back(i.name);
      s.size_bytes = std::max(s.size_bytes, SizeOf(i));
      const int64_t made = ToMs(i.created_at);
      if (s.created_ms == 0 || made < s.created_ms) s.created_ms = made;
      s.used_ms = std::max(s.used_ms, made);
    }
    std::vector<StoredImage> out;
    for (auto& [id, s] : by_id) out.push_back(std::move(s));
    std::sort(out.begin(), out.end(), [](const StoredImage& a, const StoredImage& b) {
      return a.created_ms != b.created_ms ? a.created_ms < b.created_ms : a.id < b.id;
    });
    return out;
  }

  Result<std::string> Resolve(const std::string& name) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    if (name.rfind("sha256:", 0) == 0) {
      PETREL_ASSIGN_OR_RETURN(const std::vector<ContainerdImage> images,
                              ImagesOf(channel.get(), name));
      if (!images.empty()) return name;
    }
    std::string key = name;
    if (!HasPathTransport(name)) {
      Result<ImageReference> parsed = ParseImageReference(name);
      if (parsed.ok()) key = parsed->Canonical();
    }
    Result<ContainerdImage> image = ContainerdGetImage(channel.get(), key);
    if (image.ok()) {
      auto id = image->labels.find(kContainerdImageIdLabel);
      if (id != image->labels.end()) return id->second;
    } else if (!image.status().IsNotFound()) {
      return image.status().WithContext(name);
    }
    return Status::NotFound(name + ": no such image");
  }

  Result<int64_t> Remove(const std::string& id) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    PETREL_ASSIGN_OR_RETURN(const std::vector<ContainerdImage> images, ImagesOf(channel.get(), id));
    if (images.empty()) return Status::NotFound(id + ": no such image");
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const ContainerdImage& i : images) {
        if (pulling_.count(i.name) != 0) {
          return Status::FailedPrecondition(id + ": " + i.name + " is being pulled");
        }
      }
    }
    int64_t freed = 0;
    for (size_t n = 0; n < images.size(); n++) {
      const ContainerdImage& i = images[n];
      freed = std::max(freed, SizeOf(i));
      // The last one collects what the image held, before the answer.
      Status s = ContainerdDeleteImage(channel.get(), i.name, n + 1 == images.size());
      if (!s.ok() && !s.IsNotFound()) return s.WithContext("remove image " + id);
    }
    unlink(ConfigPath(id).c_str());
    return freed;
  }

  // containerd collects what no image holds by itself: what is left to remove is the
  // local download cache, while no pull runs.
  Result<int64_t> RemoveUnusedBlobs() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pulling_.empty()) return int64_t{0};
    return FilesIn(opts_.store.dir + "/" + kRegistryBlobDir, true) +
           FilesIn(opts_.store.dir + "/" + kRegistryPartialDir, true);
  }

  Result<std::vector<StoredImage>> ShrinkTo(int64_t max_bytes, const std::set<std::string>& keep,
                                            int64_t* left) override {
    PETREL_RETURN_IF_ERROR(RemoveUnusedBlobs().status());  // not in List's sizes
    PETREL_ASSIGN_OR_RETURN(const std::vector<StoredImage> images, List());
    int64_t size = 0;
    for (const StoredImage& s : images) size += s.size_bytes;
    std::vector<StoredImage> removed;
    for (const StoredImage& s : images) {  // oldest first
      if (size <= max_bytes) break;
      if (keep.count(s.id) != 0) continue;
      Result<int64_t> freed = Remove(s.id);
      if (!freed.ok()) {
        if (freed.status().code() == Status::Code::kFailedPrecondition) continue;
        return freed.status();
      }
      size -= s.size_bytes;
      removed.push_back(s);
    }
    if (left != nullptr) *left = size;
    return removed;
  }

  bool Has(const Image& image) override {
    Result<std::unique_ptr<GrpcChannel>> channel = Channel();
    if (!channel.ok()) return false;
    Result<std::vector<ContainerdImage>> images = ImagesOf(channel->get(), image.id);
    return images.ok() && !images->empty();
  }

  Result<ContainerRoot> PrepareRoot(const Image& image, const std::string& id,
                                    const std::string& dir) override {
    std::vector<std::string> diff_ids;
    PETREL_ASSIGN_OR_RETURN(const std::string config, ReadConfig(image.id));
    PETREL_RETURN_IF_ERROR(ParseImageConfig(config, &diff_ids).status().WithContext(image.id));
    const std::string lease = ContainerdRootLease(id), key = ContainerdRootSnapshot(id);
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> plain, Channel());
    GrpcChannel::Options o = ChannelOptions();
    o.lease = lease;
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> leased, GrpcChannel::Open(o));
    const auto make = [&]() -> Result<std::vector<ContainerdMount>> {
      PETREL_RETURN_IF_ERROR(
          ContainerdCreateLease(plain.get(), lease, {{kContainerdRootLeaseLabel, Owner()}}));
      Result<std::vector<ContainerdMount>> mounts = ContainerdPrepareSnapshot(
          leased.get(), opts_.snapshotter, key, ContainerdChainId(diff_ids), {});
      if (!mounts.ok()) (void)ContainerdDeleteLease(plain.get(), lease, false);
      return mounts;
    };
    Result<std::vector<ContainerdMount>> mounts = make();
    if (mounts.status().code() == Status::Code::kAlreadyExists) {
      // A lease or snapshot of this name is a leftover of a container whose directory
      // went without it (the container's directory is new: the name is this one's).
      PETREL_RETURN_IF_ERROR(ReleaseRoot(id, dir));
      mounts = make();
    }
    if (!mounts.ok()) return mounts.status().WithContext("root of container " + id);
    ContainerRoot root;
    root.kind = "snapshot";
    root.snapshot = key;
    root.image_dirs = LowerDirs(*mounts);
    return root;
  }

  Status ReleaseRoot(const std::string& id, const std::string& dir) override {
    (void)dir;
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    Status s =
        ContainerdRemoveSnapshot(channel.get(), opts_.snapshotter, ContainerdRootSnapshot(id));
    if (!s.ok() && !s.IsNotFound()) return s.WithContext("snapshot of container " + id);
    s = ContainerdDeleteLease(channel.get(), ContainerdRootLease(id), false);
    if (!s.ok() && !s.IsNotFound()) return s.WithContext("lease of container " + id);
    return Status::OK();
  }

  // The roots' leases say whose they are: one of this runtime's whose container is not
  // `present` goes with its snapshot. (Other petrels on this namespace have theirs.)
  Status ReleaseRootsBut(const std::function<bool(const std::string& id)>& present) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    PETREL_ASSIGN_OR_RETURN(
        const std::vector<std::string> leases,
        ContainerdListLeases(channel.get(), {std::string("labels.\"") + kContainerdRootLeaseLabel +
                                             "\"==" + Owner()}));
    const std::string prefix = ContainerdRootLease("");
    for (const std::string& lease : leases) {
      if (lease.rfind(prefix, 0) != 0) continue;
      const std::string id = lease.substr(prefix.size());
      if (present(id)) continue;
      PETREL_RETURN_IF_ERROR(ReleaseRoot(id, ""));
    }
    return Status::OK();
  }

  Status Open() {
    const std::string& dir = opts_.store.dir;
    PETREL_RETURN_IF_ERROR(MakeDurableDirs(dir + "/" + kConfigsDir, 0700));
    PETREL_RETURN_IF_ERROR(MakeRegistryDirs(dir));
    PETREL_ASSIGN_OR_RETURN(const std::vector<DirEntry> entries, ListDir(dir));
    for (const DirEntry& e : entries) {
      if (e.name.rfind(kTmpPrefix, 0) == 0) PETREL_RETURN_IF_ERROR(RemoveTree(dir + "/" + e.name));
    }
    return Status::OK();
  }

 private:
  GrpcChannel::Options ChannelOptions() const {
    GrpcChannel::Options o;
    o.socket_path = opts_.socket_path;
    o.ns = opts_.ns;
    o.timeout = opts_.call_timeout;
    return o;
  }
  Result<std::unique_ptr<GrpcChannel>> Channel() const {
    return GrpcChannel::Open(ChannelOptions());
  }

  // This backend's mark on its roots' leases: its directory's, as containers of other
  // runtimes on the namespace (other state dirs) may share their names.
  std::string Owner() const { return ContainerdRootOwner(opts_.store.dir); }

  std::string ConfigPath(const std::string& id) const {
    return opts_.store.dir + "/" + kConfigsDir + "/" + id.substr(id.find(':') + 1) + ".json";
  }

  // Image `id`'s config as kept at its import, checked against its digest.
  Result<std::string> ReadConfig(const std::string& id) const {
    Result<std::string> text = ReadSmallFile(ConfigPath(id), kMaxJsonSize);
    if (!text.ok()) return text.status();
    if ("sha256:" + Sha256Hex(*text) != id) {
      return Status::NotFound(ConfigPath(id) + ": damaged (not " + id + "): imported again");
    }
    return text;
  }

  // The images that give petrel's image `id`.
  Result<std::vector<ContainerdImage>> ImagesOf(GrpcChannel* channel, const std::string& id) const {
    if (id.rfind("sha256:", 0) != 0 || id.find('"') != std::string::npos) {
      return std::vector<ContainerdImage>();
    }
    return ContainerdListImages(channel,
                                {std::string("labels.\"") + kContainerdImageIdLabel + "\"==" + id});
  }

  // The image containerd has under `name` (from file `file` when not ""), whose config
  // petrel keeps: NotFound when there is none.
  Result<Image> Named(GrpcChannel* channel, const std::string& name, const std::string& file) {
    PETREL_ASSIGN_OR_RETURN(const ContainerdImage had, ContainerdGetImage(channel, name));
    auto id = had.labels.find(kContainerdImageIdLabel);
    if (id == had.labels.end()) return Status::NotFound(name + ": not petrel's");
    if (!file.empty()) {
      auto f = had.labels.find(kFileLabel);
      if (f == had.labels.end() || f->second != file) return Status::NotFound(name + ": changed");
    }
    PETREL_ASSIGN_OR_RETURN(const std::string config, ReadConfig(id->second));
    Image image;
    image.id = id->second;
    PETREL_ASSIGN_OR_RETURN(image.config, ParseImageConfig(config, nullptr));
    return image;
  }

  // Reads the image `given` names (from `remote`, a registry, when not null; else
  // from the local file `local`) and imports it into containerd as `name`.
  Result<Image> Import(const std::string& given, const std::string& name, const std::string& file,
                       const ImageReference* remote, const LocalRef& local,
                       const PullOptions& options) {
    ProgressReporter progress(options.progress);
    progress.Phase("resolving");
    // Declared before the source: the libraries stay loaded while it reads.
    ArchiveUse archive;
    if (!archive.status().ok()) return archive.status().WithContext(given);
    std::unique_ptr<CurlUse> curl;
    std::unique_ptr<ImageSource> source;
    if (remote != nullptr) {
      curl = std::make_unique<CurlUse>();
      if (!curl->status().ok()) return curl->status().WithContext(given);
      // No blob in the local cache is vouched for: what is there was left by a failed
      // pull (or another one running), and is hashed again before it is used.
      Result<std::unique_ptr<ImageSource>> opened = OpenRegistrySource(
          opts_.store, credentials_, *remote, &download_slots_, options, &progress, nullptr);
      if (!opened.ok()) return opened.status().WithContext(given);
      source = std::move(*opened);
    } else {
      source = OpenLocalImage(local);
    }
    Result<ImagePlan> plan = ReadLocalPlan(source.get(), local);
    if (!plan.ok()) return plan.status().WithContext(given);
    int64_t size = static_cast<int64_t>(plan->config_json.size());
    std::map<std::string, int64_t> sizes;
    for (const LayerRef& layer : plan->layers) {
      sizes[layer.digest] = layer.size;
      size += std::max<int64_t>(layer.size, 0);
    }
    std::vector<std::string> fetched;  // blobs in the local cache, gone once imported
    if (remote != nullptr) {
      Status got = DownloadLayers(source.get(), *plan, sizes, {}, &progress);
      if (!got.ok()) return got.WithContext(given);
      for (const LayerRef& layer : plan->layers) fetched.push_back(layer.digest);
      fetched.push_back(plan->id);
    }
    progress.Phase("unpacking");
    // The config first: an image named in containerd always has it here.
    PETREL_RETURN_IF_ERROR(WriteFileAtomic(ConfigPath(plan->id), plan->config_json));
    std::map<std::string, std::string> labels = {{kContainerdImageIdLabel, plan->id},
                                                 {kSizeLabel, std::to_string(size)}};
    if (!file.empty()) labels[kFileLabel] = file;
    Result<ContainerdImported> imported = ContainerdImportImage(ChannelOptions(), opts_.snapshotter,
                                                                name, source.get(), *plan, labels);
    if (!imported.ok()) return imported.status().WithContext(given);
    for (const std::string& digest : fetched) {
      unlink((opts_.store.dir + "/" + kRegistryBlobDir + "/" + digest.substr(digest.find(':') + 1))
                 .c_str());
    }
    Image image;
    image.id = plan->id;
    image.config = plan->config;
    return image;
  }

  // Waits until no Pull imports `name`; with `then_pull`, marks it as this one's.
  void WaitForPullsOf(const std::string& name, bool then_pull = false) {
    std::unique_lock<std::mutex> lock(mu_);
    pulled_cv_.wait(lock, [&] { return pulling_.count(name) == 0; });
    if (then_pull) pulling_.insert(name);
  }

  const ContainerdImageBackendOptions opts_;
  const RegistryAuth credentials_;
  Semaphore download_slots_;
  std::mutex mu_;  // guards pulling_
  std::condition_variable pulled_cv_;
  std::set<std::string> pulling_;  // the containerd names a Pull is importing now
};

}  // namespace

std::string ContainerdRootSnapshot(const std::string& id) { return "petrel-" + id; }
std::string ContainerdRootLease(const std::string& id) { return "petrel-root-" + id; }
std::string ContainerdRootOwner(const std::string& store_dir) {
  return Sha256Hex(store_dir).substr(0, 16);
}

Result<std::unique_ptr<ImageBackend>> NewContainerdImageBackend(
    ContainerdImageBackendOptions options) {
  if (options.store.dir.empty()) return Status::InvalidArgument("image store: no directory");
  PETREL_ASSIGN_OR_RETURN(RegistryAuth credentials, OpenRegistryAccess(options.store.registry));
  auto backend =
      std::make_unique<ContainerdImageBackend>(std::move(options), std::move(credentials));
  PETREL_RETURN_IF_ERROR(backend->Open());
  return std::unique_ptr<ImageBackend>(std::move(backend));
}

}  // namespace petrel::internal
