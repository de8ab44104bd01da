// What a removed container of a bundle runtime (crun, runc, containerd: the crun
// adapter's bundles) can leave on the host, for the conformance targets' `leftovers`:
// its directory, its cgroups in any layout, mounts that name its files, and its network
// namespace and bridge attachment (named as the adapter names them), each said in a few
// words. The caller adds what its runtime keeps of its own.
#ifndef PETREL_TESTS_LIB_HOST_LEFTOVERS_H_
#define PETREL_TESTS_LIB_HOST_LEFTOVERS_H_

#include <filesystem>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "lib/util/process.h"
#include "lib/util/sha256.h"
#include "tests/lib/files.h"

namespace petrel::testing {

// Container `id` of the bundle runtime on `state` (its containers in
// <state>/containers).
inline std::vector<std::string> HostLeftovers(const std::string& state, const std::string& id) {
  namespace fs = std::filesystem;
  std::vector<std::string> left;
  // /petrel/<id> in the v2 hierarchy (or the unified one of a hybrid host) and in every
  // v1 hierarchy, named ones included, for runc makes it in each one that is mounted.
  std::vector<std::string> paths = {state + "/containers/" + id, "/sys/fs/cgroup/petrel/" + id};
  std::error_code ec;
  for (const fs::directory_entry& h : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    // cpu and cpuacct are links to "cpu,cpuacct", which is listed itself.
    if (h.is_symlink(ec) || !h.is_directory(ec)) continue;
    paths.push_back(h.path().string() + "/petrel/" + id);
  }
  const std::string net =
      "petrel-" + internal::Sha256Hex(state + "/containers/" + id).substr(0, 16);
  paths.push_back("/run/petrel/netns/" + net);
  paths.push_back("/run/petrel/cni/" + net + ".json");
  for (const std::string& path : paths) {
    if (fs::exists(path)) left.push_back(path);
  }
  std::istringstream mounts(ReadFile("/proc/self/mountinfo"));
  for (std::string line; std::getline(mounts, line);) {
    if (line.find(state + "/containers/" + id + "/") != std::string::npos) {
      left.push_back("a mount: " + line);
    }
  }
  // CNI's plugins name the attachment in their rules' comments.
  internal::ProcessOptions po;
  po.search_path = true;
  internal::ProcessResult saved;
  const Status s = internal::RunProcess({"iptables-save"}, po, &saved);
  if (!s.ok() || saved.status != 0) {
    left.push_back("iptables-save failed: " + s.ToString() + saved.err);
  } else if (saved.out.find(net) != std::string::npos) {
    left.push_back("iptables rules of " + net);
  }
  return left;
}

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_HOST_LEFTOVERS_H_
