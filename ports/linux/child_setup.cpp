// The Linux port's ChildSetup: what a forked child does to itself before exec, laid out
// by PrepareChild so that Apply is nothing but system calls over ready buffers.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>

#include "lib/util/strings.h"
#include "ports/linux/linux_port.h"

namespace petrel::internal {
namespace {

class LinuxChildSetup final : public ChildSetup {
 public:
  LinuxChildSetup(const ChildPlan& plan, const std::string& cgroup_root)
      : plan_(plan),
        overlay_step_("mount overlay " + plan.overlay_target),
        umount_cgroup_step_("umount " + cgroup_root),
        mount_cgroup2_step_("mount cgroup2 " + cgroup_root),
        cgroup_root_(cgroup_root) {}

  // Async-signal-safe: every string was made by the constructor; nothing here
  // allocates, locks, or calls more of libc than system call wrappers.
  int Apply(const char** failed) const noexcept override {
    if (plan_.subreaper && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
      return Fail("prctl(PR_SET_CHILD_SUBREAPER)", failed);
    }
    char pid[24];
    const size_t pid_len = FormatDecimal(static_cast<uint64_t>(getpid()), pid);
    for (const std::string& procs : plan_.join_cgroups) {
      int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return Fail(procs.c_str(), failed);
      // One write(2): cgroupfs reads each write as one value.
      bool ok = write(fd, pid, pid_len) == static_cast<ssize_t>(pid_len);
      int err = errno;
      close(fd);
      if (!ok) return Fail(procs.c_str(), failed, err);
    }
    if (!plan_.private_mounts) return 0;
    if (unshare(CLONE_NEWNS) != 0) return Fail("unshare(CLONE_NEWNS)", failed);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      return Fail("mount --make-rprivate /", failed);
    }
    if (!plan_.overlay_target.empty() && mount("overlay", plan_.overlay_target.c_str(), "overlay",
                                               0, plan_.overlay_data.c_str()) != 0) {
      return Fail(overlay_step_.c_str(), failed);
    }
    if (plan_.pure_cgroup2) {
      if (umount2(cgroup_root_.c_str(), MNT_DETACH) != 0) {
        return Fail(umount_cgroup_step_.c_str(), failed);
      }
      if (mount("none", cgroup_root_.c_str(), "cgroup2", 0, nullptr) != 0) {
        return Fail(mount_cgroup2_step_.c_str(), failed);
      }
    }
    return 0;
  }

 private:
  static int Fail(const char* step, const char** failed, int err = 0) noexcept {
    if (err == 0) err = errno != 0 ? errno : EIO;
    *failed = step;
    return err;
  }

  const ChildPlan plan_;
  const std::string overlay_step_, umount_cgroup_step_, mount_cgroup2_step_, cgroup_root_;
};

}  // namespace

Result<std::unique_ptr<ChildSetup>> LinuxPort::PrepareChild(const ChildPlan& plan) {
  if (!plan.private_mounts && (!plan.overlay_target.empty() || plan.pure_cgroup2)) {
    return Status::InvalidArgument(
        "child plan: an overlay or a pure cgroup2 mount needs private_mounts (else it would "
        "land in the host's mount table)");
  }
  if (plan.overlay_target.empty() != plan.overlay_data.empty()) {
    return Status::InvalidArgument("child plan: overlay_target and overlay_data go together");
  }
  return std::unique_ptr<ChildSetup>(new LinuxChildSetup(plan, options_.cgroup_root));
}

}  // namespace petrel::internal
