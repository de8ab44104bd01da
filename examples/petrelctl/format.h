// The pure part of petrelctl: what petreld's JSON answers mean, and how they are
// shown (ages, times, quantities, aligned tables, the stable `-o json` shape). No
// I/O here, so tests/unit/petrelctl_test.cpp checks all of it without a daemon.
#ifndef PETREL_EXAMPLES_PETRELCTL_FORMAT_H_
#define PETREL_EXAMPLES_PETRELCTL_FORMAT_H_

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrelctl {

using nlohmann::json;

// --- petreld's answers (examples/petreld/API.md), decoded strictly ---

struct ReplicaView {
  int64_t index = 0;
  std::string phase;
  std::string container_id;
  int64_t pid = 0;
  int64_t restarts = 0;
  int64_t last_exit_code = -1;
  std::string message;
  std::string node;    // the node it runs on; "" from a petreld that does not say
  bool ready = false;  // from a petreld before probes: running
  std::optional<petrel::PullProgress> pull;  // while Pulling, from a petreld that says
};

struct WorkloadView {
  std::string name;
  int64_t generation = 0;
  std::string spec_hash;
  petrel::TimeMs created_at = 0;
  petrel::TimeMs updated_at = 0;
  petrel::TimeMs deleted_at = 0;  // != 0: deleted, Terminating until its containers are gone
  int64_t desired_replicas = 0;
  int64_t ready_replicas = 0;
  json spec;          // the canonical spec JSON (petrel::SpecFromJson reads it)
  std::string image;  // spec.image
  std::vector<ReplicaView> replicas;
};

struct EventView {
  int64_t seq = 0;
  petrel::TimeMs time = 0;
  std::string workload;  // "" for node-wide events
  int64_t replica = -1;  // -1 when not about one replica
  std::string type;
  std::string message;
};

// One item of PUT /v1/workloads' answer.
struct ApplyResultView {
  std::string name;
  std::string outcome;  // "created", "configured" or "unchanged"
};

// A member of the cluster, as GET /v1/nodes answers.
struct NodeView {
  std::string name;
  uint64_t id = 0;
  std::string role;    // "voter" or "witness"
  std::string status;  // "Ready", "Lost" or "Draining"
  bool leader = false;
  std::string address;
  std::map<std::string, std::string> labels;
  petrel::TimeMs joined_at = 0;
  petrel::TimeMs last_heard = 0;  // 0: never
};

// GET /v1/cluster's answer.
// The cluster's settings: GET /v1/cluster's "settings", PUT /v1/cluster/settings's answer.
// Durations as petreld writes them ("200ms").
struct SettingsView {
  std::string heartbeat;
  std::string node_lost_after;
  std::string fence_after;
};

struct ClusterView {
  bool member = false;
  std::string cluster_id;
  std::string self;
  std::string leader;  // "" while there is none
  uint64_t term = 0;
  uint64_t applied_index = 0;
  SettingsView settings;
  std::vector<NodeView> members;
};

// Parses without throwing; the error says what was expected and where it broke.
petrel::Result<json> ParseJson(const std::string& text);

// Each fails with a message naming the field ("replicas[1].pid: must be an integer")
// when petreld's answer lacks a key petrelctl needs; keys it does not know are ignored.
petrel::Result<WorkloadView> DecodeWorkload(const json& j);
petrel::Result<std::vector<WorkloadView>> DecodeWorkloadList(const json& j);  // {"items":[...]}
petrel::Result<EventView> DecodeEvent(const json& j);
petrel::Result<std::vector<EventView>> DecodeEventList(const json& j);           // {"items":[...]}
petrel::Result<std::vector<ApplyResultView>> DecodeApplyResults(const json& j);  // {"items":[...]}
petrel::Result<NodeView> DecodeNode(const json& j);
petrel::Result<std::vector<NodeView>> DecodeNodeList(const json& j);  // {"items":[...]}
petrel::Result<ClusterView> DecodeCluster(const json& j);
petrel::Result<std::string> DecodeToken(const json& j);  // {"token":"..."}
petrel::Result<SettingsView> DecodeSettings(const json& j);

// `get workloads -o json`: exactly {"items":[{"name","phase","desiredReplicas",
// "readyReplicas","replicas":[{"index","phase","containerId","pid","restarts",
// "lastExitCode","message","node"}]}]}, whatever else the server sends. The workload's "phase"
// is WorkloadPhase's.
json StableJson(const std::vector<WorkloadView>& workloads);

// Pretty (two-space indent, sorted keys, as nlohmann's std::map objects are), never
// throwing: bytes that are not UTF-8 become U+FFFD.
std::string PrettyJson(const json& j);

// --- columns ---

// The PHASE of a workload: the phase all its replicas share, else the worst one.
// Worst first: any phase petrelctl does not know, CrashLoop, Exited, Stopping,
// Pending, Pulling, Creating, Running. "-" when there are no replicas.
std::string SummarizePhase(const std::vector<ReplicaView>& replicas);
// The PHASE of a workload: "Terminating" once deleted (until its last container is
// gone), else SummarizePhase of its replicas.
std::string WorkloadPhase(const WorkloadView& w);

// AGE as kubectl writes it (apimachinery's HumanDuration): "45s", "3m12s", "15m",
// "5h", "7h30m", "2d", "3d4h", "1y100d"; "0s" up to a second in the future and
// "<invalid>" beyond that (a clock that went back).
std::string HumanDuration(int64_t ms);

// Local time, "2026-11-28 06:01:02".
std::string LocalTime(petrel::TimeMs t);

// 67108864 -> "64Mi", 1000 -> "1000"; the largest binary unit that divides exactly.
std::string FormatBytes(int64_t bytes);
// 500 -> "500m", 2000 -> "2".
std::string FormatCpu(int64_t millis);

// Arguments as a shell would need them: /bin/sh -c 'echo hi; sleep 1'.
std::string ShellJoin(const std::vector<std::string>& words);

// Lines up rows as kubectl does: each column as wide as its widest cell so far, two
// spaces between columns, nothing after the last. Control characters in cells (a
// newline in a message) become spaces; width counts UTF-8 characters, not bytes.
class Columns {
 public:
  Columns() = default;
  // Widens the columns to fit `row` without printing it.
  void Fit(const std::vector<std::string>& row);
  // Fits `row`, then returns it as one line ending in '\n'. Rows formatted after a
  // wider one line up with it; rows formatted before it do not (a followed stream).
  std::string Format(const std::vector<std::string>& row);

 private:
  std::vector<size_t> widths_;
};

// Every row (the first is the header) fitted first, then formatted; each line
// starts with `indent`.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows,
                        const std::string& indent = "");

// The table rows of `get workloads`: NAME READY PHASE RESTARTS AGE [IMAGE].
std::vector<std::string> WorkloadHeader(bool wide);
std::vector<std::string> WorkloadRow(const WorkloadView& w, petrel::TimeMs now, bool wide);

// The longest event type petreld writes, to size a followed TYPE column.
inline constexpr const char kWidestEventType[] = "Terminating";

// The table rows of `events`: TIME WORKLOAD REPLICA TYPE MESSAGE.
std::vector<std::string> EventHeader();
std::vector<std::string> EventRow(const EventView& e);

// The table rows of `get nodes`: NAME ROLE STATUS LEADER ADDRESS AGE.
std::vector<std::string> NodeHeader();
std::vector<std::string> NodeRow(const NodeView& n, petrel::TimeMs now);

// An image in petreld's runtime (GET /v1/images).
struct ImageView {
  std::string id;  // "sha256:<hex>"
  std::vector<std::string> refs;
  int64_t size_bytes = 0;
  petrel::TimeMs created_at = 0;
  bool in_use = false;
};
petrel::Result<std::vector<ImageView>> DecodeImageList(const json& j);  // {"items":[...]}
// `get images`: IMAGE ID (12 hex digits, as docker shows it), REFERENCES, SIZE, AGE, IN USE.
std::vector<std::string> ImageHeader();
std::vector<std::string> ImageRow(const ImageView& i, petrel::TimeMs now);
// 1288490 -> "1.2MiB"; under 1 KiB in bytes ("512B").
std::string HumanBytes(int64_t bytes);

// One line of POST /v1/images/pull's stream: {"progress":{...}} (progress set, true) or
// the result {"image", "pulled":true} / {"image", "error", "status"} (*result set).
petrel::Result<bool> DecodePullLine(const json& j, petrel::PullProgress* progress,
                                    petrel::Status* result);
// How a pull goes, for a person: "downloading 12.3 of 45.6 MiB, 2/5 layers" and, when
// known, ", 3.1MiB/s, ETA 11s". With bar_width > 0 a bar of that many cells first
// ("[######......] ").
std::string PullProgressText(const petrel::PullProgress& p, double bytes_per_s, int bar_width);

// "heartbeat 200ms, node lost after 1s500ms, fence after 1s": `cluster status`'s
// Settings, and what `cluster set` prints.
std::string SettingsText(const SettingsView& s);

// `cluster status`: the cluster's id, leader, term and settings and a table of its
// members; or, for a node that is not a member yet, how to make it one.
std::string ClusterStatusText(const ClusterView& c, petrel::TimeMs now);

// `describe node`: the node's fields and a table of the replicas of `workloads`
// that run on it.
std::string DescribeNodeText(const NodeView& n, const std::vector<WorkloadView>& workloads,
                             petrel::TimeMs now);

// `describe workload`: the workload's fields, a table of its replicas and `events`
// (already cut to the ones to show), kubectl-describe style.
std::string DescribeText(const WorkloadView& w, const petrel::WorkloadSpec& spec,
                         const std::vector<EventView>& events, petrel::TimeMs now);

}  // namespace petrelctl

#endif  // PETREL_EXAMPLES_PETRELCTL_FORMAT_H_
