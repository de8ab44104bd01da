// plan_bench: how long a reconcile pass takes to plan, and how fast Apply stores.
//
// Plan(): N workloads of one replica each, every container running as recorded:
// the steady state a periodic resync meets. Target: <= 5 us per workload at 10,000,
// so a full resync of a large gateway plans in under 50 ms. Timed on the wall clock,
// and with `plan_bench --callgrind N` under valgrind --tool=callgrind --instr-atstart=no,
// counted in instructions of one Plan() call, which repeat exactly from run to run.
//
// Apply: workloads stored through Orchestrator::Apply (validate, hash, JSON, SQLite
// with synchronous=FULL), against a baseline measured in the same process: the bare
// INSERT of the same JSON into a SQLite table with the same pragmas.
#include <sqlite3.h>
#include <valgrind/callgrind.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "lib/reconcile/plan.h"
#include "petrel/orchestrator.h"
#include "petrel/testing/fake_runtime.h"

namespace {

using petrel::ContainerInfo;
using petrel::ContainerState;
using petrel::ReplicaStatus;
using petrel::WorkloadSpec;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

WorkloadSpec MakeSpec(int i) {
  WorkloadSpec s;
  s.name = "w" + std::to_string(i);
  s.image = "oci-archive:/opt/images/busybox.tar";
  s.command = {"/bin/sh", "-c", "sleep 3600"};
  s.env = {{"MODE", "prod"}, {"INDEX", std::to_string(i)}};
  s.resources.memory_bytes = 64 << 20;
  return s;
}

// N workloads in the steady state: each has its container running as recorded.
struct SteadyState {
  std::vector<WorkloadSpec> specs;
  petrel::internal::PlanInput in;

  explicit SteadyState(int n) {
    in.node = "n1";
    in.now = 1'700'000'000'000;
    for (int i = 0; i < n; i++) specs.push_back(MakeSpec(i));
    for (int i = 0; i < n; i++) {
      std::string hash = petrel::TemplateHash(specs[i]);
      in.desired.push_back({&specs[i], hash});
      ContainerInfo c;
      c.id = "c" + std::to_string(i);
      c.name = petrel::internal::ContainerName("n1", specs[i].name, 0);
      c.labels = petrel::internal::LowerToContainer("n1", specs[i], hash, 0).labels;
      c.state = ContainerState::kRunning;
      c.pid = 1000 + i;
      c.started_at = in.now - 1000;
      in.containers.push_back(c);
      ReplicaStatus r;
      r.workload = specs[i].name;
      r.phase = petrel::Phase::kRunning;
      r.container_id = c.id;
      r.pid = c.pid;
      r.since = c.started_at;
      r.spec_hash = hash;
      in.replicas.push_back(r);
    }
  }

  void PlanOnce() const {
    petrel::internal::PlanOutput out = petrel::internal::Plan(in);
    if (!out.actions.empty() || !out.status_updates.empty()) {
      std::fprintf(stderr, "plan_bench: steady state planned %zu actions\n", out.actions.size());
      std::exit(1);
    }
  }
};

void BenchPlan() {
  std::printf("Plan() in steady state (all replicas running as recorded)\n");
  std::printf("%10s %12s %14s %12s\n", "workloads", "passes", "us/pass", "us/workload");
  for (int n : {10, 100, 1000, 10000}) {
    SteadyState state(n);
    int passes = 0;
    auto t0 = Clock::now();
    do {
      state.PlanOnce();
      passes++;
    } while (Seconds(t0) < 0.3 || passes < 3);
    double us = Seconds(t0) * 1e6 / passes;
    std::printf("%10d %12d %14.1f %12.3f\n", n, passes, us, us / n);
  }
}

// One Plan() call between callgrind's start and stop of instrumentation.
void CallgrindPlan(int n) {
  SteadyState state(n);
  CALLGRIND_START_INSTRUMENTATION;
  state.PlanOnce();
  CALLGRIND_STOP_INSTRUMENTATION;
}

double RawSqliteInserts(const std::string& path, int n, bool batch) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE w(name TEXT PRIMARY KEY, spec TEXT, hash TEXT, generation INT)",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO w VALUES(?,?,?,1)", -1, &st, nullptr);
  auto t0 = Clock::now();
  if (batch) sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  for (int i = 0; i < n; i++) {
    WorkloadSpec s = MakeSpec(i);
    std::string json = petrel::SpecToJson(s);
    sqlite3_bind_text(st, 1, s.name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, json.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, "h", -1, SQLITE_STATIC);
    if (!batch) sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    sqlite3_step(st);
    sqlite3_reset(st);
    if (!batch) sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  if (batch) sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  double s = Seconds(t0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return s;
}

double PetrelApplies(const std::string& dir, int n, bool batch) {
  petrel::Options o;
  o.state_dir = dir;
  o.runtime = std::make_shared<petrel::testing::FakeRuntime>(petrel::SystemClock());
  o.node_name = "bench";
  o.log_sink = [](petrel::LogLevel, std::string_view) {};
  std::unique_ptr<petrel::Orchestrator> orch;
  if (!petrel::Orchestrator::Open(o, &orch).ok()) std::exit(1);
  std::vector<WorkloadSpec> specs;
  for (int i = 0; i < n; i++) specs.push_back(MakeSpec(i));
  auto t0 = Clock::now();
  if (batch) {
    if (!orch->Apply(specs).ok()) std::exit(1);
  } else {
    for (const WorkloadSpec& s : specs) {
      if (!orch->Apply(s).ok()) std::exit(1);
    }
  }
  return Seconds(t0);
}

void BenchApply() {
  std::string base = std::filesystem::temp_directory_path() / "petrel-bench-XXXXXX";
  if (mkdtemp(base.data()) == nullptr) std::exit(1);
  std::printf("\nApply into the store (synchronous=FULL) vs raw SQLite INSERT, same process\n");
  std::printf("%-28s %10s %12s %12s %8s\n", "mode", "workloads", "petrel/s", "raw/s", "ratio");
  struct Mode {
    const char* name;
    int n;
    bool batch;
  } modes[] = {{"one Apply per workload", 300, false}, {"one Apply of all", 10000, true}};
  int run = 0;
  for (const Mode& m : modes) {
    std::string d = base + "/" + std::to_string(run++);
    double petrel = PetrelApplies(d + "-petrel", m.n, m.batch);
    std::filesystem::create_directories(d);
    double raw = RawSqliteInserts(d + "/raw.db", m.n, m.batch);
    std::printf("%-28s %10d %12.0f %12.0f %7.2fx\n", m.name, m.n, m.n / petrel, m.n / raw,
                petrel / raw);
  }
  std::filesystem::remove_all(base);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--callgrind") {
    CallgrindPlan(std::atoi(argv[2]));
    return 0;
  }
  BenchPlan();
  BenchApply();
  return 0;
}
