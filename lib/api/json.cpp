#include "lib/api/json.h"

#include "petrel/spec.h"

namespace petrel::internal {

using nlohmann::json;

json WorkloadJson(const WorkloadState& w) {
  json replicas = json::array();
  for (const ReplicaStatus& r : w.replicas) {
    json& replica = replicas.emplace_back();
    replica = json{{"index", r.index},
                   {"phase", PhaseName(r.phase)},
                   {"ready", r.ready},
                   {"containerId", r.container_id},
                   {"pid", r.pid},
                   {"restarts", r.restarts},
                   {"lastExitCode", r.last_exit_code},
                   {"message", r.message},
                   {"since", r.since},
                   {"nextRetry", r.next_retry},
                   {"node", r.node}};
    if (r.pull) replica["pull"] = PullProgressJson(*r.pull);
  }
  // SpecToJson writes valid JSON (bad UTF-8 replaced), so this parse cannot fail.
  json spec = json::parse(SpecToJson(w.spec), nullptr, /*allow_exceptions=*/false);
  return {{"name", w.spec.name},
          {"generation", w.generation},
          {"specHash", w.spec_hash},
          {"createdAt", w.created_at},
          {"updatedAt", w.updated_at},
          {"deletedAt", w.deleted_at},
          {"terminating", w.terminating()},
          {"desiredReplicas", w.spec.replicas},
          {"readyReplicas", w.ready_replicas},
          {"spec", spec.is_discarded() ? json::object() : std::move(spec)},
          {"replicas", std::move(replicas)}};
}

json PullProgressJson(const PullProgress& p) {
  return {{"phase", p.phase},
          {"bytesDone", p.bytes_done},
          {"bytesTotal", p.bytes_total},
          {"layersDone", p.layers_done},
          {"layersTotal", p.layers_total}};
}

json ImageJson(const ImageInfo& i) {
  return {{"id", i.id},
          {"refs", i.refs},
          {"sizeBytes", i.size_bytes},
          {"createdAt", i.created_at},
          {"inUse", i.in_use}};
}

json EventJson(const Event& e) {
  return {{"seq", e.seq},         {"time", e.time}, {"workload", e.workload},
          {"replica", e.replica}, {"type", e.type}, {"message", e.message}};
}

json ApplyResultJson(const ApplyResult& r) {
  return {{"name", r.name}, {"outcome", OutcomeName(r.outcome)}, {"generation", r.generation}};
}

json NodeJson(const NodeInfo& n) {
  return {
      {"name", n.name},
      {"id", n.id},
      {"role", n.role},
      {"status", n.status},
      {"leader", n.leader},
      {"address", n.address},
      {"labels", n.labels},
      {"joinedAt", n.joined_at},
      {"lastHeard", n.last_heard},
      {"capacity", {{"memory", n.capacity_memory_bytes}, {"cpuMillis", n.capacity_cpu_millis}}}};
}

json ClusterSettingsJson(const ClusterSettings& s) {
  return {{"heartbeat", FormatDurationMs(s.heartbeat_ms)},
          {"nodeLostAfter", FormatDurationMs(s.node_lost_after_ms)},
          {"fenceAfter", FormatDurationMs(s.fence_after_ms)}};
}

json ClusterStatusJson(const ClusterStatus& s) {
  json members = json::array();
  for (const NodeInfo& n : s.members) members.push_back(NodeJson(n));
  return {{"member", s.member},
          {"clusterId", s.cluster_id},
          {"self", s.self},
          {"leader", s.leader},
          {"term", s.term},
          {"appliedIndex", s.applied_index},
          {"settings", ClusterSettingsJson(s.settings)},
          {"members", std::move(members)}};
}

std::string DumpLine(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace petrel::internal
