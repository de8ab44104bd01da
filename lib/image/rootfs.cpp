#include "lib/image/rootfs.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "lib/image/layer.h"
#include "lib/util/fs.h"

namespace petrel::internal {

namespace {

class Copier {
 public:
  explicit Copier(int dst_root, const std::string& to) : dst_root_(dst_root), to_(to) {}

  // Copies the entries of `src` into `dst` (the directory `rel` below the roots).
  Status CopyDir(int src, int dst, const std::string& rel) {
    PETREL_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDirAt(src, PathOf(rel)));
    for (const DirEntry& entry : entries) {
      const std::string& name = entry.name;
      const std::string child = rel.empty() ? name : rel + "/" + name;
      const char* n = name.c_str();
      struct stat st;
      if (fstatat(src, n, &st, AT_SYMLINK_NOFOLLOW) != 0) return Error(child, "stat", errno);
      if (S_ISDIR(st.st_mode)) {
        if (mkdirat(dst, n, 0700) != 0) return Error(child, "mkdir", errno);
        UniqueFd s(openat(src, n, kOpenDirFlags));
        if (!s.valid()) return Error(child, "open", errno);
        UniqueFd d(openat(dst, n, kOpenDirFlags));
        if (!d.valid()) return Error(child, "open", errno);
        PETREL_RETURN_IF_ERROR(CopyDir(s.get(), d.get(), child));
        PETREL_RETURN_IF_ERROR(CopyAttributes(s.get(), d.get(), st, child));
      } else if (S_ISREG(st.st_mode)) {
        PETREL_RETURN_IF_ERROR(CopyFile(src, dst, name, child, st));
      } else if (S_ISLNK(st.st_mode)) {
        std::vector<char> target(static_cast<size_t>(st.st_size) + 1);
        ssize_t len = readlinkat(src, n, target.data(), target.size());
        if (len < 0) return Error(child, "readlink", errno);
        if (static_cast<size_t>(len) >= target.size()) return Error(child, "readlink", ERANGE);
        target[static_cast<size_t>(len)] = '\0';
        if (symlinkat(target.data(), dst, n) != 0) return Error(child, "symlink", errno);
        PETREL_RETURN_IF_ERROR(CopyLinkAttributes(dst, name, st, child));
      } else if (S_ISFIFO(st.st_mode)) {
        if (mknodat(dst, n, S_IFIFO | 0600, 0) != 0) return Error(child, "mkfifo", errno);
        PETREL_RETURN_IF_ERROR(CopyLinkAttributes(dst, name, st, child));
        // Made just now by this thread in a directory nobody else writes to.
        if (fchmodat(dst, n, st.st_mode & 07777, 0) != 0) return Error(child, "chmod", errno);
      }
    }
    return Status::OK();
  }

  Status CopyAttributes(int src, int dst, const struct stat& st, const std::string& rel) {
    if (fchown(dst, st.st_uid, st.st_gid) != 0 && (root_ || errno != EPERM)) {
      return Error(rel, "chown", errno);
    }
    // After chown, which clears setuid, setgid and file capabilities.
    if (fchmod(dst, st.st_mode & 07777) != 0) return Error(rel, "chmod", errno);
    PETREL_RETURN_IF_ERROR(CopyXattrs(src, dst, rel));
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    if (futimens(dst, ts) != 0) return Error(rel, "set times", errno);
    return Status::OK();
  }

 private:
  // Where `rel` (relative to the roots) is in the copy, for messages.
  std::string PathOf(const std::string& rel) const { return rel.empty() ? to_ : to_ + "/" + rel; }

  Status Error(const std::string& rel, const char* what, int err) const {
    return ErrnoError(PathOf(rel), what, err);
  }

  Status CopyFile(int src, int dst, const std::string& name, const std::string& rel,
                  const struct stat& st) {
    const std::pair<dev_t, ino_t> key{st.st_dev, st.st_ino};
    if (st.st_nlink > 1) {
      auto it = links_.find(key);
      if (it != links_.end()) {
        if (linkat(dst_root_, it->second.c_str(), dst, name.c_str(), 0) != 0) {
          return Error(rel, "link", errno);
        }
        return Status::OK();
      }
    }
    UniqueFd s(openat(src, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!s.valid()) return Error(rel, "open", errno);
    UniqueFd d(
        openat(dst, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!d.valid()) return Error(rel, "create", errno);
    PETREL_RETURN_IF_ERROR(CopyData(s.get(), d.get(), st.st_size, rel));
    PETREL_RETURN_IF_ERROR(CopyAttributes(s.get(), d.get(), st, rel));
    if (st.st_nlink > 1) links_.emplace(key, rel);
    return Status::OK();
  }

  // Clones the data where the file system can (btrfs, xfs), else copies it in the
  // kernel, else through a buffer.
  Status CopyData(int src, int dst, off_t size, const std::string& rel) {
    if (size == 0 || ioctl(dst, FICLONE, src) == 0) return Status::OK();
    off_t done = 0;
    while (done < size) {
      ssize_t n = copy_file_range(src, nullptr, dst, nullptr, static_cast<size_t>(size - done), 0);
      if (n > 0) {
        done += n;
        continue;
      }
      if (n == 0) break;  // the file shrank
      if (errno == EINTR) continue;
      if (done == 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                        errno == EOPNOTSUPP || errno == EPERM)) {
        return CopyBuffered(src, dst, rel);
      }
      return Error(rel, "copy", errno);
    }
    return Status::OK();
  }

  Status CopyBuffered(int src, int dst, const std::string& rel) {
    buf_.resize(64 * 1024);
    while (true) {
      ssize_t n = read(src, buf_.data(), buf_.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return Error(rel, "read", errno);
      }
      if (n == 0) return Status::OK();
      PETREL_RETURN_IF_ERROR(
          WriteAll(dst, std::string_view(buf_.data(), static_cast<size_t>(n)), PathOf(rel)));
    }
  }

  Status CopyXattrs(int src, int dst, const std::string& rel) {
    ssize_t size = flistxattr(src, nullptr, 0);
    if (size <= 0) return Status::OK();  // none, or not supported here
    std::vector<char> names(static_cast<size_t>(size));
    size = flistxattr(src, names.data(), names.size());
    if (size < 0) return Status::OK();
    for (const char* name = names.data(); name < names.data() + size;
         name += std::strlen(name) + 1) {
      if (!IsKeptXattr(name)) continue;
      ssize_t len = fgetxattr(src, name, nullptr, 0);
      if (len < 0) continue;
      std::vector<char> value(static_cast<size_t>(len));
      len = fgetxattr(src, name, value.data(), value.size());
      if (len < 0) continue;
      if (fsetxattr(dst, name, value.data(), static_cast<size_t>(len), 0) != 0 &&
          errno != ENOTSUP) {
        return Error(rel, (std::string("set xattr ") + name).c_str(), errno);
      }
    }
    return Status::OK();
  }

  Status CopyLinkAttributes(int dst, const std::string& name, const struct stat& st,
                            const std::string& rel) {
    if (fchownat(dst, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0 &&
        (root_ || errno != EPERM)) {
      return Error(rel, "chown", errno);
    }
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    if (utimensat(dst, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
      return Error(rel, "set times", errno);
    }
    return Status::OK();
  }

  const int dst_root_;
  const std::string& to_;
  const bool root_ = geteuid() == 0;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;  // first copy of each hard link
  std::vector<char> buf_;
};

}  // namespace

Status CopyTree(const std::string& from, const std::string& to) {
  UniqueFd src(open(from.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!src.valid()) return ErrnoError(from, "open", errno);
  UniqueFd dst(open(to.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dst.valid()) return ErrnoError(to, "open", errno);
  struct stat st;
  if (fstat(src.get(), &st) != 0) return ErrnoError(from, "stat", errno);
  Copier copier(dst.get(), to);
  PETREL_RETURN_IF_ERROR(copier.CopyDir(src.get(), dst.get(), ""));
  return copier.CopyAttributes(src.get(), dst.get(), st, "");
}

}  // namespace petrel::internal
