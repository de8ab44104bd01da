// Health probes: the spec (manifest, JSON, validation, hash), the Prober's bookkeeping
// on values, and the tcp/http checks against real sockets on this host's loopback.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "lib/probe/net_check.h"
#include "lib/probe/prober.h"
#include "petrel/manifest.h"
#include "petrel/orchestrator.h"
#include "petrel/spec.h"
#include "petrel/testing/fake_clock.h"
#include "petrel/testing/fake_runtime.h"
#include "tests/lib/files.h"
#include "tests/lib/host_net_port.h"
#include "tests/lib/orchestrator.h"
#include "tests/lib/wait.h"

namespace petrel {
namespace {

using internal::NetChecker;
using internal::ProbeCheck;
using internal::Prober;
using internal::ProbeResult;
using internal::ProbeTarget;
using internal::ProbeType;

WorkloadSpec Base() {
  WorkloadSpec s;
  s.name = "web";
  s.image = "oci-archive:/images/busybox.tar";
  return s;
}

ProbeSpec Exec(std::vector<std::string> command) {
  ProbeSpec p;
  p.kind = ProbeSpec::Kind::kExec;
  p.command = std::move(command);
  return p;
}

ProbeSpec Tcp(int port) {
  ProbeSpec p;
  p.kind = ProbeSpec::Kind::kTcpSocket;
  p.port = port;
  return p;
}

ProbeSpec Http(int port, std::string path = "/healthz") {
  ProbeSpec p;
  p.kind = ProbeSpec::Kind::kHttpGet;
  p.port = port;
  p.path = std::move(path);
  return p;
}

TEST_SUITE("probe") {
  TEST_CASE("manifest: probes are read with Kubernetes' shape and durations as elsewhere") {
    Result<std::vector<WorkloadSpec>> r = ParseManifest(R"(apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: web}
spec:
  image: oci-archive:/images/busybox.tar
  livenessProbe:
    httpGet:
      path: /healthz
      port: 8080
      httpHeaders: [{name: X-Probe, value: petrel}]
    initialDelay: 2s
    period: 5s
    timeout: 500ms
    failureThreshold: 4
  readinessProbe:
    exec: {command: [cat, /tmp/ready]}
    periodSeconds: 1
    successThreshold: 2
  startupProbe:
    tcpSocket: {port: 8080}
    failureThreshold: 30
    period: 1s
)",
                                                        "web.yaml");
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    const WorkloadSpec& s = r->front();
    CHECK(s.liveness_probe.kind == ProbeSpec::Kind::kHttpGet);
    CHECK(s.liveness_probe.path == "/healthz");
    CHECK(s.liveness_probe.port == 8080);
    CHECK(s.liveness_probe.scheme == "HTTP");
    CHECK(s.liveness_probe.http_headers ==
          std::vector<std::pair<std::string, std::string>>{{"X-Probe", "petrel"}});
    CHECK(s.liveness_probe.initial_delay_ms == 2000);
    CHECK(s.liveness_probe.period_ms == 5000);
    CHECK(s.liveness_probe.timeout_ms == 500);
    CHECK(s.liveness_probe.failure_threshold == 4);
    CHECK(s.liveness_probe.success_threshold == 1);
    CHECK(s.readiness_probe.kind == ProbeSpec::Kind::kExec);
    CHECK(s.readiness_probe.command == std::vector<std::string>{"cat", "/tmp/ready"});
    CHECK(s.readiness_probe.period_ms == 1000);
    CHECK(s.readiness_probe.success_threshold == 2);
    CHECK(s.startup_probe.kind == ProbeSpec::Kind::kTcpSocket);
    CHECK(s.startup_probe.failure_threshold == 30);
    CHECK(s.startup_probe.timeout_ms == 1000);  // the default
  }

  TEST_CASE("manifest: a bad probe is one line naming file, line, column and field") {
    auto error = [](const std::string& probe) {
      Result<std::vector<WorkloadSpec>> r = ParseManifest(
          "apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: web}\n"
          "spec:\n  image: oci-archive:/i.tar\n  livenessProbe:\n" +
              probe,
          "web.yaml");
      REQUIRE_FALSE(r.ok());
      return r.status().message();
    };
    CHECK(error("    tcpSocket: {port: 80}\n    exec: {command: [x]}\n") ==
          "web.yaml:8:5: spec.livenessProbe.exec: a probe has one check: tcpSocket is already "
          "given (want one of exec, tcpSocket, httpGet)");
    CHECK(error("    period: 5s\n") ==
          "web.yaml:7:5: spec.livenessProbe: needs a check: one of exec, tcpSocket, httpGet");
    CHECK(error("    tcpSocket: {port: 0}\n") ==
          "web.yaml:7:23: spec.livenessProbe.tcpSocket.port: must be between 1 and 65535");
    CHECK(error("    exec: {command: []}\n") ==
          "web.yaml:7:21: spec.livenessProbe.exec.command: is required (the command to run)");
    CHECK(error("    httpGet: {port: 80, path: healthz}\n") ==
          "web.yaml:7:31: spec.livenessProbe.httpGet.path: \"healthz\" must begin with '/' (at "
          "most 2048)");
    CHECK(error("    httpGet: {port: 80, scheme: HTTPS}\n") ==
          "web.yaml:7:33: spec.livenessProbe.httpGet.scheme: \"HTTPS\" is not supported (want "
          "HTTP; HTTPS probes are not supported yet)");
    CHECK(error("    tcpSocket: {port: 80}\n    successThreshold: 2\n") ==
          "web.yaml:8:23: spec.livenessProbe.successThreshold: must be 1 for this probe");
    CHECK(error("    tcpSocket: {port: 80}\n    period: 10ms\n") ==
          "web.yaml:8:13: spec.livenessProbe.period: must be at least 100ms");
    CHECK(error("    tcpSocket: {port: 80}\n    timeout: 2h\n") ==
          "web.yaml:8:14: spec.livenessProbe.timeout: must be at most 1h");
    CHECK(error("    tcpSocket: {port: 80}\n    failureThreshold: 0\n") ==
          "web.yaml:8:23: spec.livenessProbe.failureThreshold: must be between 1 and 1000");
    CHECK(error("    httpGet: {port: 80, httpHeaders: [{name: \"a b\", value: x}]}\n") ==
          "web.yaml:7:46: spec.livenessProbe.httpGet.httpHeaders[0].name: \"a b\" is not an "
          "HTTP header name");
    CHECK(error("    tcpSocket: {port: 80}\n    tries: 3\n") ==
          "web.yaml:8:5: spec.livenessProbe.tries: unknown field");
  }

  TEST_CASE("JSON: probes round-trip, are written only when set, and stay out of the hash") {
    WorkloadSpec plain = Base();
    WorkloadSpec probed = Base();
    probed.liveness_probe = Http(8080);
    probed.liveness_probe.http_headers = {{"X-A", "1"}, {"X-A", "2"}};
    probed.readiness_probe = Exec({"cat", "/tmp/ready"});
    probed.readiness_probe.success_threshold = 2;
    probed.startup_probe = Tcp(8080);
    probed.startup_probe.initial_delay_ms = 1500;
    REQUIRE(ValidateWorkload(probed).ok());

    std::string json = SpecToJson(plain);
    for (const char* key : {"livenessProbe", "readinessProbe", "startupProbe"}) {
      CAPTURE(key);
      CHECK(json.find(key) == std::string::npos);
    }
    Result<WorkloadSpec> back = SpecFromJson(SpecToJson(probed));
    REQUIRE_MESSAGE(back.ok(), back.status().ToString());
    CHECK(*back == probed);
    CHECK(SpecToJson(*back) == SpecToJson(probed));
    // Probes are petrel's, not the container's: changing them replaces no container.
    CHECK(TemplateHash(probed) == TemplateHash(plain));

    std::string no_check = SpecToJson(probed);
    const std::string exec = R"("exec":{"command":["cat","/tmp/ready"]},)";
    REQUIRE(no_check.find(exec) != std::string::npos);
    no_check.erase(no_check.find(exec), exec.size());
    CHECK(SpecFromJson(no_check).status().message() ==
          "spec JSON: readinessProbe: must have exactly one of exec, tcpSocket, httpGet");
  }

  TEST_CASE("Prober: liveness kills after failureThreshold failures in a row, once") {
    Prober p;
    ProbeTarget t;
    t.key = {"web", 0};
    t.container_id = "c1";
    t.pid = 42;
    t.running_since = 1000;
    t.liveness = Tcp(80);
    t.liveness.initial_delay_ms = 500;
    t.liveness.period_ms = 1000;
    t.liveness.failure_threshold = 3;
    p.Sync({t}, 1000);
    CHECK(p.NextDue() == 1500);
    CHECK(p.TakeDue(1499).empty());
    // Without a readiness or startup probe, readiness is the orchestrator's: running.
    CHECK(p.ReadyContainers().empty());

    TimeMs now = 1500;
    auto one = [&](ProbeResult r) {
      std::vector<ProbeCheck> due = p.TakeDue(now);
      REQUIRE(due.size() == 1);
      CHECK(due[0].type == ProbeType::kLiveness);
      CHECK(due[0].pid == 42);
      CHECK(p.TakeDue(now).empty());  // one check of a probe in flight at a time
      internal::ProbeNews news = p.Report(due[0], r, now + 10);
      now += 1000;
      return news;
    };
    CHECK(one(ProbeResult::Failure("refused")).kill_reason.empty());
    CHECK(one(ProbeResult::Failure("refused")).kill_reason.empty());
    CHECK(one(ProbeResult::Success()).kill_reason.empty());  // the streak starts over
    CHECK(one(ProbeResult::Failure("refused")).kill_reason.empty());
    CHECK(one(ProbeResult::Gone()).kill_reason.empty());  // counts for nothing
    CHECK(one(ProbeResult::Failure("refused")).kill_reason.empty());
    internal::ProbeNews news = one(ProbeResult::Failure("connection refused"));
    CHECK(news.kill_reason == "liveness probe failed 3 times in a row: connection refused");
    REQUIRE(news.events.size() == 1);
    CHECK(news.events[0].type == "Unhealthy");
    CHECK(news.events[0].replica == 0);
    CHECK(news.events[0].message ==
          "liveness probe failed 3 times in a row: connection refused; killing the container");
    // Killed: probed no more until a new container runs.
    CHECK(p.TakeDue(now + 100000).empty());
    t.container_id = "c2";
    t.running_since = now;
    p.Sync({t}, now);
    CHECK(p.TakeDue(now + 500).size() == 1);
    // crun names its containers' ids after petrel's names: the restarted container
    // has the same id and a new pid, and is probed as the new container it is.
    Prober q;
    t.liveness.failure_threshold = 1;
    q.Sync({t}, now);
    std::vector<ProbeCheck> due = q.TakeDue(now + 500);
    REQUIRE(due.size() == 1);
    CHECK_FALSE(q.Report(due[0], ProbeResult::Failure("refused"), now + 510).kill_reason.empty());
    CHECK(q.TakeDue(now + 100000).empty());
    t.pid = 43;
    q.Sync({t}, now + 2000);
    CHECK(q.TakeDue(now + 2500).size() == 1);
  }

  TEST_CASE("Prober: probes of one period fall due together after their first check") {
    Prober p;
    std::vector<ProbeTarget> targets;
    for (int i = 0; i < 3; i++) {
      ProbeTarget t;
      t.key = {"web", i};
      t.container_id = "c" + std::to_string(i);
      t.pid = 100 + i;
      t.running_since = 1000 + 37 * i;  // started apart
      t.readiness = Tcp(80);
      t.readiness.period_ms = 100;
      targets.push_back(t);
    }
    p.Sync(targets, 1000);
    for (TimeMs now : {1000, 1037, 1074}) {
      std::vector<ProbeCheck> due = p.TakeDue(now);
      REQUIRE(due.size() == 1);
      p.Report(due[0], ProbeResult::Success(), now + 1);
    }
    // Each is next due at the next multiple of the period: all three at 1100, not at
    // 1100, 1137 and 1174; and no later than a period after its last check.
    CHECK(p.NextDue() == 1100);
    CHECK(p.TakeDue(1099).empty());
    CHECK(p.TakeDue(1100).size() == 3);
  }

  TEST_CASE("Prober: readiness needs successThreshold successes, failureThreshold failures") {
    Prober p;
    ProbeTarget t;
    t.key = {"web", 1};
    t.container_id = "c1";
    t.running_since = 0;
    t.readiness = Exec({"cat", "/tmp/ready"});
    t.readiness.period_ms = 100;
    t.readiness.success_threshold = 2;
    t.readiness.failure_threshold = 2;
    CHECK_FALSE(p.Sync({t}, 0));
    TimeMs now = 0;
    auto one = [&](ProbeResult r) {
      std::vector<ProbeCheck> due = p.TakeDue(now);
      REQUIRE(due.size() == 1);
      now += 100;
      return p.Report(due[0], r, now);
    };
    CHECK_FALSE(one(ProbeResult::Success()).ready_changed);
    internal::ProbeNews ready = one(ProbeResult::Success());
    CHECK(ready.ready_changed);
    REQUIRE(ready.events.size() == 1);
    CHECK(ready.events[0].type == "Ready");
    CHECK(p.ReadyContainers().at({"web", 1}) == "c1");
    CHECK_FALSE(one(ProbeResult::Failure("exit code 1")).ready_changed);
    internal::ProbeNews not_ready = one(ProbeResult::Failure("exit code 1: no such file"));
    CHECK(not_ready.ready_changed);
    CHECK(not_ready.kill_reason.empty());  // readiness never kills
    REQUIRE(not_ready.events.size() == 1);
    CHECK(not_ready.events[0].message ==
          "readiness probe failed 2 times in a row: exit code 1: no such file; not ready");
    CHECK(p.ReadyContainers().empty());
    // The container goes: so does what the Prober knew of it.
    CHECK_FALSE(p.Sync({}, now));
    CHECK(p.size() == 0);
  }

  TEST_CASE("Prober: a startup probe holds the others back, then kills if it never passes") {
    Prober p;
    ProbeTarget t;
    t.key = {"web", 0};
    t.container_id = "c1";
    t.startup = Exec({"test", "-f", "/tmp/started"});
    t.startup.period_ms = 100;
    t.startup.failure_threshold = 3;
    t.liveness = Tcp(80);
    t.readiness = Tcp(80);
    p.Sync({t}, 0);
    std::vector<ProbeCheck> due = p.TakeDue(0);
    REQUIRE(due.size() == 1);
    CHECK(due[0].type == ProbeType::kStartup);
    p.Report(due[0], ProbeResult::Failure("exit code 1"), 10);
    due = p.TakeDue(100);
    REQUIRE(due.size() == 1);
    CHECK(due[0].type == ProbeType::kStartup);
    internal::ProbeNews news = p.Report(due[0], ProbeResult::Success(), 110);
    CHECK_FALSE(news.ready_changed);  // readiness has not passed yet
    // Passed once: never checked again; liveness and readiness now run.
    due = p.TakeDue(200);
    REQUIRE(due.size() == 2);
    CHECK(due[0].type == ProbeType::kLiveness);
    CHECK(due[1].type == ProbeType::kReadiness);
    p.Report(due[0], ProbeResult::Success(), 210);
    news = p.Report(due[1], ProbeResult::Success(), 210);
    CHECK(news.ready_changed);
    REQUIRE(news.events.size() == 1);
    CHECK(news.events[0].message == "startup and readiness probes passed");

    // Another container that never starts: killed after failureThreshold failures.
    Prober q;
    q.Sync({t}, 0);
    std::string reason;
    for (TimeMs now = 0; now < 1000 && reason.empty(); now += 100) {
      for (const ProbeCheck& c : q.TakeDue(now)) {
        CHECK(c.type == ProbeType::kStartup);
        reason = q.Report(c, ProbeResult::Failure("exit code 1"), now).kill_reason;
      }
    }
    CHECK(reason == "startup probe failed 3 times in a row: exit code 1");
  }

  TEST_CASE("Prober: a result for a replaced container or a replaced spec is dropped") {
    Prober p;
    ProbeTarget t;
    t.key = {"web", 0};
    t.container_id = "c1";
    t.liveness = Tcp(80);
    t.liveness.failure_threshold = 1;
    p.Sync({t}, 0);
    std::vector<ProbeCheck> old = p.TakeDue(0);
    REQUIRE(old.size() == 1);
    t.container_id = "c2";  // the container was replaced meanwhile
    p.Sync({t}, 50);
    CHECK(p.Report(old[0], ProbeResult::Failure("refused"), 60).kill_reason.empty());
    std::vector<ProbeCheck> now = p.TakeDue(50);
    REQUIRE(now.size() == 1);
    t.liveness.port = 81;  // the probe changed: it starts over, the old check is dropped
    p.Sync({t}, 60);
    CHECK(p.Report(now[0], ProbeResult::Failure("refused"), 70).kill_reason.empty());
    std::vector<ProbeCheck> again = p.TakeDue(60);
    REQUIRE(again.size() == 1);
    CHECK(again[0].probe.port == 81);
    CHECK(p.Report(again[0], ProbeResult::Failure("refused"), 70).kill_reason ==
          "liveness probe failed once: refused");
  }

  TEST_CASE("JudgeStatusLine: 200-399 pass, the rest fail with the status") {
    CHECK(internal::JudgeStatusLine("HTTP/1.1 200 OK").outcome == ProbeResult::Outcome::kSuccess);
    CHECK(internal::JudgeStatusLine("HTTP/1.0 302 Found").outcome ==
          ProbeResult::Outcome::kSuccess);
    CHECK(internal::JudgeStatusLine("HTTP/1.1 503 Service Unavailable").message == "HTTP 503");
    CHECK(internal::JudgeStatusLine("HTTP/1.1 199 Odd").message == "HTTP 199");
    CHECK(internal::JudgeStatusLine("SSH-2.0-OpenSSH").message == "not an HTTP response");
    CHECK(internal::JudgeStatusLine("HTTP/1.1 2x0 OK").message == "not an HTTP response");
  }
}

// A listening TCP socket on 127.0.0.1 that answers each connection with `reply` (none:
// it accepts and stays silent), on a thread of its own.
class Server {
 public:
  explicit Server(std::string reply, bool accept = true) : reply_(std::move(reply)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    socklen_t len = sizeof(addr);
    REQUIRE(getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    REQUIRE(listen(fd_, 16) == 0);
    if (!accept) return;
    thread_ = std::thread([this] {
      while (true) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0 || stop_) {
          if (c >= 0) close(c);
          return;
        }
        char buf[4096];
        ssize_t n = read(c, buf, sizeof(buf));
        if (n > 0) request_.assign(buf, static_cast<size_t>(n));
        if (reply_.empty()) {
          held_.push_back(c);  // silent: keep it open until the end
          continue;
        }
        if (send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL) < 0) {
        }
        // How the client let go: a reset or the FIN handshake.
        while ((n = read(c, buf, sizeof(buf))) > 0) {
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          ended_ = n == 0 ? "fin" : errno == ECONNRESET ? "reset" : std::strerror(errno);
        }
        ended_cv_.notify_all();
        close(c);
      }
    });
  }
  ~Server() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    for (int c : held_) close(c);
    close(fd_);
  }
  int port() const { return port_; }
  std::string request() const { return request_; }
  // How the last client that got a reply let go: "reset", "fin" or an error; waits
  // up to 10 s for one to.
  std::string Ended() {
    std::unique_lock<std::mutex> lock(mu_);
    ended_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return !ended_.empty(); });
    return ended_;
  }

 private:
  std::string reply_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string request_;
  std::mutex mu_;
  std::condition_variable ended_cv_;
  std::string ended_;  // guarded by mu_
  std::vector<int> held_;
};

// Runs one check to its end on a loop of its own.
ProbeResult Check(const ProbeSpec& probe) {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  NetChecker checker;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  ProbeResult result = ProbeResult::Failure("never called");
  int calls = 0;
  checker.Start(&loop, fd, probe, [&](const ProbeResult& r) {
    result = r;
    calls++;
  });
  CHECK(calls == 0);              // never inside Start
  uv_run(&loop, UV_RUN_DEFAULT);  // ends: the socket's watcher does not keep it running
  CHECK(calls == 1);
  CHECK(checker.in_flight() == 0);
  checker.CancelAll();  // closes the watcher
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);  // every handle closed
  return result;
}

TEST_SUITE("probe") {
  TEST_CASE("NetChecker: tcpSocket connects or says why not") {
    Server server("", /*accept=*/false);
    CHECK(Check(Tcp(server.port())).outcome == ProbeResult::Outcome::kSuccess);
    int closed = 0;
    {
      Server gone("", false);
      closed = gone.port();
    }
    ProbeResult r = Check(Tcp(closed));
    CHECK(r.outcome == ProbeResult::Outcome::kFailure);
    CHECK(r.message == "connect 127.0.0.1:" + std::to_string(closed) + ": connection refused");
  }

  TEST_CASE("NetChecker: httpGet judges the status line and sends the probe's headers") {
    {
      Server ok("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      ProbeSpec probe = Http(ok.port(), "/healthz?full=1");
      probe.http_headers = {{"X-Probe", "petrel"}};
      CHECK(Check(probe).outcome == ProbeResult::Outcome::kSuccess);
      std::string req = ok.request();
      CHECK(req.rfind("GET /healthz?full=1 HTTP/1.1\r\n", 0) == 0);
      CHECK(req.find("\r\nHost: 127.0.0.1:" + std::to_string(ok.port()) + "\r\n") !=
            std::string::npos);
      CHECK(req.find("\r\nX-Probe: petrel\r\n") != std::string::npos);
      // Closed with a reset: no socket left in TIME_WAIT per check.
      CHECK(ok.Ended() == "reset");
    }
    {
      Server bad("HTTP/1.1 500 Internal Server Error\r\n\r\n");
      CHECK(Check(Http(bad.port())).message == "HTTP 500");
    }
    {
      Server junk("SSH-2.0-OpenSSH_9.2\r\n");
      CHECK(Check(Http(junk.port())).message == "not an HTTP response");
    }
  }

  TEST_CASE("NetChecker: a check that gets no answer fails at its timeout") {
    Server silent("");
    ProbeSpec probe = Http(silent.port());
    probe.timeout_ms = 200;
    auto start = std::chrono::steady_clock::now();
    ProbeResult r = Check(probe);
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(r.message == "timed out after 200ms");
    CHECK(took >= std::chrono::milliseconds(190));
    CHECK(took < std::chrono::seconds(10));  // generous: a shared machine
  }

  TEST_CASE("NetChecker: CancelAll ends checks in flight without calling them back") {
    Server silent("");
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    int calls = 0;
    {
      NetChecker checker;
      for (int i = 0; i < 3; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        checker.Start(&loop, fd, Http(silent.port()), [&](const ProbeResult&) { calls++; });
      }
      CHECK(checker.in_flight() == 3);
      uv_run(&loop, UV_RUN_NOWAIT);
      checker.CancelAll();
      CHECK(checker.in_flight() == 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);  // the close callbacks free them
    CHECK(calls == 0);
    CHECK(uv_loop_close(&loop) == 0);
  }
}

// An Orchestrator stepped by hand over the fake runtime and clock, whose probes reach
// servers of the test on 127.0.0.1 (HostNetPort).
struct ProbedNode {
  testing::TempDir dir;
  std::shared_ptr<testing::FakeClock> clock = std::make_shared<testing::FakeClock>();
  std::shared_ptr<testing::FakeRuntime> runtime = std::make_shared<testing::FakeRuntime>(clock);
  std::unique_ptr<Orchestrator> orch;
  std::vector<Event> events;

  ProbedNode() {
    Options o = testing::TestOptions(dir, runtime, clock);
    o.port = std::make_shared<testing::HostNetPort>();
    orch = testing::OpenOrDie(o);
    orch->Subscribe([this](const Event& e) { events.push_back(e); });
  }
  void Step() { REQUIRE(orch->Step().ok()); }
  WorkloadState Get() {
    Result<WorkloadState> w = orch->Get("web");
    REQUIRE(w.ok());
    return *w;
  }
  std::vector<std::string> Messages(const std::string& type) {
    std::vector<std::string> out;
    for (const Event& e : events) {
      if (e.type == type) out.push_back(e.message);
    }
    return out;
  }
};

TEST_SUITE("probe") {
  TEST_CASE("Orchestrator: readiness follows the probe, and a failing liveness probe restarts") {
    auto server = std::make_unique<Server>("", /*accept=*/false);
    const int port = server->port();
    ProbedNode n;
    WorkloadSpec w = Base();
    w.command = {"/bin/sh", "-c", "sleep 3600"};
    w.readiness_probe = Tcp(port);
    w.readiness_probe.period_ms = 1000;
    w.readiness_probe.failure_threshold = 1;
    w.liveness_probe = Tcp(port);
    w.liveness_probe.period_ms = 1000;
    w.liveness_probe.failure_threshold = 2;
    REQUIRE(n.orch->Apply(w).ok());
    n.Step();
    WorkloadState st = n.Get();
    REQUIRE(st.replicas.at(0).phase == Phase::kRunning);
    CHECK(st.replicas.at(0).ready);
    CHECK(st.ready_replicas == 1);
    CHECK(n.Messages("Ready") == std::vector<std::string>{"readiness probe passed"});
    const std::string first = st.replicas.at(0).container_id;
    // Probes are timed: the next check is a period away.
    CHECK(n.orch->NextWakeup() == n.clock->Now() + 1000);

    server.reset();  // the port closes: every check fails from now on
    n.clock->Advance(1000);
    n.Step();
    st = n.Get();
    CHECK(st.replicas.at(0).phase == Phase::kRunning);
    CHECK_FALSE(st.replicas.at(0).ready);
    CHECK(st.ready_replicas == 0);
    CHECK(n.runtime->Calls(testing::FakeRuntime::Op::kKill) == 0);  // one failure of two

    n.clock->Advance(1000);
    n.Step();  // the second failure: killed (SIGTERM) in the same step
    CHECK(n.runtime->Calls(testing::FakeRuntime::Op::kKill) == 1);
    std::vector<std::string> unhealthy = n.Messages("Unhealthy");
    REQUIRE(unhealthy.size() == 2);
    CHECK(unhealthy[0] == "readiness probe failed once: connect 127.0.0.1:" + std::to_string(port) +
                              ": connection refused; not ready");
    CHECK(unhealthy[1] == "liveness probe failed 2 times in a row: connect 127.0.0.1:" +
                              std::to_string(port) + ": connection refused; killing the container");
    n.Step();
    st = n.Get();
    CHECK(st.replicas.at(0).phase == Phase::kCrashLoop);
    CHECK(st.replicas.at(0).message ==
          "exited: killed by signal 15 (exit code 143) after its liveness probe failed; "
          "back-off 1s");
    // Restarted after the back-off, once: the probe's kill is one failure, not two.
    n.clock->Advance(1000);
    n.Step();
    st = n.Get();
    CHECK(st.replicas.at(0).phase == Phase::kRunning);
    CHECK(st.replicas.at(0).container_id != first);
    CHECK(st.replicas.at(0).restarts == 1);
  }

  TEST_CASE("Orchestrator: without readiness or startup probes a running replica is ready") {
    ProbedNode n;
    WorkloadSpec w = Base();
    w.command = {"/bin/sh", "-c", "sleep 3600"};
    w.replicas = 2;
    REQUIRE(n.orch->Apply(w).ok());
    n.Step();
    WorkloadState st = n.Get();
    CHECK(st.ready_replicas == 2);
    CHECK(st.replicas.at(0).ready);
    CHECK(n.Messages("Ready").empty());  // no probe, no news
  }

  TEST_CASE("Orchestrator: bridge containers' hosts name the ready replicas, and only those") {
    auto server = std::make_unique<Server>("", /*accept=*/false);
    ProbedNode n;
    WorkloadSpec web = Base();  // network: bridge, the default
    web.command = {"/bin/sh", "-c", "sleep 3600"};
    web.replicas = 2;
    web.readiness_probe = Tcp(server->port());
    web.readiness_probe.period_ms = 1000;
    web.readiness_probe.failure_threshold = 1;
    WorkloadSpec db = Base();
    db.name = "db";
    db.command = web.command;
    WorkloadSpec solo = Base();
    solo.name = "solo";
    solo.command = web.command;
    solo.network = NetworkMode::kNone;
    REQUIRE(n.orch->Apply(web).ok());
    REQUIRE(n.orch->Apply(db).ok());
    REQUIRE(n.orch->Apply(solo).ok());
    n.Step();
    n.Step();  // the pass after the starts lists the addresses
    // The hosts each container has now, by container name; its address.
    auto hosts = [&](const std::string& name) {
      for (const ContainerInfo& c : n.runtime->Containers()) {
        if (c.name == "petrel_n1_" + name && c.state == ContainerState::kRunning) {
          Result<ContainerSpec> spec = n.runtime->SpecOf(c.id);
          REQUIRE(spec.ok());
          return std::make_pair(spec->hosts, c.address);
        }
      }
      FAIL("no running container " << name);
      return std::make_pair(std::string(), std::string());
    };
    const auto [web0, web0_address] = hosts("web_0");
    const auto [web1, web1_address] = hosts("web_1");
    const auto [db0, db0_address] = hosts("db_0");
    REQUIRE(!web0_address.empty());
    REQUIRE(!db0_address.empty());
    const std::string names = db0_address + "\tdb-0 db\n" + web0_address + "\tweb-0 web\n" +
                              web1_address + "\tweb-1 web\n";
    CHECK(db0.find("127.0.0.1\tlocalhost\n") != std::string::npos);
    CHECK(db0.substr(db0.size() - names.size()) == names);
    CHECK(web0 == db0);  // all ready: each finds itself among the names
    CHECK(web1 == db0);
    CHECK(hosts("solo_0").first.empty());  // not on the bridge: the image's own

    server.reset();  // web's readiness fails from now on
    n.clock->Advance(1000);
    n.Step();
    n.Step();
    CHECK_FALSE(n.Get().replicas.at(0).ready);
    const std::string db_now = hosts("db_0").first;
    CHECK(db_now.find("web") == std::string::npos);
    CHECK(db_now.substr(db_now.size() - (db0_address.size() + 9)) == db0_address + "\tdb-0 db\n");
    // A replica not ready still knows its own name; the ready ones' names, not its own.
    const std::string web0_now = hosts("web_0").first;
    CHECK(web0_now.find(web0_address + "\tweb-0\n") != std::string::npos);
    CHECK(web0_now.find("web-1") == std::string::npos);
    CHECK(web0_now.find(db0_address + "\tdb-0 db\n") != std::string::npos);

    REQUIRE(n.orch->Delete("db").ok());
    for (int i = 0; i < 5; i++) {
      n.clock->Advance(1000);
      n.Step();
    }
    CHECK(hosts("web_0").first.find("db") == std::string::npos);
  }

  TEST_CASE("Orchestrator on its own loop: probes run on their timer, beside the passes") {
    auto server = std::make_unique<Server>("HTTP/1.1 200 OK\r\n\r\n");
    testing::TempDir dir;
    auto clock = SystemClock();
    auto runtime = std::make_shared<testing::FakeRuntime>(clock);
    Options o = testing::TestOptions(dir, runtime, clock);
    o.port = std::make_shared<testing::HostNetPort>();
    o.resync_interval_ms = 60000;  // no pass would notice anything on its own
    std::unique_ptr<Orchestrator> orch = testing::OpenOrDie(o);
    REQUIRE(orch->Start().ok());
    WorkloadSpec w = Base();
    w.command = {"/bin/sh", "-c", "sleep 3600"};
    w.readiness_probe = Http(server->port());
    w.readiness_probe.period_ms = 100;
    w.readiness_probe.failure_threshold = 2;
    REQUIRE(orch->Apply(w).ok());
    auto ready = [&] {
      Result<WorkloadState> st = orch->Get("web");
      return st.ok() && st->ready_replicas == 1;
    };
    CHECK(testing::WaitFor(ready, 20));
    server.reset();
    CHECK(testing::WaitFor([&] { return !ready(); }, 20));
    orch.reset();  // with checks possibly in flight: they are cancelled, nothing leaks
  }

  TEST_CASE(
      "Orchestrator: an exec check that fails fails the probe only while the container runs") {
    // Its processes' namespaces are there (HostNetPort) until the test says they are gone.
    struct VanishingPort : testing::HostNetPort {
      std::atomic<bool> gone{false};
      Result<int> OpenNetnsOf(pid_t pid) override {
        if (gone) return Status::NotFound("no process " + std::to_string(pid));
        return HostNetPort::OpenNetnsOf(pid);
      }
    };
    auto port = std::make_shared<VanishingPort>();
    testing::TempDir dir;
    auto clock = SystemClock();
    auto runtime = std::make_shared<testing::FakeRuntime>(clock);
    Options o = testing::TestOptions(dir, runtime, clock);
    o.port = port;
    o.resync_interval_ms = 60000;
    std::unique_ptr<Orchestrator> orch = testing::OpenOrDie(o);
    std::mutex mu;
    std::vector<std::string> unhealthy;
    orch->Subscribe([&](const Event& e) {
      std::lock_guard<std::mutex> lock(mu);
      if (e.type == "Unhealthy") unhealthy.push_back(e.message);
    });
    auto messages = [&] {
      std::lock_guard<std::mutex> lock(mu);
      return unhealthy;
    };
    REQUIRE(orch->Start().ok());
    WorkloadSpec w = Base();
    w.command = {"/bin/sh", "-c", "sleep 3600"};
    w.liveness_probe = Exec({"true"});
    w.liveness_probe.period_ms = 100;
    w.liveness_probe.failure_threshold = 1;
    REQUIRE(orch->Apply(w).ok());
    std::string id;
    REQUIRE(testing::WaitFor(
        [&] {
          Result<WorkloadState> st = orch->Get("web");
          if (!st.ok() || st->replicas.empty()) return false;
          if (st->replicas[0].phase != Phase::kRunning) return false;
          id = st->replicas[0].container_id;
          return true;
        },
        20));

    // The container exits while its check is in flight, and the runtime, unable to
    // enter it, answers with an error of its own (runc: "error executing setns
    // process"), before petrel has listed the exit: no failure, no kill.
    runtime->Hold(testing::FakeRuntime::Op::kExec);
    REQUIRE(runtime->AwaitHeld(testing::FakeRuntime::Op::kExec, 1));
    runtime->Hold(testing::FakeRuntime::Op::kList);
    REQUIRE(runtime->Exit(id, 3).ok());
    runtime->FailNext(testing::FakeRuntime::Op::kExec,
                      Status::Internal("exec failed: error executing setns process"));
    const int kills = runtime->Calls(testing::FakeRuntime::Op::kKill);
    // Its Inspect is what tells: once it came, the result has been judged.
    const int inspects = runtime->Calls(testing::FakeRuntime::Op::kInspect);
    runtime->Release(testing::FakeRuntime::Op::kExec);
    CHECK(testing::WaitFor(
        [&] { return runtime->Calls(testing::FakeRuntime::Op::kInspect) > inspects; }, 20));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    runtime->Release(testing::FakeRuntime::Op::kList);
    CHECK(messages().empty());
    CHECK(runtime->Calls(testing::FakeRuntime::Op::kKill) == kills);

    // Restarted, and the runtime still says running, but its process can no longer be
    // entered (a zombie its shim has not reaped yet): no failure either.
    REQUIRE(testing::WaitFor(
        [&] {
          Result<WorkloadState> st = orch->Get("web");
          return st.ok() && st->replicas[0].phase == Phase::kRunning &&
                 st->replicas[0].container_id != id;
        },
        20));
    port->gone = true;
    const int before = runtime->Calls(testing::FakeRuntime::Op::kInspect);
    runtime->FailNext(testing::FakeRuntime::Op::kExec,
                      Status::Internal("exec failed: error executing setns process"));
    CHECK(testing::WaitFor(
        [&] { return runtime->Calls(testing::FakeRuntime::Op::kInspect) > before; }, 20));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(messages().empty());
    port->gone = false;

    // Running, and its process there: the same error now fails the probe, and kills. (An
    // exec that exits non-zero is judged the same way: one path for both.)
    runtime->FailNext(testing::FakeRuntime::Op::kExec,
                      Status::Internal("exec failed: error executing setns process"));
    CHECK(testing::WaitFor([&] { return !messages().empty(); }, 20));
    REQUIRE_FALSE(messages().empty());
    CHECK(messages()[0] ==
          "liveness probe failed once: exec failed: error executing setns process; killing the "
          "container");
    orch.reset();
  }
}

}  // namespace
}  // namespace petrel
