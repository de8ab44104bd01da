#include "lib/image/layer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "lib/image/archive_lib.h"
#include "lib/image/digest.h"
#include "lib/image/libcrypto_sha256.h"
#include "lib/util/fs.h"
#include "lib/util/strings.h"

namespace petrel::internal {

namespace {

constexpr size_t kBlock = 64 * 1024;
// Deeper entry names are refused; this bounds the descriptors held while unpacking and
// copying a tree (one or two per level).
constexpr size_t kMaxComponents = 256;
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

using Path = std::vector<std::string>;

// An entry name for a message: quoted and escaped, but whole, since a hostile name is
// told apart from a benign one by its tail.
std::string QuoteName(std::string_view name) { return Quote(name, std::string_view::npos); }

// The first `n` components of `parts` joined with '/'.
std::string Join(const Path& parts, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < parts.size(); i++) {
    if (i > 0) out += '/';
    out += parts[i];
  }
  return out;
}

Status Refuse(const std::string& entry, const std::string& why) {
  return Status::InvalidArgument("entry " + QuoteName(entry) + ": " + why);
}

// A path missing under the unpack root means the layer names what is not there: a bad
// image, never NotFound (which the image store keeps for a missing file or tag).
Status EntryError(const std::string& entry, const std::string& what, int err) {
  Status s = ErrnoError("entry " + QuoteName(entry), what, err);
  return s.IsNotFound() ? Status::InvalidArgument(s.message()) : s;
}

// Splits an entry name into its components below the root, "." dropped and ".." applied.
// Returns why the name is refused, or "" when it is fine. An empty result is the root.
std::string SplitName(std::string_view name, Path* parts) {
  parts->clear();
  if (name.empty()) return "empty name";
  if (name[0] == '/') return "absolute path";
  size_t i = 0;
  while (i <= name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string_view::npos) j = name.size();
    std::string_view part = name.substr(i, j - i);
    if (part == "..") {
      if (parts->empty()) return "path escapes the image root";
      parts->pop_back();
    } else if (!part.empty() && part != ".") {
      parts->emplace_back(part);
    }
    i = j + 1;
  }
  if (parts->size() > kMaxComponents) {
    return "path has more than " + std::to_string(kMaxComponents) + " components";
  }
  return "";
}

// The read side: source -> blob digest -> decompression -> diff digest -> tar reader.
// libarchive pulls through the two callbacks below.
struct Pipeline {
  ByteSource* source = nullptr;
  struct archive* raw = nullptr;  // decompresses; its one entry is the uncompressed tar
  bool raw_done = false;
  // An uncompressed layer: its tar is the blob's bytes, and the blob's hash is also its
  // diff id (one SHA-256 pass instead of two).
  bool uncompressed = false;
  // libcrypto's when a registry pull has it loaded: two hashes of a compressed layer.
  Sha256 blob_hash{LoadedLibcryptoSha256()};
  Sha256 diff_hash{LoadedLibcryptoSha256()};
  uint64_t blob_size = 0;
  uint64_t max_bytes = 0;  // of the uncompressed tar
  uint64_t tar_bytes = 0;
  std::vector<char> in = std::vector<char>(kBlock);
  std::vector<char> mid = std::vector<char>(kBlock);
  Status error;  // the source's own failure, reported instead of libarchive's rewording

  Status Fail(struct archive* a, const std::string& what) const {
    return error.ok() ? ArchiveError(a, what) : error;
  }

  // Counts `n` more bytes of the uncompressed tar; false (with `error` set) past
  // max_bytes: a small blob may decompress to terabytes.
  bool CountTar(size_t n) {
    tar_bytes += n;
    if (tar_bytes <= max_bytes) return true;
    error = TooLarge(max_bytes);
    return false;
  }
  static Status TooLarge(uint64_t max) {
    return Status::InvalidArgument("layer: larger than " + std::to_string(max) +
                                   " bytes uncompressed (the limit: ImageStoreOptions::"
                                   "max_layer_bytes, petreld --max-layer-size)");
  }
};

la_ssize_t ReadBlob(struct archive* a, void* opaque, const void** buf) {
  auto* p = static_cast<Pipeline*>(opaque);
  Result<size_t> n = p->source->Read(p->in.data(), p->in.size());
  if (!n.ok()) {
    p->error = n.status();
    PETREL_ARCHIVE(archive_set_error)(a, EIO, "read failed");
    return -1;
  }
  p->blob_hash.Update(p->in.data(), *n);
  p->blob_size += *n;
  *buf = p->in.data();
  return static_cast<la_ssize_t>(*n);
}

la_ssize_t ReadTar(struct archive* a, void* opaque, const void** buf) {
  auto* p = static_cast<Pipeline*>(opaque);
  *buf = p->mid.data();
  if (p->raw_done) return 0;
  la_ssize_t n = PETREL_ARCHIVE(archive_read_data)(p->raw, p->mid.data(), p->mid.size());
  if (n < 0) {
    const char* msg = PETREL_ARCHIVE(archive_error_string)(p->raw);
    PETREL_ARCHIVE(archive_set_error)
    (a, PETREL_ARCHIVE(archive_errno)(p->raw), "%s", msg ? msg : "cannot decompress");
    return -1;
  }
  if (n == 0) p->raw_done = true;
  if (!p->CountTar(static_cast<size_t>(n))) {
    PETREL_ARCHIVE(archive_set_error)(a, EFBIG, "layer too large");
    return -1;
  }
  if (!p->uncompressed) p->diff_hash.Update(p->mid.data(), static_cast<size_t>(n));
  return n;
}

// Applies the entries of one layer's tar. The directories on the way to the current
// entry's parent stay open: the tar is mostly sorted, so the next entry usually shares
// them. That is safe because an entry only ever changes its own name, a sibling's
// (whiteout) or its parent's children (opaque), never a directory on that way.
class LayerWriter {
 public:
  LayerWriter(struct archive* tar, int root_fd, const Pipeline* pipeline)
      : tar_(tar), root_fd_(root_fd), pipeline_(pipeline) {}

  Status Apply(struct archive_entry* e) {
    const char* raw_name = PETREL_ARCHIVE(archive_entry_pathname)(e);
    if (raw_name == nullptr) raw_name = PETREL_ARCHIVE(archive_entry_pathname_utf8)(e);
    if (raw_name == nullptr) return Refuse("?", "name is not readable");
    const std::string entry = raw_name;
    Path parts;
    if (std::string why = SplitName(entry, &parts); !why.empty()) return Refuse(entry, why);

    const char* hardlink = PETREL_ARCHIVE(archive_entry_hardlink)(e);
    const mode_t type = PETREL_ARCHIVE(archive_entry_filetype)(e);
    if (hardlink == nullptr) {
      switch (type) {
        case AE_IFREG:
        case AE_IFDIR:
        case AE_IFLNK:
        case AE_IFIFO: break;
        case AE_IFCHR: return Refuse(entry, "character device nodes are not allowed in images");
        case AE_IFBLK: return Refuse(entry, "block device nodes are not allowed in images");
        case AE_IFSOCK: return Refuse(entry, "sockets are not allowed in images");
        default: return Refuse(entry, "unsupported entry type");
      }
    }

    if (parts.empty()) {  // "./": the root directory itself
      if (hardlink != nullptr || type != AE_IFDIR) {
        return Refuse(entry, "the image root must be a directory");
      }
      return SetAttributes(root_fd_, e, entry, false);
    }

    const size_t n = parts.size();
    const std::string& name = parts.back();
    PETREL_ASSIGN_OR_RETURN(const int dir, OpenDir(parts, n - 1, entry));
    const std::string_view base = name;

    if (base.substr(0, kWhiteoutPrefix.size()) == kWhiteoutPrefix) {
      MarkWritten(parts, n - 1);
      if (base == kOpaqueMarker) {
        return ClearOpaque(dir, Join(parts, n - 1), entry);
      }
      // Other ".wh..wh." names are aufs bookkeeping, not whiteouts.
      if (base.substr(kWhiteoutPrefix.size(), kWhiteoutPrefix.size()) == kWhiteoutPrefix) {
        return Status::OK();
      }
      Path victim = parts;
      victim.back() = name.substr(kWhiteoutPrefix.size());
      if (victim.back().empty() || victim.back() == "." || victim.back() == "..") {
        return Refuse(entry, "invalid whiteout");
      }
      return Remove(dir, victim, entry);
    }

    MarkWritten(parts, n);
    if (hardlink != nullptr) return Link(dir, parts, hardlink, entry);
    switch (type) {
      case AE_IFDIR: return MakeDir(dir, parts, e, entry);
      case AE_IFREG: return WriteFile(dir, parts, e, entry);
      case AE_IFLNK: return MakeSymlink(dir, parts, e, entry);
      default: return MakeFifo(dir, parts, e, entry);
    }
  }

 private:
  // The directory parts[0..n) below the root, missing directories created. Borrowed:
  // valid until the next call.
  Result<int> OpenDir(const Path& parts, size_t n, const std::string& entry) {
    size_t common = 0;
    while (common < n && common < open_names_.size() && open_names_[common] == parts[common]) {
      common++;
    }
    open_names_.resize(common);
    open_fds_.resize(common);
    for (size_t i = common; i < n; i++) {
      const int parent = i == 0 ? root_fd_ : open_fds_[i - 1].get();
      const char* name = parts[i].c_str();
      int fd = openat(parent, name, kOpenDirFlags);
      if (fd < 0 && (errno == ELOOP || errno == ENOTDIR)) {
        struct stat st;
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
          return Refuse(entry,
                        "path passes through the symbolic link " + QuoteName(Join(parts, i + 1)));
        }
        // A lower layer's file where this layer has a directory: the directory wins.
        if (unlinkat(parent, name, 0) != 0) {
          return EntryError(entry, "remove " + QuoteName(Join(parts, i + 1)), errno);
        }
        errno = ENOENT;
      }
      if (fd < 0 && errno == ENOENT) {
        if (mkdirat(parent, name, 0700) != 0) {
          return EntryError(entry, "mkdir " + QuoteName(Join(parts, i + 1)), errno);
        }
        fd = openat(parent, name, kOpenDirFlags);
        if (fd >= 0 && fchmod(fd, 0755) != 0) {
          int err = errno;
          close(fd);
          return EntryError(entry, "chmod " + QuoteName(Join(parts, i + 1)), err);
        }
      }
      if (fd < 0) return EntryError(entry, "open " + QuoteName(Join(parts, i + 1)), errno);
      open_names_.push_back(parts[i]);
      open_fds_.emplace_back(fd);
    }
    return n == 0 ? root_fd_ : open_fds_[n - 1].get();
  }

  // Records parts[0..n) and its ancestors as this layer's, so an opaque whiteout keeps them.
  void MarkWritten(const Path& parts, size_t n) {
    for (size_t len = n; len > 0; len--) {
      if (!written_.insert(Join(parts, len)).second) break;  // its ancestors are in too
    }
  }

  // Removes parts.back() (a file or a whole tree) from `dir`, its parent.
  Status Remove(int dir, const Path& parts, const std::string& entry) {
    return RemoveTreeAt(dir, parts.back(), Join(parts, parts.size()))
        .WithContext("entry " + QuoteName(entry));
  }

  // Empties `dir` (at `path`) of everything lower layers put there: whatever this layer
  // has not written, in the whole subtree.
  Status ClearOpaque(int dir, const std::string& path, const std::string& entry) {
    Result<std::vector<DirEntry>> entries = ListDirAt(dir, path.empty() ? "." : path);
    if (!entries.ok()) return entries.status().WithContext("entry " + QuoteName(entry));
    for (const DirEntry& e : *entries) {
      const std::string child = path.empty() ? e.name : path + "/" + e.name;
      if (written_.count(child) == 0) {
        PETREL_RETURN_IF_ERROR(
            RemoveTreeAt(dir, e.name, child).WithContext("entry " + QuoteName(entry)));
        continue;
      }
      if (!e.is_dir) continue;
      UniqueFd fd(openat(dir, e.name.c_str(), kOpenDirFlags));
      if (!fd.valid()) return EntryError(entry, "open " + QuoteName(child), errno);
      PETREL_RETURN_IF_ERROR(ClearOpaque(fd.get(), child, entry));
    }
    return Status::OK();
  }

  // Owner, mode and kept xattrs of the file or directory `fd`; mtime for files.
  Status SetAttributes(int fd, struct archive_entry* e, const std::string& entry, bool times) {
    if (fchown(fd, PETREL_ARCHIVE(archive_entry_uid)(e), PETREL_ARCHIVE(archive_entry_gid)(e)) !=
            0 &&
        (root_ || errno != EPERM)) {
      return EntryError(entry, "chown", errno);
    }
    // After chown, which clears setuid, setgid and file capabilities.
    if (fchmod(fd, PETREL_ARCHIVE(archive_entry_mode)(e) & 07777) != 0)
      return EntryError(entry, "chmod", errno);
    const char* xname;
    const void* value;
    size_t size;
    PETREL_ARCHIVE(archive_entry_xattr_reset)(e);
    while (PETREL_ARCHIVE(archive_entry_xattr_next)(e, &xname, &value, &size) == ARCHIVE_OK) {
      if (xname == nullptr || !IsKeptXattr(xname)) continue;
      if (fsetxattr(fd, xname, value, size, 0) != 0 && errno != ENOTSUP) {
        return EntryError(entry, std::string("set xattr ") + xname, errno);
      }
    }
    if (times) {
      struct timespec ts[2] = {MTime(e), MTime(e)};
      if (futimens(fd, ts) != 0) return EntryError(entry, "set times", errno);
    }
    return Status::OK();
  }

  static struct timespec MTime(struct archive_entry* e) {
    struct timespec ts = {};
    if (PETREL_ARCHIVE(archive_entry_mtime_is_set)(e)) {
      ts.tv_sec = PETREL_ARCHIVE(archive_entry_mtime)(e);
      ts.tv_nsec = PETREL_ARCHIVE(archive_entry_mtime_nsec)(e);
    }
    return ts;
  }

  // Owner and mtime of the non-directory `name` in `dir` that may be a link (not followed).
  Status SetLinkAttributes(int dir, const std::string& name, struct archive_entry* e,
                           const std::string& entry) {
    if (fchownat(dir, name.c_str(), PETREL_ARCHIVE(archive_entry_uid)(e),
                 PETREL_ARCHIVE(archive_entry_gid)(e), AT_SYMLINK_NOFOLLOW) != 0 &&
        (root_ || errno != EPERM)) {
      return EntryError(entry, "chown", errno);
    }
    struct timespec ts[2] = {MTime(e), MTime(e)};
    if (utimensat(dir, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
      return EntryError(entry, "set times", errno);
    }
    return Status::OK();
  }

  Status MakeDir(int dir, const Path& parts, struct archive_entry* e, const std::string& entry) {
    const char* name = parts.back().c_str();
    struct stat st;
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
      PETREL_RETURN_IF_ERROR(Remove(dir, parts, entry));
    }
    if (mkdirat(dir, name, 0700) != 0 && errno != EEXIST) return EntryError(entry, "mkdir", errno);
    UniqueFd fd(openat(dir, name, kOpenDirFlags));
    if (!fd.valid()) return EntryError(entry, "open", errno);
    // A directory is merged with the one lower layers left; only its attributes change.
    return SetAttributes(fd.get(), e, entry, false);
  }

  Status WriteFile(int dir, const Path& parts, struct archive_entry* e, const std::string& entry) {
    // A sparse file's holes cost the tar nothing, but a copy of the rootfs every byte.
    if (PETREL_ARCHIVE(archive_entry_size_is_set)(e) &&
        static_cast<uint64_t>(PETREL_ARCHIVE(archive_entry_size)(e)) > pipeline_->max_bytes) {
      return Pipeline::TooLarge(pipeline_->max_bytes).WithContext("entry " + QuoteName(entry));
    }
    PETREL_RETURN_IF_ERROR(Remove(dir, parts, entry));
    UniqueFd fd(openat(dir, parts.back().c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return EntryError(entry, "create", errno);
    while (true) {
      const void* buf;
      size_t size;
      la_int64_t offset;
      int r = PETREL_ARCHIVE(archive_read_data_block)(tar_, &buf, &size, &offset);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) return pipeline_->Fail(tar_, "entry " + QuoteName(entry));
      PETREL_RETURN_IF_ERROR(WriteAll(fd.get(),
                                      std::string_view(static_cast<const char*>(buf), size),
                                      "entry " + QuoteName(entry), offset));
    }
    // Sparse files end in a hole the data blocks do not cover.
    if (PETREL_ARCHIVE(archive_entry_size_is_set)(e) &&
        ftruncate(fd.get(), PETREL_ARCHIVE(archive_entry_size)(e)) != 0) {
      return EntryError(entry, "truncate", errno);
    }
    return SetAttributes(fd.get(), e, entry, true);
  }

  Status MakeSymlink(int dir, const Path& parts, struct archive_entry* e,
                     const std::string& entry) {
    const char* target = PETREL_ARCHIVE(archive_entry_symlink)(e);
    if (target == nullptr) target = PETREL_ARCHIVE(archive_entry_symlink_utf8)(e);
    if (target == nullptr || *target == '\0') return Refuse(entry, "symbolic link without target");
    PETREL_RETURN_IF_ERROR(Remove(dir, parts, entry));
    if (symlinkat(target, dir, parts.back().c_str()) != 0) {
      return EntryError(entry, "symlink", errno);
    }
    return SetLinkAttributes(dir, parts.back(), e, entry);
  }

  Status MakeFifo(int dir, const Path& parts, struct archive_entry* e, const std::string& entry) {
    const char* name = parts.back().c_str();
    PETREL_RETURN_IF_ERROR(Remove(dir, parts, entry));
    if (mknodat(dir, name, S_IFIFO | 0600, 0) != 0) return EntryError(entry, "mkfifo", errno);
    PETREL_RETURN_IF_ERROR(SetLinkAttributes(dir, parts.back(), e, entry));
    // The FIFO was just made by this thread in a directory nobody else writes to.
    if (fchmodat(dir, name, PETREL_ARCHIVE(archive_entry_mode)(e) & 07777, 0) != 0) {
      return EntryError(entry, "chmod", errno);
    }
    return Status::OK();
  }

  Status Link(int dir, const Path& parts, const char* link, const std::string& entry) {
    Path target;
    if (std::string why = SplitName(link, &target); !why.empty()) {
      return Refuse(entry, "hard link target " + QuoteName(link) + ": " + why);
    }
    if (target.empty()) return Refuse(entry, "hard link to the image root");
    if (target == parts) return Status::OK();
    // The target's directory, opened like any entry's (no links followed) but on its own
    // descriptors, so `dir` stays open.
    UniqueFd owned;
    int tdir = root_fd_;
    for (size_t i = 0; i + 1 < target.size(); i++) {
      int fd = openat(tdir, target[i].c_str(), kOpenDirFlags);
      if (fd < 0) {
        struct stat st;
        if ((errno == ELOOP || errno == ENOTDIR) &&
            fstatat(tdir, target[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(st.st_mode)) {
          return Refuse(entry, "hard link target " + QuoteName(link) +
                                   " passes through the symbolic link " +
                                   QuoteName(Join(target, i + 1)));
        }
        return Refuse(entry, "hard link target " + QuoteName(link) + " does not exist");
      }
      owned.reset(fd);
      tdir = fd;
    }
    struct stat st;
    if (fstatat(tdir, target.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Refuse(entry, "hard link target " + QuoteName(link) + " does not exist");
    }
    if (S_ISDIR(st.st_mode)) return Refuse(entry, "hard link to a directory");
    PETREL_RETURN_IF_ERROR(Remove(dir, parts, entry));
    if (linkat(tdir, target.back().c_str(), dir, parts.back().c_str(), 0) != 0) {
      return EntryError(entry, "link", errno);
    }
    return Status::OK();
  }

  struct archive* tar_;
  const int root_fd_;
  const Pipeline* pipeline_;
  const bool root_ = geteuid() == 0;
  Path open_names_;
  std::vector<UniqueFd> open_fds_;
  std::unordered_set<std::string> written_;  // paths this layer wrote, with their ancestors
};

}  // namespace

bool IsKeptXattr(std::string_view name) {
  return name == "security.capability" || name.substr(0, 5) == "user.";
}

namespace {

// Reads the rest of the source through the blob digest and reports it. Returns false
// (with p->error set) when the source fails.
bool FinishBlob(Pipeline* p, LayerDigests* digests) {
  while (true) {
    Result<size_t> n = p->source->Read(p->in.data(), p->in.size());
    if (!n.ok()) {
      p->error = n.status();
      return false;
    }
    if (*n == 0) break;
    p->blob_hash.Update(p->in.data(), *n);
    p->blob_size += *n;
  }
  digests->blob = FinishDigest(&p->blob_hash);
  digests->blob_size = p->blob_size;
  return true;
}

Status Apply(Pipeline* p, int root_fd, LayerDigests* digests);

}  // namespace

Status ApplyLayer(ByteSource* source, int root_fd, uint64_t max_bytes, LayerDigests* digests) {
  Pipeline p;
  p.source = source;
  p.max_bytes = max_bytes;
  *digests = LayerDigests();
  Status s = Apply(&p, root_fd, digests);
  if (s.ok() || !p.error.ok()) return s;
  (void)FinishBlob(&p, digests);
  return s;
}

namespace {

Status Apply(Pipeline* pipeline, int root_fd, LayerDigests* digests) {
  Pipeline& p = *pipeline;
  ArchiveReader raw(PETREL_ARCHIVE(archive_read_new)());
  ArchiveReader tar(PETREL_ARCHIVE(archive_read_new)());
  if (!raw || !tar) return Status::IOError("layer: out of memory");
  p.raw = raw.get();
  // Only in-process decoders are linked by Debian's libarchive; no program is spawned.
  PETREL_ARCHIVE(archive_read_support_filter_gzip)(raw.get());
  PETREL_ARCHIVE(archive_read_support_filter_zstd)(raw.get());
  PETREL_ARCHIVE(archive_read_support_filter_xz)(raw.get());
  PETREL_ARCHIVE(archive_read_support_filter_bzip2)(raw.get());
  PETREL_ARCHIVE(archive_read_support_format_raw)(raw.get());
  PETREL_ARCHIVE(archive_read_support_format_empty)(raw.get());
  if (PETREL_ARCHIVE(archive_read_open)(raw.get(), &p, nullptr, ReadBlob, nullptr) != ARCHIVE_OK) {
    return p.Fail(raw.get(), "layer");
  }
  struct archive_entry* raw_entry;
  int r = PETREL_ARCHIVE(archive_read_next_header)(raw.get(), &raw_entry);
  if (r == ARCHIVE_EOF) {
    p.raw_done = true;
  } else if (r != ARCHIVE_OK) {
    return p.Fail(raw.get(), "layer");
  }
  // No decompression filter found: only libarchive's pass-through ("none") is there.
  p.uncompressed = PETREL_ARCHIVE(archive_filter_count)(raw.get()) == 1;

  PETREL_ARCHIVE(archive_read_support_format_tar)(tar.get());
  PETREL_ARCHIVE(archive_read_support_format_empty)(tar.get());
  if (PETREL_ARCHIVE(archive_read_open)(tar.get(), &p, nullptr, ReadTar, nullptr) != ARCHIVE_OK) {
    return p.Fail(tar.get(), "layer");
  }
  LayerWriter writer(tar.get(), root_fd, &p);
  while (true) {
    struct archive_entry* e;
    r = PETREL_ARCHIVE(archive_read_next_header)(tar.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return p.Fail(tar.get(), "layer");
    PETREL_RETURN_IF_ERROR(writer.Apply(e));
  }

  // The digests cover every byte: the tar's padding after its end marker, and whatever
  // follows the compressed stream.
  while (!p.raw_done) {
    la_ssize_t n = PETREL_ARCHIVE(archive_read_data)(raw.get(), p.mid.data(), p.mid.size());
    if (n < 0) return p.Fail(raw.get(), "layer");
    if (n == 0) break;
    if (!p.CountTar(static_cast<size_t>(n))) return p.error;
    if (!p.uncompressed) p.diff_hash.Update(p.mid.data(), static_cast<size_t>(n));
  }
  if (!FinishBlob(&p, digests)) return p.error;
  digests->diff_id = p.uncompressed ? digests->blob : FinishDigest(&p.diff_hash);
  return Status::OK();
}

}  // namespace

}  // namespace petrel::internal
