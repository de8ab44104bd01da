// CrunRuntime: petrel::ContainerRuntime over the OCI runtime CLI (crun or runc).
//
// State lives in files, so a restarted petrel adopts what an earlier one started:
//   <state>/containers/<id>/config.json   the bundle's config; rootfs/ beside it
//   <state>/containers/<id>/meta.json     name, labels, image (and its id: what keeps the
//                                         image from removal), cgroup parent and cgroups,
//                                         created_at, lease;
//                                         written last: a dir without it is half-made
//   <state>/containers/<id>/log.*         the container's output (lib/util/log_files.h)
//   <state>/images/                       the image store
//
// Create prepares the bundle only; Start hands it to the ProcessDriver
// (process_driver.h), which runs and watches the container's process and keeps files
// of its own: crun or runc under petrel's shim (shim_driver.cpp), one runtime process
// per container start, as a hand-written script would use; or containerd's tasks
// (runtime-adapters/containerd/containerd_driver.h). Leases (ContainerSpec::lease) are
// enforced by the shim, which outlives petrel: it reads the lease file every 100 ms and
// SIGKILLs the container once it has run out.
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "lib/oci/runtime_config.h"
#include "lib/spec/image_ref.h"
#include "lib/util/dir_lock.h"
#include "lib/util/fs.h"
#include "lib/util/log_files.h"
#include "lib/util/sha256.h"
#include "lib/util/strings.h"
#include "petrel/clock.h"
#include "petrel/crun.h"
#include "petrel/spec.h"
#include "runtime-adapters/crun/image_backend.h"
#include "runtime-adapters/crun/process_driver.h"

namespace petrel {
namespace {

using internal::DirEntry;
using internal::ErrnoError;
using internal::ListDir;
using internal::MakeDurableDirs;
using internal::ReadLogFiles;
using internal::ReadSmallFile;
using internal::UniqueFd;
using internal::WriteFileAtomic;
using nlohmann::json;

constexpr char kMetaFile[] = "meta.json";
constexpr char kTrashPrefix[] = ".removing-";
// A container whose files were found damaged, kept for a look (the last one per name).
constexpr char kDamagedPrefix[] = ".damaged-";
// Bounds for files read whole: meta, config.json, passwd.
constexpr size_t kLogFile = 1 << 20;

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::string FindInPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = getenv("PATH");
  std::string dirs =
      path != nullptr ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    std::string candidate = dirs.substr(start, colon - start) + "/" + name;
    if (colon > start && access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  return "";
}

// File `path` ("/etc/passwd") of the image below `root`, as the image has it: from the
// topmost of its directories that has it, inside that directory (a symbolic link cannot
// lead out of it); one that has something else there (a whiteout) ends the search.
Result<std::string> ReadImageFile(const internal::ContainerRoot& root, const std::string& path) {
  for (const std::string& dir : root.image_dirs) {
    Result<std::string> text = internal::ReadSmallFileInRoot(dir, path, kLogFile);
    if (!text.status().IsNotFound()) return text;
  }
  return Status::NotFound(path + ": not in the image");
}

// A container id is a directory name under the state dir.
bool ValidId(const std::string& id) { return internal::IsPlainName(id, 200); }

// The limits recorded in a container's meta.json.
Resources LimitsOf(const json& meta) {
  Resources limits;
  if (meta.contains("resources") && meta["resources"].is_object()) {
    limits.memory_bytes = meta["resources"].value("memory", int64_t{0});
    limits.cpu_millis = meta["resources"].value("cpuMillis", int64_t{0});
    limits.pids = meta["resources"].value("pids", int64_t{0});
    limits.all_devices = meta["resources"].value("allDevices", false);
  }
  return limits;
}

// The cgroup parent a container was made under: the one its meta.json records, else
// "petrel", the only one before it was recorded.
std::string CgroupParentOf(const json& meta) {
  if (meta.contains("cgroupParent") && meta["cgroupParent"].is_string()) {
    std::string parent = meta["cgroupParent"].get<std::string>();
    if (CheckCgroupParent(parent).ok()) return parent;
  }
  return "petrel";
}

class CrunRuntime final : public ContainerRuntime {
 public:
  CrunRuntime(BundleRuntimeOptions options, std::unique_ptr<internal::ProcessDriver> driver,
              std::unique_ptr<internal::ImageBackend> images,
              std::unique_ptr<internal::DirLock> lock)
      : lock_(std::move(lock)),
        opts_(std::move(options)),
        driver_(std::move(driver)),
        images_(std::move(images)),
        containers_(ContainersDir(opts_)) {}

  // Where the containers' directories are: <state dir>/containers.
  static std::string ContainersDir(const BundleRuntimeOptions& options) {
    return options.state_dir + "/containers";
  }

  ~CrunRuntime() override {
    {
      std::lock_guard<std::mutex> lock(preload_mu_);
      stopping_ = true;
    }
    if (preloader_.joinable()) preloader_.join();
    driver_.reset();  // its exit watcher calls handler_
  }

  Status Init() {
    PETREL_RETURN_IF_ERROR(MakeDurableDirs(containers_, 0700));
    // Removals and creations a crash cut short: trash, and bundles without meta.json.
    PETREL_ASSIGN_OR_RETURN(const std::vector<DirEntry> entries, ListDir(containers_));
    std::vector<std::string> trash, half_made;
    for (const DirEntry& e : entries) {
      if (e.name.rfind(kTrashPrefix, 0) == 0) trash.push_back(e.name);
      if (ValidId(e.name) && !Exists(DirOf(e.name) + "/" + kMetaFile)) half_made.push_back(e.name);
    }
    for (const std::string& t : trash) {
      PETREL_RETURN_IF_ERROR(
          images_->ReleaseRoot(t.substr(sizeof(kTrashPrefix) - 1), containers_ + "/" + t));
      PETREL_RETURN_IF_ERROR(internal::RemoveTree(containers_ + "/" + t));
    }
    for (const std::string& id : half_made) PETREL_RETURN_IF_ERROR(Destroy(id));
    // Roots kept outside the containers' directories (containerd's snapshots) of
    // containers whose directories are gone.
    if (Status s = images_->ReleaseRootsBut(
            [this](const std::string& id) { return ValidId(id) && Exists(DirOf(id)); });
        !s.ok()) {
      Log(LogLevel::kWarn, "roots of containers gone: " + s.message());
    }
    PETREL_RETURN_IF_ERROR(driver_->Open([this](const std::string& id, int exit_code) {
      ExitHandler handler;
      {
        std::lock_guard<std::mutex> lock(handler_mu_);
        handler = handler_;
      }
      if (handler) handler(id, exit_code);
    }));
    if (!opts_.image_preload_dir.empty()) {
      preloading_ = true;
      preloader_ = std::thread([this] { Preload(); });
    }
    return Status::OK();
  }

  std::string Name() const override { return driver_->Name(); }

  // Imports the image into the store; the Create that follows finds it there with one
  // stat() of the file. A registry image waits for the preload, which may bring it.
  Status PullImage(const std::string& image, const PullOptions& options) override {
    if (!internal::HasPathTransport(image)) {
      std::unique_lock<std::mutex> lock(preload_mu_);
      preload_cv_.wait(lock, [&] { return !preloading_; });
    }
    PETREL_ASSIGN_OR_RETURN(const internal::Image pulled, images_->Pull(image, options));
    KeepStoreUnderLimit(pulled.id);
    return Status::OK();
  }

  Result<std::vector<ImageInfo>> ListImages() override {
    std::lock_guard<std::mutex> lock(image_mu_);
    PETREL_ASSIGN_OR_RETURN(const auto users, ImageUsersLocked());
    PETREL_ASSIGN_OR_RETURN(const std::vector<internal::StoredImage> stored, images_->List());
    std::vector<ImageInfo> out;
    for (const internal::StoredImage& s : stored) {
      ImageInfo info;
      info.id = s.id;
      info.refs = s.refs;
      info.size_bytes = s.size_bytes;
      info.created_at = s.created_ms;
      info.in_use = users.count(s.id) != 0;
      out.push_back(std::move(info));
    }
    return out;
  }

  Status RemoveImage(const std::string& ref) override {
    std::lock_guard<std::mutex> lock(image_mu_);
    PETREL_ASSIGN_OR_RETURN(const std::string id, images_->Resolve(ref));
    PETREL_ASSIGN_OR_RETURN(const auto users, ImageUsersLocked());
    auto user = users.find(id);
    if (user != users.end()) {
      return Status::FailedPrecondition(ref + ": in use by container " + user->second);
    }
    PETREL_ASSIGN_OR_RETURN(const int64_t freed, images_->Remove(id));
    Log(LogLevel::kInfo,
        "image " + ref + " (" + id + ") removed, " + std::to_string(freed) + " bytes freed");
    return Status::OK();
  }

  Result<PruneResult> PruneImages() override {
    std::lock_guard<std::mutex> lock(image_mu_);
    PETREL_ASSIGN_OR_RETURN(const auto users, ImageUsersLocked());
    PETREL_ASSIGN_OR_RETURN(const std::vector<internal::StoredImage> stored, images_->List());
    PruneResult result;
    for (const internal::StoredImage& s : stored) {
      if (users.count(s.id) != 0) continue;
      PETREL_ASSIGN_OR_RETURN(const int64_t freed, images_->Remove(s.id));
      result.removed.push_back(s.id);
      result.bytes_freed += freed;
    }
    PETREL_ASSIGN_OR_RETURN(const int64_t blobs, images_->RemoveUnusedBlobs());
    result.bytes_freed += blobs;
    return result;
  }

  Result<std::string> Create(const ContainerSpec& spec) override {
    const std::string& id = spec.name;
    if (!ValidId(id)) return Status::InvalidArgument("bad container name \"" + id + "\"");
    if (!spec.lease.empty() && (spec.lease.path[0] != '/' || spec.lease.duration_ms <= 0)) {
      return Status::InvalidArgument("container " + id + ": a lease needs an absolute path and " +
                                     "a duration above 0 (" + spec.lease.path + ", " +
                                     std::to_string(spec.lease.duration_ms) + " ms)");
    }
    const std::string dir = DirOf(id);
    if (mkdir(dir.c_str(), 0700) != 0) {
      if (errno == EEXIST) return Status::AlreadyExists("container " + id + " exists");
      return ErrnoError(dir, "create", errno);
    }
    Status s = Prepare(spec, dir);
    {
      std::lock_guard<std::mutex> lock(image_mu_);
      creating_.erase(id);  // meta.json names the image now, or there is no container
    }
    if (!s.ok()) {
      Status cleanup = Destroy(id);
      if (!cleanup.ok())
        Log(LogLevel::kWarn, "cleaning up after failed create: " + cleanup.ToString());
      return s.WithContext("create container " + id);
    }
    return id;
  }

  Status Start(const std::string& id) override {
    PETREL_ASSIGN_OR_RETURN(const json meta, ReadMeta(id));
    PETREL_ASSIGN_OR_RETURN(const ContainerInfo info, Examine(id, meta));
    if (info.state != ContainerState::kCreated) {
      return Status::FailedPrecondition("container " + id + " is " +
                                        ContainerStateName(info.state));
    }
    return driver_->Run(BundleOf(id, meta)).WithContext("start container " + id);
  }

  Status Kill(const std::string& id, int signal) override {
    PETREL_ASSIGN_OR_RETURN(const ContainerInfo info, Inspect(id));
    // A created container has no process yet: nothing to signal.
    if (info.state != ContainerState::kRunning) return Status::OK();
    return driver_->Signal(id, signal);
  }

  Status Remove(const std::string& id) override {
    PETREL_ASSIGN_OR_RETURN(const ContainerInfo info, Inspect(id));
    if (info.state == ContainerState::kRunning) {
      return Status::FailedPrecondition("container " + id + " is running");
    }
    return Destroy(id).WithContext("remove container " + id);
  }

  Result<std::vector<ContainerInfo>> List(
      const std::map<std::string, std::string>& selector) override {
    std::vector<ContainerInfo> out;
    PETREL_ASSIGN_OR_RETURN(const std::vector<DirEntry> entries, ListDir(containers_));
    std::vector<std::string> ids;
    for (const DirEntry& e : entries) {
      if (ValidId(e.name)) ids.push_back(e.name);
    }
    std::sort(ids.begin(), ids.end());
    for (const std::string& id : ids) {
      Result<ContainerInfo> info = Inspect(id);
      if (!info.ok()) {
        if (info.status().IsNotFound()) continue;  // half-made or being removed
        if (info.status().code() != Status::Code::kCorruption) return info.status();
        // One damaged container must not hide the others: it goes, and the next pass
        // makes it anew under its name.
        const std::string aside = containers_ + "/" + kDamagedPrefix + id;
        Log(LogLevel::kError, "container " + id + ": " + info.status().message() +
                                  ": stopping it and keeping its files in " + aside +
                                  "; it is made anew");
        if (Status s = Destroy(id, aside); !s.ok()) {
          Log(LogLevel::kError, "container " + id + ": setting it aside: " + s.message());
        }
        continue;
      }
      bool match = std::all_of(selector.begin(), selector.end(), [&](const auto& kv) {
        auto it = info->labels.find(kv.first);
        return it != info->labels.end() && it->second == kv.second;
      });
      if (match) out.push_back(std::move(*info));
    }
    return out;
  }

  Result<ContainerInfo> Inspect(const std::string& id) override {
    PETREL_ASSIGN_OR_RETURN(const json meta, ReadMeta(id));
    return Examine(id, meta);
  }

  // The container as its files and its driver say now. `meta` is its meta.json.
  Result<ContainerInfo> Examine(const std::string& id, const json& meta) {
    ContainerInfo info;
    info.id = id;
    info.name = meta.value("name", id);
    info.created_at = meta.value("createdAt", int64_t{0});
    info.address = meta.value("address", "");
    if (meta.contains("labels") && meta["labels"].is_object()) {
      for (const auto& [k, v] : meta["labels"].items()) {
        if (v.is_string()) info.labels[k] = v.get<std::string>();
      }
    }
    // The driver asks whether the container is still there (its meta.json) before it
    // believes a file of its found missing: a Remove may overlap with an Inspect.
    PETREL_ASSIGN_OR_RETURN(const internal::ProcessState process, driver_->State(id));
    info.state = process.state;
    info.pid = process.pid;
    info.exit_code = process.exit_code;
    info.exit_reason = process.exit_reason;
    info.started_at = process.started_at;
    info.finished_at = process.finished_at;
    return info;
  }

  Result<LogChunk> Logs(const std::string& id, const LogOptions& options) override {
    // Only whether the container exists (a follow stream calls this over and over):
    // its meta.json, not a whole Inspect.
    if (!ValidId(id)) return Status::NotFound("no container " + id);
    const std::string dir = DirOf(id);
    const std::string meta_file = dir + "/" + kMetaFile;
    if (!Exists(meta_file)) return Status::NotFound("no container " + id);
    // A Remove may move the directory away meanwhile (Logs may overlap with it): files
    // missing for that reason make the answer the Remove's.
    Result<LogChunk> chunk = ReadLogFiles(dir, options);
    if (!chunk.ok()) {
      return chunk.status().IsNotFound() ? Status::NotFound("no container " + id) : chunk.status();
    }
    if (!Exists(meta_file)) return Status::NotFound("no container " + id);
    return chunk;
  }

  // The hosts file in the container's directory, written over where it is: the bind
  // mount on the container's /etc/hosts is of this very file. Not synced: petrel writes
  // the hosts of every container again after it starts.
  Status SetHosts(const std::string& id, const std::string& hosts) override {
    PETREL_ASSIGN_OR_RETURN(const json meta, ReadMeta(id));
    if (!meta.value("hosts", false)) {
      return Status::FailedPrecondition("set hosts of " + id + ": it was created without hosts");
    }
    return internal::RewriteFileInPlace(DirOf(id) + "/hosts", hosts, /*create=*/false);
  }

  // The process of the container's config.json with `options.command` as its args,
  // run by the driver.
  Result<ExecResult> Exec(const std::string& id, const ExecOptions& options) override {
    const std::string what = "exec in " + id;
    if (options.command.empty()) return Status::InvalidArgument(what + ": no command");
    if (options.timeout_ms <= 0) {
      return Status::InvalidArgument(what + ": the timeout must be above 0 ms, not " +
                                     std::to_string(options.timeout_ms));
    }
    PETREL_ASSIGN_OR_RETURN(const json meta, ReadMeta(id));
    PETREL_ASSIGN_OR_RETURN(const ContainerInfo info, Examine(id, meta));
    if (info.state != ContainerState::kRunning) {
      return internal::ExecNotRunning(id, std::string("is ") + ContainerStateName(info.state));
    }
    PETREL_ASSIGN_OR_RETURN(const std::string process, ExecProcess(id, options.command));
    return driver_->Exec(BundleOf(id, meta), process, options);
  }

  void SetExitHandler(ExitHandler handler) override {
    std::lock_guard<std::mutex> lock(handler_mu_);
    handler_ = std::move(handler);
  }

 private:
  // The process.json of an Exec: the container's own process (user, environment,
  // working dir, capabilities, limits) with `command` as its args.
  Result<std::string> ExecProcess(const std::string& id, const std::vector<std::string>& command) {
    Result<std::string> config = ReadSmallFile(DirOf(id) + "/config.json", kLogFile);
    if (!config.ok()) {
      return config.status().IsNotFound() ? internal::ExecNotRunning(id, "was removed")
                                          : config.status();
    }
    json process = json::parse(*config, nullptr, false);
    if (!process.is_object() || !process["process"].is_object()) {
      return Status::Corruption(DirOf(id) + "/config.json: no process");
    }
    process = process["process"];
    process["args"] = command;
    process["terminal"] = false;
    process.erase("consoleSize");
    return process.dump();
  }

  std::string DirOf(const std::string& id) const { return containers_ + "/" + id; }

  void Log(LogLevel level, const std::string& msg) {
    if (opts_.log_sink) opts_.log_sink(level, driver_->Name() + " adapter: " + msg);
  }

  // What the driver needs of container `id` to run it, from its meta.json.
  internal::Bundle BundleOf(const std::string& id, const json& meta) const {
    internal::Bundle bundle;
    bundle.id = id;
    bundle.dir = DirOf(id);
    bundle.cgroup_parent = CgroupParentOf(meta);
    bundle.limits = LimitsOf(meta);
    bundle.overlay = meta.value("overlay", "");
    bundle.snapshot = meta.value("snapshot", "");
    if (meta.contains("lease") && meta["lease"].is_object()) {
      bundle.lease.path = meta["lease"].value("path", "");
      bundle.lease.duration_ms = meta["lease"].value("durationMs", int64_t{0});
    }
    return bundle;
  }

  // The container's meta.json; NotFound when there is no (finished) container `id`,
  // Corruption when it is damaged (too large, or no JSON object with its name and labels).
  Result<json> ReadMeta(const std::string& id) {
    if (!ValidId(id)) return Status::NotFound("no container " + id);
    const std::string path = DirOf(id) + "/" + kMetaFile;
    Result<std::string> text = ReadSmallFile(path, kLogFile);
    if (!text.ok()) {
      return text.status().IsNotFound() ? Status::NotFound("no container " + id) : text.status();
    }
    json meta = json::parse(*text, nullptr, false);
    if (!meta.is_object()) {
      return Status::Corruption(path +
                                ": damaged: " + (text->empty() ? "empty" : "not a JSON object"));
    }
    if (!meta.contains("name") || !meta["name"].is_string() || !meta.contains("labels") ||
        !meta["labels"].is_object()) {
      return Status::Corruption(path + ": damaged: no name or labels");
    }
    return meta;
  }

  // The image of `spec`, pulled and marked as in use by the container being created
  // (creating_) until its meta.json names it: a removal in between waits or fails.
  Result<internal::Image> HoldImage(const ContainerSpec& spec) {
    for (int attempt = 0;; attempt++) {
      PETREL_ASSIGN_OR_RETURN(const internal::Image image,
                              images_->Pull(spec.image, PullOptions()));
      std::lock_guard<std::mutex> lock(image_mu_);
      if (images_->Has(image) || attempt > 0) {
        creating_[spec.name] = image.id;
        return image;
      }
      // Removed between the pull and the lock: pull it again.
    }
  }

  // The images containers of this runtime were made from, by id: the name of one
  // container using each. A record without the image's id (none is written so) counts
  // by the reference it names. REQUIRES: image_mu_ held.
  Result<std::map<std::string, std::string>> ImageUsersLocked() {
    std::map<std::string, std::string> users;
    for (const auto& [name, id] : creating_) users.emplace(id, name);
    PETREL_ASSIGN_OR_RETURN(const std::vector<DirEntry> entries, ListDir(containers_));
    for (const DirEntry& e : entries) {
      if (!ValidId(e.name)) continue;
      Result<json> meta = ReadMeta(e.name);
      if (!meta.ok()) {
        // Damaged: its image cannot be told, and it cannot start again either.
        if (!meta.status().IsNotFound()) {
          Log(LogLevel::kWarn, "images in use: " + meta.status().message());
        }
        continue;
      }
      const std::string name = meta->value("name", e.name);
      if (meta->contains("imageId") && (*meta)["imageId"].is_string()) {
        users.emplace((*meta)["imageId"].get<std::string>(), name);
      } else if (meta->contains("image") && (*meta)["image"].is_string()) {
        Result<std::string> id = images_->Resolve((*meta)["image"].get<std::string>());
        if (id.ok()) users.emplace(*id, name);
      }
    }
    return users;
  }

  // After a pull: while the store takes more than opts_.image_store_max_bytes, removes
  // the least recently used image no container uses (never `keep`, just pulled), and
  // then blobs no image needs. Each removal is logged.
  void KeepStoreUnderLimit(const std::string& keep) {
    const int64_t max = opts_.image_store_max_bytes;
    if (max <= 0) return;
    std::lock_guard<std::mutex> lock(image_mu_);
    Result<std::map<std::string, std::string>> users = ImageUsersLocked();
    if (!users.ok()) {
      Log(LogLevel::kWarn, "image store limit: " + users.status().message());
      return;
    }
    std::set<std::string> kept = {keep};
    for (const auto& [id, name] : *users) kept.insert(id);
    int64_t left = 0;
    Result<std::vector<internal::StoredImage>> removed = images_->ShrinkTo(max, kept, &left);
    if (!removed.ok()) {
      Log(LogLevel::kWarn, "image store limit: " + removed.status().message());
      return;
    }
    for (const internal::StoredImage& s : *removed) {
      std::string refs;
      for (const std::string& r : s.refs) refs += (refs.empty() ? "" : ", ") + r;
      Log(LogLevel::kInfo, "image store above its limit of " + std::to_string(max) +
                               " bytes: removed the least recently used image " + s.id +
                               (refs.empty() ? "" : " (" + refs + ")") + ", " +
                               std::to_string(s.size_bytes) + " bytes freed");
    }
    if (left > max) {
      Log(LogLevel::kWarn, "image store still above its limit (" + std::to_string(left) + " > " +
                               std::to_string(max) + " bytes): the rest is in use");
    }
  }

  // Imports the archives of opts_.image_preload_dir, in name order, each logged; a
  // registry PullImage waits until it is done.
  void Preload() {
    const std::string& dir = opts_.image_preload_dir;
    Result<std::vector<DirEntry>> entries = ListDir(dir);
    if (!entries.ok()) Log(LogLevel::kError, "image preload: " + entries.status().message());
    std::vector<std::string> files;
    for (const DirEntry& e : entries.ok() ? *entries : std::vector<DirEntry>()) {
      struct stat st;
      if (stat((dir + "/" + e.name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        files.push_back(e.name);
      }
    }
    std::sort(files.begin(), files.end());
    for (const std::string& f : files) {
      {
        std::lock_guard<std::mutex> lock(preload_mu_);
        if (stopping_) break;
      }
      std::vector<std::string> names;
      Result<internal::Image> image = images_->ImportArchive(dir + "/" + f, &names);
      if (!image.ok()) {
        Log(LogLevel::kError, "image preload: " + image.status().message());
        continue;
      }
      std::string named;
      for (const std::string& n : names) named += " " + n;
      Log(LogLevel::kInfo, "image preload: " + dir + "/" + f + ": " + image->id +
                               (named.empty() ? " (it carries no name)" : named));
    }
    std::lock_guard<std::mutex> lock(preload_mu_);
    preloading_ = false;
    preload_cv_.notify_all();
  }

  // The image, the root filesystem, the bundle, then meta.json last; Create
  // undoes all of it with Destroy when a step fails.
  Status Prepare(const ContainerSpec& spec, const std::string& dir) {
    const std::string& id = spec.name;
    PETREL_ASSIGN_OR_RETURN(const internal::Image image, HoldImage(spec));
    // An overlay (or containerd's snapshot) is mounted by the driver at Run, in the
    // runtime's own mount namespace.
    PETREL_ASSIGN_OR_RETURN(const internal::ContainerRoot root,
                            images_->PrepareRoot(image, id, dir));
    internal::RuntimeConfigOptions bo;
    bo.rootfs = driver_->RootPath(dir + "/rootfs", !root.overlay.empty() || !root.snapshot.empty());
    // The image's user and group files, only when there is a user to resolve.
    if (!spec.user.empty() || !image.config.user.empty()) {
      // Inside the image's root: its /etc may be a link to the host's.
      Result<std::string> passwd = ReadImageFile(root, "/etc/passwd");
      Result<std::string> group = ReadImageFile(root, "/etc/group");
      if (passwd.ok()) bo.passwd = std::move(*passwd);
      if (group.ok()) bo.group = std::move(*group);
    }
    if (!driver_->PetrelMakesCgroups()) bo.cgroups_path = "/" + opts_.cgroup_parent + "/" + id;
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_max != RLIM_INFINITY) {
      bo.nofile = std::min<uint64_t>(nofile.rlim_max, 1 << 20);
    }
    bo.host_capabilities = 0;
    for (int cap = 0; cap < 64; cap++) {
      if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) bo.host_capabilities |= uint64_t{1} << cap;
    }
    // On the bridge: a network namespace of petrel's, attached before the runtime
    // starts anything in it. Destroy detaches and deletes it.
    std::string address;
    if (spec.network == NetworkMode::kBridge) {
      const std::string net = NetId(id);
      // A namespace of this name is a leftover of a container whose state dir went
      // without it (mkdir above made the container's dir: the name is ours).
      PETREL_RETURN_IF_ERROR(opts_.port->DeleteNetns(net));
      PETREL_RETURN_IF_ERROR(opts_.port->CreateNetns(net));
      bo.netns_path = opts_.port->NetnsPath(net);
      PETREL_ASSIGN_OR_RETURN(address, opts_.port->AttachNetwork(net, bo.netns_path, spec.ports));
    }
    if (!spec.hosts.empty()) {
      bo.hosts_file = dir + "/hosts";
      PETREL_RETURN_IF_ERROR(
          internal::RewriteFileInPlace(bo.hosts_file, spec.hosts, /*create=*/true));
    }
    PETREL_ASSIGN_OR_RETURN(const std::string config,
                            internal::MakeRuntimeConfig(spec, image.config, bo));
    PETREL_RETURN_IF_ERROR(WriteFileAtomic(dir + "/config.json", config));

    json labels = json::object();
    for (const auto& [k, v] : spec.labels) labels[k] = v;
    // The v1 cgroups petrel makes itself (crun on a hybrid host) at Start, recorded
    // here with their parent so that Destroy removes exactly those, also after the
    // parent changed.
    std::vector<std::string> cgroups;
    if (driver_->PetrelMakesCgroups()) {
      cgroups = opts_.port->LimitCgroupsFor(opts_.cgroup_parent, id, spec.resources).dirs;
    }
    const Resources& r = spec.resources;
    json meta = {{"name", id},
                 {"labels", labels},
                 {"image", spec.image},
                 {"imageId", image.id},
                 {"createdAt", opts_.clock->Now()},
                 {"rootfs", root.kind},
                 {"resources",
                  {{"memory", r.memory_bytes},
                   {"cpuMillis", r.cpu_millis},
                   {"pids", r.pids},
                   {"allDevices", r.all_devices}}},
                 {"cgroupParent", opts_.cgroup_parent},
                 {"cgroups", cgroups},
                 {"overlay", root.overlay},
                 {"network", NetworkModeName(spec.network)}};
    if (!address.empty()) meta["address"] = address;
    if (!root.snapshot.empty()) meta["snapshot"] = root.snapshot;
    if (!spec.hosts.empty()) meta["hosts"] = true;
    if (!spec.lease.empty()) {
      meta["lease"] = {{"path", spec.lease.path}, {"durationMs", spec.lease.duration_ms}};
    }
    return WriteFileAtomic(dir + "/" + kMetaFile, meta.dump());
  }

  // Deletes everything of a container: the runtime's record, its root filesystem,
  // cgroups and directory. Tolerates any of them being gone already. With `keep_as`,
  // the directory's other files are moved there instead (replacing what was there).
  Status Destroy(const std::string& id, const std::string& keep_as = "") {
    const std::string dir = DirOf(id);
    PETREL_RETURN_IF_ERROR(driver_->Delete(id));
    PETREL_RETURN_IF_ERROR(images_->ReleaseRoot(id, dir));
    // Its network, if it was on the bridge (both are no-ops when not; a reboot took
    // them already): detached while the namespace still says what was the container's.
    const std::string net = NetId(id);
    PETREL_RETURN_IF_ERROR(opts_.port->DetachNetwork(net));
    PETREL_RETURN_IF_ERROR(opts_.port->DeleteNetns(net));
    if (Result<json> meta = ReadMeta(id); meta.ok() && (*meta)["cgroups"].is_array()) {
      std::vector<std::string> cgroups;
      for (const json& c : (*meta)["cgroups"]) {
        if (c.is_string()) cgroups.push_back(c.get<std::string>());
      }
      // Also those a Start makes today that the record may lack (a container created
      // by an older petrel, which made no devices cgroup).
      if (driver_->PetrelMakesCgroups()) {
        for (std::string& d :
             opts_.port->LimitCgroupsFor(CgroupParentOf(*meta), id, LimitsOf(*meta)).dirs) {
          if (std::find(cgroups.begin(), cgroups.end(), d) == cgroups.end()) {
            cgroups.push_back(std::move(d));
          }
        }
      }
      PETREL_RETURN_IF_ERROR(opts_.port->RemoveCgroups(cgroups));
    } else if (!meta.ok() && driver_->PetrelMakesCgroups()) {
      // No record of them: every cgroup petrel may have made for this container.
      Resources any;
      any.memory_bytes = any.cpu_millis = any.pids = 1;
      PETREL_RETURN_IF_ERROR(opts_.port->RemoveCgroups(
          opts_.port->LimitCgroupsFor(opts_.cgroup_parent, id, any).dirs));
    }
    // Gone in one step for List; the files go after (or at the next start, if petrel
    // dies in between).
    if (!keep_as.empty()) {
      PETREL_RETURN_IF_ERROR(internal::RemoveTree(keep_as));
      if (rename(dir.c_str(), keep_as.c_str()) != 0 && errno != ENOENT) {
        return ErrnoError(dir, "rename", errno);
      }
      return Status::OK();
    }
    const std::string trash = containers_ + "/" + kTrashPrefix + id;
    PETREL_RETURN_IF_ERROR(internal::RemoveTree(trash));
    if (rename(dir.c_str(), trash.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError(dir, "rename", errno);
    }
    return internal::RemoveTree(trash);
  }

  // The name of container `id`'s network namespace and bridge attachment: unique to this
  // state dir (two adapters on one host may hold containers of one name), short enough
  // for a namespace's name.
  std::string NetId(const std::string& id) const {
    return "petrel-" + internal::Sha256Hex(containers_ + "/" + id).substr(0, 16);
  }

  std::unique_ptr<internal::DirLock> lock_;
  const BundleRuntimeOptions opts_;
  // Runs and watches the containers' processes; reset first when the runtime goes.
  std::unique_ptr<internal::ProcessDriver> driver_;
  std::unique_ptr<internal::ImageBackend> images_;
  // Held while deciding which images are in use and removing images: image removal
  // never overlaps the start of a create (creating_).
  std::mutex image_mu_;
  std::map<std::string, std::string> creating_;  // image id by the container being created
  std::mutex preload_mu_;
  std::condition_variable preload_cv_;
  bool preloading_ = false, stopping_ = false;
  std::thread preloader_;
  const std::string containers_;
  std::mutex handler_mu_;
  ExitHandler handler_;
};

}  // namespace

namespace internal {

Result<std::shared_ptr<ContainerRuntime>> NewBundleRuntime(const BundleRuntimeOptions& options,
                                                           const std::string& name,
                                                           const DriverFactory& make_driver,
                                                           const ImageBackendFactory& make_images) {
  BundleRuntimeOptions o = options;
  if (o.state_dir.empty()) return Status::InvalidArgument(name + " runtime: state_dir is required");
  if (!o.log_sink) o.log_sink = StderrLogSink();
  if (!o.clock) o.clock = SystemClock();
  if (!o.port) o.port = DefaultPort();
  PETREL_RETURN_IF_ERROR(CheckCgroupParent(o.cgroup_parent).WithContext("runtime " + name));
  if (geteuid() != 0) {
    return Status::FailedPrecondition("runtime " + name +
                                      ": needs root (rootless containers are not supported yet)");
  }
  PETREL_RETURN_IF_ERROR(MakeDurableDirs(o.state_dir, 0700));
  // One runtime object per state dir: a second would steal the driver's exits.
  std::unique_ptr<DirLock> lock;
  PETREL_RETURN_IF_ERROR(DirLock::Acquire(o.state_dir, &lock));
  ImageStoreOptions io;
  io.dir = o.state_dir + "/images";
  io.allow_overlay = !o.copy_rootfs;
  io.max_layer_bytes = o.max_layer_bytes;
  io.registry = o.registry;
  io.port = o.port;
  PETREL_ASSIGN_OR_RETURN(std::unique_ptr<ImageBackend> images,
                          make_images ? make_images(o, io) : NewStoreImageBackend(io));
  const std::string containers = CrunRuntime::ContainersDir(o);
  PETREL_ASSIGN_OR_RETURN(std::unique_ptr<ProcessDriver> driver,
                          make_driver(o, containers, [containers](const std::string& id) {
                            return Exists(containers + "/" + id + "/" + kMetaFile);
                          }));
  auto rt = std::make_shared<CrunRuntime>(o, std::move(driver), std::move(images), std::move(lock));
  PETREL_RETURN_IF_ERROR(rt->Init());
  return std::shared_ptr<ContainerRuntime>(std::move(rt));
}

}  // namespace internal

Result<std::shared_ptr<ContainerRuntime>> NewCrunRuntime(const CrunOptions& options) {
  if (options.state_dir.empty()) {
    return Status::InvalidArgument("crun runtime: state_dir is required");
  }
  std::string binary = FindInPath(options.runtime);
  if (binary.empty() || access(binary.c_str(), X_OK) != 0) {
    return Status::NotFound("runtime " + options.runtime + ": not found" +
                            (options.runtime.find('/') == std::string::npos ? " in $PATH" : "") +
                            " (install the crun or runc package, or give a path)");
  }
  const std::string base = binary.substr(binary.find_last_of('/') + 1);
  return internal::NewBundleRuntime(
      options, options.runtime,
      [&](const BundleRuntimeOptions& o, const std::string& containers,
          std::function<bool(const std::string&)> present)
          -> Result<std::unique_ptr<internal::ProcessDriver>> {
        internal::ShimDriverOptions so;
        so.binary = binary;
        so.is_runc = base.find("runc") != std::string::npos;
        so.layout = o.port->DetectCgroupLayout();
        so.state_dir = o.state_dir;
        so.containers_dir = containers;
        so.port = o.port;
        so.log_max_bytes = o.log_max_bytes;
        so.start_timeout_ms = options.start_timeout_ms;
        so.present = std::move(present);
        return internal::NewShimDriver(std::move(so));
      });
}

}  // namespace petrel
