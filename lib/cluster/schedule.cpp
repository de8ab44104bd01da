#include "lib/cluster/schedule.h"

#include <algorithm>

namespace petrel::internal {

namespace {

bool Fits(const NodeView& node, const WorkloadSpec& spec) {
  if (!node.ready || node.draining || node.witness) return false;
  for (const auto& [key, value] : spec.node_selector) {
    auto it = node.labels.find(key);
    if (it == node.labels.end() || it->second != value) return false;
  }
  return true;
}

std::string Why(const WorkloadSpec& spec) {
  if (spec.node_selector.empty()) return "no Ready node (witnesses and Draining nodes run nothing)";
  std::string selector;
  for (const auto& [k, v] : spec.node_selector)
    selector += (selector.empty() ? "" : ",") + k + "=" + v;
  return "no Ready node matches nodeSelector " + selector;
}

}  // namespace

Placement Schedule(const std::map<std::string, ClusterWorkload>& workloads,
                   const std::vector<NodeView>& nodes) {
  Placement out;
  std::map<std::string, const NodeView*> by_name;
  for (const NodeView& n : nodes) by_name[n.name] = &n;
  // Replicas per node overall, counting the placements kept and made so far.
  std::map<std::string, int> load;
  for (const auto& [name, w] : workloads) {
    for (const std::string& n : w.assigned) {
      if (!n.empty()) load[n]++;
    }
  }
  for (const auto& [name, w] : workloads) {
    Result<WorkloadSpec> spec = SpecFromJson(w.spec_json);
    if (!spec.ok()) continue;
    const int replicas = std::max(0, spec->replicas);
    std::vector<std::string> next = w.assigned;
    for (size_t i = static_cast<size_t>(replicas); i < next.size(); i++) {
      if (!next[i].empty()) load[next[i]]--;
    }
    next.resize(static_cast<size_t>(replicas));
    std::map<std::string, int> mine;  // this workload's replicas per node
    auto fits = [&](const std::string& n) {
      auto it = by_name.find(n);
      return it != by_name.end() && Fits(*it->second, *spec);
    };
    // Keep what may stay; free the rest.
    for (std::string& n : next) {
      if (n.empty()) continue;
      if (fits(n)) {
        mine[n]++;
      } else {
        load[n]--;
        n.clear();
      }
    }
    // An exclusive workload starts nowhere while a node that is up still runs it.
    std::string still;
    if (spec->exclusive) {
      for (const NodeView& n : nodes) {
        if (n.ready && n.running.count(name) != 0 &&
            std::find(next.begin(), next.end(), n.name) == next.end()) {
          still = n.name;
        }
      }
    }
    for (size_t i = 0; i < next.size(); i++) {
      if (!next[i].empty()) continue;
      if (!still.empty()) {
        out.unplaced[name] = "exclusive: waiting for node " + still + " to stop it";
        continue;
      }
      std::string pick;
      for (const std::string& p : spec->preferred_nodes) {
        if (fits(p) && mine[p] == 0) {
          pick = p;
          break;
        }
      }
      // Never placed: the node it was applied through, while it fits.
      if (pick.empty() && w.assigned.empty() && fits(w.node) && mine[w.node] == 0) pick = w.node;
      if (pick.empty()) {
        for (const NodeView& n : nodes) {
          if (!Fits(n, *spec)) continue;
          if (pick.empty() || std::make_tuple(mine[n.name], load[n.name], n.name) <
                                  std::make_tuple(mine[pick], load[pick], pick)) {
            pick = n.name;
          }
        }
      }
      if (pick.empty()) {
        out.unplaced[name] = Why(*spec);
        continue;
      }
      next[i] = pick;
      mine[pick]++;
      load[pick]++;
    }
    const bool none =
        std::all_of(next.begin(), next.end(), [](const std::string& n) { return n.empty(); });
    if (next != w.assigned && !(none && w.assigned.empty())) out.changes[name] = std::move(next);
  }
  return out;
}

}  // namespace petrel::internal
