// Executor: runs a Plan's actions against a ContainerRuntime and turns their
// outcomes into replica status and events. The only place in the core that calls
// the runtime's mutating methods.
//
// Thread-safety: none; used on the loop thread only.
#ifndef PETREL_LIB_RECONCILE_EXECUTOR_H_
#define PETREL_LIB_RECONCILE_EXECUTOR_H_

#include <map>
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

class Executor {
 public:
  explicit Executor(ContainerRuntime* runtime) : runtime_(runtime) {}

  // What a workload looked like when the plan was made; Run needs it for replicas
  // whose actions fail (backoff) or succeed (template hash).
  struct Template {
    WorkloadSpec spec;
    std::string hash;
  };

  // Runs `plan.actions` in order at time `now`. `status` holds the replicas' status
  // with the plan's own updates already applied; it gets the actions' outcomes.
  // `events` gets one event per action done or failed. Returns the earliest time a
  // failure wants a retry (kNever when none).
  TimeMs Run(const PlanOutput& plan, const std::map<std::string, Template>& templates, TimeMs now,
             std::map<ReplicaKey, ReplicaStatus>* status, std::vector<Event>* events);

  // Stops in progress, by container id; input to the next Plan.
  const std::unordered_map<std::string, KillState>& kills() const { return kills_; }
  // Forgets stops of containers that no longer exist.
  void PruneKills(const std::vector<ContainerInfo>& present);

 private:
  ContainerRuntime* runtime_;
  std::unordered_map<std::string, KillState> kills_;
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_RECONCILE_EXECUTOR_H_
