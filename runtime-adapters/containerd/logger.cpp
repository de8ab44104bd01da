#include "runtime-adapters/containerd/logger.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "lib/util/fs.h"
#include "lib/util/log_files.h"
#include "lib/util/strings.h"
#include "petrel/containerd.h"

namespace petrel {
namespace internal {

std::string ContainerdLogUri(const std::string& binary, const std::string& dir, int64_t max_bytes) {
  std::string uri = "binary://";
  size_t from = 0;
  while (from < binary.size()) {  // each segment of the path, the '/'s kept
    size_t slash = binary.find('/', from);
    if (slash == std::string::npos) slash = binary.size();
    uri += UrlEscape(std::string_view(binary).substr(from, slash - from));
    if (slash < binary.size()) uri += '/';
    from = slash + 1;
  }
  return uri + "?" + kLoggerDirKey + "=" + UrlEscape(dir) + "&" + kLoggerMaxKey + "=" +
         std::to_string(max_bytes);
}

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
      const auto [end, ec] =
          std::from_chars(value.data(), value.data() + value.size(), args.max_bytes);
      if (ec != std::errc() || end != value.data() + value.size() || args.max_bytes <= 0) {
        return Status::InvalidArgument(std::string(kLoggerMaxKey) +
                                       ": not a positive number: " + std::string(value));
      }
      have_max = true;
    } else {
      return Status::InvalidArgument("unknown argument " + std::string(key));
    }
  }
  if (args.dir.empty()) return Status::InvalidArgument("missing " + std::string(kLoggerDirKey));
  if (!have_max) return Status::InvalidArgument("missing " + std::string(kLoggerMaxKey));
  return args;
}

namespace {

// The shim's fds (logger.h).
constexpr int kStdoutFd = 3, kStderrFd = 4, kReadyFd = 5;

volatile sig_atomic_t g_terminate = 0;
void OnTerminate(int) { g_terminate = 1; }

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "petrel-logger: %s\n", message.c_str());
  return code;
}

}  // namespace
}  // namespace internal

bool IsContainerdLoggerCall(int argc, char** argv) {
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
  while (open_fds > 0) {
    if (g_terminate) {
      for (struct pollfd& p : fds) {
        if (p.fd >= 0) fcntl(p.fd, F_SETFL, fcntl(p.fd, F_GETFL) | O_NONBLOCK);
      }
    }
    const int r = g_terminate ? 1 : ppoll(fds, 2, nullptr, &waiting);
    if (r < 0 && errno != EINTR) return Fail(std::string("poll: ") + strerror(errno), 1);
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
