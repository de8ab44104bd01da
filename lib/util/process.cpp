#include "lib/util/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>

#include "lib/util/fs.h"
#include "petrel/clock.h"

extern char** environ;

namespace petrel::internal {
namespace {

int64_t MonotonicMs() { return SystemClock()->Monotonic(); }

void CloseAll(int* fds, int n) {
  for (int i = 0; i < n; i++) {
    if (fds[i] >= 0) close(fds[i]);
    fds[i] = -1;
  }
}

}  // namespace

Status RunProcess(const std::vector<std::string>& argv, const ProcessOptions& options,
                  ProcessResult* result) {
  if (argv.empty()) return Status::InvalidArgument("RunProcess: no program");
  // [0,1] stdin, [2,3] stdout, [4,5] stderr: read ends at 0 (the child's), 2, 4. stdin
  // is a socket pair, not a pipe: its writes can say MSG_NOSIGNAL, so a program that
  // ends without reading its input is EPIPE here, never a SIGPIPE that kills a process
  // which does not ignore it (an embedder's).
  int p[6] = {-1, -1, -1, -1, -1, -1};
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0) {
    return ErrnoError("socketpair", "", errno);
  }
  for (int i = 1; i < 3; i++) {
    if (pipe2(p + 2 * i, O_CLOEXEC) != 0) {
      int err = errno;
      CloseAll(p, 6);
      return ErrnoError("pipe", "", err);
    }
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[0], 0);
  posix_spawn_file_actions_adddup2(&fa, p[3], 1);
  posix_spawn_file_actions_adddup2(&fa, options.merge_stderr ? p[3] : p[5], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The caller's environment less the names options.env sets, then options.env.
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; e++) {
    const std::string_view entry(*e);
    const bool replaced = std::any_of(options.env.begin(), options.env.end(), [&](const auto& o) {
      const size_t eq = o.find('=');
      return entry.substr(0, eq + 1) == std::string_view(o).substr(0, eq + 1);
    });
    if (!replaced) env.push_back(*e);
  }
  for (const std::string& e : options.env) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  pid_t pid = 0;
  const int err = options.search_path
                      ? posix_spawnp(&pid, args[0], &fa, &attr, args.data(), env.data())
                      : posix_spawn(&pid, args[0], &fa, &attr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  // The child's ends; stderr's read end too, below, when stderr shares stdout's pipe.
  close(p[0]);
  close(p[3]);
  close(p[5]);
  p[0] = p[3] = p[5] = -1;
  if (err != 0) {
    CloseAll(p, 6);
    return ErrnoError(argv[0], "run", err);
  }
  if (options.merge_stderr) {
    close(p[4]);
    p[4] = -1;
  }
  result->out.clear();
  result->err.clear();
  size_t written = 0;
  if (options.input.empty()) {
    close(p[1]);
    p[1] = -1;
  }
  const int64_t deadline = options.timeout_ms > 0 ? MonotonicMs() + options.timeout_ms : 0;
  bool timed_out = false;
  char buf[4096];
  while (p[1] >= 0 || p[2] >= 0 || p[4] >= 0) {
    struct pollfd fds[3];
    int n = 0;
    int* which[3];
    if (p[1] >= 0) fds[n] = {p[1], POLLOUT, 0}, which[n++] = &p[1];
    if (p[2] >= 0) fds[n] = {p[2], POLLIN, 0}, which[n++] = &p[2];
    if (p[4] >= 0) fds[n] = {p[4], POLLIN, 0}, which[n++] = &p[4];
    int wait_ms = -1;
    if (deadline > 0) {
      const int64_t left = deadline - MonotonicMs();
      if (left <= 0) {
        timed_out = true;
        break;
      }
      wait_ms = static_cast<int>(left);
    }
    int ready = poll(fds, static_cast<nfds_t>(n), wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    for (int i = 0; i < n; i++) {
      if (fds[i].revents == 0) continue;
      int* fd = which[i];
      if (fd == &p[1]) {
        ssize_t w = send(p[1], options.input.data() + written, options.input.size() - written,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) written += static_cast<size_t>(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == options.input.size()) {
          close(p[1]);  // all given, or the program stopped reading
          p[1] = -1;
        }
        continue;
      }
      ssize_t r = read(*fd, buf, sizeof(buf));
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) {
        close(*fd);
        *fd = -1;
        continue;
      }
      std::string& to = fd == &p[2] ? result->out : result->err;
      if (to.size() < options.max_output) {
        to.append(buf, std::min(static_cast<size_t>(r), options.max_output - to.size()));
      }
    }
  }
  CloseAll(p, 6);
  // A program that closed its output and goes on is waited for until the deadline too.
  while (!timed_out && deadline > 0) {
    pid_t done = waitpid(pid, &result->status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) return ErrnoError(argv[0], "wait", errno);
    if (MonotonicMs() >= deadline) {
      timed_out = true;
      break;
    }
    usleep(5 * 1000);
  }
  if (timed_out) kill(pid, SIGKILL);
  if (timed_out || deadline <= 0) {
    while (waitpid(pid, &result->status, 0) < 0) {
      if (errno != EINTR) return ErrnoError(argv[0], "wait", errno);
    }
  }
  if (timed_out) {
    return Status::DeadlineExceeded(argv[0] + ": still running after " +
                                    std::to_string(options.timeout_ms) + " ms: killed");
  }
  return Status::OK();
}

}  // namespace petrel::internal
