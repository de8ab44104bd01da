// Clusters of real petrel nodes in one process: each node a Cluster around its own
// Orchestrator (fake runtime), talking mutual TLS over 127.0.0.1 with raft_uv on disk,
// on real time. What tests/cluster/cluster_test.sh does with petreld processes in
// network namespaces, here fast and under the sanitizers.
#include <doctest/doctest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "petrel/cluster.h"
#include "petrel/testing/fake_program.h"
#include "petrel/testing/fake_runtime.h"
#include "tests/lib/doctest_main.h"
#include "tests/lib/files.h"
#include "tests/lib/wait.h"

namespace petrel::testing {
namespace {

// Ports of this run: apart from other runs of it by the PID.
int Port(int i) { return 21000 + static_cast<int>(getpid() % 8000) * 4 + i; }
std::string Address(int i) { return "127.0.0.1:" + std::to_string(Port(i)); }

// What a node logged, to find refusals in.
struct LogBook {
  std::mutex mu;
  std::vector<std::string> lines;
  LogSink Sink() {
    return [this](LogLevel, std::string_view m) {
      std::lock_guard<std::mutex> lock(mu);
      lines.emplace_back(m);
    };
  }
  bool Has(const std::string& text) {
    std::lock_guard<std::mutex> lock(mu);
    for (const std::string& l : lines) {
      if (l.find(text) != std::string::npos) return true;
    }
    return false;
  }
};

struct Node {
  std::string name;
  std::string dir;
  int index = 0;
  std::shared_ptr<FakeHost> host = std::make_shared<FakeHost>();
  LogBook log;
  std::unique_ptr<Cluster> cluster;
  std::shared_ptr<FakeRuntime> runtime;
  std::map<std::string, std::string> labels;
  int64_t capacity_memory_bytes = 0;

  Status Open(const std::string& join = "", const std::string& token = "", bool witness = false) {
    Options o;
    o.state_dir = dir;
    runtime = std::make_shared<FakeRuntime>(SystemClock(), host);
    o.runtime = runtime;
    o.node_name = name;
    o.log_sink = [](LogLevel, std::string_view) {};
    o.resync_interval_ms = 500;
    std::unique_ptr<Orchestrator> local;
    PETREL_RETURN_IF_ERROR(Orchestrator::Open(o, &local));
    ClusterOptions c;
    c.state_dir = dir;
    c.node_name = name;
    c.peer_listen = Address(index);
    c.join = join;
    c.token = token;
    c.witness = witness;
    c.labels = labels;
    c.capacity_memory_bytes = capacity_memory_bytes;
    c.log_sink = log.Sink();
    c.write_timeout_ms = 5000;
    c.lease_dir = dir + "-leases";  // not /run/petrel: the test's own
    PETREL_RETURN_IF_ERROR(Cluster::Open(c, std::move(local), &cluster));
    return cluster->Start();
  }
  void Close() { cluster.reset(); }
};

WorkloadSpec Spec(const std::string& name) {
  WorkloadSpec spec;
  spec.name = name;
  spec.image = "fake:busybox";
  spec.command = {kFakeProgram, "run"};
  return spec;
}

bool ReadyMembers(Cluster* c, size_t n) {
  Result<std::vector<NodeInfo>> nodes = c->Nodes();
  if (!nodes.ok() || nodes->size() != n) return false;
  int leaders = 0;
  for (const NodeInfo& node : *nodes) {
    if (node.status != "Ready") return false;
    leaders += node.leader;
  }
  return leaders == 1;
}

TEST_CASE("cluster over TLS: init - join - write anywhere - read everywhere - failover - removal") {
  TempDir tmp;
  std::vector<std::unique_ptr<Node>> nodes;
  for (int i = 0; i < 4; i++) {
    auto n = std::make_unique<Node>();
    n->name = "n" + std::to_string(i);
    n->dir = tmp.Sub(n->name);
    n->index = i;
    nodes.push_back(std::move(n));
  }
  Node& a = *nodes[0];
  Node& b = *nodes[1];
  Node& c = *nodes[2];
  Node& d = *nodes[3];

  REQUIRE(a.Open().ok());
  // Before init: a single node, as without peers.
  REQUIRE(a.cluster->Apply(Spec("before")).ok());
  Result<std::string> token = a.cluster->Init({});
  REQUIRE_MESSAGE(token.ok(), token.status().ToString());
  CHECK(token->rfind("PETREL1.", 0) == 0);
  CHECK(a.cluster->Init({}).status().code() == Status::Code::kFailedPrecondition);

  // A wrong secret is refused, and the newcomer stores nothing.
  std::string wrong = *token;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  Status refused = d.Open(Address(0), wrong);
  CHECK(refused.code() == Status::Code::kPermissionDenied);
  d.Close();

  Status joined = b.Open(Address(0), *token);
  REQUIRE_MESSAGE(joined.ok(), joined.ToString());
  joined = c.Open(Address(1), *token);  // through a follower
  REQUIRE_MESSAGE(joined.ok(), joined.ToString());
  REQUIRE(WaitFor([&] { return ReadyMembers(a.cluster.get(), 3); }, 30));
  REQUIRE(WaitFor([&] { return ReadyMembers(c.cluster.get(), 3); }, 30));

  // Written on a follower, read on every node; the leader places it on that follower.
  REQUIRE(b.cluster->Apply(Spec("web")).ok());
  REQUIRE(b.cluster->Get("web").ok());  // read your writes
  for (Node* n : {&a, &b, &c}) {
    auto placed = [&] {
      Result<WorkloadState> w = n->cluster->Get("web");
      return w.ok() && w->replicas.size() == 1 && w->replicas[0].node == "n1";
    };
    CHECK(WaitFor(placed, 10));
    // The workload applied before init came along, on the node that had it.
    REQUIRE(n->cluster->Get("before").ok());
    CHECK(n->cluster->Get("before")->replicas[0].node == "n0");
  }
  // Running there, as every node hears from its heartbeats.
  const bool running = WaitFor([&] {
    for (Node* n : {&a, &b, &c}) {
      Result<WorkloadState> w = n->cluster->Get("web");
      if (!w.ok() || w->replicas[0].phase != Phase::kRunning || w->ready_replicas != 1)
        return false;
    }
    return true;
  });
  if (!running) {
    Result<WorkloadState> w = b.cluster->Get("web");
    MESSAGE("web on n1: " << PhaseName(w->replicas[0].phase) << ": " << w->replicas[0].message);
    for (const std::string& line : b.log.lines) MESSAGE(line);
  }
  REQUIRE(running);

  // The leader goes away: another takes over and writes go on.
  Result<ClusterStatus> st = b.cluster->GetStatus();
  REQUIRE(st.ok());
  Node* leader = nullptr;
  for (Node* n : {&a, &b, &c}) {
    if (n->name == st->leader) leader = n;
  }
  REQUIRE(leader != nullptr);
  leader->Close();
  Node* survivor = leader == &b ? &c : &b;
  REQUIRE(WaitFor(
      [&] {
        Result<ClusterStatus> s = survivor->cluster->GetStatus();
        return s.ok() && !s->leader.empty() && s->leader != leader->name;
      },
      15));
  REQUIRE(survivor->cluster->Apply(Spec("after")).ok());
  // Back with its state dir: it rejoins and catches up.
  REQUIRE(leader->Open().ok());
  REQUIRE(WaitFor([&] { return leader->cluster->Get("after").ok(); }, 20));

  // A witness votes and runs nothing: a write through it is refused.
  Status witness = d.Open(Address(1), *token, /*witness=*/true);
  REQUIRE_MESSAGE(witness.ok(), witness.ToString());
  REQUIRE(WaitFor([&] { return ReadyMembers(a.cluster.get(), 4); }, 30));
  CHECK(d.cluster->Apply(Spec("on-witness")).status().code() == Status::Code::kFailedPrecondition);
  Result<std::vector<NodeInfo>> four = a.cluster->Nodes();
  REQUIRE(four.ok());
  for (const NodeInfo& n : *four) CHECK(n.role == (n.name == "n3" ? "witness" : "voter"));
  REQUIRE(WaitFor([&] { return d.cluster->Get("after").ok(); }, 10));  // it reads like any member
  REQUIRE(a.cluster->RemoveNode("n3").ok());
  d.Close();

  // Removed: its certificate is refused from then on.
  Status removed = a.cluster->RemoveNode("n2");
  REQUIRE_MESSAGE(removed.ok(), removed.ToString());
  removed = a.cluster->RemoveNode("n2");
  CHECK_MESSAGE(removed.IsNotFound(), removed.ToString());
  c.Close();
  REQUIRE(c.Open().ok());
  const bool revoked = WaitFor([&] { return a.log.Has("revoked") || b.log.Has("revoked"); }, 15);
  if (!revoked) {
    for (const std::string& line : c.log.lines) MESSAGE("n2: " << line);
    for (const std::string& line : a.log.lines) MESSAGE("n0: " << line);
  }
  CHECK(revoked);
  // The removed node says so too, and keeps what it runs.
  const bool told = WaitFor([&] { return c.log.Has("cannot confirm its membership"); }, 15);
  if (!told) {
    for (const std::string& line : c.log.lines) MESSAGE("n2: " << line);
  }
  CHECK(told);
  Result<std::vector<NodeInfo>> left = a.cluster->Nodes();
  REQUIRE(left.ok());
  CHECK(left->size() == 2);
  for (auto& n : nodes) n->Close();
}

// The container of `workload` on node n, in `state` (nullptr: none).
std::optional<ContainerInfo> ContainerOf(Node& n, const std::string& workload,
                                         ContainerState state) {
  for (const ContainerInfo& c : n.runtime->Containers()) {
    auto w = c.labels.find(kLabelWorkload);
    if (w != c.labels.end() && w->second == workload && c.state == state) return c;
  }
  return std::nullopt;
}

TEST_CASE("cluster over TLS: a warm standby is created but not started - failover only starts it") {
  TempDir tmp;
  std::vector<std::unique_ptr<Node>> nodes;
  for (int i = 0; i < 3; i++) {
    auto n = std::make_unique<Node>();
    n->name = "w" + std::to_string(i);
    n->dir = tmp.Sub(n->name);
    n->index = i;
    nodes.push_back(std::move(n));
  }
  REQUIRE(nodes[0]->Open().ok());
  Result<std::string> token = nodes[0]->cluster->Init({});
  REQUIRE(token.ok());
  REQUIRE(nodes[1]->Open(Address(0), *token).ok());
  REQUIRE(nodes[2]->Open(Address(0), *token).ok());
  REQUIRE(WaitFor([&] { return ReadyMembers(nodes[0]->cluster.get(), 3); }, 30));

  // Through w2 (placed there first) with w1 preferred next: w1 is the standby.
  WorkloadSpec plc = Spec("plc");
  plc.exclusive = true;
  plc.standby = "warm";
  plc.preferred_nodes = {"w2", "w1"};
  REQUIRE(nodes[2]->cluster->Apply(plc).ok());
  Node& active = *nodes[2];
  Node& standby = *nodes[1];
  REQUIRE(WaitFor([&] { return ContainerOf(active, "plc", ContainerState::kRunning).has_value(); },
                  15));
  REQUIRE(WaitFor([&] { return ContainerOf(standby, "plc", ContainerState::kCreated).has_value(); },
                  15));
  const std::string held = ContainerOf(standby, "plc", ContainerState::kCreated)->id;
  CHECK(nodes[0]->runtime->Containers().empty());  // nothing on the third node
  // The cluster's view lists the replica on w2, then the standby on w1 (index 1, as a
  // single node lists its standbys after its replicas), as every node hears it.
  auto listed = [&](Node& n) {
    Result<WorkloadState> w = n.cluster->Get("plc");
    return w.ok() && w->replicas.size() == 2 && w->replicas[0].node == "w2" &&
           w->replicas[0].phase == Phase::kRunning && w->replicas[1].node == "w1" &&
           w->replicas[1].index == 1 && w->replicas[1].phase == Phase::kStandby &&
           w->ready_replicas == 1;
  };
  for (auto& n : nodes) CHECK(WaitFor([&] { return listed(*n); }, 10));

  // w2 goes away: w1 starts the container it held - the same one, no create.
  active.Close();
  REQUIRE(WaitFor([&] { return ContainerOf(standby, "plc", ContainerState::kRunning).has_value(); },
                  15));
  CHECK(ContainerOf(standby, "plc", ContainerState::kRunning)->id == held);
  CHECK(standby.runtime->Containers().size() == 1);
  // And w0, the only node left running none of it, becomes the next standby.
  CHECK(WaitFor([&] { return ContainerOf(*nodes[0], "plc", ContainerState::kCreated).has_value(); },
                15));

  // Restarted with other labels and capacity: the member record follows, so the
  // scheduler sees them.
  nodes[0]->Close();
  nodes[0]->labels = {{"zone", "attic"}};
  nodes[0]->capacity_memory_bytes = 123456789;
  REQUIRE(nodes[0]->Open().ok());
  auto updated = [&] {
    Result<std::vector<NodeInfo>> list = standby.cluster->Nodes();
    if (!list.ok()) return false;
    for (const NodeInfo& n : *list) {
      if (n.name == "w0") {
        return n.capacity_memory_bytes == 123456789 && n.labels.count("zone") == 1;
      }
    }
    return false;
  };
  CHECK(WaitFor(updated, 15));
  for (auto& n : nodes) n->Close();
}

// Issue 11: the lease that kills an exclusive workload when its node's petrel is gone.
TEST_CASE("an exclusive workload's container carries the node's lease, renewed while it lives") {
  TempDir tmp;
  Node a;
  a.name = "n0";
  a.dir = tmp.Sub("n0");
  REQUIRE(a.Open().ok());
  REQUIRE(a.cluster->Init({}).ok());
  WorkloadSpec lock = Spec("lock");
  lock.exclusive = true;
  REQUIRE(a.cluster->Apply(std::vector<WorkloadSpec>{Spec("web"), lock}).ok());
  FakeRuntime rt(SystemClock(), a.host);
  auto running = [&](const std::string& name) {
    for (const ContainerInfo& ci : rt.Containers()) {
      if (ci.labels.at(kLabelWorkload) == name && ci.state == ContainerState::kRunning) {
        return ci.id;
      }
    }
    return std::string();
  };
  REQUIRE(WaitFor([&] { return !running("lock").empty() && !running("web").empty(); }, 30));
  const ContainerLease lease = rt.SpecOf(running("lock"))->lease;
  CHECK(lease.duration_ms == ClusterSettings{}.fence_after_ms);
  CHECK(lease.path.rfind(a.dir + "-leases/n0-", 0) == 0);
  CHECK(rt.SpecOf(running("web"))->lease.empty());
  CHECK((std::filesystem::status(a.dir + "-leases").permissions() & std::filesystem::perms::all) ==
        std::filesystem::perms::owner_all);
  CHECK((std::filesystem::status(lease.path).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  const std::string first = ReadFile(lease.path);
  CHECK(WaitFor([&] { return ReadFile(lease.path) != first; }, 2));
  CHECK(rt.CheckLeases().empty());

  // petrel goes (closed here; killed, hung or crashed alike): nobody renews the lease,
  // and the runtime's watcher kills the exclusive container, only that one.
  const std::string id = running("lock");
  a.Close();
  CHECK(WaitFor([&] { return !rt.CheckLeases().empty(); }, 5));
  CHECK(rt.Inspect(id)->exit_code == 137);
  CHECK(!running("web").empty());
}

}  // namespace
}  // namespace petrel::testing

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // as petrel/cluster.h asks of the embedder
  return petrel::testing::RunDoctest(argc, argv);
}
