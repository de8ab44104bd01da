// The cgroup part of the Linux port: which layout the host has, and the v1 cgroups
// petrel makes itself where a runtime cannot enforce a container's limits and device
// list (crun 1.8 on a hybrid host runs with its cgroup manager disabled; see TESTBED.md).
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

}  // namespace

// cgroup2 at the root = v2; cgroup2 at <root>/unified (beside the v1 controllers) =
// hybrid; else v1.
CgroupLayout LinuxPort::DetectCgroupLayout() {
  std::call_once(layout_once_, [this] {
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

LimitCgroups LinuxPort::LimitCgroupsFor(const std::string& id, const Resources& limits) {
  LimitCgroups out;
  for (const char* c : kControllers) {
    if (!Needed(limits, c)) continue;
    out.dirs.push_back(options_.cgroup_root + "/" + c + "/petrel/" + id);
    out.procs.push_back(out.dirs.back() + "/cgroup.procs");
  }
  return out;
}

Result<LimitCgroups> LinuxPort::CreateLimitCgroups(const std::string& id, const Resources& limits) {
  if (DetectCgroupLayout() == CgroupLayout::kV2) {
    return Status::NotSupported("cgroups for container " + id + ": " + options_.cgroup_root +
                                " is cgroup v2, which has no v1 controllers");
  }
  LimitCgroups cgroups = LimitCgroupsFor(id, limits);
  for (const std::string& dir : cgroups.dirs) PETREL_RETURN_IF_ERROR(MakeDirs(dir, 0755));
  const std::string base = options_.cgroup_root + "/";
  const std::string leaf = "/petrel/" + id + "/";
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

Status LinuxPort::RemoveCgroups(const std::vector<std::string>& dirs) {
  for (const std::string& dir : dirs) {
    if (rmdir(dir.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError("remove cgroup " + dir, "", errno);
    }
  }
  return Status::OK();
}

}  // namespace petrel::internal
