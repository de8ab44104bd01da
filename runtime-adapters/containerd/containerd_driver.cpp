// The containerd ProcessDriver (containerd_driver.h): a container and a task per bundle.
// A container is "created" while containerd has no task of it (or one not yet started),
// "running" while its task runs, "exited" once the task stopped.
#include "runtime-adapters/containerd/containerd_driver.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>

#include "lib/oci/runc_words.h"
#include "lib/util/fs.h"
#include "lib/util/lease.h"
#include "lib/util/log_files.h"
#include "petrel/spec.h"
#include "runtime-adapters/containerd/exits.h"
#include "runtime-adapters/containerd/grpc.h"
#include "runtime-adapters/containerd/logger.h"
#include "runtime-adapters/containerd/services.h"
#include "runtime-adapters/crun/shim.h"

namespace petrel::internal {
namespace {

constexpr char kStartedFile[] = "started";
constexpr char kExitedFile[] = "exited";  // "<code> <finished ms>[ OOMKilled]\n"
// The path of the container's memory cgroup event counters (Port::OomKillsFile), as
// runc makes the cgroup from config.json: read when the task ends by SIGKILL.
constexpr char kOomFile[] = "oom-events";
constexpr char kOomKilled[] = "OOMKilled";
// An exit is told once the container's logger has drained its output (at most this
// long after the exit: WaitForDrained). The wait wakes when the logger's file comes
// (inotify), and looks every kLogLookMs whether the container is still there; every
// kLogPollMs without inotify.
constexpr int kLogSettleMaxMs = 1000;
constexpr int kLogLookMs = 50;
constexpr int kLogPollMs = 2;
constexpr size_t kConfigFile = 4 << 20;  // a config.json is a few KiB

// Why a task could not be made or started, from containerd's answer: containerd 1.6
// passes runc's error on as runc's JSON log has it, its quotes escaped
// (`exec: \"x\": stat x: no such file or directory`); they are unescaped. The shim's or
// runc's refusal (containerd's UNKNOWN, an Internal) is an IOError, as the shim driver's.
Status StartError(const Status& s) {
  if (s.code() != Status::Code::kInternal) return s;
  std::string message(s.message());
  for (size_t at = message.find("\\\""); at != std::string::npos;
       at = message.find("\\\"", at + 1)) {
    message.erase(at, 1);
  }
  return Status::IOError(message);
}

TimeMs ToMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// A task's state as petrel names a container's: "created", "exited", else containerd's
// name in lower case ("paused").
std::string StateName(ContainerdTaskStatus status) {
  if (status == ContainerdTaskStatus::kCreated) return ContainerStateName(ContainerState::kCreated);
  if (status == ContainerdTaskStatus::kStopped) return ContainerStateName(ContainerState::kExited);
  std::string name = ContainerdTaskStatusName(status);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

// Whether process `pid` has ended or is ending: gone, a zombie, or exiting (PF_EXITING in
// the flags of /proc/<pid>/stat). A pid namespace's init process is exiting while the
// kernel kills and reaps the rest of the namespace, as it does after a Kill.
bool ProcessEnding(pid_t pid) {
  constexpr unsigned long kExiting = 0x4;  // PF_EXITING
  Result<std::string> stat = ReadSmallFile("/proc/" + std::to_string(pid) + "/stat", 4096);
  if (!stat.ok()) return true;
  // "<pid> (<comm>) <state> <ppid> <pgrp> <session> <tty> <tpgid> <flags> ...": comm
  // may hold anything, ')' too.
  const size_t close = stat->rfind(')');
  char state = 0;
  unsigned long flags = 0;
  if (close == std::string::npos ||
      sscanf(stat->c_str() + close + 1, " %c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2) {
    return false;
  }
  return state == 'Z' || state == 'X' || (flags & kExiting) != 0;
}

std::string ExecPrefix() {
  char prefix[32];
  std::snprintf(prefix, sizeof(prefix), "exec-%llx-",
                static_cast<unsigned long long>(ToMs(std::chrono::system_clock::now())));
  return prefix;
}

// An Exec's stdout and stderr, each a FIFO of the bundle's (<exec id>.stdout, .stderr)
// that the shim writes to, read on a thread of this object's from Start, and to the end
// by Finish once the shim has written all (DeleteProcess has answered). Output past the
// limit is read and dropped, so that the command never blocks on a full pipe and nothing
// piles up on disk. (One file for both streams would lose output: containerd's shim, 1.6
// up to today, closes a file named by both stdout and stderr as soon as stdout's copy
// ends, while stderr's may have more to write.)
class ExecOutput {
 public:
  ExecOutput(const std::string& base, size_t limit)
      : paths_{base + ".stdout", base + ".stderr"}, limit_(limit) {}
  ~ExecOutput() {
    Stop();
    for (const std::string& path : paths_) unlink(path.c_str());
  }
  ExecOutput(const ExecOutput&) = delete;
  ExecOutput& operator=(const ExecOutput&) = delete;

  // Makes both FIFOs and opens them, for reading and writing: the shim's opening never
  // waits for a reader, and a read never sees an end, only what is there (the shim's
  // end says nothing of the command's: DeleteProcess does).
  Status Make() {
    for (int i = 0; i < 2; i++) {
      if (mkfifo(paths_[i].c_str(), 0600) != 0) return ErrnoError(paths_[i], "mkfifo", errno);
      fds_[i].reset(open(paths_[i].c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
      if (!fds_[i].valid()) return ErrnoError(paths_[i], "open", errno);
    }
    wake_.reset(eventfd(0, EFD_CLOEXEC));
    if (!wake_.valid()) return ErrnoError("eventfd", "", errno);
    return Status::OK();
  }

  // The FIFOs' paths, as the shim takes them (a path without a scheme: a FIFO).
  const std::string& stdout_path() const { return paths_[0]; }
  const std::string& stderr_path() const { return paths_[1]; }

  // Reads the output as it comes, on a thread of this object's, until Finish.
  void Start() {
    thread_ = std::thread([this] {
      struct pollfd fds[3] = {
          {fds_[0].get(), POLLIN, 0}, {fds_[1].get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      for (;;) {
        if (poll(fds, 3, -1) < 0 && errno != EINTR) return;
        if (fds[2].revents != 0) return;
        for (int i = 0; i < 2; i++) {
          if (fds[i].revents != 0) ReadSome(fds[i].fd);
        }
      }
    });
  }

  // Stops reading, reads what the FIFOs hold, and gives all that was read.
  ExecResult Finish() {
    Stop();
    for (const UniqueFd& fd : fds_) {
      while (ReadSome(fd.get())) {
      }
    }
    return std::move(result_);
  }

 private:
  // One read of `fd` into result_, up to limit_ bytes in all: false when there was
  // nothing.
  bool ReadSome(int fd) {
    char buf[16 * 1024];
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return false;
    KeepExecOutput(std::string_view(buf, static_cast<size_t>(n)), limit_, &result_);
    return true;
  }

  void Stop() {
    if (!thread_.joinable()) return;
    uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof(one));
    thread_.join();
  }

  const std::string paths_[2];
  const size_t limit_;
  UniqueFd fds_[2], wake_;
  std::thread thread_;
  ExecResult result_;  // the reading thread's while it runs
};

// One Exec's process in the container's task, from Tasks/Exec on: Follow once started,
// End with the Exec's answer, which takes the process out of the task (unless Delete
// did), whatever happened.
//
// runc makes the command a session of its own, its pid its group's: what the command
// starts stays in that group unless it leaves it, and ends with it once the command has
// ended or timed out, as under the shim driver. (petrel shares containerd's pid namespace
// as it shares its files; a group is only signalled while its number is one runc gave.)
class ExecProcess {
 public:
  ExecProcess(GrpcChannel* channel, std::string id, std::string exec_id)
      : channel_(channel), id_(std::move(id)), exec_id_(std::move(exec_id)) {}
  ExecProcess(const ExecProcess&) = delete;
  ExecProcess& operator=(const ExecProcess&) = delete;

  // The command started as process `pid`: its group, when it leads one still.
  void Follow(pid_t pid) {
    if (pid > 0 && getpgid(pid) == pid) group_ = pid;
  }

  // SIGKILL to the command and its group, then waits for containerd to see it end.
  Status Kill() {
    KillLeftovers();
    Status s = ContainerdKillTask(channel_, id_, SIGKILL, false, exec_id_);
    if (!s.ok() && !s.IsNotFound()) return s;
    return ContainerdWaitTask(channel_, id_, exec_id_).status();
  }

  // SIGKILL to what is left of the command's group.
  void KillLeftovers() {
    if (group_ > 0) kill(-group_, SIGKILL);
  }

  // Takes the process out of the task once it has ended.
  Status Delete() {
    Status s = ContainerdDeleteProcess(channel_, id_, exec_id_).status();
    deleted_ = s.ok() || s.IsNotFound();
    return s;
  }

  // `answer`, once the process is gone from the task (killed first should it still
  // run).
  template <typename T>
  T End(T answer) {
    if (!deleted_ && !Delete().ok() && Kill().ok()) (void)Delete();
    return answer;
  }

 private:
  GrpcChannel* const channel_;
  const std::string id_, exec_id_;
  pid_t group_ = 0;  // 0: none known
  bool deleted_ = false;
};

class ContainerdDriver final : public ProcessDriver {
 public:
  explicit ContainerdDriver(ContainerdDriverOptions options) : opts_(std::move(options)) {}

  ~ContainerdDriver() override { watcher_.reset(); }

  std::string Name() const override { return "containerd"; }

  bool PetrelMakesCgroups() const override { return false; }

  // With an overlay or a snapshot, the task's mounts make the root filesystem on the
  // bundle containerd keeps: "rootfs" relative to that bundle.
  std::string RootPath(const std::string& rootfs, bool mounted) const override {
    return mounted ? "rootfs" : rootfs;
  }

  Status Open(ExitFn on_exit) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    Status made = ContainerdCreateNamespace(channel.get(), opts_.ns);
    if (!made.ok() && made.code() != Status::Code::kAlreadyExists) {
      return made.WithContext("containerd namespace " + opts_.ns);
    }
    on_exit_ = std::move(on_exit);
    ContainerdExitWatcher::Options wo;
    wo.socket_path = opts_.socket_path;
    wo.ns = opts_.ns;
    wo.on_exit = [this](const ContainerdExit& exit) {
      // The init process's exit is the container's; an exec'd process's is not. Tasks
      // of the namespace that are not this runtime's (another petrel's, or made by
      // hand) are none of its business.
      if (exit.id != exit.container_id || !opts_.present(exit.container_id)) return;
      WaitForDrained(exit.container_id);
      on_exit_(exit.container_id, static_cast<int>(exit.exit_status));
    };
    if (opts_.log_sink) {
      wo.on_report = [sink = opts_.log_sink](const Status& what) {
        if (what.ok()) {
          sink(LogLevel::kInfo, "containerd adapter: hearing containerd's exits again");
        } else if (what.code() == Status::Code::kCorruption) {
          sink(LogLevel::kWarn, "containerd adapter: an event skipped: " + what.ToString());
        } else {
          sink(LogLevel::kWarn,
               "containerd adapter: not hearing containerd's exits (they are read from its "
               "tasks until it is back): " +
                   what.ToString());
        }
      };
    }
    PETREL_ASSIGN_OR_RETURN(watcher_, ContainerdExitWatcher::Start(std::move(wo)));
    return Status::OK();
  }

  Result<ProcessState> State(const std::string& id) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    ProcessState info;
    Result<ContainerdProcess> task = ContainerdGetTask(channel.get(), id);
    if (!task.ok()) {
      if (!task.status().IsNotFound()) return task.status();
      // No task: never run (or its Run failed and took what it made), unless the
      // container itself is gone, or its task was started once (the `started` file)
      // and is gone now: deleted by a Delete under way, or lost by containerd (its
      // state is on tmpfs: a reboot), so it has exited, with a code nobody knows.
      if (!opts_.present(id)) return Status::NotFound("no container " + id);
      Result<std::string> started = ReadSmallFile(DirOf(id) + "/" + kStartedFile, kDriverRecordMax);
      if (!started.ok()) {
        if (!started.status().IsNotFound()) return started.status();
        // Missing because a Remove moved the container's directory away since the look
        // above (Inspect may overlap with it): the answer is the Remove's, not "created".
        if (!opts_.present(id)) return Status::NotFound("no container " + id);
        return info;
      }
      info.state = ContainerState::kExited;
      info.started_at = std::atoll(started->c_str());
      // How it ended, when a Delete recorded it: "<code> <finished ms>".
      Result<std::string> exited = ReadSmallFile(DirOf(id) + "/" + kExitedFile, kDriverRecordMax);
      if (exited.ok()) {
        char* end = nullptr;
        info.exit_code = static_cast<int>(std::strtol(exited->c_str(), &end, 10));
        info.finished_at = std::strtoll(end, &end, 10);
        if (std::string_view(end) == std::string(" ") + kOomKilled + "\n") {
          info.exit_reason = kOomKilled;
        }
      } else if (exited.status().IsNotFound()) {
        info.exit_reason = "its task is gone from containerd";
      } else {
        return exited.status();
      }
      return info;
    }
    switch (task->status) {
      case ContainerdTaskStatus::kCreated:
        return info;  // a Run under way, or one cut short by a crash
      case ContainerdTaskStatus::kStopped:
        // Exited once its output is whole: the logger may still be writing its end.
        if (ToMs(std::chrono::system_clock::now()) - ToMs(task->exited_at) < kLogSettleMaxMs) {
          WaitForDrained(id);
        }
        info.state = ContainerState::kExited;
        info.exit_code = static_cast<int>(task->exit_status);
        info.finished_at = ToMs(task->exited_at);
        if (OomKilled(id, info.exit_code)) info.exit_reason = kOomKilled;
        break;
      default:  // running, paused, or a state this build does not know: it lives
        info.state = ContainerState::kRunning;
        info.pid = static_cast<int>(task->pid);
        break;
    }
    Result<std::string> started = ReadSmallFile(DirOf(id) + "/" + kStartedFile, kDriverRecordMax);
    if (started.ok()) info.started_at = std::atoll(started->c_str());
    return info;
  }

  Status Run(const Bundle& bundle) override {
    const std::string& id = bundle.id;
    const std::string started = bundle.dir + "/" + kStartedFile;
    const std::string exited = bundle.dir + "/" + kExitedFile;
    const std::string task_pid = bundle.dir + "/" + kLoggerTaskPidFile;
    const ContainerLease& lease = bundle.lease;
    // A lease run out already: the container does not start at all, and has exited
    // with 255, as on crun. One that runs out later is the logger's (logger.h).
    if (!lease.empty() &&
        LeaseExpired(ReadLease(lease.path.c_str()), lease.duration_ms, LeaseClockNow())) {
      const std::string now = std::to_string(ToMs(std::chrono::system_clock::now()));
      PETREL_RETURN_IF_ERROR(WriteFileAtomic(started, now + "\n"));
      PETREL_RETURN_IF_ERROR(WriteFileAtomic(exited, "255 " + now + "\n"));
      return Status::FailedPrecondition("lease " + lease.path +
                                        " has run out: not starting the container");
    }
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    ContainerdContainer c;
    c.id = id;
    c.labels = {{kContainerdPetrelLabel, "true"}};
    c.runtime = opts_.runtime;
    c.runc_root = opts_.runc_root;
    PETREL_ASSIGN_OR_RETURN(c.spec, ReadSmallFile(bundle.dir + "/config.json", kConfigFile));
    // A root on a snapshot: the record names it (which holds it from containerd's
    // garbage collection too), and the task mounts it.
    std::vector<ContainerdMount> root = ContainerdOverlayMounts(bundle.overlay);
    if (!bundle.snapshot.empty()) {
      c.snapshotter = opts_.snapshotter;
      c.snapshot_key = bundle.snapshot;
      PETREL_ASSIGN_OR_RETURN(
          root, ContainerdSnapshotMounts(channel.get(), opts_.snapshotter, bundle.snapshot));
    }
    Result<ContainerdContainer> made = ContainerdCreateContainer(channel.get(), c);
    if (made.status().code() == Status::Code::kAlreadyExists) {
      // Left by a Run a crash cut short: taken away unless its task has started.
      PETREL_RETURN_IF_ERROR(RemoveUnstarted(channel.get(), id));
      made = ContainerdCreateContainer(channel.get(), c);
    }
    if (!made.ok()) return made.status();

    if (opts_.port) {
      const std::string events = opts_.port->OomKillsFile(bundle.cgroup_parent, id);
      if (!events.empty()) {
        PETREL_RETURN_IF_ERROR(WriteFileAtomic(bundle.dir + "/" + kOomFile, events));
      }
    }
    ContainerdTaskIO io;
    io.stdout_uri = ContainerdLogUri(opts_.logger, bundle.dir, opts_.log_max_bytes, lease);
    io.stderr_uri = io.stdout_uri;  // services.h: the 1.6 shim dies without one
    Result<uint32_t> pid = ContainerdCreateTask(channel.get(), id, root, io);
    Status s = pid.status();
    // The logger's to hold (whose end it waits for, whom it kills once the lease runs
    // out), written before the task starts.
    if (s.ok()) s = WriteFileAtomic(task_pid, std::to_string(*pid) + "\n");
    if (s.ok()) {
      // The wall clock, not the adapter's Clock: containerd stamps the exit with it, as
      // the crun shim does, and State gives both times side by side.
      const TimeMs now = ToMs(std::chrono::system_clock::now());
      s = WriteFileAtomic(started, std::to_string(now) + "\n");
    }
    if (s.ok()) s = ContainerdStartTask(channel.get(), id).status();
    if (s.ok()) return s;
    // Nothing of a failed Run stays in containerd.
    (void)Remove(channel.get(), id);
    for (const std::string& path : {started, exited, task_pid}) unlink(path.c_str());
    return StartError(s);
  }

  Status Signal(const std::string& id, int signal) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    Status s = ContainerdKillTask(channel.get(), id, signal);
    if (s.ok()) return s;
    // containerd 1.6 answers NotFound "process already finished" for a stopped task.
    Result<ContainerdProcess> task = ContainerdGetTask(channel.get(), id);
    if (task.ok() && task->status == ContainerdTaskStatus::kStopped) return Status::OK();
    return s.WithContext("signal container " + id);
  }

  // A process of the container's task, exec_id "exec-<driver>-<n>", its output in the
  // bundle's <exec_id>.out: containerd_driver.h says how it goes.
  Result<ExecResult> Exec(const Bundle& bundle, const std::string& process,
                          const ExecOptions& options) override {
    const std::string& id = bundle.id;
    const std::string what = "exec in " + id;
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options.timeout_ms);
    const std::string exec_id = exec_prefix_ + std::to_string(++exec_count_);
    ExecOutput output(bundle.dir + "/" + exec_id, options.output_limit);
    PETREL_RETURN_IF_ERROR(output.Make().WithContext(what));
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    ContainerdTaskIO io;
    io.stdout_uri = output.stdout_path();
    io.stderr_uri = output.stderr_path();
    Status s = ContainerdExecProcess(channel.get(), id, exec_id, process, io);
    if (!s.ok()) return ExecRefused(channel.get(), id, s);
    ExecProcess exec{channel.get(), id, exec_id};
    Result<uint32_t> pid = ContainerdStartTask(channel.get(), id, exec_id);
    if (!pid.ok()) return exec.End(ExecRefused(channel.get(), id, pid.status(), &options));
    exec.Follow(static_cast<pid_t>(*pid));
    output.Start();

    // The wait has a channel of its own, whose timeout is what is left of the Exec's.
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    Result<std::unique_ptr<GrpcChannel>> waiter = Channel(std::max(left.count(), int64_t{1}));
    if (!waiter.ok()) return exec.End(waiter.status());
    Result<ContainerdExit> exit = ContainerdWaitTask(waiter->get(), id, exec_id);
    if (exit.status().code() == Status::Code::kDeadlineExceeded) {
      Status ended = exec.Kill();
      if (!ended.ok()) return exec.End(ended.WithContext(what));
      return exec.End(Status::DeadlineExceeded(what + ": timed out after " +
                                               FormatDurationMs(options.timeout_ms)));
    }
    if (!exit.ok()) return exec.End(exit.status().WithContext(what));
    exec.KillLeftovers();
    // The shim has written all to the FIFOs once DeleteProcess answers (or given up
    // after 2 s, on what the command left behind that keeps its output open).
    Status deleted = exec.Delete();
    if (!deleted.ok()) return exec.End(deleted.WithContext(what));
    if (exit->exit_status != 0) {
      // A failure may be the container's end (it took the command with it): that is the
      // container's state, not the command's exit code. The shim may hear the command's
      // exit before its init process's: an init process ending says so too.
      Result<ContainerdProcess> task = ContainerdGetTask(channel.get(), id);
      if (!task.ok() || task->status != ContainerdTaskStatus::kRunning ||
          (task->pid > 0 && ProcessEnding(static_cast<pid_t>(task->pid)))) {
        return exec.End(ExecNotRunning(id, "ended while the command ran"));
      }
    }
    ExecResult result = output.Finish();
    result.exit_code = static_cast<int>(exit->exit_status);
    return result;
  }

  Status Delete(const std::string& id) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    // The `started` file stays, for State to say "exited" until the container's
    // directory goes (ProcessDriver's caller removes it next).
    return Remove(channel.get(), id);
  }

 private:
  std::string DirOf(const std::string& id) const { return opts_.containers_dir + "/" + id; }

  // Waits until the logger of container `id` has written all its output (the drained
  // file, logger.h), at most kLogSettleMaxMs: after a task's exit its logger, a process
  // of its own, may still be writing the last output the pipes hold. A logger that
  // never says so (one of a petrel from before it did) costs that much once.
  void WaitForDrained(const std::string& id) const {
    const std::string dir = DirOf(id);
    const std::string drained = dir + "/" + kLoggerDrainedFile;
    // Watched before the first look, so that a file made between the two wakes it.
    UniqueFd watch(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (watch.valid() &&
        inotify_add_watch(watch.get(), dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF) < 0) {
      watch.reset();
    }
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kLogSettleMaxMs);
    struct stat st;
    for (;;) {
      if (stat(drained.c_str(), &st) == 0 || !opts_.present(id)) return;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            until - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) return;
      struct pollfd p = {watch.get(), POLLIN, 0};
      const int step = watch.valid() ? kLogLookMs : kLogPollMs;
      if (poll(&p, 1, static_cast<int>(std::min<int64_t>(left, step))) > 0) {
        char events[4096];
        while (read(watch.get(), events, sizeof(events)) > 0) {
        }
      }
    }
  }

  // A channel whose calls time out after `timeout_ms`, or the options' call_timeout.
  Result<std::unique_ptr<GrpcChannel>> Channel(int64_t timeout_ms = 0) const {
    GrpcChannel::Options o;
    o.socket_path = opts_.socket_path;
    o.ns = opts_.ns;
    o.timeout = timeout_ms > 0 ? std::chrono::milliseconds(timeout_ms) : opts_.call_timeout;
    return GrpcChannel::Open(o);
  }

  // Why an Exec could not add or start its process (`s`): the container not running (it
  // has no task, or its task is not running), a command not in the image (exit code 127,
  // with runc's words as the output, as a shell gives: options given), or the shim's or
  // runc's refusal, an IOError.
  Result<ExecResult> ExecRefused(GrpcChannel* channel, const std::string& id, const Status& s,
                                 const ExecOptions* options = nullptr) {
    Result<ContainerdProcess> task = ContainerdGetTask(channel, id);
    if (task.status().IsNotFound()) {
      return ExecNotRunning(id, opts_.present(id) ? "is created" : "was removed");
    }
    if (task.ok() && task->status != ContainerdTaskStatus::kRunning) {
      return ExecNotRunning(id, "is " + StateName(task->status));
    }
    const Status why = StartError(s).WithContext("exec in " + id);
    if (options == nullptr || options->command.empty()) return why;
    const std::string said = RuncNotFoundWords(why.message(), options->command[0]);
    if (said.empty()) return why;
    ExecResult result;
    result.exit_code = 127;
    result.output = said + "\n";
    return result;
  }

  // Kills the task (every process) should it run, deletes it and the container: OK when
  // they are gone, also when they were not there.
  Status Remove(GrpcChannel* channel, const std::string& id) {
    Result<ContainerdProcess> task = ContainerdGetTask(channel, id);
    if (task.ok()) {
      ContainerdExit exit;
      exit.exit_status = task->exit_status;
      exit.exited_at = task->exited_at;
      if (task->status != ContainerdTaskStatus::kStopped) {
        Status k = ContainerdKillTask(channel, id, SIGKILL, true);
        if (!k.ok() && !k.IsNotFound()) return k.WithContext("delete container " + id);
        Result<ContainerdExit> waited = ContainerdWaitTask(channel, id);
        if (!waited.ok() && !waited.status().IsNotFound()) {
          return waited.status().WithContext("delete container " + id);
        }
        if (waited.ok()) exit = *waited;
      }
      // What State answers once the task is gone, until the directory goes.
      if (task->status != ContainerdTaskStatus::kCreated) {
        // Asked before the task goes: runc removes the cgroup with it.
        const bool oom = OomKilled(id, static_cast<int>(exit.exit_status));
        PETREL_RETURN_IF_ERROR(WriteFileAtomic(
            DirOf(id) + "/" + kExitedFile, std::to_string(exit.exit_status) + " " +
                                               std::to_string(ToMs(exit.exited_at)) +
                                               (oom ? std::string(" ") + kOomKilled : "") + "\n"));
      }
      Status d = ContainerdDeleteTask(channel, id).status();
      if (!d.ok() && !d.IsNotFound()) return d.WithContext("delete container " + id);
    } else if (!task.status().IsNotFound()) {
      return task.status().WithContext("delete container " + id);
    }
    Status d = ContainerdDeleteContainer(channel, id);
    if (!d.ok() && !d.IsNotFound()) return d.WithContext("delete container " + id);
    return Status::OK();
  }

  // Whether the task of container `id` that ended with `exit_code` was OOM-killed: by
  // SIGKILL, with an OOM kill counted in its memory cgroup (still there until the task
  // is deleted).
  bool OomKilled(const std::string& id, int exit_code) const {
    if (exit_code != 128 + SIGKILL) return false;
    Result<std::string> events = ReadSmallFile(DirOf(id) + "/" + kOomFile, kDriverRecordMax);
    if (!events.ok()) return false;
    Result<std::string> counts = ReadSmallFile(*events, 4096);
    return counts.ok() && CountsOomKill(counts->c_str());
  }

  // Removes container `id` from containerd when its task never started (a Run cut
  // short); FailedPrecondition when it has.
  Status RemoveUnstarted(GrpcChannel* channel, const std::string& id) {
    Result<ContainerdProcess> task = ContainerdGetTask(channel, id);
    if (task.ok() && task->status != ContainerdTaskStatus::kCreated) {
      return Status::FailedPrecondition("start container " + id + ": containerd has its task, " +
                                        ContainerdTaskStatusName(task->status));
    }
    if (!task.ok() && !task.status().IsNotFound()) return task.status();
    return Remove(channel, id);
  }

  const ContainerdDriverOptions opts_;
  // Names each Exec's process: "exec-<ms the driver was made, hex>-", then a count, so
  // that a process a crashed petrel left in a task is never in the way.
  const std::string exec_prefix_ = ExecPrefix();
  std::atomic<uint64_t> exec_count_{0};
  ExitFn on_exit_;
  std::unique_ptr<ContainerdExitWatcher> watcher_;
};

}  // namespace

std::vector<ContainerdMount> ContainerdOverlayMounts(const std::string& overlay) {
  if (overlay.empty()) return {};
  ContainerdMount m;
  m.type = "overlay";
  m.source = "overlay";
  std::string option;
  for (size_t i = 0; i < overlay.size(); i++) {
    const char c = overlay[i];
    if (c == '\\' && i + 1 < overlay.size()) {
      option += c;
      option += overlay[++i];
    } else if (c == ',') {
      m.options.push_back(std::move(option));
      option.clear();
    } else {
      option += c;
    }
  }
  m.options.push_back(std::move(option));
  return {m};
}

std::unique_ptr<ProcessDriver> NewContainerdDriver(ContainerdDriverOptions options) {
  return std::make_unique<ContainerdDriver>(std::move(options));
}

}  // namespace petrel::internal
