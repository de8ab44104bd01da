// The conformance suite (tests/lib/conformance.h) on the fake runtime, whose programs
// are its own small language (petrel/testing/fake_runtime.h), with the fake's own cases
// (fake_runtime_test.cpp) beside it.
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include "petrel/testing/fake_runtime.h"
#include "tests/lib/conformance.h"

namespace {

using petrel::testing::FakeHost;
using petrel::testing::FakeRuntime;

constexpr int64_t kLogCap = 8192;
constexpr char kMissingImage[] = "fake:missing";

// A host per state dir, for the life of the process: a runtime made again over a
// state dir finds the containers of the one before, as crun's files let it.
std::shared_ptr<FakeHost> HostOf(const std::string& state_dir) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<FakeHost>> hosts;
  std::lock_guard<std::mutex> lock(mu);
  std::shared_ptr<FakeHost>& host = hosts[state_dir];
  if (!host) host = std::make_shared<FakeHost>();
  return host;
}

petrel::Result<std::shared_ptr<petrel::ContainerRuntime>> Make(const std::string& state_dir) {
  auto rt = std::make_shared<FakeRuntime>(petrel::SystemClock(), HostOf(state_dir));
  rt->SetLogLimit(kLogCap);
  rt->SetImageMissing(kMissingImage, true);
  return std::shared_ptr<petrel::ContainerRuntime>(rt);
}

// The container's record, and anything in the state dir (the fake writes nothing there).
std::vector<std::string> Leftovers(petrel::ContainerRuntime* runtime, const std::string& state,
                                   const std::string& id) {
  std::vector<std::string> left;
  auto* fake = dynamic_cast<FakeRuntime*>(runtime);
  if (fake == nullptr) return {"a runtime that is not the fake: " + runtime->Name()};
  for (const petrel::ContainerInfo& c : fake->Containers()) {
    if (c.id == id || c.name == id) left.push_back("container " + c.id + " (" + c.name + ")");
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(state, ec)) {
    left.push_back(e.path().string());
  }
  return left;
}

}  // namespace

int main(int argc, char** argv) {
  petrel::testing::ConformanceTarget t;
  t.name = "fake";
  t.factory = Make;
  t.image = [] { return std::string("fake:conformance"); };
  t.missing_image = kMissingImage;
  t.command = petrel::testing::FakeCommand;
  t.log_cap_bytes = kLogCap;
  t.check_leases = [](petrel::ContainerRuntime* rt) {
    if (auto* fake = dynamic_cast<FakeRuntime*>(rt)) fake->CheckLeases();
  };
  t.leftovers = Leftovers;
  return petrel::testing::RunRuntimeConformance(argc, argv, t);
}
