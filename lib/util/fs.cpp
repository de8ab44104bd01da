#include "lib/util/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

namespace petrel::internal {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

Status ErrnoError(std::string_view path, std::string_view what, int err) {
  std::string msg(path);
  msg += ": ";
  if (!what.empty()) {
    msg += what;
    msg += ": ";
  }
  msg += std::strerror(err);
  return err == ENOENT ? Status::NotFound(msg) : Status::IOError(msg);
}

namespace {

Status MakeDirsSynced(const std::string& path, mode_t mode, bool sync) {
  std::string dir = path;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::OK();
    return Status::FailedPrecondition(dir + ": not a directory");
  }
  // ENOTDIR: a parent is no directory; the parent's turn below names it.
  if (errno != ENOENT && errno != ENOTDIR) return ErrnoError(dir, "stat", errno);
  const size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    PETREL_RETURN_IF_ERROR(MakeDirsSynced(dir.substr(0, slash), mode, sync));
  }
  if (mkdir(dir.c_str(), mode) != 0) {
    const int err = errno;
    if (err != EEXIST) return ErrnoError(dir, "mkdir", err);
    // Made by someone else meanwhile (fine), or a link to nowhere (not a directory).
    if (stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return Status::OK();
    return Status::FailedPrecondition(dir + ": not a directory");
  }
  if (chmod(dir.c_str(), mode) != 0) return ErrnoError(dir, "chmod", errno);  // despite umask
  // Its name is on disk before anything made in it is: a power cut cannot take the
  // directory (a state dir, a store) with the files later fsynced into it.
  return sync ? SyncDir(Dirname(dir)) : Status::OK();
}

}  // namespace

Status MakeDirs(const std::string& path, mode_t mode) { return MakeDirsSynced(path, mode, false); }

Status MakeDurableDirs(const std::string& path, mode_t mode) {
  return MakeDirsSynced(path, mode, true);
}

Result<std::vector<DirEntry>> ListDirAt(int dir_fd, std::string_view path) {
  // A descriptor of its own, so the caller's keeps its position and stays open.
  int own_fd = openat(dir_fd, ".", kOpenDirFlags);
  if (own_fd < 0) return ErrnoError(path, "open", errno);
  DIR* dir = fdopendir(own_fd);
  if (dir == nullptr) {
    int err = errno;
    close(own_fd);
    return ErrnoError(path, "opendir", err);
  }
  std::vector<DirEntry> entries;
  errno = 0;
  while (struct dirent* d = readdir(dir)) {
    if (std::strcmp(d->d_name, ".") != 0 && std::strcmp(d->d_name, "..") != 0) {
      bool is_dir = d->d_type == DT_DIR;
      if (d->d_type == DT_UNKNOWN) {
        struct stat st;
        is_dir = fstatat(own_fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
      }
      entries.push_back(DirEntry{d->d_name, is_dir});
    }
    errno = 0;
  }
  int read_err = errno;
  closedir(dir);
  if (read_err != 0) return ErrnoError(path, "readdir", read_err);
  return entries;
}

Result<std::vector<DirEntry>> ListDir(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(path, "open", errno);
  return ListDirAt(fd.get(), path);
}

Status WriteAll(int fd, std::string_view data, std::string_view path, off_t offset) {
  while (!data.empty()) {
    ssize_t n = offset < 0 ? write(fd, data.data(), data.size())
                           : pwrite(fd, data.data(), data.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(path, "write", errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
    if (offset >= 0) offset += n;
  }
  return Status::OK();
}

namespace {

// Opens the directory `name` in `dir_fd` without following a link; a directory without
// search or read permission is given them first. -1 with errno set on failure.
int OpenDirForRemoval(int dir_fd, const char* name) {
  int fd = openat(dir_fd, name, kOpenDirFlags);
  if (fd < 0 && errno == EACCES && fchmodat(dir_fd, name, S_IRWXU, 0) == 0) {
    fd = openat(dir_fd, name, kOpenDirFlags);
  }
  return fd;
}

// Runs `op` (an unlinkat in `dir_fd`); when the directory's permissions refuse it, makes
// the directory writable for its owner and tries once more.
template <typename Op>
int WithWritableDir(int dir_fd, Op op) {
  int rc = op();
  if (rc != 0 && (errno == EACCES || errno == EPERM)) {
    struct stat st;
    if (fstat(dir_fd, &st) == 0 && (st.st_mode & S_IRWXU) != S_IRWXU &&
        fchmod(dir_fd, (st.st_mode & 07777) | S_IRWXU) == 0) {
      rc = op();
    }
  }
  return rc;
}

struct Frame {
  std::string name;  // in the parent directory
  dev_t dev;
  ino_t ino;
  std::vector<std::string> subdirs;  // still to remove
};

std::string FramePath(const std::string& display_path, const std::vector<Frame>& stack,
                      const std::string& leaf) {
  std::string path = display_path;
  for (size_t i = 1; i < stack.size(); i++) path += "/" + stack[i].name;
  if (!leaf.empty()) path += "/" + leaf;
  return path;
}

// Removes every entry of the directory `fd` that is not a directory and lists the
// subdirectories in `frame->subdirs`.
Status EmptyFiles(int fd, Frame* frame, const std::string& path) {
  PETREL_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDirAt(fd, path));
  for (DirEntry& e : entries) {
    if (e.is_dir) {
      frame->subdirs.push_back(std::move(e.name));
    } else if (WithWritableDir(fd, [&] { return unlinkat(fd, e.name.c_str(), 0); }) != 0 &&
               errno != ENOENT) {
      return ErrnoError(path + "/" + e.name, "remove", errno);
    }
  }
  return Status::OK();
}

}  // namespace

Status RemoveTreeAt(int dir_fd, const std::string& name, const std::string& display_path) {
  struct stat st;
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Status::OK();
    return ErrnoError(display_path, "stat", errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (WithWritableDir(dir_fd, [&] { return unlinkat(dir_fd, name.c_str(), 0); }) != 0 &&
        errno != ENOENT) {
      return ErrnoError(display_path, "remove", errno);
    }
    return Status::OK();
  }

  // Depth-first with one open directory at a time: going down opens the child, going up
  // opens ".." and checks it is the directory we came from, so a tree renamed under our
  // feet is never mistaken for another.
  const dev_t dev = st.st_dev;
  UniqueFd cur(OpenDirForRemoval(dir_fd, name.c_str()));
  if (!cur.valid()) return ErrnoError(display_path, "open", errno);
  struct stat cur_st;
  if (fstat(cur.get(), &cur_st) != 0) return ErrnoError(display_path, "stat", errno);
  if (cur_st.st_dev != st.st_dev || cur_st.st_ino != st.st_ino) {
    return Status::IOError(display_path + ": replaced while being removed");
  }
  std::vector<Frame> stack;
  stack.push_back(Frame{name, st.st_dev, st.st_ino, {}});
  PETREL_RETURN_IF_ERROR(EmptyFiles(cur.get(), &stack.back(), display_path));

  while (true) {
    Frame& top = stack.back();
    if (!top.subdirs.empty()) {
      std::string child = std::move(top.subdirs.back());
      top.subdirs.pop_back();
      UniqueFd fd(OpenDirForRemoval(cur.get(), child.c_str()));
      if (!fd.valid()) {
        if (errno == ENOENT) continue;
        if (errno == ELOOP || errno == ENOTDIR) {  // no longer a directory: just an entry
          if (WithWritableDir(cur.get(), [&] { return unlinkat(cur.get(), child.c_str(), 0); }) !=
                  0 &&
              errno != ENOENT) {
            return ErrnoError(FramePath(display_path, stack, child), "remove", errno);
          }
          continue;
        }
        return ErrnoError(FramePath(display_path, stack, child), "open", errno);
      }
      struct stat child_st;
      if (fstat(fd.get(), &child_st) != 0) {
        return ErrnoError(FramePath(display_path, stack, child), "stat", errno);
      }
      if (child_st.st_dev != dev) {
        return Status::IOError(FramePath(display_path, stack, child) +
                               ": is on another file system (a mount point); not removed");
      }
      stack.push_back(Frame{std::move(child), child_st.st_dev, child_st.st_ino, {}});
      cur = std::move(fd);
      PETREL_RETURN_IF_ERROR(
          EmptyFiles(cur.get(), &stack.back(), FramePath(display_path, stack, "")));
      continue;
    }
    if (stack.size() == 1) break;

    // `top` is empty: go up and remove it.
    const std::string path = FramePath(display_path, stack, "");
    UniqueFd up(openat(cur.get(), "..", kOpenDirFlags));
    if (!up.valid()) return ErrnoError(path + "/..", "open", errno);
    struct stat up_st;
    if (fstat(up.get(), &up_st) != 0) return ErrnoError(path + "/..", "stat", errno);
    const Frame& parent = stack[stack.size() - 2];
    if (up_st.st_dev != parent.dev || up_st.st_ino != parent.ino) {
      return Status::IOError(path + ": moved while being removed");
    }
    std::string done = std::move(top.name);
    stack.pop_back();
    cur = std::move(up);
    if (WithWritableDir(cur.get(),
                        [&] { return unlinkat(cur.get(), done.c_str(), AT_REMOVEDIR); }) != 0 &&
        errno != ENOENT) {
      return ErrnoError(path, "remove", errno);
    }
  }
  cur.reset();
  if (WithWritableDir(dir_fd, [&] { return unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR); }) != 0 &&
      errno != ENOENT) {
    return ErrnoError(display_path, "remove", errno);
  }
  return Status::OK();
}

Status RemoveTree(const std::string& path) {
  if (path.empty()) return Status::InvalidArgument("RemoveTree: empty path");
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  size_t slash = trimmed.rfind('/');
  std::string parent = slash == std::string::npos ? "." : trimmed.substr(0, slash);
  if (parent.empty()) parent = "/";
  std::string name = slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return Status::InvalidArgument("RemoveTree: refusing to remove " + path);
  }
  // The path down to the parent is the caller's and may go through links; only what is
  // inside the tree is untrusted.
  UniqueFd parent_fd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd.valid()) {
    if (errno == ENOENT) return Status::OK();
    return ErrnoError(parent, "open", errno);
  }
  return RemoveTreeAt(parent_fd.get(), name, path);
}

namespace {

// The rest of ReadSmallFile and ReadSmallFileInRoot, from an open `fd`.
Result<std::string> ReadOpened(int fd, const std::string& path, size_t max_size) {
  std::string data;
  char buf[8192];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(path, "read", errno);
    }
    if (n == 0) return data;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > max_size) return Status::Corruption(path + ": too large");
  }
}

}  // namespace

Result<std::string> ReadSmallFile(const std::string& path, size_t max_size) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    int err = errno;
    if (err == ENOENT) return Status::NotFound(path + ": no such file");
    return ErrnoError(path, "open", err);
  }
  return ReadOpened(fd.get(), path, max_size);
}

Result<std::string> ReadSmallFileInRoot(const std::string& root, const std::string& path,
                                        size_t max_size) {
  const std::string where = root + path;
  UniqueFd dir(open(root.c_str(), kOpenDirFlags));
  if (!dir.valid()) return ErrnoError(root, "open", errno);
  open_how how{};
  how.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  UniqueFd fd(static_cast<int>(syscall(SYS_openat2, dir.get(), path.c_str(), &how, sizeof(how))));
  if (!fd.valid()) {
    int err = errno;
    if (err == ENOENT) return Status::NotFound(where + ": no such file");
    return ErrnoError(where, "open", err);
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return ErrnoError(where, "stat", errno);
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(where + ": not a regular file");
  return ReadOpened(fd.get(), where, max_size);
}

Status RewriteFileInPlace(const std::string& path, std::string_view data, bool create) {
  const int flags = O_WRONLY | O_NOFOLLOW | O_CLOEXEC | (create ? O_CREAT : 0);
  UniqueFd fd(open(path.c_str(), flags, 0644));
  if (!fd.valid()) return ErrnoError(path, "open", errno);
  if (create && fchmod(fd.get(), 0644) != 0) return ErrnoError(path, "chmod", errno);
  PETREL_RETURN_IF_ERROR(WriteAll(fd.get(), data, path, 0));
  if (ftruncate(fd.get(), static_cast<off_t>(data.size())) != 0) {
    return ErrnoError(path, "truncate", errno);
  }
  return Status::OK();
}

Status WriteFileAtomic(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640));
  if (!fd.valid()) return ErrnoError(tmp, "create", errno);
  PETREL_RETURN_IF_ERROR(WriteAll(fd.get(), data, tmp));
  // The data before the rename that publishes it: else a power cut may leave the new
  // name on an empty or partly written file.
  if (fsync(fd.get()) != 0) return ErrnoError(tmp, "fsync", errno);
  fd.reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError(path, "rename", errno);
  return SyncDir(Dirname(path));
}

std::string Dirname(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Status SyncDir(const std::string& dir) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(dir, "open", errno);
  // EINVAL: a file system with nothing to sync (cgroupfs, a tmpfs on some kernels).
  if (fsync(fd.get()) != 0 && errno != EINVAL) return ErrnoError(dir, "fsync", errno);
  return Status::OK();
}

Status SyncFileSystem(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(path, "open", errno);
  if (syncfs(fd.get()) != 0) return ErrnoError(path, "syncfs", errno);
  return Status::OK();
}

bool IsFileAt(int fd, const std::string& path) {
  struct stat held, named;
  return fstat(fd, &held) == 0 && stat(path.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
         held.st_dev == named.st_dev;
}

}  // namespace petrel::internal
