// The conformance suite (tests/lib/conformance.h) on the containerd runtime
// (petrel/containerd.h), against the real containerd whose socket
// --containerd-socket=PATH (else $PETREL_TEST_CONTAINERD_SOCKET) names: CTest's fixture
// containerd_daemon starts one for every suite that needs it (tests/lib/containerd.sh).
// No socket, or no daemon on it, is a failure, never a skip. Each case's runtime gets a containerd
// namespace of its own (from its state dir), so that cases running at once never see each other's
// tasks. This binary is also its containers' logger, as petreld is.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "lib/util/sha256.h"
#include "petrel/containerd.h"
#include "runtime-adapters/containerd/grpc.h"
#include "runtime-adapters/containerd/services.h"
#include "tests/lib/conformance.h"
#include "tests/lib/files.h"
#include "tests/lib/host_leftovers.h"

namespace {

using petrel::testing::ReadFile;

// Each log file's cap, small so that the suite sees rotation.
constexpr int64_t kLogFileBytes = 4096;

// The socket --containerd-socket= names (doctest ignores the option), set by main.
std::string socket_option;

std::string Socket() {
  const char* env = std::getenv("PETREL_TEST_CONTAINERD_SOCKET");
  const std::string socket = !socket_option.empty() ? socket_option : env != nullptr ? env : "";
  REQUIRE_MESSAGE(!socket.empty(),
                  "no containerd socket: give --containerd-socket=PATH (CTest does, with the "
                  "fixture containerd_daemon; by hand: tests/lib/containerd.sh start DIR)");
  return socket;
}

// The containerd namespace of the runtime on `state_dir`: the same for a second
// runtime object on that dir (adoption), another for every other case.
std::string NamespaceOf(const std::string& state_dir) {
  return "petrel-test-" + petrel::internal::Sha256Hex(state_dir).substr(0, 16);
}

// What a removed container can leave: what any bundle runtime can leave on the host
// (tests/lib/host_leftovers.h), containerd's container and task, and mounts on
// containerd's bundle of it.
std::vector<std::string> Leftovers(petrel::ContainerRuntime*, const std::string& state,
                                   const std::string& id) {
  std::vector<std::string> left = petrel::testing::HostLeftovers(state, id);
  const std::string ns = NamespaceOf(state);
  std::istringstream mounts(ReadFile("/proc/self/mountinfo"));
  for (std::string line; std::getline(mounts, line);) {
    if (line.find("/" + ns + "/" + id + "/") != std::string::npos) {
      left.push_back("a mount: " + line);
    }
  }
  petrel::internal::GrpcChannel::Options o;
  o.socket_path = Socket();
  o.ns = ns;
  petrel::Result<std::unique_ptr<petrel::internal::GrpcChannel>> channel =
      petrel::internal::GrpcChannel::Open(o);
  if (!channel.ok()) {
    left.push_back("no channel to containerd: " + channel.status().ToString());
  } else {
    petrel::Status task = petrel::internal::ContainerdGetTask(channel->get(), id).status();
    if (!task.IsNotFound()) left.push_back("containerd's task " + id + ": " + task.ToString());
    petrel::Status c = petrel::internal::ContainerdGetContainer(channel->get(), id).status();
    if (!c.IsNotFound()) left.push_back("containerd's container " + id + ": " + c.ToString());
  }
  return left;
}

}  // namespace

int main(int argc, char** argv) {
  // containerd's shim starts this binary as the containers' logger.
  if (petrel::IsContainerdLoggerCall(argc, argv)) return petrel::RunContainerdLogger(argc, argv);
  for (int i = 1; i < argc; i++) {
    if (std::strncmp(argv[i], "--containerd-socket=", 20) == 0) socket_option = argv[i] + 20;
  }
  petrel::testing::ConformanceTarget t;
  t.name = "containerd";
  t.factory = [](const std::string& state_dir) {
    petrel::ContainerdOptions o;
    o.endpoint = "unix://" + Socket();
    o.ns = NamespaceOf(state_dir);
    o.state_dir = state_dir;
    o.log_max_bytes = kLogFileBytes;
    return petrel::NewContainerdRuntime(o);
  };
  t.image = petrel::testing::BusyboxImageOrFail;
  t.missing_image = "oci-archive:/nonexistent/petrel-conformance/nope.tar";
  t.command = petrel::testing::ShellCommand;
  t.log_cap_bytes = 2 * kLogFileBytes;  // two files are kept
  t.leftovers = Leftovers;
  return petrel::testing::RunRuntimeConformance(argc, argv, t);
}
