#include "runtime-adapters/docker/calls.h"

#include <mbedtls/base64.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "lib/util/json.h"
#include "lib/util/strings.h"

namespace petrel::internal {
namespace {

using nlohmann::json;

// The string at `key` of object `j`, "" when it is missing or no string.
std::string Text(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The integer at `key` of object `j`, 0 when it is missing or no integer.
int64_t Integer(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// The string-to-string object at `key` of `j` (labels, attributes); other values skipped.
std::map<std::string, std::string> Strings(const json& j, const char* key) {
  std::map<std::string, std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_object()) return out;
  for (auto& [k, v] : it->items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

// dockerd's filters parameter: {"label": [...]} (and "type" for events), URL-escaped.
std::string Filters(const std::vector<std::string>& labels, const char* type = nullptr) {
  json f = json::object();
  if (!labels.empty()) f["label"] = labels;
  if (type != nullptr) f["type"] = json::array({type});
  return UrlEscape(f.dump());
}

// `id` as a path segment: a container's name or id, escaped so that it stays one.
std::string Segment(const std::string& id) { return UrlEscape(id); }

// An answer's JSON, or Internal naming `call`.
Result<json> Answer(const std::string& call, const std::string& body) {
  Result<json> j = ParseJson(body, call + ": answer");
  if (!j.ok()) return Status::Internal(j.status().message());
  return j;
}

// Nanoseconds since the epoch as a time_point.
std::chrono::system_clock::time_point FromNanos(int64_t nanos) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(nanos)));
}

// `t` as dockerd's `since`: seconds since the epoch with nanoseconds ("1796281925.584174600").
std::string Since(std::chrono::system_clock::time_point t) {
  const int64_t nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  std::string frac = std::to_string(nanos % 1000000000);
  frac.insert(0, 9 - frac.size(), '0');
  return std::to_string(nanos / 1000000000) + "." + frac;
}

// Calls `method` on `path` with `upload` and hands each line of the answer, a JSON
// object, to `on_object` as it comes. Corruption, naming `call`, for a line that is no
// JSON object.
Status JsonLines(DockerEngine* engine, const char* method, const std::string& path,
                 const DockerEngine::Upload* upload, const std::string& call,
                 const std::function<Status(const json&)>& on_object,
                 const std::function<bool()>& stop) {
  DockerLineReader reader(1 << 20);
  auto on_line = [&](const std::string& line) -> Status {
    Result<json> j = ParseJson(line, call + ": answer");
    if (!j.ok()) return Status::Corruption(j.status().message());
    if (!j->is_object()) return Status::Corruption(call + ": an answer line is not an object");
    return on_object(*j);
  };
  const Status streamed = engine->Stream(
      method, path, upload,
      [&](std::string_view data) -> Status {
        std::vector<std::string> lines;
        PETREL_RETURN_IF_ERROR(reader.Feed(data, &lines).WithContext(call));
        for (const std::string& line : lines) PETREL_RETURN_IF_ERROR(on_line(line));
        return Status::OK();
      },
      stop);
  PETREL_RETURN_IF_ERROR(streamed);
  if (std::string rest = reader.TakeRest(); !rest.empty() && !engine->stopped()) {
    return on_line(rest);
  }
  return Status::OK();
}

// The error a line of a load's or pull's answer reports (dockerd answers 200 and tells
// it in the stream), "" for none.
std::string StreamError(const json& j) {
  if (!j.contains("error") && !j.contains("errorDetail")) return "";
  std::string why = Text(j, "error");
  if (auto d = j.find("errorDetail"); why.empty() && d != j.end() && d->is_object()) {
    why = Text(*d, "message");
  }
  return why.empty() ? "(no message)" : Escape(why, 512);
}

// Calls `method` on `path` with `upload` and hands each chunk of the answer, a stream
// of container output (DockerLogReader), to `on_chunk` as it comes.
Status LogStream(DockerEngine* engine, const char* method, const std::string& path,
                 const DockerEngine::Upload* upload, const std::string& call,
                 const std::function<Status(DockerLogChunk chunk)>& on_chunk,
                 const std::function<bool()>& stop) {
  DockerLogReader reader(1 << 20);
  const Status streamed = engine->Stream(
      method, path, upload,
      [&](std::string_view data) -> Status {
        std::vector<DockerLogChunk> chunks;
        Status fed = reader.Feed(data, &chunks);
        for (DockerLogChunk& c : chunks) PETREL_RETURN_IF_ERROR(on_chunk(std::move(c)));
        return fed.WithContext(call);
      },
      stop);
  PETREL_RETURN_IF_ERROR(streamed);
  return engine->stopped() ? Status::OK() : reader.Finish().WithContext(call);
}

}  // namespace

Result<std::vector<std::string>> DockerLoadImage(DockerEngine* engine,
                                                 const DockerEngine::Upload& archive) {
  const std::string call = "POST /images/load";
  std::vector<std::string> names;
  Status refused;
  PETREL_RETURN_IF_ERROR(JsonLines(
      engine, "POST", "/images/load?quiet=1", &archive, call,
      [&](const json& j) {
        if (std::string why = StreamError(j); !why.empty()) {
          refused = Status::InvalidArgument(call + ": " + why);
          return Status::OK();
        }
        // "Loaded image: busybox:latest\n", "Loaded image ID: sha256:...\n"
        std::string said = Text(j, "stream");
        while (!said.empty() && (said.back() == '\n' || said.back() == ' ')) said.pop_back();
        for (const char* prefix : {"Loaded image ID: ", "Loaded image: "}) {
          if (said.rfind(prefix, 0) == 0) {
            names.push_back(said.substr(std::char_traits<char>::length(prefix)));
            break;
          }
        }
        return Status::OK();
      },
      nullptr));
  PETREL_RETURN_IF_ERROR(refused);
  if (names.empty()) return Status::Internal(call + ": dockerd named no image it loaded");
  return names;
}

Result<DockerImage> DockerInspectImage(DockerEngine* engine, const std::string& name) {
  const std::string call = "GET /images/" + name + "/json";
  std::string body;
  PETREL_RETURN_IF_ERROR(engine->Call("GET", "/images/" + Segment(name) + "/json", "", &body));
  PETREL_ASSIGN_OR_RETURN(json j, Answer(call, body));
  DockerImage image;
  if (j.is_object()) {
    image.id = Text(j, "Id");
    image.size = Integer(j, "Size");
    if (auto tags = j.find("RepoTags"); tags != j.end() && tags->is_array()) {
      for (const json& t : *tags) {
        if (t.is_string()) image.repo_tags.push_back(t.get<std::string>());
      }
    }
  }
  if (image.id.empty()) return Status::Internal(call + ": no Id in the answer");
  return image;
}

Status DockerTagImage(DockerEngine* engine, const std::string& name, const std::string& repo,
                      const std::string& tag) {
  std::string body;
  return engine->Call(
      "POST",
      "/images/" + Segment(name) + "/tag?repo=" + UrlEscape(repo) + "&tag=" + UrlEscape(tag), "",
      &body);
}

Result<bool> DockerRemoveImage(DockerEngine* engine, const std::string& name) {
  std::string body;
  PETREL_RETURN_IF_ERROR(engine->Call("DELETE", "/images/" + Segment(name), "", &body));
  PETREL_ASSIGN_OR_RETURN(json j, Answer("DELETE /images/" + name, body));
  if (!j.is_array()) return false;
  for (const json& e : j) {
    if (e.is_object() && e.contains("Deleted")) return true;
  }
  return false;
}

Status DockerPullImage(DockerEngine* engine, const std::string& ref,
                       const std::string& registry_auth,
                       const std::function<void(const DockerPullStatus&)>& on_status,
                       const std::function<bool()>& stop) {
  const std::string call = "POST /images/create";
  Status failed;
  DockerEngine::Upload none;
  none.read = [](char*, size_t) -> Result<size_t> { return size_t{0}; };
  none.content_type = "text/plain";
  if (!registry_auth.empty()) none.headers.push_back("X-Registry-Auth: " + registry_auth);
  PETREL_RETURN_IF_ERROR(JsonLines(
      engine, "POST", "/images/create?fromImage=" + UrlEscape(ref), &none, call,
      [&](const json& j) {
        if (std::string why = StreamError(j); !why.empty()) {
          failed = Status::Unavailable(call + ": " + why);
          return Status::OK();
        }
        DockerPullStatus st;
        st.id = Text(j, "id");
        st.status = Text(j, "status");
        if (auto d = j.find("progressDetail"); d != j.end() && d->is_object()) {
          st.current = Integer(*d, "current");
          st.total = Integer(*d, "total");
        }
        if (on_status) on_status(st);
        return Status::OK();
      },
      stop));
  return failed;
}

std::string DockerRegistryAuth(const std::string& user, const std::string& password,
                               const std::string& identity_token, const std::string& server) {
  json config = {{"serveraddress", server == "docker.io" ? "https://index.docker.io/v1/" : server}};
  if (!identity_token.empty()) {
    config["identitytoken"] = identity_token;
  } else {
    config["username"] = user;
    config["password"] = password;
  }
  const std::string text = config.dump();
  std::string out(4 * ((text.size() + 2) / 3) + 1, '\0');
  size_t n = 0;
  if (mbedtls_base64_encode(reinterpret_cast<unsigned char*>(out.data()), out.size(), &n,
                            reinterpret_cast<const unsigned char*>(text.data()),
                            text.size()) != 0) {
    return "";  // the buffer is large enough: cannot happen
  }
  out.resize(n);
  for (char& c : out) {  // base64url, as dockerd decodes it
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

Result<std::string> DockerCreateContainer(DockerEngine* engine, const std::string& name,
                                          const std::string& config) {
  std::string body;
  PETREL_RETURN_IF_ERROR(
      engine->Call("POST", "/containers/create?name=" + UrlEscape(name), config, &body));
  PETREL_ASSIGN_OR_RETURN(json j, Answer("POST /containers/create", body));
  std::string id = j.is_object() ? Text(j, "Id") : "";
  if (id.empty()) return Status::Internal("POST /containers/create: no Id in the answer");
  return id;
}

Status DockerStartContainer(DockerEngine* engine, const std::string& id) {
  std::string body;
  return engine->Call("POST", "/containers/" + Segment(id) + "/start", "", &body);
}

Status DockerKillContainer(DockerEngine* engine, const std::string& id, int signal) {
  std::string body;
  return engine->Call(
      "POST", "/containers/" + Segment(id) + "/kill?signal=" + std::to_string(signal), "", &body);
}

Status DockerRemoveContainer(DockerEngine* engine, const std::string& id, bool force) {
  std::string body;
  return engine->Call("DELETE", "/containers/" + Segment(id) + "?v=1" + (force ? "&force=1" : ""),
                      "", &body);
}

Result<DockerContainer> DockerInspectContainer(DockerEngine* engine, const std::string& id) {
  const std::string call = "GET /containers/" + id + "/json";
  std::string body;
  PETREL_RETURN_IF_ERROR(engine->Call("GET", "/containers/" + Segment(id) + "/json", "", &body));
  PETREL_ASSIGN_OR_RETURN(json j, Answer(call, body));
  if (!j.is_object()) return Status::Internal(call + ": not an object");
  DockerContainer c;
  c.id = Text(j, "Id");
  c.name = Text(j, "Name");
  if (!c.name.empty() && c.name[0] == '/') c.name.erase(0, 1);
  if (auto config = j.find("Config"); config != j.end() && config->is_object()) {
    c.labels = Strings(*config, "Labels");
    c.image = Text(*config, "Image");
  }
  auto state = j.find("State");
  if (state == j.end() || !state->is_object()) return Status::Internal(call + ": no State");
  c.status = Text(*state, "Status");
  c.running = state->value("Running", false);
  c.oom_killed = state->value("OOMKilled", false);
  c.pid = static_cast<int>(Integer(*state, "Pid"));
  c.exit_code = static_cast<int>(Integer(*state, "ExitCode"));
  c.error = Text(*state, "Error");
  if (const std::string created = Text(j, "Created"); !created.empty()) {
    Result<std::chrono::system_clock::time_point> t = DockerParseTime(created);
    if (!t.ok()) return t.status().WithContext(call + ": Created");
    c.created_at = *t;
  }
  for (auto [key, out] :
       {std::pair{"StartedAt", &c.started_at}, std::pair{"FinishedAt", &c.finished_at}}) {
    const std::string text = Text(*state, key);
    if (text.empty()) continue;
    Result<std::chrono::system_clock::time_point> t = DockerParseTime(text);
    if (!t.ok()) return t.status().WithContext(call + ": State." + key);
    *out = *t;
  }
  return c;
}

Result<std::vector<DockerContainer>> DockerListContainers(DockerEngine* engine,
                                                          const std::vector<std::string>& labels) {
  const std::string call = "GET /containers/json";
  std::string path = "/containers/json?all=1";
  if (!labels.empty()) path += "&filters=" + Filters(labels);
  std::string body;
  PETREL_RETURN_IF_ERROR(engine->Call("GET", path, "", &body));
  PETREL_ASSIGN_OR_RETURN(json j, Answer(call, body));
  if (!j.is_array()) return Status::Internal(call + ": not an array");
  std::vector<DockerContainer> out;
  for (const json& e : j) {
    if (!e.is_object()) return Status::Internal(call + ": an entry is not an object");
    DockerContainer c;
    c.id = Text(e, "Id");
    if (auto names = e.find("Names");
        names != e.end() && names->is_array() && !names->empty() && names->front().is_string()) {
      c.name = names->front().get<std::string>();
      if (!c.name.empty() && c.name[0] == '/') c.name.erase(0, 1);
    }
    c.labels = Strings(e, "Labels");
    c.image = Text(e, "Image");
    c.status = Text(e, "State");
    c.running = c.status == "running";
    out.push_back(std::move(c));
  }
  return out;
}

Result<int> DockerWaitContainer(DockerEngine* engine, const std::string& id) {
  const std::string call = "POST /containers/" + id + "/wait";
  std::string body;
  PETREL_RETURN_IF_ERROR(engine->Call("POST", "/containers/" + Segment(id) + "/wait", "", &body));
  PETREL_ASSIGN_OR_RETURN(json j, Answer(call, body));
  if (!j.is_object() || !j.contains("StatusCode"))
    return Status::Internal(call + ": no StatusCode");
  return static_cast<int>(Integer(j, "StatusCode"));
}

Status DockerEvents(DockerEngine* engine, const std::vector<std::string>& labels,
                    std::chrono::system_clock::time_point since,
                    const std::function<Status(DockerEvent event)>& on_event,
                    const std::function<bool()>& stop) {
  std::string path = "/events?filters=" + Filters(labels, "container");
  if (since.time_since_epoch().count() != 0) path += "&since=" + Since(since);
  return JsonLines(
      engine, "GET", path, nullptr, "GET /events",
      [&](const json& j) {
        DockerEvent e;
        e.type = Text(j, "Type");
        e.action = Text(j, "Action");
        if (auto actor = j.find("Actor"); actor != j.end() && actor->is_object()) {
          e.id = Text(*actor, "ID");
          e.attributes = Strings(*actor, "Attributes");
        }
        e.time = FromNanos(Integer(j, "timeNano"));
        return on_event(std::move(e));
      },
      stop);
}

Status DockerLogs(DockerEngine* engine, const std::string& id, bool follow, bool timestamps,
                  std::chrono::system_clock::time_point since,
                  const std::function<Status(DockerLogChunk chunk)>& on_chunk,
                  const std::function<bool()>& stop) {
  const std::string call = "GET /containers/" + id + "/logs";
  std::string path = "/containers/" + Segment(id) + "/logs?stdout=1&stderr=1";
  if (follow) path += "&follow=1";
  if (timestamps) path += "&timestamps=1";
  if (since.time_since_epoch().count() != 0) path += "&since=" + Since(since);
  return LogStream(engine, "GET", path, nullptr, call, on_chunk, stop);
}

Result<std::string> DockerCreateExec(DockerEngine* engine, const std::string& id,
                                     const std::vector<std::string>& argv) {
  const json config = {{"Cmd", argv}, {"AttachStdout", true}, {"AttachStderr", true}};
  std::string body;
  PETREL_RETURN_IF_ERROR(
      engine->Call("POST", "/containers/" + Segment(id) + "/exec", config.dump(), &body));
  PETREL_ASSIGN_OR_RETURN(json j, Answer("POST /containers/" + id + "/exec", body));
  std::string exec_id = j.is_object() ? Text(j, "Id") : "";
  if (exec_id.empty()) return Status::Internal("POST /containers/" + id + "/exec: no Id");
  return exec_id;
}

Status DockerStartExec(DockerEngine* engine, const std::string& exec_id,
                       const std::function<Status(DockerLogChunk chunk)>& on_chunk,
                       const std::function<bool()>& stop) {
  const std::string call = "POST /exec/" + exec_id + "/start";
  const std::string request = R"({"Detach":false,"Tty":false})";
  size_t sent = 0;
  DockerEngine::Upload body;
  body.content_type = "application/json";
  body.read = [&](char* buf, size_t size) -> Result<size_t> {
    const size_t n = std::min(size, request.size() - sent);
    std::memcpy(buf, request.data() + sent, n);
    sent += n;
    return n;
  };
  return LogStream(engine, "POST", "/exec/" + Segment(exec_id) + "/start", &body, call, on_chunk,
                   stop);
}

Result<DockerExec> DockerInspectExec(DockerEngine* engine, const std::string& exec_id) {
  const std::string call = "GET /exec/" + exec_id + "/json";
  std::string body;
  PETREL_RETURN_IF_ERROR(engine->Call("GET", "/exec/" + Segment(exec_id) + "/json", "", &body));
  PETREL_ASSIGN_OR_RETURN(json j, Answer(call, body));
  if (!j.is_object()) return Status::Internal(call + ": not an object");
  DockerExec e;
  e.running = j.value("Running", false);
  e.exit_code = static_cast<int>(Integer(j, "ExitCode"));
  e.pid = static_cast<int>(Integer(j, "Pid"));
  return e;
}

}  // namespace petrel::internal
