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

std::atomic<bool> g_hand_over_asked{false};

volatile sig_atomic_t g_terminate = 0;
void OnTerminate(int) { g_terminate = 1; }

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "petrel-logger: %s\n", message.c_str());
  return code;
}

// The lease a logger enforces (logger.h).
class LeaseWatch {
 public:
  LeaseWatch(const LoggerArgs& args, LogWriter* log)
      : lease_(args.lease), pid_file_(args.dir + "/" + kLoggerTaskPidFile), log_(log) {}
  ~LeaseWatch() {
    if (pidfd_ >= 0) close(pidfd_);
  }
  LeaseWatch(const LeaseWatch&) = delete;
  LeaseWatch& operator=(const LeaseWatch&) = delete;

  // Milliseconds until the next look (for ppoll), -1 for never: no lease, or done.
  int64_t WaitMs() const {
    if (lease_.empty() || done_) return -1;
    return std::max<int64_t>(0, next_ - LeaseClockNow());
  }

  // Looks when it is time: holds the task's process once its pid is known, and kills it
  // once the lease has run out.
  void Look() {
    if (lease_.empty() || done_) return;
    const TimeMs now = LeaseClockNow();
    if (now < next_) return;
    if (pidfd_ < 0) OpenTask();
    const TimeMs renewed_at = ReadLease(lease_.path.c_str());
    if (!LeaseExpired(renewed_at, lease_.duration_ms, now)) {
      next_ = std::min(renewed_at + lease_.duration_ms, now + kLeaseCheckMs);
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
    done_ = true;
  }

 private:
  void OpenTask() {
    Result<std::string> text = ReadSmallFile(pid_file_, 32);
    if (!text.ok()) return;
    const int pid = std::atoi(text->c_str());
    if (pid > 0) pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  }

  const ContainerLease lease_;
  const std::string pid_file_;
  LogWriter* log_;
  int pidfd_ = -1;
  TimeMs next_ = 0;
  bool done_ = false;
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
  struct pollfd fds[2] = {{kStdoutFd, POLLIN, 0}, {kStderrFd, POLLIN, 0}};
  int open_fds = 2;
  LeaseWatch lease(*args, &log);
  while (open_fds > 0) {
    if (g_terminate) {
      for (struct pollfd& p : fds) {
        if (p.fd >= 0) fcntl(p.fd, F_SETFL, fcntl(p.fd, F_GETFL) | O_NONBLOCK);
      }
    }
    const int64_t wait_ms = lease.WaitMs();
    struct timespec wait = {static_cast<time_t>(wait_ms / 1000),
                            static_cast<long>(wait_ms % 1000) * 1000000};
    const int r = g_terminate ? 1 : ppoll(fds, 2, wait_ms < 0 ? nullptr : &wait, &waiting);
    if (r < 0 && errno != EINTR) return Fail(std::string("poll: ") + strerror(errno), 1);
    lease.Look();
    if (r <= 0) continue;
    for (struct pollfd& p : fds) {
      if (p.fd < 0 || (!g_terminate && p.revents == 0)) continue;
      const ssize_t n = read(p.fd, buf, sizeof(buf));
      if (n > 0) {
        log.Write(buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EINTR && (errno != EAGAIN || g_terminate))) {
        close(p.fd);  // end of file; or, after SIGTERM, drained
        p.fd = -1;
        open_fds--;
      }
    }
  }
  log.Close();
  return 0;
}

}  // namespace petrel
