// The Linux port: petrel::Port over Linux's system calls (ports/linux/*.cpp), the one
// DefaultPort() returns. Its options exist for tests, which point it at directory
// trees and sockets of their own, and for embedders that keep petrel's files elsewhere.
//
// Thread-safety: every method may be called from any thread (as port.h promises).
#ifndef PETREL_PORTS_LINUX_LINUX_PORT_H_
#define PETREL_PORTS_LINUX_LINUX_PORT_H_

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "petrel/clock.h"
#include "petrel/port.h"

namespace petrel::internal {

struct LinuxPortOptions {
  // Where the cgroup file systems are mounted.
  std::string cgroup_root = "/sys/fs/cgroup";
  // Unset: detected from what is mounted at cgroup_root. For tests on a fake tree.
  std::optional<CgroupLayout> cgroup_layout;
  // Where the calling process reads its own cgroups. For tests.
  std::string proc_self_cgroup = "/proc/self/cgroup";
  // Where named network namespaces are kept as bind mounts; created 0755 when missing.
  std::string netns_dir = "/run/petrel/netns";
  // petrel's bridge network (AttachNetwork): where CNI's plugins are looked for, the
  // bridge's name and subnet, and where attachments and address leases are kept (under
  // /run: a reboot forgets them with the network they describe, so none leaks).
  std::vector<std::string> cni_plugin_dirs = {"/usr/lib/cni", "/opt/cni/bin"};
  std::string bridge_name = BridgeNetwork().name;
  std::string bridge_subnet = BridgeNetwork().subnet;
  std::string cni_state_dir = "/run/petrel/cni";
  // The service manager's datagram socket: a path, or "@name" for an abstract one;
  // "" for none. Unset: $NOTIFY_SOCKET as the port is made.
  std::optional<std::string> notify_socket;
};

class LinuxPort final : public Port {
 public:
  explicit LinuxPort(LinuxPortOptions options);

  CgroupLayout DetectCgroupLayout() override;
  std::string OomKillsFile(const std::string& parent, const std::string& id) override;
  LimitCgroups LimitCgroupsFor(const std::string& parent, const std::string& id,
                               const Resources& limits) override;
  Result<LimitCgroups> CreateLimitCgroups(const std::string& parent, const std::string& id,
                                          const Resources& limits) override;
  Status RemoveCgroups(const std::vector<std::string>& dirs) override;
  Result<LeafCgroupMove> EnterLeafCgroup(const std::string& parent,
                                         const std::string& leaf_name) override;

  std::string OverlayMountData(const std::string& lower, const std::string& upper,
                               const std::string& work) override;
  Status MountOverlay(const std::string& target, const std::string& data) override;
  Status UnmountAll(const std::string& target) override;

  Status CreateNetns(const std::string& name) override;
  std::string NetnsPath(const std::string& name) override;
  Status RunInNetns(const std::string& name, const std::function<Status()>& fn) override;
  Status DeleteNetns(const std::string& name) override;
  Status KeepNetns(const std::string& name, int netns) override;
  Result<int> OpenNetnsOf(pid_t pid) override;
  Result<int> SocketInNetns(int netns, int type) override;

  Result<std::string> AttachNetwork(const std::string& id, const std::string& netns,
                                    const std::vector<PortSpec>& ports) override;
  Status DetachNetwork(const std::string& id) override;

  Status BecomeSubreaper() override;
  Result<int> OpenPidfd(pid_t pid) override;
  Result<std::unique_ptr<ChildSetup>> PrepareChild(const ChildPlan& plan) override;

  Status NotifyServiceManager(std::string_view state) override;

 private:
  const LinuxPortOptions options_;
  std::once_flag layout_once_;
  CgroupLayout layout_ = CgroupLayout::kV1;
  std::mutex host_rules_mu_;  // AttachNetwork: one check-and-add of the bridge's rules at a time
  std::optional<TimeMs> host_rules_checked_;  // GUARDED_BY(host_rules_mu_): when, Monotonic
};

}  // namespace petrel::internal

#endif  // PETREL_PORTS_LINUX_LINUX_PORT_H_
