// A Port for tests of health probes with the fake runtime, whose containers are no
// processes: OpenNetnsOf and SocketInNetns give a socket in the test's own network
// namespace for any pid > 0, so a probe of a fake container reaches a server the test
// runs on 127.0.0.1.
// Everything else is DefaultPort()'s.
#ifndef PETREL_TESTS_LIB_HOST_NET_PORT_H_
#define PETREL_TESTS_LIB_HOST_NET_PORT_H_

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "petrel/port.h"

namespace petrel::testing {

class HostNetPort : public Port {
 public:
  CgroupLayout DetectCgroupLayout() override { return base_->DetectCgroupLayout(); }
  LimitCgroups LimitCgroupsFor(const std::string& parent, const std::string& id,
                               const Resources& limits) override {
    return base_->LimitCgroupsFor(parent, id, limits);
  }
  Result<LimitCgroups> CreateLimitCgroups(const std::string& parent, const std::string& id,
                                          const Resources& limits) override {
    return base_->CreateLimitCgroups(parent, id, limits);
  }
  Status RemoveCgroups(const std::vector<std::string>& dirs) override {
    return base_->RemoveCgroups(dirs);
  }
  std::string OomKillsFile(const std::string& parent, const std::string& id) override {
    return base_->OomKillsFile(parent, id);
  }
  Result<LeafCgroupMove> EnterLeafCgroup(const std::string& parent,
                                         const std::string& leaf_name) override {
    return base_->EnterLeafCgroup(parent, leaf_name);
  }
  std::string OverlayMountData(const std::string& lower, const std::string& upper,
                               const std::string& work) override {
    return base_->OverlayMountData(lower, upper, work);
  }
  Status MountOverlay(const std::string& target, const std::string& data) override {
    return base_->MountOverlay(target, data);
  }
  Status UnmountAll(const std::string& target) override { return base_->UnmountAll(target); }
  Status CreateNetns(const std::string& name) override { return base_->CreateNetns(name); }
  std::string NetnsPath(const std::string& name) override { return base_->NetnsPath(name); }
  Status RunInNetns(const std::string& name, const std::function<Status()>& fn) override {
    return base_->RunInNetns(name, fn);
  }
  Status DeleteNetns(const std::string& name) override { return base_->DeleteNetns(name); }
  Status KeepNetns(const std::string& name, int netns) override {
    return base_->KeepNetns(name, netns);
  }
  Result<std::string> AttachNetwork(const std::string& id, const std::string& netns,
                                    const std::vector<PortSpec>& ports) override {
    return base_->AttachNetwork(id, netns, ports);
  }
  Status DetachNetwork(const std::string& id) override { return base_->DetachNetwork(id); }
  Status BecomeSubreaper() override { return base_->BecomeSubreaper(); }
  Result<int> OpenPidfd(pid_t pid) override { return base_->OpenPidfd(pid); }
  Result<std::unique_ptr<ChildSetup>> PrepareChild(const ChildPlan& plan) override {
    return base_->PrepareChild(plan);
  }
  Status NotifyServiceManager(std::string_view state) override {
    return base_->NotifyServiceManager(state);
  }

  Result<int> OpenNetnsOf(pid_t pid) override {
    if (pid <= 0) return Status::NotFound("no process " + std::to_string(pid));
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::Internal(std::string("open: ") + std::strerror(errno));
    return fd;
  }
  Result<int> SocketInNetns(int netns, int type) override {
    (void)netns;
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status::Internal(std::string("socket: ") + std::strerror(errno));
    return fd;
  }

 private:
  std::shared_ptr<Port> base_ = DefaultPort();
};

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_HOST_NET_PORT_H_
