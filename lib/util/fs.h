// File-system helpers written once for every module that handles directory trees it does
// not trust: container bundles, root filesystems, unpacked images.
//
// Nothing here follows a symbolic link found inside a tree, and nothing crosses into
// another file system mounted inside one: a container may have planted a link to /etc
// or left a volume mounted, and removing its leftovers must touch neither.
//
// Thread-safety: the functions are safe to call from any thread; a UniqueFd belongs to
// one owner.
#ifndef PETREL_LIB_UTIL_FS_H_
#define PETREL_LIB_UTIL_FS_H_

#include <string>
#include <string_view>

#include "petrel/status.h"

namespace petrel::internal {

// Owns one file descriptor and closes it when it goes away.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership; the caller closes the descriptor.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// IOError "<path>: <what>: <strerror(err)>" ("<path>: <strerror(err)>" when `what` is
// empty).
Status ErrnoError(std::string_view path, std::string_view what, int err);

// Removes `path` and everything below it, like `rm -rf` but safe on hostile trees:
//  - symbolic links are removed, never followed (also when `path` itself is one);
//  - directories without write or search permission are made writable first, so trees
//    with read-only directories go away also when not running as root;
//  - a directory on another file system (a mount point inside the tree) is not entered:
//    the call fails naming it and removes nothing below it;
//  - at most two descriptors are open at any time, however deep the tree.
// OK when `path` does not exist. On failure some of the tree may already be gone.
Status RemoveTree(const std::string& path);

// Reads a whole file of at most `max_size` bytes, not following a final symbolic
// link. NotFound when it is missing, Corruption when it is larger, IOError otherwise.
Result<std::string> ReadSmallFile(const std::string& path, size_t max_size);

// Replaces `path` with `data` through "<path>.tmp" and a rename, so a reader or a
// crash sees the old file or the new one, never half of one. No fsync.
Status WriteFileAtomic(const std::string& path, const std::string& data);

// RemoveTree for the entry `name` (one path component) of the directory `dir_fd`;
// messages name `display_path`.
Status RemoveTreeAt(int dir_fd, const std::string& name, const std::string& display_path);

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_FS_H_
