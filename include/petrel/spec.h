// Value types that describe what the user wants (WorkloadSpec) and what petrel
// observed (ReplicaStatus). Plain structs, copied freely; no behaviour here beyond
// validation and hashing, which live in lib/spec.
//
// Units are fixed so no field needs a unit beside it: memory in bytes, CPU in
// millicores (1000 = one core), every duration in milliseconds, every point in
// time in milliseconds since the Unix epoch (TimeMs).
#ifndef PETREL_SPEC_H_
#define PETREL_SPEC_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "petrel/status.h"

namespace petrel {

using TimeMs = int64_t;  // milliseconds since the Unix epoch

struct PortSpec {
  int container_port = 0;        // 1..65535
  int host_port = 0;             // 0 = not published
  std::string protocol = "tcp";  // "tcp" or "udp"
  // The host address the port is published on: an IPv4 address of the host; "" = all of
  // them (127.0.0.1 included; ::1 not: CNI's portmap maps IPv4 only here).
  std::string host_ip;
  bool operator==(const PortSpec&) const;
};

// Where a workload's containers are on the network.
enum class NetworkMode {
  // A network namespace of its own on petrel's bridge: an address of its own, the
  // other containers of the node reachable, ports published on the host through NAT
  // (any hostPort). Needs CNI's plugins (Debian: containernetworking-plugins) and
  // iptables; without them the replica fails, naming what is missing.
  kBridge,
  kHost,  // the host's network namespace: its interfaces and ports, hostPort == port
  kNone,  // a network namespace of its own with loopback only; no port published
};
const char* NetworkModeName(NetworkMode mode);  // "bridge", "host", "none"
std::optional<NetworkMode> ParseNetworkMode(std::string_view name);

struct MountSpec {
  enum class Type { kBind, kTmpfs };
  Type type = Type::kBind;
  std::string source;  // host path; bind mounts only
  std::string target;  // absolute path in the container
  bool read_only = false;
  int64_t size_bytes = 0;  // tmpfs only; 0 = the runtime's default
  bool operator==(const MountSpec&) const;
};

struct Resources {
  int64_t memory_bytes = 0;  // 0 = unlimited
  int64_t cpu_millis = 0;    // 0 = unlimited
  int64_t pids = 0;          // 0 = unlimited
  // Every device may be opened, not only the default few (a privileged container's; set
  // when lowering from SecurityContext::privileged, never in a WorkloadSpec's own).
  bool all_devices = false;
  bool operator==(const Resources&) const;
};

// What a workload's containers may ask of the kernel, shaped as Kubernetes'
// securityContext. At its defaults a container gets petrel's capability set (Docker's)
// and petrel's seccomp profile.
struct SecurityContext {
  enum class Seccomp { kRuntimeDefault, kUnconfined };
  // Root on the host: every capability petrel has to give, no seccomp filter, every
  // device allowed (any node it makes with mknod can be opened), /proc and /sys neither
  // masked nor read-only. The other fields are then ignored.
  bool privileged = false;
  // Capability names as Kubernetes writes them ("NET_ADMIN"), "CAP_" in front or not, or
  // "ALL". drop takes them from petrel's set, then add puts them in. A container on the
  // host's network (NetworkMode::kHost) loses CAP_NET_RAW (raw sockets there see and
  // forge the host's traffic) unless add names it.
  std::vector<std::string> capabilities_add;
  std::vector<std::string> capabilities_drop;
  Seccomp seccomp = Seccomp::kRuntimeDefault;

  bool empty() const { return *this == SecurityContext{}; }
  bool operator==(const SecurityContext&) const;
};
const char* SeccompName(SecurityContext::Seccomp seccomp);  // "RuntimeDefault", "Unconfined"

enum class RestartPolicy { kAlways, kOnFailure, kNever };

// How an image already had is treated before a container is made from it (a workload's
// imagePullPolicy, with Kubernetes' meaning; ContainerRuntime::PullImage takes it).
enum class PullPolicy {
  kIfNotPresent,  // an image once had is used as it is (a local file changed since is
                  // imported again)
  kAlways,        // a registry reference is resolved again before each container create,
                  // and pulled when its tag moved; running containers stay as they are
  kNever,         // only an image already had; else FailedPrecondition
                  // ("<image>: not present, and imagePullPolicy is Never")
};
const char* PullPolicyName(PullPolicy policy);  // "IfNotPresent", "Always", "Never"
std::optional<PullPolicy> ParsePullPolicy(std::string_view name);

// Where a pull stands. Bytes count the blobs this pull needs (those already in the
// store are done at once); the totals may grow while manifests are read.
struct PullProgress {
  std::string phase;  // "resolving", "downloading", "unpacking"
  int64_t bytes_done = 0;
  int64_t bytes_total = 0;  // 0: not known yet
  int layers_done = 0;
  int layers_total = 0;
};
// "downloading 12.3 of 45.6 MiB, 2/5 layers"; "resolving" before sizes are known.
std::string FormatPullProgress(const PullProgress& progress);

// A health check petrel makes of a running container, shaped as Kubernetes' probes: one
// of exec (a command in the container, through ContainerRuntime::Exec, exit code 0 =
// success), tcpSocket (a TCP connection to `port` on the container's loopback, in its
// network namespace) or httpGet (GET `path` there; a status of 200-399 = success).
// It first runs initial_delay_ms after the container started, then every period_ms; a
// check not answered within timeout_ms failed. failure_threshold failures in a row turn
// a passing probe failing, success_threshold successes in a row a failing one passing
// (it must be 1 for liveness and startup probes).
struct ProbeSpec {
  enum class Kind { kNone, kExec, kTcpSocket, kHttpGet };
  Kind kind = Kind::kNone;           // kNone: no probe; the other fields are then ignored
  std::vector<std::string> command;  // exec: argv, command[0] looked up in the container
  int port = 0;                      // tcpSocket, httpGet: 1..65535
  std::string path = "/";            // httpGet: begins with '/'; may carry a ?query
  std::string scheme = "HTTP";       // httpGet: HTTP (HTTPS is not supported yet)
  std::vector<std::pair<std::string, std::string>> http_headers;  // httpGet: name, value
  int64_t initial_delay_ms = 0;
  int64_t period_ms = 10000;
  int64_t timeout_ms = 1000;
  int failure_threshold = 3;
  int success_threshold = 1;

  bool empty() const { return kind == Kind::kNone; }
  bool operator==(const ProbeSpec&) const;
  bool operator!=(const ProbeSpec& o) const { return !(*this == o); }
};
const char* ProbeKindName(ProbeSpec::Kind kind);  // "exec", "tcpSocket", "httpGet", "none"

struct Backoff {
  int64_t initial_ms = 1000;       // the first restart waits this long
  int64_t max_ms = 5 * 60 * 1000;  // the wait doubles per failure up to this
  // A replica that stayed up this long has its failure streak forgotten.
  // 0 = the default: the larger of 10 x initial and 60 s.
  int64_t reset_after_ms = 0;
  bool operator==(const Backoff&) const;
};

// One workload: a container template run as `replicas` identical replicas.
struct WorkloadSpec {
  std::string name;  // DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63
  std::map<std::string, std::string> labels;
  int replicas = 1;
  std::string image;  // oci:DIR, oci-archive:FILE, docker-archive:FILE or a registry ref
  std::vector<std::string> command;  // replaces the image's entrypoint when not empty
  std::vector<std::string> args;     // replaces the image's cmd when not empty
  std::map<std::string, std::string> env;
  std::string working_dir;  // "" = the image's
  std::string user;         // "" = the image's; "uid" or "uid:gid"
  bool read_only_rootfs = false;
  NetworkMode network = NetworkMode::kBridge;
  std::vector<PortSpec> ports;
  std::vector<MountSpec> mounts;
  Resources resources;
  RestartPolicy restart_policy = RestartPolicy::kAlways;
  // Not in TemplateHash: a change replaces no container; the next create follows it.
  PullPolicy image_pull_policy = PullPolicy::kIfNotPresent;
  Backoff backoff;
  int64_t termination_grace_ms = 10000;  // SIGTERM, then SIGKILL after this long
  SecurityContext security_context;

  // Health probes, run by petrel (so not in TemplateHash: a change takes effect without
  // replacing containers). A failing liveness probe kills the container, which then
  // restarts under restart_policy and its back-off. A readiness probe decides whether a
  // running replica is ready (ReplicaStatus::ready, WorkloadState::ready_replicas);
  // without one a running replica is ready. A startup probe holds the other two back
  // until it passes once, and kills the container as liveness does when it fails.
  ProbeSpec liveness_probe;
  ProbeSpec readiness_probe;
  ProbeSpec startup_probe;

  // Placement: where in a cluster the replicas may run. Not part of the container (not
  // in TemplateHash); a single node ignores them.
  //
  // Labels a node must carry, each key with exactly this value (ValidateLabel).
  std::map<std::string, std::string> node_selector;
  // Node names in order of preference (ValidateNodeName, no repeats): the first that
  // fits runs the workload, the next stands by. Empty = any node that fits.
  std::vector<std::string> preferred_nodes;
  // At most one instance running in the whole cluster, ever (replicas 0 or 1).
  bool exclusive = false;
  // "" = no standby; "warm": the next node in line keeps the image present and the
  // container created, not started, so a failover is only a start.
  std::string standby;
  // Containers kept created but not started beyond `replicas` (indexes replicas ..
  // replicas + standbyReplicas - 1, phase Standby): scaling up onto them is only a
  // start. A cluster sets it on the node next in line for a workload with standby: warm
  // (and 0 elsewhere); on a single node it can be set by hand. Not in TemplateHash.
  int standby_replicas = 0;

  bool operator==(const WorkloadSpec&) const;
};

// Pending: not looked at yet. Pulling: waiting for its image (being pulled, or
// failed and backing off: see the message). Creating: its container is being made
// and started. Running. Exited: done under its restart policy. CrashLoop: waiting
// out a back-off before the next container. Stopping: no longer wanted, its
// container is stopping. Standby: its container is created, not started (a warm
// standby beyond `replicas`: see WorkloadSpec::standby_replicas).
enum class Phase {
  kPending,
  kPulling,
  kCreating,
  kRunning,
  kExited,
  kCrashLoop,
  kStopping,
  kStandby
};
const char* PhaseName(Phase phase);
std::optional<Phase> ParsePhase(const std::string& name);
const char* RestartPolicyName(RestartPolicy policy);

// What petrel knows of one replica. Persisted; survives restarts of petrel.
struct ReplicaStatus {
  std::string workload;
  int index = 0;
  Phase phase = Phase::kPending;
  std::string container_id;  // "" when no container exists
  int pid = 0;               // 0 when not running
  int restarts = 0;          // containers created for this replica after the first
  int last_exit_code = -1;   // -1 = never exited
  std::string message;       // why the replica is in this phase, for humans
  TimeMs since = 0;          // when the phase was entered
  TimeMs next_retry = 0;     // CrashLoop: when the next restart happens
  int failures = 0;          // consecutive failures; drives the backoff
  std::string spec_hash;     // the template hash the current container was made from
  // The node that runs this replica: filled in by Get and List (not stored, not
  // compared by ==).
  std::string node;
  // Running, its startup probe (if any) has passed and its readiness probe (if any)
  // passes. Known from the probes since petrel started: filled in by Get and List (not
  // stored, not compared by ==), so after a restart of petrel a replica with a
  // readiness or startup probe is not ready until the probe passes again.
  bool ready = false;
  // Phase Pulling: how the pull of its image goes, while one runs. Filled in by Get and
  // List (memory only: not stored, not compared by ==); the message then tells it too.
  std::optional<PullProgress> pull;

  bool operator==(const ReplicaStatus&) const;
  bool operator!=(const ReplicaStatus& o) const { return !(*this == o); }
};

// One reconcile transition, as delivered to subscribers and kept in the event log.
struct Event {
  int64_t seq = 0;  // increases by one per event, never reused
  TimeMs time = 0;
  std::string workload;  // "" for node-wide events
  int replica = -1;      // -1 when not about one replica
  std::string type;      // Applied, Deleted, Created, Started, Exited, BackOff, Killing, ...
  std::string message;
};

// --- spec helpers (lib/spec) ---

// Checks names, ranges and combinations. The error names the field path
// ("spec.resources.memory: must not be negative"); FieldError gives it apart.
Status ValidateWorkload(const WorkloadSpec& spec);

// Checks that every bind mount of `spec` takes its source from one of `allowed` (host
// directories; a source must be one of them or lie below one). Empty `allowed`: any
// path. Symbolic links are resolved as they are now, in the source's existing part and
// in `allowed`, so a link below an allowed directory does not lead out of it; a link
// made there later does (whoever may write below an allowed directory chooses what is
// mounted). InvalidArgument naming the field:
// "spec.mounts[0].source: \"/etc\" is not below an allowed host path (/srv/data)".
Status CheckHostPaths(const WorkloadSpec& spec, const std::vector<std::string>& allowed);

// A label as workloads and nodes carry them: `key` a Kubernetes qualified name
// ([prefix/]name), `value` empty or at most 63 of [A-Za-z0-9-_.], alphanumeric at both
// ends. InvalidArgument quoting what is wrong ("\"-x\" is not a label value (...)").
Status ValidateLabel(const std::string& key, const std::string& value);

// A node's name, as Options::node_name and WorkloadSpec::preferred_nodes hold it: 1 to
// 63 letters, digits, '.' and '-', starting with a letter or digit (it goes into
// container names). InvalidArgument quoting it otherwise.
Status ValidateNodeName(const std::string& name);

// A hash of what goes into the container (image, command, env, mounts, labels,
// securityContext, ...), not of the name, replicas, restart policy, backoff, grace
// period or placement: a change here replaces the replicas' containers. 16 lowercase hex digits (64
// bits of SHA-256).
std::string TemplateHash(const WorkloadSpec& spec);

// Canonical JSON (sorted keys, numbers in base units) and back. SpecFromJson
// accepts what SpecToJson writes: every field of petrel 0.1 always, the placement
// fields (nodeSelector, preferredNodes, exclusive, standby, standbyReplicas),
// imagePullPolicy and securityContext only when not at their default, so a spec that
// leaves them alone writes the same bytes as before they existed. SpecFromJson takes an absent one
// of them as its default (and one written at its default as that default).
std::string SpecToJson(const WorkloadSpec& spec);
Result<WorkloadSpec> SpecFromJson(const std::string& json);

// Quantities and durations as Kubernetes writes them.
// ParseBytes("64Mi") = 67108864; ParseCpuMillis("500m") = 500, ParseCpuMillis("1.5") = 1500;
// ParseDurationMs("1m30s") = 90000. A fraction of the base unit rounds up
// (ParseBytes("0.5") = 1). Each fails with InvalidArgument on anything else, negative
// values and values past INT64_MAX included; the message quotes the text
// ("\"64Q\" is not a quantity").
Result<int64_t> ParseBytes(const std::string& text);
Result<int64_t> ParseCpuMillis(const std::string& text);
Result<int64_t> ParseDurationMs(const std::string& text);
std::string FormatDurationMs(int64_t ms);  // "1m30s", "500ms", "0s"

}  // namespace petrel

#endif  // PETREL_SPEC_H_
