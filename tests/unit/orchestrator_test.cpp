// The Orchestrator driven by Step() with the fake runtime and fake clock: every
// case runs in microseconds of real time and never sleeps.
#include "petrel/orchestrator.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "lib/util/lease.h"
#include "petrel/testing/fake_clock.h"
#include "petrel/testing/fake_runtime.h"
#include "tests/lib/files.h"
#include "tests/unit/test_util.h"

namespace petrel {
namespace {

using testing::FakeClock;
using testing::FakeRuntime;
using testing::HeldCalls;
using testing::OpenOrDie;
using testing::TempDir;
using testing::TestOptions;

WorkloadSpec Web(int replicas = 1) {
  WorkloadSpec s;
  s.name = "web";
  s.replicas = replicas;
  s.image = "oci-archive:/images/busybox.tar";
  s.command = {"/bin/sh", "-c", "sleep 3600"};
  s.backoff.initial_ms = 1000;
  s.backoff.max_ms = 4000;
  s.termination_grace_ms = 2000;
  return s;
}

// One node: a state dir, a fake clock and runtime, and an Orchestrator that can be
// closed and reopened over the same state and runtime.
struct Node : testing::FakeNode {
  std::vector<Event> events;

  Node() { Reopen(); }

  void Reopen() {
    Open();
    orch->Subscribe([this](const Event& e) { events.push_back(e); });
  }

  ReplicaStatus Replica(const std::string& name, int i) {
    Result<WorkloadState> w = orch->Get(name);
    REQUIRE(w.ok());
    for (const ReplicaStatus& r : w->replicas) {
      if (r.index == i) return r;
    }
    FAIL("no replica " << i);
    return {};
  }

  std::vector<ContainerInfo> Running() {
    std::vector<ContainerInfo> out;
    for (const ContainerInfo& c : runtime->Containers()) {
      if (c.state == ContainerState::kRunning) out.push_back(c);
    }
    return out;
  }

  int CountEvents(const std::string& type) {
    int n = 0;
    for (const Event& e : events) n += e.type == type;
    return n;
  }
};

TEST_SUITE("orchestrator") {
  TEST_CASE("apply runs every replica and reports it running") {
    Node n;
    Result<ApplyResult> r = n.orch->Apply(Web(2));
    REQUIRE(r.ok());
    CHECK(r->outcome == ApplyResult::Outcome::kCreated);
    CHECK(r->generation == 1);
    n.Step();
    CHECK(n.Running().size() == 2);
    Result<WorkloadState> w = n.orch->Get("web");
    REQUIRE(w.ok());
    CHECK(w->ready_replicas == 2);
    for (const ReplicaStatus& rs : w->replicas) {
      CHECK(rs.phase == Phase::kRunning);
      CHECK(!rs.container_id.empty());
      CHECK(rs.pid > 0);
    }
    CHECK(n.CountEvents("Applied") == 1);
    CHECK(n.CountEvents("Started") == 2);
    // The spec reached the container.
    Result<ContainerSpec> cs = n.runtime->SpecOf(w->replicas[0].container_id);
    REQUIRE(cs.ok());
    CHECK(cs->command == Web().command);
    CHECK(cs->name == "petrel_n1_web_0");
  }

  TEST_CASE("re-applying the same spec changes nothing and writes nothing") {
    Node n;
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    Result<ApplyResult> r = n.orch->Apply(Web());
    REQUIRE(r.ok());
    CHECK(r->outcome == ApplyResult::Outcome::kUnchanged);
    CHECK(r->generation == 1);
    CHECK(n.CountEvents("Applied") == 1);
  }

  TEST_CASE("apply is all or nothing") {
    Node n;
    WorkloadSpec good = Web();
    WorkloadSpec bad = Web();
    bad.name = "Bad_Name";
    Result<std::vector<ApplyResult>> r = n.orch->Apply({good, bad});
    REQUIRE(!r.ok());
    CHECK(r.status().IsInvalidArgument());
    CHECK(r.status().message().find("Bad_Name") != std::string::npos);
    CHECK(n.orch->Get("web").status().IsNotFound());
    CHECK(!n.orch->Apply({good, good}).ok());
    CHECK(n.orch->List()->empty());
  }

  TEST_CASE("Options::allowed_host_paths: Apply refuses a bind mount elsewhere, naming it") {
    Node n;
    n.orch.reset();
    Options o = testing::TestOptions(n.dir, n.runtime, n.clock);
    o.allowed_host_paths = {"/srv/data"};
    n.orch = testing::OpenOrDie(o);
    WorkloadSpec web = Web();
    web.mounts.push_back(MountSpec{MountSpec::Type::kBind, "/srv/data/web", "/data", false, 0});
    WorkloadSpec bad = Web();
    bad.name = "bad";
    bad.mounts.push_back(MountSpec{MountSpec::Type::kBind, "/", "/host", false, 0});
    Result<std::vector<ApplyResult>> r = n.orch->Apply({web, bad});
    REQUIRE(!r.ok());
    CHECK(r.status().IsInvalidArgument());
    CHECK(r.status().message() ==
          "workload bad: spec.mounts[0].source: \"/\" is not below an "
          "allowed host path (/srv/data)");
    CHECK(n.orch->List()->empty());
    CHECK(n.orch->Apply(web).ok());
    o.allowed_host_paths = {"srv"};
    n.orch.reset();
    std::unique_ptr<Orchestrator> refused;
    CHECK(Orchestrator::Open(o, &refused).message() ==
          "options: allowed_host_paths: \"srv\" is not an absolute path");
  }

  TEST_CASE("a crash loop backs off 1s, 2s, 4s, 4s and shows the next retry") {
    Node n;
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    const int64_t expected[] = {1000, 2000, 4000, 4000};
    for (int i = 0; i < 4; i++) {
      ReplicaStatus before = n.Replica("web", 0);
      REQUIRE(before.phase == Phase::kRunning);
      REQUIRE(n.runtime->Exit(before.container_id, 1).ok());
      n.Step();
      ReplicaStatus st = n.Replica("web", 0);
      CHECK(st.phase == Phase::kCrashLoop);
      CHECK(st.last_exit_code == 1);
      CHECK(st.next_retry == n.clock->Now() + expected[i]);
      CHECK(n.orch->NextWakeup() == st.next_retry);
      n.clock->Advance(expected[i] - 1);
      n.Step();
      CHECK(n.Replica("web", 0).phase == Phase::kCrashLoop);
      CHECK(n.Running().empty());
      n.clock->Advance(1);
      n.Step();
      st = n.Replica("web", 0);
      CHECK(st.phase == Phase::kRunning);
      CHECK(st.restarts == i + 1);
      CHECK(st.container_id != before.container_id);
      CHECK(n.runtime->Containers().size() == 1);  // the exited one was removed
    }
    CHECK(n.CountEvents("BackOff") == 4);
  }

  TEST_CASE("scale up and down by re-applying") {
    Node n;
    REQUIRE(n.orch->Apply(Web(1)).ok());
    n.Step();
    Result<ApplyResult> r = n.orch->Apply(Web(3));
    CHECK(r->outcome == ApplyResult::Outcome::kConfigured);
    CHECK(r->generation == 2);
    n.Step();
    CHECK(n.Running().size() == 3);
    CHECK(n.orch->Get("web")->ready_replicas == 3);

    REQUIRE(n.orch->Apply(Web(1)).ok());
    n.Step();  // SIGTERM to replicas 1 and 2; the fake processes exit on it
    CHECK(n.Running().size() == 1);
    n.Step();  // removes them
    CHECK(n.runtime->Containers().size() == 1);
    n.Step();  // forgets their status
    Result<WorkloadState> w = n.orch->Get("web");
    REQUIRE(w->replicas.size() == 1);
    CHECK(w->replicas[0].index == 0);
    CHECK(w->replicas[0].restarts == 0);

    REQUIRE(n.orch->Apply(Web(0)).ok());
    n.Step();
    n.Step();
    n.Step();
    CHECK(n.runtime->Containers().empty());
    CHECK(n.orch->Get("web")->replicas.empty());
  }

  TEST_CASE("a warm standby is created but not started - scaling onto it only starts it") {
    Node n;
    WorkloadSpec s = Web(0);
    s.standby_replicas = 1;
    REQUIRE(n.orch->Apply(s).ok());
    n.Step();
    n.Step();
    REQUIRE(n.runtime->Containers().size() == 1);
    const ContainerInfo held = n.runtime->Containers()[0];
    CHECK(held.state == ContainerState::kCreated);
    ReplicaStatus r = n.Replica("web", 0);
    CHECK(r.phase == Phase::kStandby);
    CHECK(r.container_id == held.id);
    Result<WorkloadState> w = n.orch->Get("web");
    CHECK(w->ready_replicas == 0);
    CHECK(n.CountEvents("Created") == 1);
    CHECK(n.CountEvents("Started") == 0);

    s.replicas = 1;
    s.standby_replicas = 0;
    REQUIRE(n.orch->Apply(s).ok());
    n.Step();
    REQUIRE(n.Running().size() == 1);
    CHECK(n.Running()[0].id == held.id);  // the same container: only a start
    r = n.Replica("web", 0);
    CHECK(r.phase == Phase::kRunning);
    CHECK(r.restarts == 0);
    CHECK(n.CountEvents("Started") == 1);
  }

  TEST_CASE("drift: a removed container is recreated, a stray one is removed") {
    Node n;
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    std::string first = n.Replica("web", 0).container_id;
    REQUIRE(n.runtime->ForceRemove(first).ok());

    ContainerSpec stray;
    stray.name = "petrel_n1_old_0";
    stray.labels = {
        {kLabelWorkload, "old"}, {kLabelReplica, "0"}, {kLabelSpecHash, "x"}, {kLabelNode, "n1"}};
    Result<std::string> stray_id = n.runtime->Create(stray);
    REQUIRE(stray_id.ok());
    REQUIRE(n.runtime->Start(*stray_id).ok());

    ContainerSpec other_node = stray;
    other_node.name = "petrel_n2_old_0";
    other_node.labels[kLabelNode] = "n2";
    REQUIRE(n.runtime->Create(other_node).ok());

    n.clock->Advance(10000);  // the periodic resync
    CHECK(n.orch->NextWakeup() <= n.clock->Now());
    n.Step();
    ReplicaStatus st = n.Replica("web", 0);
    CHECK(st.phase == Phase::kRunning);
    CHECK(st.container_id != first);
    CHECK(st.restarts == 1);
    n.Step();  // the stray exited on SIGTERM; now it is removed
    std::vector<ContainerInfo> all = n.runtime->Containers();
    REQUIRE(all.size() == 2);
    for (const ContainerInfo& c : all) CHECK(c.id != *stray_id);
  }

  TEST_CASE("a changed spec replaces the containers: old stopped, new started") {
    Node n;
    REQUIRE(n.orch->Apply(Web(2)).ok());
    n.Step();
    std::string old_hash = n.orch->Get("web")->spec_hash;
    WorkloadSpec changed = Web(2);
    changed.env["MODE"] = "prod";
    REQUIRE(n.orch->Apply(changed).ok());
    n.Step();  // SIGTERM
    n.Step();  // remove
    n.Step();  // create
    Result<WorkloadState> w = n.orch->Get("web");
    CHECK(w->spec_hash != old_hash);
    CHECK(w->ready_replicas == 2);
    std::vector<ContainerInfo> all = n.runtime->Containers();
    REQUIRE(all.size() == 2);
    for (const ContainerInfo& c : all) {
      CHECK(c.labels.at(kLabelSpecHash) == w->spec_hash);
      CHECK(n.runtime->SpecOf(c.id)->env.at("MODE") == "prod");
    }
    // Changing only the restart policy or back-off keeps the containers.
    WorkloadSpec policy = changed;
    policy.restart_policy = RestartPolicy::kOnFailure;
    REQUIRE(n.orch->Apply(policy).ok());
    n.Step();
    CHECK(n.runtime->Containers().size() == 2);
    CHECK(n.Running().size() == 2);
    CHECK(n.runtime->Calls(FakeRuntime::Op::kKill) == 2);
  }

  TEST_CASE("delete stops with SIGTERM, SIGKILLs after the grace period, removes") {
    Node n;
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    n.runtime->SetIgnoreSigterm(true);
    REQUIRE(n.orch->Delete("web").ok());
    // Terminating until its last container is gone; deleting again is a no-op.
    Result<WorkloadState> w = n.orch->Get("web");
    REQUIRE(w.ok());
    CHECK(w->terminating());
    CHECK(w->deleted_at == n.clock->Now());
    CHECK(w->ready_replicas == 0);
    REQUIRE(w->replicas.size() == 1);
    CHECK(n.orch->Delete("web").ok());
    n.Step();
    CHECK(n.CountEvents("Terminating") == 1);
    CHECK(n.Running().size() == 1);
    w = n.orch->Get("web");
    REQUIRE(w.ok());
    CHECK(w->terminating());
    CHECK(w->replicas.at(0).phase == Phase::kStopping);
    CHECK(n.orch->NextWakeup() == n.clock->Now() + 2000);
    n.clock->Advance(1999);
    n.Step();
    CHECK(n.Running().size() == 1);
    n.clock->Advance(1);
    n.Step();  // SIGKILL
    CHECK(n.Running().empty());
    CHECK(n.orch->Get("web").ok());  // its container is not removed yet
    n.Step();
    CHECK(n.runtime->Containers().empty());
    // The removal asks for another pass at once, which sees nothing left.
    CHECK(n.orch->NextWakeup() == n.clock->Now());
    CHECK(n.orch->Get("web").ok());
    n.Step();
    CHECK(n.orch->Get("web").status().IsNotFound());
    Result<std::vector<WorkloadState>> all = n.orch->List();
    REQUIRE(all.ok());
    CHECK(all->empty());
    CHECK(n.orch->Delete("web").IsNotFound());
    CHECK(n.CountEvents("Deleted") == 1);
    CHECK(n.CountEvents("Removed") == 1);
  }

  TEST_CASE("a workload stays Terminating across a restart of petrel") {
    Node n;
    REQUIRE(n.orch->Apply(Web(2)).ok());
    n.Step();
    n.runtime->SetIgnoreSigterm(true);
    REQUIRE(n.orch->Delete("web").ok());
    n.Step();  // SIGTERM, ignored
    n.Reopen();
    Result<WorkloadState> w = n.orch->Get("web");
    REQUIRE(w.ok());
    CHECK(w->terminating());
    CHECK(w->replicas.size() == 2);
    // The new petrel stops them again (a stop in progress starts over) and forgets
    // the workload once both are gone.
    n.Step();
    n.clock->Advance(2000);
    n.Step();  // SIGKILL
    n.Step();  // remove
    n.Step();  // forget
    CHECK(n.runtime->Containers().empty());
    CHECK(n.orch->Get("web").status().IsNotFound());
    n.Reopen();
    CHECK(n.orch->Get("web").status().IsNotFound());
  }

  TEST_CASE("applying a Terminating workload again brings it back") {
    Node n;
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    n.runtime->SetIgnoreSigterm(true);
    REQUIRE(n.orch->Delete("web").ok());
    n.Step();  // SIGTERM, ignored
    Result<ApplyResult> r = n.orch->Apply(Web());
    REQUIRE(r.ok());
    CHECK(r->outcome == ApplyResult::Outcome::kCreated);
    Result<WorkloadState> w = n.orch->Get("web");
    REQUIRE(w.ok());
    CHECK(!w->terminating());
    // The SIGTERMed container still runs the same template: it is kept, not replaced.
    n.Step();
    n.clock->Advance(5000);
    n.Step();
    CHECK(n.Running().size() == 1);
    CHECK(n.orch->Get("web").ok());
    CHECK(n.CountEvents("Deleted") == 0);
  }

  TEST_CASE("restart over the same state dir adopts running containers, no duplicates") {
    Node n;
    REQUIRE(n.orch->Apply(Web(3)).ok());
    n.Step();
    std::vector<ContainerInfo> before = n.runtime->Containers();
    int creates = n.runtime->Calls(FakeRuntime::Op::kCreate);

    n.Reopen();  // petrel restarts; the containers kept running
    REQUIRE(n.orch->List()->size() == 1);
    CHECK(n.orch->Get("web")->generation == 1);
    n.Step();
    n.Step();
    CHECK(n.runtime->Calls(FakeRuntime::Op::kCreate) == creates);
    std::vector<ContainerInfo> after = n.runtime->Containers();
    REQUIRE(after.size() == before.size());
    for (size_t i = 0; i < after.size(); i++) CHECK(after[i].id == before[i].id);
    CHECK(n.orch->Get("web")->ready_replicas == 3);
  }

  TEST_CASE("a container that exited while petrel was down is seen as exited") {
    Node n;
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    std::string id = n.Replica("web", 0).container_id;
    n.orch.reset();
    REQUIRE(n.runtime->Exit(id, 7).ok());
    n.clock->Advance(500);
    n.Reopen();
    n.Step();
    ReplicaStatus st = n.Replica("web", 0);
    CHECK(st.phase == Phase::kCrashLoop);
    CHECK(st.last_exit_code == 7);
    CHECK(st.next_retry == n.clock->Now() + 500);
  }

  TEST_CASE("a runtime failure to create backs off and says why") {
    Node n;
    n.runtime->FailNext(FakeRuntime::Op::kCreate, Status::NotFound("image not found"));
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    ReplicaStatus st = n.Replica("web", 0);
    CHECK(st.phase == Phase::kCrashLoop);
    CHECK(st.message.find("image not found") != std::string::npos);
    CHECK(st.next_retry == n.clock->Now() + 1000);
    CHECK(n.CountEvents("Failed") == 1);
    n.Step();
    CHECK(n.runtime->Calls(FakeRuntime::Op::kCreate) == 1);
    n.clock->Advance(1000);
    n.Step();
    CHECK(n.Replica("web", 0).phase == Phase::kRunning);
    CHECK(n.Replica("web", 0).restarts == 0);
  }

  // The exclusive lease a Cluster sets (Orchestrator::SetExclusiveLease); the fake plays
  // the runtime's watcher with CheckLeases.
  TEST_CASE("an exclusive lease: on exclusive containers only, outside the spec hash") {
    Node n;
    WorkloadSpec old = Web();
    old.name = "old";
    old.exclusive = true;
    // Without a lease set (a node outside a cluster) nothing asks for one.
    REQUIRE(n.orch->Apply(std::vector<WorkloadSpec>{Web(), old}).ok());
    n.Step();
    CHECK(n.runtime->SpecOf(n.Replica("old", 0).container_id)->lease.empty());

    const ContainerLease lease{n.dir.Sub("n1.lease"), 1000};
    testing::WriteFile(lease.path, internal::LeaseText(n.clock->Monotonic()));
    n.orch->SetExclusiveLease(lease);
    WorkloadSpec db = old;
    db.name = "db";
    REQUIRE(n.orch->Apply(db).ok());
    n.Step();
    const ReplicaStatus leased = n.Replica("db", 0);
    REQUIRE(leased.phase == Phase::kRunning);
    Result<ContainerSpec> spec = n.runtime->SpecOf(leased.container_id);
    CHECK(spec->lease == lease);
    CHECK(spec->labels.at(kLabelSpecHash) == n.orch->Get("db")->spec_hash);
    CHECK(n.runtime->SpecOf(n.Replica("web", 0).container_id)->lease.empty());

    // Not renewed (petrel's cluster fenced, or petrel gone): the runtime kills it, and
    // petrel, back, cannot start it again until the lease is renewed.
    n.clock->Advance(1000);
    CHECK(n.runtime->CheckLeases() == std::vector<std::string>{leased.container_id});
    n.Step();
    CHECK(n.Replica("db", 0).phase == Phase::kCrashLoop);
    n.clock->Advance(60000);
    n.Step();
    CHECK(n.Replica("db", 0).phase == Phase::kCrashLoop);
    CHECK(n.Replica("db", 0).message.find("lease " + lease.path + " has run out") !=
          std::string::npos);
    CHECK(n.Replica("web", 0).phase == Phase::kRunning);
    testing::WriteFile(lease.path, internal::LeaseText(n.clock->Monotonic()));
    n.clock->Advance(60000);
    testing::WriteFile(lease.path, internal::LeaseText(n.clock->Monotonic()));
    n.Step();
    CHECK(n.Replica("db", 0).phase == Phase::kRunning);
  }

  TEST_CASE("an exclusive lease on a runtime that cannot enforce one fails the create, saying so") {
    Node n;
    n.runtime->SetLeaseSupport(false);
    n.orch->SetExclusiveLease({n.dir.Sub("n1.lease"), 1000});
    WorkloadSpec db = Web();
    db.name = "db";
    db.exclusive = true;
    REQUIRE(n.orch->Apply(std::vector<WorkloadSpec>{Web(), db}).ok());
    n.Step();
    CHECK(n.Replica("db", 0).phase == Phase::kCrashLoop);
    CHECK(n.Replica("db", 0).message.find("runtime fake cannot enforce a container lease") !=
          std::string::npos);
    CHECK(n.Replica("web", 0).phase == Phase::kRunning);
  }

  TEST_CASE("a failed start removes the container and backs off") {
    Node n;
    n.runtime->FailNext(FakeRuntime::Op::kStart, Status::IOError("exec format error"));
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    CHECK(n.runtime->Containers().empty());
    CHECK(n.Replica("web", 0).phase == Phase::kCrashLoop);
  }

  TEST_CASE("a failing List leaves everything as it was") {
    Node n;
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    n.runtime->FailNext(FakeRuntime::Op::kList, Status::Unavailable("runtime down"));
    Status s = n.orch->Step();
    CHECK(s.code() == Status::Code::kUnavailable);
    CHECK(s.message().find("runtime down") != std::string::npos);
    CHECK(n.Replica("web", 0).phase == Phase::kRunning);
  }

  TEST_CASE("events are numbered, stored and readable after restart") {
    Node n;
    REQUIRE(n.orch->Apply(Web(2)).ok());
    n.Step();
    Result<std::vector<Event>> ev = n.orch->Events(0, 100);
    REQUIRE(ev.ok());
    REQUIRE(ev->size() == n.events.size());
    for (size_t i = 0; i < ev->size(); i++) {
      CHECK((*ev)[i].seq == static_cast<int64_t>(i + 1));
      CHECK((*ev)[i].type == n.events[i].type);
    }
    int64_t last = ev->back().seq;
    n.Reopen();
    REQUIRE(n.orch->Delete("web").ok());
    ev = n.orch->Events(last, 100);
    REQUIRE(ev.ok());
    REQUIRE(ev->size() == 1);
    CHECK(ev->front().seq == last + 1);
    CHECK(ev->front().type == "Terminating");
  }

  TEST_CASE("an idle loop writes nothing to the database") {
    Node n;
    REQUIRE(n.orch->Apply(Web(2)).ok());
    n.Step();
    n.Step();
    std::string db = n.dir.Sub("state") + "/petrel.db";
    sqlite3* conn = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &conn) == SQLITE_OK);
    auto data_version = [&] {
      sqlite3_stmt* st = nullptr;
      REQUIRE(sqlite3_prepare_v2(conn, "PRAGMA data_version", -1, &st, nullptr) == SQLITE_OK);
      REQUIRE(sqlite3_step(st) == SQLITE_ROW);
      int64_t v = sqlite3_column_int64(st, 0);
      sqlite3_finalize(st);
      return v;
    };
    int64_t v0 = data_version();
    for (int i = 0; i < 20; i++) {
      n.clock->Advance(10000);
      n.Step();
    }
    CHECK(data_version() == v0);
    // ...and a change is seen by the same probe, so the probe can fail.
    REQUIRE(n.runtime->Exit(n.Replica("web", 0).container_id, 1).ok());
    n.Step();
    CHECK(data_version() != v0);
    sqlite3_close(conn);
  }

  TEST_CASE("Start runs petrel's own loop thread") {
    TempDir dir;
    auto clock = SystemClock();
    auto runtime = std::make_shared<FakeRuntime>(clock);
    std::unique_ptr<Orchestrator> orch = OpenOrDie(TestOptions(dir, runtime, clock));
    std::mutex mu;
    std::condition_variable cv;
    int started = 0;
    orch->Subscribe([&](const Event& e) {
      std::lock_guard<std::mutex> lock(mu);
      started += e.type == "Started";
      cv.notify_all();
    });
    REQUIRE(orch->Start().ok());
    CHECK(orch->Step().code() == Status::Code::kFailedPrecondition);
    WorkloadSpec s = Web(2);
    s.backoff.initial_ms = 10;  // the restart below comes 10 ms after the exit
    REQUIRE(orch->Apply(s).ok());
    {
      std::unique_lock<std::mutex> lock(mu);
      REQUIRE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return started == 2; }));
    }
    REQUIRE(runtime->Exit(runtime->Containers()[0].id, 1).ok());  // the exit handler wakes it
    {
      std::unique_lock<std::mutex> lock(mu);
      REQUIRE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return started == 3; }));
    }
    orch.reset();  // stops the thread; the containers keep running
    int running = 0;
    for (const ContainerInfo& c : runtime->Containers()) {
      running += c.state == ContainerState::kRunning;
    }
    CHECK(running == 2);
  }

  TEST_CASE("Apply, Get, List, Delete and exits from several threads while the loop runs") {
    TempDir dir;
    auto clock = SystemClock();
    auto runtime = std::make_shared<FakeRuntime>(clock);
    std::unique_ptr<Orchestrator> orch = OpenOrDie(TestOptions(dir, runtime, clock));
    std::atomic<int> delivered{0};
    orch->Subscribe([&](const Event&) { delivered++; });
    REQUIRE(orch->Start().ok());
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; t++) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 40; i++) {
          WorkloadSpec s = Web(1 + i % 3);
          s.name = "w" + std::to_string(t) + "-" + std::to_string(i % 5);
          s.env["I"] = std::to_string(i);
          if (!orch->Apply(s).ok()) failures++;
          if (!orch->Get(s.name).ok()) failures++;
          if (!orch->List().ok()) failures++;
          if (i % 7 == 0 && !orch->Delete(s.name).ok()) failures++;
        }
      });
    }
    threads.emplace_back([&] {
      for (int i = 0; i < 200; i++) {
        for (const ContainerInfo& c : runtime->Containers()) {
          if (c.state == ContainerState::kRunning && i % 3 == 0) (void)runtime->Exit(c.id, 1);
        }
        if (!orch->Events(0, 50).ok()) failures++;
      }
    });
    for (std::thread& t : threads) t.join();
    CHECK(failures == 0);
    orch.reset();
    CHECK(delivered > 0);
    // Reopened, the state is whole and a Step converges on it.
    auto fake_clock = std::make_shared<FakeClock>(clock->Now() + 3600 * 1000);
    REQUIRE(Orchestrator::Open(TestOptions(dir, runtime, fake_clock), &orch).ok());
    for (int i = 0; i < 5; i++) REQUIRE(orch->Step().ok());
    Result<std::vector<WorkloadState>> all = orch->List();
    REQUIRE(all.ok());
    CHECK(all->size() == 12);  // per thread, w-0 was deleted last (i = 35); 4 names remain
    for (const WorkloadState& w : *all) CHECK(w.ready_replicas == w.spec.replicas);
  }

  TEST_CASE("Attach runs on the embedder's libuv loop") {
    TempDir dir;
    auto clock = std::make_shared<FakeClock>();
    auto runtime = std::make_shared<FakeRuntime>(clock);
    std::unique_ptr<Orchestrator> orch;
    REQUIRE(Orchestrator::Open(TestOptions(dir, runtime, clock), &orch).ok());
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(orch->Attach(&loop).ok());
    CHECK(orch->Attach(&loop).code() == Status::Code::kFailedPrecondition);
    REQUIRE(orch->Apply(Web(2)).ok());
    // The runtime calls run on workers: the loop turns until their results are in.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (orch->Get("web")->ready_replicas < 2 && std::chrono::steady_clock::now() < deadline) {
      uv_run(&loop, UV_RUN_NOWAIT);
    }
    CHECK(orch->Get("web")->ready_replicas == 2);
    orch->Detach();
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);  // petrel's handles close; nothing is left
    CHECK(uv_loop_close(&loop) == 0);
  }

  TEST_CASE("a state dir serves one petrel at a time") {
    Node n;
    std::unique_ptr<Orchestrator> second;
    Status s = Orchestrator::Open(TestOptions(n.dir, n.runtime, n.clock), &second);
    CHECK(s.code() == Status::Code::kFailedPrecondition);
    CHECK(s.message() == "state dir " + n.dir.Sub("state") + " is in use by another petrel (pid " +
                             std::to_string(getpid()) + ")");
    n.orch.reset();
    CHECK(Orchestrator::Open(TestOptions(n.dir, n.runtime, n.clock), &second).ok());
  }

  TEST_CASE("Open refuses bad options with a clear message") {
    TempDir dir;
    Options o;
    std::unique_ptr<Orchestrator> orch;
    Status s = Orchestrator::Open(o, &orch);
    CHECK(s.IsInvalidArgument());
    CHECK(s.message() == "options: state_dir is empty");
    o.state_dir = dir.path();
    CHECK(Orchestrator::Open(o, &orch).message() == "options: runtime is not set");
    o.runtime = std::make_shared<FakeRuntime>(SystemClock());
    o.node_name = "bad_node";
    CHECK(Orchestrator::Open(o, &orch).message().find("node_name") != std::string::npos);
  }
}

// --- images: their own step, their own errors ---

TEST_SUITE("orchestrator") {
  TEST_CASE("an image that cannot be pulled is an image error with its own back-off") {
    Node n;
    const std::string image = Web().image;
    n.runtime->SetImageMissing(image, true);
    REQUIRE(n.orch->Apply(Web(2)).ok());
    n.Step();
    for (int i = 0; i < 2; i++) {
      ReplicaStatus r = n.Replica("web", i);
      CHECK(r.phase == Phase::kPulling);
      CHECK(r.message == "image " + image + ": no such image; retry in 1s");
    }
    CHECK(n.runtime->Calls(FakeRuntime::Op::kCreate) == 0);
    CHECK(n.CountEvents("Pulling") == 1);
    CHECK(n.CountEvents("Failed") == 1);
    CHECK(n.CountEvents("BackOff") == 0);
    CHECK(n.orch->NextWakeup() == n.clock->Now() + 1000);

    // The next pull waits for its back-off, which doubles.
    n.clock->Advance(999);
    n.Step();
    CHECK(n.runtime->Calls(FakeRuntime::Op::kPull) == 1);
    n.clock->Advance(1);
    n.Step();
    CHECK(n.runtime->Calls(FakeRuntime::Op::kPull) == 2);
    CHECK(n.Replica("web", 0).message == "image " + image + ": no such image; retry in 2s");

    // Once the image is there, one Step pulls it and starts both replicas.
    n.runtime->SetImageMissing(image, false);
    n.clock->Advance(2000);
    n.Step();
    CHECK(n.Running().size() == 2);
    CHECK(n.CountEvents("Pulled") == 1);
    CHECK(n.runtime->Pulled() == std::vector<std::string>{image});
    CHECK(n.Replica("web", 0).restarts == 0);
    CHECK(n.Replica("web", 0).failures == 0);
  }

  TEST_CASE("a create that fails on its image pulls the image again before the next try") {
    Node n;
    const std::string image = Web().image;
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    REQUIRE(n.Running().size() == 1);
    // The archive goes away while the container runs; then the container exits.
    n.runtime->SetImageMissing(image, true);
    REQUIRE(n.runtime->Exit(n.Running().front().id, 1).ok());
    n.Step();  // BackOff
    n.clock->Advance(1000);
    n.Step();  // remove and create: the create fails on the image
    ReplicaStatus r = n.Replica("web", 0);
    CHECK(r.phase == Phase::kCrashLoop);
    CHECK(r.message.find("no such image") != std::string::npos);
    const int pulls = n.runtime->Calls(FakeRuntime::Op::kPull);
    n.clock->Advance(r.next_retry - n.clock->Now());
    n.Step();  // not another create: a pull, which reports the image's error
    CHECK(n.runtime->Calls(FakeRuntime::Op::kPull) == pulls + 1);
    r = n.Replica("web", 0);
    CHECK(r.phase == Phase::kPulling);
    CHECK(r.message == "image " + image + ": no such image; retry in 1s");
  }
}

// A FakeRuntime whose pulls report progress half way and then call `during` (the
// replica is then Pulling, its pull in flight) before the fake's own pull.
class HalfwayRuntime final : public ContainerRuntime {
 public:
  explicit HalfwayRuntime(std::shared_ptr<FakeRuntime> fake) : fake_(std::move(fake)) {}
  std::function<void()> during;

  std::string Name() const override { return fake_->Name(); }
  Status PullImage(const std::string& image, const PullOptions& options) override {
    if (options.progress) {
      PullProgress p;
      p.phase = "downloading";
      p.bytes_done = 12 * 1048576 + 314573;
      p.bytes_total = 45 * 1048576 + 629146;
      p.layers_done = 2;
      p.layers_total = 5;
      options.progress(p);
    }
    if (during) during();
    return fake_->PullImage(image, options);
  }
  Result<std::string> Create(const ContainerSpec& spec) override { return fake_->Create(spec); }
  Status Start(const std::string& id) override { return fake_->Start(id); }
  Status Kill(const std::string& id, int signal) override { return fake_->Kill(id, signal); }
  Status Remove(const std::string& id) override { return fake_->Remove(id); }
  Result<std::vector<ContainerInfo>> List(
      const std::map<std::string, std::string>& labels) override {
    return fake_->List(labels);
  }
  Result<ContainerInfo> Inspect(const std::string& id) override { return fake_->Inspect(id); }
  Result<LogChunk> Logs(const std::string& id, const LogOptions& options) override {
    return fake_->Logs(id, options);
  }
  void SetExitHandler(ExitHandler handler) override { fake_->SetExitHandler(std::move(handler)); }

 private:
  std::shared_ptr<FakeRuntime> fake_;
};

TEST_SUITE("orchestrator") {
  TEST_CASE("imagePullPolicy IfNotPresent, the default, pulls once: a restart uses the image had") {
    Node n;
    REQUIRE(n.orch->Apply(Web()).ok());
    n.Step();
    REQUIRE(n.Running().size() == 1);
    REQUIRE(n.runtime->Exit(n.Running().front().id, 1).ok());
    n.Step();
    n.clock->Advance(1000);
    n.Step();
    CHECK(n.Running().size() == 1);
    CHECK(n.Replica("web", 0).restarts == 1);
    CHECK(n.runtime->Calls(FakeRuntime::Op::kPull) == 1);
  }

  TEST_CASE("imagePullPolicy Always pulls before each container create, a restart included") {
    Node n;
    WorkloadSpec web = Web(2);
    web.image_pull_policy = PullPolicy::kAlways;
    REQUIRE(n.orch->Apply(web).ok());
    n.Step();
    REQUIRE(n.Running().size() == 2);
    CHECK(n.runtime->Calls(FakeRuntime::Op::kPull) == 1);  // one pull for both creates
    // Running containers stay as they are, however long they run.
    for (int i = 0; i < 3; i++) {
      n.clock->Advance(60000);
      n.Step();
    }
    CHECK(n.runtime->Calls(FakeRuntime::Op::kPull) == 1);
    CHECK(n.runtime->Calls(FakeRuntime::Op::kCreate) == 2);

    // A crash: the replica's next container waits for a pull of its own.
    REQUIRE(n.runtime->Exit(n.Running().front().id, 1).ok());
    n.Step();  // BackOff
    n.clock->Advance(1000);
    n.Step();
    CHECK(n.runtime->Calls(FakeRuntime::Op::kPull) == 2);
    CHECK(n.runtime->Calls(FakeRuntime::Op::kCreate) == 3);
    CHECK(n.Running().size() == 2);
    std::vector<std::string> pulled = n.runtime->Pulled();
    CHECK(pulled == std::vector<std::string>{web.image, web.image});

    // Changing the policy is no change of the template: no container is replaced.
    web.image_pull_policy = PullPolicy::kIfNotPresent;
    REQUIRE(n.orch->Apply(web).ok());
    n.Step();
    CHECK(n.runtime->Calls(FakeRuntime::Op::kCreate) == 3);
    CHECK(n.Running().size() == 2);
  }

  TEST_CASE("imagePullPolicy Never: a missing image is the image's error, with its back-off") {
    Node n;
    WorkloadSpec web = Web();
    web.image_pull_policy = PullPolicy::kNever;
    REQUIRE(n.orch->Apply(web).ok());
    n.Step();
    ReplicaStatus r = n.Replica("web", 0);
    CHECK(r.phase == Phase::kPulling);
    CHECK(r.message ==
          "image " + web.image + ": not present, and imagePullPolicy is Never; retry in 1s");
    CHECK(n.runtime->Calls(FakeRuntime::Op::kCreate) == 0);
    CHECK(n.runtime->Pulled().empty());
    n.clock->Advance(1000);
    n.Step();
    CHECK(n.Replica("web", 0).message.find("retry in 2s") != std::string::npos);

    // Once someone puts the image there, the replica runs without pulling it.
    REQUIRE(n.runtime->PullImage(web.image, PullOptions()).ok());
    n.clock->Advance(2000);
    n.Step();
    CHECK(n.Running().size() == 1);
    CHECK(n.Replica("web", 0).phase == Phase::kRunning);
  }

  TEST_CASE("a replica in Pulling shows its pull's progress, kept in memory only") {
    TempDir dir;
    auto clock = std::make_shared<testing::FakeClock>();
    auto fake = std::make_shared<FakeRuntime>(clock);
    auto runtime = std::make_shared<HalfwayRuntime>(fake);
    std::unique_ptr<Orchestrator> orch = OpenOrDie(TestOptions(dir, runtime, clock));
    const std::string image = Web().image;
    std::optional<ReplicaStatus> seen;
    runtime->during = [&] {
      Result<WorkloadState> w = orch->Get("web");
      if (w.ok() && !w->replicas.empty()) seen = w->replicas[0];
    };
    REQUIRE(orch->Apply(Web()).ok());
    REQUIRE(orch->Step().ok());
    REQUIRE(seen.has_value());
    CHECK(seen->phase == Phase::kPulling);
    CHECK(seen->message == "pulling " + image + ": downloading 12.3 of 45.6 MiB, 2/5 layers");
    REQUIRE(seen->pull.has_value());
    CHECK(seen->pull->bytes_total == 45 * 1048576 + 629146);
    CHECK(seen->pull->layers_done == 2);
    // Once pulled, the progress is gone; the stored status never had it.
    Result<WorkloadState> w = orch->Get("web");
    REQUIRE(w.ok());
    CHECK(w->replicas[0].phase == Phase::kRunning);
    CHECK(!w->replicas[0].pull.has_value());
    orch.reset();
    orch = OpenOrDie(TestOptions(dir, runtime, clock));
    runtime->during = nullptr;
    w = orch->Get("web");
    REQUIRE(w.ok());
    CHECK(w->replicas[0].message.find("pulling") == std::string::npos);
  }
}

// --- Start() mode: runtime calls on worker threads, the loop free meanwhile ---

// Counts the events of each type, for tests whose loop runs on another thread.
class EventCounter {
 public:
  explicit EventCounter(Orchestrator* orch) {
    orch->Subscribe([this](const Event& e) {
      std::lock_guard<std::mutex> lock(mu_);
      counts_[e.type]++;
      cv_.notify_all();
    });
  }
  // Waits up to 10 s of real time until `n` events of `type` came.
  bool Await(const std::string& type, int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return counts_[type] >= n; });
  }
  int Count(const std::string& type) {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_[type];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> counts_;
};

TEST_SUITE("orchestrator") {
  TEST_CASE("runtime calls run beside the loop: a start that hangs holds up nothing else") {
    TempDir dir;
    auto runtime = std::make_shared<FakeRuntime>(SystemClock());
    Options o = TestOptions(dir, runtime, SystemClock());
    o.worker_threads = 4;
    std::unique_ptr<Orchestrator> orch = OpenOrDie(o);
    EventCounter events(orch.get());
    HeldCalls held(runtime.get(), FakeRuntime::Op::kStart);  // released before orch goes
    REQUIRE(orch->Start().ok());
    REQUIRE(orch->Apply(Web(3)).ok());
    // The three starts wait at the runtime's door together: they run side by side.
    REQUIRE(runtime->AwaitHeld(FakeRuntime::Op::kStart, 3));
    Result<WorkloadState> w = orch->Get("web");
    REQUIRE(w.ok());
    for (const ReplicaStatus& r : w->replicas) CHECK(r.phase == Phase::kCreating);
    // Meanwhile the loop takes new work and plans it; a replica with an operation in
    // flight gets no second one, however often the loop passes.
    WorkloadSpec db = Web();
    db.name = "db";
    REQUIRE(orch->Apply(db).ok());
    REQUIRE(runtime->AwaitHeld(FakeRuntime::Op::kStart, 4));
    for (int i = 0; i < 5; i++) {
      db.env["ROUND"] = std::to_string(i);  // a change of db, a pass of the loop
      REQUIRE(orch->Apply(db).ok());
      REQUIRE(events.Await("Applied", 2 + 1 + i));
    }
    CHECK(runtime->Calls(FakeRuntime::Op::kCreate) == 4);
    CHECK(events.Count("Started") == 0);
    held.Release();
    // web's three start; db's first container starts and is then replaced by the
    // latest template: one more create.
    REQUIRE(events.Await("Started", 5));
    orch.reset();
    std::set<std::string> names;
    for (const ContainerInfo& c : runtime->Containers()) {
      if (c.state == ContainerState::kRunning) names.insert(c.name);
    }
    CHECK(names == std::set<std::string>{"petrel_n1_db_0", "petrel_n1_web_0", "petrel_n1_web_1",
                                         "petrel_n1_web_2"});
  }

  TEST_CASE("Start() mode: a failed start backs off alone, the others run") {
    TempDir dir;
    auto runtime = std::make_shared<FakeRuntime>(SystemClock());
    std::unique_ptr<Orchestrator> orch = OpenOrDie(TestOptions(dir, runtime, SystemClock()));
    EventCounter events(orch.get());
    runtime->FailNext(FakeRuntime::Op::kStart, Status::IOError("no luck"));
    REQUIRE(orch->Start().ok());
    REQUIRE(orch->Apply(Web(5)).ok());
    REQUIRE(events.Await("Started", 4));
    REQUIRE(events.Await("Failed", 1));
    Result<WorkloadState> w = orch->Get("web");
    REQUIRE(w.ok());
    int crashloop = 0;
    for (const ReplicaStatus& r : w->replicas) {
      if (r.phase != Phase::kCrashLoop) continue;
      crashloop++;
      CHECK(r.message.find("no luck") != std::string::npos);
    }
    CHECK(crashloop == 1);
    CHECK(w->ready_replicas == 4);
    orch.reset();
    CHECK(runtime->Containers().size() == 4);  // the failed one was removed again
  }
}

}  // namespace
}  // namespace petrel
