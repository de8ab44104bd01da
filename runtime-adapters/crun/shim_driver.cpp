// The shim-based ProcessDriver: crun or runc through their command line, each container
// started by a shim of petrel's (shim.h) that outlives petrel. Its files:
//   <containers>/<id>/{init.pid, shim.pid, shim.lock, exit, runtime.log}  (shim.h)
//   <state>/runtime/                      the runtime's --root
//   <state>/exits.sock                    shims say "<id>" here when a container ends
//   <state>/exec/<id>.<n>.{json,pid,log}  one Exec's process.json, the runtime's pid file
//                                         and log; gone when it returns
// A container is "created" while it has no shim, "running" while its shim lives,
// "exited" once the shim wrote its exit.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "lib/oci/runtime_config.h"
#include "lib/util/fs.h"
#include "lib/util/log_files.h"
#include "lib/util/process.h"
#include "lib/util/strings.h"
#include "runtime-adapters/crun/process_driver.h"
#include "runtime-adapters/crun/shim.h"

namespace petrel::internal {
namespace {

using nlohmann::json;

// Bound for the runtime's log and /proc stat, read whole.
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
    Result<std::string> text = ReadSmallFile(pid_file_, kDriverRecordMax);
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
      KeepExecOutput(std::string_view(buf, static_cast<size_t>(n)), limit, result);
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

class ShimDriver final : public ProcessDriver {
 public:
  explicit ShimDriver(ShimDriverOptions options)
      : opts_(std::move(options)),
        runtime_root_(opts_.state_dir + "/runtime"),
        exec_dir_(opts_.state_dir + "/exec"),
        exits_socket_(opts_.state_dir + "/exits.sock") {}

  ~ShimDriver() override {
    if (wake_.valid()) {
      uint64_t one = 1;
      (void)!write(wake_.get(), &one, sizeof(one));
    }
    if (watcher_.joinable()) watcher_.join();
  }

  std::string Name() const override { return opts_.is_runc ? "runc" : "crun"; }

  bool PetrelMakesCgroups() const override {
    return !opts_.is_runc && opts_.layout == CgroupLayout::kHybrid;
  }

  Status Open(ExitFn on_exit) override {
    // What Execs cut short by a crash left: nothing runs them any more.
    PETREL_RETURN_IF_ERROR(RemoveTree(exec_dir_));
    for (const std::string& d : {runtime_root_, exec_dir_}) {
      PETREL_RETURN_IF_ERROR(MakeDurableDirs(d, 0700));
    }
    on_exit_ = std::move(on_exit);
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
    return Status::OK();
  }

  Result<ProcessState> State(const std::string& id) override {
    const std::string dir = DirOf(id);
    ProcessState info;
    // A Remove may move the directory away at any moment (State may overlap with it):
    // a file found missing is only believed while the container is still present, and
    // otherwise the answer is NotFound, as after the Remove.
    struct stat shim_pid;
    if (lstat((dir + "/" + kShimPidFile).c_str(), &shim_pid) != 0) {
      if (!opts_.present(id)) return Status::NotFound("no container " + id);
      return info;  // never started: created
    }
    // The shim writes its pid file as it starts the container.
    info.started_at =
        static_cast<TimeMs>(shim_pid.st_mtim.tv_sec) * 1000 + shim_pid.st_mtim.tv_nsec / 1000000;
    if (ReadExit(dir, &info)) return info;
    if (ShimAlive(dir)) {
      info.state = ContainerState::kRunning;
      Result<std::string> pid = ReadSmallFile(dir + "/" + kInitPidFile, kDriverRecordMax);
      if (pid.ok()) info.pid = atoi(pid->c_str());
      return info;
    }
    // The shim writes the exit file before it ends: look again now that it has.
    if (ReadExit(dir, &info)) return info;
    if (!opts_.present(id)) return Status::NotFound("no container " + id);
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
    if (!opts_.present(id)) return Status::NotFound("no container " + id);
    info.state = ContainerState::kExited;
    info.exit_code = -1;  // unknown: nobody was watching when it ended
    return info;
  }

  Status Run(const Bundle& bundle) override {
    PendingShim pending;
    pending.timeout_ms = opts_.start_timeout_ms;
    PETREL_RETURN_IF_ERROR(BeginLaunch(bundle, &pending));
    return FinishLaunch(&pending);
  }

  Status Signal(const std::string& id, int signal) override {
    int status = 0;
    std::string out;
    PETREL_RETURN_IF_ERROR(
        RunCommand(RuntimeArgv({"kill", id, std::to_string(signal)}), &status, &out));
    if (status == 0) return Status::OK();
    Result<ProcessState> after = State(id);
    if (after.ok() && after->state == ContainerState::kExited) return Status::OK();
    return Status::IOError("kill container " + id + ": " + Name() + ": " + LastLine(out));
  }

  // `<runtime> exec --process`: crun's exec, unlike runc's, would otherwise run as root
  // in "/". On crun on a hybrid host the runtime's process first joins the container's
  // limit cgroups, so that the command is born in them, as BeginLaunch does for the
  // container. Its files go to exec_dir_, not the container's directory, which a Remove
  // may move away at any moment.
  Result<ExecResult> Exec(const Bundle& bundle, const std::string& process,
                          const ExecOptions& options) override {
    const std::string& id = bundle.id;
    const std::string what = "exec in " + id;
    ExecFiles files(exec_dir_ + "/" + id + "." + std::to_string(++exec_count_));
    {
      // A new name each time, read once and removed: no rename and no fsync, which a
      // probe every few seconds would pay for in flash wear.
      UniqueFd fd(open(files.process.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!fd.valid()) return ErrnoError(files.process, "create", errno);
      PETREL_RETURN_IF_ERROR(WriteAll(fd.get(), process, files.process));
    }

    CommandPlan plan;
    plan.argv = RuntimeArgv({"--log", files.log, "--log-format", "json", "exec", "--process",
                             files.process, "--pid-file", files.pid, id});
    plan.env = {kDefaultPathEnv};
    if (PetrelMakesCgroups()) {
      // Those the container is in: a container started before petrel made a devices
      // cgroup for each has none.
      for (const std::string& procs :
           opts_.port->LimitCgroupsFor(bundle.cgroup_parent, id, bundle.limits).procs) {
        if (Exists(procs)) plan.setup.join_cgroups.push_back(procs);
      }
    }
    plan.port = opts_.port;
    plan.nice = base_nice_;
    StartedCommand cli;
    PETREL_RETURN_IF_ERROR(StartCommand(plan, &cli).WithContext(what));
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

  Status Delete(const std::string& id) override {
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
    return Status::OK();
  }

 private:
  std::string DirOf(const std::string& id) const { return opts_.containers_dir + "/" + id; }

  std::vector<std::string> RuntimeArgv(std::vector<std::string> command) const {
    std::vector<std::string> argv = {opts_.binary, "--root", runtime_root_};
    if (!opts_.is_runc) {
      argv.push_back(PetrelMakesCgroups() ? "--cgroup-manager=disabled"
                                          : "--cgroup-manager=cgroupfs");
    }
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
  }

  // Fills in the exit from the container's exit file: false when there is none (yet).
  // A damaged one ("<code> <finished ms>[ OOMKilled]\n" cut short, empty, garbage) says
  // exited with an unknown code (-1), never a number read from what is left of it.
  static bool ReadExit(const std::string& dir, ProcessState* info) {
    Result<std::string> exit = ReadSmallFile(dir + "/" + kExitFile, kDriverRecordMax);
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

  // True while the container's shim holds its lock.
  static bool ShimAlive(const std::string& dir) {
    UniqueFd fd(open((dir + "/shim.lock").c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return false;
    if (flock(fd.get(), LOCK_SH | LOCK_NB) == 0) return false;  // nobody holds it
    return errno == EWOULDBLOCK;
  }

  // Starts a created container: its cgroups (crun on hybrid), then the shim, which
  // runs `<runtime> run --detach` and stays as the container's parent. FinishLaunch
  // waits for the runtime's verdict.
  Status BeginLaunch(const Bundle& bundle, PendingShim* pending) {
    const std::string& id = bundle.id;
    const std::string& dir = bundle.dir;
    ShimPlan plan;
    plan.id = id;
    plan.dir = dir;
    plan.argv = {opts_.binary, "--root", runtime_root_, "--log", dir + "/" + kRuntimeLogFile};
    if (opts_.is_runc) {
      plan.argv.insert(plan.argv.end(), {"--log-format", "json"});
    } else {
      plan.argv.push_back(PetrelMakesCgroups() ? "--cgroup-manager=disabled"
                                               : "--cgroup-manager=cgroupfs");
    }
    plan.argv.insert(plan.argv.end(), {"run", "--detach", "--bundle", dir, "--pid-file",
                                       dir + "/" + kInitPidFile, id});
    plan.env = {kDefaultPathEnv};
    if (PetrelMakesCgroups()) {
      PETREL_ASSIGN_OR_RETURN(
          const LimitCgroups cgroups,
          opts_.port->CreateLimitCgroups(bundle.cgroup_parent, id, bundle.limits));
      plan.runtime_setup.join_cgroups = cgroups.procs;
      plan.runtime_setup.pure_cgroup2 = true;
    }
    plan.runtime_setup.overlay_data = bundle.overlay;
    if (!plan.runtime_setup.overlay_data.empty())
      plan.runtime_setup.overlay_target = dir + "/rootfs";
    plan.port = opts_.port;
    plan.log_max_bytes = opts_.log_max_bytes;
    plan.nice = base_nice_;
    plan.notify_socket = exits_socket_;
    plan.lease_path = bundle.lease.path;
    plan.lease_ms = bundle.lease.duration_ms;
    plan.oom_file = opts_.port->OomKillsFile(bundle.cgroup_parent, id);
    return BeginShim(plan, pending);
  }

  Status FinishLaunch(PendingShim* pending) {
    const std::string id = pending->id;
    pid_t shim = 0;
    Status s = FinishShim(pending, &shim);
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
    Result<std::string> log = ReadSmallFile(DirOf(id) + "/" + kRuntimeLogFile, kLogFile);
    if (log.ok()) why = LastLine(*log);
    if (why.empty() && opts_.present(id)) {
      // The container's output, as Logs gives it.
      Result<LogChunk> out = ReadLogFiles(DirOf(id), LogOptions{});
      if (out.ok() && opts_.present(id)) why = LastLine(out->data);
    }
    return why.empty() ? s : Status::IOError(Name() + ": " + why);
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
    Result<ProcessState> now = State(id);
    if (!now.ok() || now->state != ContainerState::kRunning ||
        (now->pid > 0 && ProcessEnded(now->pid))) {
      return ExecNotRunning(id, "ended while the command ran");
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
      if (!IsPlainName(id, 200)) continue;
      // -1 (unknown) when the exit file is missing or damaged, never a guess.
      ProcessState exited;
      const int code = ReadExit(DirOf(id), &exited) ? exited.exit_code : -1;
      on_exit_(id, code);
    }
  }

  const ShimDriverOptions opts_;
  // The priority containers run at: the creating thread's, not that of the worker
  // thread a start happens to run on.
  const int base_nice_ = getpriority(PRIO_PROCESS, 0);
  const std::string runtime_root_, exec_dir_, exits_socket_;
  std::atomic<uint64_t> exec_count_{0};  // names each Exec's files
  ExitFn on_exit_;
  UniqueFd sock_, wake_;
  std::thread watcher_;
};

}  // namespace

std::unique_ptr<ProcessDriver> NewShimDriver(ShimDriverOptions options) {
  return std::make_unique<ShimDriver>(std::move(options));
}

}  // namespace petrel::internal
