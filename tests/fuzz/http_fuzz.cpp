// Fuzzes the control API's request side: arbitrary bytes through the HTTP/1.1
// connection parser, and every request it yields through the handler, over an
// Orchestrator in Step() mode with the fake runtime (its state on a tmpfs when there is
// one, created once per process). The promises:
//   - nothing crashes, throws, leaks or runs away on any input;
//   - the bytes parse the same whole or fed one byte at a time;
//   - every answer has a known status, and a JSON answer is valid JSON; an error's
//     message is one line.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "lib/api/http.h"
#include "petrel/api.h"
#include "petrel/testing/fake_clock.h"
#include "petrel/testing/fake_runtime.h"

namespace {

void Require(bool ok) {
  if (!ok) std::abort();
}

struct World {
  std::string dir;
  std::shared_ptr<petrel::testing::FakeClock> clock =
      std::make_shared<petrel::testing::FakeClock>();
  std::shared_ptr<petrel::testing::FakeRuntime> runtime =
      std::make_shared<petrel::testing::FakeRuntime>(clock);
  std::unique_ptr<petrel::Orchestrator> orch;
  std::unique_ptr<petrel::ApiHandler> handler;
  uint64_t runs = 0;

  World() {
    // Apply commits synchronously: on a tmpfs that costs no disk flush.
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/petrel-http-fuzz-XXXXXX";
    Require(mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
    petrel::Options o;
    o.state_dir = dir + "/state";
    o.runtime = runtime;
    o.clock = clock;
    o.node_name = "fuzz";
    o.event_log_capacity = 500;
    o.log_sink = [](petrel::LogLevel, std::string_view) {};
    Require(petrel::Orchestrator::Open(o, &orch).ok());
    petrel::ApiOptions api;
    api.node_name = "fuzz";
    api.runtime_name = runtime->Name();
    handler = std::make_unique<petrel::ApiHandler>(orch.get(), api);
  }
  ~World() {
    handler.reset();
    orch.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  // Keeps the state small and lets replicas get containers, so logs have some to read.
  void Tend() {
    if (++runs % 16 != 0) return;
    clock->Advance(1000);
    (void)orch->Step();
    auto list = orch->List();
    if (list.ok() && list->size() > 20) {
      for (const petrel::WorkloadState& w : *list) (void)orch->Delete(w.spec.name);
    }
  }
};

std::vector<petrel::internal::HttpRequest> Parse(std::string_view bytes, size_t piece,
                                                 petrel::internal::HttpConnection* conn) {
  std::vector<petrel::internal::HttpRequest> out;
  for (size_t i = 0; i < bytes.size(); i += piece) {
    conn->Feed(bytes.substr(i, piece));
    petrel::internal::HttpRequest r;
    while (conn->Next(&r)) out.push_back(std::move(r));
  }
  return out;
}

bool SameRequest(const petrel::internal::HttpRequest& a, const petrel::internal::HttpRequest& b) {
  return a.request.method == b.request.method && a.request.path == b.request.path &&
         a.request.query == b.request.query && a.request.headers == b.request.headers &&
         a.request.body == b.request.body && a.keep_alive == b.keep_alive && a.http10 == b.http10;
}

void CheckResponse(const petrel::ApiResponse& r) {
  static const std::set<int> kStatuses = {200, 400, 404, 405, 411, 413, 414, 415, 431, 500};
  Require(kStatuses.count(r.status) == 1);
  if (r.content_type != "application/json") return;
  nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
  Require(!j.is_discarded());
  if (r.status != 200) {
    Require(j.is_object() && j.contains("error") && j["error"].is_string());
    Require(j["error"].get<std::string>().find('\n') == std::string::npos);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();  // NOLINT: one per process, freed at exit below
  static const bool registered = [] {
    std::atexit([] { delete world; });
    return true;
  }();
  (void)registered;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);

  petrel::internal::HttpConnection whole;
  std::vector<petrel::internal::HttpRequest> requests = Parse(bytes, bytes.size() + 1, &whole);
  petrel::internal::HttpConnection split;
  std::vector<petrel::internal::HttpRequest> by_byte = Parse(bytes, 1, &split);
  Require(requests.size() == by_byte.size());
  for (size_t i = 0; i < requests.size(); i++) Require(SameRequest(requests[i], by_byte[i]));
  Require(whole.failed() == split.failed());
  if (whole.failed()) {
    Require(whole.error().status == split.error().status);
    CheckResponse(whole.error());
  }

  for (const petrel::internal::HttpRequest& r : requests) {
    petrel::ApiResponse resp = world->handler->Handle(r.request);
    CheckResponse(resp);
    (void)petrel::internal::SerializeResponse(resp, r.keep_alive, r.http10);
  }
  world->Tend();
  return 0;
}
