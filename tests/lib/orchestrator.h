// An Orchestrator for a test: its Options and Open, as every test that runs one needs
// them (tests/unit, the conformance suite).
#ifndef PETREL_TESTS_LIB_ORCHESTRATOR_H_
#define PETREL_TESTS_LIB_ORCHESTRATOR_H_

#include <doctest/doctest.h>

#include <memory>
#include <string_view>
#include <utility>

#include "petrel/orchestrator.h"
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

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_ORCHESTRATOR_H_
