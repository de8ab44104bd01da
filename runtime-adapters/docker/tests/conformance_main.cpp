// The conformance suite (tests/lib/conformance.h) on the Docker runtime
// (petrel/docker.h), against the real dockerd whose socket --docker-socket=PATH names:
// CTest's fixture docker_daemon starts one for every suite that needs it
// (tests/lib/dockerd.sh). No socket, or no daemon on it, is a failure, never a skip.
// Each case's runtime has a state dir of its own, and with it an owner label of its own,
// so that cases running at once never see each other's containers or images.
#include <doctest/doctest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "petrel/docker.h"
#include "runtime-adapters/docker/calls.h"
#include "runtime-adapters/docker/engine.h"
#include "tests/lib/conformance.h"
#include "tests/lib/files.h"
#include "tests/lib/wait.h"

extern char** environ;

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

// A socat between a socket of the test's and dockerd's, in a process group of its own,
// so that Cut ends every connection through it at once.
class Proxy {
 public:
  Proxy(std::string listen, std::string target)
      : listen_(std::move(listen)), target_(std::move(target)) {}
  ~Proxy() { Cut(); }

  // Listens on the socket; true once it does.
  bool Start() {
    std::filesystem::remove(listen_);
    const std::string from = "UNIX-LISTEN:" + listen_ + ",fork";
    const std::string to = "UNIX-CONNECT:" + target_;
    std::vector<char*> argv = {const_cast<char*>("socat"), const_cast<char*>(from.c_str()),
                               const_cast<char*>(to.c_str()), nullptr};
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    const int rc = posix_spawnp(&pid_, "socat", nullptr, &attr, argv.data(), environ);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      pid_ = 0;
      return false;
    }
    return petrel::testing::WaitFor([&] { return std::filesystem::exists(listen_); }, 10);
  }

  // Ends the proxy and every connection through it.
  void Cut() {
    if (pid_ <= 0) return;
    kill(-pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = 0;
    std::filesystem::remove(listen_);
  }

 private:
  const std::string listen_, target_;
  pid_t pid_ = 0;
};

}  // namespace

TEST_CASE("an exit while dockerd's events could not reach petrel is told once they can") {
  petrel::testing::TempDir dir;
  Proxy proxy(dir.path() + "/docker.sock", Socket());
  REQUIRE_MESSAGE(proxy.Start(), "socat did not listen (package socat)");
  petrel::DockerOptions o;
  o.endpoint = "unix://" + dir.path() + "/docker.sock";
  o.state_dir = dir.path() + "/state";
  o.log_max_bytes = kLogFileBytes;
  petrel::Result<std::shared_ptr<petrel::ContainerRuntime>> rt = petrel::NewDockerRuntime(o);
  REQUIRE(rt.ok());
  std::mutex mu;
  std::map<std::string, std::vector<int>> told;
  (*rt)->SetExitHandler([&](const std::string& id, int code) {
    std::lock_guard<std::mutex> lock(mu);
    told[id].push_back(code);
  });
  auto told_of = [&](const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    return told[id];
  };
  petrel::ContainerSpec spec;
  spec.name = "docker-unheard";
  spec.image = petrel::testing::BusyboxImageOrFail();
  spec.command = {"/bin/sh", "-c"};
  spec.args = {"trap 'echo bye; exit 3' TERM; echo up; while :; do sleep 0.1; done"};
  spec.network = petrel::NetworkMode::kNone;
  REQUIRE((*rt)->PullImage(spec.image, {}).ok());
  const std::string id = petrel::testing::CreateAndStart(rt->get(), spec);
  CHECK(petrel::testing::WaitFor([&] { return petrel::testing::LogOf(rt->get(), id) == "up\n"; }));

  // Every connection to dockerd cut (the events stream and the log pump's), the
  // container ends, and petrel is told nothing while it cannot hear.
  proxy.Cut();
  petrel::internal::DockerEngine::Options direct;
  direct.socket_path = Socket();
  auto engine = petrel::internal::DockerEngine::Open(direct);
  REQUIRE(engine.ok());
  REQUIRE(petrel::internal::DockerKillContainer(engine->get(), id, SIGTERM).ok());
  petrel::Result<int> code = petrel::internal::DockerWaitContainer(engine->get(), id);
  REQUIRE(code.ok());
  CHECK(*code == 3);
  // Longer than the second before a reconnection that dockerd's kept events cover: the
  // exit is found by the listing after it, not by the events stream again.
  CHECK(petrel::testing::HoldsFor([&] { return told_of(id).empty(); }, 1.5));

  REQUIRE(proxy.Start());
  CHECK(petrel::testing::WaitFor([&] { return !told_of(id).empty(); }));
  CHECK(told_of(id) == std::vector<int>{3});
  CHECK(petrel::testing::LogOf(rt->get(), id) == "up\nbye\n");
  CHECK(petrel::testing::HoldsFor([&] { return told_of(id).size() == 1; }, 0.5));
  petrel::testing::RemoveAndCheck(rt->get(), o.state_dir, id);
}

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
