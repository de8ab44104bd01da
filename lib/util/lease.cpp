#include "lib/util/lease.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "lib/util/sha256.h"

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

}  // namespace petrel::internal
