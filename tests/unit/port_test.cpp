#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>

#include "lib/util/fs.h"
#include "lib/util/process.h"
#include "ports/linux/linux_port.h"
#include "tests/lib/files.h"
#include "tests/lib/mounts.h"

namespace petrel::internal {
namespace {

namespace fs = std::filesystem;
using petrel::testing::Mounted;
using petrel::testing::MountGuard;
using petrel::testing::ReadFile;
using petrel::testing::TempDir;
using petrel::testing::WriteFile;

std::shared_ptr<LinuxPort> PortAt(const TempDir& dir) {
  LinuxPortOptions o;
  o.cgroup_root = dir.Sub("cgroup");
  o.netns_dir = dir.Sub("netns");
  o.notify_socket = "";
  fs::create_directories(o.cgroup_root);
  return std::make_shared<LinuxPort>(o);
}

// A listening TCP socket on 0.0.0.0:`port` in the network namespace `netns`.
Result<int> ListenIn(Port* port, int netns, int tcp_port) {
  PETREL_ASSIGN_OR_RETURN(int fd, port->SocketInNetns(netns, SOCK_STREAM));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(tcp_port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 4) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError("listen", "", err);
  }
  return fd;
}

// Connects the socket `fd` (closed after) to ip:port within 5 s, and takes the
// connection on `listening` within 5 s more.
Status ConnectAndAccept(int fd, const std::string& ip, int tcp_port, int listening) {
  UniqueFd client(fd);
  if (!client.valid()) return ErrnoError("socket", "", errno);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(tcp_port));
  if (inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) return Status::InvalidArgument(ip);
  const std::string where = ip + ":" + std::to_string(tcp_port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    return ErrnoError(where, "connect", errno);
  }
  struct pollfd out = {fd, POLLOUT, 0};
  if (poll(&out, 1, 5000) != 1) return Status::DeadlineExceeded(where + ": no connection in 5 s");
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return ErrnoError(where, "connect", err);
  struct pollfd in = {listening, POLLIN, 0};
  if (poll(&in, 1, 5000) != 1) return Status::DeadlineExceeded(where + ": nothing to accept");
  UniqueFd accepted(accept4(listening, nullptr, nullptr, SOCK_CLOEXEC));
  if (!accepted.valid()) return ErrnoError(where, "accept", errno);
  return Status::OK();
}

// A datagram socket bound at `name` (a path, or "@name" for an abstract one).
int BindDatagram(const std::string& name) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, name.data(), name.size());
  if (name[0] == '@') addr.sun_path[0] = '\0';
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr),
               static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())) == 0);
  return fd;
}

std::string Receive(int fd) {
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

TEST_SUITE("port") {
  TEST_CASE("the cgroup layout is read from what is mounted under the root") {
    TempDir dir;
    CHECK(PortAt(dir)->DetectCgroupLayout() == CgroupLayout::kV1);
    CHECK(std::string(CgroupLayoutName(CgroupLayout::kHybrid)) == "hybrid");
    REQUIRE_MESSAGE(geteuid() == 0, "mounts cgroup2: must run as root");

    const std::string unified = dir.Sub("cgroup/unified");
    fs::create_directories(unified);
    {
      REQUIRE(mount("none", unified.c_str(), "cgroup2", 0, nullptr) == 0);
      MountGuard guard{unified};
      CHECK(PortAt(dir)->DetectCgroupLayout() == CgroupLayout::kHybrid);
    }

    TempDir v2;
    const std::string root = v2.Sub("cgroup");
    fs::create_directories(root);
    REQUIRE(mount("none", root.c_str(), "cgroup2", 0, nullptr) == 0);
    MountGuard guard{root};
    std::shared_ptr<LinuxPort> port = PortAt(v2);
    CHECK(port->DetectCgroupLayout() == CgroupLayout::kV2);
    Resources limits;
    limits.memory_bytes = 1 << 20;
    Result<LimitCgroups> refused = port->CreateLimitCgroups("petrel", "c", limits);
    CHECK(refused.status().code() == Status::Code::kNotSupported);
    CHECK(refused.status().message() ==
          "cgroups for container c: " + root + " is cgroup v2, which has no v1 controllers");
  }

  TEST_CASE("limit cgroups: one v1 cgroup per limited controller and one of devices, written") {
    TempDir dir;
    std::shared_ptr<LinuxPort> port = PortAt(dir);
    Resources limits;
    limits.memory_bytes = 64 << 20;
    limits.cpu_millis = 250;
    const std::string cg = dir.Sub("cgroup");
    CHECK(port->LimitCgroupsFor("petrel", "c1", Resources{}).dirs ==
          std::vector<std::string>{cg + "/devices/petrel/c1"});
    LimitCgroups named = port->LimitCgroupsFor("petrel", "c1", limits);
    CHECK(named.dirs == std::vector<std::string>{cg + "/memory/petrel/c1", cg + "/cpu/petrel/c1",
                                                 cg + "/devices/petrel/c1"});
    CHECK(named.procs == std::vector<std::string>{cg + "/memory/petrel/c1/cgroup.procs",
                                                  cg + "/cpu/petrel/c1/cgroup.procs",
                                                  cg + "/devices/petrel/c1/cgroup.procs"});

    // A fake cgroupfs: the control files are there already, as the kernel makes them.
    for (const std::string& d : named.dirs) fs::create_directories(d);
    for (const char* f : {"/memory/petrel/c1/memory.limit_in_bytes",
                          "/cpu/petrel/c1/cpu.cfs_period_us", "/cpu/petrel/c1/cpu.cfs_quota_us",
                          "/devices/petrel/c1/devices.deny", "/devices/petrel/c1/devices.allow"}) {
      WriteFile(cg + f, "");
    }
    Result<LimitCgroups> made = port->CreateLimitCgroups("petrel", "c1", limits);
    REQUIRE_MESSAGE(made.ok(), made.status().ToString());
    CHECK(made->dirs == named.dirs);
    CHECK(ReadFile(cg + "/memory/petrel/c1/memory.limit_in_bytes") == "67108864");
    CHECK(ReadFile(cg + "/cpu/petrel/c1/cpu.cfs_period_us") == "100000");
    CHECK(ReadFile(cg + "/cpu/petrel/c1/cpu.cfs_quota_us") == "25000");
    CHECK(ReadFile(cg + "/devices/petrel/c1/devices.deny") == "a");
    CHECK_FALSE(fs::exists(cg + "/pids/petrel/c1"));

    // No control file: not a cgroup; the error names the file.
    limits.pids = 5;
    Status no_pids = port->CreateLimitCgroups("petrel", "c1", limits).status();
    CHECK(no_pids.IsNotFound());
    CHECK(no_pids.message().rfind(cg + "/pids/petrel/c1/pids.max", 0) == 0);

    for (const std::string& d : named.dirs) {
      for (const auto& e : fs::directory_iterator(d)) fs::remove(e.path());
    }
    Status removed = port->RemoveCgroups(port->LimitCgroupsFor("petrel", "c1", limits).dirs);
    CHECK_MESSAGE(removed.ok(), removed.ToString());
    CHECK_FALSE(fs::exists(cg + "/memory/petrel/c1"));
    CHECK(port->RemoveCgroups(named.dirs).ok());  // gone already
  }

  TEST_CASE("limit cgroups sit below the cgroup parent given, which must be a relative path") {
    TempDir dir;
    std::shared_ptr<LinuxPort> port = PortAt(dir);
    const std::string cg = dir.Sub("cgroup");
    CHECK(port->LimitCgroupsFor("system.slice/box", "c1", Resources{}).procs ==
          std::vector<std::string>{cg + "/devices/system.slice/box/c1/cgroup.procs"});
    fs::create_directories(cg + "/devices/system.slice/box/c1");
    for (const char* f : {"devices.deny", "devices.allow"}) {
      WriteFile(cg + "/devices/system.slice/box/c1/" + f, "");
    }
    Result<LimitCgroups> made = port->CreateLimitCgroups("system.slice/box", "c1", Resources{});
    REQUIRE_MESSAGE(made.ok(), made.status().ToString());
    CHECK(ReadFile(cg + "/devices/system.slice/box/c1/devices.deny") == "a");
    Status escapes = port->CreateLimitCgroups("../box", "c1", Resources{}).status();
    CHECK(escapes.code() == Status::Code::kInvalidArgument);
    CHECK(escapes.message() ==
          "cgroups for container c1: cgroup parent \"../box\": \"..\" is not a name");
    CHECK_FALSE(fs::exists(cg + "/box"));
  }

  TEST_CASE("a cgroup parent is a relative path of plain names") {
    for (const char* good : {"petrel", "petrel-test-xyz", "system.slice/petreld.service/containers",
                             "user@1000.service/app_1"}) {
      CHECK_MESSAGE(CheckCgroupParent(good).ok(), good);
    }
    const std::pair<const char*, const char*> bad[] = {
        {"", "cgroup parent \"\": must not be empty"},
        {"/petrel", "cgroup parent \"/petrel\": must be relative to the cgroup root (e.g. petrel)"},
        {"petrel/", "cgroup parent \"petrel/\": has an empty name between '/'s"},
        {"a//b", "cgroup parent \"a//b\": has an empty name between '/'s"},
        {"..", "cgroup parent \"..\": \"..\" is not a name"},
        {"a/../../etc", "cgroup parent \"a/../../etc\": \"..\" is not a name"},
        {"a/./b", "cgroup parent \"a/./b\": \".\" is not a name"},
        {"pet rel",
         "cgroup parent \"pet rel\": ' ' is not allowed (names are of A-Z a-z 0-9 _ . @ -)"},
        {"a\nb",
         "cgroup parent \"a\\nb\": '\\n' is not allowed (names are of A-Z a-z 0-9 _ . @ -)"},
        {"a:b", "cgroup parent \"a:b\": ':' is not allowed (names are of A-Z a-z 0-9 _ . @ -)"},
    };
    for (const auto& [parent, why] : bad) {
      Status s = CheckCgroupParent(parent);
      CHECK(s.code() == Status::Code::kInvalidArgument);
      CHECK(s.message() == why);
    }
    CHECK(CheckCgroupParent(std::string(256, 'a')).message() ==
          "cgroup parent \"" + std::string(64, 'a') + "...\": a name is over 255 bytes");
  }

  TEST_CASE("a bridge network is an interface name and an IPv4 network without host bits") {
    for (const BridgeNetwork& good :
         std::vector<BridgeNetwork>{{"petrel0", "10.47.0.0/16"},
                                    {"br-edge.1", "192.168.77.0/24"},
                                    {"p", "10.0.0.0/8"},
                                    {"fifteen-chars-x", "172.16.5.16/28"}}) {
      Status s = CheckBridgeNetwork(good);
      CHECK_MESSAGE(s.ok(), good.name << " " << good.subnet << ": " << s.ToString());
    }
    const std::pair<BridgeNetwork, const char*> bad[] = {
        {{"", "10.47.0.0/16"}, "bridge name \"\": must be 1 to 15 characters (an interface name)"},
        {{"sixteen-chars-xy", "10.47.0.0/16"},
         "bridge name \"sixteen-chars-xy\": must be 1 to 15 characters (an interface name)"},
        {{"-br", "10.47.0.0/16"}, "bridge name \"-br\": must not start with '.' or '-'"},
        {{"br/0", "10.47.0.0/16"},
         "bridge name \"br/0\": '/' is not allowed (names are of A-Z a-z 0-9 _ . -)"},
        {{"petrel0", "10.47.0.0"},
         "bridge subnet \"10.47.0.0\": want an IPv4 network as ADDRESS/PREFIX (10.47.0.0/16)"},
        {{"petrel0", "fd00::/64"},
         "bridge subnet \"fd00::/64\": want an IPv4 network as ADDRESS/PREFIX (10.47.0.0/16)"},
        {{"petrel0", "10.47.0.0/30"}, "bridge subnet \"10.47.0.0/30\": the prefix must be 8 to 28"},
        {{"petrel0", "10.0.0.0/7"}, "bridge subnet \"10.0.0.0/7\": the prefix must be 8 to 28"},
        {{"petrel0", "10.47.0.0/+16"},
         "bridge subnet \"10.47.0.0/+16\": the prefix must be 8 to 28"},
        {{"petrel0", "10.47.0.1/16"},
         "bridge subnet \"10.47.0.1/16\": host bits are set (the network is 10.47.0.0/16)"},
    };
    for (const auto& [bridge, why] : bad) {
      Status s = CheckBridgeNetwork(bridge);
      CHECK(s.code() == Status::Code::kInvalidArgument);
      CHECK(s.message() == why);
      CHECK(MakePort(bridge).status().message() == why);
    }
  }

  // A fake v2 tree: systemd's unit cgroup with its delegate mark, and the process's own
  // /proc/self/cgroup.
  TEST_CASE("on cgroup v2 a daemon moves into a leaf of its own cgroup when it was delegated") {
    REQUIRE_MESSAGE(geteuid() == 0, "sets trusted.* extended attributes: must run as root");
    TempDir dir;
    const std::string unit = dir.Sub("cgroup/system.slice/petreld.service");
    fs::create_directories(unit);
    WriteFile(dir.Sub("self-cgroup"), "0::/system.slice/petreld.service\n");
    LinuxPortOptions o;
    o.cgroup_root = dir.Sub("cgroup");
    o.cgroup_layout = CgroupLayout::kV2;
    o.proc_self_cgroup = dir.Sub("self-cgroup");
    o.notify_socket = "";
    LinuxPort port(o);
    auto move = [&](const std::string& parent) {
      Result<LeafCgroupMove> m = port.EnterLeafCgroup(parent, "petreld");
      REQUIRE_MESSAGE(m.ok(), m.status().ToString());
      return *m;
    };

    // The parent is outside its cgroup: nothing to do.
    LeafCgroupMove outside = move("petrel");
    CHECK(outside.leaf.empty());
    CHECK(outside.skipped ==
          "cgroup parent /petrel is not in its own cgroup /system.slice/petreld.service");
    // Inside, but the unit was not delegated: systemd owns the cgroup, leave it alone.
    LeafCgroupMove undelegated = move("system.slice/petreld.service/containers");
    CHECK(undelegated.leaf.empty());
    CHECK(undelegated.skipped ==
          "its cgroup /system.slice/petreld.service was not delegated to it (no "
          "trusted.delegate: Delegate=yes)");
    CHECK_FALSE(fs::exists(unit + "/petreld"));

    REQUIRE(setxattr(unit.c_str(), "trusted.delegate", "1", 1, 0) == 0);
    fs::create_directories(unit + "/petreld");  // with its cgroup.procs, as the kernel makes it
    WriteFile(unit + "/petreld/cgroup.procs", "");
    LeafCgroupMove moved = move("system.slice/petreld.service/containers");
    CHECK(moved.skipped == "");
    CHECK(moved.leaf == "/system.slice/petreld.service/petreld");
    CHECK(ReadFile(unit + "/petreld/cgroup.procs") == std::to_string(getpid()));
    // The unit's own cgroup as the parent needs the move too.
    CHECK(move("system.slice/petreld.service").leaf == "/system.slice/petreld.service/petreld");
    // The leaf is the daemon's alone: containers there would break the same rule.
    Result<LeafCgroupMove> in_leaf =
        port.EnterLeafCgroup("system.slice/petreld.service/petreld/c", "petreld");
    CHECK(in_leaf.status().message() ==
          "cgroup parent /system.slice/petreld.service/petreld/c is in "
          "/system.slice/petreld.service/petreld, the leaf meant for the daemon alone");
    // A look-alike sibling is not inside.
    CHECK(move("system.slice/petreld.service2").leaf.empty());

    // Not on v1 or hybrid, which have no such rule for v1 controllers.
    o.cgroup_layout = CgroupLayout::kHybrid;
    LinuxPort hybrid(o);
    Result<LeafCgroupMove> none =
        hybrid.EnterLeafCgroup("system.slice/petreld.service/c", "petreld");
    REQUIRE(none.ok());
    CHECK(none->leaf.empty());
    CHECK(none->skipped == "cgroup hybrid has no no-internal-process rule");
  }

  TEST_CASE(
      "limit cgroups on this host: v1 controllers hold the limits and go away, and a pure v2 "
      "host refuses them") {
    REQUIRE_MESSAGE(geteuid() == 0, "makes cgroups: must run as root");
    std::shared_ptr<Port> port = DefaultPort();
    Resources limits;
    limits.memory_bytes = 32 << 20;
    limits.pids = 16;
    const std::string id = "petrel-unit-" + std::to_string(getpid());
    Result<LimitCgroups> made = port->CreateLimitCgroups("petrel", id, limits);
    if (port->DetectCgroupLayout() == CgroupLayout::kV2) {  // Debian 12's default
      CHECK(made.status().code() == Status::Code::kNotSupported);
      CHECK_MESSAGE(made.status().message().find("is cgroup v2, which has no v1 controllers") !=
                        std::string::npos,
                    made.status().ToString());
      return;
    }
    REQUIRE_MESSAGE(made.ok(), made.status().ToString());
    REQUIRE(made->dirs.size() == 3);
    CHECK(ReadFile(made->dirs[0] + "/memory.limit_in_bytes") == "33554432\n");
    CHECK(ReadFile(made->dirs[1] + "/pids.max") == "16\n");
    // The kernel's own words for the device list: every device denied but these.
    CHECK(ReadFile(made->dirs[2] + "/devices.list") ==
          "c *:* m\nb *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 1:7 rwm\nc 1:8 rwm\nc 1:9 rwm\n"
          "c 5:0 rwm\nc 5:1 rwm\nc 5:2 rwm\nc 136:* rwm\n");
    CHECK(port->RemoveCgroups(made->dirs).ok());
    for (const std::string& d : made->dirs) CHECK_FALSE(fs::exists(d));
  }

  TEST_CASE("overlay mount data escapes what overlayfs would split at") {
    TempDir dir;
    CHECK(PortAt(dir)->OverlayMountData("/l,1", "/u:2", "/w\\3") ==
          "lowerdir=/l\\,1,upperdir=/u\\:2,workdir=/w\\\\3");
  }

  TEST_CASE("a child applies its plan after fork: subreaper, cgroups, its own mounts") {
    REQUIRE_MESSAGE(geteuid() == 0, "unshares a mount namespace: must run as root");
    TempDir dir;
    std::shared_ptr<LinuxPort> port = PortAt(dir);
    const std::string procs = dir.Sub("cgroup.procs"), merged = dir.Sub("merged");
    WriteFile(procs, "");
    for (const char* d : {"lower", "upper", "work", "merged"}) fs::create_directories(dir.Sub(d));
    WriteFile(dir.Sub("lower/file"), "from the image");
    ChildPlan plan;
    plan.subreaper = true;
    plan.join_cgroups = {procs};
    plan.private_mounts = true;
    plan.overlay_target = merged;
    plan.overlay_data = port->OverlayMountData(dir.Sub("lower"), dir.Sub("upper"), dir.Sub("work"));
    Result<std::unique_ptr<ChildSetup>> setup = port->PrepareChild(plan);
    REQUIRE_MESSAGE(setup.ok(), setup.status().ToString());

    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      const char* failed = "";
      if ((*setup)->Apply(&failed) != 0) _exit(1);
      int subreaper = 0;
      if (prctl(PR_GET_CHILD_SUBREAPER, &subreaper) != 0 || subreaper != 1) _exit(2);
      int fd = open((merged + "/file").c_str(), O_RDONLY);  // the overlay, seen in here
      _exit(fd >= 0 ? 0 : 3);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(ReadFile(procs) == std::to_string(child));
    CHECK_FALSE(Mounted(merged));  // never in this mount namespace
    CHECK_FALSE(fs::exists(merged + "/file"));
  }

  TEST_CASE("a child's failed step is named, and plans that would touch the host are refused") {
    REQUIRE_MESSAGE(geteuid() == 0, "unshares a mount namespace: must run as root");
    TempDir dir;
    std::shared_ptr<LinuxPort> port = PortAt(dir);
    ChildPlan plan;
    plan.pure_cgroup2 = true;
    Status refused = port->PrepareChild(plan).status();
    CHECK(refused.IsInvalidArgument());
    CHECK(refused.message().find("needs private_mounts") != std::string::npos);

    // The fake cgroup root is no mount point: unmounting it fails, and says so.
    plan.private_mounts = true;
    Result<std::unique_ptr<ChildSetup>> setup = port->PrepareChild(plan);
    REQUIRE(setup.ok());
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      const char* failed = "";
      int err = (*setup)->Apply(&failed);
      (void)!write(fds[1], failed, strlen(failed));
      _exit(err == EINVAL ? 0 : 1);
    }
    close(fds[1]);
    char buf[512] = {};
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0) == "umount " + dir.Sub("cgroup"));
  }

  TEST_CASE("network namespaces: made, entered on a thread of their own, deleted without a trace") {
    REQUIRE_MESSAGE(geteuid() == 0, "makes network namespaces: must run as root");
    TempDir dir;
    std::shared_ptr<LinuxPort> port = PortAt(dir);
    const std::string path = port->NetnsPath("t1");
    CHECK(path == dir.Sub("netns/t1"));
    REQUIRE(port->CreateNetns("t1").ok());
    MountGuard guard{path};
    CHECK(port->CreateNetns("t1").code() == Status::Code::kAlreadyExists);
    CHECK(Mounted(path));
    struct statfs sfs;
    REQUIRE(statfs(path.c_str(), &sfs) == 0);
    CHECK(static_cast<long>(sfs.f_type) == static_cast<long>(NSFS_MAGIC));
    struct stat ns, own_before, own_after;
    REQUIRE(stat(path.c_str(), &ns) == 0);
    REQUIRE(stat("/proc/thread-self/ns/net", &own_before) == 0);

    ino_t inside = 0;
    std::vector<std::string> links;
    Status ran = port->RunInNetns("t1", [&]() -> Status {
      struct stat st;
      if (stat("/proc/thread-self/ns/net", &st) != 0) return Status::IOError("stat");
      inside = st.st_ino;
      struct if_nameindex* names = if_nameindex();
      for (struct if_nameindex* i = names; i != nullptr && i->if_index != 0; i++) {
        links.push_back(i->if_name);
      }
      if_freenameindex(names);
      return Status::OK();
    });
    REQUIRE_MESSAGE(ran.ok(), ran.ToString());
    CHECK(inside == ns.st_ino);
    CHECK(links == std::vector<std::string>{"lo"});
    REQUIRE(stat("/proc/thread-self/ns/net", &own_after) == 0);
    CHECK(own_after.st_ino == own_before.st_ino);
    CHECK(own_after.st_ino != ns.st_ino);
    CHECK(port->RunInNetns("t1", [] { return Status::Unavailable("mine"); }).message() == "mine");

    REQUIRE(port->DeleteNetns("t1").ok());
    CHECK_FALSE(Mounted(path));
    CHECK_FALSE(fs::exists(path));
    CHECK(port->DeleteNetns("t1").ok());
    CHECK(port->RunInNetns("t1", [] { return Status::OK(); }).IsNotFound());
    for (const char* bad : {"", ".hidden", "a/b", "x y"}) {
      CHECK(port->CreateNetns(bad).IsInvalidArgument());
    }
  }

  TEST_CASE("a socket made in a process's network namespace, kept open after it is gone") {
    REQUIRE_MESSAGE(geteuid() == 0, "makes network namespaces: must run as root");
    // A child in a network namespace of its own, listening on its loopback.
    int ready[2];
    REQUIRE(pipe2(ready, O_CLOEXEC) == 0);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(4242);
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      int ifs = -1, lfd = -1;
      struct ifreq up {};
      std::strcpy(up.ifr_name, "lo");
      up.ifr_flags = IFF_UP;
      bool ok =
          unshare(CLONE_NEWNET) == 0 && (ifs = socket(AF_INET, SOCK_DGRAM, 0)) >= 0 &&
          ioctl(ifs, SIOCSIFFLAGS, &up) == 0 && (lfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0 &&
          bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && listen(lfd, 4) == 0;
      char c = ok ? 'y' : 'n';
      if (write(ready[1], &c, 1) != 1) _exit(1);
      pause();
      _exit(0);
    }
    close(ready[1]);
    char c = 0;
    REQUIRE(read(ready[0], &c, 1) == 1);
    close(ready[0]);
    struct ChildGuard {
      pid_t pid;
      ~ChildGuard() {
        if (pid > 0) {
          kill(pid, SIGKILL);
          waitpid(pid, nullptr, 0);
        }
      }
    } guard{child};
    REQUIRE(c == 'y');

    TempDir dir;
    std::shared_ptr<LinuxPort> port = PortAt(dir);
    // connect_to(fd): 0, or the errno of a blocking connect to 127.0.0.1:4242.
    auto connect_to = [](int fd) {
      int flags = fcntl(fd, F_GETFL);
      fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(4242);
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? 0 : errno;
      close(fd);
      return rc;
    };
    struct stat own_before, own_after;
    REQUIRE(stat("/proc/thread-self/ns/net", &own_before) == 0);
    Result<int> ns = port->OpenNetnsOf(child);
    REQUIRE_MESSAGE(ns.ok(), ns.status().ToString());
    UniqueFd kept(*ns);
    for (int i = 0; i < 3; i++) {  // again and again from one namespace descriptor
      Result<int> fd = port->SocketInNetns(kept.get(), SOCK_STREAM);
      REQUIRE_MESSAGE(fd.ok(), fd.status().ToString());
      CHECK((fcntl(*fd, F_GETFL) & O_NONBLOCK) != 0);
      CHECK((fcntl(*fd, F_GETFD) & FD_CLOEXEC) != 0);
      CHECK(connect_to(*fd) == 0);
    }
    REQUIRE(stat("/proc/thread-self/ns/net", &own_after) == 0);
    CHECK(own_after.st_ino == own_before.st_ino);  // the thread went back

    // Gone: no namespace to open any more; the one kept still makes sockets, which
    // nothing answers.
    kill(child, SIGKILL);
    REQUIRE(waitpid(child, nullptr, 0) == child);
    guard.pid = 0;
    CHECK(port->OpenNetnsOf(child).status().IsNotFound());
    CHECK(port->OpenNetnsOf(0).status().IsNotFound());
    Result<int> fd = port->SocketInNetns(kept.get(), SOCK_STREAM);
    REQUIRE(fd.ok());
    CHECK(connect_to(*fd) == ECONNREFUSED);
  }

  TEST_CASE("the bridge network: addresses, containers reach each other, ports published") {
    REQUIRE_MESSAGE(geteuid() == 0, "makes network namespaces, bridges, iptables rules: root");
    TempDir dir;
    LinuxPortOptions o;
    o.netns_dir = dir.Sub("netns");
    o.cni_state_dir = dir.Sub("cni");
    o.bridge_name = "ptest0";
    o.bridge_subnet = "10.248.7.0/24";
    o.notify_socket = "";
    auto port = std::make_shared<LinuxPort>(o);
    // The test's own host: a network namespace whose bridge, veths and iptables rules
    // (FORWARD's policy DROP, as Docker leaves it) are the test's alone. The plugins
    // run in it: a process starts in the namespace of the thread that starts it.
    REQUIRE(port->CreateNetns("host").ok());
    MountGuard host_guard{port->NetnsPath("host")};
    struct Seen {
      Result<std::string> a = Status::Internal("not run"), b = Status::Internal("not run");
      Status again, bridged, published, detached;
      std::string veths, rules, leases;
      int host_rules = 0;
    } seen;
    Status ran = port->RunInNetns("host", [&]() -> Status {
      ProcessOptions po;
      ProcessResult r;
      for (const std::vector<std::string>& argv :
           {std::vector<std::string>{"ip", "link", "set", "lo", "up"},
            std::vector<std::string>{"iptables", "-P", "FORWARD", "DROP"}}) {
        po.search_path = true;
        PETREL_RETURN_IF_ERROR(RunProcess(argv, po, &r));
        if (r.status != 0) return Status::Internal(argv[0] + " failed: " + r.err);
      }
      PETREL_RETURN_IF_ERROR(port->CreateNetns("a"));
      PETREL_RETURN_IF_ERROR(port->CreateNetns("b"));
      PortSpec web;
      web.container_port = 8080;
      web.host_port = 18081;
      // At once: the bridge's shared rules are added once all the same. The thread
      // starts in this one's namespace, so its plugins run in the test's host too.
      std::thread other([&] { seen.b = port->AttachNetwork("pb", port->NetnsPath("b"), {}); });
      seen.a = port->AttachNetwork("pa", port->NetnsPath("a"), {web});
      other.join();
      if (seen.a.ok() && seen.b.ok()) {
        UniqueFd ns_a(open(port->NetnsPath("a").c_str(), O_RDONLY | O_CLOEXEC));
        UniqueFd ns_b(open(port->NetnsPath("b").c_str(), O_RDONLY | O_CLOEXEC));
        Result<int> server = ListenIn(port.get(), ns_a.get(), 8080);
        PETREL_RETURN_IF_ERROR(server.status());
        UniqueFd listening(*server);
        // From b to a's address over the bridge, through FORWARD (the bridge's host
        // rules let it through the DROP policy); from the host to 127.0.0.1:18081.
        Result<int> from_b = port->SocketInNetns(ns_b.get(), SOCK_STREAM);
        PETREL_RETURN_IF_ERROR(from_b.status());
        seen.bridged = ConnectAndAccept(*from_b, *seen.a, 8080, listening.get());
        seen.published = ConnectAndAccept(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
                                          "127.0.0.1", 18081, listening.get());
      }
      // Attached again under its id, as after a state dir wiped without its containers:
      // the leftover is undone (its lease returned) and the new one works.
      seen.again = port->AttachNetwork("pa", port->NetnsPath("a"), {}).status();
      seen.detached = port->DetachNetwork("pa");
      if (seen.detached.ok()) seen.detached = port->DetachNetwork("pb");
      if (seen.detached.ok()) seen.detached = port->DetachNetwork("pb");  // again: nothing
      PETREL_RETURN_IF_ERROR(port->DeleteNetns("a"));
      PETREL_RETURN_IF_ERROR(port->DeleteNetns("b"));
      // What is left: veths, the containers' iptables rules, address leases.
      po.search_path = true;
      PETREL_RETURN_IF_ERROR(RunProcess({"ip", "-o", "link", "show", "type", "veth"}, po, &r));
      seen.veths = r.out;
      PETREL_RETURN_IF_ERROR(RunProcess({"iptables-save"}, po, &r));
      for (size_t start = 0; start < r.out.size();) {
        size_t end = r.out.find('\n', start);
        if (end == std::string::npos) end = r.out.size();
        const std::string line = r.out.substr(start, end - start);
        if (line.find("id: \"pa\"") != std::string::npos ||
            line.find("id: \"pb\"") != std::string::npos) {
          seen.rules += line + "\n";
        }
        // The bridge's shared rules: once each after three attachments, and staying.
        if (line.find("petrel bridge ptest0") != std::string::npos) seen.host_rules++;
        start = end + 1;
      }
      std::error_code ec;
      for (const auto& e : fs::recursive_directory_iterator(o.cni_state_dir, ec)) {
        const std::string name = e.path().filename().string();
        const bool lease = name.rfind("10.", 0) == 0;
        const bool record = name.size() > 5 && name.substr(name.size() - 5) == ".json";
        if (lease || record) {
          seen.leases += name + " ";
        }
      }
      return Status::OK();
    });
    REQUIRE_MESSAGE(ran.ok(), ran.ToString());
    REQUIRE_MESSAGE(seen.a.ok(), seen.a.status().ToString());
    REQUIRE_MESSAGE(seen.b.ok(), seen.b.status().ToString());
    CHECK(seen.a->rfind("10.248.7.", 0) == 0);
    CHECK(seen.b->rfind("10.248.7.", 0) == 0);
    CHECK(*seen.a != *seen.b);
    CHECK_MESSAGE(seen.again.ok(), seen.again.ToString());
    CHECK_MESSAGE(seen.bridged.ok(), seen.bridged.ToString());
    CHECK_MESSAGE(seen.published.ok(), seen.published.ToString());
    CHECK_MESSAGE(seen.detached.ok(), seen.detached.ToString());
    CHECK(seen.veths == "");
    CHECK(seen.rules == "");
    CHECK(seen.host_rules == 3);
    CHECK(seen.leases == "");
    REQUIRE(port->DeleteNetns("host").ok());
  }

  TEST_CASE("the bridge network names a missing plugin and attaches nothing") {
    TempDir dir;
    LinuxPortOptions o;
    o.netns_dir = dir.Sub("netns");
    o.cni_state_dir = dir.Sub("cni");
    o.cni_plugin_dirs = {dir.Sub("plugins")};
    o.notify_socket = "";
    fs::create_directories(dir.Sub("plugins"));
    WriteFile(dir.Sub("plugins/loopback"), "#!/bin/sh\nexit 0\n");
    fs::permissions(dir.Sub("plugins/loopback"), fs::perms::owner_all);
    LinuxPort port(o);
    Result<std::string> r = port.AttachNetwork("c1", dir.Sub("netns/none"), {});
    CHECK(r.status().code() == Status::Code::kFailedPrecondition);
    CHECK(r.status().message() == "bridge network: CNI plugin \"bridge\" not found in " +
                                      dir.Sub("plugins") +
                                      " (Debian package containernetworking-plugins)");
    CHECK_FALSE(fs::exists(dir.Sub("cni/c1.json")));
    CHECK(port.DetachNetwork("c1").ok());  // nothing attached: nothing to do
    CHECK(port.AttachNetwork("../x", dir.Sub("netns/none"), {}).status().IsInvalidArgument());
  }

  TEST_CASE("the service manager hears READY=1 on a path and on an abstract socket") {
    TempDir dir;
    const std::string path = dir.Sub("notify");
    const std::string abstract = "@petrel-unit-notify-" + std::to_string(getpid());
    for (const std::string& name : {path, abstract}) {
      int fd = BindDatagram(name);
      LinuxPortOptions o;
      o.notify_socket = name;
      LinuxPort port(o);
      Status s = port.NotifyServiceManager("READY=1\nSTATUS=up");
      CHECK_MESSAGE(s.ok(), s.ToString());
      CHECK(Receive(fd) == "READY=1\nSTATUS=up");
      close(fd);
    }
    LinuxPortOptions none;
    none.notify_socket = "";
    CHECK(LinuxPort(none).NotifyServiceManager("READY=1").ok());
    LinuxPortOptions vsock;
    vsock.notify_socket = "vsock:2:1234";
    CHECK(LinuxPort(vsock).NotifyServiceManager("READY=1").code() == Status::Code::kNotSupported);
    LinuxPortOptions gone;
    gone.notify_socket = dir.Sub("nobody");
    Status missing = LinuxPort(gone).NotifyServiceManager("READY=1");
    CHECK(missing.message() ==
          "service manager socket " + dir.Sub("nobody") + ": send: No such file or directory");
  }

  TEST_CASE("a pidfd becomes readable when its process ends") {
    std::shared_ptr<Port> port = DefaultPort();
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      char c;
      close(fds[1]);
      (void)!read(fds[0], &c, 1);
      _exit(0);
    }
    close(fds[0]);
    Result<int> pidfd = port->OpenPidfd(child);
    REQUIRE_MESSAGE(pidfd.ok(), pidfd.status().ToString());
    struct pollfd p = {*pidfd, POLLIN, 0};
    CHECK(poll(&p, 1, 0) == 0);
    close(fds[1]);  // the child ends
    CHECK(poll(&p, 1, 10 * 1000) == 1);
    close(*pidfd);
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(port->OpenPidfd(child).status().IsNotFound());

    REQUIRE(port->BecomeSubreaper().ok());
    int subreaper = 0;
    REQUIRE(prctl(PR_GET_CHILD_SUBREAPER, &subreaper) == 0);
    CHECK(subreaper == 1);
    prctl(PR_SET_CHILD_SUBREAPER, 0);
  }
}

}  // namespace
}  // namespace petrel::internal
