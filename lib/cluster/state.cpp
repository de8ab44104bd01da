#include "lib/cluster/state.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

namespace petrel::internal {

using nlohmann::json;

namespace {

std::string Ok(json result = json::object()) { return result.dump(); }

std::string Error(Status::Code code, const std::string& message) {
  return json{{"code", static_cast<int>(code)}, {"error", message}}.dump();
}

json MemberJson(const ClusterMember& m) {
  json j = {{"name", m.name},         {"id", m.id},         {"address", m.address},
            {"role", m.role},         {"labels", m.labels}, {"fingerprint", m.fingerprint},
            {"joinedAt", m.joined_at}};
  if (m.draining) j["draining"] = true;
  if (m.capacity_memory_bytes != 0) j["capacityMemory"] = m.capacity_memory_bytes;
  if (m.capacity_cpu_millis != 0) j["capacityCpuMillis"] = m.capacity_cpu_millis;
  return j;
}

ClusterMember MemberFromJson(const json& j) {
  ClusterMember m;
  m.name = j.at("name").get<std::string>();
  m.id = j.at("id").get<uint64_t>();
  m.address = j.at("address").get<std::string>();
  m.role = j.at("role").get<std::string>();
  m.labels = j.at("labels").get<std::map<std::string, std::string>>();
  m.fingerprint = j.at("fingerprint").get<std::string>();
  m.joined_at = j.at("joinedAt").get<int64_t>();
  m.draining = j.value("draining", false);
  m.capacity_memory_bytes = j.value("capacityMemory", int64_t{0});
  m.capacity_cpu_millis = j.value("capacityCpuMillis", int64_t{0});
  return m;
}

json WorkloadJson(const ClusterWorkload& w) {
  json j = {{"name", w.name},
            {"spec", w.spec_json},
            {"hash", w.spec_hash},
            {"generation", w.generation},
            {"createdAt", w.created_at},
            {"updatedAt", w.updated_at},
            {"node", w.node}};
  if (!w.assigned.empty()) j["assigned"] = w.assigned;
  if (!w.standby.empty()) j["standby"] = w.standby;
  return j;
}

ClusterWorkload WorkloadFromJson(const json& j) {
  ClusterWorkload w;
  w.name = j.at("name").get<std::string>();
  w.spec_json = j.at("spec").get<std::string>();
  w.spec_hash = j.at("hash").get<std::string>();
  w.generation = j.at("generation").get<int64_t>();
  w.created_at = j.at("createdAt").get<int64_t>();
  w.updated_at = j.at("updatedAt").get<int64_t>();
  w.node = j.at("node").get<std::string>();
  if (j.contains("assigned")) w.assigned = j.at("assigned").get<std::vector<std::string>>();
  w.standby = j.value("standby", std::string());
  return w;
}

}  // namespace

Status CheckSettings(const ClusterSettings& s) {
  if (s.heartbeat_ms <= 0 || s.fence_after_ms <= 0) {
    return Status::InvalidArgument("heartbeat and fenceAfter must be above 0");
  }
  if (s.fence_after_ms + s.heartbeat_ms + kFenceMarginMs > s.node_lost_after_ms) {
    return Status::InvalidArgument(
        "nodeLostAfter (" + FormatDurationMs(s.node_lost_after_ms) +
        ") must be at least fenceAfter + heartbeat + " + FormatDurationMs(kFenceMarginMs) + " (" +
        FormatDurationMs(s.fence_after_ms + s.heartbeat_ms + kFenceMarginMs) +
        "), so that a node cut off has stopped its exclusive workloads before they start "
        "elsewhere");
  }
  return Status::OK();
}

std::string SettingsJson(const ClusterSettings& s) {
  return json{{"heartbeatMs", s.heartbeat_ms},
              {"nodeLostAfterMs", s.node_lost_after_ms},
              {"fenceAfterMs", s.fence_after_ms}}
      .dump();
}

Result<ClusterSettings> SettingsFromJson(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::InvalidArgument("settings: not a JSON object");
  ClusterSettings s;
  try {
    s.heartbeat_ms = j.at("heartbeatMs").get<int64_t>();
    s.node_lost_after_ms = j.at("nodeLostAfterMs").get<int64_t>();
    s.fence_after_ms = j.at("fenceAfterMs").get<int64_t>();
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string("settings: ") + e.what());
  }
  return s;
}

const ClusterMember* ClusterState::MemberByName(const std::string& name) const {
  auto it = members_.find(name);
  return it == members_.end() ? nullptr : &it->second;
}

const ClusterMember* ClusterState::MemberById(uint64_t id) const {
  for (const auto& [name, m] : members_) {
    if (m.id == id) return &m;
  }
  return nullptr;
}

std::string ClusterState::Apply(uint64_t index, std::string_view text) {
  if (index > applied_index_) applied_index_ = index;
  json entry = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!entry.is_object() || !entry.contains("type") || !entry["type"].is_string()) {
    return Error(Status::Code::kCorruption,
                 "cluster entry " + std::to_string(index) + ": not an entry petrel wrote");
  }
  const std::string type = entry["type"].get<std::string>();
  try {
    if (type == "init") return ApplyInit(entry);
    if (type == "member") return ApplyMember(entry);
    if (type == "remove") return ApplyRemove(entry);
    if (type == "token") return ApplyToken(entry);
    if (type == "settings") return ApplySettings(entry);
    if (type == "put") return ApplyPut(entry);
    if (type == "delete") return ApplyDelete(entry);
    if (type == "assign") return ApplyAssign(entry);
    if (type == "drain") return ApplyDrain(entry);
  } catch (const json::exception& e) {
    return Error(Status::Code::kCorruption,
                 "cluster entry " + std::to_string(index) + " (" + type + "): " + e.what());
  }
  // A newer petrel's entry: skipped here, the same way on every node of this version.
  return Error(Status::Code::kNotSupported,
               "cluster entry " + std::to_string(index) + ": unknown type \"" + type + "\"");
}

std::string ClusterState::ApplyInit(const json& e) {
  if (initialized()) return Error(Status::Code::kFailedPrecondition, "cluster already initialized");
  Result<ClusterSettings> settings = SettingsFromJson(e.at("settings").dump());
  if (!settings.ok()) return Error(settings.status().code(), settings.status().message());
  cluster_id_ = e.at("clusterId").get<std::string>();
  ca_cert_ = e.at("caCert").get<std::string>();
  ca_key_ = e.at("caKey").get<std::string>();
  token_secret_ = e.at("secret").get<std::string>();
  settings_ = *settings;
  return Ok();
}

std::string ClusterState::ApplyMember(const json& e) {
  ClusterMember m = MemberFromJson(e.at("member"));
  members_[m.name] = std::move(m);
  return Ok();
}

std::string ClusterState::ApplyRemove(const json& e) {
  const std::string name = e.at("name").get<std::string>();
  auto it = members_.find(name);
  if (it == members_.end()) return Error(Status::Code::kNotFound, "no node named " + name);
  revoked_.insert(it->second.fingerprint);
  members_.erase(it);
  return Ok();
}

std::string ClusterState::ApplyToken(const json& e) {
  token_secret_ = e.at("secret").get<std::string>();
  return Ok();
}

std::string ClusterState::ApplySettings(const json& e) {
  Result<ClusterSettings> settings = SettingsFromJson(e.at("settings").dump());
  if (!settings.ok()) return Error(settings.status().code(), settings.status().message());
  settings_ = *settings;
  return Ok();
}

std::string ClusterState::ApplyPut(const json& e) {
  const std::string node = e.at("node").get<std::string>();
  const TimeMs now = e.at("at").get<int64_t>();
  // Checked first, so the entry is all or nothing.
  std::vector<std::pair<WorkloadSpec, std::string>> specs;
  for (const json& item : e.at("specs")) {
    const std::string text = item.get<std::string>();
    Result<WorkloadSpec> spec = SpecFromJson(text);
    if (!spec.ok()) return Error(Status::Code::kInvalidArgument, spec.status().message());
    if (Status s = ValidateWorkload(*spec); !s.ok()) return Error(s.code(), s.message());
    specs.emplace_back(std::move(*spec), text);
  }
  json items = json::array();
  for (auto& [spec, text] : specs) {
    auto it = workloads_.find(spec.name);
    const char* outcome = "unchanged";
    if (it == workloads_.end()) {
      ClusterWorkload w;
      w.name = spec.name;
      w.spec_json = text;
      w.spec_hash = TemplateHash(spec);
      w.generation = 1;
      w.created_at = w.updated_at = now;
      w.node = node;
      it = workloads_.emplace(w.name, std::move(w)).first;
      outcome = "created";
    } else if (it->second.spec_json != text) {
      ClusterWorkload& w = it->second;
      w.spec_json = text;
      w.spec_hash = TemplateHash(spec);
      w.generation++;
      // Scaled down: the highest replicas go; scaled up: the scheduler places the new.
      if (w.assigned.size() > static_cast<size_t>(std::max(0, spec.replicas))) {
        w.assigned.resize(static_cast<size_t>(std::max(0, spec.replicas)));
      }
      w.updated_at = now;
      outcome = "configured";
    }
    items.push_back(
        {{"name", spec.name}, {"outcome", outcome}, {"generation", it->second.generation}});
  }
  return Ok({{"items", std::move(items)}});
}

std::string ClusterState::ApplyDelete(const json& e) {
  const std::string name = e.at("name").get<std::string>();
  if (workloads_.erase(name) == 0) {
    return Error(Status::Code::kNotFound, "no workload named " + name);
  }
  return Ok();
}

std::string ClusterState::ApplyAssign(const json& e) {
  for (auto& [name, nodes] : e.at("placements").items()) {
    auto it = workloads_.find(name);
    if (it == workloads_.end()) continue;  // deleted meanwhile
    std::vector<std::string> assigned = nodes.get<std::vector<std::string>>();
    Result<WorkloadSpec> spec = SpecFromJson(it->second.spec_json);
    if (spec.ok()) assigned.resize(static_cast<size_t>(std::max(0, spec->replicas)));
    it->second.assigned = std::move(assigned);
  }
  auto standbys = e.find("standby");
  if (standbys != e.end()) {
    for (auto& [name, node] : standbys->items()) {
      auto it = workloads_.find(name);
      if (it != workloads_.end()) it->second.standby = node.get<std::string>();
    }
  }
  return Ok();
}

std::string ClusterState::ApplyDrain(const json& e) {
  const std::string name = e.at("name").get<std::string>();
  auto it = members_.find(name);
  if (it == members_.end()) return Error(Status::Code::kNotFound, "no node named " + name);
  it->second.draining = e.at("draining").get<bool>();
  return Ok();
}

std::string ClusterState::Snapshot() const {
  json members = json::array();
  for (const auto& [name, m] : members_) members.push_back(MemberJson(m));
  json workloads = json::array();
  for (const auto& [name, w] : workloads_) workloads.push_back(WorkloadJson(w));
  return json{{"version", 1},
              {"clusterId", cluster_id_},
              {"caCert", ca_cert_},
              {"caKey", ca_key_},
              {"secret", token_secret_},
              {"settings", json::parse(SettingsJson(settings_))},
              {"members", std::move(members)},
              {"revoked", revoked_},
              {"workloads", std::move(workloads)},
              {"applied", applied_index_}}
      .dump();
}

Status ClusterState::Restore(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Corruption("cluster snapshot: not JSON");
  ClusterState next;
  try {
    if (j.at("version").get<int>() != 1) {
      return Status::NotSupported("cluster snapshot: version " + j.at("version").dump() +
                                  " is newer than this petrel's 1");
    }
    next.cluster_id_ = j.at("clusterId").get<std::string>();
    next.ca_cert_ = j.at("caCert").get<std::string>();
    next.ca_key_ = j.at("caKey").get<std::string>();
    next.token_secret_ = j.at("secret").get<std::string>();
    Result<ClusterSettings> settings = SettingsFromJson(j.at("settings").dump());
    if (!settings.ok()) return settings.status().WithContext("cluster snapshot");
    next.settings_ = *settings;
    for (const json& m : j.at("members")) {
      ClusterMember member = MemberFromJson(m);
      next.members_[member.name] = std::move(member);
    }
    next.revoked_ = j.at("revoked").get<std::set<std::string>>();
    for (const json& w : j.at("workloads")) {
      ClusterWorkload workload = WorkloadFromJson(w);
      next.workloads_[workload.name] = std::move(workload);
    }
    next.applied_index_ = j.at("applied").get<uint64_t>();
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("cluster snapshot: ") + e.what());
  }
  *this = std::move(next);
  return Status::OK();
}

std::string InitEntry(const std::string& cluster_id, const std::string& ca_cert,
                      const std::string& ca_key, const std::string& token_secret,
                      const ClusterSettings& settings) {
  return json{{"type", "init"},         {"clusterId", cluster_id},
              {"caCert", ca_cert},      {"caKey", ca_key},
              {"secret", token_secret}, {"settings", json::parse(SettingsJson(settings))}}
      .dump();
}

std::string MemberEntry(const ClusterMember& member) {
  return json{{"type", "member"}, {"member", MemberJson(member)}}.dump();
}

std::string RemoveEntry(const std::string& name) {
  return json{{"type", "remove"}, {"name", name}}.dump();
}

std::string TokenEntry(const std::string& secret) {
  return json{{"type", "token"}, {"secret", secret}}.dump();
}

std::string SettingsEntry(const ClusterSettings& settings) {
  return json{{"type", "settings"}, {"settings", json::parse(SettingsJson(settings))}}.dump();
}

std::string PutEntry(const std::vector<WorkloadSpec>& specs, const std::string& node, TimeMs now) {
  json items = json::array();
  for (const WorkloadSpec& spec : specs) items.push_back(SpecToJson(spec));
  return json{{"type", "put"}, {"node", node}, {"at", now}, {"specs", std::move(items)}}.dump();
}

std::string DeleteEntry(const std::string& name) {
  return json{{"type", "delete"}, {"name", name}}.dump();
}

std::string AssignEntry(const std::map<std::string, std::vector<std::string>>& placements,
                        const std::map<std::string, std::string>& standbys) {
  json j = {{"type", "assign"}, {"placements", placements}};
  if (!standbys.empty()) j["standby"] = standbys;
  return j.dump();
}

std::string DrainEntry(const std::string& name, bool draining) {
  return json{{"type", "drain"}, {"name", name}, {"draining", draining}}.dump();
}

std::string BarrierEntry() {
  // An empty put: every petrel applies it as nothing, older ones too.
  return json{{"type", "put"}, {"node", ""}, {"at", 0}, {"specs", json::array()}}.dump();
}

Status ResultStatus(std::string_view result) {
  json j = json::parse(result, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Corruption("cluster: unreadable entry result");
  if (!j.contains("error")) return Status::OK();
  const std::string message = j["error"].is_string() ? j["error"].get<std::string>() : "";
  const int code = j.value("code", static_cast<int>(Status::Code::kInternal));
  switch (static_cast<Status::Code>(code)) {
    case Status::Code::kNotFound: return Status::NotFound(message);
    case Status::Code::kInvalidArgument: return Status::InvalidArgument(message);
    case Status::Code::kAlreadyExists: return Status::AlreadyExists(message);
    case Status::Code::kFailedPrecondition: return Status::FailedPrecondition(message);
    case Status::Code::kCorruption: return Status::Corruption(message);
    case Status::Code::kNotSupported: return Status::NotSupported(message);
    case Status::Code::kPermissionDenied: return Status::PermissionDenied(message);
    case Status::Code::kUnavailable: return Status::Unavailable(message);
    case Status::Code::kDeadlineExceeded: return Status::DeadlineExceeded(message);
    default: return Status::Internal(message);
  }
}

Result<std::vector<ApplyResult>> PutResults(std::string_view result) {
  PETREL_RETURN_IF_ERROR(ResultStatus(result));
  json j = json::parse(result, nullptr, /*allow_exceptions=*/false);
  std::vector<ApplyResult> out;
  try {
    for (const json& item : j.at("items")) {
      ApplyResult r;
      r.name = item.at("name").get<std::string>();
      const std::string outcome = item.at("outcome").get<std::string>();
      r.outcome = outcome == "created"      ? ApplyResult::Outcome::kCreated
                  : outcome == "configured" ? ApplyResult::Outcome::kConfigured
                                            : ApplyResult::Outcome::kUnchanged;
      r.generation = item.at("generation").get<int64_t>();
      out.push_back(std::move(r));
    }
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("cluster: put result: ") + e.what());
  }
  return out;
}

}  // namespace petrel::internal
