#include "lib/cluster/schedule.h"

#include <algorithm>

#include "lib/spec/check.h"

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

std::string Why(const WorkloadSpec& spec, const Resources& ask) {
  if (ask.memory_bytes != 0 || ask.cpu_millis != 0) {
    return "no Ready node" +
           std::string(spec.node_selector.empty() ? "" : " matching nodeSelector") +
           " has room for a replica (memory " + std::to_string(ask.memory_bytes) + " bytes, cpu " +
           std::to_string(ask.cpu_millis) + "m)";
  }
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
  // Replicas and resources per node overall, counting the placements kept and made.
  std::map<std::string, int> load;
  std::map<std::string, Resources> used;
  std::map<std::string, Resources> asks;  // per replica, by workload
  for (const auto& [name, w] : workloads) {
    Result<WorkloadSpec> spec = SpecFromJson(w.spec_json);
    asks[name] = spec.ok() ? spec->resources : Resources();
    for (const std::string& n : w.assigned) {
      if (n.empty()) continue;
      load[n]++;
      used[n].memory_bytes += asks[name].memory_bytes;
      used[n].cpu_millis += asks[name].cpu_millis;
    }
  }
  auto take = [&](const std::string& n, const Resources& r, int sign) {
    load[n] += sign;
    used[n].memory_bytes += sign * r.memory_bytes;
    used[n].cpu_millis += sign * r.cpu_millis;
  };
  auto room = [&](const NodeView& n, const Resources& r) {
    const Resources& u = used[n.name];
    return (n.capacity_memory_bytes == 0 || r.memory_bytes == 0 ||
            u.memory_bytes + r.memory_bytes <= n.capacity_memory_bytes) &&
           (n.capacity_cpu_millis == 0 || r.cpu_millis == 0 ||
            u.cpu_millis + r.cpu_millis <= n.capacity_cpu_millis);
  };
  for (const auto& [name, w] : workloads) {
    Result<WorkloadSpec> spec = SpecFromJson(w.spec_json);
    if (!spec.ok()) continue;
    const int replicas = std::max(0, spec->replicas);
    const Resources& ask = asks[name];
    std::vector<std::string> next = w.assigned;
    for (size_t i = static_cast<size_t>(replicas); i < next.size(); i++) {
      if (!next[i].empty()) take(next[i], ask, -1);
    }
    next.resize(static_cast<size_t>(replicas));
    std::map<std::string, int> mine;  // this workload's replicas per node
    auto fits = [&](const std::string& n) {
      auto it = by_name.find(n);
      return it != by_name.end() && Fits(*it->second, *spec);
    };
    // A new replica also needs room left on the node.
    auto fits_new = [&](const std::string& n) {
      auto it = by_name.find(n);
      return it != by_name.end() && Fits(*it->second, *spec) && room(*it->second, ask);
    };
    // Keep what may stay; free the rest.
    for (std::string& n : next) {
      if (n.empty()) continue;
      if (fits(n)) {
        mine[n]++;
      } else {
        take(n, ask, -1);
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
      // The warm standby first: for it, a failover is only a start.
      if (!w.standby.empty() && fits_new(w.standby) && mine[w.standby] == 0) pick = w.standby;
      for (const std::string& p : spec->preferred_nodes) {
        if (!pick.empty()) break;
        if (fits_new(p) && mine[p] == 0) {
          pick = p;
          break;
        }
      }
      // Never placed: the node it was applied through, while it fits.
      if (pick.empty() && w.assigned.empty() && fits_new(w.node) && mine[w.node] == 0) {
        pick = w.node;
      }
      if (pick.empty()) {
        for (const NodeView& n : nodes) {
          if (!Fits(n, *spec) || !room(n, ask)) continue;
          if (pick.empty() || std::make_tuple(mine[n.name], load[n.name], n.name) <
                                  std::make_tuple(mine[pick], load[pick], pick)) {
            pick = n.name;
          }
        }
      }
      if (pick.empty()) {
        out.unplaced[name] = Why(*spec, ask);
        continue;
      }
      next[i] = pick;
      mine[pick]++;
      take(pick, ask, +1);
    }
    // Unplaced replicas at the end are no change: the state pads to `replicas` itself.
    auto trimmed = [](std::vector<std::string> v) {
      while (!v.empty() && v.back().empty()) v.pop_back();
      return v;
    };
    // The warm standby: the node next in line, kept while it still qualifies.
    std::string standby;
    if (spec->standby == kStandbyWarm && replicas > 0) {
      auto spare = [&](const std::string& n) { return fits_new(n) && mine[n] == 0; };
      if (!w.standby.empty() && spare(w.standby)) standby = w.standby;
      for (const std::string& p : spec->preferred_nodes) {
        if (standby.empty() && spare(p)) standby = p;
      }
      if (standby.empty()) {
        for (const NodeView& n : nodes) {
          if (spare(n.name) && (standby.empty() || std::make_pair(load[n.name], n.name) <
                                                       std::make_pair(load[standby], standby))) {
            standby = n.name;
          }
        }
      }
    }
    if (standby != w.standby) out.standby_changes[name] = standby;
    if (trimmed(next) != trimmed(w.assigned)) out.changes[name] = std::move(next);
  }
  return out;
}

}  // namespace petrel::internal
