#include "runtime-adapters/crun/cgroups.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/util/fs.h"

namespace petrel::internal {
namespace {

constexpr const char* kControllers[] = {"memory", "cpu", "pids"};
constexpr int64_t kCfsPeriodUs = 100000;

bool Limited(const Resources& limits, const char* controller) {
  if (strcmp(controller, "memory") == 0) return limits.memory_bytes > 0;
  if (strcmp(controller, "cpu") == 0) return limits.cpu_millis > 0;
  return limits.pids > 0;
}

// Writes `value` to the control file `path` in one write(2), as cgroupfs wants: a
// value split over two writes would be read as two values.
Status WriteControl(const std::string& path, const std::string& value) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(path, "", errno);
  if (write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return ErrnoError("write " + value + " to " + path, "", errno);
  }
  return Status::OK();
}

bool IsFs(const std::string& path, long magic) {
  struct statfs fs;
  return statfs(path.c_str(), &fs) == 0 && static_cast<long>(fs.f_type) == magic;
}

}  // namespace

const char* CgroupLayoutName(CgroupLayout layout) {
  switch (layout) {
    case CgroupLayout::kV1: return "v1";
    case CgroupLayout::kV2: return "v2";
    case CgroupLayout::kHybrid: return "hybrid";
  }
  return "?";
}

CgroupLayout DetectCgroupLayout(const std::string& root) {
  if (IsFs(root, CGROUP2_SUPER_MAGIC)) return CgroupLayout::kV2;
  if (IsFs(root + "/unified", CGROUP2_SUPER_MAGIC)) return CgroupLayout::kHybrid;
  return CgroupLayout::kV1;
}

std::string V1Cgroups::Dir(const char* controller) const {
  return root_ + "/" + controller + "/petrel/" + id_;
}

Status V1Cgroups::Create(const Resources& limits) const {
  for (const char* c : kControllers) {
    if (!Limited(limits, c)) continue;
    PETREL_RETURN_IF_ERROR(MakeDirs(Dir(c), 0755));
  }
  if (limits.memory_bytes > 0) {
    PETREL_RETURN_IF_ERROR(WriteControl(Dir("memory") + "/memory.limit_in_bytes",
                                        std::to_string(limits.memory_bytes)));
  }
  if (limits.cpu_millis > 0) {
    PETREL_RETURN_IF_ERROR(
        WriteControl(Dir("cpu") + "/cpu.cfs_period_us", std::to_string(kCfsPeriodUs)));
    PETREL_RETURN_IF_ERROR(WriteControl(Dir("cpu") + "/cpu.cfs_quota_us",
                                        std::to_string(limits.cpu_millis * kCfsPeriodUs / 1000)));
  }
  if (limits.pids > 0) {
    PETREL_RETURN_IF_ERROR(WriteControl(Dir("pids") + "/pids.max", std::to_string(limits.pids)));
  }
  return Status::OK();
}

std::vector<std::string> V1Cgroups::Procs(const Resources& limits) const {
  std::vector<std::string> out;
  for (const char* c : kControllers) {
    if (Limited(limits, c)) out.push_back(Dir(c) + "/cgroup.procs");
  }
  return out;
}

std::vector<std::string> V1Cgroups::Dirs(const Resources& limits) const {
  std::vector<std::string> out;
  for (const char* c : kControllers) {
    if (Limited(limits, c)) out.push_back(Dir(c));
  }
  return out;
}

Status RemoveCgroups(const std::vector<std::string>& dirs) {
  for (const std::string& dir : dirs) {
    if (rmdir(dir.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError("remove cgroup " + dir, "", errno);
    }
  }
  return Status::OK();
}

}  // namespace petrel::internal
