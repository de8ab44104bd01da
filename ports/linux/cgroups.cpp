// The cgroup part of the Linux port: which layout the host has, and the v1 cgroups
// petrel makes itself where a runtime cannot enforce a container's limits and device
// list (crun 1.8 on a hybrid host runs with its cgroup manager disabled; see TESTBED.md).
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "lib/util/cpu_quota.h"
#include "lib/util/fs.h"
#include "ports/linux/linux_port.h"

namespace petrel::internal {
namespace {

constexpr const char* kControllers[] = {"memory", "cpu", "pids", "devices"};

// The devices a container may use (read, write, mknod) once every other is denied: the
// default set runc and crun allow (the OCI config's own rule denies all), so that a
// container of crun on a hybrid host, whose cgroup manager is off, is held to the
// same list. Any node may be made (mknod, "m"); opening one outside the list fails.
constexpr const char* kAllowedDevices[] = {
    "c *:* m",     "b *:* m",  // mknod
    "c 1:3 rwm",   "c 1:5 rwm", "c 1:7 rwm",
    "c 1:8 rwm",   "c 1:9 rwm",               // null zero full random urandom
    "c 5:0 rwm",   "c 5:1 rwm", "c 5:2 rwm",  // tty console ptmx
    "c 136:* rwm",                            // /dev/pts/*
};

// Every container gets a devices cgroup; the others only for the limits it has.
bool Needed(const Resources& limits, const char* controller) {
  if (strcmp(controller, "memory") == 0) return limits.memory_bytes > 0;
  if (strcmp(controller, "cpu") == 0) return limits.cpu_millis > 0;
  if (strcmp(controller, "pids") == 0) return limits.pids > 0;
  return true;
}

// Writes `value` to the control file `path` in one write(2), as cgroupfs wants: a
// value split over two writes would be read as two values.
Status WriteControl(const std::string& path, const std::string& value) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(path, "open", errno);
  const ssize_t n = write(fd.get(), value.data(), value.size());
  if (n < 0) return ErrnoError(path, "write " + value, errno);
  if (n != static_cast<ssize_t>(value.size())) {
    return Status::IOError(path + ": write " + value + ": only " + std::to_string(n) +
                           " bytes taken");
  }
  return Status::OK();
}

bool IsFs(const std::string& path, long magic) {
  struct statfs fs;
  return statfs(path.c_str(), &fs) == 0 && static_cast<long>(fs.f_type) == magic;
}

// Whether systemd delegated the cgroup `dir` (Delegate=yes): it sets trusted.delegate
// (systemd 251 on) and user.delegate (252 on) to "1" there.
bool Delegated(const std::string& dir) {
  for (const char* name : {"trusted.delegate", "user.delegate"}) {
    char value[8];
    const ssize_t n = getxattr(dir.c_str(), name, value, sizeof(value));
    if (n == 1 && value[0] == '1') return true;
  }
  return false;
}

}  // namespace

// cgroup2 at the root = v2; cgroup2 at <root>/unified (beside the v1 controllers) =
// hybrid; else v1.
CgroupLayout LinuxPort::DetectCgroupLayout() {
  std::call_once(layout_once_, [this] {
    if (options_.cgroup_layout) {
      layout_ = *options_.cgroup_layout;
      return;
    }
    const std::string& root = options_.cgroup_root;
    if (IsFs(root, CGROUP2_SUPER_MAGIC)) {
      layout_ = CgroupLayout::kV2;
    } else if (IsFs(root + "/unified", CGROUP2_SUPER_MAGIC)) {
      layout_ = CgroupLayout::kHybrid;
    } else {
      layout_ = CgroupLayout::kV1;
    }
  });
  return layout_;
}

LimitCgroups LinuxPort::LimitCgroupsFor(const std::string& parent, const std::string& id,
                                        const Resources& limits) {
  LimitCgroups out;
  for (const char* c : kControllers) {
    if (!Needed(limits, c)) continue;
    out.dirs.push_back(options_.cgroup_root + "/" + c + "/" + parent + "/" + id);
    out.procs.push_back(out.dirs.back() + "/cgroup.procs");
  }
  return out;
}

std::string LinuxPort::OomKillsFile(const std::string& parent, const std::string& id) {
  if (DetectCgroupLayout() == CgroupLayout::kV2) {
    return options_.cgroup_root + "/" + parent + "/" + id + "/memory.events";
  }
  return options_.cgroup_root + "/memory/" + parent + "/" + id + "/memory.oom_control";
}

Result<LimitCgroups> LinuxPort::CreateLimitCgroups(const std::string& parent, const std::string& id,
                                                   const Resources& limits) {
  if (DetectCgroupLayout() == CgroupLayout::kV2) {
    return Status::NotSupported("cgroups for container " + id + ": " + options_.cgroup_root +
                                " is cgroup v2, which has no v1 controllers");
  }
  PETREL_RETURN_IF_ERROR(CheckCgroupParent(parent).WithContext("cgroups for container " + id));
  LimitCgroups cgroups = LimitCgroupsFor(parent, id, limits);
  for (const std::string& dir : cgroups.dirs) PETREL_RETURN_IF_ERROR(MakeDirs(dir, 0755));
  const std::string base = options_.cgroup_root + "/";
  const std::string leaf = "/" + parent + "/" + id + "/";
  if (limits.memory_bytes > 0) {
    PETREL_RETURN_IF_ERROR(WriteControl(base + "memory" + leaf + "memory.limit_in_bytes",
                                        std::to_string(limits.memory_bytes)));
  }
  if (limits.cpu_millis > 0) {
    PETREL_RETURN_IF_ERROR(
        WriteControl(base + "cpu" + leaf + "cpu.cfs_period_us", std::to_string(kCfsPeriodUs)));
    PETREL_RETURN_IF_ERROR(WriteControl(base + "cpu" + leaf + "cpu.cfs_quota_us",
                                        std::to_string(CfsQuotaUs(limits.cpu_millis))));
  }
  if (limits.pids > 0) {
    PETREL_RETURN_IF_ERROR(
        WriteControl(base + "pids" + leaf + "pids.max", std::to_string(limits.pids)));
  }
  // Deny all, then allow the list: one rule per write, as the kernel reads them. A
  // reused cgroup may hold a privileged container's "allow all" from before.
  const std::string devices = base + "devices" + leaf;
  if (limits.all_devices) {
    PETREL_RETURN_IF_ERROR(WriteControl(devices + "devices.allow", "a"));
    return cgroups;
  }
  PETREL_RETURN_IF_ERROR(WriteControl(devices + "devices.deny", "a"));
  for (const char* rule : kAllowedDevices) {
    PETREL_RETURN_IF_ERROR(WriteControl(devices + "devices.allow", rule));
  }
  return cgroups;
}

Result<LeafCgroupMove> LinuxPort::EnterLeafCgroup(const std::string& parent,
                                                  const std::string& leaf_name) {
  PETREL_RETURN_IF_ERROR(CheckCgroupParent(parent));
  const CgroupLayout layout = DetectCgroupLayout();
  if (layout != CgroupLayout::kV2) {
    return LeafCgroupMove{
        "", std::string("cgroup ") + CgroupLayoutName(layout) + " has no no-internal-process rule"};
  }
  // The v2 line of /proc/self/cgroup: "0::/system.slice/petreld.service".
  PETREL_ASSIGN_OR_RETURN(const std::string lines,
                          ReadSmallFile(options_.proc_self_cgroup, 64 * 1024));
  std::istringstream in(lines);
  std::string own;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("0::", 0) == 0) own = line.substr(3);
  }
  if (own.empty() || own[0] != '/') {
    return Status::Corruption(options_.proc_self_cgroup + ": no cgroup v2 line (0::/...)");
  }
  if (own == "/") return LeafCgroupMove{"", "it runs in the root cgroup, which the rule exempts"};
  const std::string wanted = "/" + parent;
  if (wanted != own && wanted.rfind(own + "/", 0) != 0) {
    return LeafCgroupMove{"", "cgroup parent " + wanted + " is not in its own cgroup " + own};
  }
  const std::string leaf_cgroup = own + "/" + leaf_name;
  if (wanted == leaf_cgroup || wanted.rfind(leaf_cgroup + "/", 0) == 0) {
    return Status::InvalidArgument("cgroup parent " + wanted + " is in " + leaf_cgroup +
                                   ", the leaf meant for the daemon alone");
  }
  const std::string dir = options_.cgroup_root + own;
  if (!Delegated(dir)) {
    return LeafCgroupMove{
        "", "its cgroup " + own + " was not delegated to it (no trusted.delegate: Delegate=yes)"};
  }
  const std::string leaf = dir + "/" + leaf_name;
  if (mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError(leaf, "mkdir", errno);
  PETREL_RETURN_IF_ERROR(WriteControl(leaf + "/cgroup.procs", std::to_string(getpid())));
  return LeafCgroupMove{leaf_cgroup, ""};
}

Status LinuxPort::RemoveCgroups(const std::vector<std::string>& dirs) {
  for (const std::string& dir : dirs) {
    if (rmdir(dir.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError("remove cgroup " + dir, "", errno);
    }
  }
  return Status::OK();
}

}  // namespace petrel::internal
