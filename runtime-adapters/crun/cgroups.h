// cgroups as the host lays them out, and the one case petrel must handle itself:
// crun 1.8 on a hybrid host (v1 controllers plus a cgroup2 mount holding none).
// crun refuses that layout, so petrel runs it in a private mount namespace with a
// pure cgroup2 /sys/fs/cgroup and crun's cgroup manager disabled, and enforces the
// limits through v1 cgroups it prepares and puts crun's process into before the
// container starts (the container inherits them).
#ifndef PETREL_RUNTIME_ADAPTERS_CRUN_CGROUPS_H_
#define PETREL_RUNTIME_ADAPTERS_CRUN_CGROUPS_H_

#include <string>
#include <vector>

#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrel::internal {

enum class CgroupLayout { kV1, kV2, kHybrid };
const char* CgroupLayoutName(CgroupLayout layout);

// Reads the layout from the mounts under `root` (normally /sys/fs/cgroup):
// cgroup2 at the root = v2; a tmpfs with v1 controllers and a cgroup2 "unified"
// mount = hybrid; v1 controllers alone = v1.
CgroupLayout DetectCgroupLayout(const std::string& root = "/sys/fs/cgroup");

// v1 cgroups petrel owns for one container: <root>/<controller>/petrel/<id> for
// those of memory, cpu and pids that the container has a limit for (moving a process
// into a v1 cgroup waits for an RCU grace period, so unlimited controllers are left
// alone). Dirs names them; Create makes them and writes the limits; Procs lists
// their cgroup.procs files.
class V1Cgroups {
 public:
  V1Cgroups(std::string root, std::string id) : root_(std::move(root)), id_(std::move(id)) {}
  std::vector<std::string> Dirs(const Resources& limits) const;
  Status Create(const Resources& limits) const;
  std::vector<std::string> Procs(const Resources& limits) const;

 private:
  std::string Dir(const char* controller) const;
  std::string root_, id_;
};

// Deletes cgroup directories (their processes must be gone); OK for missing ones.
Status RemoveCgroups(const std::vector<std::string>& dirs);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CRUN_CGROUPS_H_
