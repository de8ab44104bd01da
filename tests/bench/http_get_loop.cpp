// http_get_loop: the baseline of tests/bench/probe_bench.sh. What the simplest client
// spends on the checks petreld's httpGet probes make: one blocking connect, GET and
// read of the status line per check, no event loop, no bookkeeping.
//
//   http_get_loop PORT PATH PERIOD_MS SECONDS
//
// Run it in a container's network namespace (nsenter --net=/proc/PID/ns/net). Checks
// 127.0.0.1:PORT every PERIOD_MS for SECONDS, then prints one line:
//   checks=N failures=F cpu_us=U
// with U its own user and system CPU time (getrusage).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

bool Check(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
            write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size());
  char buf[512];
  ssize_t n = ok ? read(fd, buf, sizeof(buf)) : -1;
  close(fd);
  return n >= 12 && std::memcmp(buf, "HTTP/1.", 7) == 0 && buf[9] >= '2' && buf[9] <= '3';
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: http_get_loop PORT PATH PERIOD_MS SECONDS\n");
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const std::string request =
      std::string("GET ") + argv[2] + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  const long period_ms = std::atol(argv[3]);
  const long checks = std::atol(argv[4]) * 1000 / period_ms;
  long failures = 0;
  timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (long i = 0; i < checks; i++) {
    if (!Check(port, request)) failures++;
    next.tv_nsec += period_ms * 1000000;
    while (next.tv_nsec >= 1000000000) {
      next.tv_nsec -= 1000000000;
      next.tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr);
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  long us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L + ru.ru_utime.tv_usec +
            ru.ru_stime.tv_usec;
  std::printf("checks=%ld failures=%ld cpu_us=%ld\n", checks, failures, us);
  return 0;
}
