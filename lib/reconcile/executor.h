// The executor: runs a Plan's actions against a ContainerRuntime and turns what they
// did into replica status and events. The only place in the core that calls the
// runtime's mutating methods.
//
// It works in two halves so the loop never waits for a runtime:
//  - on a worker, RunReplicaJob makes the runtime calls of one replica's actions, in
//    plan order, stopping at the first failure; RunPullJob makes one image ready;
//  - on the loop thread, Executor::Record turns a finished job into the replica's new
//    status, its events and the stops in progress.
// The Executor also knows which replicas have a job in flight (busy): the loop keeps
// Plan off them, so there is never more than one operation at a time per replica.
//
// Thread-safety: RunReplicaJob and RunPullJob run on any thread; an Executor is used on
// the loop thread only.
#ifndef PETREL_LIB_RECONCILE_EXECUTOR_H_
#define PETREL_LIB_RECONCILE_EXECUTOR_H_

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lib/reconcile/plan.h"
#include "petrel/runtime.h"
#include "petrel/spec.h"

namespace petrel::internal {

using ReplicaKey = std::pair<std::string, int>;

// The replica status after a container of template `hash` was started.
ReplicaStatus AfterStarted(const ReplicaStatus& cur, const std::string& hash,
                           const std::string& container_id, int pid, TimeMs now);
// The replica status after creating or starting its container failed with `what`.
ReplicaStatus AfterFailure(const ReplicaStatus& cur, const WorkloadSpec& spec,
                           const std::string& hash, const std::string& what, TimeMs now);

// What a workload looked like when the plan was made: a job that creates or starts a
// container needs it for the template hash, and for the back-off when it fails.
struct Template {
  WorkloadSpec spec;
  std::string hash;
};

// What one action did.
struct ActionResult {
  Status status;
  std::string container_id;  // kCreate: the container made (also when its start failed)
  int pid = 0;               // kCreate, kStart: the started container's pid (0: unknown)
  std::string cleanup;       // a failed start: why its container could not be removed
};

// One replica's actions of one plan.
struct ReplicaJob {
  ReplicaKey key;
  std::vector<Action> actions;
  std::optional<Template> tmpl;  // set when the job creates or starts a container
  TimeMs planned_at = 0;
  // Filled by RunReplicaJob: one per action done; fewer when one failed (the last).
  std::vector<ActionResult> results;
};

// One image to make ready, for the workloads that wait for it.
struct PullJob {
  PullRequest request;
  Backoff backoff;  // the first waiting workload's: how long a failure waits
  TimeMs planned_at = 0;
  // Hears how the pull goes, on the worker (PullOptions::progress). May be empty.
  std::function<void(const PullProgress&)> progress;
  std::function<bool()> cancelled;  // PullOptions::cancelled. May be empty.
  Status status;                    // filled by RunPullJob
};

// The plan's actions as jobs, one per replica, each in plan order. Actions of a
// workload that is gone from `templates` (deleted since) stop, kill and remove only.
std::vector<ReplicaJob> SplitIntoJobs(const PlanOutput& plan,
                                      const std::map<std::string, Template>& templates);

// Worker side: the runtime calls of `job`, in order, stopping at the first failure. A
// container whose start failed is removed again, so the back-off, not a leftover,
// decides when the next try comes.
void RunReplicaJob(ContainerRuntime* runtime, ReplicaJob* job);
void RunPullJob(ContainerRuntime* runtime, PullJob* job);

class Executor {
 public:
  Executor() = default;

  // Marks the job's replica busy until Record(job).
  void Started(const ReplicaJob& job) { busy_.insert(job.key); }

  // Records a finished job at time `now`: `status` (the replica's current status,
  // created if it is new) becomes what the actions made of it, `events` gets one
  // event per action done or failed, and the replica is no longer busy. Returns the
  // earliest time a failure wants a retry (kNever when none).
  TimeMs Record(const ReplicaJob& job, TimeMs now, ReplicaStatus* status,
                std::vector<Event>* events);

  // Replicas with a job in flight.
  const std::set<ReplicaKey>& busy() const { return busy_; }
  // Stops in progress, by container id; input to the next Plan.
  const std::unordered_map<std::string, KillState>& kills() const { return kills_; }
  // Failed removals, by container id; input to the next Plan.
  const std::unordered_map<std::string, RemoveState>& removes() const { return removes_; }
  // Forgets stops and failed removals of containers that no longer exist.
  void PruneKills(const std::vector<ContainerInfo>& present);

 private:
  std::set<ReplicaKey> busy_;
  std::unordered_map<std::string, KillState> kills_;
  std::unordered_map<std::string, RemoveState> removes_;
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_RECONCILE_EXECUTOR_H_
