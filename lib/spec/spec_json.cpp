// Canonical JSON of a WorkloadSpec (for the store and the API) and the template hash.
//
// The JSON has every field of petrel 0.1, always, under its manifest name with the
// base unit appended where the manifest takes a quantity ("memoryBytes", "initialMs");
// a field added since (probes: livenessProbe, readinessProbe, startupProbe; placement:
// nodeSelector, preferredNodes, exclusive, standby, standbyReplicas; securityContext;
// imagePullPolicy) is
// written only when
// it is not at its default, so the JSON of a spec that leaves
// it alone keeps its bytes. Keys are sorted (nlohmann's default object is a std::map), numbers are
// integers. Two equal specs give byte-identical JSON, which the store relies on to skip no-op
// writes.
#include <exception>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "lib/spec/check.h"
#include "lib/util/json.h"
#include "lib/util/sha256.h"
#include "lib/util/strings.h"
#include "petrel/spec.h"

namespace petrel {
namespace {

using nlohmann::json;

const char* MountTypeName(MountSpec::Type type) {
  return type == MountSpec::Type::kTmpfs ? "tmpfs" : "bind";
}

// The fields that end up in the container. The workload's name is left out: it is the
// workload's identity, not part of its template (a rename is a delete and a create).
//
// The hash must not move when petrel grows: a new hash replaces every running
// container on upgrade. So the fields below, those of petrel 0.1, are always written,
// and a field added after them goes in only when it differs from its default, so a
// spec that leaves it at its default hashes exactly as before (tests/unit/spec_test.cpp
// pins the hashes of fixed specs). SpecToJson, the stored form, treats a new field the
// same way, and ReadSpec takes it as optional, so rows stored by an older petrel still
// read. Placement fields say where a replica runs, not what it is: they are not here.
json TemplateJson(const WorkloadSpec& spec) {
  json ports = json::array();
  for (const PortSpec& p : spec.ports) {
    json port = {
        {"containerPort", p.container_port}, {"hostPort", p.host_port}, {"protocol", p.protocol}};
    if (!p.host_ip.empty()) port["hostIP"] = p.host_ip;
    ports.push_back(std::move(port));
  }
  json mounts = json::array();
  for (const MountSpec& m : spec.mounts) {
    mounts.push_back({{"type", MountTypeName(m.type)},
                      {"source", m.source},
                      {"target", m.target},
                      {"readOnly", m.read_only},
                      {"sizeBytes", m.size_bytes}});
  }
  json j = {
      {"image", spec.image},
      {"command", spec.command},
      {"args", spec.args},
      {"env", spec.env},
      {"workingDir", spec.working_dir},
      {"user", spec.user},
      {"readOnlyRootfs", spec.read_only_rootfs},
      {"ports", std::move(ports)},
      {"mounts", std::move(mounts)},
      {"resources",
       {{"memoryBytes", spec.resources.memory_bytes},
        {"cpuMillis", spec.resources.cpu_millis},
        {"pids", spec.resources.pids}}},
      {"labels", spec.labels},
  };
  if (spec.network != NetworkMode::kBridge) j["network"] = NetworkModeName(spec.network);
  // Written whole when any part differs from its default.
  const SecurityContext& sc = spec.security_context;
  if (!sc.empty()) {
    j["securityContext"] = {
        {"privileged", sc.privileged},
        {"capabilities", {{"add", sc.capabilities_add}, {"drop", sc.capabilities_drop}}},
        {"seccompProfile", {{"type", SeccompName(sc.seccomp)}}}};
  }
  return j;
}

// Never throws: a string that is not UTF-8 (which ValidateWorkload rejects) is written
// with U+FFFD in place of the bad bytes.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Reads one JSON value into a field; `path` names it in errors ("ports[1].hostPort").
Status Bad(const std::string& path, const std::string& what) {
  return Status::InvalidArgument("spec JSON: " + path + ": " + what);
}

// Checks that `j` is an object with all of `keys`, any of `optional`, nothing else.
Status ExpectObject(const json& j, const std::string& path, std::initializer_list<const char*> keys,
                    std::initializer_list<const char*> optional = {}) {
  if (!j.is_object()) return Bad(path.empty() ? "(top)" : path, "must be an object");
  std::string prefix = path.empty() ? "" : path + ".";
  size_t present = keys.size();
  for (const char* key : keys) {
    if (!j.contains(key)) return Bad(prefix + key, "is missing");
  }
  for (const char* key : optional) present += j.contains(key) ? 1 : 0;
  if (j.size() != present) {
    for (const auto& item : j.items()) {
      bool known = false;
      for (const char* key : keys) known = known || item.key() == key;
      for (const char* key : optional) known = known || item.key() == key;
      if (!known) return Bad(prefix + item.key(), "unknown field");
    }
  }
  return Status::OK();
}

Status Read(const json& j, const std::string& path, std::string* out) {
  if (!j.is_string()) return Bad(path, "must be a string");
  *out = j.get_ref<const std::string&>();
  return Status::OK();
}

Status Read(const json& j, const std::string& path, bool* out) {
  if (!j.is_boolean()) return Bad(path, "must be a boolean");
  *out = j.get<bool>();
  return Status::OK();
}

Status Read(const json& j, const std::string& path, int64_t* out) {
  if (j.is_number_unsigned()) {
    if (j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Bad(path, "is out of range");
    }
    *out = j.get<int64_t>();
    return Status::OK();
  }
  if (!j.is_number_integer()) return Bad(path, "must be an integer");
  *out = j.get<int64_t>();
  return Status::OK();
}

Status Read(const json& j, const std::string& path, int* out) {
  int64_t v = 0;
  PETREL_RETURN_IF_ERROR(Read(j, path, &v));
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
    return Bad(path, "is out of range");
  }
  *out = static_cast<int>(v);
  return Status::OK();
}

Status Read(const json& j, const std::string& path, std::vector<std::string>* out) {
  if (!j.is_array()) return Bad(path, "must be an array");
  out->clear();
  for (size_t i = 0; i < j.size(); i++) {
    out->emplace_back();
    PETREL_RETURN_IF_ERROR(Read(j[i], path + "[" + std::to_string(i) + "]", &out->back()));
  }
  return Status::OK();
}

Status Read(const json& j, const std::string& path, std::map<std::string, std::string>* out) {
  if (!j.is_object()) return Bad(path, "must be an object");
  out->clear();
  for (const auto& item : j.items()) {
    PETREL_RETURN_IF_ERROR(Read(item.value(), path + "." + item.key(), &(*out)[item.key()]));
  }
  return Status::OK();
}

Status ReadPort(const json& j, const std::string& path, PortSpec* p) {
  PETREL_RETURN_IF_ERROR(
      ExpectObject(j, path, {"containerPort", "hostPort", "protocol"}, {"hostIP"}));
  PETREL_RETURN_IF_ERROR(Read(j["containerPort"], path + ".containerPort", &p->container_port));
  PETREL_RETURN_IF_ERROR(Read(j["hostPort"], path + ".hostPort", &p->host_port));
  if (auto it = j.find("hostIP"); it != j.end()) {
    PETREL_RETURN_IF_ERROR(Read(*it, path + ".hostIP", &p->host_ip));
  }
  return Read(j["protocol"], path + ".protocol", &p->protocol);
}

Status ReadMount(const json& j, const std::string& path, MountSpec* m) {
  PETREL_RETURN_IF_ERROR(
      ExpectObject(j, path, {"type", "source", "target", "readOnly", "sizeBytes"}));
  std::string type;
  PETREL_RETURN_IF_ERROR(Read(j["type"], path + ".type", &type));
  if (type == "bind") {
    m->type = MountSpec::Type::kBind;
  } else if (type == "tmpfs") {
    m->type = MountSpec::Type::kTmpfs;
  } else {
    return Bad(path + ".type", internal::Quote(type) + " is not bind or tmpfs");
  }
  PETREL_RETURN_IF_ERROR(Read(j["source"], path + ".source", &m->source));
  PETREL_RETURN_IF_ERROR(Read(j["target"], path + ".target", &m->target));
  PETREL_RETURN_IF_ERROR(Read(j["readOnly"], path + ".readOnly", &m->read_only));
  return Read(j["sizeBytes"], path + ".sizeBytes", &m->size_bytes);
}

template <typename T, typename F>
Status ReadList(const json& j, const std::string& path, std::vector<T>* out, F read_one) {
  if (!j.is_array()) return Bad(path, "must be an array");
  out->assign(j.size(), T());
  for (size_t i = 0; i < j.size(); i++) {
    PETREL_RETURN_IF_ERROR(read_one(j[i], path + "[" + std::to_string(i) + "]", &(*out)[i]));
  }
  return Status::OK();
}

// A probe is written whole: its check under the kind's name, then every setting.
json ProbeJson(const ProbeSpec& p) {
  json j = {{"initialDelayMs", p.initial_delay_ms},
            {"periodMs", p.period_ms},
            {"timeoutMs", p.timeout_ms},
            {"failureThreshold", p.failure_threshold},
            {"successThreshold", p.success_threshold}};
  switch (p.kind) {
    case ProbeSpec::Kind::kExec: j["exec"] = {{"command", p.command}}; break;
    case ProbeSpec::Kind::kTcpSocket: j["tcpSocket"] = {{"port", p.port}}; break;
    case ProbeSpec::Kind::kHttpGet: {
      json headers = json::array();
      for (const auto& [name, value] : p.http_headers) {
        headers.push_back({{"name", name}, {"value", value}});
      }
      j["httpGet"] = {{"path", p.path},
                      {"port", p.port},
                      {"scheme", p.scheme},
                      {"httpHeaders", std::move(headers)}};
      break;
    }
    case ProbeSpec::Kind::kNone: break;
  }
  return j;
}

Status ReadHeader(const json& j, const std::string& path, std::pair<std::string, std::string>* h) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, path, {"name", "value"}));
  PETREL_RETURN_IF_ERROR(Read(j["name"], path + ".name", &h->first));
  return Read(j["value"], path + ".value", &h->second);
}

Status ReadProbe(const json& j, const std::string& path, ProbeSpec* p) {
  PETREL_RETURN_IF_ERROR(ExpectObject(
      j, path, {"initialDelayMs", "periodMs", "timeoutMs", "failureThreshold", "successThreshold"},
      {"exec", "tcpSocket", "httpGet"}));
  int kinds = 0;
  if (j.contains("exec")) {
    kinds++;
    p->kind = ProbeSpec::Kind::kExec;
    const json& e = j["exec"];
    PETREL_RETURN_IF_ERROR(ExpectObject(e, path + ".exec", {"command"}));
    PETREL_RETURN_IF_ERROR(Read(e["command"], path + ".exec.command", &p->command));
  }
  if (j.contains("tcpSocket")) {
    kinds++;
    p->kind = ProbeSpec::Kind::kTcpSocket;
    const json& t = j["tcpSocket"];
    PETREL_RETURN_IF_ERROR(ExpectObject(t, path + ".tcpSocket", {"port"}));
    PETREL_RETURN_IF_ERROR(Read(t["port"], path + ".tcpSocket.port", &p->port));
  }
  if (j.contains("httpGet")) {
    kinds++;
    p->kind = ProbeSpec::Kind::kHttpGet;
    const json& h = j["httpGet"];
    const std::string hp = path + ".httpGet";
    PETREL_RETURN_IF_ERROR(ExpectObject(h, hp, {"path", "port", "scheme", "httpHeaders"}));
    PETREL_RETURN_IF_ERROR(Read(h["path"], hp + ".path", &p->path));
    PETREL_RETURN_IF_ERROR(Read(h["port"], hp + ".port", &p->port));
    PETREL_RETURN_IF_ERROR(Read(h["scheme"], hp + ".scheme", &p->scheme));
    PETREL_RETURN_IF_ERROR(
        ReadList(h["httpHeaders"], hp + ".httpHeaders", &p->http_headers, ReadHeader));
  }
  if (kinds != 1) return Bad(path, "must have exactly one of exec, tcpSocket, httpGet");
  PETREL_RETURN_IF_ERROR(Read(j["initialDelayMs"], path + ".initialDelayMs", &p->initial_delay_ms));
  PETREL_RETURN_IF_ERROR(Read(j["periodMs"], path + ".periodMs", &p->period_ms));
  PETREL_RETURN_IF_ERROR(Read(j["timeoutMs"], path + ".timeoutMs", &p->timeout_ms));
  PETREL_RETURN_IF_ERROR(
      Read(j["failureThreshold"], path + ".failureThreshold", &p->failure_threshold));
  return Read(j["successThreshold"], path + ".successThreshold", &p->success_threshold);
}

Status ReadOptionalProbe(const json& j, const char* key, ProbeSpec* out) {
  auto it = j.find(key);
  return it == j.end() ? Status::OK() : ReadProbe(*it, key, out);
}

Status ReadSecurity(const json& j, const std::string& path, SecurityContext* sc) {
  PETREL_RETURN_IF_ERROR(ExpectObject(j, path, {"privileged", "capabilities", "seccompProfile"}));
  PETREL_RETURN_IF_ERROR(Read(j["privileged"], path + ".privileged", &sc->privileged));
  const json& c = j["capabilities"];
  const std::string cp = path + ".capabilities";
  PETREL_RETURN_IF_ERROR(ExpectObject(c, cp, {"add", "drop"}));
  PETREL_RETURN_IF_ERROR(Read(c["add"], cp + ".add", &sc->capabilities_add));
  PETREL_RETURN_IF_ERROR(Read(c["drop"], cp + ".drop", &sc->capabilities_drop));
  const json& p = j["seccompProfile"];
  const std::string pp = path + ".seccompProfile";
  PETREL_RETURN_IF_ERROR(ExpectObject(p, pp, {"type"}));
  std::string type;
  PETREL_RETURN_IF_ERROR(Read(p["type"], pp + ".type", &type));
  std::optional<SecurityContext::Seccomp> parsed = internal::ParseSeccomp(type);
  if (!parsed) {
    return Bad(pp + ".type", internal::Quote(type) + " is not RuntimeDefault or Unconfined");
  }
  sc->seccomp = *parsed;
  return Status::OK();
}

// Reads j[key] into *out when present; an absent key leaves *out at its default.
template <typename T>
Status ReadOptional(const json& j, const char* key, T* out) {
  auto it = j.find(key);
  return it == j.end() ? Status::OK() : Read(*it, key, out);
}

Status ReadSpec(const json& j, WorkloadSpec* spec) {
  PETREL_RETURN_IF_ERROR(
      ExpectObject(j, "",
                   {"name", "labels", "replicas", "image", "command", "args", "env", "workingDir",
                    "user", "readOnlyRootfs", "ports", "mounts", "resources", "restartPolicy",
                    "backoff", "terminationGraceMs"},
                   {"livenessProbe", "readinessProbe", "startupProbe", "nodeSelector",
                    "preferredNodes", "exclusive", "standby", "standbyReplicas", "securityContext",
                    "imagePullPolicy", "network"}));
  PETREL_RETURN_IF_ERROR(Read(j["name"], "name", &spec->name));
  PETREL_RETURN_IF_ERROR(Read(j["labels"], "labels", &spec->labels));
  PETREL_RETURN_IF_ERROR(Read(j["replicas"], "replicas", &spec->replicas));
  PETREL_RETURN_IF_ERROR(Read(j["image"], "image", &spec->image));
  PETREL_RETURN_IF_ERROR(Read(j["command"], "command", &spec->command));
  PETREL_RETURN_IF_ERROR(Read(j["args"], "args", &spec->args));
  PETREL_RETURN_IF_ERROR(Read(j["env"], "env", &spec->env));
  PETREL_RETURN_IF_ERROR(Read(j["workingDir"], "workingDir", &spec->working_dir));
  PETREL_RETURN_IF_ERROR(Read(j["user"], "user", &spec->user));
  PETREL_RETURN_IF_ERROR(Read(j["readOnlyRootfs"], "readOnlyRootfs", &spec->read_only_rootfs));
  PETREL_RETURN_IF_ERROR(ReadList(j["ports"], "ports", &spec->ports, ReadPort));
  PETREL_RETURN_IF_ERROR(ReadList(j["mounts"], "mounts", &spec->mounts, ReadMount));

  const json& r = j["resources"];
  PETREL_RETURN_IF_ERROR(ExpectObject(r, "resources", {"memoryBytes", "cpuMillis", "pids"}));
  PETREL_RETURN_IF_ERROR(
      Read(r["memoryBytes"], "resources.memoryBytes", &spec->resources.memory_bytes));
  PETREL_RETURN_IF_ERROR(Read(r["cpuMillis"], "resources.cpuMillis", &spec->resources.cpu_millis));
  PETREL_RETURN_IF_ERROR(Read(r["pids"], "resources.pids", &spec->resources.pids));

  std::string policy;
  PETREL_RETURN_IF_ERROR(Read(j["restartPolicy"], "restartPolicy", &policy));
  std::optional<RestartPolicy> parsed = internal::ParseRestartPolicy(policy);
  if (!parsed) {
    return Bad("restartPolicy", internal::Quote(policy) + " is not Always, OnFailure or Never");
  }
  spec->restart_policy = *parsed;
  if (auto it = j.find("imagePullPolicy"); it != j.end()) {
    std::string pull;
    PETREL_RETURN_IF_ERROR(Read(*it, "imagePullPolicy", &pull));
    std::optional<PullPolicy> pull_policy = ParsePullPolicy(pull);
    if (!pull_policy) {
      return Bad("imagePullPolicy",
                 internal::Quote(pull) + " is not IfNotPresent, Always or Never");
    }
    spec->image_pull_policy = *pull_policy;
  }

  if (auto it = j.find("network"); it != j.end()) {
    std::string network;
    PETREL_RETURN_IF_ERROR(Read(*it, "network", &network));
    std::optional<NetworkMode> mode = ParseNetworkMode(network);
    if (!mode) return Bad("network", internal::Quote(network) + " is not bridge, host or none");
    spec->network = *mode;
  }

  const json& b = j["backoff"];
  PETREL_RETURN_IF_ERROR(ExpectObject(b, "backoff", {"initialMs", "maxMs", "resetAfterMs"}));
  PETREL_RETURN_IF_ERROR(Read(b["initialMs"], "backoff.initialMs", &spec->backoff.initial_ms));
  PETREL_RETURN_IF_ERROR(Read(b["maxMs"], "backoff.maxMs", &spec->backoff.max_ms));
  PETREL_RETURN_IF_ERROR(
      Read(b["resetAfterMs"], "backoff.resetAfterMs", &spec->backoff.reset_after_ms));
  PETREL_RETURN_IF_ERROR(
      Read(j["terminationGraceMs"], "terminationGraceMs", &spec->termination_grace_ms));

  if (auto it = j.find("securityContext"); it != j.end()) {
    PETREL_RETURN_IF_ERROR(ReadSecurity(*it, "securityContext", &spec->security_context));
  }
  PETREL_RETURN_IF_ERROR(ReadOptionalProbe(j, "livenessProbe", &spec->liveness_probe));
  PETREL_RETURN_IF_ERROR(ReadOptionalProbe(j, "readinessProbe", &spec->readiness_probe));
  PETREL_RETURN_IF_ERROR(ReadOptionalProbe(j, "startupProbe", &spec->startup_probe));
  PETREL_RETURN_IF_ERROR(ReadOptional(j, "nodeSelector", &spec->node_selector));
  PETREL_RETURN_IF_ERROR(ReadOptional(j, "preferredNodes", &spec->preferred_nodes));
  PETREL_RETURN_IF_ERROR(ReadOptional(j, "exclusive", &spec->exclusive));
  PETREL_RETURN_IF_ERROR(ReadOptional(j, "standby", &spec->standby));
  return ReadOptional(j, "standbyReplicas", &spec->standby_replicas);
}

}  // namespace

std::string SpecToJson(const WorkloadSpec& spec) {
  json j = TemplateJson(spec);
  j["name"] = spec.name;
  j["replicas"] = spec.replicas;
  j["restartPolicy"] = RestartPolicyName(spec.restart_policy);
  if (spec.image_pull_policy != PullPolicy::kIfNotPresent) {
    j["imagePullPolicy"] = PullPolicyName(spec.image_pull_policy);
  }
  j["backoff"] = {{"initialMs", spec.backoff.initial_ms},
                  {"maxMs", spec.backoff.max_ms},
                  {"resetAfterMs", spec.backoff.reset_after_ms}};
  j["terminationGraceMs"] = spec.termination_grace_ms;
  if (!spec.liveness_probe.empty()) j["livenessProbe"] = ProbeJson(spec.liveness_probe);
  if (!spec.readiness_probe.empty()) j["readinessProbe"] = ProbeJson(spec.readiness_probe);
  if (!spec.startup_probe.empty()) j["startupProbe"] = ProbeJson(spec.startup_probe);
  if (!spec.node_selector.empty()) j["nodeSelector"] = spec.node_selector;
  if (!spec.preferred_nodes.empty()) j["preferredNodes"] = spec.preferred_nodes;
  if (spec.exclusive) j["exclusive"] = true;
  if (!spec.standby.empty()) j["standby"] = spec.standby;
  if (spec.standby_replicas != 0) j["standbyReplicas"] = spec.standby_replicas;
  return Dump(j);
}

Result<WorkloadSpec> SpecFromJson(const std::string& text) {
  try {
    PETREL_ASSIGN_OR_RETURN(const json j, internal::ParseJson(text, "spec JSON"));
    WorkloadSpec spec;
    PETREL_RETURN_IF_ERROR(ReadSpec(j, &spec));
    return spec;
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("spec JSON: ") + e.what());
  }
}

// SHA-256 of the template's canonical JSON, as 16 lowercase hex digits (the first 64
// bits): plenty to tell one workload's templates apart, short enough for a label.
std::string TemplateHash(const WorkloadSpec& spec) {
  return internal::Sha256Hex(Dump(TemplateJson(spec))).substr(0, 16);
}

}  // namespace petrel
