// ClusterFixture: a cluster of N petrel nodes in one process, for tests (like raft's
// raft_fixture, which it is built on). Each node runs petrel's real cluster logic
// (the replicated state machine, write forwarding, joins, removals) over raft's
// in-memory I/O; requests between nodes go through an in-memory network; time is
// simulated, so a test of an election or a partition runs in milliseconds and gives
// the same result every run.
//
//   petrel::testing::ClusterFixture f(3);
//   int leader = f.StepUntilLeader();
//   CHECK(f.Apply(1, {spec}).ok());     // through a follower: forwarded
//   f.Kill(leader);
//   f.StepUntilLeader();
//   CHECK(f.Converged());
//
// Nodes are numbered 0..N-1 and named "node0", "node1", ... Kill keeps a node's
// memory (its log and state), like raft_fixture: Revive is a restart that kept its
// disk. Not thread-safe.
#ifndef PETREL_TESTING_CLUSTER_FIXTURE_H_
#define PETREL_TESTING_CLUSTER_FIXTURE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrel::testing {

class ClusterFixture {
 public:
  // `voters` nodes, bootstrapped and started, the cluster initialized (CA, token) once
  // a leader exists (the first StepUntilLeader does it). `snapshot_threshold`: entries
  // between raft snapshots (small, so tests see snapshots installed).
  explicit ClusterFixture(int voters, unsigned snapshot_threshold = 16);
  ~ClusterFixture();
  ClusterFixture(const ClusterFixture&) = delete;
  ClusterFixture& operator=(const ClusterFixture&) = delete;

  int size() const;
  int64_t now() const;  // simulated milliseconds

  // Advances simulated time by `ms`, running raft, the network and every node's timers.
  void Run(int64_t ms);
  // Runs until some live node leads (and the cluster is initialized), at most `max_ms`;
  // its index, or -1.
  int StepUntilLeader(int64_t max_ms = 10000);
  // The live node that leads now, or -1.
  int Leader() const;

  void Kill(int i);
  void Revive(int i);
  bool alive(int i) const;
  // Cuts / heals the link between i and j, both ways (raft's messages and petrel's).
  void Cut(int i, int j);
  void Heal(int i, int j);
  // Cuts / heals every link of i.
  void Isolate(int i);
  void Reconnect(int i);

  // A write through node i, forwarded to the leader when i does not lead; runs time
  // until it is answered (at most `max_ms`).
  Status Apply(int i, const std::vector<WorkloadSpec>& specs, int64_t max_ms = 10000);
  Status Delete(int i, const std::string& name, int64_t max_ms = 10000);
  // A new node joins through node `via` with the cluster's token, then is promoted to
  // voter; its index. The token may be changed to test refusals.
  Result<int> Join(int via, int64_t max_ms = 20000, const std::string& secret_override = "");
  // Removes node `target` through node `via`.
  Status Remove(int via, int target, int64_t max_ms = 20000);

  // Marks node `target` Draining (or not) through node `via`.
  Status Drain(int via, int target, bool drain, int64_t max_ms = 10000);
  // Gives node `target` these labels (its member record), through the leader.
  Status Label(int target, const std::map<std::string, std::string>& labels,
               int64_t max_ms = 10000);
  // Where node i's replica says each replica of `workload` runs ("" = not placed).
  std::vector<std::string> Placement(int i, const std::string& workload) const;
  // The node keeping `workload` warm (standby: warm), as node i's replica says ("" = none).
  std::string Standby(int i, const std::string& workload) const;
  // Whether live node i runs `workload`, as a real node would: a replica is placed on
  // it by its own replica's word, and, for an exclusive workload, it is not fenced.
  bool Runs(int i, const std::string& workload) const;
  // Whether node i is cut off from the majority (no exclusive workloads then).
  bool Fenced(int i) const;
  // Whether node i holds back starting `workload` (exclusive) because another node may
  // still run it, as its peers' heartbeats say.
  bool RunsElsewhere(int i, const std::string& workload) const;
  // Whether node i counts member `name` as up (heartbeats).
  bool Ready(int i, const std::string& name) const;

  // What node i's replica holds: workload name -> "<spec hash>@<node>", and members.
  std::map<std::string, std::string> Workloads(int i) const;
  std::vector<std::string> Members(int i) const;
  uint64_t AppliedIndex(int i) const;
  // True when every live node's replica equals the leader's (snapshot text compared).
  bool Converged() const;
  // How many snapshots node i restored (raft InstallSnapshot).
  int restores(int i) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace petrel::testing

#endif  // PETREL_TESTING_CLUSTER_FIXTURE_H_
