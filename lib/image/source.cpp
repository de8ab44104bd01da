#include "lib/image/source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "lib/image/archive_lib.h"
#include "lib/util/fs.h"

namespace petrel::internal {

namespace {

constexpr size_t kReadBlock = 64 * 1024;
constexpr int kMaxLinkHops = 8;

class FdByteSource : public ByteSource {
 public:
  FdByteSource(int fd, const std::string& path, int64_t size) : fd_(fd), path_(path), size_(size) {}
  Result<size_t> Read(void* buf, size_t size) override {
    while (true) {
      ssize_t n = read(fd_, buf, size);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) return ErrnoError(path_, "read", errno);
    }
  }
  int64_t Size() const override { return size_; }

 private:
  int fd_;
  const std::string& path_;
  int64_t size_;
};

class DirSource : public ImageSource {
 public:
  explicit DirSource(const std::string& path) : path_(path) {}

  Status StreamFile(const std::string& name,
                    const std::function<Status(ByteSource*)>& fn) override {
    const std::string path = path_ + "/" + name;
    // A FIFO would block the open (and the worker) until some writer came, and opening
    // a device may act on it (a watchdog starts ticking): neither is ever opened, and
    // what is opened is opened non-blocking and checked again, in case it was swapped.
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return Status::InvalidArgument("no " + name + " in " + path_);
      return ErrnoError(path, "stat", errno);
    }
    if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path + ": not a regular file");
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoError(path, "open", errno);
    if (fstat(fd.get(), &st) != 0) return ErrnoError(path, "stat", errno);
    if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path + ": not a regular file");
    FdByteSource source(fd.get(), path, static_cast<int64_t>(st.st_size));
    return fn(&source);
  }

 private:
  std::string path_;
};

// Data of the current entry of a tar being read.
class EntryByteSource : public ByteSource {
 public:
  EntryByteSource(struct archive* a, const std::string& what, int64_t size)
      : a_(a), what_(what), size_(size) {}
  Result<size_t> Read(void* buf, size_t size) override {
    la_ssize_t n = PETREL_ARCHIVE(archive_read_data)(a_, buf, size);
    if (n < 0) return ArchiveError(a_, what_);
    return static_cast<size_t>(n);
  }
  int64_t Size() const override { return size_; }

 private:
  struct archive* a_;
  const std::string& what_;
  int64_t size_;
};

// `name` without "./" and "." components, repeated or trailing slashes; "" when it has a
// ".." component or is absolute (such names are never looked up).
std::string NormalizeName(const std::string& name) {
  std::string out;
  size_t i = 0;
  while (i <= name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string::npos) j = name.size();
    std::string part = name.substr(i, j - i);
    if (part == "..") return "";
    if (!part.empty() && part != ".") {
      if (!out.empty()) out += '/';
      out += part;
    }
    i = j + 1;
  }
  return out;
}

// The entry a symbolic link `target` stored at `name` points to, or "" when it leaves the
// tar (absolute, or ".." past the top).
std::string ResolveLink(const std::string& name, const std::string& target) {
  if (target.empty() || target[0] == '/') return "";
  std::vector<std::string> parts;
  size_t slash = name.rfind('/');
  std::string joined = (slash == std::string::npos ? "" : name.substr(0, slash + 1)) + target;
  size_t i = 0;
  while (i <= joined.size()) {
    size_t j = joined.find('/', i);
    if (j == std::string::npos) j = joined.size();
    std::string part = joined.substr(i, j - i);
    if (part == "..") {
      if (parts.empty()) return "";
      parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

class TarSource : public ImageSource {
 public:
  explicit TarSource(const std::string& path) : path_(path) {}

  Status StreamFile(const std::string& name,
                    const std::function<Status(ByteSource*)>& fn) override {
    std::string want = NormalizeName(name);
    for (int hop = 0; hop <= kMaxLinkHops; hop++) {
      ArchiveReader a(PETREL_ARCHIVE(archive_read_new)());
      if (!a) return Status::IOError(path_ + ": out of memory");
      PETREL_ARCHIVE(archive_read_support_format_tar)(a.get());
      PETREL_ARCHIVE(archive_read_support_filter_gzip)(a.get());
      if (PETREL_ARCHIVE(archive_read_open_filename)(a.get(), path_.c_str(), kReadBlock) !=
          ARCHIVE_OK) {
        return ArchiveError(a.get(), path_);
      }
      std::string next;
      bool found = false;
      while (!found) {
        struct archive_entry* entry;
        int r = PETREL_ARCHIVE(archive_read_next_header)(a.get(), &entry);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) return ArchiveError(a.get(), path_);
        const char* entry_name = PETREL_ARCHIVE(archive_entry_pathname)(entry);
        if (entry_name == nullptr || NormalizeName(entry_name) != want) continue;
        found = true;
        if (const char* hardlink = PETREL_ARCHIVE(archive_entry_hardlink)(entry)) {
          next = NormalizeName(hardlink);
        } else if (PETREL_ARCHIVE(archive_entry_filetype)(entry) == AE_IFLNK) {
          const char* target = PETREL_ARCHIVE(archive_entry_symlink)(entry);
          next = ResolveLink(want, target ? target : "");
        } else if (PETREL_ARCHIVE(archive_entry_filetype)(entry) != AE_IFREG) {
          return Status::InvalidArgument(path_ + ": " + want + " is not a regular file");
        } else {
          const std::string what = path_ + ": " + want;
          EntryByteSource source(a.get(), what,
                                 PETREL_ARCHIVE(archive_entry_size_is_set)(entry)
                                     ? PETREL_ARCHIVE(archive_entry_size)(entry)
                                     : -1);
          return fn(&source);
        }
      }
      if (!found) {
        return Status::InvalidArgument("no " + (hop == 0 ? name : want + " (a link target)") +
                                       " in " + path_);
      }
      if (next.empty()) {
        return Status::InvalidArgument(path_ + ": " + want + " links outside the archive");
      }
      want = next;
    }
    return Status::InvalidArgument(path_ + ": " + name + ": too many levels of links");
  }

 private:
  std::string path_;
};

}  // namespace

std::unique_ptr<ImageSource> ImageSource::Dir(const std::string& path) {
  return std::make_unique<DirSource>(path);
}

std::unique_ptr<ImageSource> ImageSource::Tar(const std::string& path) {
  return std::make_unique<TarSource>(path);
}

Result<std::string> ImageSource::ReadFile(const std::string& name, size_t max_size) {
  std::string data;
  Status s = StreamFile(name, [&](ByteSource* source) -> Status {
    char buf[8192];
    while (true) {
      PETREL_ASSIGN_OR_RETURN(const size_t n, source->Read(buf, sizeof(buf)));
      if (n == 0) return Status::OK();
      if (data.size() + n > max_size) {
        return Status::InvalidArgument(name + " is larger than " + std::to_string(max_size) +
                                       " bytes");
      }
      data.append(buf, n);
    }
  });
  if (!s.ok()) return s;
  return data;
}

Status ArchiveError(struct archive* a, const std::string& what) {
  int err = PETREL_ARCHIVE(archive_errno)(a);
  const char* msg = PETREL_ARCHIVE(archive_error_string)(a);
  std::string text = what + ": " + (msg ? msg : "unreadable archive");
  if (err == EIO || err == ENOMEM || err == EACCES || err == ENOENT || err == EISDIR) {
    return Status::IOError(text);
  }
  return Status::InvalidArgument(text);
}

}  // namespace petrel::internal
