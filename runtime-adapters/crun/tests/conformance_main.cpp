// The conformance suite (tests/lib/conformance.h) on real crun or runc, with this
// adapter's own cases (crun_test.cpp) beside it. The runtime is the one --runtime=NAME
// names ("crun" or "runc"; CTest runs the binary once with each), else crun. The image
// is $PETREL_TEST_IMAGE (CTest's fixture builds it once), else built here. Nothing is
// skipped: a missing runtime, image tool or privilege is a failure.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "lib/util/process.h"
#include "lib/util/sha256.h"
#include "petrel/crun.h"
#include "tests/lib/conformance.h"
#include "tests/lib/files.h"
#include "tests/lib/images.h"

namespace {

namespace fs = std::filesystem;
using petrel::testing::ReadFile;

// Each log file's cap, small so that the suite sees rotation.
constexpr int64_t kLogFileBytes = 4096;

// The runtime the command line names. doctest ignores the option.
std::string RuntimeName(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (std::strncmp(argv[i], "--runtime=", 10) == 0) return argv[i] + 10;
  }
  return "crun";
}

// The busybox image (tests/lib/images.h): the one CTest's fixture built, or one built
// here once per process.
std::string Image() {
  petrel::Result<std::string> image = petrel::testing::BusyboxImage();
  REQUIRE_MESSAGE(image.ok(), image.status().ToString());
  return *image;
}

// The cgroups container `id` can leave: /petrel/<id> in the v2 hierarchy (or the
// unified one of a hybrid host) and in every v1 hierarchy, named ones included, for
// runc makes it in each one that is mounted.
std::vector<std::string> CgroupsOf(const std::string& id) {
  std::vector<std::string> paths = {"/sys/fs/cgroup/petrel/" + id};
  std::error_code ec;
  for (const fs::directory_entry& h : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    // cpu and cpuacct are links to "cpu,cpuacct", which is listed itself.
    if (h.is_symlink(ec) || !h.is_directory(ec)) continue;
    paths.push_back(h.path().string() + "/petrel/" + id);
  }
  return paths;
}

// What a removed container can leave: its directory, the runtime's record, mounts below
// its directory, its cgroups in any layout, and its network namespace and bridge
// attachment (named as the adapter names them).
std::vector<std::string> Leftovers(petrel::ContainerRuntime*, const std::string& state,
                                   const std::string& id) {
  std::vector<std::string> left;
  std::vector<std::string> paths = {state + "/containers/" + id, state + "/runtime/" + id};
  for (const std::string& cgroup : CgroupsOf(id)) paths.push_back(cgroup);
  const std::string net =
      "petrel-" + petrel::internal::Sha256Hex(state + "/containers/" + id).substr(0, 16);
  paths.push_back("/run/petrel/netns/" + net);
  paths.push_back("/run/petrel/cni/" + net + ".json");
  for (const std::string& path : paths) {
    if (fs::exists(path)) left.push_back(path);
  }
  if (ReadFile("/proc/self/mountinfo").find(state + "/containers/" + id) != std::string::npos) {
    left.push_back("a mount below " + state + "/containers/" + id);
  }
  // CNI's plugins name the attachment in their rules' comments.
  petrel::internal::ProcessOptions po;
  po.search_path = true;
  petrel::internal::ProcessResult saved;
  const petrel::Status s = petrel::internal::RunProcess({"iptables-save"}, po, &saved);
  if (!s.ok() || saved.status != 0) {
    left.push_back("iptables-save failed: " + s.ToString() + saved.err);
  } else if (saved.out.find(net) != std::string::npos) {
    left.push_back("iptables rules of " + net);
  }
  return left;
}

}  // namespace

int main(int argc, char** argv) {
  petrel::testing::ConformanceTarget t;
  t.name = RuntimeName(argc, argv);
  t.factory = [name = t.name](const std::string& state_dir) {
    petrel::CrunOptions o;
    o.runtime = name;
    o.state_dir = state_dir;
    o.log_max_bytes = kLogFileBytes;
    return petrel::NewCrunRuntime(o);
  };
  t.image = Image;
  t.missing_image = "oci-archive:/nonexistent/petrel-conformance/nope.tar";
  t.command = petrel::testing::ShellCommand;
  t.log_cap_bytes = 2 * kLogFileBytes;  // two files are kept
  t.leftovers = Leftovers;
  return petrel::testing::RunRuntimeConformance(argc, argv, t);
}
