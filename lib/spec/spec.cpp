// Comparison, names and validation of the spec value types.
#include "petrel/spec.h"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <tuple>

#include "lib/spec/check.h"
#include "lib/spec/image_ref.h"
#include "lib/util/strings.h"

namespace petrel {

bool PortSpec::operator==(const PortSpec& o) const {
  return std::tie(container_port, host_port, protocol, host_ip) ==
         std::tie(o.container_port, o.host_port, o.protocol, o.host_ip);
}

bool MountSpec::operator==(const MountSpec& o) const {
  return std::tie(type, source, target, read_only, size_bytes) ==
         std::tie(o.type, o.source, o.target, o.read_only, o.size_bytes);
}

bool Resources::operator==(const Resources& o) const {
  return std::tie(memory_bytes, cpu_millis, pids, all_devices) ==
         std::tie(o.memory_bytes, o.cpu_millis, o.pids, o.all_devices);
}

bool SecurityContext::operator==(const SecurityContext& o) const {
  return std::tie(privileged, capabilities_add, capabilities_drop, seccomp) ==
         std::tie(o.privileged, o.capabilities_add, o.capabilities_drop, o.seccomp);
}

bool Backoff::operator==(const Backoff& o) const {
  return std::tie(initial_ms, max_ms, reset_after_ms) ==
         std::tie(o.initial_ms, o.max_ms, o.reset_after_ms);
}

bool ProbeSpec::operator==(const ProbeSpec& o) const {
  return std::tie(kind, command, port, path, scheme, http_headers, initial_delay_ms, period_ms,
                  timeout_ms, failure_threshold, success_threshold) ==
         std::tie(o.kind, o.command, o.port, o.path, o.scheme, o.http_headers, o.initial_delay_ms,
                  o.period_ms, o.timeout_ms, o.failure_threshold, o.success_threshold);
}

bool WorkloadSpec::operator==(const WorkloadSpec& o) const {
  return std::tie(name, labels, replicas, image, command, args, env, working_dir, user,
                  read_only_rootfs, network, ports, mounts, resources, restart_policy,
                  image_pull_policy, backoff, termination_grace_ms, security_context,
                  liveness_probe, readiness_probe, startup_probe, node_selector, preferred_nodes,
                  exclusive, standby, standby_replicas) ==
         std::tie(o.name, o.labels, o.replicas, o.image, o.command, o.args, o.env, o.working_dir,
                  o.user, o.read_only_rootfs, o.network, o.ports, o.mounts, o.resources,
                  o.restart_policy, o.image_pull_policy, o.backoff, o.termination_grace_ms,
                  o.security_context, o.liveness_probe, o.readiness_probe, o.startup_probe,
                  o.node_selector, o.preferred_nodes, o.exclusive, o.standby, o.standby_replicas);
}

bool ReplicaStatus::operator==(const ReplicaStatus& o) const {
  return std::tie(workload, index, phase, container_id, pid, restarts, last_exit_code, message,
                  since, next_retry, failures, spec_hash) ==
         std::tie(o.workload, o.index, o.phase, o.container_id, o.pid, o.restarts, o.last_exit_code,
                  o.message, o.since, o.next_retry, o.failures, o.spec_hash);
}

namespace {

constexpr Phase kPhases[] = {Phase::kPending, Phase::kPulling,   Phase::kCreating, Phase::kRunning,
                             Phase::kExited,  Phase::kCrashLoop, Phase::kStopping, Phase::kStandby};
constexpr RestartPolicy kPolicies[] = {RestartPolicy::kAlways, RestartPolicy::kOnFailure,
                                       RestartPolicy::kNever};

}  // namespace

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kPending: return "Pending";
    case Phase::kPulling: return "Pulling";
    case Phase::kCreating: return "Creating";
    case Phase::kRunning: return "Running";
    case Phase::kExited: return "Exited";
    case Phase::kCrashLoop: return "CrashLoop";
    case Phase::kStopping: return "Stopping";
    case Phase::kStandby: return "Standby";
  }
  return "Unknown";
}

std::optional<Phase> ParsePhase(const std::string& name) {
  for (Phase p : kPhases) {
    if (name == PhaseName(p)) return p;
  }
  return std::nullopt;
}

const char* ProbeKindName(ProbeSpec::Kind kind) {
  switch (kind) {
    case ProbeSpec::Kind::kNone: return "none";
    case ProbeSpec::Kind::kExec: return "exec";
    case ProbeSpec::Kind::kTcpSocket: return "tcpSocket";
    case ProbeSpec::Kind::kHttpGet: return "httpGet";
  }
  return "Unknown";
}

const char* SeccompName(SecurityContext::Seccomp seccomp) {
  switch (seccomp) {
    case SecurityContext::Seccomp::kRuntimeDefault: return "RuntimeDefault";
    case SecurityContext::Seccomp::kUnconfined: return "Unconfined";
  }
  return "Unknown";
}

const char* RestartPolicyName(RestartPolicy policy) {
  switch (policy) {
    case RestartPolicy::kAlways: return "Always";
    case RestartPolicy::kOnFailure: return "OnFailure";
    case RestartPolicy::kNever: return "Never";
  }
  return "Unknown";
}

const char* NetworkModeName(NetworkMode mode) {
  switch (mode) {
    case NetworkMode::kBridge: return "bridge";
    case NetworkMode::kHost: return "host";
    case NetworkMode::kNone: return "none";
  }
  return "unknown";
}

std::optional<NetworkMode> ParseNetworkMode(std::string_view name) {
  for (NetworkMode m : {NetworkMode::kBridge, NetworkMode::kHost, NetworkMode::kNone}) {
    if (name == NetworkModeName(m)) return m;
  }
  return std::nullopt;
}

std::optional<PullPolicy> ParsePullPolicy(std::string_view name) {
  for (PullPolicy p : {PullPolicy::kIfNotPresent, PullPolicy::kAlways, PullPolicy::kNever}) {
    if (name == PullPolicyName(p)) return p;
  }
  return std::nullopt;
}

std::string FormatPullProgress(const PullProgress& p) {
  std::string out = p.phase.empty() ? "pulling" : p.phase;
  if (p.bytes_total <= 0 && p.layers_total <= 0) return out;
  char mib[64];
  std::snprintf(mib, sizeof mib, " %.1f of %.1f MiB", p.bytes_done / 1048576.0,
                p.bytes_total / 1048576.0);
  out += mib;
  if (p.layers_total > 0) {
    out += ", " + std::to_string(p.layers_done) + "/" + std::to_string(p.layers_total) + " layers";
  }
  return out;
}

namespace internal {

std::optional<SecurityContext::Seccomp> ParseSeccomp(std::string_view name) {
  for (auto s :
       {SecurityContext::Seccomp::kRuntimeDefault, SecurityContext::Seccomp::kUnconfined}) {
    if (name == SeccompName(s)) return s;
  }
  return std::nullopt;
}

std::string CapabilityName(std::string_view name) {
  std::string out(name);
  if (out != "ALL" && out.compare(0, 4, "CAP_") != 0) out.insert(0, "CAP_");
  return out;
}

bool IsCapability(std::string_view name) {
  const std::string full = CapabilityName(name);
  for (const char* known : kCapabilities) {
    if (full == known) return true;
  }
  return false;
}

std::optional<RestartPolicy> ParseRestartPolicy(std::string_view name) {
  for (RestartPolicy p : kPolicies) {
    if (name == RestartPolicyName(p)) return p;
  }
  return std::nullopt;
}

std::string KeyPath(std::string_view parent, std::string_view key) {
  std::string out(parent);
  out += '.';
  out += Escape(key);
  return out;
}

namespace {

bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(char c) { return IsLower(c) || IsUpper(c) || IsDigit(c); }

// Kubernetes' DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, 1..63 bytes.
bool IsDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!IsLower(c) && !IsDigit(c) && c != '-') return false;
  }
  return s.front() != '-' && s.back() != '-';
}

// DNS-1123 subdomain: dot-separated labels, at most 253 bytes.
bool IsDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    if (!IsDnsLabel(s.substr(start, dot == std::string_view::npos ? dot : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// The name part of a label key, and a non-empty label value:
// [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, 1..63 bytes.
bool IsLabelName(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return IsAlnum(s.front()) && IsAlnum(s.back());
}

// A Kubernetes qualified name: [subdomain "/"] name.
bool IsLabelKey(std::string_view s) {
  size_t slash = s.find('/');
  if (slash == std::string_view::npos) return IsLabelName(s);
  return IsDnsSubdomain(s.substr(0, slash)) && IsLabelName(s.substr(slash + 1));
}

// A node name: [A-Za-z0-9][A-Za-z0-9.-]*, at most 63 bytes.
bool IsNodeName(std::string_view s) {
  if (s.empty() || s.size() > 63 || !IsAlnum(s.front())) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '.' && c != '-') return false;
  }
  return true;
}

bool IsEnvName(std::string_view s) {
  if (s.empty() || IsDigit(s.front())) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '_') return false;
  }
  return true;
}

bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t extra;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; k++) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8.
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

// Why `s` cannot be passed to the kernel or a runtime as text, or nothing.
std::optional<std::string> TextProblem(std::string_view s) {
  if (s.find('\0') != std::string_view::npos) return "must not contain NUL";
  if (!IsUtf8(s)) return "must be valid UTF-8";
  return std::nullopt;
}

// Why `s` is not a clean absolute path, or nothing.
std::optional<std::string> PathProblem(std::string_view s) {
  if (auto p = TextProblem(s)) return p;
  if (s.empty() || s.front() != '/') return Quote(s) + " must be an absolute path";
  size_t start = 1;
  while (start <= s.size()) {
    size_t slash = s.find('/', start);
    if (slash == std::string_view::npos) slash = s.size();
    if (s.substr(start, slash - start) == "..") return Quote(s) + " must not contain \"..\"";
    start = slash + 1;
  }
  return std::nullopt;
}

std::optional<std::string> ImageProblem(std::string_view image) {
  for (std::string_view transport : kPathTransports) {
    if (image.substr(0, transport.size()) == transport) {
      return PathProblem(image.substr(transport.size()));
    }
  }
  // Anything else is a registry reference, checked by the parser the puller uses.
  if (auto p = TextProblem(image)) return p;
  Result<ImageReference> ref = ParseImageReference(image);
  if (ref.ok()) return std::nullopt;
  return Quote(image) +
         " is not an image (want oci:DIR, oci-archive:FILE, docker-archive:FILE "
         "or a registry reference): " +
         ref.status().message();
}

// "uid" or "uid:gid", decimal, each below 2^32-1 (which means "no id").
bool IsUser(std::string_view s) {
  auto is_id = [](std::string_view id) {
    if (id.empty() || id.size() > 10) return false;
    uint64_t v = 0;
    for (char c : id) {
      if (!IsDigit(c)) return false;
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    return v < 4294967295u;
  };
  size_t colon = s.find(':');
  if (colon == std::string_view::npos) return is_id(s);
  return is_id(s.substr(0, colon)) && is_id(s.substr(colon + 1));
}

std::string Index(const char* list, size_t i) {
  return std::string(list) + "[" + std::to_string(i) + "]";
}

// Checks 0 <= value <= max; `max_text` is max as the user would write it.
std::optional<FieldError> CheckRange(const std::string& path, int64_t value, int64_t max,
                                     const std::string& max_text) {
  if (value < 0) return FieldError{path, "must not be negative"};
  if (value > max) return FieldError{path, "must be at most " + max_text};
  return std::nullopt;
}

std::optional<FieldError> CheckMetadata(const WorkloadSpec& spec) {
  if (spec.name.empty()) return FieldError{"metadata.name", "is required"};
  if (!IsDnsLabel(spec.name)) {
    return FieldError{"metadata.name",
                      Quote(spec.name) +
                          " is not a DNS-1123 label (lowercase letters, digits and '-', "
                          "starting and ending with a letter or digit, at most 63)"};
  }
  for (const auto& [key, value] : spec.labels) {
    if (Status s = ValidateLabel(key, value); !s.ok()) {
      return FieldError{KeyPath("metadata.labels", key), s.message()};
    }
  }
  return std::nullopt;
}

std::optional<FieldError> CheckProcess(const WorkloadSpec& spec) {
  if (auto e =
          CheckRange("spec.replicas", spec.replicas, kMaxReplicas, std::to_string(kMaxReplicas))) {
    return e;
  }
  if (auto e = CheckRange("spec.standbyReplicas", spec.standby_replicas, kMaxReplicas,
                          std::to_string(kMaxReplicas))) {
    return e;
  }
  if (spec.image.empty()) return FieldError{"spec.image", "is required"};
  if (auto p = ImageProblem(spec.image)) return FieldError{"spec.image", *p};
  for (size_t i = 0; i < spec.command.size(); i++) {
    if (auto p = TextProblem(spec.command[i])) {
      return FieldError{"spec." + Index("command", i), *p};
    }
  }
  if (!spec.command.empty() && spec.command[0].empty()) {
    return FieldError{"spec.command[0]", "must not be empty"};
  }
  for (size_t i = 0; i < spec.args.size(); i++) {
    if (auto p = TextProblem(spec.args[i])) return FieldError{"spec." + Index("args", i), *p};
  }
  for (const auto& [key, value] : spec.env) {
    std::string path = KeyPath("spec.env", key);
    if (!IsEnvName(key)) {
      return FieldError{path, Quote(key) +
                                  " is not an environment variable name "
                                  "([A-Za-z_][A-Za-z0-9_]*)"};
    }
    if (auto p = TextProblem(value)) return FieldError{path, *p};
  }
  if (!spec.working_dir.empty()) {
    if (auto p = PathProblem(spec.working_dir)) return FieldError{"spec.workingDir", *p};
  }
  if (!spec.user.empty() && !IsUser(spec.user)) {
    return FieldError{"spec.user", Quote(spec.user) + " is not uid or uid:gid (numbers)"};
  }
  return std::nullopt;
}

// True for an IPv4 address in dotted decimal, four parts of 0-255 without leading zeros.
bool IsIpv4(const std::string& s) {
  int parts = 0;
  size_t i = 0;
  while (i <= s.size() && parts < 4) {
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') j++;
    if (j == i || j - i > 3 || (j - i > 1 && s[i] == '0') || std::stoi(s.substr(i, j - i)) > 255) {
      return false;
    }
    parts++;
    if (j == s.size()) return parts == 4;
    if (s[j] != '.') return false;
    i = j + 1;
  }
  return false;
}

std::optional<FieldError> CheckPorts(const std::vector<PortSpec>& ports, NetworkMode network) {
  for (size_t i = 0; i < ports.size(); i++) {
    const PortSpec& p = ports[i];
    std::string path = "spec." + Index("ports", i);
    if (p.container_port < 1 || p.container_port > 65535) {
      return FieldError{path + ".containerPort", "must be between 1 and 65535"};
    }
    if (p.host_port < 0 || p.host_port > 65535) {
      return FieldError{path + ".hostPort", "must be between 0 and 65535"};
    }
    if (p.protocol != "tcp" && p.protocol != "udp") {
      return FieldError{path + ".protocol", Quote(p.protocol) + " is not tcp or udp"};
    }
    if (!p.host_ip.empty() && !IsIpv4(p.host_ip)) {
      return FieldError{path + ".hostIP",
                        Quote(p.host_ip) + " is not an IPv4 address (IPv6 is not published)"};
    }
    if (!p.host_ip.empty() && p.host_port == 0) {
      return FieldError{path + ".hostIP", "needs a hostPort"};
    }
    if (p.host_port != 0 && network == NetworkMode::kNone) {
      return FieldError{path + ".hostPort", "network none publishes no port"};
    }
    if (p.host_port != 0 && network == NetworkMode::kHost &&
        (p.host_port != p.container_port || !p.host_ip.empty())) {
      return FieldError{path + ".hostPort",
                        "network host publishes a port as itself: hostPort must equal "
                        "containerPort, without hostIP"};
    }
    for (size_t j = 0; j < i; j++) {
      const PortSpec& q = ports[j];
      if (q.protocol != p.protocol) continue;
      if (q.container_port == p.container_port) {
        return FieldError{path + ".containerPort", "duplicates spec." + Index("ports", j)};
      }
      if (p.host_port != 0 && q.host_port == p.host_port) {
        return FieldError{path + ".hostPort", "duplicates spec." + Index("ports", j)};
      }
    }
  }
  return std::nullopt;
}

std::optional<FieldError> CheckMounts(const std::vector<MountSpec>& mounts) {
  for (size_t i = 0; i < mounts.size(); i++) {
    const MountSpec& m = mounts[i];
    std::string path = "spec." + Index("mounts", i);
    if (m.target.empty()) return FieldError{path + ".target", "is required"};
    if (auto p = PathProblem(m.target)) return FieldError{path + ".target", *p};
    if (m.target == "/") return FieldError{path + ".target", "must not be /"};
    for (size_t j = 0; j < i; j++) {
      if (mounts[j].target == m.target) {
        return FieldError{path + ".target", "duplicates spec." + Index("mounts", j)};
      }
    }
    if (m.type == MountSpec::Type::kBind) {
      if (m.source.empty()) return FieldError{path + ".source", "is required for a bind mount"};
      if (auto p = PathProblem(m.source)) return FieldError{path + ".source", *p};
      if (m.size_bytes != 0) {
        return FieldError{path + ".size", "applies to tmpfs mounts only"};
      }
    } else {
      if (!m.source.empty()) {
        return FieldError{path + ".source", "must not be set for a tmpfs mount"};
      }
      if (auto e = CheckRange(path + ".size", m.size_bytes, kMaxMemoryBytes, "1Ti")) return e;
    }
  }
  return std::nullopt;
}

std::optional<FieldError> CheckLimits(const WorkloadSpec& spec) {
  const Resources& r = spec.resources;
  if (auto e = CheckRange("spec.resources.memory", r.memory_bytes, kMaxMemoryBytes, "1Ti")) {
    return e;
  }
  if (auto e = CheckRange("spec.resources.cpu", r.cpu_millis, kMaxCpuMillis,
                          std::to_string(kMaxCpuMillis / 1000))) {
    return e;
  }
  if (auto e = CheckRange("spec.resources.pids", r.pids, kMaxPids, std::to_string(kMaxPids))) {
    return e;
  }
  const Backoff& b = spec.backoff;
  std::string max_backoff = FormatDurationMs(kMaxBackoffMs);
  if (b.initial_ms <= 0) return FieldError{"spec.backoff.initial", "must be positive"};
  if (auto e = CheckRange("spec.backoff.initial", b.initial_ms, kMaxBackoffMs, max_backoff)) {
    return e;
  }
  if (auto e = CheckRange("spec.backoff.max", b.max_ms, kMaxBackoffMs, max_backoff)) return e;
  if (b.max_ms < b.initial_ms) {
    return FieldError{"spec.backoff.max",
                      "must not be less than initial (" + FormatDurationMs(b.initial_ms) + ")"};
  }
  if (auto e =
          CheckRange("spec.backoff.resetAfter", b.reset_after_ms, kMaxBackoffMs, max_backoff)) {
    return e;
  }
  return CheckRange("spec.terminationGracePeriod", spec.termination_grace_ms, kMaxGraceMs,
                    FormatDurationMs(kMaxGraceMs));
}

std::optional<FieldError> CheckPlacement(const WorkloadSpec& spec) {
  for (const auto& [key, value] : spec.node_selector) {
    if (Status s = ValidateLabel(key, value); !s.ok()) {
      return FieldError{KeyPath("spec.nodeSelector", key), s.message()};
    }
  }
  const std::vector<std::string>& nodes = spec.preferred_nodes;
  for (size_t i = 0; i < nodes.size(); i++) {
    std::string path = "spec." + Index("preferredNodes", i);
    if (Status s = ValidateNodeName(nodes[i]); !s.ok()) return FieldError{path, s.message()};
    for (size_t j = 0; j < i; j++) {
      if (nodes[j] == nodes[i]) {
        return FieldError{path, "duplicates spec." + Index("preferredNodes", j)};
      }
    }
  }
  if (spec.exclusive && spec.replicas > 1) {
    return FieldError{"spec.replicas", "must be 0 or 1 when spec.exclusive is true"};
  }
  if (!spec.standby.empty() && spec.standby != kStandbyWarm) {
    return FieldError{"spec.standby",
                      Quote(spec.standby) + " is not a standby mode (want warm, or leave it out)"};
  }
  return std::nullopt;
}

// An HTTP header name: a token of RFC 9110 (letters, digits and !#$%&'*+-.^_`|~).
bool IsHeaderName(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  for (char c : s) {
    if (!IsAlnum(c) && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

// A probe's field `path` ("spec.livenessProbe"); liveness and startup probes must have a
// success threshold of 1 (as Kubernetes asks): one success is all they wait for.
std::optional<FieldError> CheckProbe(const ProbeSpec& p, const std::string& path,
                                     bool single_success) {
  using Kind = ProbeSpec::Kind;
  if (p.kind == Kind::kNone) return std::nullopt;
  if (p.kind == Kind::kExec) {
    if (p.command.empty() || p.command[0].empty()) {
      return FieldError{path + ".exec.command", "is required (the command to run)"};
    }
    for (size_t i = 0; i < p.command.size(); i++) {
      if (auto e = TextProblem(p.command[i])) {
        return FieldError{path + ".exec." + Index("command", i), *e};
      }
    }
  } else {
    const std::string where = path + (p.kind == Kind::kTcpSocket ? ".tcpSocket" : ".httpGet");
    if (p.port < 1 || p.port > 65535) {
      return FieldError{where + ".port", "must be between 1 and 65535"};
    }
  }
  if (p.kind == Kind::kHttpGet) {
    const std::string where = path + ".httpGet";
    if (p.path.empty() || p.path.front() != '/' || p.path.size() > 2048) {
      return FieldError{where + ".path", Quote(p.path) + " must begin with '/' (at most 2048)"};
    }
    for (char c : p.path) {
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
        return FieldError{where + ".path", Quote(p.path) +
                                               " must not hold spaces or control "
                                               "characters (escape them as %XX)"};
      }
    }
    if (p.scheme != "HTTP") {
      return FieldError{where + ".scheme", Quote(p.scheme) +
                                               " is not supported (want HTTP; "
                                               "HTTPS probes are not supported yet)"};
    }
    if (p.http_headers.size() > 32) return FieldError{where + ".httpHeaders", "at most 32"};
    for (size_t i = 0; i < p.http_headers.size(); i++) {
      const auto& [name, value] = p.http_headers[i];
      const std::string h = where + "." + Index("httpHeaders", i);
      if (!IsHeaderName(name)) {
        return FieldError{h + ".name", Quote(name) + " is not an HTTP header name"};
      }
      if (auto e = TextProblem(value)) return FieldError{h + ".value", *e};
      if (value.size() > 4096) return FieldError{h + ".value", "must be at most 4096 bytes"};
      for (char c : value) {
        if (c == '\r' || c == '\n') {
          return FieldError{h + ".value", "must not hold a line break"};
        }
      }
    }
  }
  const std::string max = FormatDurationMs(kMaxProbeMs);
  if (auto e = CheckRange(path + ".initialDelay", p.initial_delay_ms, kMaxProbeMs, max)) return e;
  if (p.period_ms < kMinProbePeriodMs) {
    return FieldError{path + ".period", "must be at least " + FormatDurationMs(kMinProbePeriodMs)};
  }
  if (auto e = CheckRange(path + ".period", p.period_ms, kMaxProbeMs, max)) return e;
  if (p.timeout_ms < kMinProbeTimeoutMs) {
    return FieldError{path + ".timeout",
                      "must be at least " + FormatDurationMs(kMinProbeTimeoutMs)};
  }
  if (auto e = CheckRange(path + ".timeout", p.timeout_ms, kMaxProbeMs, max)) return e;
  if (p.failure_threshold < 1 || p.failure_threshold > kMaxProbeThreshold) {
    return FieldError{path + ".failureThreshold",
                      "must be between 1 and " + std::to_string(kMaxProbeThreshold)};
  }
  if (p.success_threshold < 1 || p.success_threshold > kMaxProbeThreshold) {
    return FieldError{path + ".successThreshold",
                      "must be between 1 and " + std::to_string(kMaxProbeThreshold)};
  }
  if (single_success && p.success_threshold != 1) {
    return FieldError{path + ".successThreshold", "must be 1 for this probe"};
  }
  return std::nullopt;
}

// Capability names must be known (a typo would otherwise reach the runtime, or be
// ignored by it), and none may be both added and dropped: which would win is not obvious.
std::optional<FieldError> CheckSecurity(const SecurityContext& sc) {
  const std::string path = "spec.securityContext.capabilities";
  auto check = [&](const std::vector<std::string>& names, const char* list) {
    for (size_t i = 0; i < names.size(); i++) {
      if (names[i] != "ALL" && !IsCapability(names[i])) {
        return std::optional<FieldError>(FieldError{
            path + "." + Index(list, i),
            Quote(names[i]) + " is not a capability (want one such as NET_ADMIN, or ALL)"});
      }
    }
    return std::optional<FieldError>();
  };
  if (auto e = check(sc.capabilities_add, "add")) return e;
  if (auto e = check(sc.capabilities_drop, "drop")) return e;
  for (size_t i = 0; i < sc.capabilities_drop.size(); i++) {
    for (size_t j = 0; j < sc.capabilities_add.size(); j++) {
      if (CapabilityName(sc.capabilities_drop[i]) == CapabilityName(sc.capabilities_add[j])) {
        return FieldError{
            path + "." + Index("drop", i),
            Quote(sc.capabilities_drop[i]) + " is also in " + path + "." + Index("add", j)};
      }
    }
  }
  return std::nullopt;
}

std::optional<FieldError> CheckProbes(const WorkloadSpec& spec) {
  if (auto e = CheckProbe(spec.liveness_probe, "spec.livenessProbe", true)) return e;
  if (auto e = CheckProbe(spec.readiness_probe, "spec.readinessProbe", false)) return e;
  return CheckProbe(spec.startup_probe, "spec.startupProbe", true);
}

}  // namespace

std::optional<FieldError> CheckWorkload(const WorkloadSpec& spec) {
  if (auto e = CheckMetadata(spec)) return e;
  if (auto e = CheckProcess(spec)) return e;
  if (auto e = CheckPorts(spec.ports, spec.network)) return e;
  if (auto e = CheckMounts(spec.mounts)) return e;
  if (auto e = CheckLimits(spec)) return e;
  if (auto e = CheckSecurity(spec.security_context)) return e;
  if (auto e = CheckProbes(spec)) return e;
  return CheckPlacement(spec);
}

namespace {

// `path` without "." components, repeated or trailing slashes (".." is refused by
// CheckMounts before this is reached).
std::string Lexical(const std::filesystem::path& path) {
  std::string out = path.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// `path` with the symbolic links of its longest existing part resolved (realpath), the
// rest appended as it is.
std::string Resolved(const std::string& path) {
  std::filesystem::path p = std::filesystem::path(path).lexically_normal();
  std::filesystem::path rest;
  while (!p.empty() && p != p.root_path()) {
    char buf[PATH_MAX];
    if (realpath(p.c_str(), buf) != nullptr) {
      p = buf;
      break;
    }
    rest = p.filename() / rest;
    p = p.parent_path();
  }
  return Lexical(p / rest);
}

bool IsBelow(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

}  // namespace

std::optional<FieldError> CheckHostPaths(const WorkloadSpec& spec,
                                         const std::vector<std::string>& allowed) {
  if (allowed.empty()) return std::nullopt;
  std::vector<std::string> dirs;
  std::string listed;
  for (const std::string& a : allowed) {
    dirs.push_back(Resolved(a));
    listed += (listed.empty() ? "" : ", ") + a;
  }
  for (size_t i = 0; i < spec.mounts.size(); i++) {
    const MountSpec& m = spec.mounts[i];
    if (m.type != MountSpec::Type::kBind) continue;
    const std::string resolved = Resolved(m.source);
    bool ok = false;
    for (size_t d = 0; d < dirs.size() && !ok; d++) ok = IsBelow(resolved, dirs[d]);
    if (!ok) {
      std::string why = Quote(m.source) + " is not below an allowed host path (" + listed + ")";
      if (resolved != Lexical(m.source)) why += "; it resolves to " + Quote(resolved);
      return FieldError{"spec." + Index("mounts", i) + ".source", why};
    }
  }
  return std::nullopt;
}

}  // namespace internal

Status CheckHostPaths(const WorkloadSpec& spec, const std::vector<std::string>& allowed) {
  std::optional<internal::FieldError> e = internal::CheckHostPaths(spec, allowed);
  if (!e) return Status::OK();
  return Status::InvalidArgument(e->path + ": " + e->reason);
}

Status ValidateLabel(const std::string& key, const std::string& value) {
  using internal::Quote;
  if (!internal::IsLabelKey(key)) {
    return Status::InvalidArgument(Quote(key) +
                                   " is not a label key ([prefix/]name; name is at most 63 of "
                                   "[A-Za-z0-9-_.], alphanumeric at both ends)");
  }
  if (!value.empty() && !internal::IsLabelName(value)) {
    return Status::InvalidArgument(Quote(value) +
                                   " is not a label value (at most 63 of [A-Za-z0-9-_.], "
                                   "alphanumeric at both ends)");
  }
  return Status::OK();
}

Status ValidateNodeName(const std::string& name) {
  if (internal::IsNodeName(name)) return Status::OK();
  return Status::InvalidArgument(internal::Quote(name) +
                                 " is not a node name (1 to 63 letters, digits, '.' or '-', "
                                 "starting with a letter or digit)");
}

Status ValidateWorkload(const WorkloadSpec& spec) {
  std::optional<internal::FieldError> e = internal::CheckWorkload(spec);
  if (!e) return Status::OK();
  return Status::InvalidArgument(e->path + ": " + e->reason);
}

}  // namespace petrel
