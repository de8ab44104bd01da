#include "lib/util/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/util/fs.h"

namespace petrel::internal {

Status DirLock::Acquire(const std::string& dir, std::unique_ptr<DirLock>* lock) {
  const std::string path = dir + "/LOCK";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("state dir " + dir, "open LOCK", errno);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    std::string holder;
    char buf[32] = {};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n > 0) holder = " (pid " + std::string(buf, strnlen(buf, static_cast<size_t>(n))) + ")";
    close(fd);
    if (err == EWOULDBLOCK) {
      return Status::FailedPrecondition("state dir " + dir + " is in use by another petrel" +
                                        holder);
    }
    return ErrnoError("state dir " + dir, "lock", err);
  }
  std::string pid = std::to_string(getpid());
  // The pid is for messages only; failing to record it does not weaken the lock.
  if (ftruncate(fd, 0) == 0) {
    ssize_t written = pwrite(fd, pid.data(), pid.size(), 0);
    (void)written;
  }
  lock->reset(new DirLock(fd));
  return Status::OK();
}

DirLock::~DirLock() { close(fd_); }

}  // namespace petrel::internal
