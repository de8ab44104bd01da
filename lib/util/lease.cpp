#include "lib/util/lease.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/util/fork.h"
#include "lib/util/fs.h"
#include "lib/util/log_files.h"
#include "lib/util/sha256.h"
#include "lib/util/workers.h"

namespace petrel::internal {

std::string LeaseText(TimeMs renewed_at) { return std::to_string(renewed_at) + "\n"; }

TimeMs LeaseClockNow() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<TimeMs>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

TimeMs ReadLease(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  char buf[32];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n <= 0 || n >= static_cast<ssize_t>(sizeof(buf))) return -1;
  TimeMs v = 0;
  ssize_t i = 0;
  // At most 18 digits (no overflow), then the newline: anything else is not a lease
  // petrel wrote.
  for (; i < n && i < 18 && buf[i] >= '0' && buf[i] <= '9'; i++) v = v * 10 + (buf[i] - '0');
  if (i == 0 || i != n - 1 || buf[i] != '\n') return -1;
  return v;
}

bool InMemory(const std::string& dir) {
  struct statfs fs;
  if (statfs(dir.c_str(), &fs) != 0) return false;
  const auto type = static_cast<unsigned long>(fs.f_type);
  return type == TMPFS_MAGIC || type == RAMFS_MAGIC;
}

std::string LeaseFileOf(const std::string& dir, const std::string& node,
                        const std::string& state_dir) {
  char abs[PATH_MAX];
  const std::string key = realpath(state_dir.c_str(), abs) != nullptr ? abs : state_dir;
  return dir + "/" + node + "-" + Sha256Hex(key).substr(0, 16) + ".lease";
}

namespace {

// What the watcher needs, laid out before the fork: after it, raw system calls only.
struct Watcher {
  const char* lease_path;
  int64_t lease_ms;
  int fds[4];  // pidfd, lock, said, /dev/null: fds 3, 4, 5 and 0-2 of the watcher
  std::string killed, not_killed;
};

void SayRaw(int fd, const char* s) { RawWrite(fd, s, strlen(s)); }

// The watcher (lease.h), in the twice-forked child.
[[noreturn]] void RunWatcher(const Watcher& w) {
  // Its fds at fixed places, through copies above any of them; nothing else open.
  int high[4];
  for (int i = 0; i < 4; i++) {
    high[i] = fcntl(w.fds[i], F_DUPFD, 64);
    if (high[i] < 0) _exit(127);
  }
  for (int i = 0; i < 3; i++) dup2(high[i], 3 + i);
  for (int fd = 0; fd < 3; fd++) dup2(high[3], fd);
  CloseFrom(6);
  constexpr int kPidFd = 3, kSaidFd = 5;
  ResetSignals();
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  if (chdir("/") != 0) _exit(127);
  prctl(PR_SET_NAME, "petrel-lease");
  for (;;) {
    const TimeMs now = LeaseClockNow();
    const TimeMs renewed_at = ReadLease(w.lease_path);
    if (LeaseExpired(renewed_at, w.lease_ms, now)) break;
    struct pollfd pfd = {kPidFd, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(NextLeaseLook(renewed_at, w.lease_ms, now) - now)) > 0) {
      _exit(0);  // the process has ended: nothing left to enforce
    }
  }
  // ESRCH: it ended since the last look.
  const int err = syscall(SYS_pidfd_send_signal, kPidFd, SIGKILL, nullptr, 0) == 0 ? 0 : errno;
  if (err == 0 || err == ESRCH) {
    SayRaw(kSaidFd, w.killed.c_str());
  } else {
    SayRaw(kSaidFd, w.not_killed.c_str());
    const char* desc = strerrordesc_np(err);  // no locale, no allocation
    SayRaw(kSaidFd, desc != nullptr ? desc : "unknown error");
    SayRaw(kSaidFd, "\n");
  }
  _exit(0);
}

}  // namespace

Status WatchLease(const LeaseWatchPlan& plan, const std::function<Status()>& confirm) {
  UniqueFd lock(open(plan.lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock.valid()) return ErrnoError(plan.lock_file, "open", errno);
  if (flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return Status::OK();  // a watcher has it
    return ErrnoError(plan.lock_file, "flock", errno);
  }
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, plan.pid, 0)));
  if (!pidfd.valid()) {
    if (errno == ESRCH)
      return Status::NotFound("process " + std::to_string(plan.pid) + " has ended");
    return ErrnoError("process " + std::to_string(plan.pid), "pidfd_open", errno);
  }
  PETREL_RETURN_IF_ERROR(confirm());
  UniqueFd said(
      open(plan.said_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640));
  if (!said.valid()) return ErrnoError(plan.said_file, "open", errno);
  UniqueFd null(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null.valid()) return ErrnoError("/dev/null", "open", errno);
  const std::string head = "petrel-lease: lease " + plan.lease.path + " ran out: ";
  const Watcher w{plan.lease.path.c_str(),
                  plan.lease.duration_ms,
                  {pidfd.get(), lock.get(), said.get(), null.get()},
                  head + "killed the container\n",
                  head + "could not kill the container: "};
  const std::optional<int> nice_before = RaiseToMainThreadPriority();
  const pid_t middle = RawFork();
  if (middle != 0 && nice_before) (void)SetThreadNice(*nice_before);
  if (middle < 0) return ErrnoError("lease watcher", "fork", errno);
  if (middle == 0) {
    // Twice forked, so the watcher is nobody's child in petrel: petrel never reaps
    // it, and it lives on when petrel dies.
    setsid();
    const pid_t watcher = RawFork();
    if (watcher != 0) _exit(watcher < 0 ? 1 : 0);
    RunWatcher(w);
  }
  int st = 0;
  while (waitpid(middle, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    return Status::IOError("lease watcher: could not fork it");
  }
  return Status::OK();
}

}  // namespace petrel::internal
