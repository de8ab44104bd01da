// CrunRuntime: petrel::ContainerRuntime over the OCI runtime CLI (crun or runc).
//
// State lives in files, so a restarted petrel adopts what an earlier one started:
//   <state>/containers/<id>/config.json   the bundle's config; rootfs/ beside it
//   <state>/containers/<id>/meta.json     name, labels, image (and its id: what keeps the
//                                         image from removal), cgroup parent and cgroups,
//                                         created_at, lease;
//                                         written last: a dir without it is half-made
//   <state>/containers/<id>/{init.pid, shim.pid, shim.lock, exit, log.*}  (shim.h)
//
// Create prepares the bundle only; Start hands it to a shim that runs
// `<runtime> run --detach`: one runtime process per container start, as a
// hand-written script would use. A container is "created" while it has a bundle and
// no shim, "running" while its shim lives, "exited" once the shim wrote its exit.
// Leases (ContainerSpec::lease) are enforced by the shim, which outlives petrel: it
// reads the lease file every 100 ms and SIGKILLs the container once it has run out.
//   <state>/runtime/                      the runtime's --root
//   <state>/images/                       the image store
//   <state>/exits.sock                    shims say "<id>" here when a container ends
//   <state>/exec/<id>.<n>.{json,pid,log}  one Exec's process.json, the runtime's pid file
//                                         and log; gone when it returns
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "lib/image/image_store.h"
#include "lib/oci/runtime_config.h"
#include "lib/spec/image_ref.h"
#include "lib/util/dir_lock.h"
#include "lib/util/fs.h"
#include "lib/util/log_files.h"
#include "lib/util/process.h"
#include "lib/util/sha256.h"
#include "lib/util/strings.h"
#include "petrel/clock.h"
#include "petrel/crun.h"
#include "petrel/spec.h"
#include "runtime-adapters/crun/shim.h"

namespace petrel {
namespace {

using internal::DirEntry;
using internal::ErrnoError;
using internal::ListDir;
using internal::MakeDurableDirs;
using internal::ReadLogFiles;
using internal::ReadSmallFile;
using internal::ReadSmallFileInRoot;
using internal::UniqueFd;
using internal::WriteFileAtomic;
using nlohmann::json;

constexpr char kMetaFile[] = "meta.json";
constexpr char kTrashPrefix[] = ".removing-";
// A container whose files were found damaged, kept for a look (the last one per name).
constexpr char kDamagedPrefix[] = ".damaged-";
// Bounds for files read whole: pid and exit files; meta, logs of the runtime, passwd.
constexpr size_t kSmallFile = 256;
constexpr size_t kLogFile = 1 << 20;

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Runs a short command, waits, and gives its exit status and combined output.
Status RunCommand(const std::vector<std::string>& argv, int* status, std::string* output) {
  internal::ProcessOptions options;
  options.merge_stderr = true;
  internal::ProcessResult result;
  Status s = internal::RunProcess(argv, options, &result);
  if (!s.ok()) {
    // A runtime binary gone (mid-upgrade) must not read as a container gone.
    return s.IsNotFound() ? Status::Unavailable(s.message()) : s;
  }
  *status = result.status;
  *output = std::move(result.out);
  return Status::OK();
}

// The last non-empty line of `text`, with runc's JSON log format unwrapped.
std::string LastLine(const std::string& text) {
  size_t end = text.find_last_not_of("\r\n \t");
  if (end == std::string::npos) return "";
  size_t start = text.find_last_of('\n', end);
  std::string line = text.substr(start == std::string::npos ? 0 : start + 1, end - start);
  if (start == std::string::npos) line = text.substr(0, end + 1);
  json j = json::parse(line, nullptr, false);
  if (j.is_object() && j.contains("msg") && j["msg"].is_string()) return j["msg"];
  return line;
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

// The message of the last error in a runtime's JSON log ("" when none): crun and runc
// write one object a line, {"level": "error", "msg": "..."}.
std::string RuntimeError(const std::string& log) {
  std::string error;
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    json j = json::parse(log.substr(start, end - start), nullptr, false);
    if (j.is_object() && j.value("level", "") == "error" && j.contains("msg") &&
        j["msg"].is_string()) {
      error = j["msg"].get<std::string>();
    }
    start = end + 1;
  }
  return error;
}

// The state letter, parent and process group of process `pid`, from /proc/<pid>/stat;
// false when there is no such process (any more).
bool ProcStat(pid_t pid, char* state, pid_t* parent, pid_t* group) {
  Result<std::string> stat = ReadSmallFile("/proc/" + std::to_string(pid) + "/stat", kLogFile);
  if (!stat.ok()) return false;
  // "<pid> (<comm>) <state> <ppid> <pgrp> ...": comm may hold anything, ')' too.
  const size_t close = stat->rfind(')');
  if (close == std::string::npos) return false;
  int ppid = 0, pgrp = 0;
  if (sscanf(stat->c_str() + close + 1, " %c %d %d", state, &ppid, &pgrp) != 3) return false;
  *parent = ppid;
  *group = pgrp;
  return true;
}

bool ParentAndGroup(pid_t pid, pid_t* parent, pid_t* group) {
  char state = 0;
  return ProcStat(pid, &state, parent, group);
}

// Whether process `pid` has ended: gone, or a zombie its parent has not reaped yet.
bool ProcessEnded(pid_t pid) {
  char state = 0;
  pid_t parent = 0, group = 0;
  return !ProcStat(pid, &state, &parent, &group) || state == 'Z' || state == 'X';
}

// One Exec under way: the runtime's process (`<runtime> exec`, petrel's child) and, once
// the runtime's pid file names it, the command it runs in the container (the runtime's
// child) and the command's process group, which holds what the command starts (the
// runtime makes it a session of its own). Ending that group leaves nothing of the
// command behind: after a timeout, and also once the command itself has ended (runc
// would otherwise wait for a process left behind to close its output).
class ExecRun {
 public:
  ExecRun(Port* port, const internal::StartedCommand& cli, std::string pid_file)
      : port_(port), cli_(cli.pid), output_(cli.output), pid_file_(std::move(pid_file)) {
    Result<int> fd = port_->OpenPidfd(cli_);  // the runtime is our child: never reused
    if (fd.ok()) cli_fd_.reset(*fd);
    fcntl(output_.get(), F_SETFL, O_NONBLOCK);
  }

  // Keeps the command's output (stdout and stderr, as the runtime passes them on) in
  // *result until the runtime has ended (true: *status is its wait status) or the
  // timeout has passed (false: it runs on). Output past the limit is read and dropped,
  // so that the command never blocks on a full pipe.
  bool Follow(const ExecOptions& options, ExecResult* result, int* status) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options.timeout_ms);
    for (;;) {
      if (Ended()) {
        KillCommand();  // what it left behind
        while (output_open_ && ReadSome(options.output_limit, result)) {
        }
        Reap(status);
        return true;
      }
      const int64_t left = std::chrono::duration_cast<std::chrono::milliseconds>(
                               deadline - std::chrono::steady_clock::now())
                               .count();
      if (left <= 0) return false;
      if (group_ == 0) Learn();
      // Without pidfds (Linux before 5.3) the runtime's end is looked for every 10 ms;
      // the pid file every 5 ms until it names the command.
      int64_t wait = cli_fd_.valid() ? left : std::min<int64_t>(left, 10);
      if (group_ == 0) wait = std::min<int64_t>(wait, 5);
      struct pollfd fds[3] = {{output_open_ ? output_.get() : -1, POLLIN, 0},
                              {cli_fd_.get(), POLLIN, 0},
                              {command_fd_.get(), POLLIN, 0}};
      if (poll(fds, 3, static_cast<int>(std::min<int64_t>(wait, 60 * 1000))) < 0 &&
          errno != EINTR) {
        return false;
      }
      if (output_open_ && fds[0].revents != 0) ReadSome(options.output_limit, result);
      if (command_fd_.valid() && fds[2].revents != 0) {
        KillCommand();  // it ended: what it left behind goes too
        command_fd_.reset();
      }
    }
  }

  // Ends the command after a timeout: SIGKILL to it and its group; then waits up to 2 s
  // for the runtime to reap it and end, SIGKILLs the runtime (and its group) when it
  // does not, and reaps it into *status.
  void Stop(int* status) {
    Learn();
    if (KillCommand()) {
      for (int i = 0; i < 200 && !Ended(); i++) {
        struct pollfd fd = {cli_fd_.get(), POLLIN, 0};
        poll(&fd, 1, 10);
      }
    }
    if (!Ended()) {
      Learn();  // the runtime may have started the command just now
      KillCommand();
      kill(-cli_, SIGKILL);
    }
    Reap(status);
  }

 private:
  // True once the runtime has ended; it stays unreaped (a zombie) until Reap, so its
  // pid, which KillCommand checks the command's parent against, is not reused.
  bool Ended() {
    siginfo_t info{};
    return waitid(P_PID, cli_, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == cli_;
  }

  void Reap(int* status) {
    while (waitpid(cli_, status, 0) < 0 && errno == EINTR) {
    }
  }

  // Reads the pid file: the command, its group, and a pidfd to see it end. Only a
  // process that is the runtime's child is taken: a pid reused since cannot be.
  void Learn() {
    Result<std::string> text = ReadSmallFile(pid_file_, kSmallFile);
    const pid_t pid = text.ok() ? atoi(text->c_str()) : 0;
    if (pid <= 0) return;
    Result<int> opened = port_->OpenPidfd(pid);  // before the check, so it is that process
    UniqueFd fd(opened.ok() ? *opened : -1);
    pid_t parent = 0, group = 0;
    if (!ParentAndGroup(pid, &parent, &group) || parent != cli_) return;
    // Both runtimes make the command a session of its own; were it in the runtime's
    // group, killing its group would kill the runtime first.
    if (group <= 1 || group == cli_) return;
    command_ = pid;
    group_ = group;
    command_fd_ = std::move(fd);
  }

  // SIGKILL to the command's group and to the command while the runtime's child;
  // false when the command is not known.
  bool KillCommand() {
    if (group_ == 0) return false;
    kill(-group_, SIGKILL);
    pid_t parent = 0, group = 0;
    if (ParentAndGroup(command_, &parent, &group) && parent == cli_) kill(command_, SIGKILL);
    return true;
  }

  // One read of the output into result->output, up to `limit` bytes in all: false when
  // there was nothing (yet), or it is closed.
  bool ReadSome(size_t limit, ExecResult* result) {
    char buf[16 * 1024];
    const ssize_t n = read(output_.get(), buf, sizeof(buf));
    if (n > 0) {
      const size_t room = limit - std::min(limit, result->output.size());
      result->output.append(buf, std::min(room, static_cast<size_t>(n)));
      if (static_cast<size_t>(n) > room) result->truncated = true;
      return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) output_open_ = false;
    return false;
  }

  Port* const port_;
  const pid_t cli_;
  UniqueFd cli_fd_, output_;
  const std::string pid_file_;
  bool output_open_ = true;
  pid_t command_ = 0, group_ = 0;  // 0: not known (yet)
  UniqueFd command_fd_;
};

// The files of one Exec (<state>/exec/<id>.<n>.*), removed when it goes.
struct ExecFiles {
  explicit ExecFiles(const std::string& base)
      : process(base + ".json"), pid(base + ".pid"), log(base + ".log") {}
  ~ExecFiles() {
    for (const std::string* f : {&process, &pid, &log}) unlink(f->c_str());
  }
  ExecFiles(const ExecFiles&) = delete;
  ExecFiles& operator=(const ExecFiles&) = delete;

  const std::string process, pid, log;
};

class CrunRuntime final : public ContainerRuntime {
 public:
  CrunRuntime(CrunOptions options, std::string binary, bool is_runc, CgroupLayout layout,
              std::unique_ptr<internal::ImageStore> images, std::unique_ptr<internal::DirLock> lock)
      : lock_(std::move(lock)),
        opts_(std::move(options)),
        binary_(std::move(binary)),
        is_runc_(is_runc),
        layout_(layout),
        images_(std::move(images)),
        containers_(opts_.state_dir + "/containers"),
        runtime_root_(opts_.state_dir + "/runtime"),
        exec_dir_(opts_.state_dir + "/exec"),
        exits_socket_(opts_.state_dir + "/exits.sock") {}

  ~CrunRuntime() override {
    {
      std::lock_guard<std::mutex> lock(preload_mu_);
      stopping_ = true;
    }
    if (preloader_.joinable()) preloader_.join();
    if (wake_.valid()) {
      uint64_t one = 1;
      (void)!write(wake_.get(), &one, sizeof(one));
    }
    if (watcher_.joinable()) watcher_.join();
  }

  Status Init() {
    // What Execs cut short by a crash left: nothing runs them any more.
    PETREL_RETURN_IF_ERROR(internal::RemoveTree(exec_dir_));
    for (const std::string& d : {containers_, runtime_root_, exec_dir_}) {
      PETREL_RETURN_IF_ERROR(MakeDurableDirs(d, 0700));
    }
    // Removals and creations a crash cut short: trash, and bundles without meta.json.
    PETREL_ASSIGN_OR_RETURN(const std::vector<DirEntry> entries, ListDir(containers_));
    std::vector<std::string> trash, half_made;
    for (const DirEntry& e : entries) {
      if (e.name.rfind(kTrashPrefix, 0) == 0) trash.push_back(e.name);
      if (ValidId(e.name) && !Exists(DirOf(e.name) + "/" + kMetaFile)) half_made.push_back(e.name);
    }
    for (const std::string& t : trash) {
      PETREL_RETURN_IF_ERROR(images_->ReleaseRootfs(containers_ + "/" + t + "/rootfs",
                                                    containers_ + "/" + t + "/scratch"));
      PETREL_RETURN_IF_ERROR(internal::RemoveTree(containers_ + "/" + t));
    }
    for (const std::string& id : half_made) PETREL_RETURN_IF_ERROR(Destroy(id));
    // The exit socket: shims send "<id>" when a container ends.
    sock_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock_.valid()) return ErrnoError("socket", "", errno);
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    if (exits_socket_.size() >= sizeof(addr.sun_path)) {
      return Status::InvalidArgument("state dir path too long for a socket: " + exits_socket_);
    }
    memcpy(addr.sun_path, exits_socket_.c_str(), exits_socket_.size() + 1);
    unlink(exits_socket_.c_str());
    if (bind(sock_.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) {
      return ErrnoError(exits_socket_, "bind", errno);
    }
    wake_.reset(eventfd(0, EFD_CLOEXEC));
    if (!wake_.valid()) return ErrnoError("eventfd", "", errno);
    watcher_ = std::thread([this] { WatchExits(); });
    if (!opts_.image_preload_dir.empty()) {
      preloading_ = true;
      preloader_ = std::thread([this] { Preload(); });
    }
    return Status::OK();
  }

  std::string Name() const override { return is_runc_ ? "runc" : "crun"; }

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
    internal::PendingShim pending;
    pending.timeout_ms = opts_.start_timeout_ms;
    PETREL_RETURN_IF_ERROR(BeginLaunch(id, meta, &pending).WithContext("start container " + id));
    return FinishLaunch(&pending).WithContext("start container " + id);
  }

  Status Kill(const std::string& id, int signal) override {
    PETREL_ASSIGN_OR_RETURN(const ContainerInfo info, Inspect(id));
    // A created container has no process yet: nothing to signal.
    if (info.state != ContainerState::kRunning) return Status::OK();
    int status = 0;
    std::string out;
    PETREL_RETURN_IF_ERROR(
        RunCommand(RuntimeArgv({"kill", id, std::to_string(signal)}), &status, &out));
    if (status == 0) return Status::OK();
    Result<ContainerInfo> after = Inspect(id);
    if (after.ok() && after->state == ContainerState::kExited) return Status::OK();
    return Status::IOError("kill container " + id + ": " + Name() + ": " + LastLine(out));
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

  // The container as its files say now. `meta` is its meta.json.
  Result<ContainerInfo> Examine(const std::string& id, const json& meta) {
    const std::string dir = DirOf(id);
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
    // A Remove may move the directory away at any moment (Inspect may overlap with it):
    // a file found missing is only believed while meta.json is still in place, and
    // otherwise the answer is NotFound, as after the Remove.
    const std::string meta_file = dir + "/" + kMetaFile;
    struct stat shim_pid;
    if (lstat((dir + "/" + internal::kShimPidFile).c_str(), &shim_pid) != 0) {
      if (!Exists(meta_file)) return Status::NotFound("no container " + id);
      return info;  // never started: created
    }
    // The shim writes its pid file as it starts the container.
    info.started_at =
        static_cast<TimeMs>(shim_pid.st_mtim.tv_sec) * 1000 + shim_pid.st_mtim.tv_nsec / 1000000;
    if (ReadExit(dir, &info)) return info;
    if (ShimAlive(dir)) {
      info.state = ContainerState::kRunning;
      Result<std::string> pid = ReadSmallFile(dir + "/" + internal::kInitPidFile, kSmallFile);
      if (pid.ok()) info.pid = atoi(pid->c_str());
      return info;
    }
    // The shim writes the exit file before it ends: look again now that it has.
    if (ReadExit(dir, &info)) return info;
    if (!Exists(meta_file)) return Status::NotFound("no container " + id);
    // The shim is gone without a word (killed, or the host lost power): ask the runtime.
    int status = 0;
    std::string out;
    if (RunCommand(RuntimeArgv({"state", id}), &status, &out).ok() && status == 0) {
      json st = json::parse(out, nullptr, false);
      std::string state = st.is_object() ? st.value("status", "") : "";
      if (state == "running") {
        info.state = ContainerState::kRunning;
        info.pid = st.value("pid", 0);
        return info;
      }
      if (state == "created") {
        info.state = ContainerState::kCreated;
        return info;
      }
    }
    if (!Exists(meta_file)) return Status::NotFound("no container " + id);
    info.state = ContainerState::kExited;
    info.exit_code = -1;  // unknown: nobody was watching when it ended
    return info;
  }

  // Fills in the exit from the container's exit file: false when there is none (yet).
  // A damaged one ("<code> <finished ms>[ OOMKilled]\n" cut short, empty, garbage) says
  // exited with an unknown code (-1), never a number read from what is left of it.
  static bool ReadExit(const std::string& dir, ContainerInfo* info) {
    Result<std::string> exit = ReadSmallFile(dir + "/" + internal::kExitFile, kSmallFile);
    if (!exit.ok()) return false;
    info->state = ContainerState::kExited;
    long long code = -1, at = 0;
    int end = 0;
    if (exit->empty() || exit->back() != '\n' ||
        sscanf(exit->c_str(), "%lld %lld%n", &code, &at, &end) != 2) {
      return true;
    }
    const std::string_view rest = std::string_view(*exit).substr(end);
    if (rest == "\n" || rest == " OOMKilled\n") {
      info->exit_code = static_cast<int>(code);
      info->finished_at = at;
      if (rest != "\n") info->exit_reason = "OOMKilled";
    }
    return true;
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
    return WriteHosts(DirOf(id) + "/hosts", hosts, /*create=*/false);
  }

  static Status WriteHosts(const std::string& path, const std::string& hosts, bool create) {
    // Rewritten in place (the bind mount holds the inode), then cut to its new length.
    const int flags = O_WRONLY | O_NOFOLLOW | O_CLOEXEC | (create ? O_CREAT : 0);
    UniqueFd fd(open(path.c_str(), flags, 0644));
    if (!fd.valid()) return ErrnoError(path, "open", errno);
    // Readable by the container's user, whoever it is.
    if (create && fchmod(fd.get(), 0644) != 0) return ErrnoError(path, "chmod", errno);
    PETREL_RETURN_IF_ERROR(internal::WriteAll(fd.get(), hosts, path, 0));
    if (ftruncate(fd.get(), static_cast<off_t>(hosts.size())) != 0) {
      return ErrnoError(path, "truncate", errno);
    }
    return Status::OK();
  }

  // `<runtime> exec --process`, with the process of the container's config.json and
  // `options.command` as its args: crun's exec, unlike runc's, would otherwise run as
  // root in "/". On crun on a hybrid host the runtime's process first joins the
  // container's limit cgroups, so that the command is born in them, as BeginLaunch does
  // for the container. Its files go to exec_dir_, not the container's directory, which
  // a Remove may move away at any moment.
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
      return NotRunning(id, std::string("is ") + ContainerStateName(info.state));
    }
    PETREL_ASSIGN_OR_RETURN(const std::string process, ExecProcess(id, options.command));
    ExecFiles files(exec_dir_ + "/" + id + "." + std::to_string(++exec_count_));
    {
      // A new name each time, read once and removed: no rename and no fsync, which a
      // probe every few seconds would pay for in flash wear.
      UniqueFd fd(open(files.process.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!fd.valid()) return ErrnoError(files.process, "create", errno);
      PETREL_RETURN_IF_ERROR(internal::WriteAll(fd.get(), process, files.process));
    }

    internal::CommandPlan plan;
    plan.argv = RuntimeArgv({"--log", files.log, "--log-format", "json", "exec", "--process",
                             files.process, "--pid-file", files.pid, id});
    plan.env = {internal::kDefaultPathEnv};
    if (HybridCrun()) {
      // Those the container is in: a container started before petrel made a devices
      // cgroup for each has none.
      for (const std::string& procs :
           opts_.port->LimitCgroupsFor(CgroupParentOf(meta), id, LimitsOf(meta)).procs) {
        if (Exists(procs)) plan.setup.join_cgroups.push_back(procs);
      }
    }
    plan.port = opts_.port;
    plan.nice = base_nice_;
    internal::StartedCommand cli;
    PETREL_RETURN_IF_ERROR(internal::StartCommand(plan, &cli).WithContext(what));
    ExecRun run(opts_.port.get(), cli, files.pid);
    ExecResult result;
    int status = 0;
    if (!run.Follow(options, &result, &status)) {
      run.Stop(&status);
      return Status::DeadlineExceeded(what + ": timed out after " +
                                      FormatDurationMs(options.timeout_ms));
    }
    return ExecOutcome(id, status, files.log, std::move(result));
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
      return config.status().IsNotFound() ? NotRunning(id, "was removed") : config.status();
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

  // What an Exec whose runtime ended with wait status `status` gives, its output so far
  // in `result`; `log` is the runtime's log file.
  Result<ExecResult> ExecOutcome(const std::string& id, int status, const std::string& log_file,
                                 ExecResult result) {
    const std::string what = "exec in " + id;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      result.exit_code = 0;
      return result;
    }
    // A failure may be the container's end (it took the command with it): that is the
    // container's state, not the command's exit code.
    // Its process may have ended a moment before its shim notices (a zombie, or reaped
    // and the exit file not yet written): the runtime then fails to join it.
    Result<ContainerInfo> now = Inspect(id);
    if (!now.ok() || now->state != ContainerState::kRunning ||
        (now->pid > 0 && ProcessEnded(now->pid))) {
      return NotRunning(id, "ended while the command ran");
    }
    if (!WIFEXITED(status)) {
      return Status::IOError(what + ": " + Name() + " ended by signal " +
                             std::to_string(WTERMSIG(status)));
    }
    result.exit_code = WEXITSTATUS(status);
    Result<std::string> log = ReadSmallFile(log_file, kLogFile);
    const std::string error = log.ok() ? RuntimeError(*log) : "";
    if (error.empty()) return result;  // the command's own exit code
    // The runtime could not start the command. A binary not in the image is exit code
    // 127 with the reason as the output, as a shell gives, whatever the runtime said:
    // both exit with 255, crun saying "executable file `x` not found in $PATH: No such
    // file or directory", runc `exec: "x": executable file not found in $PATH` or
    // `stat /x: no such file or directory`.
    std::string lower = error;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower.find("not found") != std::string::npos ||
        lower.find("no such file or directory") != std::string::npos) {
      result.exit_code = 127;
      result.output = error + "\n";
      result.truncated = false;
      return result;
    }
    return Status::IOError(what + ": " + Name() + ": " + error);
  }
  std::string DirOf(const std::string& id) const { return containers_ + "/" + id; }

  void Log(LogLevel level, const std::string& msg) {
    if (opts_.log_sink) opts_.log_sink(level, "crun adapter: " + msg);
  }

  bool HybridCrun() const { return !is_runc_ && layout_ == CgroupLayout::kHybrid; }

  std::vector<std::string> RuntimeArgv(std::vector<std::string> command) const {
    std::vector<std::string> argv = {binary_, "--root", runtime_root_};
    if (!is_runc_) {
      argv.push_back(HybridCrun() ? "--cgroup-manager=disabled" : "--cgroup-manager=cgroupfs");
    }
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
  }

  // Exec's answer for a container not running: "exec in x: container x is exited".
  static Status NotRunning(const std::string& id, const std::string& how) {
    return Status::FailedPrecondition("exec in " + id + ": container " + id + " " + how);
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
      PETREL_ASSIGN_OR_RETURN(const internal::Image image, images_->Pull(spec.image));
      std::lock_guard<std::mutex> lock(image_mu_);
      struct stat st;
      if (stat(image.rootfs.c_str(), &st) == 0 || attempt > 0) {
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
    internal::RuntimeConfigOptions bo;
    bo.rootfs = dir + "/rootfs";
    // The image's user and group files, only when there is a user to resolve.
    if (!spec.user.empty() || !image.config.user.empty()) {
      // Inside the image's root: its /etc may be a link to the host's.
      Result<std::string> passwd = ReadSmallFileInRoot(image.rootfs, "/etc/passwd", kLogFile);
      Result<std::string> group = ReadSmallFileInRoot(image.rootfs, "/etc/group", kLogFile);
      if (passwd.ok()) bo.passwd = std::move(*passwd);
      if (group.ok()) bo.group = std::move(*group);
    }
    if (!HybridCrun()) bo.cgroups_path = "/" + opts_.cgroup_parent + "/" + id;
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
      PETREL_RETURN_IF_ERROR(WriteHosts(bo.hosts_file, spec.hosts, /*create=*/true));
    }
    PETREL_ASSIGN_OR_RETURN(const std::string config,
                            internal::MakeRuntimeConfig(spec, image.config, bo));
    // An overlay is mounted by the shim, in the runtime's own mount namespace.
    std::string overlay;
    PETREL_ASSIGN_OR_RETURN(const internal::ImageStore::RootfsKind kind,
                            images_->PrepareRootfs(image, bo.rootfs, dir + "/scratch", &overlay));
    PETREL_RETURN_IF_ERROR(WriteFileAtomic(dir + "/config.json", config));

    json labels = json::object();
    for (const auto& [k, v] : spec.labels) labels[k] = v;
    // The v1 cgroups petrel makes itself (crun on a hybrid host) at Start, recorded
    // here with their parent so that Destroy removes exactly those, also after the
    // parent changed.
    std::vector<std::string> cgroups;
    if (HybridCrun()) {
      cgroups = opts_.port->LimitCgroupsFor(opts_.cgroup_parent, id, spec.resources).dirs;
    }
    const Resources& r = spec.resources;
    json meta = {
        {"name", id},
        {"labels", labels},
        {"image", spec.image},
        {"imageId", image.id},
        {"createdAt", opts_.clock->Now()},
        {"rootfs", kind == internal::ImageStore::RootfsKind::kOverlay ? "overlay" : "copy"},
        {"resources",
         {{"memory", r.memory_bytes},
          {"cpuMillis", r.cpu_millis},
          {"pids", r.pids},
          {"allDevices", r.all_devices}}},
        {"cgroupParent", opts_.cgroup_parent},
        {"cgroups", cgroups},
        {"overlay", overlay},
        {"network", NetworkModeName(spec.network)}};
    if (!address.empty()) meta["address"] = address;
    if (!spec.hosts.empty()) meta["hosts"] = true;
    if (!spec.lease.empty()) {
      meta["lease"] = {{"path", spec.lease.path}, {"durationMs", spec.lease.duration_ms}};
    }
    return WriteFileAtomic(dir + "/" + kMetaFile, meta.dump());
  }

  // Starts a created container: its cgroups (crun on hybrid), then the shim, which
  // runs `<runtime> run --detach` and stays as the container's parent. FinishLaunch
  // waits for the runtime's verdict.
  Status BeginLaunch(const std::string& id, const json& meta, internal::PendingShim* pending) {
    const std::string dir = DirOf(id);
    internal::ShimPlan plan;
    plan.id = id;
    plan.dir = dir;
    plan.argv = {binary_, "--root", runtime_root_, "--log", dir + "/" + internal::kRuntimeLogFile};
    if (is_runc_) {
      plan.argv.insert(plan.argv.end(), {"--log-format", "json"});
    } else {
      plan.argv.push_back(HybridCrun() ? "--cgroup-manager=disabled" : "--cgroup-manager=cgroupfs");
    }
    plan.argv.insert(plan.argv.end(), {"run", "--detach", "--bundle", dir, "--pid-file",
                                       dir + "/" + internal::kInitPidFile, id});
    plan.env = {internal::kDefaultPathEnv};
    if (HybridCrun()) {
      PETREL_ASSIGN_OR_RETURN(
          const LimitCgroups cgroups,
          opts_.port->CreateLimitCgroups(CgroupParentOf(meta), id, LimitsOf(meta)));
      plan.runtime_setup.join_cgroups = cgroups.procs;
      plan.runtime_setup.pure_cgroup2 = true;
    }
    plan.runtime_setup.overlay_data = meta.value("overlay", "");
    if (!plan.runtime_setup.overlay_data.empty())
      plan.runtime_setup.overlay_target = dir + "/rootfs";
    plan.port = opts_.port;
    plan.log_max_bytes = opts_.log_max_bytes;
    plan.nice = base_nice_;
    plan.notify_socket = exits_socket_;
    if (meta.contains("lease") && meta["lease"].is_object()) {
      plan.lease_path = meta["lease"].value("path", "");
      plan.lease_ms = meta["lease"].value("durationMs", int64_t{0});
    }
    plan.oom_file = opts_.port->OomKillsFile(CgroupParentOf(meta), id);
    return internal::BeginShim(plan, pending);
  }

  Status FinishLaunch(internal::PendingShim* pending) {
    const std::string id = pending->id;
    pid_t shim = 0;
    Status s = internal::FinishShim(pending, &shim);
    if (s.ok()) return s;
    if (s.code() == Status::Code::kDeadlineExceeded) {
      // The runtime hung and was killed with its shim; a container it made goes too.
      int status = 0;
      std::string out;
      if (Exists(runtime_root_ + "/" + id)) {
        (void)RunCommand(RuntimeArgv({"delete", "--force", id}), &status, &out);
      }
      return s;
    }
    // The runtime's own words: its log file, else what it printed.
    std::string why;
    Result<std::string> log = ReadSmallFile(DirOf(id) + "/" + internal::kRuntimeLogFile, kLogFile);
    if (log.ok()) why = LastLine(*log);
    if (why.empty()) {
      Result<LogChunk> out = Logs(id, LogOptions{});
      if (out.ok()) why = LastLine(out->data);
    }
    return why.empty() ? s : Status::IOError(Name() + ": " + why);
  }

  // Deletes everything of a container: the runtime's record, its root filesystem,
  // cgroups and directory. Tolerates any of them being gone already. With `keep_as`,
  // the directory's other files are moved there instead (replacing what was there).
  Status Destroy(const std::string& id, const std::string& keep_as = "") {
    const std::string dir = DirOf(id);
    int status = 0;
    std::string out;
    if (Exists(runtime_root_ + "/" + id)) {
      PETREL_RETURN_IF_ERROR(RunCommand(RuntimeArgv({"delete", "--force", id}), &status, &out));
      if (status != 0 && Exists(runtime_root_ + "/" + id)) {
        return Status::IOError(Name() + " delete: " + LastLine(out));
      }
    }
    // The shim writes its last files just after the container ends; let it finish.
    for (int i = 0; i < 300 && ShimAlive(dir); i++) {
      usleep(10 * 1000);
    }
    PETREL_RETURN_IF_ERROR(images_->ReleaseRootfs(dir + "/rootfs", dir + "/scratch"));
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
      if (HybridCrun()) {
        for (std::string& d :
             opts_.port->LimitCgroupsFor(CgroupParentOf(*meta), id, LimitsOf(*meta)).dirs) {
          if (std::find(cgroups.begin(), cgroups.end(), d) == cgroups.end()) {
            cgroups.push_back(std::move(d));
          }
        }
      }
      PETREL_RETURN_IF_ERROR(opts_.port->RemoveCgroups(cgroups));
    } else if (!meta.ok() && HybridCrun()) {
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

  // True while the container's shim holds its lock.
  static bool ShimAlive(const std::string& dir) {
    UniqueFd fd(open((dir + "/shim.lock").c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return false;
    if (flock(fd.get(), LOCK_SH | LOCK_NB) == 0) return false;  // nobody holds it
    return errno == EWOULDBLOCK;
  }

  void WatchExits() {
    char buf[256];
    for (;;) {
      struct pollfd fds[2] = {{sock_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      ssize_t n = recv(sock_.get(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n <= 0) continue;
      std::string id(buf, static_cast<size_t>(n));
      if (!ValidId(id)) continue;
      // -1 (unknown) when the exit file is missing or damaged, never a guess.
      ContainerInfo exited;
      const int code = ReadExit(DirOf(id), &exited) ? exited.exit_code : -1;
      ExitHandler handler;
      {
        std::lock_guard<std::mutex> lock(handler_mu_);
        handler = handler_;
      }
      if (handler) handler(id, code);
    }
  }

  std::unique_ptr<internal::DirLock> lock_;
  // The priority containers run at: the creating thread's, not that of the worker
  // thread a start happens to run on.
  const int base_nice_ = getpriority(PRIO_PROCESS, 0);
  const CrunOptions opts_;
  const std::string binary_;
  const bool is_runc_;
  const CgroupLayout layout_;
  std::unique_ptr<internal::ImageStore> images_;
  // Held while deciding which images are in use and removing images: image removal
  // never overlaps the start of a create (creating_).
  std::mutex image_mu_;
  std::map<std::string, std::string> creating_;  // image id by the container being created
  std::mutex preload_mu_;
  std::condition_variable preload_cv_;
  bool preloading_ = false, stopping_ = false;
  std::thread preloader_;
  const std::string containers_, runtime_root_, exec_dir_, exits_socket_;
  std::atomic<uint64_t> exec_count_{0};  // names each Exec's files
  UniqueFd sock_, wake_;
  std::thread watcher_;
  std::mutex handler_mu_;
  ExitHandler handler_;
};

}  // namespace

Result<std::shared_ptr<ContainerRuntime>> NewCrunRuntime(const CrunOptions& options) {
  CrunOptions o = options;
  if (o.state_dir.empty()) return Status::InvalidArgument("crun runtime: state_dir is required");
  if (!o.log_sink) o.log_sink = StderrLogSink();
  if (!o.clock) o.clock = SystemClock();
  if (!o.port) o.port = DefaultPort();
  PETREL_RETURN_IF_ERROR(CheckCgroupParent(o.cgroup_parent).WithContext("runtime " + o.runtime));
  if (geteuid() != 0) {
    return Status::FailedPrecondition("runtime " + o.runtime +
                                      ": needs root (rootless containers are not supported yet)");
  }
  std::string binary = FindInPath(o.runtime);
  if (binary.empty() || access(binary.c_str(), X_OK) != 0) {
    return Status::NotFound("runtime " + o.runtime + ": not found" +
                            (o.runtime.find('/') == std::string::npos ? " in $PATH" : "") +
                            " (install the crun or runc package, or give a path)");
  }
  const std::string base = binary.substr(binary.find_last_of('/') + 1);
  const bool is_runc = base.find("runc") != std::string::npos;
  PETREL_RETURN_IF_ERROR(MakeDurableDirs(o.state_dir, 0700));
  // One runtime object per state dir: a second would steal the exit socket.
  std::unique_ptr<internal::DirLock> lock;
  PETREL_RETURN_IF_ERROR(internal::DirLock::Acquire(o.state_dir, &lock));
  internal::ImageStoreOptions io;
  io.dir = o.state_dir + "/images";
  io.allow_overlay = !o.copy_rootfs;
  io.max_layer_bytes = o.max_layer_bytes;
  io.registry = o.registry;
  io.port = o.port;
  PETREL_ASSIGN_OR_RETURN(std::unique_ptr<internal::ImageStore> images,
                          internal::ImageStore::Open(io));
  auto rt = std::make_shared<CrunRuntime>(o, binary, is_runc, o.port->DetectCgroupLayout(),
                                          std::move(images), std::move(lock));
  PETREL_RETURN_IF_ERROR(rt->Init());
  return std::shared_ptr<ContainerRuntime>(std::move(rt));
}

}  // namespace petrel
