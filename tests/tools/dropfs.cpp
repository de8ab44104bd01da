// dropfs: a FUSE file system for tests that forgets, when told, every change not yet
// made durable, as a power cut does (tests/integration/power_cut_test.sh).
//
//   dropfs BACKING SHADOW MOUNTPOINT
//
// Every operation passes through to the directory BACKING. dropfs remembers what is not
// durable yet: a file's content since its last fsync (a copy of the content it had then,
// made in SHADOW before the first change; a file made since is empty), and a directory's
// entries since its last fsync (names made, removed or renamed; what a removal or a
// rename replaced is kept by a hard link in SHADOW, which must be on BACKING's file
// system). A rename is durable once both its directories were synced.
//
// SIGUSR1 cuts the power: dropfs stops serving, undoes in BACKING what was not durable
// (directory entries first, newest first; then the files' content), prints one line
// saying how much, unmounts and exits 0. SIGTERM or SIGINT unmounts without undoing.
// Kill what uses the mount first: a cut in the middle of an operation is not modelled.
// Single-threaded: the remembered state needs no lock.
#define FUSE_USE_VERSION 31

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

std::string g_backing;
std::string g_shadow;
int g_saved = 0;  // names of the copies and links in SHADOW
volatile sig_atomic_t g_cut = 0;
fuse_session* g_session = nullptr;

// The content a file had at its last fsync: a copy in SHADOW, or "" for empty.
std::map<ino_t, std::string> g_content;

// A directory change not yet durable, and how to undo it.
struct Change {
  enum Kind { kMade, kRemoved, kRenamed } kind;
  std::string path;            // the name made, removed, or renamed to (under BACKING)
  std::string from;            // kRenamed: the name it had
  std::string saved;           // what was at `path` before: a link in SHADOW, or ""
  bool saved_dir = false;      // ... an (empty) directory
  std::set<std::string> dirs;  // the directories whose fsync makes it durable
};
std::vector<Change> g_changes;

std::string Real(const char* path) { return g_backing + path; }

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

int Err() { return -errno; }

// Copies the file at fd `from` (reopened for reading) into a new file `to`.
bool CopyFile(int from, const std::string& to) {
  std::string self = "/proc/self/fd/" + std::to_string(from);
  int in = open(self.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return false;
  int out = open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = out >= 0;
  char buf[65536];
  ssize_t n;
  while (ok && (n = read(in, buf, sizeof buf)) > 0) ok = write(out, buf, n) == n;
  close(in);
  if (out >= 0) close(out);
  return ok;
}

// Called before the content of the file open at `fd` changes: keeps its durable content.
void KeepContent(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || g_content.count(st.st_ino) != 0) return;
  std::string copy = g_shadow + "/content-" + std::to_string(++g_saved);
  if (!CopyFile(fd, copy)) {
    std::fprintf(stderr, "dropfs: cannot keep the content of inode %lu\n",
                 static_cast<unsigned long>(st.st_ino));
    copy = "";
  }
  g_content[st.st_ino] = copy;
}

void KeepContentOf(const char* path) {
  int fd = open(Real(path).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return;
  KeepContent(fd);
  close(fd);
}

// Before `path` is removed or replaced: a hard link to it in SHADOW (or, for a directory,
// the mark that it was one). False when nothing is there.
bool Save(const std::string& path, std::string* saved, bool* is_dir) {
  struct stat st;
  if (lstat(Real(path.c_str()).c_str(), &st) != 0) return false;
  *is_dir = S_ISDIR(st.st_mode);
  if (*is_dir) return true;
  *saved = g_shadow + "/entry-" + std::to_string(++g_saved);
  if (link(Real(path.c_str()).c_str(), saved->c_str()) != 0) {
    std::fprintf(stderr, "dropfs: cannot keep %s: %s\n", path.c_str(), std::strerror(errno));
    saved->clear();
  }
  return true;
}

void Made(const char* path) {
  g_changes.push_back({Change::kMade, path, "", "", false, {Parent(path)}});
}

// A file just made: its durable content is none.
void MadeFile(const char* path) {
  struct stat st;
  if (lstat(Real(path).c_str(), &st) == 0 && S_ISREG(st.st_mode)) g_content[st.st_ino] = "";
  Made(path);
}

int RemoveTree(const std::string& path) {
  return nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int type, FTW*) {
        return type == FTW_DP ? rmdir(p) : unlink(p);
      },
      16, FTW_DEPTH | FTW_PHYS);
}

// Puts back at `path` what Save kept.
void Restore(const std::string& path, const std::string& saved, bool is_dir) {
  const std::string real = Real(path.c_str());
  if (is_dir) {
    mkdir(real.c_str(), 0755);
  } else if (!saved.empty()) {
    unlink(real.c_str());
    link(saved.c_str(), real.c_str());
  }
}

// The power cut: undoes what was not durable. Returns {entries, files} undone.
std::pair<int, int> Cut() {
  int entries = 0, files = 0;
  for (auto it = g_changes.rbegin(); it != g_changes.rend(); ++it) {
    if (it->dirs.empty()) continue;
    entries++;
    const std::string real = Real(it->path.c_str());
    switch (it->kind) {
      case Change::kMade: RemoveTree(real); break;
      case Change::kRemoved: Restore(it->path, it->saved, it->saved_dir); break;
      case Change::kRenamed:
        rename(real.c_str(), Real(it->from.c_str()).c_str());
        Restore(it->path, it->saved, it->saved_dir);
        break;
    }
  }
  // Where each remembered inode is now.
  static std::map<ino_t, std::string>* where;
  std::map<ino_t, std::string> found;
  where = &found;
  nftw(
      g_backing.c_str(),
      [](const char* p, const struct stat* st, int type, FTW*) {
        if (type == FTW_F && S_ISREG(st->st_mode)) where->emplace(st->st_ino, p);
        return 0;
      },
      16, FTW_PHYS);
  for (const auto& [ino, copy] : g_content) {
    auto at = found.find(ino);
    if (at == found.end()) continue;
    files++;
    int out = open(at->second.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (out < 0) continue;
    if (!copy.empty()) {
      int in = open(copy.c_str(), O_RDONLY | O_CLOEXEC);
      char buf[65536];
      ssize_t n;
      while (in >= 0 && (n = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, n) != n) break;
      }
      if (in >= 0) close(in);
    }
    fsync(out);
    close(out);
  }
  sync();
  return {entries, files};
}

// --- the operations, passed through to BACKING.

int OpGetattr(const char* path, struct stat* st, fuse_file_info*) {
  return lstat(Real(path).c_str(), st) == 0 ? 0 : Err();
}

int OpReadlink(const char* path, char* buf, size_t size) {
  ssize_t n = readlink(Real(path).c_str(), buf, size - 1);
  if (n < 0) return Err();
  buf[n] = '\0';
  return 0;
}

int OpMkdir(const char* path, mode_t mode) {
  if (mkdir(Real(path).c_str(), mode) != 0) return Err();
  Made(path);
  return 0;
}

int OpMknod(const char* path, mode_t mode, dev_t dev) {
  if (mknod(Real(path).c_str(), mode, dev) != 0) return Err();
  MadeFile(path);
  return 0;
}

int OpSymlink(const char* target, const char* path) {
  if (symlink(target, Real(path).c_str()) != 0) return Err();
  Made(path);
  return 0;
}

int OpLink(const char* from, const char* path) {
  if (link(Real(from).c_str(), Real(path).c_str()) != 0) return Err();
  Made(path);
  return 0;
}

int Remove(const char* path, bool dir) {
  Change c{Change::kRemoved, path, "", "", false, {Parent(path)}};
  Save(path, &c.saved, &c.saved_dir);
  if ((dir ? rmdir(Real(path).c_str()) : unlink(Real(path).c_str())) != 0) {
    int err = Err();
    if (!c.saved.empty()) unlink(c.saved.c_str());
    return err;
  }
  g_changes.push_back(c);
  return 0;
}

int OpUnlink(const char* path) { return Remove(path, false); }
int OpRmdir(const char* path) { return Remove(path, true); }

int OpRename(const char* from, const char* to, unsigned int flags) {
  if (flags != 0) return -EINVAL;  // RENAME_NOREPLACE and RENAME_EXCHANGE: not needed
  Change c{Change::kRenamed, to, from, "", false, {Parent(from), Parent(to)}};
  Save(to, &c.saved, &c.saved_dir);
  if (rename(Real(from).c_str(), Real(to).c_str()) != 0) {
    int err = Err();
    if (!c.saved.empty()) unlink(c.saved.c_str());
    return err;
  }
  g_changes.push_back(c);
  return 0;
}

int OpChmod(const char* path, mode_t mode, fuse_file_info*) {
  return chmod(Real(path).c_str(), mode) == 0 ? 0 : Err();
}

int OpChown(const char* path, uid_t uid, gid_t gid, fuse_file_info*) {
  return lchown(Real(path).c_str(), uid, gid) == 0 ? 0 : Err();
}

int OpTruncate(const char* path, off_t size, fuse_file_info* fi) {
  if (fi != nullptr) {
    KeepContent(static_cast<int>(fi->fh));
    return ftruncate(static_cast<int>(fi->fh), size) == 0 ? 0 : Err();
  }
  KeepContentOf(path);
  return truncate(Real(path).c_str(), size) == 0 ? 0 : Err();
}

int OpOpen(const char* path, fuse_file_info* fi) {
  if ((fi->flags & O_TRUNC) != 0) KeepContentOf(path);
  int fd = open(Real(path).c_str(), fi->flags | O_CLOEXEC);
  if (fd < 0) return Err();
  fi->fh = static_cast<uint64_t>(fd);
  return 0;
}

int OpCreate(const char* path, mode_t mode, fuse_file_info* fi) {
  struct stat st;
  const bool existed = lstat(Real(path).c_str(), &st) == 0;
  if (existed && (fi->flags & O_TRUNC) != 0) KeepContentOf(path);
  int fd = open(Real(path).c_str(), fi->flags | O_CREAT | O_CLOEXEC, mode);
  if (fd < 0) return Err();
  fi->fh = static_cast<uint64_t>(fd);
  if (!existed) MadeFile(path);
  return 0;
}

int OpRead(const char*, char* buf, size_t size, off_t off, fuse_file_info* fi) {
  ssize_t n = pread(static_cast<int>(fi->fh), buf, size, off);
  return n < 0 ? Err() : static_cast<int>(n);
}

int OpWrite(const char*, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  KeepContent(static_cast<int>(fi->fh));
  ssize_t n = pwrite(static_cast<int>(fi->fh), buf, size, off);
  return n < 0 ? Err() : static_cast<int>(n);
}

int OpFallocate(const char*, int mode, off_t off, off_t len, fuse_file_info* fi) {
  KeepContent(static_cast<int>(fi->fh));
  return fallocate(static_cast<int>(fi->fh), mode, off, len) == 0 ? 0 : Err();
}

int OpStatfs(const char* path, struct statvfs* st) {
  return statvfs(Real(path).c_str(), st) == 0 ? 0 : Err();
}

int OpRelease(const char*, fuse_file_info* fi) {
  close(static_cast<int>(fi->fh));
  return 0;
}

// The file's content is durable now: forgotten.
int OpFsync(const char*, int, fuse_file_info* fi) {
  struct stat st;
  if (fstat(static_cast<int>(fi->fh), &st) != 0) return Err();
  auto it = g_content.find(st.st_ino);
  if (it != g_content.end()) {
    if (!it->second.empty()) unlink(it->second.c_str());
    g_content.erase(it);
  }
  return 0;
}

int OpReaddir(const char* path, void* buf, fuse_fill_dir_t fill, off_t, fuse_file_info*,
              fuse_readdir_flags) {
  DIR* d = opendir(Real(path).c_str());
  if (d == nullptr) return Err();
  while (dirent* e = readdir(d))
    fill(buf, e->d_name, nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  closedir(d);
  return 0;
}

// The directory's entries are durable now.
int OpFsyncdir(const char* path, int, fuse_file_info*) {
  for (Change& c : g_changes) c.dirs.erase(path);
  return 0;
}

int OpUtimens(const char* path, const struct timespec tv[2], fuse_file_info*) {
  return utimensat(AT_FDCWD, Real(path).c_str(), tv, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : Err();
}

void* OpInit(fuse_conn_info*, fuse_config* cfg) {
  cfg->use_ino = 1;        // the backing inodes, as petrel's stat() compares them
  cfg->entry_timeout = 0;  // every lookup reaches dropfs
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  return nullptr;
}

void OnCut(int) {
  g_cut = 1;
  if (g_session != nullptr) fuse_session_exit(g_session);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: dropfs BACKING SHADOW MOUNTPOINT\n");
    return 2;
  }
  g_backing = argv[1];
  g_shadow = argv[2];
  const char* mountpoint = argv[3];
  fuse_operations ops{};
  ops.getattr = OpGetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.symlink = OpSymlink;
  ops.rename = OpRename;
  ops.link = OpLink;
  ops.chmod = OpChmod;
  ops.chown = OpChown;
  ops.truncate = OpTruncate;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.statfs = OpStatfs;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.readdir = OpReaddir;
  ops.fsyncdir = OpFsyncdir;
  ops.init = OpInit;
  ops.create = OpCreate;
  ops.utimens = OpUtimens;
  ops.fallocate = OpFallocate;
  char* args[] = {argv[0], const_cast<char*>("-o"),
                  const_cast<char*>("default_permissions,allow_other")};
  fuse_args fargs = FUSE_ARGS_INIT(3, args);
  fuse* f = fuse_new(&fargs, &ops, sizeof ops, nullptr);
  if (f == nullptr) {
    fuse_opt_free_args(&fargs);
    return 1;
  }
  if (fuse_mount(f, mountpoint) != 0) {
    fuse_destroy(f);
    fuse_opt_free_args(&fargs);
    return 1;
  }
  g_session = fuse_get_session(f);
  fuse_set_signal_handlers(g_session);
  struct sigaction sa {};
  sa.sa_handler = OnCut;  // no SA_RESTART: the read of /dev/fuse returns, the loop ends
  sigaction(SIGUSR1, &sa, nullptr);
  int rc = fuse_loop(f);
  if (g_cut) {
    auto [entries, files] = Cut();
    std::printf("dropfs: power cut: %d directory changes and %d files' content undone\n", entries,
                files);
    std::fflush(stdout);
  }
  fuse_remove_signal_handlers(g_session);
  fuse_unmount(f);
  fuse_destroy(f);
  fuse_opt_free_args(&fargs);
  return g_cut ? 0 : (rc < 0 ? 1 : 0);
}
