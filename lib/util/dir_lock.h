// DirLock: one petrel per state directory. Two orchestrators reconciling the same
// desired state against the same runtime would fight over every container, so the
// second one to open a state dir is refused until the first is gone.
//
// An flock(2) on <dir>/LOCK, held for the life of the object; the kernel releases it
// when the process dies, even by kill -9, so a crash never leaves a stale lock. The
// file holds the holder's pid, for the error message only.
#ifndef PETREL_LIB_UTIL_DIR_LOCK_H_
#define PETREL_LIB_UTIL_DIR_LOCK_H_

#include <memory>
#include <string>

#include "petrel/status.h"

namespace petrel::internal {

class DirLock {
 public:
  // REQUIRES: `dir` exists. FailedPrecondition when another holder has it:
  // "state dir /x is in use by another petrel (pid 1234)".
  static Status Acquire(const std::string& dir, std::unique_ptr<DirLock>* lock);

  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_DIR_LOCK_H_
