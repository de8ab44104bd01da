// healthz_probe: how long petreld takes to answer GET /healthz while it works.
//
//   healthz_probe SOCKET [INTERVAL_MS]
//
// Sends GET /healthz on one keep-alive connection every INTERVAL_MS (default 10) and
// times each answer, until SIGTERM or SIGINT; then prints one JSON line:
//   {"samples":N,"errors":E,"p50Us":...,"p99Us":...,"maxUs":...}
// A broken connection counts as an error and is made again. The answer time includes
// the client's own scheduling, so it is an upper bound of the server's.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;

int Connect(const char* path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends one request and reads its whole answer (headers and Content-Length bytes).
bool Ask(int fd) {
  static const char kRequest[] = "GET /healthz HTTP/1.1\r\nHost: petrel\r\n\r\n";
  if (send(fd, kRequest, sizeof(kRequest) - 1, MSG_NOSIGNAL) != sizeof(kRequest) - 1) {
    return false;
  }
  std::string in;
  char buf[4096];
  for (;;) {
    size_t head_end = in.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      size_t cl = in.find("Content-Length: ");
      if (cl == std::string::npos || cl > head_end) return false;
      size_t length = std::strtoul(in.c_str() + cl + 16, nullptr, 10);
      if (in.size() >= head_end + 4 + length) return in.compare(0, 12, "HTTP/1.1 200") == 0;
    }
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR && !g_stop) continue;
    if (n <= 0) return false;
    in.append(buf, static_cast<size_t>(n));
  }
}

int64_t Percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: healthz_probe SOCKET [INTERVAL_MS]\n");
    return 2;
  }
  const char* path = argv[1];
  const long interval_ms = argc == 3 ? std::atol(argv[2]) : 10;
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = 1; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  std::vector<int64_t> us;
  int errors = 0;
  int fd = -1;
  while (!g_stop) {
    if (fd < 0) fd = Connect(path);
    if (fd >= 0) {
      auto start = std::chrono::steady_clock::now();
      bool ok = Ask(fd);
      auto took = std::chrono::steady_clock::now() - start;
      if (ok) {
        us.push_back(std::chrono::duration_cast<std::chrono::microseconds>(took).count());
      } else if (!g_stop) {
        errors++;
        close(fd);
        fd = -1;
      }
    } else {
      errors++;
    }
    struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000};
    nanosleep(&ts, nullptr);
  }
  std::printf("{\"samples\":%zu,\"errors\":%d,\"p50Us\":%lld,\"p99Us\":%lld,\"maxUs\":%lld}\n",
              us.size(), errors, static_cast<long long>(Percentile(us, 0.5)),
              static_cast<long long>(Percentile(us, 0.99)),
              static_cast<long long>(us.empty() ? 0 : *std::max_element(us.begin(), us.end())));
  return 0;
}
