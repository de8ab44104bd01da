// ClusterState: the replicated state machine. Every node applies the same committed
// entries in the same order and so holds the same state: the cluster's identity (CA,
// join token), its settings, its members, and its workloads with the node each is
// assigned to. It lives in memory; Raft's log and snapshots (Snapshot/Restore) are its
// durable copy, so nothing here is written per entry.
//
// Entries and results are JSON text made by the *Entry functions below; Apply never
// throws and is deterministic (time comes inside the entries, never from a clock).
//
// Thread-safety: none; the owner serialises.
#ifndef PETREL_LIB_CLUSTER_STATE_H_
#define PETREL_LIB_CLUSTER_STATE_H_

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "petrel/cluster.h"
#include "petrel/orchestrator.h"
#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrel::internal {

struct ClusterMember {
  std::string name;
  uint64_t id = 0;      // Raft server id
  std::string address;  // ADDR:PORT
  std::string role;     // "voter" or "witness"
  std::map<std::string, std::string> labels;
  std::string fingerprint;  // of its certificate
  TimeMs joined_at = 0;
  bool draining = false;  // its replicas move away and none are placed on it
  // What it offers replicas (their resources.memory / resources.cpu add up to at most
  // this); 0 = not limited.
  int64_t capacity_memory_bytes = 0;
  int64_t capacity_cpu_millis = 0;
};

struct ClusterWorkload {
  std::string name;
  std::string spec_json;  // SpecToJson()
  std::string spec_hash;  // TemplateHash()
  int64_t generation = 0;
  TimeMs created_at = 0;
  TimeMs updated_at = 0;
  std::string node;  // the node it was applied through: where it starts, if it fits
  // The node of each replica, by index ("" = not placed yet); set by the leader's
  // scheduler (lib/cluster/schedule.h).
  std::vector<std::string> assigned;
  // standby: warm: the node that keeps it created, not started, to take the next
  // replica that must move ("" = none); set by the leader's scheduler.
  std::string standby;
};

class ClusterState {
 public:
  // Applies the committed entry with Raft index `index` and returns its result (see
  // the entry makers). A malformed entry changes nothing and gives an error result.
  std::string Apply(uint64_t index, std::string_view entry);
  // All of the state, and back. Restore of a bad snapshot changes nothing.
  std::string Snapshot() const;
  Status Restore(std::string_view snapshot);

  bool initialized() const { return !cluster_id_.empty(); }
  const std::string& cluster_id() const { return cluster_id_; }
  const std::string& ca_cert() const { return ca_cert_; }
  const std::string& ca_key() const { return ca_key_; }
  const std::string& token_secret() const { return token_secret_; }
  const ClusterSettings& settings() const { return settings_; }
  const std::map<std::string, ClusterMember>& members() const { return members_; }
  const std::set<std::string>& revoked() const { return revoked_; }
  const std::map<std::string, ClusterWorkload>& workloads() const { return workloads_; }
  // The index of the last entry applied (or of the snapshot restored); 0 when none.
  uint64_t applied_index() const { return applied_index_; }

  const ClusterMember* MemberByName(const std::string& name) const;
  const ClusterMember* MemberById(uint64_t id) const;

 private:
  std::string ApplyInit(const nlohmann::json& entry);
  std::string ApplyMember(const nlohmann::json& entry);
  std::string ApplyRemove(const nlohmann::json& entry);
  std::string ApplyToken(const nlohmann::json& entry);
  std::string ApplySettings(const nlohmann::json& entry);
  std::string ApplyPut(const nlohmann::json& entry);
  std::string ApplyDelete(const nlohmann::json& entry);
  std::string ApplyAssign(const nlohmann::json& entry);
  std::string ApplyDrain(const nlohmann::json& entry);

  std::string cluster_id_;
  std::string ca_cert_, ca_key_;
  std::string token_secret_;
  ClusterSettings settings_;
  std::map<std::string, ClusterMember> members_;  // by name
  std::set<std::string> revoked_;                 // fingerprints of removed members
  std::map<std::string, ClusterWorkload> workloads_;
  uint64_t applied_index_ = 0;
};

// --- entries (each applied by every node) ---

// The cluster is born: its id, CA, token secret and settings. Result: {}.
std::string InitEntry(const std::string& cluster_id, const std::string& ca_cert,
                      const std::string& ca_key, const std::string& token_secret,
                      const ClusterSettings& settings);
// Adds or replaces a member. Result: {}.
std::string MemberEntry(const ClusterMember& member);
// Removes a member and revokes its certificate. Result: {} or NotFound.
std::string RemoveEntry(const std::string& name);
std::string TokenEntry(const std::string& secret);
std::string SettingsEntry(const ClusterSettings& settings);
// Stores workloads, all or nothing; a new one is assigned to `node`, an existing one
// keeps its node. Result: {"items":[{"name","outcome","generation"}]}.
std::string PutEntry(const std::vector<WorkloadSpec>& specs, const std::string& node, TimeMs now);
// Result: {} or NotFound.
std::string DeleteEntry(const std::string& name);
// The scheduler's placements: workload -> node per replica. Workloads gone meanwhile
// are skipped; a list is cut or padded ("") to the workload's replicas. Result: {}.
// Placements (workload -> node per replica) and warm standbys (workload -> node, "" =
// none) that change.
std::string AssignEntry(const std::map<std::string, std::vector<std::string>>& placements,
                        const std::map<std::string, std::string>& standbys = {});
// Marks a member Draining (or not). Result: {} or NotFound.
std::string DrainEntry(const std::string& name, bool draining);
// Changes nothing: a node that has applied its own barrier has applied everything
// committed before it (ClusterImpl::CatchUp). Result: {"items":[]}.
std::string BarrierEntry();

// An entry's result as a Status: OK, or the error it carries.
Status ResultStatus(std::string_view result);
// PutEntry's result.
Result<std::vector<ApplyResult>> PutResults(std::string_view result);

// The margin fenceAfter keeps below nodeLostAfter, beyond one heartbeat: a cut-off node
// has killed its exclusive workloads before the leader may start them elsewhere
// (round trips, a tick, the kill).
constexpr int64_t kFenceMarginMs = 200;
// 0 < heartbeat, fenceAfter + heartbeat + kFenceMarginMs <= nodeLostAfter; the error
// says which and why.
Status CheckSettings(const ClusterSettings& settings);

std::string SettingsJson(const ClusterSettings& settings);
Result<ClusterSettings> SettingsFromJson(std::string_view json);

}  // namespace petrel::internal

#endif  // PETREL_LIB_CLUSTER_STATE_H_
