// The conformance suite (tests/lib/conformance.h) on the Docker runtime
// (petrel/docker.h), against the real dockerd whose socket --docker-socket=PATH names:
// CTest's fixture docker_daemon starts one for every suite that needs it
// (tests/lib/dockerd.sh). No socket, or no daemon on it, is a failure, never a skip.
// Each case's runtime has a state dir of its own, and with it an owner label of its own,
// so that cases running at once never see each other's containers or images.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "petrel/docker.h"
#include "runtime-adapters/docker/calls.h"
#include "runtime-adapters/docker/engine.h"
#include "tests/lib/conformance.h"
#include "tests/lib/files.h"

namespace {

// Each log file's cap, small so that the suite sees rotation.
constexpr int64_t kLogFileBytes = 4096;

// The socket --docker-socket= names (doctest ignores the option), set by main.
std::string socket_option;

std::string Socket() {
  REQUIRE_MESSAGE(!socket_option.empty(),
                  "no dockerd socket: give --docker-socket=PATH (CTest does, with the fixture "
                  "docker_daemon; by hand: tests/lib/dockerd.sh start DIR CONTAINERD_SOCKET)");
  return socket_option;
}

// What a removed container can leave: dockerd's container, and its files in the state dir.
std::vector<std::string> Leftovers(petrel::ContainerRuntime*, const std::string& state,
                                   const std::string& id) {
  std::vector<std::string> left;
  if (std::filesystem::exists(state + "/containers/" + id)) {
    left.push_back("its directory " + state + "/containers/" + id);
  }
  petrel::internal::DockerEngine::Options o;
  o.socket_path = Socket();
  petrel::Result<std::unique_ptr<petrel::internal::DockerEngine>> engine =
      petrel::internal::DockerEngine::Open(o);
  if (!engine.ok()) {
    left.push_back("no engine: " + engine.status().ToString());
  } else {
    petrel::Status c = petrel::internal::DockerInspectContainer(engine->get(), id).status();
    if (!c.IsNotFound()) left.push_back("dockerd's container " + id + ": " + c.ToString());
  }
  return left;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (std::strncmp(argv[i], "--docker-socket=", 16) == 0) socket_option = argv[i] + 16;
  }
  petrel::testing::ConformanceTarget t;
  t.name = "docker";
  t.factory = [](const std::string& state_dir) {
    petrel::DockerOptions o;
    o.endpoint = "unix://" + Socket();
    o.state_dir = state_dir;
    o.log_max_bytes = kLogFileBytes;
    return petrel::NewDockerRuntime(o);
  };
  t.image = petrel::testing::BusyboxImageOrFail;
  t.missing_image = "oci-archive:/nonexistent/petrel-conformance/nope.tar";
  t.command = petrel::testing::ShellCommand;
  t.log_cap_bytes = 2 * kLogFileBytes;  // two files are kept
  t.streams_in_order = false;           // dockerd copies stdout and stderr apart
  t.oom_kills_always_told = false;      // dockerd may miss one (conformance.h)
  t.leftovers = Leftovers;
  return petrel::testing::RunRuntimeConformance(argc, argv, t);
}
