// Stages 1 and 2 of reading a manifest: YAML text -> documents -> WorkloadSpecs.
#include "lib/manifest/decode.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <cstdint>
#include <exception>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include "lib/spec/check.h"
#include "lib/util/json.h"
#include "lib/util/strings.h"

namespace petrel::internal {
namespace {

constexpr const char* kApiVersion = "petrel.dev/v1";
// As JSON from outside (lib/util/json.h): deeper than any manifest, shallow enough
// for every walk over the nodes.
constexpr int kMaxYamlDepth = kMaxJsonDepth;

using Error = std::optional<ManifestError>;

Position PositionOf(const YAML::Mark& mark) {
  // yaml-cpp counts from 0 and uses -1 for "no position".
  return Position{mark.line < 0 ? 1 : mark.line + 1, mark.column < 0 ? 1 : mark.column + 1};
}

Position PositionOf(const YAML::Node& node) { return PositionOf(node.Mark()); }

Error Fail(Position pos, std::string path, std::string reason) {
  return ManifestError{pos, std::move(path), std::move(reason)};
}

// What a node is, for "must be a list, not ..." messages.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return Quote(node.Scalar());
    default: return "null";
  }
}

std::string Child(const std::string& parent, const std::string& key) {
  std::string path = KeyPath(parent, key);
  return parent.empty() ? path.substr(1) : path;
}

std::string Element(const std::string& parent, size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

// Reads YAML nodes into spec fields, recording where each field is written.
// A field written as null (`image:` or `image: ~`) counts as absent.
class Decoder {
 public:
  explicit Decoder(PositionMap* positions) : positions_(positions) {}

  // Calls fn(key, path, key_position, value) for each entry of the mapping `node`
  // at `path`, after checking that keys are strings and not repeated.
  template <typename F>
  Error Fields(const YAML::Node& node, const std::string& path, F fn) {
    if (!node.IsMap()) {
      return Fail(PositionOf(node), path, "must be a mapping, not " + Describe(node));
    }
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies: the iterator hands out a temporary pair.
      YAML::Node key = it->first;
      YAML::Node value = it->second;
      Position key_pos = PositionOf(key);
      if (!key.IsScalar()) return Fail(key_pos, path, "keys must be strings");
      std::string child = Child(path, key.Scalar());
      if (!seen.insert(key.Scalar()).second) return Fail(key_pos, child, "duplicate key");
      positions_->emplace(child, value.IsNull() ? key_pos : PositionOf(value));
      if (Error e = fn(key.Scalar(), child, key_pos, value)) return e;
    }
    return std::nullopt;
  }

  // Calls fn(path, element) for each element of the list `node` at `path`.
  template <typename F>
  Error Elements(const YAML::Node& node, const std::string& path, F fn) {
    if (node.IsNull()) return std::nullopt;
    if (!node.IsSequence()) {
      return Fail(PositionOf(node), path, "must be a list, not " + Describe(node));
    }
    size_t i = 0;
    for (auto it = node.begin(); it != node.end(); ++it, ++i) {
      std::string child = Element(path, i);
      positions_->emplace(child, PositionOf(*it));
      if (Error e = fn(child, *it)) return e;
    }
    return std::nullopt;
  }

  Error String(const YAML::Node& v, const std::string& path, std::string* out) {
    if (v.IsNull()) return std::nullopt;
    if (!v.IsScalar()) return Fail(PositionOf(v), path, "must be a string, not " + Describe(v));
    *out = v.Scalar();
    return std::nullopt;
  }

  Error Bool(const YAML::Node& v, const std::string& path, bool* out) {
    std::string s;
    if (Error e = String(v, path, &s)) return e;
    if (v.IsNull()) return std::nullopt;
    // YAML 1.2's booleans only: "yes", "on" and friends are strings.
    if (s == "true" || s == "True" || s == "TRUE") {
      *out = true;
    } else if (s == "false" || s == "False" || s == "FALSE") {
      *out = false;
    } else {
      return Fail(PositionOf(v), path, Quote(s) + " is not a boolean (true or false)");
    }
    return std::nullopt;
  }

  template <typename T>
  Error Integer(const YAML::Node& v, const std::string& path, T* out) {
    std::string s;
    if (Error e = String(v, path, &s)) return e;
    if (v.IsNull()) return std::nullopt;
    size_t start = !s.empty() && s[0] == '-' ? 1 : 0;
    bool digits = s.size() > start;
    for (size_t i = start; i < s.size(); i++) digits = digits && s[i] >= '0' && s[i] <= '9';
    if (!digits) return Fail(PositionOf(v), path, Quote(s) + " is not an integer");
    int64_t value = 0;
    for (size_t i = start; i < s.size(); i++) {
      int digit = s[i] - '0';
      if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) {
        return Fail(PositionOf(v), path, Quote(s) + " is out of range");
      }
      value = value * 10 + digit;
    }
    if (start == 1) value = -value;
    if (value < std::numeric_limits<T>::min() || value > std::numeric_limits<T>::max()) {
      return Fail(PositionOf(v), path, Quote(s) + " is out of range");
    }
    *out = static_cast<T>(value);
    return std::nullopt;
  }

  // A string read with `parse` (ParseBytes, ParseCpuMillis, ParseDurationMs).
  Error Parsed(const YAML::Node& v, const std::string& path,
               Result<int64_t> (*parse)(const std::string&), int64_t* out) {
    std::string s;
    if (Error e = String(v, path, &s)) return e;
    if (v.IsNull()) return std::nullopt;
    Result<int64_t> r = parse(s);
    if (!r.ok()) return Fail(PositionOf(v), path, r.status().message());
    *out = *r;
    return std::nullopt;
  }

  Error StringList(const YAML::Node& v, const std::string& path, std::vector<std::string>* out) {
    return Elements(v, path, [&](const std::string& child, const YAML::Node& element) -> Error {
      if (element.IsNull()) return Fail(PositionOf(element), child, "must be a string, not null");
      out->emplace_back();
      return String(element, child, &out->back());
    });
  }

  Error StringMap(const YAML::Node& v, const std::string& path,
                  std::map<std::string, std::string>* out) {
    if (v.IsNull()) return std::nullopt;
    return Fields(v, path,
                  [&](const std::string& key, const std::string& child, Position,
                      const YAML::Node& value) { return String(value, child, &(*out)[key]); });
  }

  Error Metadata(const YAML::Node& v, WorkloadSpec* spec) {
    if (v.IsNull()) return std::nullopt;
    return Fields(v, "metadata",
                  [&](const std::string& key, const std::string& path, Position key_pos,
                      const YAML::Node& value) -> Error {
                    if (key == "name") return String(value, path, &spec->name);
                    if (key == "labels") return StringMap(value, path, &spec->labels);
                    return Unknown(key_pos, path);
                  });
  }

  Error Spec(const YAML::Node& v, WorkloadSpec* spec) {
    if (v.IsNull()) return std::nullopt;
    return Fields(
        v, "spec",
        [&](const std::string& key, const std::string& path, Position key_pos,
            const YAML::Node& value) -> Error {
          if (key == "replicas") return Integer(value, path, &spec->replicas);
          if (key == "image") return String(value, path, &spec->image);
          if (key == "command") return StringList(value, path, &spec->command);
          if (key == "args") return StringList(value, path, &spec->args);
          if (key == "env") return StringMap(value, path, &spec->env);
          if (key == "workingDir") return String(value, path, &spec->working_dir);
          if (key == "user") return String(value, path, &spec->user);
          if (key == "readOnlyRootfs") return Bool(value, path, &spec->read_only_rootfs);
          if (key == "network") return NetworkOf(value, path, &spec->network);
          if (key == "ports") {
            return Elements(value, path, [&](const std::string& child, const YAML::Node& p) {
              spec->ports.emplace_back();
              return Port(p, child, &spec->ports.back());
            });
          }
          if (key == "mounts") {
            return Elements(value, path, [&](const std::string& child, const YAML::Node& m) {
              spec->mounts.emplace_back();
              return Mount(m, child, &spec->mounts.back());
            });
          }
          if (key == "resources") return Resources(value, path, &spec->resources);
          if (key == "restartPolicy") return Policy(value, path, &spec->restart_policy);
          if (key == "imagePullPolicy") return PullPolicyOf(value, path, &spec->image_pull_policy);
          if (key == "backoff") return BackoffOf(value, path, &spec->backoff);
          if (key == "terminationGracePeriod") {
            return Parsed(value, path, ParseDurationMs, &spec->termination_grace_ms);
          }
          if (key == "securityContext") return Security(value, path, &spec->security_context);
          if (key == "livenessProbe") return Probe(value, path, &spec->liveness_probe);
          if (key == "readinessProbe") return Probe(value, path, &spec->readiness_probe);
          if (key == "startupProbe") return Probe(value, path, &spec->startup_probe);
          if (key == "nodeSelector") return StringMap(value, path, &spec->node_selector);
          if (key == "preferredNodes") return StringList(value, path, &spec->preferred_nodes);
          if (key == "exclusive") return Bool(value, path, &spec->exclusive);
          if (key == "standby") return String(value, path, &spec->standby);
          if (key == "standbyReplicas") return Integer(value, path, &spec->standby_replicas);
          return Unknown(key_pos, path);
        });
  }

 private:
  static Error Unknown(Position key_pos, const std::string& path) {
    return Fail(key_pos, path, "unknown field");
  }

  Error Port(const YAML::Node& v, const std::string& path, PortSpec* port) {
    return Fields(v, path,
                  [&](const std::string& key, const std::string& child, Position key_pos,
                      const YAML::Node& value) -> Error {
                    if (key == "containerPort") return Integer(value, child, &port->container_port);
                    if (key == "hostPort") return Integer(value, child, &port->host_port);
                    if (key == "hostIP") return String(value, child, &port->host_ip);
                    if (key == "protocol") {
                      // Kubernetes writes "TCP"; petrel's spec holds "tcp".
                      Error e = String(value, child, &port->protocol);
                      for (char& c : port->protocol) {
                        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
                      }
                      return e;
                    }
                    return Unknown(key_pos, child);
                  });
  }

  Error Mount(const YAML::Node& v, const std::string& path, MountSpec* mount) {
    return Fields(v, path,
                  [&](const std::string& key, const std::string& child, Position key_pos,
                      const YAML::Node& value) -> Error {
                    if (key == "type") {
                      std::string type;
                      if (Error e = String(value, child, &type)) return e;
                      if (type == "tmpfs") {
                        mount->type = MountSpec::Type::kTmpfs;
                      } else if (type == "bind" || value.IsNull()) {
                        mount->type = MountSpec::Type::kBind;
                      } else {
                        return Fail(PositionOf(value), child,
                                    Quote(type) + " is not a mount type (want bind or tmpfs)");
                      }
                      return std::nullopt;
                    }
                    if (key == "source") return String(value, child, &mount->source);
                    if (key == "target") return String(value, child, &mount->target);
                    if (key == "readOnly") return Bool(value, child, &mount->read_only);
                    if (key == "size") return Parsed(value, child, ParseBytes, &mount->size_bytes);
                    return Unknown(key_pos, child);
                  });
  }

  Error Resources(const YAML::Node& v, const std::string& path, petrel::Resources* r) {
    if (v.IsNull()) return std::nullopt;
    return Fields(v, path,
                  [&](const std::string& key, const std::string& child, Position key_pos,
                      const YAML::Node& value) -> Error {
                    if (key == "memory") return Parsed(value, child, ParseBytes, &r->memory_bytes);
                    if (key == "cpu") return Parsed(value, child, ParseCpuMillis, &r->cpu_millis);
                    if (key == "pids") return Integer(value, child, &r->pids);
                    return Unknown(key_pos, child);
                  });
  }

  Error Policy(const YAML::Node& v, const std::string& path, RestartPolicy* out) {
    std::string s;
    if (Error e = String(v, path, &s)) return e;
    if (v.IsNull()) return std::nullopt;
    std::optional<RestartPolicy> policy = ParseRestartPolicy(s);
    if (!policy) {
      return Fail(PositionOf(v), path,
                  Quote(s) + " is not a restart policy (want Always, OnFailure or Never)");
    }
    *out = *policy;
    return std::nullopt;
  }

  Error NetworkOf(const YAML::Node& v, const std::string& path, NetworkMode* out) {
    std::string s;
    if (Error e = String(v, path, &s)) return e;
    if (v.IsNull()) return std::nullopt;
    std::optional<NetworkMode> mode = ParseNetworkMode(s);
    if (!mode) {
      return Fail(PositionOf(v), path, Quote(s) + " is not a network (want bridge, host or none)");
    }
    *out = *mode;
    return std::nullopt;
  }

  Error PullPolicyOf(const YAML::Node& v, const std::string& path, PullPolicy* out) {
    std::string s;
    if (Error e = String(v, path, &s)) return e;
    if (v.IsNull()) return std::nullopt;
    std::optional<PullPolicy> policy = ParsePullPolicy(s);
    if (!policy) {
      return Fail(PositionOf(v), path,
                  Quote(s) + " is not an image pull policy (want IfNotPresent, Always or Never)");
    }
    *out = *policy;
    return std::nullopt;
  }

  Error BackoffOf(const YAML::Node& v, const std::string& path, Backoff* b) {
    if (v.IsNull()) return std::nullopt;
    return Fields(v, path,
                  [&](const std::string& key, const std::string& child, Position key_pos,
                      const YAML::Node& value) -> Error {
                    if (key == "initial")
                      return Parsed(value, child, ParseDurationMs, &b->initial_ms);
                    if (key == "max") return Parsed(value, child, ParseDurationMs, &b->max_ms);
                    if (key == "resetAfter")
                      return Parsed(value, child, ParseDurationMs, &b->reset_after_ms);
                    return Unknown(key_pos, child);
                  });
  }

  // Capability names are checked by CheckWorkload, which knows the list.
  Error Security(const YAML::Node& v, const std::string& path, SecurityContext* sc) {
    if (v.IsNull()) return std::nullopt;
    return Fields(v, path,
                  [&](const std::string& key, const std::string& child, Position key_pos,
                      const YAML::Node& value) -> Error {
                    if (key == "privileged") return Bool(value, child, &sc->privileged);
                    if (key == "capabilities") {
                      if (value.IsNull()) return std::nullopt;
                      return Fields(value, child,
                                    [&](const std::string& k, const std::string& c, Position kp,
                                        const YAML::Node& val) -> Error {
                                      if (k == "add")
                                        return StringList(val, c, &sc->capabilities_add);
                                      if (k == "drop")
                                        return StringList(val, c, &sc->capabilities_drop);
                                      return Unknown(kp, c);
                                    });
                    }
                    if (key == "seccompProfile") {
                      if (value.IsNull()) return std::nullopt;
                      return Fields(value, child,
                                    [&](const std::string& k, const std::string& c, Position kp,
                                        const YAML::Node& val) -> Error {
                                      if (k != "type") return Unknown(kp, c);
                                      std::string type;
                                      if (Error e = String(val, c, &type)) return e;
                                      if (val.IsNull()) return std::nullopt;
                                      std::optional<SecurityContext::Seccomp> parsed =
                                          ParseSeccomp(type);
                                      if (!parsed) {
                                        return Fail(PositionOf(val), c,
                                                    Quote(type) +
                                                        " is not a seccomp profile type (want "
                                                        "RuntimeDefault or Unconfined; Localhost "
                                                        "profiles are not supported)");
                                      }
                                      sc->seccomp = *parsed;
                                      return std::nullopt;
                                    });
                    }
                    return Unknown(key_pos, child);
                  });
  }

  // A probe: exactly one check (exec, tcpSocket, httpGet) and its timing. Durations as
  // elsewhere ("10s"); Kubernetes' integer-seconds spellings (periodSeconds, ...) are
  // read too, so a probe copied from a Pod spec works as it is.
  Error Probe(const YAML::Node& v, const std::string& path, ProbeSpec* p) {
    if (v.IsNull()) return std::nullopt;
    using Kind = ProbeSpec::Kind;
    auto check = [&](Kind kind, Position key_pos, const std::string& child) -> Error {
      if (p->kind != Kind::kNone) {
        return Fail(key_pos, child,
                    std::string("a probe has one check: ") + ProbeKindName(p->kind) +
                        " is already given (want one of exec, tcpSocket, httpGet)");
      }
      p->kind = kind;
      return std::nullopt;
    };
    auto seconds = [&](const YAML::Node& value, const std::string& child, int64_t* out) -> Error {
      int64_t s = -1;
      if (Error e = Integer(value, child, &s)) return e;
      if (value.IsNull()) return std::nullopt;
      if (s < 0 || s > kMaxProbeMs / 1000) {
        return Fail(PositionOf(value), child,
                    "must be between 0 and " + std::to_string(kMaxProbeMs / 1000));
      }
      *out = s * 1000;
      return std::nullopt;
    };
    Error e = Fields(v, path,
                     [&](const std::string& key, const std::string& child, Position key_pos,
                         const YAML::Node& value) -> Error {
                       if (key == "exec") {
                         if (Error c = check(Kind::kExec, key_pos, child)) return c;
                         return Fields(value, child,
                                       [&](const std::string& k, const std::string& c, Position kp,
                                           const YAML::Node& val) -> Error {
                                         if (k == "command") return StringList(val, c, &p->command);
                                         return Unknown(kp, c);
                                       });
                       }
                       if (key == "tcpSocket") {
                         if (Error c = check(Kind::kTcpSocket, key_pos, child)) return c;
                         return Fields(value, child,
                                       [&](const std::string& k, const std::string& c, Position kp,
                                           const YAML::Node& val) -> Error {
                                         if (k == "port") return Integer(val, c, &p->port);
                                         return Unknown(kp, c);
                                       });
                       }
                       if (key == "httpGet") {
                         if (Error c = check(Kind::kHttpGet, key_pos, child)) return c;
                         return Fields(value, child,
                                       [&](const std::string& k, const std::string& c, Position kp,
                                           const YAML::Node& val) -> Error {
                                         if (k == "path") return String(val, c, &p->path);
                                         if (k == "port") return Integer(val, c, &p->port);
                                         if (k == "scheme") return String(val, c, &p->scheme);
                                         if (k == "httpHeaders")
                                           return Headers(val, c, &p->http_headers);
                                         return Unknown(kp, c);
                                       });
                       }
                       if (key == "initialDelay") {
                         return Parsed(value, child, ParseDurationMs, &p->initial_delay_ms);
                       }
                       if (key == "period")
                         return Parsed(value, child, ParseDurationMs, &p->period_ms);
                       if (key == "timeout")
                         return Parsed(value, child, ParseDurationMs, &p->timeout_ms);
                       if (key == "initialDelaySeconds")
                         return seconds(value, child, &p->initial_delay_ms);
                       if (key == "periodSeconds") return seconds(value, child, &p->period_ms);
                       if (key == "timeoutSeconds") return seconds(value, child, &p->timeout_ms);
                       if (key == "failureThreshold")
                         return Integer(value, child, &p->failure_threshold);
                       if (key == "successThreshold")
                         return Integer(value, child, &p->success_threshold);
                       return Unknown(key_pos, child);
                     });
    if (e) return e;
    if (p->kind == Kind::kNone) {
      return Fail(PositionOf(v), path, "needs a check: one of exec, tcpSocket, httpGet");
    }
    return std::nullopt;
  }

  Error Headers(const YAML::Node& v, const std::string& path,
                std::vector<std::pair<std::string, std::string>>* out) {
    return Elements(v, path, [&](const std::string& child, const YAML::Node& h) -> Error {
      out->emplace_back();
      std::pair<std::string, std::string>* header = &out->back();
      return Fields(h, child,
                    [&](const std::string& k, const std::string& c, Position kp,
                        const YAML::Node& val) -> Error {
                      if (k == "name") return String(val, c, &header->first);
                      if (k == "value") return String(val, c, &header->second);
                      return Unknown(kp, c);
                    });
    });
  }

  PositionMap* positions_;
};

// The scalar under `key` in mapping `node` (first occurrence), or a null node.
YAML::Node Lookup(const YAML::Node& node, const char* key) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
  }
  return YAML::Node();
}

// Checks that `doc` says `key: <one of want>`; `reason` ends the error otherwise.
Error CheckHeader(const YAML::Node& doc, const char* key, std::initializer_list<const char*> want,
                  const std::string& reason) {
  YAML::Node v = Lookup(doc, key);
  if (v.IsNull()) return Fail(PositionOf(doc), key, "is required");
  if (v.IsScalar()) {
    for (const char* w : want) {
      if (v.Scalar() == w) return std::nullopt;
    }
  }
  return Fail(PositionOf(v), key, Describe(v) + " " + reason);
}

bool IsList(const YAML::Node& doc) {
  if (!doc.IsMap()) return false;
  YAML::Node kind = Lookup(doc, "kind");
  return kind.IsScalar() && kind.Scalar() == "List";
}

// Appends the items of a `kind: List` document to *docs.
Error ExpandList(const YAML::Node& list, std::vector<YAML::Node>* docs) {
  if (Error e = CheckHeader(list, "apiVersion", {kApiVersion, "v1"},
                            "is not supported (want petrel.dev/v1)")) {
    return e;
  }
  PositionMap unused;
  Decoder d(&unused);
  bool has_items = false;
  Error e = d.Fields(list, "",
                     [&](const std::string& key, const std::string& path, Position key_pos,
                         const YAML::Node& value) -> Error {
                       if (key == "apiVersion" || key == "kind" || key == "metadata")
                         return std::nullopt;
                       if (key != "items") return Fail(key_pos, path, "unknown field");
                       has_items = true;
                       return d.Elements(value, path,
                                         [&](const std::string&, const YAML::Node& item) -> Error {
                                           docs->push_back(item);
                                           return std::nullopt;
                                         });
                     });
  if (e) return e;
  if (!has_items) return Fail(PositionOf(list), "items", "is required");
  return std::nullopt;
}

// Listens to yaml-cpp's parser for where each document starts, and for the first
// collection nested deeper than kMaxYamlDepth (where it starts).
class DocumentStarts : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Enter(mark);
  }
  void OnSequenceEnd() override { depth--; }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Enter(mark);
  }
  void OnMapEnd() override { depth--; }

  YAML::Mark start;
  int depth = 0;
  std::optional<YAML::Mark> too_deep;

 private:
  void Enter(const YAML::Mark& mark) {
    if (++depth > kMaxYamlDepth && !too_deep) too_deep = mark;
  }
};

// yaml-cpp 0.7's LoadAll loops forever, allocating, when a document would start with
// a token no node can start with, such as the "," of "[a]," (yaml-cpp issue #1040,
// fixed upstream in 2024, after 0.8.0). This dry run finds that case first: a
// document that starts where the previous one started means the parser is stuck.
// It throws every ParserException LoadAll would.
Error CheckProgress(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts starts;
  int last = -1;
  while (parser.HandleNextDocument(starts)) {
    if (starts.start.pos == last) {
      size_t pos = static_cast<size_t>(last);
      char c = pos < text.size() ? text[pos] : '\0';
      bool printable = c > 0x20 && c < 0x7f;
      return Fail(PositionOf(starts.start), "",
                  printable ? "unexpected " + Quote(std::string(1, c)) : "unexpected token");
    }
    if (starts.too_deep) {
      return Fail(PositionOf(*starts.too_deep), "",
                  "nested deeper than " + std::to_string(kMaxYamlDepth) + " levels");
    }
    last = starts.start.pos;
  }
  return std::nullopt;
}

}  // namespace

std::optional<ManifestError> ParseDocuments(std::string_view text, std::vector<YAML::Node>* docs) {
  try {
    std::string input(text);
    if (Error e = CheckProgress(input)) return e;
    for (const YAML::Node& doc : YAML::LoadAll(input)) {
      if (doc.IsNull()) continue;  // an empty document, e.g. after a trailing "---"
      std::vector<YAML::Node> tops;
      if (doc.IsSequence()) {
        for (auto it = doc.begin(); it != doc.end(); ++it) tops.push_back(*it);
      } else {
        tops.push_back(doc);
      }
      for (const YAML::Node& top : tops) {
        if (!IsList(top)) {
          docs->push_back(top);
        } else if (Error e = ExpandList(top, docs)) {
          return e;
        }
      }
    }
  } catch (const YAML::DeepRecursion& e) {
    return Fail(PositionOf(e.mark), "",
                "nested deeper than " + std::to_string(kMaxYamlDepth) + " levels");
  } catch (const YAML::Exception& e) {
    // Some yaml-cpp messages quote the offending character; keep the error one line.
    std::string msg = e.msg;
    for (char& c : msg) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    }
    return Fail(PositionOf(e.mark), "", msg);
  } catch (const std::exception& e) {
    return Fail(Position{}, "", e.what());
  }
  return std::nullopt;
}

std::optional<ManifestError> DecodeWorkload(const YAML::Node& doc, WorkloadSpec* spec,
                                            PositionMap* positions) {
  try {
    if (!doc.IsMap()) {
      return Fail(PositionOf(doc), "", "a document must be a mapping, not " + Describe(doc));
    }
    positions->emplace("", PositionOf(doc));
    if (Error e = CheckHeader(doc, "apiVersion", {kApiVersion},
                              "is not supported (want petrel.dev/v1)")) {
      return e;
    }
    if (Error e =
            CheckHeader(doc, "kind", {"Workload"}, "is not a supported kind (want Workload)")) {
      return e;
    }
    Decoder d(positions);
    return d.Fields(doc, "",
                    [&](const std::string& key, const std::string& path, Position key_pos,
                        const YAML::Node& value) -> Error {
                      if (key == "apiVersion" || key == "kind")
                        return std::nullopt;  // checked above
                      if (key == "metadata") return d.Metadata(value, spec);
                      if (key == "spec") return d.Spec(value, spec);
                      return Fail(key_pos, path, "unknown field");
                    });
  } catch (const std::exception& e) {
    return Fail(Position{}, "", e.what());
  }
}

Position Locate(const PositionMap& positions, std::string path) {
  while (true) {
    auto it = positions.find(path);
    if (it != positions.end()) return it->second;
    if (path.empty()) return Position{};
    size_t cut = path.find_last_of(".[");
    path.resize(cut == std::string::npos ? 0 : cut);
  }
}

}  // namespace petrel::internal
