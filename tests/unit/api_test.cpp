// The control API: the handler over an Orchestrator in Step() mode with the fake
// runtime and clock, the HTTP/1.1 connection parser fed in pieces, and the server on
// a real Unix socket in a temp dir driven by a loop in this thread.
#include "petrel/api.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lib/api/http.h"
#include "lib/util/strings.h"
#include "petrel/cluster.h"
#include "petrel/manifest.h"
#include "petrel/testing/fake_clock.h"
#include "petrel/testing/fake_runtime.h"
#include "tests/lib/files.h"
#include "tests/unit/test_util.h"

namespace petrel {
namespace {

using internal::HttpConnection;
using internal::HttpRequest;
using nlohmann::json;
using testing::FakeClock;
using testing::FakeRuntime;
using testing::HeldCalls;
using testing::TempDir;

WorkloadSpec Web(const std::string& name = "web", int replicas = 1) {
  WorkloadSpec s;
  s.name = name;
  s.replicas = replicas;
  s.image = "oci-archive:/images/busybox.tar";
  s.command = {"/bin/sh", "-c", "sleep 3600"};
  return s;
}

const char kWebYaml[] =
    "apiVersion: petrel.dev/v1\n"
    "kind: Workload\n"
    "metadata: {name: web}\n"
    "spec:\n"
    "  replicas: 2\n"
    "  image: oci-archive:/images/busybox.tar\n";

// A node in Step() mode with an ApiHandler over it.
struct Api : testing::FakeNode {
  std::unique_ptr<ApiHandler> handler;

  Api() {
    Open();
    ApiOptions api;
    api.node_name = "n1";
    api.runtime_name = runtime->Name();
    handler = std::make_unique<ApiHandler>(orch.get(), api);
  }

  ApiResponse Call(const std::string& method, const std::string& path,
                   std::map<std::string, std::string> query = {}, const std::string& body = "",
                   const std::string& content_type = "") {
    ApiRequest r;
    r.method = method;
    r.path = path;
    r.query = std::move(query);
    r.body = body;
    if (!content_type.empty()) r.headers["content-type"] = content_type;
    return handler->Handle(r);
  }

  ApiResponse PutJson(const std::string& path, const json& body) {
    return Call("PUT", path, {}, body.dump(), "application/json");
  }

  std::string ContainerOf(const std::string& name, int replica) {
    Result<WorkloadState> w = orch->Get(name);
    REQUIRE(w.ok());
    for (const ReplicaStatus& r : w->replicas) {
      if (r.index == replica) return r.container_id;
    }
    return "";
  }
};

json Body(const ApiResponse& r) {
  json j = json::parse(r.body, nullptr, false);
  REQUIRE_MESSAGE(!j.is_discarded(), r.body);
  return j;
}

std::string ErrorOf(const ApiResponse& r) {
  json j = Body(r);
  REQUIRE(j.contains("error"));
  REQUIRE(j.size() == 1);
  return j["error"].get<std::string>();
}

json SpecJson(const WorkloadSpec& s) { return json::parse(SpecToJson(s)); }

std::set<std::string> Keys(const json& j) {
  std::set<std::string> keys;
  for (const auto& item : j.items()) keys.insert(item.key());
  return keys;
}

TEST_SUITE("api") {
  TEST_CASE("healthz and version") {
    Api a;
    ApiResponse r = a.Call("GET", "/healthz");
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    CHECK(Body(r) == json{{"status", "ok"}});
    r = a.Call("GET", "/v1/version");
    CHECK(r.status == 200);
    json v = Body(r);
    CHECK(v["runtime"] == "fake");
    CHECK(v["node"] == "n1");
    CHECK(v["api"] == "v1");
    CHECK(Keys(v) == std::set<std::string>{"api", "node", "runtime", "version"});
  }

  TEST_CASE("unknown paths are 404, wrong methods 405 with Allow") {
    Api a;
    for (const char* path : {"/", "/v1", "/v1/workloads/", "/v1/workloads/web/foo",
                             "/v1/workloads//logs", "/v2/workloads"}) {
      ApiResponse r = a.Call("GET", path);
      CHECK_MESSAGE(r.status == 404, path);
      CHECK(ErrorOf(r) == std::string("no such path: ") + path);
    }
    ApiResponse r = a.Call("POST", "/v1/workloads", {}, "{}", "application/json");
    CHECK(r.status == 405);
    REQUIRE(r.headers.size() == 1);
    CHECK(r.headers[0] == std::make_pair(std::string("Allow"), std::string("GET, PUT")));
    CHECK(a.Call("PATCH", "/v1/workloads/web").status == 405);
    CHECK(a.Call("DELETE", "/healthz").status == 405);
    CHECK(a.Call("PUT", "/v1/events").status == 405);
    CHECK(a.Call("DELETE", "/v1/workloads/web/logs").status == 405);
  }

  TEST_CASE("unknown query parameters are 400") {
    Api a;
    ApiResponse r = a.Call("GET", "/v1/events", {{"folow", "1"}});
    CHECK(r.status == 400);
    CHECK(ErrorOf(r) ==
          "unknown query parameter \"folow\" (known: after, limit, workload, follow)");
    CHECK(a.Call("GET", "/v1/workloads", {{"x", ""}}).status == 400);
  }

  TEST_CASE("PUT /v1/workloads with JSON items, then GET them back") {
    Api a;
    ApiResponse r =
        a.PutJson("/v1/workloads", {{"items", {SpecJson(Web("web", 2)), SpecJson(Web("db"))}}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    json items = Body(r)["items"];
    REQUIRE(items.size() == 2);
    CHECK(items[0] == json{{"name", "web"}, {"outcome", "created"}, {"generation", 1}});
    CHECK(items[1]["outcome"] == "created");

    r = a.PutJson("/v1/workloads", {{"items", {SpecJson(Web("web", 2))}}});
    CHECK(Body(r)["items"][0]["outcome"] == "unchanged");

    const TimeMs t0 = a.clock->Now();
    a.Step();
    r = a.Call("GET", "/v1/workloads");
    REQUIRE(r.status == 200);
    json list = Body(r)["items"];
    REQUIRE(list.size() == 2);
    CHECK(list[0]["name"] == "db");  // sorted by name
    CHECK(list[1]["name"] == "web");

    r = a.Call("GET", "/v1/workloads/web");
    REQUIRE(r.status == 200);
    json w = Body(r);
    CHECK(Keys(w) == std::set<std::string>{"name", "generation", "specHash", "createdAt",
                                           "updatedAt", "deletedAt", "terminating",
                                           "desiredReplicas", "readyReplicas", "spec", "replicas"});
    CHECK(w["deletedAt"] == 0);
    CHECK(w["terminating"] == false);
    CHECK(w["generation"] == 1);
    CHECK(w["specHash"] == TemplateHash(Web("web", 2)));
    CHECK(w["createdAt"] == t0);
    CHECK(w["updatedAt"] == t0);
    CHECK(w["desiredReplicas"] == 2);
    CHECK(w["readyReplicas"] == 2);
    CHECK(w["spec"] == SpecJson(Web("web", 2)));
    REQUIRE(w["replicas"].size() == 2);
    json r0 = w["replicas"][0];
    CHECK(Keys(r0) == std::set<std::string>{"index", "phase", "ready", "containerId", "pid",
                                            "restarts", "lastExitCode", "message", "since",
                                            "nextRetry", "node"});
    CHECK(r0["index"] == 0);
    CHECK(r0["phase"] == "Running");
    CHECK(r0["containerId"] == a.ContainerOf("web", 0));
    CHECK(r0["pid"].get<int>() > 0);
    CHECK(r0["lastExitCode"] == -1);
  }

  TEST_CASE("PUT /v1/workloads with a YAML manifest, its errors pass through verbatim") {
    Api a;
    ApiResponse r = a.Call("PUT", "/v1/workloads", {}, kWebYaml, "application/yaml");
    REQUIRE_MESSAGE(r.status == 200, r.body);
    CHECK(Body(r)["items"][0] == json{{"name", "web"}, {"outcome", "created"}, {"generation", 1}});
    CHECK(a.orch->Get("web")->spec.replicas == 2);

    std::string bad = std::string(kWebYaml) + "  resources: {memory: 64Q}\n";
    r = a.Call("PUT", "/v1/workloads", {}, bad, "application/x-yaml; charset=utf-8");
    CHECK(r.status == 400);
    Result<std::vector<WorkloadSpec>> expected = ParseManifest(bad, "request");
    REQUIRE(!expected.ok());
    CHECK(ErrorOf(r) == expected.status().message());
    CHECK(ErrorOf(r).rfind("request:7:", 0) == 0);
    CHECK(ErrorOf(r).find("spec.resources.memory") != std::string::npos);
  }

  TEST_CASE("bad JSON bodies are 400 with where it failed") {
    Api a;
    ApiResponse r = a.Call("PUT", "/v1/workloads", {}, "{\"items\": [", "application/json");
    CHECK(r.status == 400);
    CHECK(ErrorOf(r).rfind("body: invalid JSON: ", 0) == 0);

    // The nesting bomb (issue 9): it parsed, then dumping the item overflowed the stack.
    const std::string bomb =
        "{\"items\":[" + std::string(100000, '[') + std::string(100000, ']') + "]}";
    r = a.Call("PUT", "/v1/workloads", {}, bomb, "application/json");
    CHECK(r.status == 400);
    CHECK(ErrorOf(r) == "body: JSON nested deeper than 64 levels at line 1, column 73");
    r = a.Call("PUT", "/v1/workloads/web", {}, "[" + bomb + "]", "application/json");
    CHECK(r.status == 400);
    r = a.Call("PUT", "/v1/workloads", {}, "items:\n- " + std::string(100000, '['),
               "application/yaml");
    CHECK(r.status == 400);
    CHECK(ErrorOf(r).find("nested deeper than 64 levels") != std::string::npos);

    r = a.PutJson("/v1/workloads", {{"specs", json::array()}});
    CHECK(r.status == 400);
    CHECK(ErrorOf(r).find("expected {\"items\":[SPEC...]}") != std::string::npos);

    json broken = SpecJson(Web("db"));
    broken.erase("image");
    r = a.PutJson("/v1/workloads", {{"items", {SpecJson(Web()), broken}}});
    CHECK(r.status == 400);
    CHECK(ErrorOf(r) == "items[1]: spec JSON: image: is missing");
    CHECK(a.orch->List()->empty());  // all or nothing
  }

  TEST_CASE("an invalid spec is 400 with Apply's message") {
    Api a;
    WorkloadSpec s = Web();
    s.replicas = -1;
    ApiResponse r = a.PutJson("/v1/workloads", {{"items", {SpecJson(s)}}});
    CHECK(r.status == 400);
    Result<std::vector<ApplyResult>> direct = a.orch->Apply(std::vector<WorkloadSpec>{s});
    REQUIRE(!direct.ok());
    CHECK(ErrorOf(r) == direct.status().message());
  }

  TEST_CASE("a body without a known Content-Type is 415") {
    Api a;
    ApiResponse r = a.Call("PUT", "/v1/workloads", {}, kWebYaml);
    CHECK(r.status == 415);
    CHECK(ErrorOf(r).rfind("no Content-Type", 0) == 0);
    r = a.Call("PUT", "/v1/workloads/web", {}, kWebYaml, "text/plain");
    CHECK(r.status == 415);
    CHECK(ErrorOf(r).rfind("Content-Type text/plain:", 0) == 0);
  }

  TEST_CASE("PUT /v1/workloads/NAME: one spec, its name optional but never different") {
    Api a;
    json spec = SpecJson(Web("web", 3));
    spec.erase("name");
    ApiResponse r = a.PutJson("/v1/workloads/web", spec);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    CHECK(Body(r) == json{{"name", "web"}, {"outcome", "created"}, {"generation", 1}});
    CHECK(a.orch->Get("web")->spec.replicas == 3);

    r = a.PutJson("/v1/workloads/web", SpecJson(Web("web", 1)));
    CHECK(Body(r)["outcome"] == "configured");
    CHECK(Body(r)["generation"] == 2);

    r = a.PutJson("/v1/workloads/other", SpecJson(Web("web")));
    CHECK(r.status == 400);
    CHECK(ErrorOf(r) == "name \"web\" in the body does not match \"other\" in the path");

    r = a.Call("PUT", "/v1/workloads/other", {}, kWebYaml, "application/yaml");
    CHECK(r.status == 400);
    CHECK(ErrorOf(r) == "name \"web\" in the body does not match \"other\" in the path");

    std::string two = std::string(kWebYaml) + "---\n" + kWebYaml;
    r = a.Call("PUT", "/v1/workloads/web", {}, two, "application/yaml");
    CHECK(r.status == 400);

    r = a.Call("PUT", "/v1/workloads/web", {}, kWebYaml, "application/yaml");
    REQUIRE(r.status == 200);
    CHECK(Body(r)["outcome"] == "configured");

    r = a.Call("PUT", "/v1/workloads/web", {}, "[1]", "application/json");
    CHECK(r.status == 400);
    CHECK(ErrorOf(r) == "body: expected one SPEC object");
  }

  TEST_CASE("DELETE: Terminating while its containers stop, then 404 for what is gone") {
    Api a;
    REQUIRE(a.orch->Apply(Web()).ok());
    a.Step();
    ApiResponse r = a.Call("DELETE", "/v1/workloads/web");
    CHECK(r.status == 200);
    CHECK(Body(r) == json{{"name", "web"}, {"deleted", true}});
    r = a.Call("GET", "/v1/workloads/web");
    REQUIRE(r.status == 200);
    CHECK(Body(r)["terminating"] == true);
    CHECK(Body(r)["deletedAt"] != 0);
    CHECK(Body(r)["readyReplicas"] == 0);
    CHECK(a.Call("DELETE", "/v1/workloads/web").status == 200);  // already Terminating
    for (int i = 0; i < 3; i++) a.Step();                        // SIGTERM, remove, forget
    r = a.Call("DELETE", "/v1/workloads/web");
    CHECK(r.status == 404);
    CHECK(ErrorOf(r) == "workload web not found");
    CHECK(a.Call("GET", "/v1/workloads/web").status == 404);
  }

  TEST_CASE("events: after, limit, workload filter, follow") {
    Api a;
    REQUIRE(a.orch->Apply(Web("web", 2)).ok());
    REQUIRE(a.orch->Apply(Web("db")).ok());
    a.Step();
    ApiResponse r = a.Call("GET", "/v1/events");
    REQUIRE(r.status == 200);
    json all = Body(r)["items"];
    REQUIRE(all.size() == 9);  // 2 Applied, 2 Pulling and 2 Pulled (one image), 3 Started
    CHECK(Keys(all[0]) ==
          std::set<std::string>{"seq", "time", "workload", "replica", "type", "message"});
    CHECK(all[0]["type"] == "Applied");
    CHECK(all[0]["replica"] == -1);

    json after = Body(a.Call("GET", "/v1/events", {{"after", "2"}, {"limit", "2"}}))["items"];
    REQUIRE(after.size() == 2);
    CHECK(after[0]["seq"] == 3);
    CHECK(after[1]["seq"] == 4);

    json web = Body(a.Call("GET", "/v1/events", {{"workload", "web"}}))["items"];
    CHECK(web.size() == 5);
    for (const json& e : web) CHECK(e["workload"] == "web");
    json one_db = Body(a.Call("GET", "/v1/events", {{"workload", "db"}, {"limit", "1"}}))["items"];
    REQUIRE(one_db.size() == 1);
    CHECK(one_db[0]["type"] == "Applied");

    CHECK(a.Call("GET", "/v1/events", {{"limit", "0"}}).status == 400);
    CHECK(a.Call("GET", "/v1/events", {{"limit", "10001"}}).status == 400);
    CHECK(a.Call("GET", "/v1/events", {{"after", "-1"}}).status == 400);
    CHECK(ErrorOf(a.Call("GET", "/v1/events", {{"after", "x"}})) ==
          "after: \"x\" is not an integer in 0..9223372036854775807");
    CHECK(ErrorOf(a.Call("GET", "/v1/events", {{"follow", "yes"}})) ==
          "follow: \"yes\" is not 1, 0, true or false");

    r = a.Call("GET", "/v1/events", {{"follow", "1"}, {"after", "3"}, {"workload", "web"}});
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/x-ndjson");
    CHECK(r.stream.kind == ApiStream::Kind::kEvents);
    CHECK(r.stream.after_seq == 3);
    CHECK(r.stream.workload == "web");
  }

  TEST_CASE("logs: tail, 404s, runtime errors, follow") {
    Api a;
    CHECK(ErrorOf(a.Call("GET", "/v1/workloads/web/logs")) == "workload web not found");
    REQUIRE(a.orch->Apply(Web("web", 2)).ok());
    // Applied but not reconciled yet: no container.
    ApiResponse r = a.Call("GET", "/v1/workloads/web/logs");
    CHECK(r.status == 404);
    CHECK(ErrorOf(r) == "workload web replica 0 has no container yet (phase Pending)");
    // A stream waits for the container.
    r = a.Call("GET", "/v1/workloads/web/logs", {{"follow", "1"}});
    CHECK(r.status == 200);
    CHECK(r.stream.kind == ApiStream::Kind::kLogs);
    CHECK(r.stream.container_id.empty());

    a.Step();
    const std::string id = a.ContainerOf("web", 1);
    a.runtime->AppendLog(id, "hello\nworld\n");
    r = a.Call("GET", "/v1/workloads/web/logs", {{"replica", "1"}});
    CHECK(r.status == 200);
    CHECK(r.content_type == "text/plain; charset=utf-8");
    CHECK(r.body == "hello\nworld\n");
    CHECK(r.stream.kind == ApiStream::Kind::kNone);
    CHECK(a.Call("GET", "/v1/workloads/web/logs", {{"replica", "1"}, {"tail", "6"}}).body ==
          "world\n");
    CHECK(a.Call("GET", "/v1/workloads/web/logs").body.empty());  // replica 0 wrote nothing

    CHECK(ErrorOf(a.Call("GET", "/v1/workloads/web/logs", {{"replica", "2"}})) ==
          "workload web has no replica 2 (replicas: 2)");
    CHECK(a.Call("GET", "/v1/workloads/web/logs", {{"replica", "2"}, {"follow", "1"}}).status ==
          404);
    CHECK(a.Call("GET", "/v1/workloads/web/logs", {{"replica", "-1"}}).status == 400);
    CHECK(a.Call("GET", "/v1/workloads/web/logs", {{"tail", "99999999"}}).status == 400);

    r = a.Call("GET", "/v1/workloads/web/logs", {{"replica", "1"}, {"tail", "6"}, {"follow", "1"}});
    CHECK(r.status == 200);
    CHECK(r.body == "world\n");
    CHECK(r.stream.kind == ApiStream::Kind::kLogs);
    CHECK(r.stream.replica == 1);
    CHECK(r.stream.container_id == id);
    CHECK(r.stream.log_offset == 12);

    a.runtime->FailNext(FakeRuntime::Op::kLogs, Status::IOError("disk on fire"));
    r = a.Call("GET", "/v1/workloads/web/logs", {{"replica", "1"}});
    CHECK(r.status == 500);
    CHECK(ErrorOf(r) == "workload web replica 1: logs of container " + id + ": disk on fire");
    a.runtime->FailNext(FakeRuntime::Op::kLogs, Status::NotFound("no container " + id));
    CHECK(a.Call("GET", "/v1/workloads/web/logs", {{"replica", "1"}}).status == 404);
  }

  TEST_CASE("logs of a crashed replica stay readable until its next container") {
    Api a;
    REQUIRE(a.orch->Apply(Web()).ok());
    a.Step();
    const std::string id = a.ContainerOf("web", 0);
    a.runtime->AppendLog(id, "panic: out of cheese\n");
    REQUIRE(a.runtime->Exit(id, 1).ok());
    a.Step();  // CrashLoop, waiting for its back-off
    REQUIRE(a.orch->Get("web")->replicas[0].phase == Phase::kCrashLoop);
    ApiResponse r = a.Call("GET", "/v1/workloads/web/logs");
    CHECK(r.status == 200);
    CHECK(r.body == "panic: out of cheese\n");
  }
}

// --- the connection parser ---

std::vector<HttpRequest> FeedAll(HttpConnection* c, const std::string& bytes, size_t piece) {
  std::vector<HttpRequest> out;
  for (size_t i = 0; i < bytes.size(); i += piece) {
    c->Feed(std::string_view(bytes).substr(i, piece));
    HttpRequest r;
    while (c->Next(&r)) out.push_back(std::move(r));
  }
  return out;
}

int ErrorStatus(const std::string& bytes) {
  HttpConnection c;
  FeedAll(&c, bytes, bytes.size());
  return c.failed() ? c.error().status : 0;
}

const char kPut[] =
    "PUT /v1/workloads/web%2Dx?follow=1&a+b=c%20d&flag HTTP/1.1\r\n"
    "Host: petrel\r\n"
    "Content-Type: application/json\r\n"
    "X-Twice: 1\r\n"
    "x-twice: 2\r\n"
    "Content-Length: 5\r\n"
    "\r\n"
    "hello";

TEST_SUITE("api") {
  TEST_CASE("images: list, pull starts a stream, delete 404 and 409, prune") {
    Api a;
    ApiResponse r = a.Call("GET", "/v1/images");
    CHECK(r.status == 200);
    CHECK(Body(r) == json{{"items", json::array()}});
    REQUIRE(a.runtime->PullImage("reg.test/a:1", PullOptions()).ok());
    r = a.Call("GET", "/v1/images");
    REQUIRE(Body(r)["items"].size() == 1);
    const json image = Body(r)["items"][0];
    CHECK(image["refs"] == json{"reg.test/a:1"});
    CHECK(image["sizeBytes"].get<int64_t>() > 0);
    CHECK(image["inUse"] == false);
    CHECK(image["id"].get<std::string>().rfind("sha256:", 0) == 0);

    r = a.Call("POST", "/v1/images/pull", {}, R"({"image":"reg.test/b:1","policy":"Never"})",
               "application/json");
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/x-ndjson");
    CHECK(r.stream.kind == ApiStream::Kind::kPull);
    CHECK(r.stream.image == "reg.test/b:1");
    CHECK(r.stream.pull_policy == PullPolicy::kNever);
    const std::pair<std::string, std::string> bad[] = {
        {R"({"image":"x","policy":"always"})",
         "policy: \"always\" is not IfNotPresent, Always or Never"},
        {R"({"image":"x","tag":"1"})", "body: unknown key \"tag\" (known: image, policy)"},
        {R"({"image":1})", "image: must be a string"},
        {R"({"policy":"Never"})",
         "body: expected {\"image\": REF, \"policy\": IfNotPresent|Always|Never}"},
        {"[]", "body: expected {\"image\": REF, \"policy\": IfNotPresent|Always|Never}"},
    };
    for (const auto& [body, error] : bad) {
      r = a.Call("POST", "/v1/images/pull", {}, body, "application/json");
      CHECK(r.status == 400);
      CHECK(ErrorOf(r) == error);
    }
    CHECK(a.Call("GET", "/v1/images/pull").status == 405);
    CHECK(a.Call("PUT", "/v1/images").status == 405);

    r = a.Call("DELETE", "/v1/images/reg.test/nope:1");
    CHECK(r.status == 404);
    WorkloadSpec user;
    user.name = "user";
    user.image = "reg.test/a:1";
    user.command = {"/bin/sh", "-c", "sleep 3600"};
    REQUIRE(a.orch->Apply(user).ok());
    a.Step();
    r = a.Call("DELETE", "/v1/images/reg.test/a:1");
    CHECK(r.status == 409);
    CHECK(ErrorOf(r) == "reg.test/a:1: in use by container petrel_n1_user_0");
    REQUIRE(a.runtime->PullImage("reg.test/c:1", PullOptions()).ok());
    r = a.Call("POST", "/v1/images/prune");
    CHECK(r.status == 200);
    CHECK(Body(r)["removed"].size() == 1);
    CHECK(Body(r)["bytesFreed"].get<int64_t>() > 0);
    r = a.Call("DELETE", "/v1/images/reg.test/a:1");
    CHECK(r.status == 409);
  }
}

TEST_SUITE("http") {
  TEST_CASE("a request split into single bytes parses like a whole one") {
    for (size_t piece : {size_t{1}, size_t{7}, sizeof(kPut)}) {
      HttpConnection c;
      std::vector<HttpRequest> got = FeedAll(&c, kPut, piece);
      REQUIRE(got.size() == 1);
      const ApiRequest& r = got[0].request;
      CHECK(r.method == "PUT");
      CHECK(r.path == "/v1/workloads/web-x");
      CHECK(r.query ==
            std::map<std::string, std::string>{{"follow", "1"}, {"a b", "c d"}, {"flag", ""}});
      CHECK(r.headers.at("content-type") == "application/json");
      CHECK(r.headers.at("host") == "petrel");
      CHECK(r.headers.at("x-twice") == "1, 2");
      CHECK(r.body == "hello");
      CHECK(got[0].keep_alive);
      CHECK(!got[0].http10);
      CHECK(!c.failed());
    }
  }

  TEST_CASE("a pipelining client fills a bounded queue and the rest waits unparsed") {
    std::string bytes;
    for (int i = 0; i < 40; i++) bytes += "GET /r" + std::to_string(i) + " HTTP/1.1\r\n\r\n";
    HttpConnection c;
    c.Feed(bytes);
    CHECK(c.full());
    std::vector<std::string> paths;
    HttpRequest r;
    while (c.Next(&r)) paths.push_back(r.request.path);
    REQUIRE(paths.size() == 40);
    CHECK(paths[39] == "/r39");
    CHECK(!c.full());
    CHECK(!c.partial());
    c.Feed("GET /x HTTP/1.1\r\n");
    CHECK(c.partial());
    // Bodies count too: two of 3 MiB fill it.
    HttpConnection big;
    const std::string put =
        "PUT /b HTTP/1.1\r\nContent-Length: 3145728\r\n\r\n" + std::string(3 << 20, 'x');
    big.Feed(put + put + put);
    CHECK(big.full());
    int n = 0;
    while (big.Next(&r)) n++;
    CHECK(n == 3);
  }

  TEST_CASE("pipelined requests come out in order") {
    std::string bytes = std::string("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") + kPut +
                        "DELETE /v1/workloads/a HTTP/1.1\r\nConnection: close\r\n\r\n";
    for (size_t piece : {size_t{1}, size_t{3}, bytes.size()}) {
      HttpConnection c;
      std::vector<HttpRequest> got = FeedAll(&c, bytes, piece);
      REQUIRE(got.size() == 3);
      CHECK(got[0].request.path == "/healthz");
      CHECK(got[1].request.body == "hello");
      CHECK(got[2].request.method == "DELETE");
      CHECK(got[0].keep_alive);
      CHECK(!got[2].keep_alive);
    }
  }

  TEST_CASE("chunked bodies are de-chunked") {
    std::string bytes =
        "PUT /v1/workloads HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n"
        "GET /healthz HTTP/1.1\r\n\r\n";
    HttpConnection c;
    std::vector<HttpRequest> got = FeedAll(&c, bytes, 1);
    REQUIRE(got.size() == 2);
    CHECK(got[0].request.body == "hello world");
    CHECK(got[1].request.path == "/healthz");
  }

  TEST_CASE("HTTP/1.0 closes unless asked to keep alive") {
    HttpConnection c;
    std::vector<HttpRequest> got =
        FeedAll(&c, "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 100);
    REQUIRE(got.size() == 2);
    CHECK(got[0].http10);
    CHECK(!got[0].keep_alive);
    CHECK(got[1].keep_alive);
  }

  TEST_CASE("limits: 414, 431, 413, 411") {
    CHECK(ErrorStatus("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n") == 414);
    std::string many = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 100; i++)
      many += "X-H" + std::to_string(i) + ": " + std::string(700, 'v') + "\r\n";
    CHECK(ErrorStatus(many + "\r\n") == 431);
    std::string tiny = "GET / HTTP/1.1\r\n";  // http_parser's own count of 80 KiB
    for (int i = 0; i < 25000; i++) tiny += "a:\r\n";
    CHECK(ErrorStatus(tiny + "\r\n") == 431);
    CHECK(ErrorStatus("PUT / HTTP/1.1\r\nContent-Length: 4194305\r\n\r\n") == 413);
    std::string chunked = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 5; i++) chunked += "100000\r\n" + std::string(0x100000, 'x') + "\r\n";
    CHECK(ErrorStatus(chunked) == 413);
    CHECK(ErrorStatus("PUT /v1/workloads HTTP/1.1\r\n\r\n") == 411);
    // Exactly at the limit is fine.
    HttpConnection c;
    std::string body(4 << 20, 'b');
    auto got = FeedAll(&c, "PUT / HTTP/1.1\r\nContent-Length: 4194304\r\n\r\n" + body, 65536);
    REQUIRE(got.size() == 1);
    CHECK(got[0].request.body.size() == body.size());
  }

  TEST_CASE("garbage is a 400 JSON error, after the requests before it") {
    HttpConnection c;
    std::vector<HttpRequest> got = FeedAll(
        &c, "GET /healthz HTTP/1.1\r\n\r\n\x01\x02 garbage\r\n\r\nGET / HTTP/1.1\r\n\r\n", 1);
    REQUIRE(got.size() == 1);
    REQUIRE(c.failed());
    CHECK(c.done());
    CHECK(c.error().status == 400);
    json e = json::parse(c.error().body);
    CHECK(e["error"].get<std::string>().rfind("malformed request: ", 0) == 0);
    // Nothing more is parsed.
    c.Feed("GET / HTTP/1.1\r\n\r\n");
    HttpRequest r;
    CHECK(!c.Next(&r));

    CHECK(ErrorStatus("GET /%zz HTTP/1.1\r\n\r\n") == 400);
    CHECK(ErrorStatus("GET /?a=%4 HTTP/1.1\r\n\r\n") == 400);
    CHECK(ErrorStatus("PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") == 400);
    CHECK(ErrorStatus("GET / HTTP/1.1\r\nBad Header\r\n\r\n") == 400);
  }

  TEST_CASE("Expect: 100-continue is answered once, before the body") {
    HttpConnection c;
    c.Feed("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    CHECK(c.TakeContinue());
    CHECK(!c.TakeContinue());
    c.Feed("abc");
    HttpRequest r;
    REQUIRE(c.Next(&r));
    CHECK(r.request.body == "abc");
  }

  TEST_CASE("responses and chunks") {
    ApiResponse r = ApiHandler::Error(405, "no");
    r.headers.emplace_back("Allow", "GET");
    CHECK(internal::SerializeResponse(r, false, false) ==
          "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n"
          "Content-Length: 15\r\nAllow: GET\r\nConnection: close\r\n\r\n{\"error\":\"no\"}\n");
    CHECK(internal::Chunk("") == "");
    CHECK(internal::Chunk(std::string(26, 'z')) == "1a\r\n" + std::string(26, 'z') + "\r\n");
    std::string out;
    CHECK(internal::PercentDecode("a%2Fb+c", false, &out));
    CHECK(out == "a/b+c");
    CHECK(!internal::PercentDecode("%", false, &out));
    CHECK(!internal::PercentDecode("%a", false, &out));
  }
}

// --- the cluster paths ---

// A Cluster double for the handler: its Orchestrator calls go to a local one, its
// cluster calls answer from `status`. `fail`, when set, is what every cluster call
// returns; with `hold`, GetStatus waits until Release().
class FakeCluster : public Cluster {
 public:
  explicit FakeCluster(Orchestrator* local) : local_(local) {
    status.self = "n1";
    status.members = {Node("n1", 1)};
  }
  ~FakeCluster() override { Release(); }

  static NodeInfo Node(const std::string& name, uint64_t id) {
    NodeInfo n;
    n.name = name;
    n.id = id;
    n.role = "voter";
    n.status = "Ready";
    n.address = "10.0.0." + std::to_string(id) + ":7400";
    n.joined_at = 1000 * static_cast<int64_t>(id);
    return n;
  }

  Result<std::vector<ApplyResult>> Apply(const std::vector<WorkloadSpec>& specs) override {
    return local_->Apply(specs);
  }
  Status Delete(const std::string& name) override { return local_->Delete(name); }
  Result<WorkloadState> Get(const std::string& name) override { return local_->Get(name); }
  Result<std::vector<WorkloadState>> List() override { return local_->List(); }
  Result<std::vector<Event>> Events(int64_t after_seq, size_t limit) override {
    return local_->Events(after_seq, limit);
  }
  Result<ReplicaLog> Logs(const std::string& workload, int replica, const LogOptions& options,
                          const std::string& container_id) override {
    return local_->Logs(workload, replica, options, container_id);
  }
  SubscriptionId Subscribe(EventCallback callback) override {
    return local_->Subscribe(std::move(callback));
  }
  void Unsubscribe(SubscriptionId id) override { local_->Unsubscribe(id); }
  Status Start() override { return local_->Start(); }
  Status Attach(uv_loop_s* loop) override { return local_->Attach(loop); }
  void Detach() override { local_->Detach(); }
  Status Step() override { return local_->Step(); }
  TimeMs NextWakeup() override { return local_->NextWakeup(); }

  Result<std::string> Init(const ClusterSettings& settings) override {
    if (!fail.ok()) return fail;
    if (status.member) return Status::FailedPrecondition("n1 is already a member of cluster c1");
    inits.push_back(settings);
    status.member = true;
    status.cluster_id = "c1";
    status.leader = "n1";
    status.term = 1;
    status.settings = settings;
    status.members[0].leader = true;
    return token;
  }
  Result<std::string> Token(bool rotate) override {
    if (!fail.ok()) return fail;
    if (!status.member) return Status::FailedPrecondition("n1 is not in a cluster yet");
    if (rotate) token = "K10" + std::to_string(++rotations) + "::secret";
    return token;
  }
  Result<ClusterStatus> GetStatus() override {
    entered = true;
    std::unique_lock<std::mutex> lock(mu_);
    released_.wait(lock, [this] { return !hold; });
    if (!fail.ok()) return fail;
    return status;
  }
  Result<std::vector<NodeInfo>> Nodes() override {
    if (!fail.ok()) return fail;
    return status.members;
  }
  Status RemoveNode(const std::string& name) override {
    if (!fail.ok()) return fail;
    for (auto it = status.members.begin(); it != status.members.end(); ++it) {
      if (it->name == name) {
        status.members.erase(it);
        return Status::OK();
      }
    }
    return Status::NotFound("node " + name + " is not a member");
  }
  Status SetSettings(const ClusterSettings& settings) override {
    if (!fail.ok()) return fail;
    status.settings = settings;
    return Status::OK();
  }
  Status Drain(const std::string& name, bool drain) override {
    if (!fail.ok()) return fail;
    for (NodeInfo& n : status.members) {
      if (n.name == name) {
        n.status = drain ? "Draining" : "Ready";
        return Status::OK();
      }
    }
    return Status::NotFound("node " + name + " is not a member");
  }

  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    hold = false;
    released_.notify_all();
  }

  ClusterStatus status;
  std::string token = "K10abc::secret";
  int rotations = 0;
  std::vector<ClusterSettings> inits;
  Status fail;
  bool hold = false;  // set before the call; Release() clears it
  std::atomic<bool> entered{false};

 private:
  Orchestrator* local_;
  std::mutex mu_;
  std::condition_variable released_;
};

// An Api whose handler serves a FakeCluster around its node.
struct ClusterApi : Api {
  std::unique_ptr<FakeCluster> cluster;

  ClusterApi() {
    cluster = std::make_unique<FakeCluster>(orch.get());
    ApiOptions api;
    api.node_name = "n1";
    api.runtime_name = runtime->Name();
    api.cluster = cluster.get();
    handler = std::make_unique<ApiHandler>(cluster.get(), api);
  }

  ApiResponse Init(const std::string& body, const std::string& type = "application/json") {
    return Call("POST", "/v1/cluster/init", {}, body, type);
  }
};

const char* const kClusterPaths[][2] = {
    {"GET", "/v1/cluster"},
    {"POST", "/v1/cluster/init"},
    {"GET", "/v1/cluster/token"},
    {"POST", "/v1/cluster/token/rotate"},
    {"GET", "/v1/nodes"},
    {"GET", "/v1/nodes/n1"},
    {"DELETE", "/v1/nodes/n1"},
    {"POST", "/v1/nodes/n1/drain"},
    {"POST", "/v1/nodes/n1/uncordon"},
    {"PUT", "/v1/cluster/settings"},
};

TEST_SUITE("api_cluster") {
  TEST_CASE("images of an Orchestrator that has none are 501 with its message") {
    ClusterApi a;  // FakeCluster keeps Orchestrator's defaults for images
    ApiResponse r = a.Call("GET", "/v1/images");
    CHECK(r.status == 501);
    CHECK(ErrorOf(r) == "cannot list images here");
    CHECK(a.Call("POST", "/v1/images/prune").status == 501);
    CHECK(a.Call("DELETE", "/v1/images/x").status == 501);
  }

  TEST_CASE("without a cluster every cluster path is a 404 that says how to get one") {
    Api a;
    for (const auto& entry : kClusterPaths) {
      const std::string method = entry[0], path = entry[1];
      ApiResponse r = a.Call(method, path, {}, method == "GET" ? "" : "{}", "application/json");
      CHECK_MESSAGE(r.status == 404, path);
      CHECK(ErrorOf(r) ==
            "this node is not cluster-capable: start petreld with --peer-listen ADDR:PORT");
    }
    // Wrong methods and unknown paths are what they are with or without one.
    CHECK(a.Call("DELETE", "/v1/cluster").status == 405);
    CHECK(ErrorOf(a.Call("GET", "/v1/cluster/nope")) == "no such path: /v1/cluster/nope");
  }

  TEST_CASE("every cluster call runs on the server's workers") {
    for (const auto& entry : kClusterPaths) {
      const std::string method = entry[0], path = entry[1];
      ApiRequest r;
      r.method = method;
      r.path = path;
      CHECK_MESSAGE(ApiHandler::MayBlock(r), path);
    }
  }

  TEST_CASE("routes: methods, unknown paths and query parameters") {
    ClusterApi a;
    ApiResponse r = a.Call("GET", "/v1/cluster/init");
    CHECK(r.status == 405);
    REQUIRE(r.headers.size() == 1);
    CHECK(r.headers[0] == std::make_pair(std::string("Allow"), std::string("POST")));
    r = a.Call("PUT", "/v1/nodes/n1");
    CHECK(r.status == 405);
    REQUIRE(r.headers.size() == 1);
    CHECK(r.headers[0].second == "GET, DELETE");
    CHECK(a.Call("POST", "/v1/cluster/token").status == 405);
    CHECK(a.Call("POST", "/v1/nodes").status == 405);
    CHECK(a.Call("GET", "/v1/cluster/token/rotate").status == 405);
    for (const char* path : {"/v1/nodes/", "/v1/nodes/n1/x", "/v1/cluster/", "/v1/clusters"}) {
      r = a.Call("GET", path);
      CHECK_MESSAGE(r.status == 404, path);
      CHECK(ErrorOf(r) == std::string("no such path: ") + path);
    }
    r = a.Call("GET", "/v1/nodes", {{"o", "json"}});
    CHECK(r.status == 400);
    CHECK(ErrorOf(r) == "unknown query parameter \"o\" (this path takes none)");
  }

  TEST_CASE("POST /v1/cluster/init: durations as manifests write them, defaults for the rest") {
    ClusterApi a;
    ApiResponse r = a.Init(R"({"heartbeat":"100ms","nodeLostAfter":"1.5s"})");
    CHECK(r.status == 200);
    CHECK(Body(r) == json{{"token", "K10abc::secret"}});
    REQUIRE(a.cluster->inits.size() == 1);
    CHECK(a.cluster->inits[0].heartbeat_ms == 100);
    CHECK(a.cluster->inits[0].node_lost_after_ms == 1500);
    CHECK(a.cluster->inits[0].fence_after_ms == ClusterSettings().fence_after_ms);
    // Again: the cluster's FailedPrecondition is a 409.
    r = a.Init("{}");
    CHECK(r.status == 409);
    CHECK(ErrorOf(r) == "n1 is already a member of cluster c1");
  }

  TEST_CASE("POST /v1/cluster/init without a body takes the defaults") {
    for (const char* body : {"", " \n"}) {
      ClusterApi a;
      CHECK(a.Init(body, "").status == 200);
      REQUIRE(a.cluster->inits.size() == 1);
      CHECK(a.cluster->inits[0].heartbeat_ms == 200);
      CHECK(a.cluster->inits[0].node_lost_after_ms == 1500);
      CHECK(a.cluster->inits[0].fence_after_ms == 1000);
    }
  }

  TEST_CASE("POST /v1/cluster/init: a bad body is a 400 naming the field, and inits nothing") {
    ClusterApi a;
    const std::pair<const char*, const char*> cases[] = {
        {R"({"heartbeat":"fast"})",
         "heartbeat: \"fast\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {R"({"nodeLostAfter":"-1s"})", "nodeLostAfter: \"-1s\" must not be negative"},
        {R"({"fenceAfter":1000})", "fenceAfter: must be a duration string such as \"500ms\""},
        {R"({"heartbeat":"0"})", "heartbeat: must be longer than 0"},
        {R"({"heartbeats":"1s"})",
         "body: unknown key \"heartbeats\" (known: heartbeat, nodeLostAfter, fenceAfter)"},
        {"[]", "body: expected {\"heartbeat\",\"nodeLostAfter\",\"fenceAfter\"} (all optional)"},
    };
    for (const auto& c : cases) {
      ApiResponse r = a.Init(c.first);
      CHECK_MESSAGE(r.status == 400, c.first);
      CHECK(ErrorOf(r) == c.second);
    }
    ApiResponse r = a.Init("{\"heartbeat\":");
    CHECK(r.status == 400);
    CHECK(ErrorOf(r).rfind("body: invalid JSON: ", 0) == 0);
    r = a.Init("heartbeat=1s", "application/x-www-form-urlencoded");
    CHECK(r.status == 415);
    CHECK(ErrorOf(r) == "Content-Type application/x-www-form-urlencoded: send application/json");
    CHECK(a.cluster->inits.empty());
  }

  TEST_CASE("PUT /v1/cluster/settings: the keys given change and the others stay") {
    ClusterApi a;
    REQUIRE(a.Init(R"({"nodeLostAfter":"3s"})").status == 200);
    auto put = [&a](const std::string& body, const std::string& type = "application/json") {
      return a.Call("PUT", "/v1/cluster/settings", {}, body, type);
    };
    ApiResponse r = put(R"({"fenceAfter":"2s"})");
    CHECK(r.status == 200);
    // The answer is GET /v1/cluster's "settings"; nodeLostAfter stays the cluster's 3s,
    // not init's default.
    CHECK(Body(r) == json{{"heartbeat", "200ms"}, {"nodeLostAfter", "3s"}, {"fenceAfter", "2s"}});
    CHECK(Body(a.Call("GET", "/v1/cluster"))["settings"] == Body(r));
    r = put(R"({"heartbeat":"100ms","nodeLostAfter":"1.5s","fenceAfter":"1s"})");
    CHECK(Body(r) ==
          json{{"heartbeat", "100ms"}, {"nodeLostAfter", "1s500ms"}, {"fenceAfter", "1s"}});
    CHECK(a.cluster->status.settings.heartbeat_ms == 100);
    CHECK(a.cluster->status.settings.node_lost_after_ms == 1500);
    CHECK(a.cluster->status.settings.fence_after_ms == 1000);
    // An empty body, like {}, changes nothing and answers the settings.
    r = put("", "");
    CHECK(r.status == 200);
    CHECK(Body(r)["heartbeat"] == "100ms");
    // A bad body is init's 400 and changes nothing.
    r = put(R"({"heartbeat":"fast"})");
    CHECK(r.status == 400);
    CHECK(ErrorOf(r) == "heartbeat: \"fast\" is not a duration (e.g. 500ms, 10s, 1m30s)");
    r = put(R"({"fenceAfters":"1s"})");
    CHECK(r.status == 400);
    CHECK(ErrorOf(r) ==
          "body: unknown key \"fenceAfters\" (known: heartbeat, nodeLostAfter, fenceAfter)");
    r = put("heartbeat=1s", "application/x-www-form-urlencoded");
    CHECK(r.status == 415);
    CHECK(a.cluster->status.settings.heartbeat_ms == 100);
    // What the cluster refuses is its error.
    a.cluster->fail = Status::InvalidArgument("cluster set: too tight");
    r = put(R"({"fenceAfter":"1.4s"})");
    CHECK(r.status == 400);
    CHECK(ErrorOf(r) == "cluster set: too tight");
    a.cluster->fail = Status::OK();
    r = a.Call("GET", "/v1/cluster/settings");
    CHECK(r.status == 405);
    REQUIRE(r.headers.size() == 1);
    CHECK(r.headers[0].second == "PUT");
  }

  TEST_CASE("the token, and rotating it") {
    ClusterApi a;
    ApiResponse r = a.Call("GET", "/v1/cluster/token");
    CHECK(r.status == 409);
    CHECK(ErrorOf(r) == "n1 is not in a cluster yet");
    REQUIRE(a.Init("{}").status == 200);
    CHECK(Body(a.Call("GET", "/v1/cluster/token")) == json{{"token", "K10abc::secret"}});
    r = a.Call("POST", "/v1/cluster/token/rotate", {}, "{}", "application/json");
    CHECK(r.status == 200);
    CHECK(Body(r) == json{{"token", "K101::secret"}});
    CHECK(Body(a.Call("GET", "/v1/cluster/token")) == json{{"token", "K101::secret"}});
  }

  TEST_CASE("GET /v1/cluster: the status, its settings and members") {
    ClusterApi a;
    json j = Body(a.Call("GET", "/v1/cluster"));
    CHECK(j["member"] == false);
    CHECK(j["self"] == "n1");
    REQUIRE(a.Init(R"({"nodeLostAfter":"1.5s"})").status == 200);
    NodeInfo n2 = FakeCluster::Node("n2", 2);
    n2.role = "witness";
    n2.status = "Lost";
    n2.labels = {{"zone", "north"}, {"disk", "ssd"}};
    n2.last_heard = 5000;
    a.cluster->status.members.push_back(n2);
    a.cluster->status.term = 7;
    a.cluster->status.applied_index = 42;
    ApiResponse r = a.Call("GET", "/v1/cluster");
    CHECK(r.status == 200);
    j = Body(r);
    CHECK(Keys(j) == std::set<std::string>{"appliedIndex", "clusterId", "leader", "member",
                                           "members", "self", "settings", "term"});
    CHECK(j["member"] == true);
    CHECK(j["clusterId"] == "c1");
    CHECK(j["leader"] == "n1");
    CHECK(j["term"] == 7);
    CHECK(j["appliedIndex"] == 42);
    CHECK(j["settings"] ==
          json{{"heartbeat", "200ms"}, {"nodeLostAfter", "1s500ms"}, {"fenceAfter", "1s"}});
    REQUIRE(j["members"].size() == 2);
    CHECK(j["members"][1] == json{{"name", "n2"},
                                  {"id", 2},
                                  {"role", "witness"},
                                  {"status", "Lost"},
                                  {"leader", false},
                                  {"address", "10.0.0.2:7400"},
                                  {"labels", {{"disk", "ssd"}, {"zone", "north"}}},
                                  {"capacity", {{"memory", 0}, {"cpuMillis", 0}}},
                                  {"joinedAt", 2000},
                                  {"lastHeard", 5000}});
    // The settings read back as the durations they are.
    for (const auto& item : j["settings"].items()) {
      CHECK_MESSAGE(ParseDurationMs(item.value().get<std::string>()).ok(), item.key());
    }
  }

  TEST_CASE("POST /v1/nodes/NAME/drain and /uncordon") {
    ClusterApi a;
    a.cluster->status.members.push_back(FakeCluster::Node("n2", 2));
    ApiResponse r = a.Call("POST", "/v1/nodes/n2/drain");
    CHECK(r.status == 200);
    CHECK(Body(r) == json{{"name", "n2"}, {"draining", true}});
    CHECK(Body(a.Call("GET", "/v1/nodes/n2"))["status"] == "Draining");
    r = a.Call("POST", "/v1/nodes/n2/uncordon");
    CHECK(Body(r) == json{{"name", "n2"}, {"draining", false}});
    CHECK(Body(a.Call("GET", "/v1/nodes/n2"))["status"] == "Ready");
    CHECK(a.Call("POST", "/v1/nodes/n9/drain").status == 404);
    CHECK(a.Call("GET", "/v1/nodes/n2/drain").status == 405);
    CHECK(a.Call("POST", "/v1/nodes/n2/cordon").status == 404);
    CHECK(a.Call("POST", "/v1/nodes//drain").status == 404);
  }

  TEST_CASE("GET /v1/nodes, GET and DELETE /v1/nodes/NAME") {
    ClusterApi a;
    a.cluster->status.members.push_back(FakeCluster::Node("n2", 2));
    json j = Body(a.Call("GET", "/v1/nodes"));
    REQUIRE(j["items"].size() == 2);
    CHECK(j["items"][0]["name"] == "n1");
    CHECK(Keys(j["items"][0]) == std::set<std::string>{"address", "capacity", "id", "joinedAt",
                                                       "labels", "lastHeard", "leader", "name",
                                                       "role", "status"});
    CHECK(j["items"][0]["capacity"] == json{{"memory", 0}, {"cpuMillis", 0}});
    CHECK(j["items"][0]["labels"] == json::object());
    ApiResponse r = a.Call("GET", "/v1/nodes/n2");
    CHECK(r.status == 200);
    CHECK(Body(r) == j["items"][1]);
    r = a.Call("GET", "/v1/nodes/n9");
    CHECK(r.status == 404);
    CHECK(ErrorOf(r) == "node n9 not found");

    r = a.Call("DELETE", "/v1/nodes/n2");
    CHECK(r.status == 200);
    CHECK(Body(r) == json{{"name", "n2"}, {"removed", true}});
    CHECK(a.Call("GET", "/v1/nodes/n2").status == 404);
    r = a.Call("DELETE", "/v1/nodes/n2");
    CHECK(r.status == 404);
    CHECK(ErrorOf(r) == "node n2 is not a member");
  }

  TEST_CASE("a Status code is the HTTP status API.md says, with its message") {
    ClusterApi a;
    const std::pair<Status, int> cases[] = {
        {Status::InvalidArgument("x"), 400},  {Status::PermissionDenied("x"), 403},
        {Status::NotFound("x"), 404},         {Status::FailedPrecondition("x"), 409},
        {Status::AlreadyExists("x"), 409},    {Status::Unavailable("no leader"), 503},
        {Status::DeadlineExceeded("x"), 504}, {Status::IOError("x"), 500},
        {Status::NotSupported("x"), 501},     {Status::Internal("x"), 500},
    };
    for (const auto& c : cases) {
      const Status& status = c.first;
      const int code = c.second;
      a.cluster->fail = status;
      for (const auto& entry : kClusterPaths) {
        const std::string method = entry[0], path = entry[1];
        ApiResponse r = a.Call(method, path, {}, "", "");
        CHECK_MESSAGE(r.status == code, method << " " << path << ": " << status.ToString());
        CHECK(ErrorOf(r) == status.message());
      }
    }
  }

  TEST_CASE("workloads go through the cluster, and each replica names its node") {
    ClusterApi a;
    REQUIRE(a.PutJson("/v1/workloads/web", SpecJson(Web())).status == 200);
    a.Step();
    json w = Body(a.Call("GET", "/v1/workloads/web"));
    REQUIRE(w["replicas"].size() == 1);
    CHECK(w["replicas"][0]["node"] == "n1");
  }
}

// --- the server on a real socket ---

// A client socket, non-blocking, read as the loop runs.
struct Client {
  int fd = -1;
  std::string received;
  bool eof = false;

  explicit Client(const std::string& path) {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
  }
  ~Client() {
    if (fd >= 0) close(fd);
  }
  void Send(const std::string& bytes) {
    REQUIRE(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  }
  void Poll() {
    char buf[65536];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n > 0) {
        received.append(buf, static_cast<size_t>(n));
      } else {
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof = true;
        return;
      }
    }
  }
  bool Has(const std::string& s) const { return received.find(s) != std::string::npos; }
};

struct Server {
  Api api;
  uv_loop_t loop;
  ApiOptions options;
  std::unique_ptr<ApiServer> server;
  std::string socket_path;
  std::vector<Client*> clients;

  explicit Server(std::function<void(ApiOptions*)> tune = nullptr) {
    uv_loop_init(&loop);
    options.node_name = "n1";
    if (tune) tune(&options);
    socket_path = api.dir.Sub("run/petrel/api.sock");
    options.runtime_name = "fake";
    server = std::make_unique<ApiServer>(api.orch.get(), options);
    Status s = server->Listen(&loop, socket_path);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
  }
  ~Server() {
    server->Close();
    server.reset();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }

  // Runs the loop (and reads every client) until `done` or 5 s of real time.
  void RunUntil(const std::function<bool()>& done, const char* what) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) FAIL("timed out waiting for " << what);
      uv_run(&loop, UV_RUN_NOWAIT);
      for (Client* c : clients) c->Poll();
    }
  }

  std::unique_ptr<Client> Connect() {
    auto c = std::make_unique<Client>(socket_path);
    clients.push_back(c.get());
    return c;
  }
  void Forget(Client* c) { clients.erase(std::find(clients.begin(), clients.end(), c)); }
};

mode_t ModeOf(const std::string& path) {
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// Binds a socket at `path` and closes it without unlinking: what a killed server leaves.
void LeaveStaleSocket(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  close(fd);
}

TEST_SUITE("api_server") {
  TEST_CASE(
      "a request that waits on a worker holds up no other connection, and answers keep their "
      "order") {
    Server s([](ApiOptions* o) { o->loop_probe_ms = 1; });
    REQUIRE(s.api.orch->Apply(Web()).ok());
    s.api.Step();
    const std::string container = s.api.ContainerOf("web", 0);
    s.api.runtime->AppendLog(container, "hello\n");
    HeldCalls held(s.api.runtime.get(), FakeRuntime::Op::kLogs);  // released before s goes
    // Connection a: a logs request (held at the runtime), then a pipelined /healthz.
    auto a = s.Connect();
    a->Send(
        "GET /v1/workloads/web/logs HTTP/1.1\r\n\r\n"
        "GET /healthz HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return s.api.runtime->AwaitHeld(FakeRuntime::Op::kLogs, 1, 0); },
               "the logs request at the runtime");
    // Connection b is served meanwhile: the loop is free.
    auto b = s.Connect();
    b->Send("GET /healthz HTTP/1.1\r\n\r\nGET /v1/workloads/web HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return b->Has("\"readyReplicas\":1"); }, "b's answers");
    CHECK(b->Has("{\"status\":\"ok\"}"));
    CHECK(a->received.empty());  // its /healthz waits behind its logs
    held.Release();
    s.RunUntil([&] { return a->Has("{\"status\":\"ok\"}"); }, "a's answers");
    CHECK(a->received.find("hello\n") < a->received.find("{\"status\":\"ok\"}"));
    // The loop probe answers on the loop itself.
    auto c = s.Connect();
    c->Send("GET /v1/debug/loop HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c->Has("\"maxLateUs\""); }, "loop stats");
    CHECK(c->Has("\"probeMs\":1"));
  }

  TEST_CASE("the loop probe tells a loop held up by its own thread, blocked or busy") {
    Server s([](ApiOptions* o) { o->loop_probe_ms = 1; });
    // The stats after holding the loop up for 40 ms with `hold`, on the thread that runs
    // it, between two turns of it: the probe's 1 ms timer is then about 40 ms late.
    auto held = [&](const std::function<void()>& hold) {
      auto reset = s.Connect();
      reset->Send("GET /v1/debug/loop?reset=true HTTP/1.1\r\n\r\n");
      s.RunUntil([&] { return reset->Has("\"maxLateUs\""); }, "the reset");
      s.Forget(reset.get());
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
      s.RunUntil([&] { return std::chrono::steady_clock::now() > until; }, "a few ticks");
      hold();
      auto c = s.Connect();
      c->Send("GET /v1/debug/loop HTTP/1.1\r\nConnection: close\r\n\r\n");
      s.RunUntil([&] { return c->Has("\"maxOwnLateUs\""); }, "loop stats");
      const size_t body = c->received.find('{');
      json j =
          json::parse(c->received.substr(body == std::string::npos ? 0 : body), nullptr, false);
      s.Forget(c.get());
      REQUIRE(j.is_object());
      return j;
    };
    // Blocked (sleeping): late, its own doing, with next to no CPU.
    json blocked = held([] { std::this_thread::sleep_for(std::chrono::milliseconds(40)); });
    INFO(blocked.dump());
    CHECK(blocked["maxLateUs"].get<int64_t>() >= 35000);
    CHECK(blocked["maxOwnLateUs"].get<int64_t>() + blocked["maxLateRunqueueUs"].get<int64_t>() >=
          35000);
    CHECK(blocked["maxLateCpuUs"].get<int64_t>() < 10000);
    // Busy: late too, and the kernel counts the CPU it used. 40 ms of this thread's own
    // CPU, not of the wall clock: on a loaded machine the thread may wait for a core.
    json busy = held([] {
      auto cpu_ns = [] {
        timespec t{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec;
      };
      const int64_t until = cpu_ns() + 40000000;
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      volatile uint64_t n = 0;
      while (cpu_ns() < until && std::chrono::steady_clock::now() < give_up) n = n + 1;
    });
    INFO(busy.dump());
    CHECK(busy["maxLateUs"].get<int64_t>() >= 35000);
    CHECK(busy["maxLateCpuUs"].get<int64_t>() >= 15000);
  }

  TEST_CASE("pulls that take long hold no request worker: other requests are answered") {
    Server s([](ApiOptions* o) { o->worker_threads = 1; });
    REQUIRE(s.api.orch->Apply(Web()).ok());
    s.api.Step();
    HeldCalls held(s.api.runtime.get(), FakeRuntime::Op::kPull);  // released before s goes
    std::vector<std::unique_ptr<Client>> pulls;
    for (int i = 0; i < 3; i++) {  // more pulls than pull threads, and than workers
      pulls.push_back(s.Connect());
      const std::string body = "{\"image\":\"reg.test/p" + std::to_string(i) + ":1\"}";
      pulls.back()->Send(
          "POST /v1/images/pull HTTP/1.1\r\nContent-Type: application/json\r\n"
          "Content-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + body);
    }
    s.RunUntil([&] { return s.api.runtime->AwaitHeld(FakeRuntime::Op::kPull, 2, 0); },
               "two pulls at the runtime");
    // A request that needs the (one) request worker is answered meanwhile.
    auto c = s.Connect();
    c->Send("GET /v1/workloads/web HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c->Has("\"readyReplicas\":1"); }, "the workload, while pulls wait");
    held.Release();
    for (auto& p : pulls) {
      s.RunUntil([&] { return p->Has("\"pulled\":true"); }, "each pull's result");
    }
  }

  TEST_CASE("a client that half-closes after a request that waits still gets the answer") {
    Server s;
    auto c = s.Connect();
    c->Send(
        "PUT /v1/workloads/web HTTP/1.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\n\r\n{}");
    REQUIRE(shutdown(c->fd, SHUT_WR) == 0);
    s.RunUntil([&] { return c->eof; }, "the answer, then the close");
    CHECK(c->Has("HTTP/1.1 400 Bad Request\r\n"));
    CHECK_MESSAGE(c->Has("body: spec JSON: "), c->received);
  }

  TEST_CASE("a cluster call waits on a worker while the loop serves others") {
    std::unique_ptr<FakeCluster> cluster;
    Server s([&](ApiOptions* o) {
      o->cluster = (cluster = std::make_unique<FakeCluster>(nullptr)).get();
    });
    struct Releaser {  // a failing check must not leave a worker waiting for ever
      FakeCluster* cluster;
      ~Releaser() { cluster->Release(); }
    } releaser{cluster.get()};
    cluster->hold = true;
    auto a = s.Connect();
    a->Send("GET /v1/cluster HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return cluster->entered.load(); }, "GetStatus on a worker");
    auto b = s.Connect();
    b->Send("GET /healthz HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return b->Has("{\"status\":\"ok\"}"); }, "healthz meanwhile");
    CHECK(a->received.empty());
    cluster->Release();
    s.RunUntil([&] { return a->Has("\"self\":\"n1\""); }, "the cluster's status");
    CHECK(a->Has("HTTP/1.1 200 OK\r\n"));
  }

  TEST_CASE("GET /v1/debug/loop is a 404 while the probe is off") {
    Server s;
    auto c = s.Connect();
    c->Send("GET /v1/debug/loop HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c->Has("\r\n\r\n{"); }, "the answer");
    CHECK(c->Has("HTTP/1.1 404"));
    CHECK(c->Has("the loop probe is off"));
  }

  TEST_CASE("socket 0660 in a new 0750 directory, keep-alive, removed on close") {
    Server s;
    CHECK(ModeOf(s.api.dir.Sub("run")) == 0750);
    CHECK(ModeOf(s.api.dir.Sub("run/petrel")) == 0750);
    CHECK(ModeOf(s.socket_path) == 0660);
    auto c = s.Connect();
    c->Send("GET /healthz HTTP/1.1\r\n\r\nGET /v1/version HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c->Has("\"api\":\"v1\""); }, "two answers");
    CHECK(c->received.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(c->Has("{\"status\":\"ok\"}\n"));
    CHECK(s.server->connections() == 1);  // kept alive
    s.server->StopAccepting();
    s.RunUntil([&] { return access(s.socket_path.c_str(), F_OK) != 0; }, "socket removed");
  }

  TEST_CASE("a stale socket is replaced, a live one or a file is not") {
    TempDir dir;
    Api a;
    uv_loop_t loop;
    uv_loop_init(&loop);
    std::string path = dir.Sub("p.sock");
    LeaveStaleSocket(path);
    {
      ApiServer first(a.orch.get(), {});
      Status s = first.Listen(&loop, path);
      REQUIRE_MESSAGE(s.ok(), s.ToString());
      ApiServer second(a.orch.get(), {});
      s = second.Listen(&loop, path);
      CHECK(s.message() ==
            "socket " + path + " is in use: another server (petreld?) answers on it");
      first.Close();
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(access(path.c_str(), F_OK) != 0);
    std::ofstream(path) << "not a socket";
    {
      ApiServer third(a.orch.get(), {});
      CHECK(third.Listen(&loop, path).message() ==
            path + " exists and is not a socket; not replacing it");
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }

  TEST_CASE("connections beyond the limit take an idle one's slot or get 503, malformed 400") {
    Server s([](ApiOptions* o) { o->max_connections = 2; });
    REQUIRE(s.api.orch->Apply(Web()).ok());
    s.api.Step();
    auto c1 = s.Connect();
    auto c2 = s.Connect();
    s.RunUntil([&] { return s.server->connections() == 2; }, "two connections");
    // Both idle: the oldest makes room (a slow or stuck client cannot lock others out).
    auto c0 = s.Connect();
    s.RunUntil([&] { return c1->eof; }, "the oldest idle connection closed");
    CHECK(c1->received.empty());
    c0->Send("GET /healthz HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c0->Has("{\"status\":\"ok\"}"); }, "the newcomer served");
    {
      // Both being answered (held at the runtime): no slot to take.
      HeldCalls held(s.api.runtime.get(), FakeRuntime::Op::kLogs);
      c0->Send("GET /v1/workloads/web/logs HTTP/1.1\r\n\r\n");
      c2->Send("GET /v1/workloads/web/logs HTTP/1.1\r\n\r\n");
      s.RunUntil([&] { return s.api.runtime->AwaitHeld(FakeRuntime::Op::kLogs, 2, 0); },
                 "two logs requests at the runtime");
      auto c3 = s.Connect();
      s.RunUntil([&] { return c3->eof; }, "503 and close");
      CHECK(c3->received.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0);
      CHECK(c3->Has("{\"error\":\"too many connections (at most 2)\"}"));
      s.Forget(c3.get());
    }
    s.RunUntil([&] { return c2->Has("HTTP/1.1 200"); }, "the logs answer");
    s.Forget(c1.get());
    c1 = s.Connect();
    c1->Send("GET /healthz HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c1->Has("{\"status\":\"ok\"}"); }, "a slot again");
    c1->received.clear();

    c1->Send("BLAH\x01\r\n\r\n");
    s.RunUntil([&] { return c1->eof; }, "400 and close");
    CHECK(c1->received.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
    CHECK(c1->Has("Connection: close\r\n"));
    CHECK(c1->Has("{\"error\":\"malformed request: "));
  }

  TEST_CASE("a request that trickles in is cut at its deadline, not kept alive by each byte") {
    Server s([](ApiOptions* o) { o->request_timeout_ms = 150; });
    auto c = s.Connect();
    const std::string request = "GET /healthz HTTP/1.1\r\nX-Slow: " + std::string(100, 'a');
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; !c->eof && i < request.size(); i++) {  // a byte every 10 ms
      c->Send(request.substr(i, 1));
      const auto next = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
      while (std::chrono::steady_clock::now() < next) {
        uv_run(&s.loop, UV_RUN_NOWAIT);
        c->Poll();
      }
    }
    s.RunUntil([&] { return c->eof; }, "408 and close");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(600));
    CHECK(c->received.rfind("HTTP/1.1 408 Request Timeout\r\n", 0) == 0);
    CHECK(c->Has("request not complete within 150 ms (headers and body)"));
    // A whole request, then a pause longer than the deadline: only idle, and served.
    auto d = s.Connect();
    d->Send("GET /healthz HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return d->Has("{\"status\":\"ok\"}"); }, "the first answer");
    const auto later = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (std::chrono::steady_clock::now() < later) uv_run(&s.loop, UV_RUN_NOWAIT);
    d->Send("GET /v1/version HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return d->Has("\"api\":\"v1\""); }, "the second answer");
  }

  TEST_CASE("follow streams have slots of their own") {
    Server s([](ApiOptions* o) {
      o->max_connections = 1;
      o->max_streams = 2;
    });
    std::vector<std::unique_ptr<Client>> streams;
    for (int i = 0; i < 2; i++) {
      streams.push_back(s.Connect());
      streams.back()->Send("GET /v1/events?follow=1 HTTP/1.1\r\n\r\n");
      s.RunUntil([&] { return streams.back()->Has("\r\n\r\n"); }, "a stream's head");
    }
    auto c = s.Connect();  // the one request slot is free
    c->Send("GET /healthz HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c->Has("{\"status\":\"ok\"}"); }, "healthz beside the streams");
    c->Send("GET /v1/events?follow=1 HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c->Has("too many follow streams"); }, "the third stream refused");
    CHECK(c->Has("HTTP/1.1 503 Service Unavailable\r\n"));
    CHECK(c->Has("{\"error\":\"too many follow streams (at most 2)\"}"));
    for (auto& st : streams) s.Forget(st.get());
    streams.clear();
    s.RunUntil([&] { return s.server->connections() == 1; }, "the streams gone");
    c->Send("GET /v1/events?follow=1 HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c->Has("application/x-ndjson"); }, "a stream again");
  }

  TEST_CASE("a pipelining client that never reads is not read from either") {
    Server s([](ApiOptions* o) { o->max_stream_backlog_bytes = 64 << 10; });
    REQUIRE(s.api.orch->Apply(Web()).ok());
    s.api.Step();
    auto c = s.Connect();
    s.Forget(c.get());  // it never reads
    std::string burst;
    for (int i = 0; i < 1000; i++) burst += "GET /v1/workloads HTTP/1.1\r\n\r\n";
    // Writes as much as the server takes: it stops taking once its answers pile up.
    size_t sent = 0;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() < end && sent < (64u << 20)) {
      ssize_t n = write(c->fd, burst.data(), burst.size());
      if (n > 0) sent += static_cast<size_t>(n);
      uv_run(&s.loop, UV_RUN_NOWAIT);
    }
    // Socket buffers take a few hundred KB; without the bound the server read all 64 MB.
    CHECK(sent < (8u << 20));
    auto d = s.Connect();
    d->Send("GET /healthz HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return d->Has("{\"status\":\"ok\"}"); }, "healthz meanwhile");
  }

  TEST_CASE("an idle connection is closed") {
    Server s([](ApiOptions* o) { o->idle_timeout_ms = 20; });
    auto c = s.Connect();
    s.RunUntil([&] { return c->eof; }, "idle close");
    CHECK(c->received.empty());
    CHECK(s.server->connections() == 0);
  }

  TEST_CASE("events follow: the backlog, then live events, filtered, hang-up unsubscribes") {
    Server s;
    REQUIRE(s.api.orch->Apply(Web("web")).ok());
    REQUIRE(s.api.orch->Apply(Web("db")).ok());
    auto c = s.Connect();
    c->Send("GET /v1/events?follow=1&workload=web HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c->Has("\"type\":\"Applied\""); }, "the backlog");
    CHECK(c->Has("Transfer-Encoding: chunked\r\n"));
    CHECK(c->Has("application/x-ndjson"));
    s.api.Step();
    s.RunUntil([&] { return c->Has("\"type\":\"Started\""); }, "a live event");
    CHECK(!c->Has("\"workload\":\"db\""));
    // The stream needs no idle timeout and survives pipelined junk.
    c->Send("GET /healthz HTTP/1.1\r\n\r\n");
    REQUIRE(s.api.orch->Delete("web").ok());
    s.api.Step();
    s.RunUntil([&] { return c->Has("\"type\":\"Terminating\""); }, "Terminating");
    CHECK(!c->Has("{\"status\":\"ok\"}"));
    s.Forget(c.get());
    c.reset();
    s.RunUntil([&] { return s.server->connections() == 0; }, "hang-up");
    REQUIRE(s.api.orch->Apply(Web("web")).ok());
    s.api.Step();  // delivers to no one
  }

  TEST_CASE("a slow event reader is dropped") {
    Server s([](ApiOptions* o) { o->max_stream_backlog_bytes = 4096; });
    auto c = s.Connect();
    c->Send("GET /v1/events?follow=1 HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c->Has("\r\n\r\n"); }, "stream head");
    s.Forget(c.get());  // and never read again
    std::vector<WorkloadSpec> specs;
    for (int i = 0; i < 100; i++) specs.push_back(Web("w" + std::to_string(i), 20));
    REQUIRE(s.api.orch->Apply(specs).ok());
    s.api.Step();  // 2100 events, some 300 KB: more than the socket buffer holds
    s.RunUntil([&] { return s.server->connections() == 0; }, "the slow reader dropped");
  }

  TEST_CASE("logs follow: new output, a restart, the end with the workload") {
    Server s([](ApiOptions* o) { o->log_poll_ms = 1; });
    WorkloadSpec w = Web();
    w.backoff.initial_ms = 1000;
    REQUIRE(s.api.orch->Apply(w).ok());
    s.api.Step();
    const std::string first = s.api.ContainerOf("web", 0);
    s.api.runtime->AppendLog(first, "one\n");
    auto c = s.Connect();
    c->Send("GET /v1/workloads/web/logs?follow=1 HTTP/1.1\r\n\r\n");
    s.RunUntil([&] { return c->Has("one\n"); }, "the tail");
    s.api.runtime->AppendLog(first, "two\n");
    s.RunUntil([&] { return c->Has("two\n"); }, "new output");

    REQUIRE(s.api.runtime->Exit(first, 1).ok());
    for (int i = 0; i < 5 && s.api.ContainerOf("web", 0) == first; i++) {
      s.api.clock->Advance(1000);
      s.api.Step();
    }
    std::string second;
    for (int i = 0; i < 5 && (second = s.api.ContainerOf("web", 0)).empty(); i++) {
      s.api.clock->Advance(1000);
      s.api.Step();
    }
    REQUIRE(!second.empty());
    REQUIRE(second != first);
    s.api.runtime->AppendLog(second, "three\n");
    s.RunUntil([&] { return c->Has("three\n"); }, "the new container's output");
    CHECK(c->Has("--- petrel: replica 0 now runs container " + second + " ---\n"));

    // A deleted workload's output goes on until its last container is gone.
    REQUIRE(s.api.orch->Delete("web").ok());
    s.api.runtime->AppendLog(second, "last words\n");
    s.RunUntil([&] { return c->Has("last words\n"); }, "output while Terminating");
    CHECK(!c->eof);
    for (int i = 0; i < 3; i++) s.api.Step();  // SIGTERM, remove, forget
    s.RunUntil([&] { return c->eof; }, "the end of the stream");
    CHECK(c->received.size() >= 5);
    CHECK(c->received.substr(c->received.size() - 5) == "0\r\n\r\n");
  }
}

}  // namespace
}  // namespace petrel
