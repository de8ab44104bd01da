#include "runtime-adapters/containerd/logger.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "lib/util/fs.h"
#include "lib/util/lease.h"
#include "lib/util/log_files.h"
#include "lib/util/strings.h"
#include "petrel/containerd.h"

namespace petrel {
namespace internal {

std::string ContainerdLogUri(const std::string& binary, const std::string& dir, int64_t max_bytes,
                             const ContainerLease& lease) {
  std::string uri = "binary://";
  size_t from = 0;
  while (from < binary.size()) {  // each segment of the path, the '/'s kept
    size_t slash = binary.find('/', from);
    if (slash == std::string::npos) slash = binary.size();
    uri += UrlEscape(std::string_view(binary).substr(from, slash - from));
    if (slash < binary.size()) uri += '/';
    from = slash + 1;
  }
  uri += std::string("?") + kLoggerDirKey + "=" + UrlEscape(dir) + "&" + kLoggerMaxKey + "=" +
         std::to_string(max_bytes);
  if (!lease.empty()) {
    uri += std::string("&") + kLoggerLeaseKey + "=" + UrlEscape(lease.path) + "&" +
           kLoggerLeaseMsKey + "=" + std::to_string(lease.duration_ms);
  }
  return uri;
}

namespace {

// A positive decimal number, all of `value`.
bool ParsePositive(std::string_view value, int64_t* out) {
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), *out);
  return ec == std::errc() && end == value.data() + value.size() && *out > 0;
}

}  // namespace

Result<LoggerArgs> ParseLoggerArgs(int argc, char** argv) {
  if (argc < 1 || (argc - 1) % 2 != 0) {
    return Status::InvalidArgument("expected key value pairs (" + std::string(kLoggerDirKey) +
                                   " <dir> " + kLoggerMaxKey + " <bytes>), got " +
                                   std::to_string(argc - 1) + " arguments");
  }
  LoggerArgs args;
  bool have_max = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view key = argv[i], value = argv[i + 1];
    if (key == kLoggerDirKey) {
      if (value.empty() || value[0] != '/') {
        return Status::InvalidArgument(std::string(kLoggerDirKey) +
                                       ": not an absolute path: " + std::string(value));
      }
      args.dir = value;
    } else if (key == kLoggerMaxKey) {
      if (!ParsePositive(value, &args.max_bytes)) {
        return Status::InvalidArgument(std::string(kLoggerMaxKey) +
                                       ": not a positive number: " + std::string(value));
      }
      have_max = true;
    } else if (key == kLoggerLeaseKey) {
      if (value.empty() || value[0] != '/') {
        return Status::InvalidArgument(std::string(kLoggerLeaseKey) +
                                       ": not an absolute path: " + std::string(value));
      }
      args.lease.path = value;
    } else if (key == kLoggerLeaseMsKey) {
      if (!ParsePositive(value, &args.lease.duration_ms)) {
        return Status::InvalidArgument(std::string(kLoggerLeaseMsKey) +
                                       ": not a positive number: " + std::string(value));
      }
    } else {
      return Status::InvalidArgument("unknown argument " + std::string(key));
    }
  }
  if (args.dir.empty()) return Status::InvalidArgument("missing " + std::string(kLoggerDirKey));
  if (!have_max) return Status::InvalidArgument("missing " + std::string(kLoggerMaxKey));
  if (args.lease.path.empty() != (args.lease.duration_ms == 0)) {
    return Status::InvalidArgument(std::string(kLoggerLeaseKey) + " and " + kLoggerLeaseMsKey +
                                   " go together");
  }
  return args;
}

namespace {

// The shim's fds (logger.h).
constexpr int kStdoutFd = 3, kStderrFd = 4, kReadyFd = 5;
// How long the logger waits for the rest of a line a stream has begun, per piece, and
// for how many pieces, before it reads the other stream again.
constexpr int kLineRestWaitMs = 10, kLinePieces = 8;

std::atomic<bool> g_hand_over_asked{false};

volatile sig_atomic_t g_terminate = 0;
void OnTerminate(int) { g_terminate = 1; }

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "petrel-logger: %s\n", message.c_str());
  return code;
}

// The task a logger follows (logger.h): its init process, held by a pidfd once the
// driver has written its pid; the init's end; and the task's lease, when it has one.
class TaskWatch {
 public:
  TaskWatch(const LoggerArgs& args, LogWriter* log)
      : lease_(args.lease),
        pid_file_(args.dir + "/" + kLoggerTaskPidFile),
        drained_file_(args.dir + "/" + kLoggerDrainedFile),
        log_(log) {}
  ~TaskWatch() {
    if (pidfd_ >= 0) close(pidfd_);
  }
  TaskWatch(const TaskWatch&) = delete;
  TaskWatch& operator=(const TaskWatch&) = delete;

  // The fd to poll for the init's end (readable then); -1 while it is not known, or
  // once it has ended.
  int EndFd() const { return ended_ ? -1 : pidfd_; }

  // Milliseconds until the next look (for ppoll), -1 for never.
  int64_t WaitMs() const {
    if (ended_) return -1;
    int64_t wait = pidfd_ < 0 ? kLoggerPidLookMs : -1;
    if (!lease_.empty() && !lease_done_) {
      const int64_t lease_wait = std::max<int64_t>(0, next_ - LeaseClockNow());
      wait = wait < 0 ? lease_wait : std::min(wait, lease_wait);
    }
    return wait;
  }

  // Looks when it is time: holds the init process once its pid is known, and kills it
  // once the lease has run out. Returns true when the init has ended (or was gone when
  // its pid came).
  bool Look() {
    if (ended_) return false;
    if (pidfd_ < 0 && OpenTask()) return true;
    LookAtLease();
    return false;
  }

  // Once the init has ended and the pipes are drained: says so to the driver.
  void Drained() {
    ended_ = true;
    const int fd = open(drained_file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd >= 0) close(fd);
  }

 private:
  void LookAtLease() {
    if (lease_.empty() || lease_done_) return;
    const TimeMs now = LeaseClockNow();
    if (now < next_) return;
    const TimeMs renewed_at = ReadLease(lease_.path.c_str());
    if (!LeaseExpired(renewed_at, lease_.duration_ms, now)) {
      next_ = NextLeaseLook(renewed_at, lease_.duration_ms, now);
      return;
    }
    next_ = now + kLeaseCheckMs;
    // Not started yet: the driver starts no task whose lease has run out, and one that
    // runs out meanwhile is killed as soon as its pid is written.
    if (pidfd_ < 0) return;
    // ESRCH: it has ended already.
    const int err = syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0) == 0 ? 0 : errno;
    const std::string said =
        "petrel-logger: lease " + lease_.path + " ran out: " +
        (err == 0 || err == ESRCH ? "killed the container"
                                  : "could not kill the container: " + std::string(strerror(err))) +
        "\n";
    log_->Write(said.data(), said.size());
    lease_done_ = true;
  }

  // Opens the init's pidfd when the pid file is there; true when the init is gone
  // already (an init that ended at once).
  bool OpenTask() {
    Result<std::string> text = ReadSmallFile(pid_file_, 32);
    if (!text.ok()) return false;
    const int pid = std::atoi(text->c_str());
    if (pid <= 0) return false;
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    return pidfd_ < 0 && errno == ESRCH;
  }

  const ContainerLease lease_;
  const std::string pid_file_, drained_file_;
  LogWriter* log_;
  int pidfd_ = -1;
  TimeMs next_ = 0;
  bool lease_done_ = false;
  bool ended_ = false;
};

}  // namespace
}  // namespace internal

bool internal::ContainerdLoggerHandOverAsked() { return internal::g_hand_over_asked; }

bool IsContainerdLoggerCall(int argc, char** argv) {
  internal::g_hand_over_asked = true;
  return argc >= 2 && std::strncmp(argv[1], internal::kLoggerKeyPrefix,
                                   sizeof(internal::kLoggerKeyPrefix) - 1) == 0;
}

int RunContainerdLogger(int argc, char** argv) {
  using namespace internal;  // NOLINT: the entry point of internal's logger
  Result<LoggerArgs> args = ParseLoggerArgs(argc, argv);
  if (!args.ok()) return Fail(args.status().message(), 2);
  struct stat st;
  if (stat(args->dir.c_str(), &st) != 0) {
    return Fail(ErrnoError(std::string(kLoggerDirKey) + " " + args->dir, "", errno).message(), 2);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Fail(std::string(kLoggerDirKey) + " " + args->dir + ": not a directory", 2);
  }
  for (int fd : {kStdoutFd, kStderrFd, kReadyFd}) {
    if (fcntl(fd, F_GETFD) < 0) {
      return Fail("fd " + std::to_string(fd) +
                      " is not open: containerd's shim passes the container's stdout, "
                      "stderr and a ready pipe as fds 3, 4, 5",
                  2);
    }
  }

  LogPaths paths = MakeLogPaths(args->dir);
  LogWriter log{paths.a.data(), paths.b.data(), paths.digits_at, args->max_bytes};
  log.lost_prefix = "petrel-logger: ";
  if (Status s = ResumeLogWriter(args->dir, &log); !s.ok()) return Fail(s.message(), 1);
  log.Open();  // when it fails (a full disk), each write tries again and counts the loss

  // SIGTERM (the shim stopping the logger) is only let in while waiting in ppoll: after
  // it, what the pipes still hold is read, and the logger ends. Set before fd 5 is
  // closed: from then on the shim may send it.
  struct sigaction sa {};
  sa.sa_handler = OnTerminate;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigset_t term, waiting;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, &waiting);
  sigdelset(&waiting, SIGTERM);
  close(kReadyFd);

  static char buf[64 * 1024];
  // The pipes, then the init's pidfd (once known, until it has ended).
  struct pollfd fds[3] = {{kStdoutFd, POLLIN, 0}, {kStderrFd, POLLIN, 0}, {-1, POLLIN, 0}};
  int open_fds = 2;
  TaskWatch task(*args, &log);
  // Reads pipe `p` once: false once it is closed (end of file; or, nonblocking, empty
  // when `empty_ends`).
  bool line_open = false;  // the last bytes written did not end a line
  const auto read_pipe = [&](struct pollfd& p, bool empty_ends) {
    const ssize_t n = read(p.fd, buf, sizeof(buf));
    if (n > 0) {
      log.Write(buf, static_cast<size_t>(n));
      line_open = buf[n - 1] != '\n';
      return true;
    }
    if (n < 0 && (errno == EINTR || (errno == EAGAIN && !empty_ends))) return true;
    if (n < 0 && errno == EAGAIN) return false;  // drained: left open
    close(p.fd);
    p.fd = -1;
    open_fds--;
    return false;
  };
  while (open_fds > 0) {
    if (g_terminate) {
      for (int i = 0; i < 2; i++) {
        if (fds[i].fd >= 0) fcntl(fds[i].fd, F_SETFL, fcntl(fds[i].fd, F_GETFL) | O_NONBLOCK);
      }
    }
    fds[2].fd = task.EndFd();
    const int64_t wait_ms = task.WaitMs();
    struct timespec wait = {static_cast<time_t>(wait_ms / 1000),
                            static_cast<long>(wait_ms % 1000) * 1000000};
    const int r = g_terminate ? 1 : ppoll(fds, 3, wait_ms < 0 ? nullptr : &wait, &waiting);
    if (r < 0 && errno != EINTR) return Fail(std::string("poll: ") + strerror(errno), 1);
    bool ended = task.Look();
    if (r > 0) {
      for (int i = 0; i < 2; i++) {
        struct pollfd& p = fds[i];
        if (p.fd < 0 || (!g_terminate && p.revents == 0)) continue;
        if (!read_pipe(p, g_terminate) && g_terminate && p.fd >= 0) {
          close(p.fd);  // after SIGTERM, drained
          p.fd = -1;
          open_fds--;
        }
        // A line begun is finished before the other stream is read: a program that
        // writes a line in pieces (busybox sh's error messages) would otherwise have
        // the other stream's output land inside it. Its rest is waited for a moment.
        for (int pieces = 0; line_open && p.fd >= 0 && pieces < kLinePieces; pieces++) {
          struct pollfd one = {p.fd, POLLIN, 0};
          if (poll(&one, 1, kLineRestWaitMs) <= 0 || !read_pipe(p, true)) break;
        }
      }
      ended = ended || (fds[2].fd >= 0 && fds[2].revents != 0);
    }
    if (ended) {
      // Every process of the container is gone: what the pipes hold is the rest.
      for (int i = 0; i < 2; i++) {
        struct pollfd& p = fds[i];
        if (p.fd < 0) continue;
        fcntl(p.fd, F_SETFL, fcntl(p.fd, F_GETFL) | O_NONBLOCK);
        while (p.fd >= 0 && read_pipe(p, true)) {
        }
      }
      task.Drained();
    }
  }
  log.Close();
  return 0;
}

}  // namespace petrel
