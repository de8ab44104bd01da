// Simulation: a seeded random walk of applies, scale and spec changes, deletes, crashes,
// containers removed behind petrel's back, runtime failures, SIGTERM-deaf containers,
// images that come and go, clock jumps and petrel restarts, with invariants checked after every
// reconcile pass, then a calm period after which the runtime must match the desired state exactly.
// Fake clock and fake runtime: thousands of passes in well under a second.
#include <doctest/doctest.h>

#include <map>
#include <random>
#include <set>

#include "lib/reconcile/plan.h"
#include "petrel/orchestrator.h"
#include "petrel/testing/fake_clock.h"
#include "petrel/testing/fake_runtime.h"
#include "tests/lib/files.h"
#include "tests/unit/test_util.h"

namespace petrel {
namespace {

using testing::FakeClock;
using testing::FakeRuntime;
using testing::TempDir;

constexpr const char* kImages[] = {"oci-archive:/images/busybox.tar", "oci:/images/other"};

class Simulation {
 public:
  explicit Simulation(uint64_t seed) : rng_(seed) { Reopen(); }

  void Reopen() {
    orch_.reset();
    Options o = testing::TestOptions(dir_, runtime_, clock_);
    o.node_name = "sim";
    o.event_log_capacity = 100;
    orch_ = testing::OpenOrDie(o);
  }

  WorkloadSpec RandomSpec() {
    WorkloadSpec s;
    s.name = std::string(1, static_cast<char>('a' + Pick(4)));
    s.image = kImages[Pick(2)];
    s.replicas = static_cast<int>(Pick(4));
    s.env["VARIANT"] = std::to_string(Pick(2));
    s.restart_policy = static_cast<RestartPolicy>(Pick(3));
    s.backoff.initial_ms = 500;
    s.backoff.max_ms = 4000;
    s.termination_grace_ms = 1000 + static_cast<int64_t>(Pick(3)) * 1000;
    return s;
  }

  // One random change to the world, then one reconcile pass.
  void Perturb() {
    switch (Pick(10)) {
      case 0:
      case 1: {
        WorkloadSpec s = RandomSpec();
        REQUIRE(orch_->Apply(s).ok());
        desired_[s.name] = s;
        break;
      }
      case 2: {
        std::string name(1, static_cast<char>('a' + Pick(4)));
        Status s = orch_->Delete(name);
        CHECK((s.ok() || s.IsNotFound()));
        desired_.erase(name);
        break;
      }
      case 3:
      case 4: {
        std::vector<ContainerInfo> running = Running();
        if (!running.empty()) {
          (void)runtime_->Exit(running[Pick(running.size())].id, static_cast<int>(Pick(2)));
        }
        break;
      }
      case 5: {
        std::vector<ContainerInfo> all = runtime_->Containers();
        if (!all.empty()) (void)runtime_->ForceRemove(all[Pick(all.size())].id);
        break;
      }
      case 6: {
        auto op = static_cast<FakeRuntime::Op>(Pick(7));  // pull..inspect: all it calls
        runtime_->FailNext(op, Status::Unavailable("injected"));
        break;
      }
      case 7: runtime_->SetIgnoreSigterm(Pick(2) == 0); break;
      case 8: Reopen(); break;
      case 9: runtime_->SetImageMissing(kImages[Pick(2)], Pick(2) == 0); break;
    }
    clock_->Advance(static_cast<int64_t>(Pick(3000)));
    (void)orch_->Step();  // may fail: an injected List failure
    CheckInvariants();
  }

  // Never two live containers for one replica; never a container under a name that
  // is not its own.
  void CheckInvariants() {
    std::map<std::pair<std::string, std::string>, int> live;
    for (const ContainerInfo& c : runtime_->Containers()) {
      const std::string& w = c.labels.at(kLabelWorkload);
      const std::string& r = c.labels.at(kLabelReplica);
      CHECK(c.name == internal::ContainerName("sim", w, std::stoi(r)));
      if (c.state != ContainerState::kExited) live[{w, r}]++;
    }
    for (const auto& entry : live) {
      CHECK_MESSAGE(entry.second == 1, "replica " << entry.first.first << "/" << entry.first.second
                                                  << " has " << entry.second << " live containers");
    }
  }

  // With the world calm, every wanted replica runs the current template and nothing
  // else is left.
  void Converge() {
    runtime_->SetIgnoreSigterm(false);
    for (const char* image : kImages) runtime_->SetImageMissing(image, false);
    for (auto& [name, spec] : desired_) {
      spec.restart_policy = RestartPolicy::kAlways;  // finished jobs must come back too
      REQUIRE(orch_->Apply(spec).ok());
    }
    for (int i = 0; i < 12; i++) {
      clock_->Advance(5000);
      REQUIRE(orch_->Step().ok());
    }
    std::map<std::string, int> running;
    for (const ContainerInfo& c : runtime_->Containers()) {
      const std::string& w = c.labels.at(kLabelWorkload);
      REQUIRE_MESSAGE(desired_.count(w), "container " << c.name << " of deleted workload " << w);
      CHECK(c.state == ContainerState::kRunning);
      CHECK(c.labels.at(kLabelSpecHash) == TemplateHash(desired_[w]));
      CHECK(std::stoi(c.labels.at(kLabelReplica)) < desired_[w].replicas);
      running[w]++;
    }
    Result<std::vector<WorkloadState>> all = orch_->List();
    REQUIRE(all.ok());
    REQUIRE(all->size() == desired_.size());
    for (const WorkloadState& w : *all) {
      CHECK(w.spec == desired_[w.spec.name]);
      CHECK(running[w.spec.name] == w.spec.replicas);
      CHECK(w.ready_replicas == w.spec.replicas);
      CHECK(static_cast<int>(w.replicas.size()) == w.spec.replicas);
    }
    // Calm means quiet: more passes change nothing.
    int creates = runtime_->Calls(FakeRuntime::Op::kCreate);
    for (int i = 0; i < 3; i++) {
      clock_->Advance(10000);
      REQUIRE(orch_->Step().ok());
    }
    CHECK(runtime_->Calls(FakeRuntime::Op::kCreate) == creates);
  }

 private:
  std::vector<ContainerInfo> Running() {
    std::vector<ContainerInfo> out;
    for (const ContainerInfo& c : runtime_->Containers()) {
      if (c.state == ContainerState::kRunning) out.push_back(c);
    }
    return out;
  }
  uint64_t Pick(uint64_t n) { return rng_() % n; }

  std::mt19937_64 rng_;
  TempDir dir_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  std::shared_ptr<FakeRuntime> runtime_ = std::make_shared<FakeRuntime>(clock_);
  std::unique_ptr<Orchestrator> orch_;
  std::map<std::string, WorkloadSpec> desired_;
};

TEST_SUITE("simulation") {
  TEST_CASE("random walks converge to the desired state and keep the invariants") {
    for (uint64_t seed = 1; seed <= 25; seed++) {
      CAPTURE(seed);
      Simulation sim(seed);
      for (int step = 0; step < 150; step++) sim.Perturb();
      sim.Converge();
    }
  }
}

}  // namespace
}  // namespace petrel
