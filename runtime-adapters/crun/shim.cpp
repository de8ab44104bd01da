#include "runtime-adapters/crun/shim.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "lib/util/fork.h"
#include "lib/util/fs.h"
#include "lib/util/lease.h"
#include "lib/util/log_files.h"
#include "lib/util/strings.h"
#include "lib/util/workers.h"
#include "petrel/spec.h"

namespace petrel::internal {
namespace {

// --- async-signal-safe helpers (no allocation, no locks, no errno-clobbering libc) ---

void RawWriteAll(int fd, const char* p, size_t n) { RawWrite(fd, p, n); }

void WriteStr(int fd, const char* s) { RawWriteAll(fd, s, strlen(s)); }

// "petrel-shim: <what>: <strerror>\n" on fd 2 (runtime.log in the shim; the container's
// log in the runtime's process), then exit 127.
[[noreturn]] void Die(const char* what) {
  int err = errno;
  WriteStr(2, "petrel-shim: ");
  WriteStr(2, what);
  WriteStr(2, ": ");
  const char* desc = strerrordesc_np(err);  // no locale, no allocation
  WriteStr(2, desc != nullptr ? desc : "unknown error");
  WriteStr(2, "\n");
  _exit(127);
}

// Milliseconds of `clock`: CLOCK_REALTIME for the exit time petrel reads, CLOCK_MONOTONIC
// for deadlines. Read raw, not through petrel's Clock: after fork() only
// async-signal-safe calls are allowed, and a Clock promises no such thing.
int64_t NowMs(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Everything the forked processes need, laid out before fork().
struct Prepared {
  std::vector<std::string> argv_s, env_s;
  std::vector<char*> argv, envp;
  std::string dir;  // the container's
  std::string init_pid, exit_file, exit_tmp, lock_file, shim_pid, shim_pid_tmp, runtime_log;
  LogPaths log_paths;  // digits filled in after fork, by the LogWriter
  std::unique_ptr<ChildSetup> shim_setup, runtime_setup;  // ChildSetup::Apply after fork
  int64_t log_max_bytes = 0;
  int nice = 0;
  struct sockaddr_un notify {};
  socklen_t notify_len = 0;
  std::string id;
  std::string lease_path;  // empty: no lease
  int64_t lease_ms = 0;
  std::string oom_file;  // empty: none
};

// The lease, as of now: when it was renewed (-1: unknown) and whether it has run out.
// Always held when the container has none.
bool LeaseHeld(const Prepared& p, TimeMs* renewed_at) {
  if (p.lease_path.empty()) return true;
  *renewed_at = ReadLease(p.lease_path.c_str());
  return !LeaseExpired(*renewed_at, p.lease_ms, NowMs(CLOCK_MONOTONIC));
}

// "petrel-shim: lease <path> <what>\n" on fd 2 (runtime.log).
void SayLease(const Prepared& p, const char* what) {
  WriteStr(2, "petrel-shim: lease ");
  WriteStr(2, p.lease_path.c_str());
  WriteStr(2, " ");
  WriteStr(2, what);
  WriteStr(2, "\n");
}

int ReadInitPid(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[32];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  int pid = 0;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) pid = pid * 10 + (buf[i] - '0');
  return pid > 0 ? pid : -1;
}

// Whether the kernel OOM-killed a process of the container's memory cgroup.
bool OomKilled(const Prepared& p) {
  if (p.oom_file.empty()) return false;
  int fd = open(p.oom_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[512];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  return CountsOomKill(buf);
}

// "<code> <finished ms>[ OOMKilled]\n": the reason when the code is a SIGKILL's and the
// container's memory cgroup counted an OOM kill.
void WriteExit(const Prepared& p, int code) {
  char buf[64];
  size_t n = 0;
  const bool oom = code == 128 + SIGKILL && OomKilled(p);
  if (code < 0) {
    buf[n++] = '-';
    code = -code;
  }
  n += FormatDecimal(static_cast<uint64_t>(code), buf + n);
  buf[n++] = ' ';
  n += FormatDecimal(static_cast<uint64_t>(NowMs(CLOCK_REALTIME)), buf + n);
  if (oom) {
    static constexpr char kOom[] = " OOMKilled";
    memcpy(buf + n, kOom, sizeof(kOom) - 1);
    n += sizeof(kOom) - 1;
  }
  buf[n++] = '\n';
  int fd = open(p.exit_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return;
  RawWriteAll(fd, buf, n);
  // On disk before the rename and the rename after it, as WriteFileAtomic does: after a
  // power cut the exit file is whole or missing, never empty.
  fsync(fd);
  close(fd);
  rename(p.exit_tmp.c_str(), p.exit_file.c_str());
  fd = open(p.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  fsync(fd);
  close(fd);
}

void Notify(const Prepared& p) {
  if (p.notify_len == 0) return;
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  sendto(s, p.id.data(), p.id.size(), MSG_DONTWAIT,
         reinterpret_cast<const struct sockaddr*>(&p.notify), p.notify_len);
  close(s);
}

int CodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// The runtime's command, in the child of the shim: stdout/stderr into the log pipe,
// into the prepared cgroups and mount namespace, then exec.
[[noreturn]] void ExecRuntime(const Prepared& p, int log_w) {
  ResetSignals();
  if (dup2(log_w, 1) < 0 || dup2(log_w, 2) < 0) _exit(127);
  CloseFrom(3);
  const char* failed = "";
  if (int err = p.runtime_setup->Apply(&failed); err != 0) {
    errno = err;
    Die(failed);
  }
  execve(p.argv[0], p.argv.data(), p.envp.data());
  Die(p.argv[0]);
}

// Cuts the shim loose from petrel: fds 0-1 on /dev/null, fd 2 on the container's
// runtime.log (where petrel reads why a start failed, the shim's own failures
// included: Die), `sync` moved to fd 3, nothing else of petrel's open (its database
// and state-dir lock above all), default signal handling, cwd "/", a subreaper of the
// container's processes. Returns the sync fd.
int Detach(const Prepared& p, int sync) {
  int null = open("/dev/null", O_RDWR);
  if (null < 0) _exit(127);
  int errors = open(p.runtime_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (sync <= 3) {
    int moved = fcntl(sync, F_DUPFD_CLOEXEC, 10);
    if (moved < 0) _exit(127);
    sync = moved;
  }
  dup2(null, 0);
  dup2(null, 1);
  dup2(errors >= 0 ? errors : null, 2);
  if (dup2(sync, 3) < 0) Die("move the sync pipe");
  sync = 3;
  fcntl(sync, F_SETFD, FD_CLOEXEC);
  CloseFrom(4);
  ResetSignals();
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  if (chdir("/") != 0) Die("chdir /");
  const char* failed = "";
  if (int err = p.shim_setup->Apply(&failed); err != 0) {
    errno = err;
    Die(failed);
  }
  prctl(PR_SET_NAME, "petrel-shim");
  return sync;
}

// Takes the container's shim lock for the rest of our life and records our pid.
// petrel tells a live shim from a dead one by this lock, which the kernel drops when
// we die, so a reused pid can never fool it. petrel's test of the lock (ShimAlive)
// holds it shared for a moment: that is waited out, for up to a second; a lock held
// longer is another shim's, and we must not start a second container.
void HoldShimLock(const Prepared& p) {
  int lock = open(p.lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (lock < 0) Die("open the shim lock");
  for (int tries = 0; flock(lock, LOCK_EX | LOCK_NB) != 0; tries++) {
    if (errno != EWOULDBLOCK || tries == 1000) Die("take the shim lock");
    struct timespec ms = {0, 1000 * 1000};
    nanosleep(&ms, nullptr);
  }
  char buf[32];
  size_t n = FormatDecimal(static_cast<uint64_t>(getpid()), buf);
  buf[n++] = '\n';
  int fd = open(p.shim_pid_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd >= 0) {
    RawWriteAll(fd, buf, n);
    close(fd);
    rename(p.shim_pid_tmp.c_str(), p.shim_pid.c_str());
  }
}

// A signalfd that becomes readable when a child ends (SIGCHLD blocked otherwise).
int WatchChildren() {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, nullptr);
  return signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
}

// Reaps every child that has ended: the container's init and, as we are a subreaper,
// its orphans. Sets *exit_code when `init` is among them. Returns true once `init` has
// ended, or no child is left at all (init is gone even if we never learnt its pid).
bool Reap(int sfd, pid_t init, int* exit_code) {
  struct signalfd_siginfo si;
  while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
  }
  bool init_done = false;
  for (;;) {
    int st = 0;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid <= 0) return init_done || (pid < 0 && errno == ECHILD);
    if (pid == init) {
      *exit_code = CodeOf(st);
      init_done = true;
    }
  }
}

// Follows the running container: copies its output from `log_r` into the log until
// its init process has ended and the pipe is drained, or for at most 500 ms after init
// ended (a leftover process may hold the pipe open). Returns init's exit code, -1 when
// it was never learnt. `buf` is scratch space of `size` bytes.
int Supervise(const Prepared& p, int sfd, int log_r, LogWriter* log, char* buf, size_t size) {
  const int init = ReadInitPid(p.init_pid.c_str());
  int exit_code = -1;
  bool init_done = false, pipe_open = true;
  int64_t drain_deadline = 0;
  // The lease: read every kLeaseCheckMs, and when it would run out if not renewed.
  bool watch_lease = !p.lease_path.empty();
  int64_t next_lease_check = NowMs(CLOCK_MONOTONIC);
  while (pipe_open || !init_done) {
    struct pollfd fds[2] = {{sfd, POLLIN, 0}, {pipe_open ? log_r : -1, POLLIN, 0}};
    int timeout = -1;
    if (init_done) {
      int64_t left = drain_deadline - NowMs(CLOCK_MONOTONIC);
      if (left <= 0) break;
      timeout = static_cast<int>(left);
    } else if (watch_lease) {
      const int64_t now = NowMs(CLOCK_MONOTONIC);
      if (now >= next_lease_check) {
        TimeMs renewed_at = -1;
        if (LeaseHeld(p, &renewed_at)) {
          next_lease_check = NextLeaseLook(renewed_at, p.lease_ms, now);
        } else {
          // petrel has not renewed it in time: it is dead, hung or cut off, and the
          // cluster may start this workload elsewhere. Killed once; the exit follows.
          SayLease(p, init > 0 ? "ran out: killing the container"
                               : "ran out, but the container's pid is unknown");
          if (init > 0) kill(init, SIGKILL);
          watch_lease = false;
        }
      }
      if (watch_lease) timeout = static_cast<int>(next_lease_check - now);
    }
    int r = poll(fds, 2, timeout);
    if (r < 0 && errno != EINTR) break;
    if (pipe_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = read(log_r, buf, size);
      if (n > 0) {
        log->Write(buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        pipe_open = false;
      }
    }
    if ((fds[0].revents & POLLIN) && Reap(sfd, init_done ? 0 : init, &exit_code) && !init_done) {
      init_done = true;
      drain_deadline = NowMs(CLOCK_MONOTONIC) + 500;
    }
  }
  return exit_code;
}

// The shim itself. `sync` gets our pid, then the runtime's wait status.
[[noreturn]] void RunShim(Prepared& p, int sync) {
  sync = Detach(p, sync);
  HoldShimLock(p);
  int32_t msg[2] = {static_cast<int32_t>(getpid()), 0};
  RawWriteAll(sync, reinterpret_cast<const char*>(&msg[0]), sizeof(int32_t));

  int sfd = WatchChildren();
  int pipefd[2];
  if (sfd < 0) Die("signalfd");
  if (pipe2(pipefd, O_CLOEXEC) != 0) Die("pipe");
  int log_r = pipefd[0], log_w = pipefd[1];
  LogWriter log{p.log_paths.a.data(), p.log_paths.b.data(), p.log_paths.digits_at, p.log_max_bytes};
  log.Open();

  // A lease run out already: the container must not start at all. Told as a runtime
  // that failed (exit code 1), with the reason last on runtime.log, where petrel reads it.
  if (TimeMs renewed_at = -1; !LeaseHeld(p, &renewed_at)) {
    SayLease(p, "has run out: not starting the container");
    WriteExit(p, 255);
    msg[1] = 1 << 8;
    RawWriteAll(sync, reinterpret_cast<const char*>(&msg[1]), sizeof(int32_t));
    _exit(1);
  }
  pid_t runtime = RawFork();
  if (runtime < 0) Die("fork");
  if (runtime == 0) ExecRuntime(p, log_w);
  close(log_w);
  int status = 0;
  while (waitpid(runtime, &status, 0) < 0 && errno == EINTR) {
  }
  fcntl(log_r, F_SETFL, O_NONBLOCK);
  char buf[65536];
  msg[1] = status;
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    // The runtime's complaint goes into the log, where petrel reads it.
    ssize_t n;
    while ((n = read(log_r, buf, sizeof(buf))) > 0) log.Write(buf, static_cast<size_t>(n));
    WriteExit(p, 255);
    RawWriteAll(sync, reinterpret_cast<const char*>(&msg[1]), sizeof(int32_t));
    _exit(1);
  }
  RawWriteAll(sync, reinterpret_cast<const char*>(&msg[1]), sizeof(int32_t));
  close(sync);

  WriteExit(p, Supervise(p, sfd, log_r, &log, buf, sizeof(buf)));
  Notify(p);
  _exit(0);
}

// The command of StartCommand, in the forked child: it writes errno and the name of the
// step that failed to `report` (close-on-exec, so a successful exec closes it unwritten).
[[noreturn]] void RunCommandChild(const std::vector<char*>& argv, const std::vector<char*>& envp,
                                  const ChildSetup& setup, int nice, int out_w, int report) {
  setsid();
  (void)setpriority(PRIO_PROCESS, 0, nice);
  const char* failed = "open /dev/null";
  int err = 0;
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null >= 0) {
    // The report pipe and the output above stdio first, so that no dup2 below
    // overwrites one of them; then stdio, the report pipe at 3 and nothing else open.
    failed = "dup2";
    const int r = fcntl(report, F_DUPFD_CLOEXEC, 10);
    const int o = fcntl(out_w, F_DUPFD_CLOEXEC, 10);
    if (r >= 0 && o >= 0 && dup2(null, 0) == 0 && dup2(o, 1) == 1 && dup2(o, 2) == 2 &&
        dup2(r, 3) == 3 && fcntl(3, F_SETFD, FD_CLOEXEC) == 0) {
      report = 3;
      CloseFrom(4);
      ResetSignals();
      failed = "";
      err = setup.Apply(&failed);
      if (err == 0) {
        execve(argv[0], argv.data(), envp.data());
        failed = argv[0];
      }
    }
  }
  if (err == 0) err = errno;
  RawWriteAll(report, reinterpret_cast<const char*>(&err), sizeof(err));
  RawWriteAll(report, failed, strlen(failed));
  _exit(127);
}

}  // namespace

bool CountsOomKill(const char* text) {
  static constexpr char kKey[] = "oom_kill ";
  for (const char* line = text; line != nullptr && *line != '\0';) {
    if (strncmp(line, kKey, sizeof(kKey) - 1) == 0) {
      const char c = line[sizeof(kKey) - 1];
      return c >= '1' && c <= '9';  // no leading zeros: "0" is none
    }
    line = strchr(line, '\n');
    if (line != nullptr) line++;
  }
  return false;
}

Status StartCommand(const CommandPlan& plan, StartedCommand* started) {
  std::vector<std::string> argv_s = plan.argv, env_s = plan.env;
  std::vector<char*> argv, envp;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  PETREL_ASSIGN_OR_RETURN(const std::unique_ptr<ChildSetup> setup,
                          plan.port->PrepareChild(plan.setup));
  int out[2], report[2];
  if (pipe2(out, O_CLOEXEC) != 0) return ErrnoError("pipe", "", errno);
  if (pipe2(report, O_CLOEXEC) != 0) {
    int err = errno;
    close(out[0]);
    close(out[1]);
    return ErrnoError("pipe", "", err);
  }
  // Not fork(): an exec probe may start a command ten times a second, and a fork of
  // petreld copies its page tables and makes every page its other threads then write
  // fault once. The child shares petreld's memory on a stack of its own until it execs
  // (as posix_spawn does): RunCommandChild makes raw system calls only, and the parent
  // waits (CLONE_VFORK) until the exec or the child's end.
  struct ChildArgs {
    const std::vector<char*>* argv;
    const std::vector<char*>* envp;
    const ChildSetup* setup;
    int nice, out_w, report_w;
  } args{&argv, &envp, setup.get(), plan.nice, out[1], report[1]};
  pid_t pid = -1;
  int fork_err = 0;
#if PETREL_TSAN
  // ThreadSanitizer cannot follow a child that shares the parent's memory (its clone
  // interceptor stops on CLONE_VM): its builds fork.
  pid = fork();
  if (pid == 0) {
    RunCommandChild(*args.argv, *args.envp, *args.setup, args.nice, args.out_w, args.report_w);
  }
  if (pid < 0) fork_err = errno;
#else
  constexpr size_t kStackSize = 256 * 1024;
  void* stack = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    fork_err = errno;
  } else {
    pid = clone(
        [](void* a) -> int {
          const auto* c = static_cast<const ChildArgs*>(a);
          RunCommandChild(*c->argv, *c->envp, *c->setup, c->nice, c->out_w, c->report_w);
        },
        static_cast<char*>(stack) + kStackSize, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
    if (pid < 0) fork_err = errno;
    munmap(stack, kStackSize);  // CLONE_VFORK: the child has exec'd or ended
  }
#endif
  close(out[1]);
  close(report[1]);
  if (pid < 0) {
    close(out[0]);
    close(report[0]);
    return ErrnoError("clone", "", fork_err);
  }
  // Nothing to read (end of file at the exec) is success.
  std::string said;
  char buf[512];
  for (;;) {
    ssize_t n = read(report[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    said.append(buf, static_cast<size_t>(n));
  }
  close(report[0]);
  if (said.size() < sizeof(int)) {
    started->pid = pid;
    started->output = out[0];
    return Status::OK();
  }
  close(out[0]);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  int err = 0;
  memcpy(&err, said.data(), sizeof(err));
  return ErrnoError(said.substr(sizeof(err)), "", err);
}

Status BeginShim(const ShimPlan& plan, PendingShim* pending) {
  Prepared p;
  p.id = plan.id;
  p.argv_s = plan.argv;
  p.env_s = plan.env;
  for (std::string& s : p.argv_s) p.argv.push_back(s.data());
  p.argv.push_back(nullptr);
  for (std::string& s : p.env_s) p.envp.push_back(s.data());
  p.envp.push_back(nullptr);
  const std::string d = plan.dir + "/";
  p.dir = plan.dir;
  p.init_pid = d + kInitPidFile;
  p.exit_file = d + kExitFile;
  p.exit_tmp = d + kExitFile + ".tmp";
  p.lock_file = d + "shim.lock";
  p.runtime_log = d + kRuntimeLogFile;
  p.shim_pid = d + kShimPidFile;
  p.shim_pid_tmp = d + kShimPidFile + ".tmp";
  p.log_paths = MakeLogPaths(plan.dir);
  ChildPlan shim_setup;
  shim_setup.subreaper = true;
  ChildPlan runtime_setup = plan.runtime_setup;
  runtime_setup.private_mounts = true;
  PETREL_ASSIGN_OR_RETURN(p.shim_setup, plan.port->PrepareChild(shim_setup));
  PETREL_ASSIGN_OR_RETURN(p.runtime_setup, plan.port->PrepareChild(runtime_setup));
  p.log_max_bytes = plan.log_max_bytes > 0 ? plan.log_max_bytes : (1 << 20);
  p.nice = plan.nice;
  p.lease_path = plan.lease_path;
  p.lease_ms = plan.lease_ms;
  p.oom_file = plan.oom_file;
  if (!plan.notify_socket.empty()) {
    if (plan.notify_socket.size() >= sizeof(p.notify.sun_path)) {
      return Status::InvalidArgument("notify socket path too long: " + plan.notify_socket);
    }
    p.notify.sun_family = AF_UNIX;
    memcpy(p.notify.sun_path, plan.notify_socket.c_str(), plan.notify_socket.size() + 1);
    p.notify_len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) +
                                          plan.notify_socket.size() + 1);
  }

  int sync[2];
  if (pipe2(sync, O_CLOEXEC) != 0) return ErrnoError("pipe", "", errno);
  const std::optional<int> nice_before = RaiseToMainThreadPriority();
  pid_t middle = RawFork();
  if (middle != 0 && nice_before) {
    (void)SetThreadNice(*nice_before);
  }
  if (middle < 0) {
    int err = errno;
    close(sync[0]);
    close(sync[1]);
    return ErrnoError("fork", "", err);
  }
  if (middle == 0) {
    // Twice forked, so the shim is nobody's child in petrel: petrel never has to
    // reap it, and it lives on when petrel dies.
    close(sync[0]);
    setsid();
    (void)setpriority(PRIO_PROCESS, 0, p.nice);
    pid_t shim = RawFork();
    if (shim != 0) _exit(shim < 0 ? 1 : 0);
    RunShim(p, sync[1]);
  }
  close(sync[1]);
  int st = 0;
  while (waitpid(middle, &st, 0) < 0 && errno == EINTR) {
  }
  pending->id = plan.id;
  pending->runtime = plan.argv[0];
  pending->sync_fd = sync[0];
  pending->group = middle;  // setsid() made it the leader of the shim's group
  return Status::OK();
}

Status FinishShim(PendingShim* pending, pid_t* shim_pid) {
  int sync[1] = {pending->sync_fd};
  pending->sync_fd = -1;
  int32_t msg[2] = {0, 0};
  size_t got = 0;
  char* out = reinterpret_cast<char*>(msg);
  bool timed_out = false;
  while (got < sizeof(msg)) {
    struct pollfd pfd = {sync[0], POLLIN, 0};
    int r = poll(&pfd, 1, static_cast<int>(pending->timeout_ms));
    if (r < 0 && errno == EINTR) continue;
    timed_out = r == 0;
    if (r <= 0) break;
    ssize_t n = read(sync[0], out + got, sizeof(msg) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(sync[0]);
  if (got >= sizeof(int32_t)) *shim_pid = msg[0];
  if (timed_out) {
    // The sync pipe is still open, so the shim lives and its group with it: the shim
    // and the runtime go before either can start a container nobody waits for. What
    // the runtime made already is for the caller to delete.
    kill(-pending->group, SIGKILL);
    return Status::DeadlineExceeded("container " + pending->id + ": " + pending->runtime +
                                    " did not finish starting it within " +
                                    FormatDurationMs(pending->timeout_ms));
  }
  if (got < sizeof(msg)) {
    return Status::IOError("container " + pending->id + ": the monitor process ended early");
  }
  if (!(WIFEXITED(msg[1]) && WEXITSTATUS(msg[1]) == 0)) {
    return Status::IOError("container " + pending->id + ": " + pending->runtime + " failed with " +
                           (WIFEXITED(msg[1]) ? "exit code " + std::to_string(WEXITSTATUS(msg[1]))
                                              : "signal " + std::to_string(WTERMSIG(msg[1]))));
  }
  return Status::OK();
}

}  // namespace petrel::internal
