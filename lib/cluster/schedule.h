// Schedule: where each replica of each workload runs. A pure function of the
// replicated state and of which nodes are up now (the leader's view), so the leader
// can run it whenever something changes and tests can run it on values.
//
// Rules, in order:
//  - a replica stays where it is while that node is Ready, not Draining, not a witness
//    and still matches the workload's nodeSelector (a move costs a restart);
//  - a node takes a replica only while the resources (memory, cpu) of the replicas
//    placed on it fit its capacity (a capacity of 0 limits nothing, a resource of 0
//    asks for nothing);
//  - replicas beyond `replicas` are dropped, new ones are placed;
//  - a replica to place goes to the first node of preferredNodes that fits and has none
//    of this workload's, else (the first time) to the node it was applied through, else
//    to the fitting node with the fewest replicas of this workload (spread), then the
//    fewest replicas overall, then the first by name;
//  - a replica no node fits stays unplaced ("") and is reported;
//  - standby: warm: the node that would take a replica next (preferredNodes first, then
//    the fewest replicas overall, then by name; Ready, fitting, with room, and running
//    none of this workload's) keeps one created, not started; it stays the standby
//    while it qualifies, and a replica that must move goes to it first;
//  - an exclusive workload moves in two steps: taken off its node (unplaced), then
//    placed once no Ready node says it still runs it. A Lost node is not waited for:
//    it has fenced itself by then (nodeLostAfter > fenceAfter + heartbeat + margin).
#ifndef PETREL_LIB_CLUSTER_SCHEDULE_H_
#define PETREL_LIB_CLUSTER_SCHEDULE_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "lib/cluster/state.h"

namespace petrel::internal {

struct NodeView {
  std::string name;
  bool ready = false;
  bool draining = false;
  bool witness = false;
  std::map<std::string, std::string> labels;
  std::set<std::string> running;      // workloads its last heartbeat says it runs
  int64_t capacity_memory_bytes = 0;  // 0 = not limited
  int64_t capacity_cpu_millis = 0;
};

struct Placement {
  // Per workload, the node of each replica ("" = no node fits), for the workloads
  // whose placement changes.
  std::map<std::string, std::vector<std::string>> changes;
  // Per workload, its warm standby node ("" = none), for those whose standby changes.
  std::map<std::string, std::string> standby_changes;
  // Workloads with an unplaced replica, and why ("no Ready node matches nodeSelector
  // zone=attic").
  std::map<std::string, std::string> unplaced;
};

Placement Schedule(const std::map<std::string, ClusterWorkload>& workloads,
                   const std::vector<NodeView>& nodes);

}  // namespace petrel::internal

#endif  // PETREL_LIB_CLUSTER_SCHEDULE_H_
