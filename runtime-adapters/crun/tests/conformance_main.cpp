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
#include <vector>

#include "petrel/crun.h"
#include "tests/lib/conformance.h"
#include "tests/lib/files.h"
#include "tests/lib/host_leftovers.h"

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

// What a removed container can leave: its directory, the runtime's record, and what
// any bundle runtime can leave on the host (tests/lib/host_leftovers.h).
std::vector<std::string> Leftovers(petrel::ContainerRuntime*, const std::string& state,
                                   const std::string& id) {
  std::vector<std::string> left = petrel::testing::HostLeftovers(state, id);
  if (fs::exists(state + "/runtime/" + id)) left.push_back(state + "/runtime/" + id);
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
  t.image = petrel::testing::BusyboxImageOrFail;
  t.missing_image = "oci-archive:/nonexistent/petrel-conformance/nope.tar";
  t.command = petrel::testing::ShellCommand;
  t.log_cap_bytes = 2 * kLogFileBytes;  // two files are kept
  t.leftovers = Leftovers;
  return petrel::testing::RunRuntimeConformance(argc, argv, t);
}
