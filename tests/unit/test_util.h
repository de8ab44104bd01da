// Helpers shared by the unit tests that run an Orchestrator.
#ifndef PETREL_TESTS_UNIT_TEST_UTIL_H_
#define PETREL_TESTS_UNIT_TEST_UTIL_H_

#include <doctest/doctest.h>

#include <memory>
#include <string_view>
#include <utility>

#include "petrel/orchestrator.h"
#include "petrel/testing/fake_clock.h"
#include "petrel/testing/fake_runtime.h"
#include "tests/lib/files.h"

namespace petrel::testing {

// Options for a test node: its state in `dir`, node "n1", no log output.
inline Options TestOptions(const TempDir& dir, std::shared_ptr<ContainerRuntime> runtime,
                           std::shared_ptr<Clock> clock) {
  Options o;
  o.state_dir = dir.Sub("state");
  o.runtime = std::move(runtime);
  o.clock = std::move(clock);
  o.node_name = "n1";
  o.log_sink = [](LogLevel, std::string_view) {};
  return o;
}

// Orchestrator::Open, failing the test case when it fails.
inline std::unique_ptr<Orchestrator> OpenOrDie(const Options& options) {
  std::unique_ptr<Orchestrator> orch;
  Status s = Orchestrator::Open(options, &orch);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  return orch;
}

// One node for a test in Step() mode: a state dir, a fake clock, a fake runtime on that
// clock, and, once Open() ran, an Orchestrator over them.
struct FakeNode {
  TempDir dir;
  std::shared_ptr<FakeClock> clock = std::make_shared<FakeClock>();
  std::shared_ptr<FakeRuntime> runtime = std::make_shared<FakeRuntime>(clock);
  std::unique_ptr<Orchestrator> orch;

  // Opens the Orchestrator, closing the one before: a restart over the same state and
  // runtime.
  void Open() {
    orch.reset();
    orch = OpenOrDie(TestOptions(dir, runtime, clock));
  }

  void Step() { REQUIRE(orch->Step().ok()); }
};

}  // namespace petrel::testing

#endif  // PETREL_TESTS_UNIT_TEST_UTIL_H_
