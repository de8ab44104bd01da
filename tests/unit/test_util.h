// Helpers shared by the unit tests that run an Orchestrator in Step() mode (TestOptions
// and OpenOrDie, for any test, are in tests/lib/orchestrator.h).
#ifndef PETREL_TESTS_UNIT_TEST_UTIL_H_
#define PETREL_TESTS_UNIT_TEST_UTIL_H_

#include <doctest/doctest.h>

#include <memory>

#include "petrel/orchestrator.h"
#include "petrel/testing/fake_clock.h"
#include "petrel/testing/fake_runtime.h"
#include "tests/lib/files.h"
#include "tests/lib/orchestrator.h"

namespace petrel::testing {

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
