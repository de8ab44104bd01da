#include "format.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <limits>
#include <set>
#include <string_view>
#include <utility>

namespace petrelctl {
namespace {

using petrel::Status;

std::string Path(const std::string& prefix, const char* key) {
  return prefix.empty() ? key : prefix + "." + key;
}

Status Bad(const std::string& path, const char* what) {
  return Status::InvalidArgument(path + ": " + what);
}

Status Get(const json& o, const std::string& prefix, const char* key, int64_t* out) {
  auto it = o.find(key);
  if (it == o.end()) return Bad(Path(prefix, key), "is missing");
  if (it->is_number_unsigned()) {
    if (it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Bad(Path(prefix, key), "is out of range");
    }
  } else if (!it->is_number_integer()) {
    return Bad(Path(prefix, key), "must be an integer");
  }
  *out = it->get<int64_t>();
  return Status::OK();
}

Status Get(const json& o, const std::string& prefix, const char* key, std::string* out) {
  auto it = o.find(key);
  if (it == o.end()) return Bad(Path(prefix, key), "is missing");
  if (!it->is_string()) return Bad(Path(prefix, key), "must be a string");
  *out = it->get<std::string>();
  return Status::OK();
}

Status Get(const json& o, const std::string& prefix, const char* key, uint64_t* out) {
  auto it = o.find(key);
  if (it == o.end()) return Bad(Path(prefix, key), "is missing");
  if (!it->is_number_unsigned()) return Bad(Path(prefix, key), "must be an unsigned integer");
  *out = it->get<uint64_t>();
  return Status::OK();
}

Status Get(const json& o, const std::string& prefix, const char* key, bool* out) {
  auto it = o.find(key);
  if (it == o.end()) return Bad(Path(prefix, key), "is missing");
  if (!it->is_boolean()) return Bad(Path(prefix, key), "must be true or false");
  *out = it->get<bool>();
  return Status::OK();
}

Status Get(const json& o, const std::string& prefix, const char* key,
           std::map<std::string, std::string>* out) {
  auto it = o.find(key);
  std::string path = Path(prefix, key);
  if (it == o.end()) return Bad(path, "is missing");
  if (!it->is_object()) return Bad(path, "must be an object");
  out->clear();
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) return Bad(path + "." + k, "must be a string");
    (*out)[k] = v.get<std::string>();
  }
  return Status::OK();
}

Status ExpectObject(const json& j, const std::string& path) {
  return j.is_object() ? Status::OK() : Bad(path.empty() ? "(top)" : path, "must be an object");
}

// Decodes the array o[key] into *out with `decode_one` per item, whose path in errors
// is "prefix.key[i]".
template <typename T, typename F>
Status DecodeArray(const json& o, const std::string& prefix, const char* key, F decode_one,
                   std::vector<T>* out) {
  auto array = o.find(key);
  std::string path = Path(prefix, key);
  if (array == o.end()) return Bad(path, "is missing");
  if (!array->is_array()) return Bad(path, "must be an array");
  out->assign(array->size(), T());
  for (size_t i = 0; i < array->size(); i++) {
    PETREL_RETURN_IF_ERROR(
        decode_one((*array)[i], path + "[" + std::to_string(i) + "]", &(*out)[i]));
  }
  return Status::OK();
}

// One object decoded with `decode_at` from the top.
template <typename T, typename F>
petrel::Result<T> DecodeOne(const json& j, F decode_at) {
  T out;
  PETREL_RETURN_IF_ERROR(decode_at(j, "", &out));
  return out;
}

// A pull's progress: {"phase","bytesDone","bytesTotal","layersDone","layersTotal"}.
Status DecodePullProgress(const json& j, const std::string& path, petrel::PullProgress* p) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, path));
  PETREL_RETURN_IF_ERROR(Get(j, path, "phase", &p->phase));
  PETREL_RETURN_IF_ERROR(Get(j, path, "bytesDone", &p->bytes_done));
  PETREL_RETURN_IF_ERROR(Get(j, path, "bytesTotal", &p->bytes_total));
  int64_t done = 0, total = 0;
  PETREL_RETURN_IF_ERROR(Get(j, path, "layersDone", &done));
  PETREL_RETURN_IF_ERROR(Get(j, path, "layersTotal", &total));
  p->layers_done = static_cast<int>(done);
  p->layers_total = static_cast<int>(total);
  return Status::OK();
}

Status DecodeReplica(const json& j, const std::string& path, ReplicaView* r) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, path));
  PETREL_RETURN_IF_ERROR(Get(j, path, "index", &r->index));
  PETREL_RETURN_IF_ERROR(Get(j, path, "phase", &r->phase));
  PETREL_RETURN_IF_ERROR(Get(j, path, "containerId", &r->container_id));
  PETREL_RETURN_IF_ERROR(Get(j, path, "pid", &r->pid));
  PETREL_RETURN_IF_ERROR(Get(j, path, "restarts", &r->restarts));
  PETREL_RETURN_IF_ERROR(Get(j, path, "lastExitCode", &r->last_exit_code));
  if (j.contains("node")) PETREL_RETURN_IF_ERROR(Get(j, path, "node", &r->node));
  if (j.contains("ready")) {
    PETREL_RETURN_IF_ERROR(Get(j, path, "ready", &r->ready));
  } else {
    r->ready = r->phase == "Running";
  }
  if (auto pull = j.find("pull"); pull != j.end()) {
    PETREL_RETURN_IF_ERROR(DecodePullProgress(*pull, Path(path, "pull"), &r->pull.emplace()));
  }
  return Get(j, path, "message", &r->message);
}

Status DecodeWorkloadAt(const json& j, const std::string& path, WorkloadView* w) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, path));
  PETREL_RETURN_IF_ERROR(Get(j, path, "name", &w->name));
  PETREL_RETURN_IF_ERROR(Get(j, path, "generation", &w->generation));
  PETREL_RETURN_IF_ERROR(Get(j, path, "specHash", &w->spec_hash));
  PETREL_RETURN_IF_ERROR(Get(j, path, "createdAt", &w->created_at));
  PETREL_RETURN_IF_ERROR(Get(j, path, "updatedAt", &w->updated_at));
  PETREL_RETURN_IF_ERROR(Get(j, path, "deletedAt", &w->deleted_at));
  PETREL_RETURN_IF_ERROR(Get(j, path, "desiredReplicas", &w->desired_replicas));
  PETREL_RETURN_IF_ERROR(Get(j, path, "readyReplicas", &w->ready_replicas));
  auto spec = j.find("spec");
  if (spec == j.end()) return Bad(Path(path, "spec"), "is missing");
  PETREL_RETURN_IF_ERROR(ExpectObject(*spec, Path(path, "spec")));
  w->spec = *spec;
  PETREL_RETURN_IF_ERROR(Get(*spec, Path(path, "spec"), "image", &w->image));
  return DecodeArray(j, path, "replicas", DecodeReplica, &w->replicas);
}

Status DecodeEventAt(const json& j, const std::string& path, EventView* e) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, path));
  PETREL_RETURN_IF_ERROR(Get(j, path, "seq", &e->seq));
  PETREL_RETURN_IF_ERROR(Get(j, path, "time", &e->time));
  PETREL_RETURN_IF_ERROR(Get(j, path, "workload", &e->workload));
  PETREL_RETURN_IF_ERROR(Get(j, path, "replica", &e->replica));
  PETREL_RETURN_IF_ERROR(Get(j, path, "type", &e->type));
  return Get(j, path, "message", &e->message);
}

Status DecodeApplyResultAt(const json& j, const std::string& path, ApplyResultView* r) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, path));
  PETREL_RETURN_IF_ERROR(Get(j, path, "name", &r->name));
  return Get(j, path, "outcome", &r->outcome);
}

Status DecodeNodeAt(const json& j, const std::string& path, NodeView* n) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, path));
  PETREL_RETURN_IF_ERROR(Get(j, path, "name", &n->name));
  PETREL_RETURN_IF_ERROR(Get(j, path, "id", &n->id));
  PETREL_RETURN_IF_ERROR(Get(j, path, "role", &n->role));
  PETREL_RETURN_IF_ERROR(Get(j, path, "status", &n->status));
  PETREL_RETURN_IF_ERROR(Get(j, path, "leader", &n->leader));
  PETREL_RETURN_IF_ERROR(Get(j, path, "address", &n->address));
  PETREL_RETURN_IF_ERROR(Get(j, path, "labels", &n->labels));
  PETREL_RETURN_IF_ERROR(Get(j, path, "joinedAt", &n->joined_at));
  return Get(j, path, "lastHeard", &n->last_heard);
}

Status DecodeSettingsAt(const json& j, const std::string& path, SettingsView* s) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, path));
  PETREL_RETURN_IF_ERROR(Get(j, path, "heartbeat", &s->heartbeat));
  PETREL_RETURN_IF_ERROR(Get(j, path, "nodeLostAfter", &s->node_lost_after));
  return Get(j, path, "fenceAfter", &s->fence_after);
}

// Decodes {"items":[...]} with `decode_one` per item.
template <typename T, typename F>
petrel::Result<std::vector<T>> DecodeItems(const json& j, F decode_one) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, ""));
  std::vector<T> out;
  PETREL_RETURN_IF_ERROR(DecodeArray(j, "", "items", decode_one, &out));
  return out;
}

// Phases from the one furthest from serving to Running; unknown ones rank before all.
int PhaseRank(const std::string& phase) {
  static constexpr petrel::Phase kWorstFirst[] = {
      petrel::Phase::kCrashLoop, petrel::Phase::kExited,  petrel::Phase::kStopping,
      petrel::Phase::kPending,   petrel::Phase::kPulling, petrel::Phase::kCreating,
      petrel::Phase::kStandby,   petrel::Phase::kRunning,
  };
  for (size_t i = 0; i < std::size(kWorstFirst); i++) {
    if (phase == petrel::PhaseName(kWorstFirst[i])) return static_cast<int>(i) + 1;
  }
  return 0;
}

// A cell as printed: control characters (newlines in a message, escape sequences)
// would break the table or the terminal, so they become spaces.
std::string Clean(const std::string& cell) {
  std::string out = cell;
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return out;
}

size_t Width(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

}  // namespace

petrel::Result<json> ParseJson(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("not valid JSON");
  return j;
}

petrel::Result<WorkloadView> DecodeWorkload(const json& j) {
  return DecodeOne<WorkloadView>(j, DecodeWorkloadAt);
}

petrel::Result<std::vector<WorkloadView>> DecodeWorkloadList(const json& j) {
  return DecodeItems<WorkloadView>(j, DecodeWorkloadAt);
}

petrel::Result<EventView> DecodeEvent(const json& j) {
  return DecodeOne<EventView>(j, DecodeEventAt);
}

petrel::Result<std::vector<EventView>> DecodeEventList(const json& j) {
  return DecodeItems<EventView>(j, DecodeEventAt);
}

petrel::Result<std::vector<ApplyResultView>> DecodeApplyResults(const json& j) {
  return DecodeItems<ApplyResultView>(j, DecodeApplyResultAt);
}

petrel::Result<NodeView> DecodeNode(const json& j) { return DecodeOne<NodeView>(j, DecodeNodeAt); }

petrel::Result<std::vector<NodeView>> DecodeNodeList(const json& j) {
  return DecodeItems<NodeView>(j, DecodeNodeAt);
}

petrel::Result<SettingsView> DecodeSettings(const json& j) {
  SettingsView s;
  PETREL_RETURN_IF_ERROR(DecodeSettingsAt(j, "", &s));
  return s;
}

petrel::Result<ClusterView> DecodeCluster(const json& j) {
  ClusterView c;
  PETREL_RETURN_IF_ERROR(ExpectObject(j, ""));
  PETREL_RETURN_IF_ERROR(Get(j, "", "member", &c.member));
  PETREL_RETURN_IF_ERROR(Get(j, "", "clusterId", &c.cluster_id));
  PETREL_RETURN_IF_ERROR(Get(j, "", "self", &c.self));
  PETREL_RETURN_IF_ERROR(Get(j, "", "leader", &c.leader));
  PETREL_RETURN_IF_ERROR(Get(j, "", "term", &c.term));
  PETREL_RETURN_IF_ERROR(Get(j, "", "appliedIndex", &c.applied_index));
  auto settings = j.find("settings");
  if (settings == j.end()) return Bad("settings", "is missing");
  PETREL_RETURN_IF_ERROR(DecodeSettingsAt(*settings, "settings", &c.settings));
  PETREL_RETURN_IF_ERROR(DecodeArray(j, "", "members", DecodeNodeAt, &c.members));
  return c;
}

petrel::Result<std::string> DecodeToken(const json& j) {
  std::string token;
  PETREL_RETURN_IF_ERROR(ExpectObject(j, ""));
  PETREL_RETURN_IF_ERROR(Get(j, "", "token", &token));
  if (token.empty()) return Bad("token", "is empty");
  return token;
}

json StableJson(const std::vector<WorkloadView>& workloads) {
  json items = json::array();
  for (const WorkloadView& w : workloads) {
    json replicas = json::array();
    for (const ReplicaView& r : w.replicas) {
      replicas.push_back({{"index", r.index},
                          {"phase", r.phase},
                          {"ready", r.ready},
                          {"containerId", r.container_id},
                          {"pid", r.pid},
                          {"restarts", r.restarts},
                          {"lastExitCode", r.last_exit_code},
                          {"message", r.message},
                          {"node", r.node}});
    }
    items.push_back({{"name", w.name},
                     {"phase", WorkloadPhase(w)},
                     {"desiredReplicas", w.desired_replicas},
                     {"readyReplicas", w.ready_replicas},
                     {"replicas", std::move(replicas)}});
  }
  return {{"items", std::move(items)}};
}

std::string PrettyJson(const json& j) {
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

std::string SummarizePhase(const std::vector<ReplicaView>& replicas) {
  if (replicas.empty()) return "-";
  const ReplicaView* worst = &replicas[0];
  for (const ReplicaView& r : replicas) {
    if (PhaseRank(r.phase) < PhaseRank(worst->phase)) worst = &r;
  }
  return worst->phase;
}

std::string WorkloadPhase(const WorkloadView& w) {
  return w.deleted_at != 0 ? "Terminating" : SummarizePhase(w.replicas);
}

// A transcription of k8s.io/apimachinery/pkg/util/duration.HumanDuration.
std::string HumanDuration(int64_t ms) {
  auto s = [](int64_t v) { return std::to_string(v); };
  int64_t seconds = ms / 1000;
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 60 * 2) return s(seconds) + "s";
  int64_t minutes = seconds / 60;
  if (minutes < 10) {
    return seconds % 60 == 0 ? s(minutes) + "m" : s(minutes) + "m" + s(seconds % 60) + "s";
  }
  if (minutes < 60 * 3) return s(minutes) + "m";
  int64_t hours = minutes / 60;
  if (hours < 8) return minutes % 60 == 0 ? s(hours) + "h" : s(hours) + "h" + s(minutes % 60) + "m";
  if (hours < 48) return s(hours) + "h";
  if (hours < 24 * 8) {
    return hours % 24 == 0 ? s(hours / 24) + "d" : s(hours / 24) + "d" + s(hours % 24) + "h";
  }
  if (hours < 24 * 365 * 2) return s(hours / 24) + "d";
  if (hours < 24 * 365 * 8) {
    int64_t days = hours / 24 % 365;
    return days == 0 ? s(hours / 24 / 365) + "y" : s(hours / 24 / 365) + "y" + s(days) + "d";
  }
  return s(hours / 24 / 365) + "y";
}

std::string LocalTime(petrel::TimeMs t) {
  std::time_t secs = static_cast<std::time_t>(t / 1000);
  std::tm tm{};
  char buf[32];
  if (localtime_r(&secs, &tm) == nullptr ||
      std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm) == 0) {
    return std::to_string(t);
  }
  return buf;
}

std::string FormatBytes(int64_t bytes) {
  static const char* const kUnits[] = {"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"};
  if (bytes == 0) return "0";
  for (size_t i = 0; i < std::size(kUnits); i++) {
    int shift = 10 * static_cast<int>(std::size(kUnits) - i);
    int64_t unit = int64_t{1} << shift;
    if (bytes % unit == 0) return std::to_string(bytes / unit) + kUnits[i];
  }
  return std::to_string(bytes);
}

std::string FormatCpu(int64_t millis) {
  return millis % 1000 == 0 ? std::to_string(millis / 1000) : std::to_string(millis) + "m";
}

std::string ShellJoin(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& word : words) {
    if (!out.empty()) out += ' ';
    bool safe = !word.empty();
    for (char c : word) {
      bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      safe = safe && (plain || std::string_view("_@%+=:,./-").find(c) != std::string_view::npos);
    }
    if (safe) {
      out += word;
      continue;
    }
    out += '\'';
    for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

void Columns::Fit(const std::vector<std::string>& row) {
  if (widths_.size() < row.size()) widths_.resize(row.size(), 0);
  for (size_t i = 0; i < row.size(); i++) widths_[i] = std::max(widths_[i], Width(Clean(row[i])));
}

std::string Columns::Format(const std::vector<std::string>& row) {
  Fit(row);
  std::string line;
  for (size_t i = 0; i < row.size(); i++) {
    std::string cell = Clean(row[i]);
    line += cell;
    if (i + 1 < row.size()) line.append(widths_[i] - Width(cell) + 2, ' ');
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line + "\n";
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows,
                        const std::string& indent) {
  Columns columns;
  for (const auto& row : rows) columns.Fit(row);
  std::string out;
  for (const auto& row : rows) out += indent + columns.Format(row);
  return out;
}

std::vector<std::string> WorkloadHeader(bool wide) {
  std::vector<std::string> header = {"NAME", "READY", "PHASE", "RESTARTS", "AGE"};
  if (wide) {
    header.push_back("IMAGE");
    header.push_back("NODES");
  }
  return header;
}

std::vector<std::string> WorkloadRow(const WorkloadView& w, petrel::TimeMs now, bool wide) {
  int64_t restarts = 0;
  for (const ReplicaView& r : w.replicas) restarts += r.restarts;
  std::vector<std::string> row = {
      w.name,
      std::to_string(w.ready_replicas) + "/" + std::to_string(w.desired_replicas),
      WorkloadPhase(w),
      std::to_string(restarts),
      HumanDuration(now - w.created_at),
  };
  if (wide) {
    row.push_back(w.image);
    // Where the replicas run, in replica order, each node once ("<none>" before any
    // is placed); a warm standby (an index past the desired count) is not one.
    std::string nodes;
    std::set<std::string> seen;
    for (const ReplicaView& r : w.replicas) {
      if (r.index >= w.desired_replicas || r.node.empty() || !seen.insert(r.node).second) continue;
      nodes += (nodes.empty() ? "" : ",") + r.node;
    }
    row.push_back(nodes.empty() ? "<none>" : nodes);
  }
  return row;
}

std::vector<std::string> EventHeader() {
  return {"TIME", "WORKLOAD", "REPLICA", "TYPE", "MESSAGE"};
}

std::vector<std::string> EventRow(const EventView& e) {
  return {LocalTime(e.time), e.workload.empty() ? "-" : e.workload,
          e.replica < 0 ? "-" : std::to_string(e.replica), e.type, e.message};
}

namespace {

// Describe's "Label:" column: every value starts after the longest label.
void Field(std::string* out, const std::string& label, const std::vector<std::string>& values) {
  constexpr size_t kLabelWidth = 17;
  std::string head = label + ":";
  head.append(head.size() < kLabelWidth ? kLabelWidth - head.size() : 1, ' ');
  if (values.empty()) {
    *out += head + "<none>\n";
    return;
  }
  for (size_t i = 0; i < values.size(); i++) {
    *out += (i == 0 ? head : std::string(head.size(), ' ')) + Clean(values[i]) + "\n";
  }
}

void Field(std::string* out, const std::string& label, const std::string& value) {
  Field(out, label, std::vector<std::string>{value});
}

// A table under its own label line, or "<none>" beside the label.
void Section(std::string* out, const std::string& label,
             const std::vector<std::vector<std::string>>& rows) {
  if (rows.size() <= 1) {
    Field(out, label, std::vector<std::string>());
    return;
  }
  *out += label + ":\n" + FormatTable(rows, "  ");
}

std::string Limit(int64_t value, const std::string& text) {
  return value == 0 ? "unlimited" : text;
}

std::string Or(const std::string& value, const std::string& fallback) {
  return value.empty() ? fallback : value;
}

// A probe as kubectl describes one: "http-get :8080/healthz delay=0s timeout=1s
// period=10s #success=1 #failure=3", or "<none>".
// "<default>", "privileged (root on the host)", or what differs from the default:
// "capabilities -ALL +NET_BIND_SERVICE, seccomp Unconfined".
std::string SecurityText(const petrel::SecurityContext& sc) {
  if (sc.privileged) return "privileged (root on the host)";
  std::vector<std::string> parts;
  std::string caps;
  for (const std::string& c : sc.capabilities_drop) caps += (caps.empty() ? "-" : " -") + c;
  for (const std::string& c : sc.capabilities_add) caps += (caps.empty() ? "+" : " +") + c;
  if (!caps.empty()) parts.push_back("capabilities " + caps);
  if (sc.seccomp != petrel::SecurityContext::Seccomp::kRuntimeDefault) {
    parts.push_back(std::string("seccomp ") + petrel::SeccompName(sc.seccomp));
  }
  if (parts.empty()) return "<default>";
  std::string out = parts[0];
  for (size_t i = 1; i < parts.size(); i++) out += ", " + parts[i];
  return out;
}

std::string ProbeText(const petrel::ProbeSpec& p) {
  using petrel::FormatDurationMs;
  std::string check;
  switch (p.kind) {
    case petrel::ProbeSpec::Kind::kNone: return "<none>";
    case petrel::ProbeSpec::Kind::kExec: check = "exec " + ShellJoin(p.command); break;
    case petrel::ProbeSpec::Kind::kTcpSocket:
      check = "tcp-socket :" + std::to_string(p.port);
      break;
    case petrel::ProbeSpec::Kind::kHttpGet:
      check = "http-get :" + std::to_string(p.port) + p.path;
      break;
  }
  return check + " delay=" + FormatDurationMs(p.initial_delay_ms) +
         " timeout=" + FormatDurationMs(p.timeout_ms) + " period=" + FormatDurationMs(p.period_ms) +
         " #success=" + std::to_string(p.success_threshold) +
         " #failure=" + std::to_string(p.failure_threshold);
}

// "2026-11-28 06:01:02 (5m ago)", or `never` for 0.
std::string TimeAndAge(petrel::TimeMs t, petrel::TimeMs now, const std::string& never) {
  return t == 0 ? never : LocalTime(t) + " (" + HumanDuration(now - t) + " ago)";
}

}  // namespace

std::string DescribeText(const WorkloadView& w, const petrel::WorkloadSpec& spec,
                         const std::vector<EventView>& events, petrel::TimeMs now) {
  using petrel::FormatDurationMs;
  std::string out;
  Field(&out, "Name", w.name);
  std::vector<std::string> labels;
  for (const auto& [key, value] : spec.labels) labels.push_back(key + "=" + value);
  Field(&out, "Labels", labels);
  Field(&out, "Image", spec.image);
  if (w.deleted_at != 0) {
    Field(&out, "Status",
          "Terminating (deleted " + LocalTime(w.deleted_at) + ", " +
              HumanDuration(now - w.deleted_at) + " ago; its containers are stopping)");
  }
  Field(&out, "Replicas",
        std::to_string(w.desired_replicas) + " desired | " + std::to_string(w.ready_replicas) +
            " ready");
  std::string policy = petrel::RestartPolicyName(spec.restart_policy);
  if (spec.restart_policy != petrel::RestartPolicy::kNever) {
    const petrel::Backoff& b = spec.backoff;
    int64_t reset =
        b.reset_after_ms != 0 ? b.reset_after_ms : std::max(10 * b.initial_ms, int64_t{60000});
    policy += " (back-off " + FormatDurationMs(b.initial_ms) + ", doubling up to " +
              FormatDurationMs(b.max_ms) + "; reset after " + FormatDurationMs(reset) + " running)";
  }
  Field(&out, "Restart Policy", policy);
  Field(&out, "Grace Period", FormatDurationMs(spec.termination_grace_ms));
  const petrel::Resources& r = spec.resources;
  Field(&out, "Resources",
        "memory " + Limit(r.memory_bytes, FormatBytes(r.memory_bytes)) + ", cpu " +
            Limit(r.cpu_millis, FormatCpu(r.cpu_millis)) + ", pids " +
            Limit(r.pids, std::to_string(r.pids)));
  Field(&out, "Command",
        spec.command.empty() ? "<the image's entrypoint>" : ShellJoin(spec.command));
  Field(&out, "Args", spec.args.empty() ? "<the image's cmd>" : ShellJoin(spec.args));
  Field(&out, "Working Dir", Or(spec.working_dir, "<the image's>"));
  Field(&out, "User", Or(spec.user, "<the image's>"));
  Field(&out, "Read-only Root", spec.read_only_rootfs ? "true" : "false");
  Field(&out, "Security", SecurityText(spec.security_context));
  std::vector<std::string> env;
  for (const auto& [key, value] : spec.env) env.push_back(key + "=" + value);
  Field(&out, "Env", env);
  std::vector<std::string> ports;
  for (const petrel::PortSpec& p : spec.ports) {
    std::string port = std::to_string(p.container_port) + "/" + p.protocol;
    ports.push_back(p.host_port != 0 ? std::to_string(p.host_port) + ":" + port : port);
  }
  Field(&out, "Ports", ports);
  std::vector<std::string> mounts;
  for (const petrel::MountSpec& m : spec.mounts) {
    if (m.type == petrel::MountSpec::Type::kTmpfs) {
      mounts.push_back("tmpfs " + m.target +
                       (m.size_bytes ? " (" + FormatBytes(m.size_bytes) + ")" : ""));
    } else {
      mounts.push_back("bind " + m.source + " -> " + m.target +
                       (m.read_only ? " (read-only)" : ""));
    }
  }
  Field(&out, "Mounts", mounts);
  Field(&out, "Liveness", ProbeText(spec.liveness_probe));
  Field(&out, "Readiness", ProbeText(spec.readiness_probe));
  Field(&out, "Startup", ProbeText(spec.startup_probe));
  Field(&out, "Generation", std::to_string(w.generation) + " (spec hash " + w.spec_hash + ")");
  Field(&out, "Created", TimeAndAge(w.created_at, now, "-"));
  Field(&out, "Updated", TimeAndAge(w.updated_at, now, "-"));

  std::vector<std::vector<std::string>> replicas = {
      {"INDEX", "NODE", "PHASE", "READY", "CONTAINER", "PID", "RESTARTS", "LAST-EXIT", "MESSAGE"}};
  for (const ReplicaView& rv : w.replicas) {
    replicas.push_back(
        {std::to_string(rv.index), Or(rv.node, "-"), rv.phase, rv.ready ? "yes" : "no",
         rv.container_id.empty() ? "-" : rv.container_id.substr(0, 12),
         rv.pid == 0 ? "-" : std::to_string(rv.pid), std::to_string(rv.restarts),
         rv.last_exit_code < 0 ? "-" : std::to_string(rv.last_exit_code), rv.message});
  }
  Section(&out, "Replica Status", replicas);
  std::vector<std::vector<std::string>> rows = {{"TIME", "REPLICA", "TYPE", "MESSAGE"}};
  for (const EventView& e : events) {
    std::vector<std::string> row = EventRow(e);
    rows.push_back({row[0], row[2], row[3], row[4]});
  }
  Section(&out, "Events", rows);
  return out;
}

std::vector<std::string> NodeHeader() {
  return {"NAME", "ROLE", "STATUS", "LEADER", "ADDRESS", "AGE"};
}

std::vector<std::string> NodeRow(const NodeView& n, petrel::TimeMs now) {
  return {n.name,    n.role,
          n.status,  n.leader ? "yes" : "no",
          n.address, n.joined_at == 0 ? "-" : HumanDuration(now - n.joined_at)};
}

namespace {

Status DecodeImageAt(const json& j, const std::string& path, ImageView* i) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, path));
  PETREL_RETURN_IF_ERROR(Get(j, path, "id", &i->id));
  PETREL_RETURN_IF_ERROR(Get(j, path, "sizeBytes", &i->size_bytes));
  PETREL_RETURN_IF_ERROR(Get(j, path, "createdAt", &i->created_at));
  PETREL_RETURN_IF_ERROR(Get(j, path, "inUse", &i->in_use));
  auto refs = j.find("refs");
  const std::string where = Path(path, "refs");
  if (refs == j.end() || !refs->is_array()) return Bad(where, "must be an array");
  for (const json& r : *refs) {
    if (!r.is_string()) return Bad(where, "must hold strings");
    i->refs.push_back(r.get<std::string>());
  }
  return Status::OK();
}

}  // namespace

petrel::Result<std::vector<ImageView>> DecodeImageList(const json& j) {
  return DecodeItems<ImageView>(j, DecodeImageAt);
}

std::vector<std::string> ImageHeader() {
  return {"IMAGE ID", "REFERENCES", "SIZE", "AGE", "IN USE"};
}

std::vector<std::string> ImageRow(const ImageView& i, petrel::TimeMs now) {
  std::string id = i.id.compare(0, 7, "sha256:") == 0 ? i.id.substr(7) : i.id;
  std::string refs;
  for (const std::string& r : i.refs) refs += (refs.empty() ? "" : ",") + r;
  return {id.substr(0, 12), refs.empty() ? "<none>" : refs, HumanBytes(i.size_bytes),
          i.created_at == 0 ? "-" : HumanDuration(now - i.created_at), i.in_use ? "yes" : "no"};
}

std::string HumanBytes(int64_t bytes) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + "B";
  double v = static_cast<double>(bytes);
  int unit = -1;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    unit++;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%s", v, kUnits[unit]);
  return buf;
}

petrel::Result<bool> DecodePullLine(const json& j, petrel::PullProgress* progress,
                                    petrel::Status* result) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, ""));
  if (auto p = j.find("progress"); p != j.end()) {
    PETREL_RETURN_IF_ERROR(DecodePullProgress(*p, "progress", progress));
    return true;
  }
  if (j.contains("pulled")) {
    *result = Status::OK();
    return false;
  }
  std::string error;
  int64_t status = 0;
  PETREL_RETURN_IF_ERROR(Get(j, "", "error", &error));
  PETREL_RETURN_IF_ERROR(Get(j, "", "status", &status));
  switch (status) {
    case 404: *result = Status::NotFound(error); break;
    case 409: *result = Status::FailedPrecondition(error); break;
    case 501: *result = Status::NotSupported(error); break;
    default: *result = Status::Unavailable(error); break;
  }
  return false;
}

std::string PullProgressText(const petrel::PullProgress& p, double bytes_per_s, int bar_width) {
  std::string out;
  if (bar_width > 0) {
    int filled = p.bytes_total > 0
                     ? static_cast<int>(static_cast<double>(bar_width) *
                                        static_cast<double>(std::min(p.bytes_done, p.bytes_total)) /
                                        static_cast<double>(p.bytes_total))
                     : 0;
    out = "[" + std::string(static_cast<size_t>(filled), '#') +
          std::string(static_cast<size_t>(bar_width - filled), '.') + "] ";
  }
  out += petrel::FormatPullProgress(p);
  if (bytes_per_s > 0) {
    out += ", " + HumanBytes(static_cast<int64_t>(bytes_per_s)) + "/s";
    if (p.bytes_total > p.bytes_done) {
      double eta_s = static_cast<double>(p.bytes_total - p.bytes_done) / bytes_per_s;
      out += ", ETA " + HumanDuration(static_cast<int64_t>(eta_s * 1000) + 999);
    }
  }
  return out;
}

namespace {

std::vector<std::vector<std::string>> NodeTable(const std::vector<NodeView>& nodes,
                                                petrel::TimeMs now) {
  std::vector<std::vector<std::string>> rows = {NodeHeader()};
  for (const NodeView& n : nodes) rows.push_back(NodeRow(n, now));
  return rows;
}

}  // namespace

std::string SettingsText(const SettingsView& s) {
  return "heartbeat " + Clean(s.heartbeat) + ", node lost after " + Clean(s.node_lost_after) +
         ", fence after " + Clean(s.fence_after);
}

std::string ClusterStatusText(const ClusterView& c, petrel::TimeMs now) {
  if (!c.member) {
    return "Node " + Clean(c.self) +
           " is not in a cluster yet: run 'petrelctl cluster init' on it to start one, or\n"
           "restart its petreld with --join ADDR:PORT --token TOKEN to join one.\n";
  }
  std::string out;
  Field(&out, "Cluster", c.cluster_id);
  Field(&out, "This Node", c.self);
  Field(&out, "Leader",
        c.leader.empty() ? "<none> (no quorum, or an election is under way)" : c.leader);
  Field(&out, "Term", std::to_string(c.term));
  Field(&out, "Applied Index", std::to_string(c.applied_index));
  Field(&out, "Settings", SettingsText(c.settings));
  Section(&out, "Members", NodeTable(c.members, now));
  return out;
}

std::string DescribeNodeText(const NodeView& n, const std::vector<WorkloadView>& workloads,
                             petrel::TimeMs now) {
  std::string out;
  Field(&out, "Name", n.name);
  Field(&out, "ID", std::to_string(n.id));
  Field(&out, "Role", n.role == "witness" ? "witness (votes, runs no workloads)" : n.role);
  Field(&out, "Status", n.status);
  Field(&out, "Leader", n.leader ? "yes" : "no");
  Field(&out, "Address", n.address);
  std::vector<std::string> labels;
  for (const auto& [key, value] : n.labels) labels.push_back(key + "=" + value);
  Field(&out, "Labels", labels);
  Field(&out, "Joined", TimeAndAge(n.joined_at, now, "-"));
  Field(&out, "Last Heard", TimeAndAge(n.last_heard, now, "never"));
  std::vector<std::vector<std::string>> replicas = {
      {"WORKLOAD", "REPLICA", "PHASE", "RESTARTS", "CONTAINER"}};
  for (const WorkloadView& w : workloads) {
    for (const ReplicaView& r : w.replicas) {
      if (r.node != n.name) continue;
      replicas.push_back({w.name, std::to_string(r.index), r.phase, std::to_string(r.restarts),
                          r.container_id.empty() ? "-" : r.container_id.substr(0, 12)});
    }
  }
  Section(&out, "Replicas", replicas);
  return out;
}

}  // namespace petrelctl
