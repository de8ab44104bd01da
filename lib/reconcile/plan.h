// Plan: the pure heart of the reconcile loop.
//
//   Plan(desired, observed, now) -> actions + status changes + events + next wake-up
//
// No I/O, no clock, no randomness: the same input gives the same output, so the
// whole restart/backoff/replace/drift logic is tested and benchmarked as a function.
// The executor (reconciler.h) runs the actions against a ContainerRuntime and records
// their outcome with the helpers below.
#ifndef PETREL_LIB_RECONCILE_PLAN_H_
#define PETREL_LIB_RECONCILE_PLAN_H_

#include <cstdint>
#include <limits>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "petrel/runtime.h"
#include "petrel/spec.h"

namespace petrel::internal {

inline constexpr TimeMs kNever = std::numeric_limits<TimeMs>::max();
// Grace period for a container whose workload is gone and which lacks the
// kLabelStopGrace label.
inline constexpr int64_t kDefaultGraceMs = 10000;

struct DesiredWorkload {
  const WorkloadSpec* spec = nullptr;  // not owned; outlives the Plan call
  std::string hash;                    // TemplateHash(*spec)
};

// What the executor remembers of a stop in progress (memory only: after a restart
// of petrel a stop simply starts over).
struct KillState {
  TimeMs term_sent_at = 0;
  bool kill_sent = false;
};

// A container whose removal failed (a mount or cgroup still busy): retried with a
// back-off, never in a tight loop (memory only).
struct RemoveState {
  int failures = 0;
  TimeMs next_retry = 0;
};
// How long the `failures`-th consecutive failed removal of a container waits: 1 s,
// doubling, at most 30 s.
int64_t RemoveRetryDelayMs(int failures);

// What the loop knows of an image (memory only: after a restart of petrel the first
// create pulls again, which costs one stat() for an image already imported).
struct ImageState {
  bool ready = false;     // PullImage succeeded: creates may go
  bool pulling = false;   // a PullImage is running
  TimeMs pulled_at = 0;   // when the last successful PullImage began (imagePullPolicy Always)
  int failures = 0;       // consecutive failed pulls
  TimeMs next_retry = 0;  // after a failure: no pull before this
  std::string message;    // after a failure: what failed and when the next try is
};

// An image to make ready, and the workloads waiting for it, in plan order.
// Its policy is the strongest of theirs (Always, then IfNotPresent, then Never).
struct PullRequest {
  std::string image;
  std::vector<std::string> workloads;
  PullPolicy policy = PullPolicy::kIfNotPresent;
};

// Why a running container must be killed: its liveness or startup probe failed.
struct Unhealthy {
  std::string probe;   // which: "liveness" or "startup"
  std::string reason;  // "liveness probe failed 3 times in a row: HTTP 500"
};

struct PlanInput {
  std::string node;
  std::vector<DesiredWorkload> desired;
  std::vector<ContainerInfo> containers;             // the runtime's containers labelled for `node`
  std::vector<ReplicaStatus> replicas;               // stored status of every replica
  std::unordered_map<std::string, KillState> kills;  // by container id
  std::unordered_map<std::string, RemoveState> removes;  // by container id: failed removals
  // Deleted workloads whose containers may still be stopping; not in `desired`.
  std::vector<std::string> terminating;
  // By image reference. An image not here is not ready and not being pulled.
  std::unordered_map<std::string, ImageState> images;
  // Replicas Plan must leave alone: an operation on them is in flight, or ended after
  // `containers` was listed. No action, status change or event for them, nor for the
  // containers labelled with them.
  std::vector<std::pair<std::string, int>> busy;
  // Running containers to kill because a liveness or startup probe failed, by id. Their
  // exits are then recorded with the reason, and the restart policy decides as for any
  // exit.
  std::unordered_map<std::string, Unhealthy> unhealthy;
  TimeMs now = 0;
};

struct Action {
  enum class Type { kCreate, kStart, kKill, kRemove };
  Type type = Type::kCreate;
  std::string workload;
  int replica = -1;
  std::string container_id;  // kStart, kKill, kRemove
  int signal = 0;            // kKill
  ContainerSpec container;   // kCreate: created and then started, unless !start
  bool start = true;         // kCreate: false for a warm standby (created only)
  std::string reason;        // for the event that reports the action
};

struct PlanOutput {
  // In order. Actions of one (workload, replica) depend on the earlier ones of the
  // same replica: when one fails the executor skips the rest of that replica.
  std::vector<Action> actions;
  std::vector<ReplicaStatus> status_updates;                // full new values, changed only
  std::vector<std::pair<std::string, int>> status_deletes;  // replicas no longer wanted
  std::vector<Event> events;                                // seq and time left for the caller
  // Terminating workloads with no container left: they can be forgotten.
  std::vector<std::string> gone;
  // Images to make ready before the replicas waiting in Pulling can be created.
  std::vector<PullRequest> pulls;
  TimeMs next_wakeup = kNever;  // a backoff or grace period ends then
};

PlanOutput Plan(const PlanInput& input);

// The message of a replica in phase Standby.
inline constexpr const char kStandbyMessage[] = "created, not started (warm standby)";

// --- shared with the executor ---

// How long the `failures`-th consecutive failure waits: initial * 2^(failures-1), capped.
int64_t BackoffDelayMs(const Backoff& backoff, int failures);
// How long a replica must stay up for its failure streak to be forgotten.
int64_t BackoffResetMs(const Backoff& backoff);
// "petrel_<node>_<workload>_<index>": names never collide across nodes or workloads,
// because '_' is in neither a node name nor a DNS-1123 label.
std::string ContainerName(const std::string& node, const std::string& workload, int index);
ContainerSpec LowerToContainer(const std::string& node, const WorkloadSpec& spec,
                               const std::string& hash, int index);

}  // namespace petrel::internal

#endif  // PETREL_LIB_RECONCILE_PLAN_H_
