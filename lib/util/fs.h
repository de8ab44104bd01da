// File-system helpers written once for every module: errors from errno, directories
// made and listed, files read and written whole, and trees removed.
//
// Written for directory trees petrel does not trust (container bundles, root
// filesystems, unpacked images): nothing here follows a symbolic link found inside a
// tree, and nothing crosses into another file system mounted inside one: a container
// may have planted a link to /etc or left a volume mounted, and removing its leftovers
// must touch neither. Paths given by the caller are the caller's and may go through
// links where a function says so.
//
// Thread-safety: the functions are safe to call from any thread; a UniqueFd belongs to
// one owner.
#ifndef PETREL_LIB_UTIL_FS_H_
#define PETREL_LIB_UTIL_FS_H_

#include <fcntl.h>
#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

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

// How petrel opens a directory it walks: never through a symbolic link.
inline constexpr int kOpenDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

// "<path>: <what>: <strerror(err)>" ("<path>: <strerror(err)>" when `what` is empty):
// NotFound when `err` is ENOENT, so a caller can tell a missing file from a failing
// one; IOError otherwise. `path` may be any subject ("socket", "state dir /x").
Status ErrnoError(std::string_view path, std::string_view what, int err);

// Creates the directory `path` and its missing parents, like `mkdir -p`; each
// directory it creates gets exactly `mode` (not narrowed by the umask). Directories
// already there are left as they are; links on the way are followed. OK when `path`
// is a directory already; FailedPrecondition "<dir>: not a directory" when it or a
// parent is something else; "<dir>: mkdir: <strerror>" when one cannot be made.
// For what is made anew after a power cut anyway (a container's root filesystem, a
// cgroup, a socket's directory under /run).
Status MakeDirs(const std::string& path, mode_t mode);

// MakeDirs, and each directory it creates is synced into its parent (an fsync of the
// parent) before the next, so that it outlives a power cut: for the directories that
// hold what must (a state dir, the image store, the raft log).
Status MakeDurableDirs(const std::string& path, mode_t mode);

// One entry of a directory.
struct DirEntry {
  std::string name;
  bool is_dir = false;  // a directory itself; a link to one is not
};

// The entries of the directory open as `dir_fd`, without "." and "..", in the order
// the file system gives them. The descriptor stays the caller's and keeps its position;
// messages name `path`.
Result<std::vector<DirEntry>> ListDirAt(int dir_fd, std::string_view path);

// ListDirAt of the directory `path`, which may be reached through links. NotFound when
// it does not exist.
Result<std::vector<DirEntry>> ListDir(const std::string& path);

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
// Reads `path` (absolute) of the tree at `root` as a process chrooted there would: every
// symbolic link on the way, absolute or with "..", resolves inside `root` (openat2
// RESOLVE_IN_ROOT), so a hostile image's /etc -> /etc cannot make petrel read the
// host's files. Never crosses a mount, refuses what is not a regular file (a FIFO is
// never opened blocking). Errors name root + path.
Result<std::string> ReadSmallFileInRoot(const std::string& root, const std::string& path,
                                        size_t max_size);

// Writes all of `data` to `fd` at `offset`, or at the file position when `offset` is
// negative, going on after short writes and EINTR. Errors: "<path>: write: <strerror>".
Status WriteAll(int fd, std::string_view data, std::string_view path, off_t offset = -1);

// Writes `data` over the file `path` in place and cuts it to its length, so that what
// holds its inode (a bind mount into a container: its /etc/hosts) sees the new content;
// with `create`, makes it first (mode 0644, readable by any container user). A final
// symbolic link is not followed. A reader at that moment may see a mix of both.
Status RewriteFileInPlace(const std::string& path, std::string_view data, bool create);

// Replaces `path` with `data` (mode 0640) through "<path>.tmp" and a rename, so a
// reader, a crash or a power cut sees the old file or the new one, never half of one:
// the file is fsynced before the rename and its directory after, so when it returns OK
// the new file is on disk.
Status WriteFileAtomic(const std::string& path, std::string_view data);

// The directory part of `path`: "." without a slash, "/" for "/x".
std::string Dirname(const std::string& path);

// fsync of a directory: what was created, renamed or removed in it is on disk. OK on a
// file system that cannot sync a directory (EINVAL), which then keeps no promise.
Status SyncDir(const std::string& dir);

// syncfs of the file system holding `path`: every file written on it is on disk. One
// call for a tree of many files, instead of an fsync each.
Status SyncFileSystem(const std::string& path);

// Whether `path` names the file open as `fd` (same device and inode): false once it
// was renamed, removed or replaced since it was opened, or when either cannot be read.
bool IsFileAt(int fd, const std::string& path);

// RemoveTree for the entry `name` (one path component) of the directory `dir_fd`;
// messages name `display_path`.
Status RemoveTreeAt(int dir_fd, const std::string& name, const std::string& display_path);

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_FS_H_
