// ClusterNode: one member's cluster logic on top of a started `struct raft`: the state
// machine raft applies entries to, writes (proposed here when this node leads, else
// forwarded to the leader), joins and removals, and the requests members send each
// other. The same code runs in petreld (raft_uv over the mTLS PeerTransport) and in the
// test fixture (raft_fixture over an in-memory network), which is why it owns neither
// raft's I/O nor the network: it is given a raft and a PeerLink.
//
// Requests between members are JSON: {"op":"write","entry":E} -> {"index":N,"result":R};
// {"op":"join",...} (a newcomer's, passed on by the member it reached);
// {"op":"promote","id":N}; {"op":"remove","name":N}. Errors are {"code":C,"error":M};
// code kUnavailable with "notLeader" set means "ask the leader".
//
// Thread-safety: everything on the loop thread that runs raft, except WithState, which
// any thread may call.
#ifndef PETREL_LIB_CLUSTER_NODE_H_
#define PETREL_LIB_CLUSTER_NODE_H_

extern "C" {  // raft.h declares its functions without extern "C"
#include <raft.h>
}

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "lib/cluster/state.h"
#include "petrel/clock.h"
#include "petrel/log.h"
#include "petrel/status.h"

namespace petrel::internal {

// How a member reaches another member's requests.
class PeerLink {
 public:
  using Done = std::function<void(Status status, std::string response)>;
  virtual ~PeerLink() = default;
  virtual void Call(const std::string& address, std::string request, int64_t timeout_ms,
                    Done done) = 0;
};

// Who this node is.
struct NodeSelf {
  std::string name;
  uint64_t id = 0;
  std::string address;
  std::string role = "voter";  // or "witness"
  std::map<std::string, std::string> labels;
  int64_t capacity_memory_bytes = 0;  // 0 = not limited
  int64_t capacity_cpu_millis = 0;
};

class ClusterNode {
 public:
  using WriteDone = std::function<void(Status status, std::string result)>;
  using Reply = std::function<void(std::string response)>;

  ClusterNode(NodeSelf self, PeerLink* link, Clock* clock, LogSink log);
  ~ClusterNode();
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  // The state machine to hand raft_init (or raft_fixture_grow); then SetRaft.
  raft_fsm* fsm() { return &fsm_; }
  void SetRaft(struct raft* raft) { raft_ = raft; }
  struct raft* raft() {
    return raft_;
  }
  const NodeSelf& self() const { return self_; }
  void SetSelf(NodeSelf self) { self_ = std::move(self); }

  // Called on the loop thread after every applied entry (and restored snapshot).
  void OnApplied(std::function<void()> callback) { on_applied_ = std::move(callback); }

  // Commits `entry` through the leader (this node or, forwarded, another) and calls
  // `done` once it is applied here too, with the entry's result, or with the error:
  // Unavailable when no leader answers before `timeout_ms`, DeadlineExceeded when the
  // entry may or may not have been committed.
  void Write(std::string entry, int64_t timeout_ms, WriteDone done);

  // A request from the member `from` (or, for join, from a newcomer).
  void HandleRequest(const std::string& from, std::string request, Reply reply);

  // Expires what waited too long, retries forwarded writes, sends the heartbeats and,
  // on the leader, places replicas; call every ~50 ms.
  void Tick();

  // --- heartbeats and liveness ---

  // What this node says of its replicas in every heartbeat (JSON text, small).
  void SetSummary(std::function<std::string()> summary) { summary_ = std::move(summary); }
  struct Peer {
    TimeMs last_heard = 0;          // Monotonic(): when it last answered a heartbeat; 0 = never
    std::string summary;            // what it last said of its replicas
    std::set<std::string> running;  // the workloads that summary names, read once
    // What its last answer said of the others: for each member it had heard, how long
    // before that answer (ms).
    std::map<std::string, int64_t> heard;
  };
  // Every other member this node heard of (thread-safe copy).
  std::map<std::string, Peer> Peers();
  // Whether member `name` counts as up: this node; one that answered a heartbeat within
  // nodeLostAfter; one that a peer heard within fenceAfter says it heard within
  // nodeLostAfter (the two answers' ages added up); or any member while this node
  // itself started less than nodeLostAfter ago (it has not had the time to hear them).
  // The third is for a node cut off from this one only (a partial partition): it hears
  // the majority, so it is not fenced and keeps its exclusive workloads, and a leader
  // that moved them on its own word alone would run them twice.
  bool Ready(const std::string& name);
  // Whether this node is cut off: fewer than a majority of the members (itself
  // included) answered its heartbeats within fenceAfter, or none have yet since it
  // started. A fenced node runs no exclusive workload.
  bool Fenced();
  // Whether another node may still run `workload`, as far as this one can tell: a peer
  // heard within fenceAfter whose last summary names it, or any peer not heard yet while
  // this node started less than nodeLostAfter ago. A peer silent for fenceAfter has
  // stopped its exclusive workloads by then (fenced, or killed by its lease). A node
  // starts an exclusive workload only when this is false: its own replica of the
  // cluster's state may be stale (just restarted, raft not caught up) and still assign
  // it here after the leader moved it.
  bool RunsElsewhere(const std::string& workload);
  // Workloads the scheduler could not place, and why (leader only; thread-safe copy).
  std::map<std::string, std::string> Unplaced();

  // The leader's name and address, "" when none is known.
  std::string LeaderName();
  bool IsLeader();

  // How many snapshots raft installed here.
  int restores() const { return restores_; }

  // Reads the state under its lock: the replica, or the fallback while that is newer.
  template <typename F>
  auto WithState(F f) {
    std::lock_guard<std::mutex> lock(mu_);
    const ClusterState& s =
        fallback_ && fallback_->applied_index() > state_.applied_index() ? *fallback_ : state_;
    return f(s);
  }

  // The state this node last knew (a Snapshot()), which WithState gives until raft has
  // applied as far. Corruption when it cannot be read.
  Status SetFallback(const std::string& snapshot);

  // What the leader does with a join (exposed for the fixture and the facade): checks
  // the token secret, signs the CSR, records the member and adds it to raft as a
  // spare. Reply: {"id","cert","caCert","revoked":[...],"members":[...]}.
  void LeaderJoin(std::string request, Reply reply);

 private:
  struct Waiter;
  struct Forward;
  static int FsmApply(raft_fsm* fsm, const raft_buffer* buf, void** result);
  static int FsmSnapshot(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n);
  static int FsmRestore(raft_fsm* fsm, raft_buffer* buf);
  static int FsmSnapshotFinalize(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n);

  using ProposeDone = std::function<void(Status status, uint64_t index, std::string result)>;
  void Propose(std::string entry, ProposeDone done);  // leader only
  void SendForward(std::shared_ptr<Forward> f);
  void Later(int64_t ms, std::function<void()> fn);
  void Heartbeat(TimeMs now);
  void Place();
  // Keeps what `node` said of its replicas. REQUIRES: peers_mu_ held.
  void KeepSummaryLocked(const std::string& node, std::string summary);
  void AwaitApplied(uint64_t index, std::string result, TimeMs deadline, WriteDone done);
  enum class ChangeKind { kAdd, kAssign, kRemove };
  void Change(ChangeKind kind, uint64_t id, std::string address, int role, TimeMs deadline,
              std::function<void(Status)> done);

  NodeSelf self_;
  PeerLink* link_;
  Clock* clock_;
  LogSink log_;
  struct raft* raft_ = nullptr;
  raft_fsm fsm_{};

  std::mutex mu_;  // guards state_ for WithState readers; written on the loop thread
  ClusterState state_;
  std::unique_ptr<ClusterState> fallback_;
  std::map<uint64_t, std::string> results_;  // of entries this node proposed, by index
  std::multimap<uint64_t, std::shared_ptr<Waiter>> waiters_;  // by the index awaited
  std::map<uint64_t, std::shared_ptr<Forward>> forwards_;     // writes not answered yet
  uint64_t next_forward_ = 1;
  std::multimap<TimeMs, std::function<void()>> later_;  // run by Tick when due
  std::function<void()> on_applied_;
  int restores_ = 0;

  std::function<std::string()> summary_;
  std::mutex peers_mu_;
  std::map<std::string, Peer> peers_;  // guarded by peers_mu_
  std::set<std::string> pings_in_flight_;
  TimeMs started_ = 0, next_heartbeat_ = 0;
  bool placing_ = false;                         // an assign entry is being committed
  bool place_pending_ = true;                    // something changed since the last placement
  std::map<std::string, std::string> unplaced_;  // guarded by peers_mu_
  std::string self_summary_;                     // this node's, as last read by Place
  std::set<std::string> self_running_;           // the workloads it names
  // Each node's readiness and workloads at the last placement.
  std::map<std::string, std::pair<bool, std::set<std::string>>> last_view_;
};

// The request a forwarded write sends, and the other ops' (for the facade).
std::string JoinRequest(const std::string& secret, const NodeSelf& newcomer,
                        const std::string& csr_pem);
std::string PromoteRequest(uint64_t id);
std::string RemoveRequest(const std::string& name);
// An error reply; ResultStatus (state.h) reads it back.
std::string ErrorReply(const Status& status, bool not_leader = false);

}  // namespace petrel::internal

#endif  // PETREL_LIB_CLUSTER_NODE_H_
