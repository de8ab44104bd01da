// Mount helpers for the tests that mount things (image store, port, the crun adapter).
#ifndef PETREL_TESTS_LIB_MOUNTS_H_
#define PETREL_TESTS_LIB_MOUNTS_H_

#include <sys/mount.h>

#include <fstream>
#include <sstream>
#include <string>

namespace petrel::testing {

// True when something is mounted at `path` in this process's mount namespace.
inline bool Mounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    fields >> id >> parent >> devno >> root >> mount_point;
    if (mount_point == path) return true;
  }
  return false;
}

// Unmounts `target` however a test ends, so TempDir never deletes through a mount.
struct MountGuard {
  std::string target;
  ~MountGuard() {
    while (umount2(target.c_str(), MNT_DETACH) == 0) {
    }
  }
};

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_MOUNTS_H_
