// The Docker runtime (petrel/docker.h): ContainerRuntime over the Engine API calls of
// calls.h. Its files, below the state dir:
//   containers/<name>/log.*   the container's output (lib/util/log_files.h), written by
//                             the container's log pump
//   containers/<name>/since   the dockerd time (ns since the epoch) of the last output
//                             written there: a pump started again goes on after it
//   containers/<name>/exited  written once the exit has been told: a later petrel
//                             starts no pump for it
//   containers/<name>/hosts   the container's /etc/hosts, when it has petrel's
//   images.json               the images this runtime pulled: reference -> tag, id
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lib/image/archive_lib.h"
#include "lib/image/docker_archive.h"
#include "lib/image/local_image.h"
#include "lib/image/registry_auth.h"
#include "lib/oci/runc_words.h"
#include "lib/spec/image_ref.h"
#include "lib/util/fs.h"
#include "lib/util/json.h"
#include "lib/util/lease.h"
#include "lib/util/log_files.h"
#include "lib/util/sha256.h"
#include "lib/util/strings.h"
#include "petrel/docker.h"
#include "runtime-adapters/docker/calls.h"
#include "runtime-adapters/docker/engine.h"

namespace petrel {
namespace {

using internal::DockerContainer;
using internal::DockerEngine;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kDefaultSocket[] = "/var/run/docker.sock";
constexpr char kUnixScheme[] = "unix://";
// The label naming the runtime (its state dir's hash) that made a container.
constexpr char kOwnerLabel[] = "io.petrel.docker.owner";
// In a container's directory: its lease (ContainerSpec::lease) as JSON, and what its
// lease watcher did.
constexpr char kLeaseFile[] = "lease.json";
constexpr char kLeaseSaidFile[] = "lease.log";
// How long a call may take; a pull, a load, a log stream and an exec have no deadline.
constexpr std::chrono::milliseconds kCallTimeout{60000};
// The least of Docker's own log files' size: its copy is what a pump reads after a gap
// (before it connects, while petrel is down), and must hold what came meanwhile.
constexpr int64_t kDockerLogMinBytes = 4 << 20;
// How long Inspect and List wait for an exited container's output to be whole.
constexpr std::chrono::milliseconds kDrainWait{2000};
// A removed container's files on their way out, so that it is gone in one step.
constexpr char kTrashPrefix[] = ".trash-";
// How often a pump saves the time of the last output it wrote, at most.
constexpr std::chrono::milliseconds kSinceEvery{1000};

int64_t NanosOf(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

TimeMs MillisOf(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// Whether `ref` names a file on this machine rather than a registry image.
bool IsLocalRef(const std::string& ref) {
  for (const char* prefix : {"oci:", "oci-archive:", "docker-archive:"}) {
    if (ref.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

class DockerRuntime;

// Hands an engine back to its runtime's idle ones.
struct EngineBack {
  DockerRuntime* runtime;
  void operator()(DockerEngine* engine) const;
};
using PooledEngine = std::unique_ptr<DockerEngine, EngineBack>;

// How many engines (connections to dockerd) a runtime keeps idle, at most.
constexpr size_t kIdleEngines = 4;

// One log pump: a thread following a container's output into petrel's files. Its
// container's exit is told once both are known (under mu_): dockerd said it died (its
// /events stream, or a listing after a break in it), and its output is all in the
// files.
struct Pump {
  std::thread thread;
  std::atomic<bool> stop{false};
  DockerEngine* engine = nullptr;  // while it streams: for Cut
  bool drained = false;            // all of the container's output is in its files
  bool died = false;               // dockerd said it ended, with exit_code
  int exit_code = -1;
  bool told = false;  // its exit was told (or is being told)
};

class DockerRuntime : public ContainerRuntime {
 public:
  DockerRuntime(DockerOptions options, std::string socket,
                std::optional<internal::RegistryAuth> auth)
      : options_(std::move(options)),
        auth_(std::move(auth)),
        port_(options_.port),
        socket_(std::move(socket)),
        owner_(internal::Sha256Hex(options_.state_dir).substr(0, 16)),
        containers_(options_.state_dir + "/containers") {}

  ~DockerRuntime() override {
    std::map<std::string, std::unique_ptr<Pump>> pumps;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pumps.swap(pumps_);
      closing_ = true;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_stop_ = true;
      if (events_engine_ != nullptr) events_engine_->Cut();  // at once, not within a second
    }
    if (events_.joinable()) events_.join();
    for (auto& [name, pump] : pumps) Stop(pump.get());
    for (auto& [name, pump] : pumps) pump->thread.join();
  }

  Status Open() {
    PETREL_RETURN_IF_ERROR(internal::MakeDurableDirs(containers_, 0700));
    PETREL_ASSIGN_OR_RETURN(std::vector<internal::DirEntry> entries,
                            internal::ListDir(containers_));
    for (const internal::DirEntry& e : entries) {
      if (e.name.rfind(kTrashPrefix, 0) == 0) {
        PETREL_RETURN_IF_ERROR(internal::RemoveTree(containers_ + "/" + e.name));
      }
    }
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    // The containers of an earlier petrel on this state dir: follow what they say.
    PETREL_ASSIGN_OR_RETURN(std::vector<DockerContainer> mine,
                            internal::DockerListContainers(engine.get(), {OwnerFilter()}));
    for (const DockerContainer& c : mine) {
      if (c.status == "created") continue;
      if (c.running) {
        // Its lease watched again if its watcher is gone (it should not be: watchers
        // outlive petrel); one that cannot be watched must not run on.
        Result<ContainerLease> lease = LeaseOf(c.name);
        Status watched = lease.ok() ? WatchLeaseOf(engine.get(), c.name, *lease) : lease.status();
        if (!watched.ok()) {
          Say(LogLevel::kError, watched.message() + ": killing the container");
          (void)internal::DockerKillContainer(engine.get(), c.name, SIGKILL);
        }
      }
      struct stat st;
      if (stat((DirOf(c.name) + "/exited").c_str(), &st) == 0) continue;  // told already
      StartPump(c.name);
    }
    events_ = std::thread([this] { HearExits(); });
    return Status::OK();
  }

  std::string Name() const override { return "docker"; }

  Status PullImage(const std::string& image, const PullOptions& options) override {
    if (IsLocalRef(image)) return PullLocal(image, options);
    return PullRegistry(image, options);
  }

  Result<std::string> Create(const ContainerSpec& spec) override {
    const std::string what = "create " + spec.name;
    if (!spec.lease.empty() &&
        (spec.lease.path.empty() || spec.lease.path[0] != '/' || spec.lease.duration_ms <= 0)) {
      return Status::InvalidArgument(what + ": a lease is an absolute path and a duration above 0");
    }
    if (!ValidId(spec.name)) {
      return Status::InvalidArgument(what +
                                     ": a container name is letters, digits, '.', '_' and '-'");
    }
    PETREL_ASSIGN_OR_RETURN(const std::string docker_image, DockerImageOf(spec.image));
    json labels = json::object();
    for (const auto& [k, v] : spec.labels) labels[k] = v;
    labels[kOwnerLabel] = owner_;
    json config = {{"Image", docker_image}, {"Labels", labels}};
    if (!spec.command.empty()) {
      config["Entrypoint"] = spec.command;
      config["Cmd"] = spec.args;  // none: not the image's, as Kubernetes has it
    } else if (!spec.args.empty()) {
      config["Cmd"] = spec.args;
    }
    if (!spec.env.empty()) {
      json env = json::array();
      for (const auto& [k, v] : spec.env) env.push_back(k + "=" + v);
      config["Env"] = env;
    }
    if (!spec.working_dir.empty()) config["WorkingDir"] = spec.working_dir;
    if (!spec.user.empty()) config["User"] = spec.user;
    if (!spec.hostname.empty()) config["Hostname"] = spec.hostname;
    json host = {
        {"NetworkMode", spec.network == NetworkMode::kHost ? "host" : "none"},
        {"RestartPolicy", {{"Name", "no"}}},
        {"ReadonlyRootfs", spec.read_only_rootfs},
        {"LogConfig",
         {{"Type", "json-file"},
          {"Config",
           {{"max-size", std::to_string(std::max(options_.log_max_bytes, kDockerLogMinBytes))},
            {"max-file", "2"}}}}},
    };
    json mounts = json::array();
    for (const MountSpec& m : spec.mounts) {
      if (m.type == MountSpec::Type::kTmpfs) {
        json tmpfs = {{"Type", "tmpfs"}, {"Target", m.target}, {"ReadOnly", m.read_only}};
        if (m.size_bytes > 0) tmpfs["TmpfsOptions"] = {{"SizeBytes", m.size_bytes}};
        mounts.push_back(tmpfs);
      } else {
        mounts.push_back({{"Type", "bind"},
                          {"Source", m.source},
                          {"Target", m.target},
                          {"ReadOnly", m.read_only}});
      }
    }
    const std::string dir = DirOf(spec.name);
    if (!spec.hosts.empty()) {
      mounts.push_back({{"Type", "bind"}, {"Source", dir + "/hosts"}, {"Target", "/etc/hosts"}});
    }
    host["Mounts"] = mounts;
    const Resources& r = spec.resources;
    if (r.memory_bytes > 0) {
      host["Memory"] = r.memory_bytes;
      host["MemorySwap"] = r.memory_bytes;  // no swap: the limit is the limit
    }
    if (r.cpu_millis > 0) host["NanoCpus"] = r.cpu_millis * 1000000;
    if (r.pids > 0) host["PidsLimit"] = r.pids;
    const SecurityContext& sc = spec.security_context;
    if (sc.privileged) {
      host["Privileged"] = true;
    } else {
      if (!sc.capabilities_add.empty()) host["CapAdd"] = sc.capabilities_add;
      json drop = sc.capabilities_drop;
      // As petrel does on crun: raw sockets on the host's network see its traffic.
      const bool adds_raw = std::any_of(
          sc.capabilities_add.begin(), sc.capabilities_add.end(),
          [](const std::string& c) { return c == "NET_RAW" || c == "CAP_NET_RAW" || c == "ALL"; });
      if (spec.network == NetworkMode::kHost && !adds_raw) drop.push_back("NET_RAW");
      if (!drop.empty()) host["CapDrop"] = drop;
      if (sc.seccomp == SecurityContext::Seccomp::kUnconfined) {
        host["SecurityOpt"] = json::array({"seccomp=unconfined"});
      }
      if (r.all_devices) host["DeviceCgroupRules"] = json::array({"a *:* rwm"});
    }
    config["HostConfig"] = host;

    // The container's own files, fresh: a container of the same name before it is gone.
    PETREL_RETURN_IF_ERROR(internal::RemoveTree(dir));
    PETREL_RETURN_IF_ERROR(internal::MakeDirs(dir, 0700));
    if (!spec.hosts.empty())
      PETREL_RETURN_IF_ERROR(internal::RewriteFileInPlace(dir + "/hosts", spec.hosts, true));
    if (!spec.lease.empty()) {
      const json lease = {{"path", spec.lease.path}, {"duration_ms", spec.lease.duration_ms}};
      PETREL_RETURN_IF_ERROR(internal::WriteFileAtomic(dir + "/" + kLeaseFile, lease.dump()));
    }
    if (spec.network == NetworkMode::kBridge) {
      // What Start puts on the bridge: the ports to publish.
      json ports = json::array();
      for (const PortSpec& port : spec.ports) {
        ports.push_back({{"container_port", port.container_port},
                         {"host_port", port.host_port},
                         {"protocol", port.protocol},
                         {"host_ip", port.host_ip}});
      }
      PETREL_RETURN_IF_ERROR(internal::WriteFileAtomic(dir + "/bridge.json", ports.dump()));
    }
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    Result<std::string> id =
        internal::DockerCreateContainer(engine.get(), spec.name, config.dump());
    if (!id.ok()) {
      if (id.status().message().find("is already in use") != std::string::npos) {
        return Status::AlreadyExists(what + ": a container of that name exists");
      }
      (void)internal::RemoveTree(dir);
      return id.status().WithContext(what);
    }
    return spec.name;
  }

  Status Start(const std::string& id) override {
    if (!ValidId(id)) return Status::NotFound("start " + id + ": no such container");
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    PETREL_ASSIGN_OR_RETURN(DockerContainer c, InspectMine(engine.get(), id));
    if (c.status != "created") {
      return Status::FailedPrecondition("start " + id + ": it is " + c.status + ", not created");
    }
    PETREL_ASSIGN_OR_RETURN(const ContainerLease lease, LeaseOf(id));
    if (!lease.empty() && internal::LeaseExpired(internal::ReadLease(lease.path.c_str()),
                                                 lease.duration_ms, internal::LeaseClockNow())) {
      return Status::FailedPrecondition("start " + id + ": lease " + lease.path +
                                        " has run out: not starting the container");
    }
    Status started = internal::DockerStartContainer(engine.get(), id);
    if (!started.ok()) {
      // runc's words name the binary; the container stays, not running.
      return Status::InvalidArgument("start " + id + ": " + StartError(started.message()));
    }
    StartPump(id);
    Status attached = AttachBridge(engine.get(), id);
    if (!attached.ok()) {
      // A container that should be on the bridge and is not must not run on.
      (void)internal::DockerKillContainer(engine.get(), id, SIGKILL);
      return attached.WithContext("start " + id);
    }
    if (Status watched = WatchLeaseOf(engine.get(), id, lease); !watched.ok()) {
      // Nor may a container whose lease nothing enforces.
      (void)internal::DockerKillContainer(engine.get(), id, SIGKILL);
      return watched.WithContext("start " + id);
    }
    return Status::OK();
  }

  Status Kill(const std::string& id, int signal) override {
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    Status s = internal::DockerKillContainer(engine.get(), id, signal);
    if (s.code() == Status::Code::kFailedPrecondition) {
      // Not running (created, or exited): nothing to signal. Still petrel's to find.
      return InspectMine(engine.get(), id).status();
    }
    if (s.IsNotFound()) return Status::NotFound("kill " + id + ": no such container");
    return s;
  }

  Status Remove(const std::string& id) override {
    if (!ValidId(id)) return Status::NotFound("remove " + id + ": no such container");
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    PETREL_ASSIGN_OR_RETURN(DockerContainer c, InspectMine(engine.get(), id));
    if (c.running) return Status::FailedPrecondition("remove " + id + ": it is running");
    Status removed = internal::DockerRemoveContainer(engine.get(), id, false);
    if (!removed.ok() && !removed.IsNotFound()) return removed.WithContext("remove " + id);
    StopPump(id);
    PETREL_RETURN_IF_ERROR(DetachBridge(id));
    // Gone in one step for Logs; the files go after (or at a later Open).
    const std::string trash = containers_ + "/" + kTrashPrefix + id;
    PETREL_RETURN_IF_ERROR(internal::RemoveTree(trash));
    if (rename(DirOf(id).c_str(), trash.c_str()) != 0 && errno != ENOENT) {
      return internal::ErrnoError(DirOf(id), "rename", errno);
    }
    return internal::RemoveTree(trash);
  }

  Result<std::vector<ContainerInfo>> List(
      const std::map<std::string, std::string>& selector) override {
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    std::vector<std::string> filters = {OwnerFilter()};
    for (const auto& [k, v] : selector) filters.push_back(k + "=" + v);
    PETREL_ASSIGN_OR_RETURN(std::vector<DockerContainer> listed,
                            internal::DockerListContainers(engine.get(), filters));
    std::vector<ContainerInfo> out;
    for (const DockerContainer& summary : listed) {
      Result<DockerContainer> c = internal::DockerInspectContainer(engine.get(), summary.id);
      if (c.status().IsNotFound()) continue;  // removed meanwhile
      PETREL_RETURN_IF_ERROR(c.status());
      out.push_back(InfoOf(*c));
    }
    return out;
  }

  Result<ContainerInfo> Inspect(const std::string& id) override {
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    PETREL_ASSIGN_OR_RETURN(DockerContainer c, InspectMine(engine.get(), id));
    return InfoOf(c);
  }

  Result<LogChunk> Logs(const std::string& id, const LogOptions& options) override {
    const Status gone = Status::NotFound("logs of " + id + ": no such container");
    if (!ValidId(id)) return gone;
    // A Remove may move the directory away meanwhile (Logs may overlap with it): files
    // missing for that reason make the answer the Remove's.
    const std::string dir = DirOf(id);
    Result<LogChunk> chunk = internal::ReadLogFiles(dir, options);
    struct stat st;
    if (chunk.status().IsNotFound() || stat(dir.c_str(), &st) != 0) return gone;
    return chunk;
  }

  Result<ExecResult> Exec(const std::string& id, const ExecOptions& options) override {
    const std::string what = "exec in " + id;
    if (options.command.empty()) return Status::InvalidArgument(what + ": no command");
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    PETREL_ASSIGN_OR_RETURN(DockerContainer c, InspectMine(engine.get(), id));
    if (!c.running) return Status::FailedPrecondition(what + ": the container is not running");
    Result<std::string> exec_id = internal::DockerCreateExec(engine.get(), id, options.command);
    if (exec_id.status().code() == Status::Code::kFailedPrecondition) {
      return Status::FailedPrecondition(what + ": the container is not running");
    }
    PETREL_RETURN_IF_ERROR(exec_id.status().WithContext(what));
    PETREL_ASSIGN_OR_RETURN(PooledEngine stream, Engine());
    ExecResult result;
    const auto deadline = Clock::now() + std::chrono::milliseconds(options.timeout_ms);
    bool timed_out = false;
    Status ran = internal::DockerStartExec(
        stream.get(), *exec_id,
        [&](internal::DockerLogChunk chunk) {
          const size_t room =
              options.output_limit - std::min(options.output_limit, result.output.size());
          if (chunk.data.size() > room) result.truncated = true;
          result.output.append(chunk.data, 0, std::min(room, chunk.data.size()));
          return Status::OK();
        },
        [&] {
          if (Clock::now() < deadline) return false;
          timed_out = true;
          return true;
        });
    PETREL_RETURN_IF_ERROR(ran.WithContext(what));
    // The process, its group with it (runc makes it a group of its own), is gone before
    // Exec answers: after a timeout it is killed, and dockerd is asked until it has ended.
    for (;;) {
      Result<internal::DockerExec> e = internal::DockerInspectExec(engine.get(), *exec_id);
      if (e.status().IsNotFound()) break;  // its container is gone, and it with it
      PETREL_RETURN_IF_ERROR(e.status().WithContext(what));
      if (!e->running) {
        result.exit_code = e->exit_code;
        break;
      }
      if (timed_out && e->pid > 0) {
        (void)kill(-e->pid, SIGKILL);
        (void)kill(e->pid, SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (timed_out) {
      return Status::DeadlineExceeded(what + ": timed out after " +
                                      FormatDurationMs(options.timeout_ms));
    }
    // A command runc cannot start (dockerd answers 126 with runc's words as the output):
    // one not in the image is told as a shell tells it.
    if (result.exit_code == 126) {
      const std::string said = internal::RuncNotFoundWords(result.output, options.command[0]);
      if (!said.empty()) {
        result.exit_code = 127;
        result.output = said + "\n";
        result.truncated = false;
      }
    }
    return result;
  }

  Status SetHosts(const std::string& id, const std::string& hosts) override {
    if (!ValidId(id)) return Status::NotFound("set hosts of " + id + ": no such container");
    const std::string path = DirOf(id) + "/hosts";
    struct stat st;
    if (stat(DirOf(id).c_str(), &st) != 0)
      return Status::NotFound("set hosts of " + id + ": no such container");
    if (stat(path.c_str(), &st) != 0) {
      return Status::FailedPrecondition("set hosts of " + id + ": it was created without hosts");
    }
    return internal::RewriteFileInPlace(path, hosts, false);
  }

  Result<std::vector<ImageInfo>> ListImages() override {
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    std::lock_guard<std::mutex> lock(images_mu_);
    PETREL_ASSIGN_OR_RETURN(json images, LoadImagesLocked());
    PETREL_ASSIGN_OR_RETURN(std::set<std::string> used, ImagesInUse(engine.get()));
    std::map<std::string, ImageInfo> by_id;
    std::vector<std::string> order;
    for (auto& [ref, e] : images.items()) {
      Result<internal::DockerImage> image =
          internal::DockerInspectImage(engine.get(), e.value("tag", ""));
      if (!image.ok()) continue;  // gone from dockerd
      ImageInfo& info = by_id[image->id];
      if (info.id.empty()) {
        order.push_back(image->id);
        info.id = image->id;
        info.size_bytes = image->size;
        info.created_at = e.value("created_ms", int64_t{0});
        info.in_use = used.count(image->id) > 0;
      }
      info.refs.push_back(ref);
    }
    std::vector<ImageInfo> out;
    for (const std::string& id : order) out.push_back(by_id[id]);
    std::sort(out.begin(), out.end(),
              [](const ImageInfo& a, const ImageInfo& b) { return a.created_at < b.created_at; });
    return out;
  }

  Status RemoveImage(const std::string& ref) override {
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    std::lock_guard<std::mutex> lock(images_mu_);
    PETREL_ASSIGN_OR_RETURN(json images, LoadImagesLocked());
    // By a reference it came by, or by its id: every reference to that image goes.
    std::string id;
    if (images.contains(ref)) {
      Result<internal::DockerImage> image =
          internal::DockerInspectImage(engine.get(), images[ref].value("tag", ""));
      if (image.ok()) id = image->id;
    }
    std::vector<std::pair<std::string, std::string>> refs;  // (ref, tag)
    for (auto& [r, e] : images.items()) {
      Result<internal::DockerImage> image =
          internal::DockerInspectImage(engine.get(), e.value("tag", ""));
      if (!image.ok()) continue;
      if (r == ref || image->id == ref || image->id == id) {
        id = image->id;
        refs.emplace_back(r, e.value("tag", ""));
      }
    }
    if (refs.empty()) return Status::NotFound(ref + ": no such image");
    PETREL_ASSIGN_OR_RETURN(std::vector<DockerContainer> mine,
                            internal::DockerListContainers(engine.get(), {OwnerFilter()}));
    for (const DockerContainer& c : mine) {
      Result<DockerContainer> full = internal::DockerInspectContainer(engine.get(), c.id);
      if (full.ok() && ImageIdOf(engine.get(), full->image) == id) {
        return Status::FailedPrecondition(ref + ": in use by container " + c.name);
      }
    }
    for (const auto& [r, tag] : refs) {
      Result<bool> removed = internal::DockerRemoveImage(engine.get(), tag);
      if (!removed.ok() && !removed.status().IsNotFound()) return removed.status().WithContext(ref);
      images.erase(r);
    }
    return SaveImagesLocked(images);
  }

  Result<PruneResult> PruneImages() override {
    PETREL_ASSIGN_OR_RETURN(std::vector<ImageInfo> images, ListImages());
    PruneResult result;
    for (const ImageInfo& image : images) {
      if (image.in_use) continue;
      Status s = RemoveImage(image.id);
      if (s.code() == Status::Code::kFailedPrecondition || s.IsNotFound()) continue;  // since
      PETREL_RETURN_IF_ERROR(s);
      result.removed.push_back(image.id);
      result.bytes_freed += image.size_bytes;
    }
    return result;
  }

  // Takes back an engine that Engine() gave (EngineBack, when it goes).
  void GiveBack(DockerEngine* engine) {
    std::unique_ptr<DockerEngine> owned(engine);
    if (engine->was_cut()) return;  // good for nothing more
    std::lock_guard<std::mutex> lock(engines_mu_);
    if (idle_engines_.size() < kIdleEngines) idle_engines_.push_back(std::move(owned));
  }

  void SetExitHandler(ExitHandler handler) override {
    std::lock_guard<std::mutex> lock(handler_mu_);
    handler_ = std::move(handler);
  }

 private:
  // An engine on a connection of its own.
  // An engine for one call or stream: an idle one (its connection kept, its version
  // negotiated) or a new one; back to the idle ones when the caller is done with it.
  Result<PooledEngine> Engine() {
    {
      std::lock_guard<std::mutex> lock(engines_mu_);
      if (!idle_engines_.empty()) {
        PooledEngine engine(idle_engines_.back().release(), EngineBack{this});
        idle_engines_.pop_back();
        return engine;
      }
    }
    DockerEngine::Options o;
    o.socket_path = socket_;
    o.timeout = kCallTimeout;
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<DockerEngine> engine, DockerEngine::Open(o));
    return PooledEngine(engine.release(), EngineBack{this});
  }

  // Whether `id` can name a container of this runtime: a container name, never a path.
  static bool ValidId(const std::string& id) { return internal::IsPlainName(id, 128); }

  std::string OwnerFilter() const { return std::string(kOwnerLabel) + "=" + owner_; }
  std::string DirOf(const std::string& name) const { return containers_ + "/" + name; }

  // Container `id` when it is this runtime's; NotFound otherwise.
  Result<DockerContainer> InspectMine(DockerEngine* engine, const std::string& id) const {
    Result<DockerContainer> c = internal::DockerInspectContainer(engine, id);
    if (c.status().IsNotFound() ||
        (c.ok() && (c->labels.count(kOwnerLabel) == 0 || c->labels.at(kOwnerLabel) != owner_))) {
      return Status::NotFound(id + ": no such container");
    }
    return c;
  }

  void Say(LogLevel level, const std::string& message) const {
    if (options_.log_sink) options_.log_sink(level, "docker adapter: " + message);
  }

  // The lease container `id` was created with (ContainerSpec::lease): none when it has
  // none.
  Result<ContainerLease> LeaseOf(const std::string& id) const {
    const std::string file = DirOf(id) + "/" + kLeaseFile;
    Result<std::string> text = internal::ReadSmallFile(file, 64 << 10);
    if (text.status().IsNotFound()) return ContainerLease{};
    PETREL_RETURN_IF_ERROR(text.status());
    PETREL_ASSIGN_OR_RETURN(const json j, internal::ParseJson(*text, file));
    ContainerLease lease;
    if (j.is_object()) {
      lease.path = j.value("path", "");
      lease.duration_ms = j.value("duration_ms", int64_t{0});
    }
    if (lease.path.empty() || lease.duration_ms <= 0) {
      return Status::Corruption(file + ": not a lease");
    }
    return lease;
  }

  // Has running container `id`'s lease (LeaseOf) enforced by a process of its own, a watcher
  // (lib/util/lease.h: it outlives petrel, and SIGKILLs the container's init once the
  // lease runs out), unless one watches it already. OK when it has no lease, or has
  // ended. The watcher says what it did in the container's lease.log.
  Status WatchLeaseOf(DockerEngine* engine, const std::string& id, const ContainerLease& lease) {
    if (lease.empty()) return Status::OK();
    PETREL_ASSIGN_OR_RETURN(const DockerContainer c, InspectMine(engine, id));
    if (!c.running || c.pid <= 0) return Status::OK();
    const internal::LeaseWatchPlan plan{lease, c.pid, DirOf(id) + "/lease.lock",
                                        DirOf(id) + "/" + kLeaseSaidFile};
    Status watched = internal::WatchLease(plan, [&]() -> Status {
      PETREL_ASSIGN_OR_RETURN(const DockerContainer again, InspectMine(engine, id));
      if (!again.running || again.pid != c.pid) return Status::NotFound(id + " has ended");
      return Status::OK();
    });
    if (watched.IsNotFound()) return Status::OK();  // ended: nothing left to enforce
    return watched.WithContext("lease of " + id);
  }

  // Waits, a while at most, for the pump of exited container `name` to have written all
  // its output: an exit is told once the output is whole, as on crun.
  void AwaitDrained(const std::string& name) {
    std::unique_lock<std::mutex> lock(mu_);
    drained_cv_.wait_for(lock, kDrainWait, [&] {
      auto it = pumps_.find(name);
      return it == pumps_.end() || it->second->drained;
    });
  }

  ContainerInfo InfoOf(const DockerContainer& c) {
    ContainerInfo info;
    info.id = c.name;
    info.name = c.name;
    info.labels = c.labels;
    info.labels.erase(kOwnerLabel);
    if (c.status == "created") {
      info.state = ContainerState::kCreated;
    } else if (c.running) {
      info.state = ContainerState::kRunning;
      info.pid = c.pid;
    } else {
      AwaitDrained(c.name);
      info.state = ContainerState::kExited;
      info.exit_code = c.exit_code;
      if (c.oom_killed) info.exit_reason = "OOMKilled";
    }
    if (info.state == ContainerState::kRunning) {
      if (Result<std::string> a = internal::ReadSmallFile(DirOf(c.name) + "/address", 64); a.ok()) {
        info.address = *a;
      }
    }
    info.created_at = MillisOf(c.created_at);
    info.started_at = MillisOf(c.started_at);
    // dockerd stamps StartedAt once containerd's start has answered and FinishedAt with
    // the exit's own time: a process that ends at once can end "before" it started.
    info.finished_at = info.state == ContainerState::kExited
                           ? std::max(MillisOf(c.finished_at), info.started_at)
                           : 0;
    return info;
  }

  // The name of container `name`'s network namespace and bridge attachment: unique to
  // this state dir, short enough for a namespace's name.
  std::string NetId(const std::string& name) const {
    return "petrel-" + internal::Sha256Hex(containers_ + "/" + name).substr(0, 16);
  }

  // Puts the network namespace dockerd made for container `id` on petrel's bridge, when
  // it asked for it: kept by name first, so that it can be detached once the container
  // is gone. The address goes into its files for Inspect.
  Status AttachBridge(DockerEngine* engine, const std::string& id) {
    const std::string dir = DirOf(id);
    Result<std::string> wanted = internal::ReadSmallFile(dir + "/bridge.json", 1 << 20);
    if (wanted.status().IsNotFound()) return Status::OK();
    PETREL_RETURN_IF_ERROR(wanted.status());
    PETREL_ASSIGN_OR_RETURN(json list, internal::ParseJson(*wanted, dir + "/bridge.json"));
    std::vector<PortSpec> ports;
    for (const json& p : list) {
      PortSpec port;
      port.container_port = p.value("container_port", 0);
      port.host_port = p.value("host_port", 0);
      port.protocol = p.value("protocol", "tcp");
      port.host_ip = p.value("host_ip", "");
      ports.push_back(port);
    }
    PETREL_ASSIGN_OR_RETURN(DockerContainer c, InspectMine(engine, id));
    if (!c.running || c.pid <= 0) return Status::OK();  // ended already: nothing to attach
    PETREL_ASSIGN_OR_RETURN(int fd, port_->OpenNetnsOf(c.pid));
    internal::UniqueFd netns(fd);
    // The pid is still the container's (not one reused after a quick exit): the
    // namespace opened is its.
    PETREL_ASSIGN_OR_RETURN(DockerContainer again, InspectMine(engine, id));
    if (!again.running || again.pid != c.pid) return Status::OK();
    const std::string net = NetId(id);
    PETREL_RETURN_IF_ERROR(port_->DetachNetwork(net));  // a leftover of the same name
    PETREL_RETURN_IF_ERROR(port_->DeleteNetns(net));
    PETREL_RETURN_IF_ERROR(port_->KeepNetns(net, netns.get()));
    PETREL_ASSIGN_OR_RETURN(const std::string address,
                            port_->AttachNetwork(net, port_->NetnsPath(net), ports));
    return internal::WriteFileAtomic(dir + "/address", address);
  }

  // Undoes AttachBridge: OK when the container was never on the bridge.
  Status DetachBridge(const std::string& id) {
    struct stat st;
    if (stat((DirOf(id) + "/bridge.json").c_str(), &st) != 0) return Status::OK();
    const std::string net = NetId(id);
    PETREL_RETURN_IF_ERROR(port_->DetachNetwork(net));
    return port_->DeleteNetns(net);
  }

  // What a failed start's message says, without dockerd's wrapping.
  static std::string StartError(const std::string& message) {
    const size_t at = message.find("OCI runtime");
    return at == std::string::npos ? message : message.substr(at);
  }

  // ---- Images.

  // The Docker name of a local image for this runtime: its tag, from the file's
  // identity, so that a changed file is another image.
  Result<std::string> LocalTag(const std::string& ref) const {
    Result<internal::LocalRef> parsed = internal::ParseLocalRef(ref);
    if (!parsed.ok()) return parsed.status().WithContext(ref);
    PETREL_ASSIGN_OR_RETURN(const struct stat st, internal::StatLocalImage(ref, *parsed));
    const std::string identity = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
                                 std::to_string(st.st_size) + ":" +
                                 std::to_string(st.st_mtim.tv_sec) + "." +
                                 std::to_string(st.st_mtim.tv_nsec);
    return "petrel.local/" + owner_ + "/" + internal::Sha256Hex(ref).substr(0, 16) + ":" +
           internal::Sha256Hex(identity).substr(0, 16);
  }

  // The name dockerd knows the image `ref` by.
  Result<std::string> DockerImageOf(const std::string& ref) const {
    if (!IsLocalRef(ref)) return ref;
    Result<std::string> tag = LocalTag(ref);
    if (!tag.ok()) return Status::NotFound(tag.status().message());
    return tag;
  }

  Status PullLocal(const std::string& ref, const PullOptions& options) {
    PETREL_ASSIGN_OR_RETURN(const std::string tag, LocalTag(ref));
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    if (internal::DockerInspectImage(engine.get(), tag).ok()) return Remember(ref, tag);
    if (options.policy == PullPolicy::kNever) {
      return Status::FailedPrecondition(ref + ": not present, and imagePullPolicy is Never");
    }
    Report(options, "unpacking", 0, 0);
    // The archive, as a docker-archive, written by a thread into a pipe that dockerd
    // reads from the other end.
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return internal::ErrnoError(ref, "pipe", errno);
    internal::UniqueFd read_end(fds[0]);
    auto write_end = std::make_shared<internal::UniqueFd>(fds[1]);
    const size_t colon = tag.rfind(':');
    Result<std::string> written = Status::Internal("not written");
    std::thread writer([&, write_end] {
      // A dockerd that stops reading gives this thread EPIPE, not the process SIGPIPE
      // (an embedder may not ignore it as petreld does).
      sigset_t pipe_only;
      sigemptyset(&pipe_only);
      sigaddset(&pipe_only, SIGPIPE);
      pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);
      internal::ArchiveUse use;
      written = use.status().ok() ? internal::WriteDockerArchiveOf(ref, {}, write_end->get())
                                  : Result<std::string>(use.status());
      write_end->reset();
    });
    DockerEngine::Upload upload;
    upload.read = [&](char* buf, size_t size) -> Result<size_t> {
      for (;;) {
        const ssize_t n = read(read_end.get(), buf, size);
        if (n >= 0) return static_cast<size_t>(n);
        if (errno != EINTR) return internal::ErrnoError(ref, "read", errno);
      }
    };
    Result<std::vector<std::string>> loaded = internal::DockerLoadImage(engine.get(), upload);
    read_end.reset();  // a writer still writing gets EPIPE
    writer.join();
    if (!written.ok()) return written.status();
    PETREL_RETURN_IF_ERROR(loaded.status().WithContext(ref));
    // Loaded untagged: named by its id; tagged here.
    PETREL_RETURN_IF_ERROR(internal::DockerTagImage(engine.get(), *written, tag.substr(0, colon),
                                                    tag.substr(colon + 1))
                               .WithContext(ref));
    Report(options, "unpacking", 1, 1);
    return Remember(ref, tag);
  }

  Status PullRegistry(const std::string& ref, const PullOptions& options) {
    PETREL_ASSIGN_OR_RETURN(PooledEngine engine, Engine());
    const bool present = internal::DockerInspectImage(engine.get(), ref).ok();
    if (present && options.policy != PullPolicy::kAlways) return Remember(ref, ref);
    if (!present && options.policy == PullPolicy::kNever) {
      return Status::FailedPrecondition(ref + ": not present, and imagePullPolicy is Never");
    }
    // Spelled out: a fromImage without a tag would pull every tag of the repository.
    Result<internal::ImageReference> parsed = internal::ParseImageReference(ref);
    if (!parsed.ok()) return parsed.status().WithContext(ref);
    std::string registry_auth;
    if (auth_) {
      // A helper may run here (a process): on the pulling worker, as crun's pull does.
      PETREL_ASSIGN_OR_RETURN(
          std::optional<internal::RegistryCredential> credential,
          internal::CredentialFor(*auth_, internal::RegistryAuthKey(parsed->domain)));
      if (credential) {
        registry_auth = internal::DockerRegistryAuth(credential->user, credential->password,
                                                     credential->identity_token, parsed->domain);
      }
    }
    std::map<std::string, std::pair<int64_t, int64_t>> layers;
    Status s = internal::DockerPullImage(
        engine.get(), parsed->Canonical(), registry_auth,
        [&](const internal::DockerPullStatus& st) {
          if (!st.id.empty() && st.total > 0) layers[st.id] = {st.current, st.total};
          int64_t done = 0, total = 0;
          for (const auto& [id, l] : layers) {
            done += l.first;
            total += l.second;
          }
          Report(options, "downloading", done, total);
        },
        [&] { return options.cancelled && options.cancelled(); });
    if (engine->stopped()) return Status::Unavailable(ref + ": pull cancelled");
    PETREL_RETURN_IF_ERROR(s.WithContext(ref));
    return Remember(ref, ref);
  }

  static void Report(const PullOptions& options, const char* phase, int64_t done, int64_t total) {
    if (!options.progress) return;
    PullProgress p;
    p.phase = phase;
    p.bytes_done = done;
    p.bytes_total = total;
    options.progress(p);
  }

  Status Remember(const std::string& ref, const std::string& tag) {
    std::lock_guard<std::mutex> lock(images_mu_);
    PETREL_ASSIGN_OR_RETURN(json images, LoadImagesLocked());
    if (images.contains(ref) && images[ref].value("tag", "") == tag) return Status::OK();
    int64_t now = MillisOf(std::chrono::system_clock::now());
    images[ref] = {{"tag", tag}, {"created_ms", now}};
    return SaveImagesLocked(images);
  }

  Result<json> LoadImagesLocked() const {
    Result<std::string> text =
        internal::ReadSmallFile(options_.state_dir + "/images.json", 16 << 20);
    if (text.status().IsNotFound()) return json::object();
    PETREL_RETURN_IF_ERROR(text.status());
    PETREL_ASSIGN_OR_RETURN(json j,
                            internal::ParseJson(*text, options_.state_dir + "/images.json"));
    if (!j.is_object()) return json::object();
    return j;
  }

  Status SaveImagesLocked(const json& images) const {
    return internal::WriteFileAtomic(options_.state_dir + "/images.json", images.dump());
  }

  // The image id `name` (a tag, a reference or an id) stands for in dockerd, "" for none.
  static std::string ImageIdOf(DockerEngine* engine, const std::string& name) {
    Result<internal::DockerImage> image = internal::DockerInspectImage(engine, name);
    return image.ok() ? image->id : std::string();
  }

  // The ids of the images this runtime's containers were made from.
  Result<std::set<std::string>> ImagesInUse(DockerEngine* engine) const {
    PETREL_ASSIGN_OR_RETURN(std::vector<DockerContainer> mine,
                            internal::DockerListContainers(engine, {OwnerFilter()}));
    std::set<std::string> used;
    for (const DockerContainer& c : mine) {
      Result<DockerContainer> full = internal::DockerInspectContainer(engine, c.id);
      if (full.ok()) used.insert(ImageIdOf(engine, full->image));
    }
    return used;
  }

  // ---- Log pumps.

  void StartPump(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_ || pumps_.count(name) > 0) return;
    auto pump = std::make_unique<Pump>();
    Pump* p = pump.get();
    pump->thread = std::thread([this, name, p] { PumpLoop(name, p); });
    pumps_[name] = std::move(pump);
  }

  void StopPump(const std::string& name) {
    std::unique_ptr<Pump> pump;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pumps_.find(name);
      if (it == pumps_.end()) return;
      pump = std::move(it->second);
      pumps_.erase(it);
    }
    Stop(pump.get());
    pump->thread.join();
  }

  // Tells pump `p` to stop, its stream cut at once.
  void Stop(Pump* p) {
    std::lock_guard<std::mutex> lock(mu_);
    p->stop = true;
    if (p->engine != nullptr) p->engine->Cut();
  }

  // Notes (under mu_) the engine `slot` streams on, unless told to stop meanwhile
  // (`stop`): whether to stream.
  bool Streaming(DockerEngine** slot, DockerEngine* engine, const std::atomic<bool>& stop) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop) return false;
    *slot = engine;
    return true;
  }
  void Streamed(DockerEngine** slot) {
    std::lock_guard<std::mutex> lock(mu_);
    *slot = nullptr;
  }

  // Follows the output of container `name` into its files until it exits (then tells
  // the exit if dockerd has said it died), is removed, or the pump is stopped.
  void PumpLoop(const std::string& name, Pump* p) {
    const std::string dir = DirOf(name);
    internal::LogPaths paths = internal::MakeLogPaths(dir);
    internal::LogWriter w{paths.a.data(), paths.b.data(), paths.digits_at, options_.log_max_bytes};
    w.lost_prefix = "petrel-docker: ";
    (void)internal::ResumeLogWriter(dir, &w);
    w.Open();
    int64_t since = 0;
    if (Result<std::string> text = internal::ReadSmallFile(dir + "/since", 64); text.ok()) {
      since = std::strtoll(text->c_str(), nullptr, 10);
    }
    int64_t saved = since;
    auto save = [&] {
      if (since == saved) return;
      if (internal::WriteFileAtomic(dir + "/since", std::to_string(since)).ok()) saved = since;
    };
    auto last_save = Clock::now();
    std::chrono::milliseconds backoff{100};
    while (!p->stop) {
      Result<PooledEngine> engine = Engine();
      if (engine.ok() && Streaming(&p->engine, engine->get(), p->stop)) {
        const auto since_time = std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::nanoseconds(since)));
        // What this stream repeats of an earlier one's: dockerd's `since` keeps the
        // messages of that very time. Only those are skipped: within one stream the
        // times need not rise, as dockerd stamps stdout and stderr apart, and a
        // message of one may come after a later-stamped one of the other.
        const int64_t resumed_after = since;
        Status s = internal::DockerLogs(
            engine->get(), name, true, true, since_time,
            [&](internal::DockerLogChunk chunk) {
              // "<time> <output>": dockerd's time of each message.
              const size_t space = chunk.data.find(' ');
              if (space == std::string::npos) return Status::OK();
              Result<std::chrono::system_clock::time_point> t =
                  internal::DockerParseTime(std::string_view(chunk.data).substr(0, space));
              if (!t.ok()) return Status::OK();
              const int64_t ns = NanosOf(*t);
              if (ns <= resumed_after) return Status::OK();  // written before a reconnect
              w.Write(chunk.data.data() + space + 1, chunk.data.size() - space - 1);
              since = std::max(since, ns);
              if (Clock::now() - last_save >= kSinceEvery) {
                save();
                last_save = Clock::now();
              }
              return Status::OK();
            },
            [p] { return p->stop.load(); });
        Streamed(&p->engine);
        if (p->stop) break;
        if (s.ok() || s.IsNotFound()) {
          // The stream ended: the container stopped, or is gone, or dockerd is going.
          Result<DockerContainer> c = internal::DockerInspectContainer(engine->get(), name);
          if (c.status().IsNotFound()) break;
          if (c.ok() && !c->running && c->status != "created") break;
        }
      }
      // dockerd away or restarting: again, after a while.
      for (auto until = Clock::now() + backoff; Clock::now() < until && !p->stop;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
    save();
    w.Close();
    bool tell;
    {
      std::lock_guard<std::mutex> lock(mu_);
      p->drained = true;
      tell = TellsNow(p);
    }
    drained_cv_.notify_all();
    if (tell) TellExit(name, p->exit_code);
  }

  // ---- Exits: dockerd's /events stream, and a listing after each break in it.

  // Whether the exit of the container of pump `p` is to be told now (both halves known,
  // not told yet); when so, it is told by the caller. Under mu_.
  static bool TellsNow(Pump* p) {
    if (p->told || !p->died || !p->drained) return false;
    p->told = true;
    return true;
  }

  // Tells the exit of container `name`: its file first, so that a later petrel does not
  // tell it again.
  void TellExit(const std::string& name, int exit_code) {
    (void)internal::WriteFileAtomic(DirOf(name) + "/exited", std::to_string(exit_code));
    std::lock_guard<std::mutex> lock(handler_mu_);
    if (handler_) handler_(name, exit_code);
  }

  // dockerd says container `name` ended with `exit_code`: told once its output is all in
  // its files. Nothing for a container with no pump (removed, or told by an earlier
  // petrel).
  void Died(const std::string& name, int exit_code) {
    bool tell;
    Pump* p;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pumps_.find(name);
      if (it == pumps_.end() || it->second->died) return;
      p = it->second.get();
      p->died = true;
      p->exit_code = exit_code;
      tell = TellsNow(p);
    }
    if (tell) TellExit(name, exit_code);
  }

  // The containers of this runtime that ended while nobody listened (before the events
  // stream was there, or during a break in it): each one's exit as dockerd says it.
  // Whether dockerd answered.
  bool DiedUnheard(DockerEngine* engine) {
    Result<std::vector<DockerContainer>> mine =
        internal::DockerListContainers(engine, {OwnerFilter()});
    if (!mine.ok()) return false;  // the next round lists again
    for (const DockerContainer& listed : *mine) {
      if (listed.running || listed.status == "created") continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = pumps_.find(listed.name);
        if (it == pumps_.end() || it->second->died) continue;
      }
      Result<DockerContainer> c = internal::DockerInspectContainer(engine, listed.name);
      if (c.ok() && !c->running) Died(listed.name, c->exit_code);
    }
    return true;
  }

  // The thread that hears this runtime's containers end: dockerd's /events of containers
  // with its label, from a moment before each (re)connection, after a listing of those
  // that ended before it; again after a break (dockerd restarted), backing off.
  void HearExits() {
    std::chrono::milliseconds backoff{100};
    bool warned = false;  // once per break
    while (!events_stop_) {
      // dockerd keeps its last events: from a second before the listing, none is missed.
      const auto since = std::chrono::system_clock::now() - std::chrono::seconds(1);
      Result<PooledEngine> engine = Engine();
      if (engine.ok() && Streaming(&events_engine_, engine->get(), events_stop_)) {
        if (DiedUnheard(engine->get())) warned = false;
        Status s = internal::DockerEvents(
            engine->get(), {OwnerFilter()}, since,
            [&](internal::DockerEvent e) {
              backoff = std::chrono::milliseconds(100);
              if (e.type != "container" || e.action != "die") return Status::OK();
              auto name = e.attributes.find("name");
              auto code = e.attributes.find("exitCode");
              if (name == e.attributes.end() || code == e.attributes.end()) return Status::OK();
              Died(name->second, static_cast<int>(std::strtol(code->second.c_str(), nullptr, 10)));
              return Status::OK();
            },
            [this] { return events_stop_.load(); });
        Streamed(&events_engine_);
        if (!s.ok() && !events_stop_ && !warned) {
          Say(LogLevel::kWarn, "events: " + s.message() + " (listening again)");
          warned = true;
        }
      }
      for (auto until = Clock::now() + backoff; Clock::now() < until && !events_stop_;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
  }

  const DockerOptions options_;
  const std::optional<internal::RegistryAuth> auth_;  // from registry_auth_file
  const std::shared_ptr<Port> port_;
  const std::string socket_;
  const std::string owner_;
  const std::string containers_;

  std::mutex mu_;  // guards pumps_, closing_, each pump's engine and exit fields, events_engine_
  std::condition_variable drained_cv_;
  std::map<std::string, std::unique_ptr<Pump>> pumps_;
  bool closing_ = false;

  std::mutex handler_mu_;
  ExitHandler handler_;

  std::thread events_;  // HearExits
  std::atomic<bool> events_stop_{false};
  DockerEngine* events_engine_ = nullptr;  // while it streams (under mu_): for Cut

  std::mutex images_mu_;  // guards images.json

  std::mutex engines_mu_;  // guards idle_engines_
  std::vector<std::unique_ptr<DockerEngine>> idle_engines_;
};

void EngineBack::operator()(DockerEngine* engine) const { runtime->GiveBack(engine); }

}  // namespace

Result<std::string> DockerSocketPath(const std::string& endpoint) {
  if (endpoint.empty()) return std::string(kDefaultSocket);
  std::string path = endpoint;
  if (path.rfind(kUnixScheme, 0) == 0) path = path.substr(sizeof(kUnixScheme) - 1);
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string::npos) {
    return Status::InvalidArgument("runtime docker: endpoint \"" + endpoint +
                                   "\": not unix:///PATH or an absolute socket path");
  }
  return path;
}

Result<std::shared_ptr<ContainerRuntime>> NewDockerRuntime(const DockerOptions& options) {
  PETREL_ASSIGN_OR_RETURN(const std::string socket, DockerSocketPath(options.endpoint));
  if (options.state_dir.empty() || options.state_dir[0] != '/') {
    return Status::InvalidArgument("runtime docker: state_dir must be an absolute path");
  }
  if (options.log_max_bytes <= 0) {
    return Status::InvalidArgument("runtime docker: log_max_bytes must be above 0");
  }
  DockerOptions o = options;
  if (!o.log_sink) o.log_sink = StderrLogSink();
  if (!o.port) o.port = DefaultPort();
  std::optional<internal::RegistryAuth> auth;
  if (!o.registry_auth_file.empty()) {
    PETREL_ASSIGN_OR_RETURN(auth, internal::ReadRegistryAuth(o.registry_auth_file));
  }
  auto runtime = std::make_shared<DockerRuntime>(std::move(o), socket, std::move(auth));
  PETREL_RETURN_IF_ERROR(runtime->Open().WithContext("runtime docker"));
  return std::shared_ptr<ContainerRuntime>(runtime);
}

Status RegisterDockerRuntime(RuntimeRegistry* registry) {
  auto factory = [](const RuntimeConfig& config) -> Result<std::shared_ptr<ContainerRuntime>> {
    if (config.state_dir.empty())
      return Status::InvalidArgument("runtime docker: state_dir is required");
    DockerOptions o;
    o.state_dir = config.state_dir + "/docker";
    o.endpoint = config.endpoint;
    o.log_sink = config.log_sink;
    o.port = config.port;
    o.registry_auth_file = config.registry.auth_file;
    return NewDockerRuntime(o);
  };
  return registry->Register(
      {"docker", "dockerd's containers and images (--runtime-endpoint)", factory});
}

}  // namespace petrel
