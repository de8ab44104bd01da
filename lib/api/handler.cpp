// ApiHandler: one request in, one response out, over the Orchestrator. Routes and
// shapes are examples/petreld/API.md's.
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "lib/api/json.h"
#include "lib/util/json.h"
#include "petrel/api.h"
#include "petrel/cluster.h"
#include "petrel/manifest.h"
#include "petrel/spec.h"

#ifndef PETREL_VERSION
#define PETREL_VERSION "0.0.0"
#endif

namespace petrel {
namespace {

using internal::DumpLine;
using nlohmann::json;

// The file name ParseManifest puts in front of positions in a request body's errors.
constexpr const char kBodyName[] = "request";
constexpr int64_t kDefaultTailBytes = 64 * 1024;
constexpr int64_t kMaxTailBytes = 4 << 20;
constexpr int64_t kDefaultEventLimit = 1000;
constexpr int64_t kMaxEventLimit = 10000;
constexpr const char kTextPlain[] = "text/plain; charset=utf-8";

ApiResponse Json(int status, const json& body) {
  ApiResponse r;
  r.status = status;
  r.body = DumpLine(body);
  return r;
}

ApiResponse MethodNotAllowed(const ApiRequest& req, const char* allow) {
  ApiResponse r = ApiHandler::Error(
      405, "method " + req.method + " not allowed on " + req.path + " (allowed: " + allow + ")");
  r.headers.emplace_back("Allow", allow);
  return r;
}

}  // namespace

// The HTTP status of a failed call (API.md's table).
int internal::HttpStatusOf(const Status& s) {
  switch (s.code()) {
    case Status::Code::kInvalidArgument: return 400;
    case Status::Code::kPermissionDenied: return 403;
    case Status::Code::kNotFound: return 404;
    case Status::Code::kFailedPrecondition:
    case Status::Code::kAlreadyExists: return 409;
    case Status::Code::kNotSupported: return 501;
    case Status::Code::kUnavailable: return 503;
    case Status::Code::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

namespace {

int HttpStatus(const Status& s) { return internal::HttpStatusOf(s); }

ApiResponse FromStatus(const Status& s) { return ApiHandler::Error(HttpStatus(s), s.message()); }

// Every query parameter must be one of `known`: a typo ("folow=1") is an error,
// not a silently different answer.
Status CheckQuery(const ApiRequest& req, std::initializer_list<const char*> known) {
  for (const auto& [key, value] : req.query) {
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    if (ok) continue;
    std::string list;
    for (const char* k : known) list += std::string(list.empty() ? "" : ", ") + k;
    return Status::InvalidArgument(
        "unknown query parameter \"" + key + "\"" +
        (list.empty() ? " (this path takes none)" : " (known: " + list + ")"));
  }
  return Status::OK();
}

Status QueryInt(const ApiRequest& req, const char* key, int64_t def, int64_t min, int64_t max,
                int64_t* out) {
  auto it = req.query.find(key);
  if (it == req.query.end()) {
    *out = def;
    return Status::OK();
  }
  const std::string& text = it->second;
  bool digits = !text.empty() && text.size() <= 19;
  for (char c : text) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  long long v = digits ? std::strtoll(text.c_str(), nullptr, 10) : -1;
  if (!digits || v < min || v > max) {
    return Status::InvalidArgument(std::string(key) + ": \"" + text + "\" is not an integer in " +
                                   std::to_string(min) + ".." + std::to_string(max));
  }
  *out = v;
  return Status::OK();
}

Status QueryBool(const ApiRequest& req, const char* key, bool* out) {
  *out = false;
  auto it = req.query.find(key);
  if (it == req.query.end()) return Status::OK();
  const std::string& v = it->second;
  if (v == "1" || v == "true") {
    *out = true;
  } else if (!(v == "0" || v == "false")) {
    return Status::InvalidArgument(std::string(key) + ": \"" + v + "\" is not 1, 0, true or false");
  }
  return Status::OK();
}

enum class BodyType { kJson, kYaml, kOther };

// The media type of the body, from Content-Type without its parameters.
BodyType TypeOf(const ApiRequest& req, std::string* media) {
  auto it = req.headers.find("content-type");
  media->clear();
  if (it != req.headers.end()) {
    for (char c : it->second.substr(0, it->second.find(';'))) {
      if (c != ' ' && c != '\t')
        media->push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  if (*media == "application/json") return BodyType::kJson;
  if (*media == "application/yaml" || *media == "application/x-yaml" || *media == "text/yaml" ||
      *media == "text/x-yaml") {
    return BodyType::kYaml;
  }
  return BodyType::kOther;
}

ApiResponse UnsupportedType(const std::string& media) {
  return ApiHandler::Error(
      415, (media.empty() ? std::string("no Content-Type") : "Content-Type " + media) +
               ": send application/json (SPEC objects) or application/yaml (a manifest)");
}

// The body as JSON, nested at most internal::kMaxJsonDepth levels; on failure *error
// holds the 400.
bool ParseJsonBody(const ApiRequest& req, json* out, ApiResponse* error) {
  Result<json> body = internal::ParseJson(req.body, "body");
  if (!body.ok()) {
    *error = ApiHandler::Error(400, body.status().message());
    return false;
  }
  *out = std::move(*body);
  return true;
}

// Whether `method` is one of `allow` ("GET, DELETE").
bool Allowed(const std::string& method, const std::string& allow) {
  for (size_t start = 0;;) {
    size_t comma = allow.find(", ", start);
    if (allow.substr(start, comma - start) == method) return true;
    if (comma == std::string::npos) return false;
    start = comma + 2;
  }
}

constexpr const char kNodesPrefix[] = "/v1/nodes/";
constexpr const char kImagesPrefix[] = "/v1/images/";
// The longest image reference a client may send. Only its length is checked here; its
// form (printable, no spaces) where it is parsed (lib/spec/image_ref.h).
constexpr size_t kMaxImageRef = 4096;

// The body of POST /v1/cluster/init and PUT /v1/cluster/settings:
// {"heartbeat","nodeLostAfter","fenceAfter"}, each optional and a duration as manifests
// write them ("200ms", "1.5s"). A key not given keeps its value in `settings` (init: the
// defaults; set: the cluster's current ones).
Result<ClusterSettings> SettingsFromJson(const json& body, ClusterSettings settings) {
  if (!body.is_object()) {
    return Status::InvalidArgument(
        "body: expected {\"heartbeat\",\"nodeLostAfter\",\"fenceAfter\"} (all optional)");
  }
  const std::pair<const char*, int64_t*> fields[] = {
      {"heartbeat", &settings.heartbeat_ms},
      {"nodeLostAfter", &settings.node_lost_after_ms},
      {"fenceAfter", &settings.fence_after_ms}};
  for (const auto& [key, value] : body.items()) {
    int64_t* out = nullptr;
    for (const auto& [name, field] : fields) out = key == name ? field : out;
    if (out == nullptr) {
      return Status::InvalidArgument("body: unknown key \"" + key +
                                     "\" (known: heartbeat, nodeLostAfter, fenceAfter)");
    }
    if (!value.is_string()) {
      return Status::InvalidArgument(key + ": must be a duration string such as \"500ms\"");
    }
    Result<int64_t> ms = ParseDurationMs(value.get<std::string>());
    if (!ms.ok()) return ms.status().WithContext(key);
    if (*ms == 0) return Status::InvalidArgument(key + ": must be longer than 0");
    *out = *ms;
  }
  return settings;
}

// Overlays the settings `req`'s body gives on `settings` (an empty body gives none);
// false with the response in `error` for a bad body.
bool SettingsFromBody(const ApiRequest& req, ClusterSettings* settings, ApiResponse* error) {
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) return true;  // as {}
  std::string media;
  if (TypeOf(req, &media) != BodyType::kJson && !media.empty()) {
    *error = ApiHandler::Error(415, "Content-Type " + media + ": send application/json");
    return false;
  }
  json body;
  if (!ParseJsonBody(req, &body, error)) return false;
  Result<ClusterSettings> parsed = SettingsFromJson(body, *settings);
  if (!parsed.ok()) {
    *error = FromStatus(parsed.status());
    return false;
  }
  *settings = *parsed;
  return true;
}

Result<WorkloadSpec> SpecFromItem(const json& item, const std::string& where) {
  Result<WorkloadSpec> spec =
      SpecFromJson(item.dump(-1, ' ', false, json::error_handler_t::replace));
  if (!spec.ok()) return Status::InvalidArgument(where + ": " + spec.status().message());
  return spec;
}

}  // namespace

ApiHandler::ApiHandler(Orchestrator* orch, ApiOptions options)
    : orch_(orch), options_(std::move(options)) {}

void ApiHandler::SetLoopStats(std::function<Result<std::string>(bool reset)> stats) {
  loop_stats_ = std::move(stats);
}

bool ApiHandler::MayBlock(const ApiRequest& req) {
  if (req.method != "GET") return true;  // applies and deletes wait for the disk
  const std::string& path = req.path;
  if (path == "/healthz" || path == "/v1/version" || path == "/v1/workloads" ||
      path == "/v1/debug/loop") {
    return false;
  }
  const std::string prefix = "/v1/workloads/";
  // GET /v1/workloads/NAME reads memory; its /logs reads the runtime.
  return path.compare(0, prefix.size(), prefix) != 0 ||
         path.find('/', prefix.size()) != std::string::npos;
}

ApiResponse ApiHandler::Error(int status, const std::string& message) {
  return Json(status, json{{"error", message}});
}

ApiResponse ApiHandler::Handle(const ApiRequest& request) {
  try {
    return Route(request);
  } catch (const std::exception& e) {
    return Error(500, std::string("internal error: ") + e.what());
  } catch (...) {
    return Error(500, "internal error");
  }
}

ApiResponse ApiHandler::Route(const ApiRequest& req) {
  const std::string& path = req.path;
  const std::string& m = req.method;
  if (path == "/healthz") {
    if (m != "GET") return MethodNotAllowed(req, "GET");
    if (Status s = CheckQuery(req, {}); !s.ok()) return FromStatus(s);
    return Json(200, json{{"status", "ok"}});
  }
  if (path == "/v1/version") {
    if (m != "GET") return MethodNotAllowed(req, "GET");
    if (Status s = CheckQuery(req, {}); !s.ok()) return FromStatus(s);
    return Json(200, json{{"version", PETREL_VERSION},
                          {"runtime", options_.runtime_name},
                          {"node", options_.node_name},
                          {"api", "v1"}});
  }
  if (path == "/v1/debug/loop") {
    if (m != "GET") return MethodNotAllowed(req, "GET");
    bool reset = false;
    Status s = CheckQuery(req, {"reset"});
    if (s.ok()) s = QueryBool(req, "reset", &reset);
    if (!s.ok()) return FromStatus(s);
    if (!loop_stats_) {
      return Error(404, "the loop probe is off (petreld --loop-probe-ms N turns it on)");
    }
    Result<std::string> stats = loop_stats_(reset);
    if (!stats.ok()) return FromStatus(stats.status());
    ApiResponse r;
    r.body = std::move(*stats);
    return r;
  }
  if (path == "/v1/workloads") {
    if (Status s = CheckQuery(req, {}); !s.ok()) return FromStatus(s);
    if (m == "GET") return ListWorkloads();
    if (m == "PUT") return ApplyMany(req);
    return MethodNotAllowed(req, "GET, PUT");
  }
  if (path == "/v1/events") {
    if (m != "GET") return MethodNotAllowed(req, "GET");
    return Events(req);
  }
  if (path == "/v1/cluster" || path.rfind("/v1/cluster/", 0) == 0 || path == "/v1/nodes" ||
      path.rfind(kNodesPrefix, 0) == 0) {
    return RouteCluster(req);
  }
  if (path == "/v1/images" || path.rfind(kImagesPrefix, 0) == 0) return RouteImages(req);
  const std::string prefix = "/v1/workloads/";
  if (path.compare(0, prefix.size(), prefix) == 0) {
    std::string rest = path.substr(prefix.size());
    size_t slash = rest.find('/');
    std::string name = rest.substr(0, slash);
    if (!name.empty() && slash == std::string::npos) {
      if (m != "GET" && m != "PUT" && m != "DELETE") {
        return MethodNotAllowed(req, "GET, PUT, DELETE");
      }
      if (Status s = CheckQuery(req, {}); !s.ok()) return FromStatus(s);
      if (m == "GET") return GetWorkload(name);
      if (m == "PUT") return ApplyOne(req, name);
      return DeleteWorkload(name);
    }
    if (!name.empty() && rest.substr(slash) == "/logs") {
      if (m != "GET") return MethodNotAllowed(req, "GET");
      return Logs(req, name);
    }
  }
  return Error(404, "no such path: " + path);
}

// GET /v1/images, POST /v1/images/pull (a stream), DELETE /v1/images/REF,
// POST /v1/images/prune: this node's runtime's images.
ApiResponse ApiHandler::RouteImages(const ApiRequest& req) {
  const std::string& path = req.path;
  const std::string& m = req.method;
  if (Status s = CheckQuery(req, {}); !s.ok()) return FromStatus(s);
  if (path == "/v1/images") {
    if (m != "GET") return MethodNotAllowed(req, "GET");
    Result<std::vector<ImageInfo>> images = orch_->ListImages();
    if (!images.ok()) return FromStatus(images.status());
    json items = json::array();
    for (const ImageInfo& i : *images) items.push_back(internal::ImageJson(i));
    return Json(200, json{{"items", std::move(items)}});
  }
  const std::string rest = path.substr(sizeof(kImagesPrefix) - 1);
  if (m == "POST" && rest == "pull") return PullImage(req);
  if (m == "POST" && rest == "prune") {
    Result<PruneResult> pruned = orch_->PruneImages();
    if (!pruned.ok()) return FromStatus(pruned.status());
    return Json(200, json{{"removed", pruned->removed}, {"bytesFreed", pruned->bytes_freed}});
  }
  if (m == "DELETE" && !rest.empty() && rest.size() <= kMaxImageRef) {
    Status s = orch_->RemoveImage(rest);
    if (!s.ok()) return FromStatus(s);
    return Json(200, json{{"image", rest}, {"deleted", true}});
  }
  if (rest == "pull" || rest == "prune") return MethodNotAllowed(req, "POST");
  return MethodNotAllowed(req, "DELETE");
}

// Checks the body {"image": REF, "policy": "IfNotPresent" | "Always" | "Never"} and
// starts the stream that runs the pull (ApiServer): NDJSON progress lines, then the
// result line.
ApiResponse ApiHandler::PullImage(const ApiRequest& req) {
  std::string media;
  if (TypeOf(req, &media) != BodyType::kJson && !media.empty()) {
    return Error(415, "Content-Type " + media + ": send application/json");
  }
  json body;
  ApiResponse error;
  if (!ParseJsonBody(req, &body, &error)) return error;
  const char* want = "body: expected {\"image\": REF, \"policy\": IfNotPresent|Always|Never}";
  if (!body.is_object()) return Error(400, want);
  ApiResponse resp;
  for (const auto& [key, value] : body.items()) {
    if (key != "image" && key != "policy") {
      return Error(400, "body: unknown key \"" + key + "\" (known: image, policy)");
    }
    if (!value.is_string()) return Error(400, key + ": must be a string");
  }
  auto image = body.find("image");
  if (image == body.end() || image->get<std::string>().empty()) return Error(400, want);
  resp.stream.image = image->get<std::string>();
  if (resp.stream.image.size() > kMaxImageRef) {
    return Error(400, "image: longer than " + std::to_string(kMaxImageRef) + " bytes");
  }
  if (auto policy = body.find("policy"); policy != body.end()) {
    std::optional<PullPolicy> parsed = ParsePullPolicy(policy->get<std::string>());
    if (!parsed) {
      return Error(400, "policy: \"" + policy->get<std::string>() +
                            "\" is not IfNotPresent, Always or Never");
    }
    resp.stream.pull_policy = *parsed;
  }
  resp.content_type = "application/x-ndjson";
  resp.stream.kind = ApiStream::Kind::kPull;
  return resp;
}

ApiResponse ApiHandler::RouteCluster(const ApiRequest& req) {
  const std::string& path = req.path;
  std::string node =
      path.rfind(kNodesPrefix, 0) == 0 ? path.substr(strlen(kNodesPrefix)) : std::string();
  // /v1/nodes/NAME/drain and /v1/nodes/NAME/uncordon
  std::string action;
  if (const size_t slash = node.find('/'); slash != std::string::npos) {
    action = node.substr(slash + 1);
    node = node.substr(0, slash);
    if (node.empty() || (action != "drain" && action != "uncordon")) {
      return Error(404, "no such path: " + path);
    }
  }
  const char* allow = path == "/v1/cluster"                ? "GET"
                      : path == "/v1/cluster/init"         ? "POST"
                      : path == "/v1/cluster/settings"     ? "PUT"
                      : path == "/v1/cluster/token"        ? "GET"
                      : path == "/v1/cluster/token/rotate" ? "POST"
                      : path == "/v1/nodes"                ? "GET"
                      : !node.empty() && !action.empty()   ? "POST"
                      : !node.empty()                      ? "GET, DELETE"
                                                           : nullptr;
  if (allow == nullptr) return Error(404, "no such path: " + path);
  if (!Allowed(req.method, allow)) return MethodNotAllowed(req, allow);
  if (Status s = CheckQuery(req, {}); !s.ok()) return FromStatus(s);
  if (options_.cluster == nullptr) {
    return Error(404,
                 "this node is not cluster-capable: start petreld with --peer-listen ADDR:PORT");
  }
  if (path == "/v1/cluster") return GetClusterStatus();
  if (path == "/v1/cluster/init") return InitCluster(req);
  if (path == "/v1/cluster/settings") return SetClusterSettings(req);
  if (path == "/v1/cluster/token") return ClusterToken(false);
  if (path == "/v1/cluster/token/rotate") return ClusterToken(true);
  if (path == "/v1/nodes") return ListNodes();
  if (!action.empty()) {
    Status s = options_.cluster->Drain(node, action == "drain");
    if (!s.ok()) return FromStatus(s);
    return Json(200, json{{"name", node}, {"draining", action == "drain"}});
  }
  if (req.method == "GET") return GetNode(node);
  return RemoveNode(node);
}

ApiResponse ApiHandler::InitCluster(const ApiRequest& req) {
  ClusterSettings settings;  // the defaults, for what the body does not give
  if (ApiResponse error; !SettingsFromBody(req, &settings, &error)) return error;
  Result<std::string> token = options_.cluster->Init(settings);
  if (!token.ok()) return FromStatus(token.status());
  return Json(200, json{{"token", *token}});
}

ApiResponse ApiHandler::SetClusterSettings(const ApiRequest& req) {
  // What the body does not give keeps its current value. Two clients setting different
  // keys at once may each overwrite the other's change with what they read here.
  Result<ClusterStatus> status = options_.cluster->GetStatus();
  if (!status.ok()) return FromStatus(status.status());
  ClusterSettings settings = status->settings;
  if (ApiResponse error; !SettingsFromBody(req, &settings, &error)) return error;
  if (Status s = options_.cluster->SetSettings(settings); !s.ok()) return FromStatus(s);
  return Json(200, internal::ClusterSettingsJson(settings));
}

ApiResponse ApiHandler::ClusterToken(bool rotate) {
  Result<std::string> token = options_.cluster->Token(rotate);
  if (!token.ok()) return FromStatus(token.status());
  return Json(200, json{{"token", *token}});
}

ApiResponse ApiHandler::GetClusterStatus() {
  Result<ClusterStatus> status = options_.cluster->GetStatus();
  if (!status.ok()) return FromStatus(status.status());
  return Json(200, internal::ClusterStatusJson(*status));
}

ApiResponse ApiHandler::ListNodes() {
  Result<std::vector<NodeInfo>> nodes = options_.cluster->Nodes();
  if (!nodes.ok()) return FromStatus(nodes.status());
  json items = json::array();
  for (const NodeInfo& n : *nodes) items.push_back(internal::NodeJson(n));
  return Json(200, json{{"items", std::move(items)}});
}

ApiResponse ApiHandler::GetNode(const std::string& name) {
  Result<std::vector<NodeInfo>> nodes = options_.cluster->Nodes();
  if (!nodes.ok()) return FromStatus(nodes.status());
  for (const NodeInfo& n : *nodes) {
    if (n.name == name) return Json(200, internal::NodeJson(n));
  }
  return Error(404, "node " + name + " not found");
}

ApiResponse ApiHandler::RemoveNode(const std::string& name) {
  Status s = options_.cluster->RemoveNode(name);
  if (!s.ok()) return FromStatus(s);
  return Json(200, json{{"name", name}, {"removed", true}});
}

ApiResponse ApiHandler::ListWorkloads() {
  Result<std::vector<WorkloadState>> list = orch_->List();
  if (!list.ok()) return FromStatus(list.status());
  json items = json::array();
  for (const WorkloadState& w : *list) items.push_back(internal::WorkloadJson(w));
  return Json(200, json{{"items", std::move(items)}});
}

ApiResponse ApiHandler::GetWorkload(const std::string& name) {
  Result<WorkloadState> w = orch_->Get(name);
  if (!w.ok()) return FromStatus(w.status());
  return Json(200, internal::WorkloadJson(*w));
}

ApiResponse ApiHandler::ApplyMany(const ApiRequest& req) {
  std::string media;
  std::vector<WorkloadSpec> specs;
  switch (TypeOf(req, &media)) {
    case BodyType::kJson: {
      json body;
      ApiResponse error;
      if (!ParseJsonBody(req, &body, &error)) return error;
      if (!body.is_object() || body.size() != 1 || !body.contains("items") ||
          !body["items"].is_array()) {
        return Error(400,
                     "body: expected {\"items\":[SPEC...]}; send a manifest as "
                     "Content-Type application/yaml");
      }
      const json& items = body["items"];
      for (size_t i = 0; i < items.size(); i++) {
        Result<WorkloadSpec> spec = SpecFromItem(items[i], "items[" + std::to_string(i) + "]");
        if (!spec.ok()) return FromStatus(spec.status());
        specs.push_back(std::move(*spec));
      }
      break;
    }
    case BodyType::kYaml: {
      Result<std::vector<WorkloadSpec>> parsed = ParseManifest(req.body, kBodyName);
      if (!parsed.ok()) return FromStatus(parsed.status());
      specs = std::move(*parsed);
      break;
    }
    case BodyType::kOther: return UnsupportedType(media);
  }
  Result<std::vector<ApplyResult>> applied = orch_->Apply(specs);
  if (!applied.ok()) return FromStatus(applied.status());
  json items = json::array();
  for (const ApplyResult& r : *applied) items.push_back(internal::ApplyResultJson(r));
  return Json(200, json{{"items", std::move(items)}});
}

ApiResponse ApiHandler::ApplyOne(const ApiRequest& req, const std::string& name) {
  std::string media;
  WorkloadSpec spec;
  auto mismatch = [&](const std::string& body_name) {
    return Error(
        400, "name \"" + body_name + "\" in the body does not match \"" + name + "\" in the path");
  };
  switch (TypeOf(req, &media)) {
    case BodyType::kJson: {
      json body;
      ApiResponse error;
      if (!ParseJsonBody(req, &body, &error)) return error;
      if (!body.is_object()) return Error(400, "body: expected one SPEC object");
      auto it = body.find("name");
      if (it == body.end()) {
        body["name"] = name;
      } else if (it->is_string() && it->get<std::string>() != name) {
        return mismatch(it->get<std::string>());
      }
      Result<WorkloadSpec> parsed = SpecFromItem(body, "body");
      if (!parsed.ok()) return FromStatus(parsed.status());
      spec = std::move(*parsed);
      break;
    }
    case BodyType::kYaml: {
      Result<std::vector<WorkloadSpec>> parsed = ParseManifest(req.body, kBodyName);
      if (!parsed.ok()) return FromStatus(parsed.status());
      if (parsed->size() != 1) {
        return Error(400, "body: the manifest must hold exactly one workload, it holds " +
                              std::to_string(parsed->size()));
      }
      if ((*parsed)[0].name != name) return mismatch((*parsed)[0].name);
      spec = std::move((*parsed)[0]);
      break;
    }
    case BodyType::kOther: return UnsupportedType(media);
  }
  Result<ApplyResult> applied = orch_->Apply(spec);
  if (!applied.ok()) return FromStatus(applied.status());
  return Json(200, internal::ApplyResultJson(*applied));
}

ApiResponse ApiHandler::DeleteWorkload(const std::string& name) {
  Status s = orch_->Delete(name);
  if (!s.ok()) return FromStatus(s);
  return Json(200, json{{"name", name}, {"deleted", true}});
}

ApiResponse ApiHandler::Logs(const ApiRequest& req, const std::string& name) {
  int64_t replica = 0, tail = 0;
  bool follow = false;
  Status s = CheckQuery(req, {"replica", "tail", "follow"});
  if (s.ok()) s = QueryInt(req, "replica", 0, 0, INT_MAX, &replica);
  if (s.ok()) s = QueryInt(req, "tail", kDefaultTailBytes, 0, kMaxTailBytes, &tail);
  if (s.ok()) s = QueryBool(req, "follow", &follow);
  if (!s.ok()) return FromStatus(s);

  // The Orchestrator checks the workload, the replica and its container, and says
  // what is missing. A stream may start before the replica has a container.
  LogOptions options;
  options.since_offset = -1;
  options.limit_bytes = static_cast<size_t>(tail);
  Result<ReplicaLog> log = orch_->Logs(name, static_cast<int>(replica), options);
  const bool waiting = !log.ok() && log.status().code() == Status::Code::kFailedPrecondition;
  if (!log.ok() && !(follow && waiting)) {
    return Error(waiting ? 404 : HttpStatus(log.status()), log.status().message());
  }
  ApiResponse resp;
  resp.content_type = kTextPlain;
  if (log.ok()) resp.body = std::move(log->chunk.data);
  if (follow) {
    resp.stream.kind = ApiStream::Kind::kLogs;
    resp.stream.workload = name;
    resp.stream.replica = static_cast<int>(replica);
    resp.stream.container_id = log.ok() ? log->container_id : std::string();
    resp.stream.log_offset = log.ok() ? log->chunk.end_offset : 0;
  }
  return resp;
}

ApiResponse ApiHandler::Events(const ApiRequest& req) {
  int64_t after = 0, limit = 0;
  bool follow = false;
  Status s = CheckQuery(req, {"after", "limit", "workload", "follow"});
  if (s.ok()) s = QueryInt(req, "after", 0, 0, INT64_MAX, &after);
  if (s.ok()) s = QueryInt(req, "limit", kDefaultEventLimit, 1, kMaxEventLimit, &limit);
  if (s.ok()) s = QueryBool(req, "follow", &follow);
  if (!s.ok()) return FromStatus(s);
  auto wit = req.query.find("workload");
  const std::string workload = wit == req.query.end() ? "" : wit->second;

  if (follow) {
    ApiResponse resp;
    resp.content_type = "application/x-ndjson";
    resp.stream.kind = ApiStream::Kind::kEvents;
    resp.stream.workload = workload;
    resp.stream.after_seq = after;
    return resp;
  }
  // With a workload filter, pages are read until `limit` events match or none are left.
  json items = json::array();
  int64_t cursor = after;
  while (static_cast<int64_t>(items.size()) < limit) {
    Result<std::vector<Event>> page = orch_->Events(cursor, static_cast<size_t>(kMaxEventLimit));
    if (!page.ok()) return FromStatus(page.status());
    for (const Event& e : *page) {
      cursor = e.seq;
      if (!workload.empty() && e.workload != workload) continue;
      items.push_back(internal::EventJson(e));
      if (static_cast<int64_t>(items.size()) == limit) break;
    }
    if (page->size() < static_cast<size_t>(kMaxEventLimit)) break;
  }
  return Json(200, json{{"items", std::move(items)}});
}

}  // namespace petrel
