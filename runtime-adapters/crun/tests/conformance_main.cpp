// The conformance suite (tests/lib/conformance.h) on real crun or runc, with this
// adapter's own cases (crun_test.cpp) beside it. The runtime is the one --runtime=NAME
// names ("crun" or "runc"; CTest runs the binary once with each), else
// $PETREL_TEST_RUNTIME, else crun. Nothing is skipped: a missing runtime, image tool or
// privilege is a failure.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "petrel/crun.h"
#include "tests/lib/conformance.h"
#include "tests/lib/files.h"

namespace {

namespace fs = std::filesystem;
using petrel::testing::ReadFile;
using petrel::testing::TempDir;

// Each log file's cap, small so that the suite sees rotation.
constexpr int64_t kLogFileBytes = 4096;

// The runtime the command line or the environment names. doctest ignores the option.
std::string RuntimeName(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (std::strncmp(argv[i], "--runtime=", 10) == 0) return argv[i] + 10;
  }
  const char* r = std::getenv("PETREL_TEST_RUNTIME");
  return r != nullptr ? r : "crun";
}

// The busybox image, built once per process by the script the README uses, unless
// $PETREL_TEST_IMAGE names one.
std::string BusyboxImage() {
  static const std::string image = [] {
    if (const char* given = std::getenv("PETREL_TEST_IMAGE")) return std::string(given);
    static TempDir dir;
    const std::string out = dir.Sub("busybox.tar");
    const std::string cmd = std::string(PETREL_SOURCE_DIR) +
                            "/examples/images/make-busybox-image " + out + " >/dev/null";
    REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
    return "oci-archive:" + out;
  }();
  return image;
}

// What a removed container can leave: its directory, the runtime's record, mounts below
// its directory, and its cgroups in any layout.
std::vector<std::string> Leftovers(petrel::ContainerRuntime*, const std::string& state,
                                   const std::string& id) {
  std::vector<std::string> left;
  for (const std::string& path :
       {state + "/containers/" + id, state + "/runtime/" + id, "/sys/fs/cgroup/petrel/" + id,
        "/sys/fs/cgroup/unified/petrel/" + id}) {
    if (fs::exists(path)) left.push_back(path);
  }
  for (const char* c : {"memory", "cpu", "pids"}) {
    const std::string path = std::string("/sys/fs/cgroup/") + c + "/petrel/" + id;
    if (fs::exists(path)) left.push_back(path);
  }
  if (ReadFile("/proc/self/mountinfo").find(state + "/containers/" + id) != std::string::npos) {
    left.push_back("a mount below " + state + "/containers/" + id);
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
  t.image = BusyboxImage;
  t.missing_image = "oci-archive:/nonexistent/petrel-conformance/nope.tar";
  t.command = petrel::testing::ShellCommand;
  t.log_cap_bytes = 2 * kLogFileBytes;  // two files are kept
  t.leftovers = Leftovers;
  return petrel::testing::RunRuntimeConformance(argc, argv, t);
}
