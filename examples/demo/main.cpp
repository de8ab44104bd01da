// petrel-demo: watch the reconcile loop keep (fake) containers running.
//
//   petrel-demo [--state-dir DIR] [--seconds N] MANIFEST_FILE_OR_DIR
//
// Applies the manifests, then plays a crash: the first replica's process exits
// with code 1 and petrel restarts it after its back-off. Every reconcile event is
// printed as it happens; at the end, a table like `petrelctl get workloads`.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "petrel/manifest.h"
#include "petrel/orchestrator.h"
#include "petrel/testing/fake_runtime.h"

namespace {

int Usage() {
  std::fprintf(stderr, "usage: petrel-demo [--state-dir DIR] [--seconds N] MANIFEST_FILE_OR_DIR\n");
  return 2;
}

void PrintTable(petrel::Orchestrator* orch) {
  auto list = orch->List();
  if (!list.ok()) {
    std::fprintf(stderr, "petrel-demo: %s\n", list.status().message().c_str());
    return;
  }
  std::printf("\n%-20s %-8s %-10s %s\n", "NAME", "READY", "PHASE", "RESTARTS");
  for (const petrel::WorkloadState& w : *list) {
    int restarts = 0;
    for (const auto& r : w.replicas) restarts += r.restarts;
    const char* phase = w.replicas.empty() ? "-" : petrel::PhaseName(w.replicas[0].phase);
    std::string ready = std::to_string(w.ready_replicas) + "/" + std::to_string(w.spec.replicas);
    std::printf("%-20s %-8s %-10s %d\n", w.spec.name.c_str(), ready.c_str(), phase, restarts);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string state_dir = "/tmp/petrel-demo";
  int seconds = 6;
  std::string manifests;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--state-dir") && i + 1 < argc) {
      state_dir = argv[++i];
    } else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = std::atoi(argv[++i]);
    } else if (argv[i][0] == '-' || !manifests.empty()) {
      return Usage();
    } else {
      manifests = argv[i];
    }
  }
  if (manifests.empty() || seconds <= 0) return Usage();

  auto specs = petrel::LoadManifests(manifests);
  if (!specs.ok()) {
    std::fprintf(stderr, "petrel-demo: %s\n", specs.status().message().c_str());
    return 1;
  }

  auto clock = petrel::SystemClock();
  auto runtime = std::make_shared<petrel::testing::FakeRuntime>(clock);
  petrel::Options options;
  options.state_dir = state_dir;
  options.runtime = runtime;
  options.node_name = "demo";
  options.log_sink = petrel::StderrLogSink(petrel::LogLevel::kWarn);
  std::unique_ptr<petrel::Orchestrator> orch;
  petrel::Status s = petrel::Orchestrator::Open(options, &orch);
  if (!s.ok()) {
    std::fprintf(stderr, "petrel-demo: %s\n", s.message().c_str());
    return 1;
  }
  const petrel::TimeMs t0 = clock->Now();
  orch->Subscribe([t0](const petrel::Event& e) {
    std::string who = e.workload + (e.replica >= 0 ? "/" + std::to_string(e.replica) : "");
    std::printf("%7.3fs  %-12s %-9s %s\n", (e.time - t0) / 1000.0, who.c_str(), e.type.c_str(),
                e.message.c_str());
    std::fflush(stdout);
  });
  std::printf("petrel-demo: state in %s, fake runtime, %zu workloads from %s\n\n",
              state_dir.c_str(), specs->size(), manifests.c_str());
  if (s = orch->Start(); !s.ok()) {
    std::fprintf(stderr, "petrel-demo: %s\n", s.message().c_str());
    return 1;
  }
  auto applied = orch->Apply(*specs);
  if (!applied.ok()) {
    std::fprintf(stderr, "petrel-demo: %s\n", applied.status().message().c_str());
    return 1;
  }
  for (const auto& r : *applied) {
    std::printf("workload %s %s (generation %lld)\n", r.name.c_str(),
                petrel::OutcomeName(r.outcome), static_cast<long long>(r.generation));
  }

  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto containers = runtime->Containers();
  for (const auto& c : containers) {
    if (c.state != petrel::ContainerState::kRunning) continue;
    std::printf("\n-- the process of container %s exits with code 1 --\n", c.name.c_str());
    (void)runtime->Exit(c.id, 1);
    break;
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  PrintTable(orch.get());
  return 0;
}
