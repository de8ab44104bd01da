#include "lib/util/fs.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "tests/lib/files.h"

namespace petrel::internal {
namespace {

namespace fs = std::filesystem;
using petrel::testing::ReadFile;
using petrel::testing::TempDir;
using petrel::testing::WriteFile;

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

TEST_SUITE("fs") {
  TEST_CASE("RemoveTree removes files, links and read-only directories, following nothing") {
    TempDir dir, outside;
    WriteFile(outside.Sub("secret"), "keep");
    const std::string tree = dir.Sub("tree");
    fs::create_directories(tree + "/a/b/c");
    fs::create_directories(tree + "/locked/inner");
    WriteFile(tree + "/a/b/c/file", "x");
    WriteFile(tree + "/locked/inner/file", "x");
    REQUIRE(symlink(outside.path().c_str(), (tree + "/to-outside").c_str()) == 0);
    REQUIRE(symlink(outside.Sub("secret").c_str(), (tree + "/a/to-secret").c_str()) == 0);
    REQUIRE(symlink("/", (tree + "/a/b/to-root").c_str()) == 0);
    REQUIRE(mkfifo((tree + "/fifo").c_str(), 0600) == 0);
    REQUIRE(chmod((tree + "/locked/inner").c_str(), 0) == 0);
    REQUIRE(chmod((tree + "/locked").c_str(), 0500) == 0);
    REQUIRE(chmod(tree.c_str(), 0500) == 0);

    Status s = RemoveTree(tree);
    CHECK_MESSAGE(s.ok(), s.ToString());
    CHECK(!Exists(tree));
    CHECK(ReadFile(outside.Sub("secret")) == "keep");
    CHECK(Exists("/etc/passwd"));
    CHECK(RemoveTree(tree).ok());  // already gone
    CHECK(RemoveTree(dir.Sub("missing/deeper")).ok());
  }

  TEST_CASE("ReadSmallFileInRoot resolves every link inside the root, as a chroot would") {
    TempDir image, host;
    // The host's files, which a hostile image points at with absolute links.
    fs::create_directories(host.Sub("etc"));
    WriteFile(host.Sub("etc/passwd"), "evil:x:0:0::/:/bin/sh\n");
    const std::string root = image.Sub("rootfs");
    fs::create_directories(root);
    REQUIRE(symlink(host.Sub("etc").c_str(), (root + "/etc").c_str()) == 0);
    Result<std::string> r = ReadSmallFileInRoot(root, "/etc/passwd", 4096);
    CHECK(r.status().code() == Status::Code::kNotFound);  // rootfs/<host>/etc: not there
    CHECK(r.status().message() == root + "/etc/passwd: no such file");
    // Links with ".." stop at the root too; the image's own file is what is read.
    fs::remove(root + "/etc");
    fs::create_directories(root + "/real");
    WriteFile(root + "/real/passwd", "root:x:0:0::/root:/bin/sh\n");
    REQUIRE(symlink("../../../../../../real", (root + "/etc").c_str()) == 0);
    r = ReadSmallFileInRoot(root, "/etc/passwd", 4096);
    REQUIRE(r.ok());
    CHECK(*r == "root:x:0:0::/root:/bin/sh\n");
    // A FIFO is refused, never opened blocking.
    REQUIRE(mkfifo((root + "/real/group").c_str(), 0600) == 0);
    r = ReadSmallFileInRoot(root, "/etc/group", 4096);
    CHECK(r.status().message() == root + "/etc/group: not a regular file");
  }

  TEST_CASE("RemoveTree on a symlink removes the link, not its target") {
    TempDir dir, outside;
    WriteFile(outside.Sub("secret"), "keep");
    REQUIRE(symlink(outside.path().c_str(), dir.Sub("link").c_str()) == 0);
    CHECK(RemoveTree(dir.Sub("link")).ok());
    CHECK(!Exists(dir.Sub("link")));
    CHECK(ReadFile(outside.Sub("secret")) == "keep");
    // A trailing slash still means the link itself.
    REQUIRE(symlink(outside.path().c_str(), dir.Sub("link").c_str()) == 0);
    CHECK(RemoveTree(dir.Sub("link") + "/").ok());
    CHECK(ReadFile(outside.Sub("secret")) == "keep");
    CHECK(!RemoveTree("").ok());
    CHECK(!RemoveTree(dir.path() + "/..").ok());
  }

  TEST_CASE("RemoveTree handles trees deeper than the descriptor limit") {
    TempDir dir;
    struct rlimit old_limit;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &old_limit) == 0);
    const std::string tree = dir.Sub("deep");
    REQUIRE(mkdir(tree.c_str(), 0755) == 0);
    int fd = open(tree.c_str(), O_RDONLY | O_DIRECTORY);
    REQUIRE(fd >= 0);
    for (int i = 0; i < 3000; i++) {  // far deeper than PATH_MAX allows to name
      REQUIRE(mkdirat(fd, "d", 0755) == 0);
      int next = openat(fd, "d", O_RDONLY | O_DIRECTORY);
      REQUIRE(next >= 0);
      close(fd);
      fd = next;
    }
    close(fd);
    struct rlimit low = old_limit;
    low.rlim_cur = 64;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    Status s = RemoveTree(tree);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &old_limit) == 0);
    CHECK_MESSAGE(s.ok(), s.ToString());
    CHECK(!Exists(tree));
  }

  TEST_CASE("RemoveTree does not enter another file system mounted inside the tree") {
    REQUIRE_MESSAGE(geteuid() == 0, "mounts a tmpfs: must run as root");
    TempDir dir;
    const std::string tree = dir.Sub("tree");
    fs::create_directories(tree + "/volume");
    WriteFile(tree + "/file", "x");
    REQUIRE(mount("tmpfs", (tree + "/volume").c_str(), "tmpfs", 0, "size=64k") == 0);
    WriteFile(tree + "/volume/data", "precious");
    Status s = RemoveTree(tree);
    CHECK(!s.ok());
    CHECK(s.message() == tree + "/volume: is on another file system (a mount point); not removed");
    CHECK(ReadFile(tree + "/volume/data") == "precious");
    REQUIRE(umount2((tree + "/volume").c_str(), MNT_DETACH) == 0);
    CHECK(RemoveTree(tree).ok());
    CHECK(!Exists(tree));
  }

  TEST_CASE("ErrnoError: NotFound for ENOENT, IOError otherwise, path and what first") {
    Status missing = ErrnoError("/x", "open", ENOENT);
    CHECK(missing.IsNotFound());
    CHECK(missing.message() == "/x: open: No such file or directory");
    Status denied = ErrnoError("state dir /x", "", EACCES);
    CHECK(denied.code() == Status::Code::kIOError);
    CHECK(denied.message() == "state dir /x: Permission denied");
  }

  TEST_CASE("MakeDirs makes the missing parents with exactly the mode, and leaves others be") {
    TempDir dir;
    const mode_t old_umask = umask(077);
    Status s = MakeDirs(dir.Sub("a/b/c/"), 0755);
    umask(old_umask);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    for (const char* d : {"a", "a/b", "a/b/c"}) {
      struct stat st;
      REQUIRE(stat(dir.Sub(d).c_str(), &st) == 0);
      CHECK((st.st_mode & 07777) == 0755);
    }
    REQUIRE(chmod(dir.Sub("a").c_str(), 0700) == 0);
    CHECK(MakeDirs(dir.Sub("a/b"), 0755).ok());
    struct stat st;
    REQUIRE(stat(dir.Sub("a").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0700);  // already there: left as it was

    WriteFile(dir.Sub("file"), "x");
    s = MakeDirs(dir.Sub("file/sub"), 0755);
    CHECK(s.code() == Status::Code::kFailedPrecondition);
    CHECK(s.message() == dir.Sub("file") + ": not a directory");
    REQUIRE(symlink(dir.Sub("nowhere").c_str(), dir.Sub("dangling").c_str()) == 0);
    s = MakeDirs(dir.Sub("dangling"), 0755);
    CHECK(s.code() == Status::Code::kFailedPrecondition);
    CHECK(s.message() == dir.Sub("dangling") + ": not a directory");

    // MakeDurableDirs makes the same (and syncs each into its parent: sync_test.sh).
    REQUIRE(MakeDurableDirs(dir.Sub("d/e"), 0711).ok());
    REQUIRE(stat(dir.Sub("d/e").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0711);
    CHECK(MakeDurableDirs(dir.Sub("file/sub"), 0755).code() == Status::Code::kFailedPrecondition);
  }

  TEST_CASE("ListDir names every entry once and tells directories, not links to them") {
    TempDir dir;
    fs::create_directories(dir.Sub("d/sub"));
    WriteFile(dir.Sub("d/file"), "x");
    REQUIRE(symlink(dir.Sub("d/sub").c_str(), dir.Sub("d/link").c_str()) == 0);
    Result<std::vector<DirEntry>> entries = ListDir(dir.Sub("d"));
    REQUIRE_MESSAGE(entries.ok(), entries.status().ToString());
    std::map<std::string, bool> got;
    for (const DirEntry& e : *entries) CHECK(got.emplace(e.name, e.is_dir).second);
    CHECK(got == std::map<std::string, bool>{{"file", false}, {"link", false}, {"sub", true}});

    Result<std::vector<DirEntry>> missing = ListDir(dir.Sub("missing"));
    CHECK(missing.status().IsNotFound());
    CHECK(missing.status().message() == dir.Sub("missing") + ": open: No such file or directory");
  }

  TEST_CASE("WriteAll writes everything, at an offset too, and WriteFileAtomic whole files") {
    TempDir dir;
    const std::string path = dir.Sub("f");
    UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    REQUIRE(fd.valid());
    const std::string big(1 << 20, 'x');
    REQUIRE(WriteAll(fd.get(), big, path).ok());
    REQUIRE(WriteAll(fd.get(), "ab", path, 4).ok());
    fd.reset();
    std::string data = ReadFile(path);
    CHECK(data.size() == big.size());
    CHECK(data.substr(0, 8) == "xxxxabxx");
    Status bad = WriteAll(-1, "a", "nowhere");
    CHECK(bad.message() == "nowhere: write: Bad file descriptor");

    REQUIRE(WriteFileAtomic(path, "new").ok());
    CHECK(ReadFile(path) == "new");
    CHECK(!Exists(path + ".tmp"));
  }
}

}  // namespace
}  // namespace petrel::internal
