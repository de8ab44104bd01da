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
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "lib/util/sha256.h"
#include "petrel/containerd.h"
#include "runtime-adapters/containerd/grpc.h"
#include "runtime-adapters/containerd/image_backend.h"
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
    const std::string key = petrel::internal::ContainerdRootSnapshot(id);
    petrel::Status snap =
        petrel::internal::ContainerdStatSnapshot(channel->get(), "overlayfs", key).status();
    if (!snap.IsNotFound()) left.push_back("containerd's snapshot " + key + ": " + snap.ToString());
    // Leases has no Get: a delete that finds one is a leftover (and takes it away).
    const std::string lease = petrel::internal::ContainerdRootLease(id);
    petrel::Status held = petrel::internal::ContainerdDeleteLease(channel->get(), lease, false);
    if (!held.IsNotFound()) left.push_back("containerd's lease " + lease + ": " + held.ToString());
  }
  return left;
}

// A channel to the containerd of the suite, in the namespace of the runtime on `state`.
std::unique_ptr<petrel::internal::GrpcChannel> ChannelOf(const std::string& state) {
  petrel::internal::GrpcChannel::Options o;
  o.socket_path = Socket();
  o.ns = NamespaceOf(state);
  petrel::Result<std::unique_ptr<petrel::internal::GrpcChannel>> channel =
      petrel::internal::GrpcChannel::Open(o);
  REQUIRE_MESSAGE(channel.ok(), channel.status().ToString());
  return std::move(*channel);
}

// The bytes of the regular files below `dir`.
int64_t BytesBelow(const std::string& dir) {
  int64_t bytes = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file()) bytes += static_cast<int64_t>(e.file_size());
  }
  return bytes;
}

TEST_CASE("images live in containerd's stores, and a container's root is a snapshot on one") {
  using petrel::ContainerSpec;
  using petrel::internal::ContainerdImage;
  petrel::testing::TempDir state;
  petrel::Result<std::shared_ptr<petrel::ContainerRuntime>> made =
      petrel::testing::CurrentTarget().factory(state.path());
  REQUIRE_MESSAGE(made.ok(), made.status().ToString());
  petrel::ContainerRuntime* rt = made->get();
  const std::string image = petrel::testing::CurrentTarget().image();
  REQUIRE(rt->PullImage(image, petrel::PullOptions()).ok());
  auto channel = ChannelOf(state.path());

  // Named in containerd by its reference, with petrel's id; petrel's state dir holds
  // its config alone, never a layer (the image's are over 1 MiB).
  petrel::Result<ContainerdImage> named =
      petrel::internal::ContainerdGetImage(channel.get(), image);
  REQUIRE_MESSAGE(named.ok(), named.status().ToString());
  petrel::Result<std::vector<petrel::ImageInfo>> listed = rt->ListImages();
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  CHECK(named->labels.at(petrel::internal::kContainerdImageIdLabel) == listed->at(0).id);
  CHECK(listed->at(0).refs == std::vector<std::string>{image});
  CHECK(listed->at(0).size_bytes > (1 << 20));
  CHECK(BytesBelow(state.path()) < 64 * 1024);

  // A container runs on an active snapshot its record names, with the image's users.
  ContainerSpec s;
  s.name = "containerd-snapshot-root";
  s.image = image;
  s.user = "nobody";
  s.command = {"/bin/sh", "-c", "id -u; echo kept > /written; cat /written"};
  const std::string id = petrel::testing::CreateAndStart(rt, s);
  CHECK(petrel::testing::WaitExit(rt, id) == 1);  // nobody cannot write to /
  const std::string key = petrel::internal::ContainerdRootSnapshot(id);
  petrel::Result<petrel::internal::ContainerdSnapshot> snapshot =
      petrel::internal::ContainerdStatSnapshot(channel.get(), "overlayfs", key);
  REQUIRE_MESSAGE(snapshot.ok(), snapshot.status().ToString());
  CHECK_FALSE(snapshot->committed);
  CHECK(snapshot->parent != "");
  petrel::Result<petrel::internal::ContainerdContainer> record =
      petrel::internal::ContainerdGetContainer(channel.get(), id);
  REQUIRE(record.ok());
  CHECK(record->snapshot_key == key);
  CHECK(petrel::testing::LogOf(rt, id).find("65534\n") == 0);
  ContainerSpec root = s;
  root.name = "containerd-snapshot-root-w";
  root.user = "";
  const std::string writer = petrel::testing::CreateAndStart(rt, root);
  CHECK(petrel::testing::WaitExit(rt, writer) == 0);
  CHECK(petrel::testing::LogOf(rt, writer) == "0\nkept\n");
  petrel::testing::RemoveAndCheck(rt, state.path(), id);
  petrel::testing::RemoveAndCheck(rt, state.path(), writer);

  // Removal deletes its name; containerd collects its blobs (in this namespace).
  REQUIRE(rt->RemoveImage(image).ok());
  CHECK(rt->ListImages()->empty());
  CHECK(petrel::internal::ContainerdGetImage(channel.get(), image).status().IsNotFound());
  CHECK(petrel::internal::ContainerdContentInfo(channel.get(), named->target.digest)
            .status()
            .IsNotFound());
  CHECK(rt->RemoveImage(image).IsNotFound());
}

TEST_CASE("roots left by containers whose directories are gone are released, never another's") {
  using petrel::internal::ContainerdRootLease;
  using petrel::internal::ContainerdRootSnapshot;
  petrel::testing::TempDir state;
  auto channel = ChannelOf(state.path());
  REQUIRE(
      petrel::internal::ContainerdCreateNamespace(channel.get(), NamespaceOf(state.path())).ok());
  // A root of this state dir's container "ghost", which has no directory, and one of
  // another state dir's container "other", with the labels the backend gives them.
  const std::map<std::string, std::string> owners = {
      {"ghost", petrel::internal::ContainerdRootOwner(state.path() + "/images")},
      {"other", petrel::internal::ContainerdRootOwner(state.path() + "/elsewhere/images")}};
  for (const auto& [id, owner] : owners) {
    REQUIRE(petrel::internal::ContainerdCreateLease(
                channel.get(), ContainerdRootLease(id),
                {{petrel::internal::kContainerdRootLeaseLabel, owner}})
                .ok());
    petrel::internal::GrpcChannel::Options o;
    o.socket_path = Socket();
    o.ns = NamespaceOf(state.path());
    o.lease = ContainerdRootLease(id);
    auto leased = petrel::internal::GrpcChannel::Open(o);
    REQUIRE(leased.ok());
    REQUIRE(petrel::internal::ContainerdPrepareSnapshot(leased->get(), "overlayfs",
                                                        ContainerdRootSnapshot(id), "", {})
                .ok());
  }
  petrel::Result<std::shared_ptr<petrel::ContainerRuntime>> made =
      petrel::testing::CurrentTarget().factory(state.path());
  REQUIRE_MESSAGE(made.ok(), made.status().ToString());
  // One left under the name of a container made after the start gives way to it.
  const std::string late = "containerd-late-root";
  REQUIRE(
      petrel::internal::ContainerdCreateLease(channel.get(), ContainerdRootLease(late), {}).ok());
  petrel::ContainerSpec s;
  s.name = late;
  s.image = petrel::testing::CurrentTarget().image();
  s.command = {"/bin/sh", "-c", "echo ran"};
  const std::string id = petrel::testing::CreateAndStart(made->get(), s);
  CHECK(petrel::testing::WaitExit(made->get(), id) == 0);
  CHECK(petrel::testing::LogOf(made->get(), id) == "ran\n");
  petrel::testing::RemoveAndCheck(made->get(), state.path(), id);
  CHECK(petrel::internal::ContainerdStatSnapshot(channel.get(), "overlayfs",
                                                 ContainerdRootSnapshot("ghost"))
            .status()
            .IsNotFound());
  CHECK(petrel::internal::ContainerdDeleteLease(channel.get(), ContainerdRootLease("ghost"), false)
            .IsNotFound());
  // Another's stays: removed here by hand.
  CHECK(petrel::internal::ContainerdRemoveSnapshot(channel.get(), "overlayfs",
                                                   ContainerdRootSnapshot("other"))
            .ok());
  CHECK(petrel::internal::ContainerdDeleteLease(channel.get(), ContainerdRootLease("other"), false)
            .ok());
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
