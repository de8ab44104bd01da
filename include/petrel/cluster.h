// Cluster: peers that replicate desired state, so any of them can be asked what runs
// where. A Cluster is an Orchestrator (the same facade) wrapped around this node's own
// Orchestrator:
//
//   std::unique_ptr<petrel::Orchestrator> local;   // Orchestrator::Open(...)
//   petrel::ClusterOptions options;
//   options.state_dir = "/var/lib/petrel";        // the same dir as the local one
//   options.peer_listen = "10.0.0.5:7400";
//   std::unique_ptr<petrel::Cluster> cluster;
//   petrel::Status s = petrel::Cluster::Open(options, std::move(local), &cluster);
//   s = cluster->Attach(loop);                     // or Start()
//   petrel::Result<std::string> token = cluster->Init({});   // first node only
//
// Desired state (workloads, which node runs each, members, settings) is replicated
// with Raft (canonical/raft, its libuv backend) over mutual TLS (mbedTLS) into an
// in-memory replica on every node; Raft's own log and snapshots, in
// <state_dir>/cluster/raft, are its durable copy. What a node observes (replica status,
// events) stays in that node's own database and is never replicated or overwritten.
// Each node hands the workloads assigned to it to its local Orchestrator, whose
// reconcile loop runs them exactly as on a single node; a node cut off from the others
// keeps running what it was last given.
//
// Writes (Apply, Delete) on any node are forwarded to the leader and return once
// committed by a majority and applied on this node (read your writes). Reads (Get,
// List) answer from this node's replica; Events and Logs are this node's.
//
// Where replicas run: the leader places each (nodeSelector, preferredNodes, spread,
// not on witnesses or Draining nodes) and moves the replicas of a node it has not heard
// from for nodeLostAfter to other nodes; ReplicaStatus::node says where each runs, and
// what other nodes run is known from their heartbeats.
//
// The embedder must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)): a peer whose connection
// breaks must not kill the process.
//
// Thread-safety: as Orchestrator's. Init, Token, Status, Nodes and RemoveNode may be
// called from any thread and block until done (call them off the loop thread).
#ifndef PETREL_CLUSTER_H_
#define PETREL_CLUSTER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "petrel/clock.h"
#include "petrel/log.h"
#include "petrel/orchestrator.h"
#include "petrel/status.h"

namespace petrel {

struct ClusterOptions {
  // The local Orchestrator's state dir; cluster state goes to <state_dir>/cluster.
  std::string state_dir;
  // This node's name, as the local Orchestrator's (Options::node_name). Required.
  std::string node_name;
  // ADDR:PORT the peers' TLS port listens on (IPv4 or [IPv6]). Required.
  std::string peer_listen;
  // ADDR:PORT peers reach this node at; defaults to peer_listen, required when that
  // is a wildcard address (0.0.0.0, [::]).
  std::string advertise;
  // Joining: ADDR:PORT of any member, and the token `Token()` printed there. Ignored
  // once this node is a member (a restart rejoins with what it stored).
  std::string join;
  std::string token;
  // A witness votes and runs no workloads.
  bool witness = false;
  // Labels of this node (KEY=VALUE), for scheduling.
  std::map<std::string, std::string> labels;
  // What this node offers replicas: the resources.memory and resources.cpu of the
  // replicas placed on it add up to at most this. 0: detected (the machine's memory and
  // online CPUs); -1: not limited. Recorded when the node joins (or inits).
  int64_t capacity_memory_bytes = 0;
  int64_t capacity_cpu_millis = 0;
  // Raft's election timeout; failover takes about 2x this. Heartbeats go every 1/10.
  int64_t election_timeout_ms = 300;
  // How long a forwarded write waits for the leader.
  int64_t write_timeout_ms = 10000;
  // Where this node's lease file goes (ContainerLease, Orchestrator::SetExclusiveLease):
  // "<lease_dir>/<node>-<16 hex digits of the state dir>.lease", created 0700. The file
  // is replaced every heartbeat while the node reaches the majority, and its runtime
  // SIGKILLs exclusive workloads once it is fenceAfter old, so a node whose petrel died
  // stops them as a cut-off node does. Must be tmpfs (RAM), never flash. Defaults to
  // /run/petrel.
  std::string lease_dir;
  // As Options::allowed_host_paths, checked by Apply on the node that takes it, before
  // the workload goes to the cluster. Give every node the same list (and the same to
  // its local Orchestrator): a node whose own list refuses a workload the cluster
  // placed on it cannot take that node's workloads.
  std::vector<std::string> allowed_host_paths;
  // Defaults to SystemClock().
  std::shared_ptr<Clock> clock;
  // Defaults to the local Orchestrator's sink... or StderrLogSink().
  LogSink log_sink;
};

// Cluster-wide settings, stored in Raft.
struct ClusterSettings {
  int64_t heartbeat_ms = 200;
  int64_t node_lost_after_ms = 1500;
  int64_t fence_after_ms = 1000;
};

struct NodeInfo {
  std::string name;
  uint64_t id = 0;     // Raft server id
  std::string role;    // "voter" or "witness"
  std::string status;  // "Ready", "Lost" or "Draining"
  bool leader = false;
  std::string address;  // ADDR:PORT peers reach it at
  std::map<std::string, std::string> labels;
  int64_t capacity_memory_bytes = 0;  // 0 = not limited
  int64_t capacity_cpu_millis = 0;
  TimeMs joined_at = 0;
  TimeMs last_heard = 0;  // by this node; 0 = never (this node: now)
};

struct ClusterStatus {
  bool member = false;  // false until Init or a join completes
  std::string cluster_id;
  std::string self;    // this node's name
  std::string leader;  // "" while there is none
  uint64_t term = 0;
  uint64_t applied_index = 0;
  ClusterSettings settings;
  std::vector<NodeInfo> members;
};

class Cluster : public Orchestrator {
 public:
  // Opens the cluster state in options.state_dir/cluster (created if missing) around
  // `local`, which it owns from then on. A node that is already a member starts
  // rejoining at Start/Attach; with options.join set it joins then; otherwise it waits
  // for Init. Errors name what is wrong ("--advertise is required when --peer-listen
  // is a wildcard address").
  static Status Open(const ClusterOptions& options, std::unique_ptr<Orchestrator> local,
                     std::unique_ptr<Cluster>* result);

  // Makes this node a one-member cluster: creates the cluster CA and this node's
  // certificate, and returns the join token. Its existing workloads become the
  // cluster's, assigned to it. FailedPrecondition when already a member.
  virtual Result<std::string> Init(const ClusterSettings& settings) = 0;
  // The join token (`rotate`: a new one; the old stops working).
  virtual Result<std::string> Token(bool rotate) = 0;
  virtual Result<ClusterStatus> GetStatus() = 0;
  virtual Result<std::vector<NodeInfo>> Nodes() = 0;
  // Removes a member: its certificate is refused from then on. NotFound for an
  // unknown name.
  virtual Status RemoveNode(const std::string& name) = 0;
  // Draining (`drain`): the node's replicas move to other nodes and none are placed on
  // it, until Drain(name, false) (uncordon). NotFound for an unknown name.
  virtual Status Drain(const std::string& name, bool drain) = 0;
  // Replaces the cluster's settings (heartbeat, nodeLostAfter, fenceAfter); every node
  // uses them from the next heartbeat on. InvalidArgument when fenceAfter + heartbeat +
  // 200ms > nodeLostAfter.
  virtual Status SetSettings(const ClusterSettings& settings) = 0;

 protected:
  Cluster() = default;
};

}  // namespace petrel

#endif  // PETREL_CLUSTER_H_
