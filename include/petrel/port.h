// Port: what differs per platform, behind one interface, as LevelDB's Env and raft's
// raft_io do it: the cgroup layout and the cgroups petrel makes itself, mounts, network
// namespaces, the supervision of child processes and the service manager's notify.
// lib/ and the runtime adapters reach the OS for these only through a Port given in
// their options (Options::port, CrunOptions::port, RuntimeConfig::port), so a firmware
// build or a test can give its own. ports/linux/ holds the one implementation today,
// shared by all through DefaultPort().
//
// Errors are Status values that name what failed and where:
//   "/sys/fs/cgroup/memory/petrel/web_0: mkdir: Permission denied"
//
// Thread-safety: every method may be called from any thread at any time.
// Async-signal-safety: only ChildSetup::Apply, the one call meant for a child between
// fork() and exec(); every other method may allocate and take locks.
#ifndef PETREL_PORT_H_
#define PETREL_PORT_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrel {

// How the host lays its cgroups out.
enum class CgroupLayout {
  kV1,      // v1 controllers only
  kV2,      // one unified cgroup2 hierarchy (Raspberry Pi OS bookworm, recent distros)
  kHybrid,  // v1 controllers plus a cgroup2 mount that holds none (e.g. CI machines)
};
const char* CgroupLayoutName(CgroupLayout layout);

// Checks a cgroup parent: the cgroup, relative to the root of each hierarchy as
// Docker's --cgroup-parent is, below which containers get theirs ("petrel",
// "system.slice/petreld.service/containers"). One or more '/'-separated names of
// [A-Za-z0-9_.@-], none "." or "..", no name longer than 255: InvalidArgument
// otherwise, in one line: `cgroup parent "/petrel": must be relative to the cgroup
// root (e.g. petrel)`.
Status CheckCgroupParent(std::string_view parent);

// What Port::EnterLeafCgroup did: moved the calling process into the cgroup `leaf`
// (a path below the cgroup root), or left it where it was for the reason in `skipped`.
struct LeafCgroupMove {
  std::string leaf;
  std::string skipped;
};

// The cgroups that hold one container's limits where its runtime cannot set them
// (crun on a hybrid host): made with Port::CreateLimitCgroups, joined by a process
// that writes its pid to each of `procs` (ChildPlan::join_cgroups), and removed with
// Port::RemoveCgroups(dirs) once the container is gone.
struct LimitCgroups {
  std::vector<std::string> dirs;   // one per limited controller
  std::vector<std::string> procs;  // their cgroup.procs files
};

// What a freshly forked child does to itself before it execs, in this order. Given
// to Port::PrepareChild before fork(); applied in the child by ChildSetup::Apply.
struct ChildPlan {
  // Become a child subreaper: descendants orphaned below it are re-parented to it,
  // so it can wait for a container's processes that it did not start itself.
  bool subreaper = false;
  // cgroup.procs files to write its pid to (LimitCgroups::procs): it joins them, and
  // everything it starts is born in them.
  std::vector<std::string> join_cgroups;
  // A mount namespace of its own (unshare(CLONE_NEWNS)) with every mount made
  // private: nothing mounted in it reaches the host's mount table, and it all goes
  // away with the namespace's last process.
  bool private_mounts = false;
  // In that namespace (REQUIRES: private_mounts): an overlay mounted at
  // `overlay_target` with `overlay_data` from Port::OverlayMountData; none when empty.
  std::string overlay_target, overlay_data;
  // In that namespace (REQUIRES: private_mounts): the cgroup root replaced by a pure
  // cgroup2 mount, as crun needs on a hybrid host.
  bool pure_cgroup2 = false;
};

// A ChildPlan laid out in memory, ready for a child to apply after fork().
class ChildSetup {
 public:
  virtual ~ChildSetup() = default;
  // Applies the plan to the calling process.
  // ASYNC-SIGNAL-SAFE: raw system calls over data laid out by Port::PrepareChild; no
  // allocation, no locks; meant for the child between fork() and exec(). Returns 0,
  // or the errno of the first step that failed, with *failed naming that step (a
  // path such as ".../cgroup.procs", or "unshare(CLONE_NEWNS)"); *failed points
  // into this object or to a literal and needs no freeing.
  virtual int Apply(const char** failed) const noexcept = 0;
};

class Port {
 public:
  virtual ~Port() = default;

  // --- cgroups ---

  // The host's layout. It does not change while the machine runs.
  virtual CgroupLayout DetectCgroupLayout() = 0;
  // The cgroups that would hold container `id`'s limits: v1 cgroups
  // <root>/<controller>/<parent>/<id> for those of memory, cpu and pids that `limits`
  // sets (moving a process into a v1 cgroup waits for an RCU grace period, so an
  // unlimited controller is left alone), and always one of devices. Makes nothing.
  // REQUIRES: CheckCgroupParent(parent) is OK.
  virtual LimitCgroups LimitCgroupsFor(const std::string& parent, const std::string& id,
                                       const Resources& limits) = 0;
  // Makes those cgroups and writes the limits into them (memory.limit_in_bytes,
  // cpu.cfs_quota_us over a 100 ms period, pids.max) and the device list (every device
  // denied but the few runc and crun allow by default: null, zero, full, random,
  // urandom, tty, console, ptmx, pts; any node may be made, not opened; every device
  // when limits.all_devices). Cgroups already there are reused. NotSupported on a
  // v2-only host, which has no v1 controllers.
  virtual Result<LimitCgroups> CreateLimitCgroups(const std::string& parent, const std::string& id,
                                                  const Resources& limits) = 0;
  // Deletes cgroup directories whose processes are gone. OK for missing ones.
  virtual Status RemoveCgroups(const std::vector<std::string>& dirs) = 0;
  // The file that counts the OOM kills in the memory cgroup <parent>/<id> (a line
  // "oom_kill N"): memory.events on cgroup v2, memory.oom_control of the v1 memory
  // controller on v1 and hybrid hosts. A path only; the cgroup may not exist. ""
  // where the platform has no such count (the default).
  virtual std::string OomKillsFile(const std::string& parent, const std::string& id) {
    (void)parent;
    (void)id;
    return "";
  }
  // On a cgroup v2 host a cgroup that holds processes cannot give controllers to its
  // children (the no-internal-process rule), so a daemon whose containers' cgroup
  // `parent` is its own cgroup or below it (a systemd unit's, with Delegate=yes)
  // moves itself into a leaf child `leaf_name` of its own cgroup; what it starts
  // afterwards is born there. Done only when that cgroup was delegated to it (systemd
  // marks it with the extended attribute trusted.delegate, or user.delegate); else,
  // and on v1, hybrid, or with `parent` outside its cgroup, nothing is done and
  // `skipped` says why. An error when the move fails, or when `parent` is in
  // the leaf. REQUIRES: `leaf_name` is one plain name. The default skips:
  // for ports without cgroup v2.
  virtual Result<LeafCgroupMove> EnterLeafCgroup(const std::string& parent,
                                                 const std::string& leaf_name) {
    (void)parent;
    (void)leaf_name;
    return LeafCgroupMove{"", "this platform has no cgroup v2"};
  }

  // --- mounts ---

  // The data of an overlay mount (Linux: overlayfs options) of `lower` read-only
  // below `upper`, with `work` on the same file system as `upper`. Adapters store it
  // as it is and give it back to MountOverlay or ChildPlan::overlay_data.
  virtual std::string OverlayMountData(const std::string& lower, const std::string& upper,
                                       const std::string& work) = 0;
  // Mounts an overlay at `target` in the caller's mount namespace. REQUIRES: the
  // directories exist; upper and work are empty. The error keeps the kernel's errno
  // (EPERM without the right to mount, ENODEV without overlayfs, EINVAL for an
  // unsuitable upper file system).
  virtual Status MountOverlay(const std::string& target, const std::string& data) = 0;
  // Unmounts everything mounted on `target` (a busy mount is detached). OK when
  // nothing is mounted there or `target` does not exist.
  virtual Status UnmountAll(const std::string& target) = 0;

  // --- network namespaces ---
  // A named network namespace has only a loopback device (down) when made, and
  // outlives every process in it: it is kept by a bind mount at NetnsPath(name)
  // (Linux: /run/petrel/netns/<name>) until DeleteNetns. Names are 1-64 of
  // [A-Za-z0-9_.-], not starting with '.'; other names are InvalidArgument.

  // AlreadyExists when `name` exists.
  virtual Status CreateNetns(const std::string& name) = 0;
  // Where the namespace is (or would be) kept: what `ip netns`, CNI plugins and
  // setns(2) are given.
  virtual std::string NetnsPath(const std::string& name) = 0;
  // Runs `fn` in the namespace, on a thread of its own that ends with it: the
  // caller's threads never change namespace. Returns fn's status; NotFound when
  // there is no namespace `name`. Blocks until fn returns. REQUIRES: fn does not throw.
  virtual Status RunInNetns(const std::string& name, const std::function<Status()>& fn) = 0;
  // Unmounts and removes the namespace; the kernel frees it when its last process
  // is gone. OK when there is none. Leaves no mount behind.
  virtual Status DeleteNetns(const std::string& name) = 0;
  // Keeps the network namespace `netns` (a descriptor on it, from OpenNetnsOf) by the
  // name `name`, as CreateNetns keeps a new one, until DeleteNetns: the namespace a
  // daemon made for a container (dockerd's) then stays attachable and detachable by
  // name after the container's processes are gone. AlreadyExists when `name` exists.
  // The default is NotSupported.
  virtual Status KeepNetns(const std::string& name, int netns) {
    (void)name;
    (void)netns;
    return Status::NotSupported("this platform has no network namespaces");
  }
  // A descriptor (close-on-exec) on the network namespace of process `pid`, for
  // SocketInNetns. It keeps referring to that namespace after the process is gone (the
  // namespace then lives on, empty, until it is closed), so a caller that keeps one per
  // process (a health probe, ten times a second) opens it once. The caller closes it.
  // NotFound when there is no process `pid`. The default is NotSupported, for ports
  // without namespaces.
  virtual Result<int> OpenNetnsOf(pid_t pid) {
    (void)pid;
    return Status::NotSupported("this platform has no network namespaces");
  }
  // A socket (IPv4, `type` SOCK_STREAM or SOCK_DGRAM, non-blocking, close-on-exec) made
  // in the network namespace `netns` (from OpenNetnsOf): it stays in that namespace
  // whoever uses it, so a connect from it reaches that namespace's loopback (a health
  // probe of a container with a network of its own). The caller closes it. Quick (a few
  // system calls: Linux enters the namespace on the calling thread for the socket() call
  // alone), so it may be called on a loop thread. The default is NotSupported.
  virtual Result<int> SocketInNetns(int netns, int type) {
    (void)netns;
    (void)type;
    return Status::NotSupported("this platform has no network namespaces");
  }

  // --- container networks ---
  // petrel's bridge network (NetworkMode::kBridge): each container in a network
  // namespace of its own with an address on one bridge of the host, the host's ports
  // published to it through NAT. Linux: CNI's standard plugins (bridge with host-local
  // addresses, portmap, loopback) and three iptables rules of the host that all its
  // containers share, each call a few processes, tens of milliseconds: never on a loop
  // thread.

  // Puts the network namespace at `netns` (a path: NetnsPath) on the bridge as
  // attachment `id` (1-64 of [A-Za-z0-9_.-], not starting with '.'), publishes the
  // ports of `ports` that have a hostPort, and returns the namespace's address
  // ("10.47.0.5"). The port keeps what DetachNetwork needs under `id` (Linux: in /run,
  // which a reboot empties together with the network it describes). A failure leaves
  // nothing attached and says what failed ("bridge network: CNI plugin \"portmap\"
  // not found in /usr/lib/cni (Debian package containernetworking-plugins)"). An
  // attachment `id` already there is taken as left behind by a container whose own
  // records went without it (the caller owns `id`): it is undone first, as far as its
  // plugins can, and forgotten. The default is NotSupported.
  virtual Result<std::string> AttachNetwork(const std::string& id, const std::string& netns,
                                            const std::vector<PortSpec>& ports) {
    (void)id;
    (void)netns;
    (void)ports;
    return Status::NotSupported("this platform has no bridge network");
  }
  // Undoes AttachNetwork of `id`: its address, interface and port mappings go (the
  // bridge's shared host rules stay). OK when `id` is not attached. Call it before the namespace is
  // deleted: what is in it says which rules are the container's. The default is OK.
  virtual Status DetachNetwork(const std::string& id) {
    (void)id;
    return Status::OK();
  }

  // --- supervision of child processes ---

  // Makes the calling process a child subreaper (see ChildPlan::subreaper).
  virtual Status BecomeSubreaper() = 0;
  // A descriptor (close-on-exec) that refers to process `pid` for as long as it is
  // open, even after the pid is reused, and becomes readable when the process ends.
  // The caller closes it. REQUIRES: `pid` is a child, or known not to be reaped
  // meanwhile. NotFound when there is no such process; NotSupported when the kernel
  // has no pidfd (before Linux 5.3).
  virtual Result<int> OpenPidfd(pid_t pid) = 0;
  // Lays `plan` out for a child to apply after fork() (ChildSetup::Apply).
  // InvalidArgument for an overlay or pure_cgroup2 without private_mounts.
  virtual Result<std::unique_ptr<ChildSetup>> PrepareChild(const ChildPlan& plan) = 0;

  // --- the service manager ---

  // Tells the service manager that started petrel about its state, in the sd_notify
  // protocol ("READY=1", "STOPPING=1", "STATUS=...", newline-separated). OK, doing
  // nothing, when no service manager listens (Linux: NOTIFY_SOCKET unset).
  virtual Status NotifyServiceManager(std::string_view state) = 0;
};

// This platform's port (ports/linux), one object shared by every caller.
std::shared_ptr<Port> DefaultPort();

// petrel's bridge network on a host (NetworkMode::kBridge): the bridge's name and the
// IPv4 subnet its containers get their addresses from (the bridge takes the first).
struct BridgeNetwork {
  std::string name = "petrel0";
  std::string subnet = "10.47.0.0/16";

  friend bool operator==(const BridgeNetwork& a, const BridgeNetwork& b) {
    return a.name == b.name && a.subnet == b.subnet;
  }
  friend bool operator!=(const BridgeNetwork& a, const BridgeNetwork& b) { return !(a == b); }
};

// InvalidArgument, in one line, unless `bridge.name` is an interface name (1-15 of
// A-Z a-z 0-9 _ . -, not starting with '.' or '-') and `bridge.subnet` an IPv4 network
// in CIDR form with a prefix of 8 to 28 and no host bits set: `bridge subnet
// "10.47.0.1/16": host bits are set (the network is 10.47.0.0/16)`.
Status CheckBridgeNetwork(const BridgeNetwork& bridge);

// A port of this platform like DefaultPort(), but whose bridge network is `bridge`
// (InvalidArgument from CheckBridgeNetwork). For a daemon whose user chooses them
// (petreld --bridge-name, --bridge-subnet): give it to every part, RuntimeConfig::port
// and Options::port, so that all of them see one bridge.
Result<std::shared_ptr<Port>> MakePort(const BridgeNetwork& bridge);

}  // namespace petrel

#endif  // PETREL_PORT_H_
