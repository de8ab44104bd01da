// The replicated state machine (ClusterState) and the cluster logic on the public
// fixture (petrel::testing::ClusterFixture): elections, forwarded writes, partitions,
// snapshots, joins and removals, with every live node checked to hold the same state
// after each step.
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "lib/cluster/state.h"
#include "petrel/spec.h"
#include "petrel/testing/cluster_fixture.h"

namespace petrel::internal {
namespace {

using petrel::testing::ClusterFixture;

WorkloadSpec Spec(const std::string& name, const std::string& image = "oci:/images/a") {
  WorkloadSpec spec;
  spec.name = name;
  spec.image = image;
  spec.command = {"/bin/sleep", "1000"};
  return spec;
}

TEST_CASE("cluster state: puts are all or nothing and count generations") {
  ClusterState s;
  Result<std::vector<ApplyResult>> r =
      PutResults(s.Apply(1, PutEntry({Spec("a"), Spec("b")}, "n1", 100)));
  REQUIRE(r.ok());
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].outcome == ApplyResult::Outcome::kCreated);
  CHECK((*r)[0].generation == 1);
  r = PutResults(s.Apply(2, PutEntry({Spec("a"), Spec("b", "oci:/images/b")}, "n2", 200)));
  REQUIRE(r.ok());
  CHECK((*r)[0].outcome == ApplyResult::Outcome::kUnchanged);
  CHECK((*r)[1].outcome == ApplyResult::Outcome::kConfigured);
  CHECK((*r)[1].generation == 2);
  // An existing workload keeps its node; updated_at moves, created_at does not.
  CHECK(s.workloads().at("b").node == "n1");
  CHECK(s.workloads().at("b").created_at == 100);
  CHECK(s.workloads().at("b").updated_at == 200);
  // One bad spec: nothing of the entry is stored.
  WorkloadSpec bad = Spec("c");
  bad.replicas = -1;
  r = PutResults(s.Apply(3, PutEntry({Spec("d"), bad}, "n1", 300)));
  CHECK_FALSE(r.ok());
  CHECK(s.workloads().count("d") == 0);
  CHECK(s.applied_index() == 3);
  CHECK(ResultStatus(s.Apply(4, DeleteEntry("a"))).ok());
  CHECK(ResultStatus(s.Apply(5, DeleteEntry("a"))).IsNotFound());
  // A barrier changes nothing but the applied index.
  const std::string before = s.workloads().at("b").spec_json;
  CHECK(ResultStatus(s.Apply(6, BarrierEntry())).ok());
  CHECK(s.applied_index() == 6);
  CHECK(s.workloads().size() == 1);
  CHECK(s.workloads().at("b").generation == 2);
  CHECK(s.workloads().at("b").spec_json == before);
}

TEST_CASE("cluster state: members - revocation - token and settings") {
  ClusterState s;
  ClusterSettings settings;
  settings.heartbeat_ms = 100;
  CHECK(ResultStatus(s.Apply(1, InitEntry("c1", "CA", "KEY", "secret", settings))).ok());
  CHECK(s.initialized());
  CHECK(s.settings().heartbeat_ms == 100);
  CHECK(ResultStatus(s.Apply(2, InitEntry("c2", "CA", "KEY", "x", settings))).code() ==
        Status::Code::kFailedPrecondition);
  CHECK(s.cluster_id() == "c1");
  ClusterMember m;
  m.name = "n2";
  m.id = 7;
  m.address = "10.0.0.2:7400";
  m.role = "voter";
  m.fingerprint = "f2";
  CHECK(ResultStatus(s.Apply(3, MemberEntry(m))).ok());
  REQUIRE(s.MemberById(7) != nullptr);
  CHECK(s.MemberById(7)->name == "n2");
  CHECK(ResultStatus(s.Apply(4, RemoveEntry("n2"))).ok());
  CHECK(s.MemberByName("n2") == nullptr);
  CHECK(s.revoked().count("f2") == 1);
  CHECK(ResultStatus(s.Apply(5, RemoveEntry("n2"))).IsNotFound());
  CHECK(ResultStatus(s.Apply(6, TokenEntry("new"))).ok());
  CHECK(s.token_secret() == "new");
}

TEST_CASE("cluster state: a snapshot restores the same state - bad input changes nothing") {
  ClusterState a;
  (void)a.Apply(1, InitEntry("c1", "CA", "KEY", "secret", {}));
  (void)a.Apply(2, PutEntry({Spec("a"), Spec("b")}, "n1", 100));
  ClusterMember m;
  m.name = "n1";
  m.id = 1;
  m.address = "x:1";
  m.role = "voter";
  m.labels = {{"zone", "attic"}};
  (void)a.Apply(3, MemberEntry(m));
  m.capacity_memory_bytes = 1 << 30;
  m.capacity_cpu_millis = 2000;
  (void)a.Apply(4, MemberEntry(m));
  (void)a.Apply(5, DrainEntry("n1", true));
  (void)a.Apply(6, AssignEntry({{"a", {"n1"}}, {"b", {"n2"}}}, {{"a", "n2"}}));
  ClusterState b;
  REQUIRE(b.Restore(a.Snapshot()).ok());
  CHECK(b.Snapshot() == a.Snapshot());
  CHECK(b.applied_index() == 6);
  // Every field comes back, not only the text.
  const ClusterMember* n1 = b.MemberByName("n1");
  CHECK(n1->labels.at("zone") == "attic");
  CHECK(n1->draining);
  CHECK(n1->capacity_memory_bytes == 1 << 30);
  CHECK(n1->capacity_cpu_millis == 2000);
  CHECK(b.workloads().at("a").assigned == std::vector<std::string>{"n1"});
  CHECK(b.workloads().at("b").assigned == std::vector<std::string>{"n2"});
  CHECK(b.workloads().at("a").standby == "n2");
  CHECK(b.workloads().at("b").standby == "");
  CHECK(b.Restore("{\"version\":1}").code() == Status::Code::kCorruption);
  CHECK(b.Restore("not json").code() == Status::Code::kCorruption);
  CHECK(b.Restore("{\"version\":2}").code() == Status::Code::kNotSupported);
  CHECK(b.Snapshot() == a.Snapshot());
  // An entry petrel did not write changes nothing and says so.
  CHECK(ResultStatus(b.Apply(4, "[1,2]")).code() == Status::Code::kCorruption);
  CHECK(ResultStatus(b.Apply(5, "{\"type\":\"later\"}")).code() == Status::Code::kNotSupported);
  CHECK(ResultStatus(b.Apply(6, "{\"type\":\"put\",\"specs\":3}")).code() ==
        Status::Code::kCorruption);
  CHECK(b.workloads().size() == 2);
}

TEST_CASE("cluster fixture: elects a leader - a write through a follower lands everywhere") {
  ClusterFixture f(3);
  const int leader = f.StepUntilLeader();
  REQUIRE(leader >= 0);
  f.Run(500);  // followers apply once the next heartbeat tells them the commit index
  CHECK(f.Converged());
  const int follower = (leader + 1) % 3;
  REQUIRE(f.Apply(follower, {Spec("web")}).ok());
  // Read your writes: the follower holds it as soon as Apply returns.
  CHECK(f.Workloads(follower).count("web") == 1);
  f.Run(200);
  CHECK(f.Converged());
  for (int i = 0; i < 3; i++) {
    REQUIRE(f.Workloads(i).count("web") == 1);
    CHECK(f.Workloads(i).at("web").find("@node" + std::to_string(follower)) != std::string::npos);
    CHECK(f.Members(i).size() == 3);
  }
  REQUIRE(f.Delete(leader, "web").ok());
  CHECK(f.Delete(follower, "web").IsNotFound());
  f.Run(200);
  CHECK(f.Converged());
  CHECK(f.Workloads((leader + 2) % 3).empty());
}

TEST_CASE("cluster fixture: losing the leader costs an election - it rejoins and catches up") {
  ClusterFixture f(3);
  int leader = f.StepUntilLeader();
  REQUIRE(leader >= 0);
  REQUIRE(f.Apply(leader, {Spec("a")}).ok());
  const int64_t killed_at = f.now();
  f.Kill(leader);
  const int next = f.StepUntilLeader(5000);
  REQUIRE(next >= 0);
  CHECK(next != leader);
  // With pre-vote and the fixture's 1 s election timeout, a few seconds at most.
  CHECK(f.now() - killed_at < 5000);
  const int other = 3 - leader - next;
  REQUIRE(f.Apply(other, {Spec("b")}).ok());
  f.Revive(leader);
  f.Run(3000);
  CHECK(f.Converged());
  CHECK(f.Workloads(leader).count("b") == 1);
  CHECK(f.Leader() == next);  // pre-vote: the returning node does not disrupt
}

TEST_CASE("cluster fixture: a minority cannot write - healing converges on the majority") {
  ClusterFixture f(3);
  const int leader = f.StepUntilLeader();
  REQUIRE(leader >= 0);
  REQUIRE(f.Apply(leader, {Spec("a")}).ok());
  f.Isolate(leader);
  // The cut-off leader cannot commit.
  Status s = f.Apply(leader, {Spec("lost")}, 3000);
  CHECK_FALSE(s.ok());
  const int follower = (leader + 1) % 3;
  // The majority elects another leader and goes on.
  REQUIRE(f.Apply(follower, {Spec("kept")}, 10000).ok());
  f.Reconnect(leader);
  f.Run(5000);
  CHECK(f.Converged());
  for (int i = 0; i < 3; i++) {
    CHECK(f.Workloads(i).count("kept") == 1);
    CHECK(f.Workloads(i).count("lost") == 0);
  }
}

TEST_CASE("cluster fixture: a node that fell behind gets a snapshot") {
  ClusterFixture f(3, /*snapshot_threshold=*/8);
  const int leader = f.StepUntilLeader();
  REQUIRE(leader >= 0);
  const int behind = (leader + 1) % 3;
  f.Kill(behind);
  for (int i = 0; i < 40; i++) {
    REQUIRE(f.Apply(leader, {Spec("w" + std::to_string(i))}).ok());
  }
  CHECK(f.restores(behind) == 0);
  f.Revive(behind);
  f.Run(5000);
  CHECK(f.restores(behind) >= 1);
  CHECK(f.Converged());
  CHECK(f.Workloads(behind).size() == 40);
}

TEST_CASE("cluster fixture: joins need the token - a removed node is gone everywhere") {
  ClusterFixture f(3);
  const int leader = f.StepUntilLeader();
  REQUIRE(leader >= 0);
  REQUIRE(f.Apply(leader, {Spec("a")}).ok());
  // Through a follower, which passes the join on to the leader.
  Result<int> wrong = f.Join((leader + 1) % 3, 20000, "not-the-secret-0123456789");
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().code() == Status::Code::kPermissionDenied);
  Result<int> joined = f.Join((leader + 1) % 3);
  REQUIRE(joined.ok());
  f.Run(2000);
  CHECK(f.Converged());
  CHECK(f.Members(*joined).size() == 4);  // the refused newcomer never became one
  CHECK(f.Workloads(*joined).count("a") == 1);
  // Writes now need 3 of 4 voters: still fine with one node down.
  f.Kill((leader + 2) % 3);
  REQUIRE(f.Apply(*joined, {Spec("b")}).ok());
  f.Revive((leader + 2) % 3);
  REQUIRE(f.Remove(*joined, (leader + 2) % 3).ok());
  f.Run(2000);
  CHECK(f.Converged());
  CHECK(f.Members(leader).size() == 3);
}

// Every replica is placed on a node in `nodes`, once per index.
bool PlacedOn(const std::vector<std::string>& placement, int replicas,
              const std::set<std::string>& nodes) {
  if (static_cast<int>(placement.size()) != replicas) return false;
  for (const std::string& n : placement) {
    if (nodes.count(n) == 0) return false;
  }
  return true;
}

std::string Name(int i) { return "node" + std::to_string(i); }

TEST_CASE("cluster fixture: replicas spread - a lost node's replicas move in under 2 s") {
  ClusterFixture f(3);
  const int leader = f.StepUntilLeader();
  REQUIRE(leader >= 0);
  WorkloadSpec web = Spec("web");
  web.replicas = 3;
  REQUIRE(f.Apply(leader, {web}).ok());
  f.Run(1000);
  std::vector<std::string> placed = f.Placement(leader, "web");
  REQUIRE(placed.size() == 3);
  CHECK(std::set<std::string>(placed.begin(), placed.end()).size() == 3);  // spread
  CHECK(f.Converged());
  // A follower dies: its replica runs elsewhere once it has been silent nodeLostAfter.
  const int victim = (leader + 1) % 3;
  const int64_t killed_at = f.now();
  f.Kill(victim);
  std::set<std::string> alive = {Name(leader), Name((leader + 2) % 3)};
  int64_t moved_at = -1;
  for (int step = 0; step < 100 && moved_at < 0; step++) {
    f.Run(50);
    if (PlacedOn(f.Placement(leader, "web"), 3, alive)) moved_at = f.now();
  }
  REQUIRE(moved_at > 0);
  MESSAGE("replica of a lost follower placed again " << moved_at - killed_at << " ms after");
  CHECK(moved_at - killed_at >= 1500);  // not before nodeLostAfter
  CHECK(moved_at - killed_at < 2000);
  CHECK_FALSE(f.Ready(leader, Name(victim)));
  // It comes back: nothing moves back, nothing runs twice.
  f.Revive(victim);
  f.Run(2000);
  CHECK(f.Ready(leader, Name(victim)));
  CHECK(PlacedOn(f.Placement(victim, "web"), 3, alive));
  CHECK(f.Converged());
}

TEST_CASE(
    "cluster fixture: a warm standby takes over a lost node's replica - a new one is chosen") {
  ClusterFixture f(3);
  const int leader = f.StepUntilLeader();
  REQUIRE(leader >= 0);
  WorkloadSpec mqtt = Spec("mqtt");
  mqtt.standby = "warm";
  mqtt.exclusive = true;
  REQUIRE(f.Apply(leader, {mqtt}).ok());
  f.Run(1000);
  std::vector<std::string> placed = f.Placement(leader, "mqtt");
  REQUIRE(placed.size() == 1);
  const std::string standby = f.Standby(leader, "mqtt");
  REQUIRE(!standby.empty());
  CHECK(standby != placed[0]);
  CHECK(f.Converged());
  // The node running it dies (a follower, so the leader decides at once).
  int victim = -1;
  for (int i = 0; i < 3; i++) {
    if (Name(i) == placed[0]) victim = i;
  }
  REQUIRE(victim >= 0);
  if (victim == leader) {
    // Kill the leader then: the next one judges from what it heard as a follower.
    f.Kill(victim);
    REQUIRE(f.StepUntilLeader() >= 0);
  } else {
    f.Kill(victim);
  }
  const int judge = f.Leader();
  for (int step = 0; step < 100 && f.Placement(judge, "mqtt") == placed; step++) f.Run(50);
  CHECK(f.Placement(judge, "mqtt") == std::vector<std::string>{standby});
  f.Run(200);
  // The third node, the only one left that runs none of it, is the new standby.
  const std::string next = f.Standby(judge, "mqtt");
  CHECK(next != standby);
  CHECK(next != placed[0]);
  CHECK(!next.empty());
  // The dead node comes back: the replica stays, the standby stays.
  f.Revive(victim);
  f.Run(2000);
  CHECK(f.Placement(judge, "mqtt") == std::vector<std::string>{standby});
  CHECK(f.Standby(judge, "mqtt") == next);
  CHECK(f.Converged());
}

TEST_CASE("cluster fixture: losing the leader costs the election and nothing more") {
  ClusterFixture f(3);
  const int leader = f.StepUntilLeader();
  REQUIRE(leader >= 0);
  WorkloadSpec web = Spec("web");
  web.replicas = 3;
  REQUIRE(f.Apply(leader, {web}).ok());
  f.Run(1000);
  const int64_t killed_at = f.now();
  f.Kill(leader);
  std::set<std::string> alive = {Name((leader + 1) % 3), Name((leader + 2) % 3)};
  int64_t moved_at = -1;
  int next = -1;
  for (int step = 0; step < 200 && moved_at < 0; step++) {
    f.Run(50);
    next = f.Leader();
    if (next >= 0 && PlacedOn(f.Placement(next, "web"), 3, alive)) moved_at = f.now();
  }
  REQUIRE(moved_at > 0);
  MESSAGE("leader's replica placed again " << moved_at - killed_at << " ms after");
  // The new leader heard the old one's silence as a follower: no second period.
  CHECK(moved_at - killed_at < 1500 + 1500);
  f.Revive(leader);
  f.Run(2000);
  CHECK(f.Converged());
}

TEST_CASE("cluster fixture: draining moves replicas away - nodeSelector picks nodes") {
  ClusterFixture f(3);
  const int leader = f.StepUntilLeader();
  REQUIRE(leader >= 0);
  REQUIRE(f.Label((leader + 1) % 3, {{"zone", "attic"}}).ok());
  WorkloadSpec cam = Spec("cam");
  cam.node_selector = {{"zone", "attic"}};
  WorkloadSpec web = Spec("web");
  web.replicas = 2;
  REQUIRE(f.Apply(leader, {cam, web}).ok());
  f.Run(1000);
  CHECK(f.Placement(leader, "cam") == std::vector<std::string>{Name((leader + 1) % 3)});
  const int drained = (leader + 2) % 3;
  REQUIRE(f.Drain(leader, drained, true).ok());
  f.Run(1000);
  for (const std::string& n : f.Placement(leader, "web")) CHECK(n != Name(drained));
  REQUIRE(f.Drain(leader, drained, false).ok());
  f.Run(500);
  CHECK(f.Converged());
}

// How many live nodes run `workload` now.
int RunningOn(const ClusterFixture& f, const std::string& workload) {
  int n = 0;
  for (int i = 0; i < f.size(); i++) n += f.Runs(i, workload) ? 1 : 0;
  return n;
}

// Elects a leader of `f`, applies the exclusive workload "lock" through node
// (leader + via) % size and lets 1 s pass. Returns the leader.
int ApplyLock(ClusterFixture* f, int via) {
  const int leader = f->StepUntilLeader();
  REQUIRE(leader >= 0);
  WorkloadSpec lock = Spec("lock");
  lock.exclusive = true;
  REQUIRE(f->Apply((leader + via) % f->size(), {lock}).ok());
  f->Run(1000);
  return leader;
}

TEST_CASE("cluster fixture: an exclusive workload never runs twice across partitions") {
  ClusterFixture f(3);
  const int owner = (ApplyLock(&f, 1) + 1) % 3;
  REQUIRE(f.Runs(owner, "lock"));
  // Cut the owner off, one way and then both ways, heal, cut the leader: sampled every
  // 50 ms of simulated time, never two, and it runs again somewhere within 3 s of a cut.
  for (int round = 0; round < 3; round++) {
    int victim = -1;
    for (int i = 0; i < 3; i++) {
      if (f.Runs(i, "lock")) victim = i;
    }
    REQUIRE(victim >= 0);
    f.Isolate(victim);
    const int64_t cut_at = f.now();
    int64_t stopped_after = -1, elsewhere_after = -1;
    while (f.now() - cut_at < 5000) {
      f.Run(50);
      REQUIRE(RunningOn(f, "lock") <= 1);
      if (stopped_after < 0 && !f.Runs(victim, "lock")) stopped_after = f.now() - cut_at;
      if (elsewhere_after < 0 && RunningOn(f, "lock") == 1 && !f.Runs(victim, "lock")) {
        elsewhere_after = f.now() - cut_at;
      }
    }
    MESSAGE("round " << round << ": stopped on the cut-off node " << stopped_after
                     << " ms after the cut, running elsewhere " << elsewhere_after << " ms after");
    CHECK(stopped_after > 0);
    CHECK(stopped_after <= 1300);  // fenceAfter after its last acknowledged round trip
    CHECK(elsewhere_after > stopped_after);
    CHECK(elsewhere_after <= 3000);
    CHECK(f.Fenced(victim));
    f.Reconnect(victim);
    for (int t = 0; t < 60; t++) {
      f.Run(50);
      REQUIRE(RunningOn(f, "lock") <= 1);
    }
    CHECK_FALSE(f.Fenced(victim));
    CHECK(RunningOn(f, "lock") == 1);
  }
  CHECK(f.Converged());
}

// A node's own replica may be stale (restarted, raft behind) and still assign it an
// exclusive workload the leader moved: it holds back while a peer reports running it.
TEST_CASE("cluster fixture: another node's exclusive workload is seen running until it is silent") {
  ClusterFixture f(3);
  ApplyLock(&f, 0);
  int owner = -1;
  for (int i = 0; i < 3; i++) {
    if (f.Runs(i, "lock")) owner = i;
  }
  REQUIRE(owner >= 0);
  const int other = (owner + 1) % 3;
  CHECK(f.RunsElsewhere(other, "lock"));
  CHECK_FALSE(f.RunsElsewhere(owner, "lock"));  // itself does not count
  CHECK_FALSE(f.RunsElsewhere(other, "web"));
  f.Kill(owner);
  f.Run(600);
  CHECK(f.RunsElsewhere(other, "lock"));  // heard within fenceAfter: it may still run it
  f.Run(600);
  CHECK_FALSE(f.RunsElsewhere(other, "lock"));  // silent past fenceAfter: fenced or killed
}

// A partial partition: the owner of an exclusive workload loses its link to the leader
// only. It still hears the third node, so it is not fenced and keeps the workload; the
// leader, which cannot hear it, must not move it to itself on its own word (the third
// node, drained, is no candidate). The third node's heartbeat answers say it hears the
// owner: the leader counts the owner as up.
TEST_CASE("cluster fixture: an owner cut off from the leader only keeps its exclusive workload") {
  ClusterFixture f(3);
  const int leader = ApplyLock(&f, 0);
  int owner = -1;
  for (int i = 0; i < 3; i++) {
    if (f.Runs(i, "lock")) owner = i;
  }
  REQUIRE(owner >= 0);
  if (owner == leader) {  // away from the leader first
    REQUIRE(f.Drain(leader, leader, true).ok());
    for (int t = 0; t < 60 && f.Runs(leader, "lock"); t++) f.Run(50);
    REQUIRE(f.Drain(leader, leader, false).ok());
    f.Run(500);
    owner = -1;
    for (int i = 0; i < 3; i++) {
      if (f.Runs(i, "lock")) owner = i;
    }
  }
  REQUIRE(owner >= 0);
  REQUIRE(owner != leader);
  const int third = 3 - owner - leader;
  REQUIRE(f.Drain(leader, third, true).ok());
  f.Run(500);
  REQUIRE(f.Runs(owner, "lock"));
  f.Cut(owner, leader);
  for (int t = 0; t < 100; t++) {  // 5 s: over 3 times nodeLostAfter
    f.Run(50);
    REQUIRE_MESSAGE(RunningOn(f, "lock") <= 1, "lock runs twice " << f.now() << " ms in");
  }
  CHECK_FALSE(f.Fenced(owner));
  CHECK(f.Runs(owner, "lock"));
  CHECK(f.Ready(leader, Name(owner)));  // on the third node's word
  f.Heal(owner, leader);
  for (int t = 0; t < 40; t++) {
    f.Run(50);
    REQUIRE(RunningOn(f, "lock") <= 1);
  }
  CHECK(RunningOn(f, "lock") == 1);
}

TEST_CASE("cluster fixture: draining moves an exclusive workload without overlap") {
  ClusterFixture f(3);
  const int leader = ApplyLock(&f, 0);
  REQUIRE(f.Runs(leader, "lock"));
  REQUIRE(f.Drain((leader + 1) % 3, leader, true).ok());
  bool moved = false;
  for (int t = 0; t < 60; t++) {
    f.Run(50);
    REQUIRE(RunningOn(f, "lock") <= 1);
    moved = moved || (RunningOn(f, "lock") == 1 && !f.Runs(leader, "lock"));
  }
  CHECK(moved);
}

}  // namespace
}  // namespace petrel::internal
