// petrelctl's pure part (examples/petrelctl/flags.h, format.h): flags, ages, tables,
// the phase summary and the stable `-o json` shape. Built as its own executable,
// petrelctl_unit, because it needs the example's library.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "flags.h"
#include "format.h"

namespace petrelctl {
namespace {

constexpr int64_t kSec = 1000;
constexpr int64_t kMin = 60 * kSec;
constexpr int64_t kHour = 60 * kMin;
constexpr int64_t kDay = 24 * kHour;

// One workload as petreld answers GET /v1/workloads/NAME, with keys petrelctl does
// not show ("since", "nextRetry", "generation", ...) and one it does not know.
json ServerWorkload() {
  return ParseJson(R"({
    "name": "web", "generation": 3, "specHash": "0123456789abcdef",
    "createdAt": 1000, "updatedAt": 2000, "deletedAt": 0,
    "desiredReplicas": 2, "readyReplicas": 1, "terminating": false,
    "futureKey": {"x": 1},
    "spec": {"image": "oci:/images/busybox", "replicas": 2},
    "replicas": [
      {"index": 0, "phase": "Running", "containerId": "c0", "pid": 42, "restarts": 2,
       "lastExitCode": 1, "message": "started", "since": 5, "nextRetry": 0, "node": "pi1"},
      {"index": 1, "phase": "CrashLoop", "containerId": "", "pid": 0, "restarts": 3,
       "lastExitCode": 137, "message": "back-off 4s", "since": 6, "nextRetry": 9,
       "node": "pi2"}
    ]})")
      .value();
}

ReplicaView Replica(const std::string& phase) {
  ReplicaView r;
  r.phase = phase;
  return r;
}

TEST_CASE("petrelctl: AGE is kubectl's HumanDuration") {
  CHECK(HumanDuration(0) == "0s");
  CHECK(HumanDuration(999) == "0s");
  CHECK(HumanDuration(45 * kSec) == "45s");
  CHECK(HumanDuration(119 * kSec + 999) == "119s");
  CHECK(HumanDuration(2 * kMin) == "2m");
  CHECK(HumanDuration(3 * kMin + 12 * kSec) == "3m12s");
  CHECK(HumanDuration(10 * kMin + 59 * kSec) == "10m");
  CHECK(HumanDuration(179 * kMin) == "179m");
  CHECK(HumanDuration(3 * kHour) == "3h");
  CHECK(HumanDuration(5 * kHour + 59 * kSec) == "5h");
  CHECK(HumanDuration(7 * kHour + 30 * kMin) == "7h30m");
  CHECK(HumanDuration(8 * kHour + 30 * kMin) == "8h");
  CHECK(HumanDuration(47 * kHour) == "47h");
  CHECK(HumanDuration(2 * kDay) == "2d");
  CHECK(HumanDuration(3 * kDay + 4 * kHour) == "3d4h");
  CHECK(HumanDuration(8 * kDay + 4 * kHour) == "8d");
  CHECK(HumanDuration(2 * 365 * kDay + 100 * kDay) == "2y100d");
  CHECK(HumanDuration(3 * 365 * kDay) == "3y");
  CHECK(HumanDuration(9 * 365 * kDay + 100 * kDay) == "9y");
  // A clock that went back a little is "now"; more than that is shown as wrong.
  CHECK(HumanDuration(-1999) == "0s");
  CHECK(HumanDuration(-2000) == "<invalid>");
}

TEST_CASE("petrelctl: tables line up with two spaces, like kubectl") {
  std::string table = FormatTable(
      {{"NAME", "READY", "PHASE"}, {"web", "2/2", "Running"}, {"uptime-log", "0/1", "CrashLoop"}});
  CHECK(table ==
        "NAME        READY  PHASE\n"
        "web         2/2    Running\n"
        "uptime-log  0/1    CrashLoop\n");

  SUBCASE("no spaces after the last column, even when its cell is empty") {
    CHECK(FormatTable({{"A", "B"}, {"xyz", ""}}, "  ") == "  A    B\n  xyz\n");
  }
  SUBCASE("control characters cannot break a row or reach the terminal") {
    CHECK(FormatTable({{"M", "N"}, {"a\nb\x1b", "x"}}) == "M     N\na b   x\n");
  }
  SUBCASE("width counts characters, not bytes") {
    CHECK(FormatTable({{"A", "B"}, {"h\xc3\xa9", "x"}}) == "A   B\nh\xc3\xa9  x\n");
  }
  SUBCASE("a followed stream keeps the columns and widens them when it must") {
    Columns columns;
    columns.Fit({"TIME", "TYPE", "MESSAGE"});
    CHECK(columns.Format({"TIME", "TYPE", "MESSAGE"}) == "TIME  TYPE  MESSAGE\n");
    CHECK(columns.Format({"t1", "Created", "m"}) == "t1    Created  m\n");
    CHECK(columns.Format({"t2", "Run", "m"}) == "t2    Run      m\n");
  }
}

TEST_CASE("petrelctl: PHASE is the shared phase, else the worst") {
  CHECK(SummarizePhase({}) == "-");
  CHECK(SummarizePhase({Replica("Running"), Replica("Running")}) == "Running");
  CHECK(SummarizePhase({Replica("Running"), Replica("CrashLoop")}) == "CrashLoop");
  CHECK(SummarizePhase({Replica("Creating"), Replica("Pending")}) == "Pending");
  CHECK(SummarizePhase({Replica("Running"), Replica("Stopping")}) == "Stopping");
  CHECK(SummarizePhase({Replica("Pending"), Replica("Exited"), Replica("Stopping")}) == "Exited");
  // A phase from a newer petreld is shown rather than hidden behind a known one.
  CHECK(SummarizePhase({Replica("CrashLoop"), Replica("Paused")}) == "Paused");
}

TEST_CASE("petrelctl: get -o json has exactly the stable keys") {
  auto w = DecodeWorkload(ServerWorkload());
  REQUIRE(w.ok());
  CHECK(PrettyJson(StableJson({*w})) == R"({
  "items": [
    {
      "desiredReplicas": 2,
      "name": "web",
      "phase": "CrashLoop",
      "readyReplicas": 1,
      "replicas": [
        {
          "containerId": "c0",
          "index": 0,
          "lastExitCode": 1,
          "message": "started",
          "node": "pi1",
          "phase": "Running",
          "pid": 42,
          "ready": true,
          "restarts": 2
        },
        {
          "containerId": "",
          "index": 1,
          "lastExitCode": 137,
          "message": "back-off 4s",
          "node": "pi2",
          "phase": "CrashLoop",
          "pid": 0,
          "ready": false,
          "restarts": 3
        }
      ]
    }
  ]
})");
  CHECK(PrettyJson(StableJson({})) == "{\n  \"items\": []\n}");
}

TEST_CASE("petrelctl: a server answer without what petrelctl needs is an error naming the field") {
  json j = ServerWorkload();
  j["replicas"][1].erase("pid");
  CHECK(DecodeWorkload(j).status().message() == "replicas[1].pid: is missing");
  j = ServerWorkload();
  j["readyReplicas"] = "1";
  CHECK(DecodeWorkload(j).status().message() == "readyReplicas: must be an integer");
  json list = {{"items", {ServerWorkload(), {{"name", 7}}}}};
  CHECK(DecodeWorkloadList(list).status().message() == "items[1].name: must be a string");
  CHECK(DecodeWorkloadList(json::array()).status().message() == "(top): must be an object");
  CHECK(!ParseJson("{\"items\": [").ok());
  // A petreld from before clusters names no node: "" (shown as "-").
  j = ServerWorkload();
  j["replicas"][0].erase("node");
  auto old = DecodeWorkload(j);
  REQUIRE(old.ok());
  CHECK(old->replicas[0].node.empty());
  j["replicas"][0]["node"] = 1;
  CHECK(DecodeWorkload(j).status().message() == "replicas[0].node: must be a string");
  CHECK(DecodeEvent(
            ParseJson(R"({"seq":1,"time":2,"workload":"w","replica":-1,"type":"Applied"})").value())
            .status()
            .message() == "message: is missing");
  auto results = DecodeApplyResults(
      ParseJson(R"({"items":[{"name":"web","outcome":"created","generation":1}]})").value());
  REQUIRE(results.ok());
  CHECK(results->at(0).name == "web");
  CHECK(results->at(0).outcome == "created");
}

TEST_CASE("petrelctl: workload and event rows") {
  auto w = DecodeWorkload(ServerWorkload());
  REQUIRE(w.ok());
  CHECK(WorkloadHeader(false) ==
        std::vector<std::string>{"NAME", "READY", "PHASE", "RESTARTS", "AGE"});
  CHECK(WorkloadRow(*w, 1000 + 3 * kMin + 12 * kSec, false) ==
        std::vector<std::string>{"web", "1/2", "CrashLoop", "5", "3m12s"});
  CHECK(WorkloadHeader(true) ==
        std::vector<std::string>{"NAME", "READY", "PHASE", "RESTARTS", "AGE", "IMAGE", "NODES"});
  CHECK(WorkloadRow(*w, 1000 + 45 * kSec, true) ==
        std::vector<std::string>{"web", "1/2", "CrashLoop", "5", "45s", "oci:/images/busybox",
                                 "pi1,pi2"});

  SUBCASE("NODES: each node once, no warm standby, <none> before any is placed") {
    json j = ServerWorkload();
    j["replicas"][1]["node"] = "pi1";
    json standby = j["replicas"][1];
    standby["index"] = 2;
    standby["phase"] = "Standby";
    standby["node"] = "pi3";
    j["replicas"].push_back(standby);
    auto s = DecodeWorkload(j);
    REQUIRE(s.ok());
    CHECK(WorkloadRow(*s, 1000, true).back() == "pi1");
    j["replicas"][0]["node"] = "";
    j["replicas"][1]["node"] = "";
    s = DecodeWorkload(j);
    REQUIRE(s.ok());
    CHECK(WorkloadRow(*s, 1000, true).back() == "<none>");
  }

  SUBCASE("a deleted workload is Terminating until its containers are gone") {
    json j = ServerWorkload();
    j["deletedAt"] = 5000;
    j["terminating"] = true;
    auto t = DecodeWorkload(j);
    REQUIRE(t.ok());
    CHECK(WorkloadPhase(*t) == "Terminating");
    CHECK(WorkloadRow(*t, 1000 + 45 * kSec, false)[2] == "Terminating");
    CHECK(StableJson({*t})["items"][0]["phase"] == "Terminating");
    petrel::WorkloadSpec spec;
    setenv("TZ", "UTC", 1);
    tzset();
    CHECK(DescribeText(*t, spec, {}, 5000 + 7 * kSec)
              .find("\nStatus:          Terminating (deleted 1970-01-01 00:00:05, 7s ago; its "
                    "containers are stopping)\n") != std::string::npos);
  }

  setenv("TZ", "UTC", 1);
  tzset();
  EventView e;
  e.time = 1795845662000;  // 2026-11-28 06:01:02 UTC
  e.type = "Applied";
  e.message = "generation 1";
  CHECK(EventRow(e) ==
        std::vector<std::string>{"2026-11-28 06:01:02", "-", "-", "Applied", "generation 1"});
  e.workload = "web";
  e.replica = 0;
  CHECK(EventRow(e)[1] == "web");
  CHECK(EventRow(e)[2] == "0");
}

TEST_CASE("petrelctl: quantities and commands as a human writes them") {
  CHECK(FormatBytes(0) == "0");
  CHECK(FormatBytes(64 << 20) == "64Mi");
  CHECK(FormatBytes(1536) == "1536");
  CHECK(FormatBytes(1000) == "1000");
  CHECK(FormatBytes(int64_t{3} << 30) == "3Gi");
  CHECK(FormatCpu(500) == "500m");
  CHECK(FormatCpu(2000) == "2");
  CHECK(ShellJoin({"/bin/sh", "-c", "echo hi; sleep 1"}) == "/bin/sh -c 'echo hi; sleep 1'");
  CHECK(ShellJoin({"it's", ""}) == "'it'\\''s' ''");
}

TEST_CASE("petrelctl: describe shows the spec, the replicas and the events") {
  setenv("TZ", "UTC", 1);
  tzset();
  json j = ServerWorkload();
  j["createdAt"] = 1795845662000;
  j["updatedAt"] = 1795845662000;
  auto w = DecodeWorkload(j);
  REQUIRE(w.ok());
  petrel::WorkloadSpec spec;
  spec.name = "web";
  spec.image = "oci:/images/busybox";
  spec.labels = {{"app", "web"}, {"tier", "front"}};
  spec.command = {"/bin/sh", "-c"};
  spec.env = {{"MODE", "prod"}};
  spec.resources.memory_bytes = 64 << 20;
  spec.resources.cpu_millis = 500;
  spec.mounts.push_back({petrel::MountSpec::Type::kTmpfs, "", "/www", false, 1 << 20});
  spec.liveness_probe.kind = petrel::ProbeSpec::Kind::kHttpGet;
  spec.liveness_probe.port = 8080;
  spec.liveness_probe.path = "/healthz";
  spec.startup_probe.kind = petrel::ProbeSpec::Kind::kExec;
  spec.startup_probe.command = {"test", "-f", "/tmp/up"};
  spec.startup_probe.failure_threshold = 30;
  spec.security_context.capabilities_drop = {"ALL"};
  spec.security_context.capabilities_add = {"NET_BIND_SERVICE"};
  spec.security_context.seccomp = petrel::SecurityContext::Seccomp::kUnconfined;
  EventView e;
  e.time = 1795845662000;
  e.workload = "web";
  e.replica = 1;
  e.type = "BackOff";
  e.message = "restarting in 4s";
  std::string text = DescribeText(*w, spec, {e}, 1795845662000 + 5 * kMin);
  CHECK(text ==
        "Name:            web\n"
        "Labels:          app=web\n"
        "                 tier=front\n"
        "Image:           oci:/images/busybox\n"
        "Replicas:        2 desired | 1 ready\n"
        "Restart Policy:  Always (back-off 1s, doubling up to 5m; reset after 1m running)\n"
        "Grace Period:    10s\n"
        "Resources:       memory 64Mi, cpu 500m, pids unlimited\n"
        "Command:         /bin/sh -c\n"
        "Args:            <the image's cmd>\n"
        "Working Dir:     <the image's>\n"
        "User:            <the image's>\n"
        "Read-only Root:  false\n"
        "Security:        capabilities -ALL +NET_BIND_SERVICE, seccomp Unconfined\n"
        "Env:             MODE=prod\n"
        "Ports:           <none>\n"
        "Mounts:          tmpfs /www (1Mi)\n"
        "Liveness:        http-get :8080/healthz delay=0s timeout=1s period=10s #success=1 "
        "#failure=3\n"
        "Readiness:       <none>\n"
        "Startup:         exec test -f /tmp/up delay=0s timeout=1s period=10s #success=1 "
        "#failure=30\n"
        "Generation:      3 (spec hash 0123456789abcdef)\n"
        "Created:         2026-11-28 06:01:02 (5m ago)\n"
        "Updated:         2026-11-28 06:01:02 (5m ago)\n"
        "Replica Status:\n"
        "  INDEX  NODE  PHASE      READY  CONTAINER  PID  RESTARTS  LAST-EXIT  MESSAGE\n"
        "  0      pi1   Running    yes    c0         42   2         1          started\n"
        "  1      pi2   CrashLoop  no     -          -    3         137        back-off 4s\n"
        "Events:\n"
        "  TIME                 REPLICA  TYPE     MESSAGE\n"
        "  2026-11-28 06:01:02  1        BackOff  restarting in 4s\n");
  CHECK(DescribeText(*w, spec, {}, 0).find("\nEvents:          <none>\n") != std::string::npos);
  spec.security_context.privileged = true;
  CHECK(DescribeText(*w, spec, {}, 0).find("\nSecurity:        privileged (root on the host)\n") !=
        std::string::npos);
  spec.security_context = {};
  CHECK(DescribeText(*w, spec, {}, 0).find("\nSecurity:        <default>\n") != std::string::npos);
}

// Two members as petreld answers GET /v1/cluster, with a key petrelctl does not know.
json ServerCluster() {
  return ParseJson(R"({
    "member": true, "clusterId": "c0ffee", "self": "pi1", "leader": "pi1",
    "term": 7, "appliedIndex": 42, "futureKey": 1,
    "settings": {"heartbeat": "200ms", "nodeLostAfter": "1s500ms", "fenceAfter": "1s"},
    "members": [
      {"name": "pi1", "id": 1, "role": "voter", "status": "Ready", "leader": true,
       "address": "10.0.0.1:7400", "labels": {}, "joinedAt": 1795845662000,
       "lastHeard": 0},
      {"name": "pi2", "id": 18446744073709551615, "role": "witness", "status": "Lost",
       "leader": false, "address": "[fd00::2]:7400",
       "labels": {"zone": "north", "disk": "ssd"}, "joinedAt": 1795845722000,
       "lastHeard": 1795845900000}
    ]})")
      .value();
}

TEST_CASE("petrelctl: nodes and the cluster decode strictly, naming the field") {
  auto c = DecodeCluster(ServerCluster());
  REQUIRE(c.ok());
  CHECK(c->member);
  CHECK(c->cluster_id == "c0ffee");
  CHECK(c->term == 7);
  CHECK(c->applied_index == 42);
  CHECK(c->settings.node_lost_after == "1s500ms");
  REQUIRE(c->members.size() == 2);
  CHECK(c->members[1].id == UINT64_MAX);  // Raft ids use all 64 bits
  CHECK(c->members[1].labels ==
        std::map<std::string, std::string>{{"disk", "ssd"}, {"zone", "north"}});
  auto list = DecodeNodeList({{"items", ServerCluster()["members"]}});
  REQUIRE(list.ok());
  CHECK(list->size() == 2);
  CHECK(DecodeNode(ServerCluster()["members"][0]).value().leader);

  const std::pair<std::function<void(json*)>, const char*> cases[] = {
      {[](json* j) { (*j)["members"][1]["leader"] = "no"; },
       "members[1].leader: must be true or false"},
      {[](json* j) { (*j)["members"][0]["id"] = -1; },
       "members[0].id: must be an unsigned integer"},
      {[](json* j) { (*j)["members"][1]["labels"]["zone"] = 3; },
       "members[1].labels.zone: must be a string"},
      {[](json* j) { (*j)["members"][0]["labels"] = json::array(); },
       "members[0].labels: must be an object"},
      {[](json* j) { (*j)["settings"].erase("fenceAfter"); }, "settings.fenceAfter: is missing"},
      {[](json* j) { j->erase("term"); }, "term: is missing"},
      {[](json* j) { (*j)["members"] = json::object(); }, "members: must be an array"},
  };
  for (const auto& bad : cases) {
    json j = ServerCluster();
    bad.first(&j);
    CHECK(DecodeCluster(j).status().message() == bad.second);
  }
  CHECK(DecodeNodeList(json::object()).status().message() == "items: is missing");
  CHECK(DecodeToken(ParseJson(R"({"token":"K10::s"})").value()).value() == "K10::s");
  CHECK(DecodeToken(ParseJson(R"({"token":""})").value()).status().message() == "token: is empty");
  CHECK(DecodeToken(ParseJson(R"({})").value()).status().message() == "token: is missing");
}

TEST_CASE("petrelctl: cluster set decodes the settings petreld answers and prints one line") {
  auto s = DecodeSettings(ServerCluster()["settings"]);
  REQUIRE(s.ok());
  CHECK(SettingsText(*s) == "heartbeat 200ms, node lost after 1s500ms, fence after 1s");
  json j = ServerCluster()["settings"];
  j.erase("heartbeat");
  CHECK(DecodeSettings(j).status().message() == "heartbeat: is missing");
  j = ServerCluster()["settings"];
  j["nodeLostAfter"] = 1500;
  CHECK(DecodeSettings(j).status().message() == "nodeLostAfter: must be a string");
  CHECK(DecodeSettings(json::array()).status().message().find("must be an object") !=
        std::string::npos);
}

TEST_CASE("petrelctl: get nodes' table") {
  auto c = DecodeCluster(ServerCluster());
  REQUIRE(c.ok());
  std::vector<std::vector<std::string>> rows = {NodeHeader()};
  for (const NodeView& n : c->members) rows.push_back(NodeRow(n, 1795845662000 + 5 * kMin));
  CHECK(FormatTable(rows) ==
        "NAME  ROLE     STATUS  LEADER  ADDRESS         AGE\n"
        "pi1   voter    Ready   yes     10.0.0.1:7400   5m\n"
        "pi2   witness  Lost    no      [fd00::2]:7400  4m\n");
  NodeView unknown;
  unknown.name = "pi3";
  CHECK(NodeRow(unknown, 0)[5] == "-");
}

TEST_CASE("petrelctl: cluster status, of a member and of a node not in one") {
  setenv("TZ", "UTC", 1);
  tzset();
  auto c = DecodeCluster(ServerCluster());
  REQUIRE(c.ok());
  CHECK(ClusterStatusText(*c, 1795845662000 + 5 * kMin) ==
        "Cluster:         c0ffee\n"
        "This Node:       pi1\n"
        "Leader:          pi1\n"
        "Term:            7\n"
        "Applied Index:   42\n"
        "Settings:        heartbeat 200ms, node lost after 1s500ms, fence after 1s\n"
        "Members:\n"
        "  NAME  ROLE     STATUS  LEADER  ADDRESS         AGE\n"
        "  pi1   voter    Ready   yes     10.0.0.1:7400   5m\n"
        "  pi2   witness  Lost    no      [fd00::2]:7400  4m\n");
  c->leader.clear();
  CHECK(ClusterStatusText(*c, 0).find(
            "\nLeader:          <none> (no quorum, or an election is under way)\n") !=
        std::string::npos);
  ClusterView alone;
  alone.self = "pi1";
  CHECK(ClusterStatusText(alone, 0) ==
        "Node pi1 is not in a cluster yet: run 'petrelctl cluster init' on it to start one, or\n"
        "restart its petreld with --join ADDR:PORT --token TOKEN to join one.\n");
}

TEST_CASE("petrelctl: describe node shows its fields and the replicas it runs") {
  setenv("TZ", "UTC", 1);
  tzset();
  auto c = DecodeCluster(ServerCluster());
  REQUIRE(c.ok());
  auto w = DecodeWorkload(ServerWorkload());
  REQUIRE(w.ok());
  const petrel::TimeMs now = 1795845662000 + 5 * kMin;
  CHECK(DescribeNodeText(c->members[1], {*w}, now) ==
        "Name:            pi2\n"
        "ID:              18446744073709551615\n"
        "Role:            witness (votes, runs no workloads)\n"
        "Status:          Lost\n"
        "Leader:          no\n"
        "Address:         [fd00::2]:7400\n"
        "Labels:          disk=ssd\n"
        "                 zone=north\n"
        "Joined:          2026-11-28 06:02:02 (4m ago)\n"
        "Last Heard:      2026-11-28 06:05:00 (62s ago)\n"
        "Replicas:\n"
        "  WORKLOAD  REPLICA  PHASE      RESTARTS  CONTAINER\n"
        "  web       1        CrashLoop  3         -\n");
  std::string pi1 = DescribeNodeText(c->members[0], {*w}, now);
  CHECK(pi1.find("\nLabels:          <none>\n") != std::string::npos);
  CHECK(pi1.find("\nLast Heard:      never\n") != std::string::npos);
  CHECK(pi1.find("\n  web       0        Running  2         c0\n") != std::string::npos);
  CHECK(DescribeNodeText(c->members[0], {}, now).find("\nReplicas:        <none>\n") !=
        std::string::npos);
}

TEST_CASE("petrelctl: flags as kubectl reads them") {
  std::vector<FlagDef> defs = {
      {"output", 'o', "FORMAT", ""}, {"filename", 'f', "FILE", ""}, {"follow", 0, "", ""}};
  auto p = ParseFlags(
      {"get", "-ojson", "workloads", "-f", "a", "--filename=b", "--follow", "--", "-x"}, defs);
  REQUIRE(p.ok());
  CHECK(p->positional == std::vector<std::string>{"get", "workloads", "-x"});
  CHECK(p->Last("output") == "json");
  CHECK(p->All("filename") == std::vector<std::string>{"a", "b"});
  CHECK(p->Has("follow"));
  CHECK(!p->Has("nope"));
  CHECK(p->Last("nope", "dflt") == "dflt");

  CHECK(ParseFlags({"-o=wide", "--output", "json"}, defs)->Last("output") == "json");
  CHECK(ParseFlags({"-"}, defs)->positional == std::vector<std::string>{"-"});
  CHECK(ParseFlags({"--bogus"}, defs).status().message() == "unknown flag \"--bogus\"");
  CHECK(ParseFlags({"-x"}, defs).status().message() == "unknown flag \"-x\"");
  CHECK(ParseFlags({"-o"}, defs).status().message() == "flag -o needs a value (FORMAT)");
  CHECK(ParseFlags({"--follow=yes"}, defs).status().message() == "flag --follow takes no value");
}

TEST_CASE("petrelctl: get images rows, sizes and pull lines") {
  CHECK(HumanBytes(512) == "512B");
  CHECK(HumanBytes(1048576) == "1.0MiB");
  CHECK(HumanBytes(1288490) == "1.2MiB");
  CHECK(HumanBytes(int64_t{3} << 30) == "3.0GiB");

  auto images = DecodeImageList(ParseJson(R"({"items":[{"id":"sha256:3f57d9401f8d42f9",
      "refs":["a:1","b:2"],"sizeBytes":4500000,"createdAt":1000,"inUse":true}]})")
                                    .value());
  REQUIRE(images.ok());
  REQUIRE(images->size() == 1);
  CHECK(ImageRow((*images)[0], 13000) ==
        std::vector<std::string>{"3f57d9401f8d", "a:1,b:2", "4.3MiB", "12s", "yes"});
  CHECK(DecodeImageList(ParseJson(R"({"items":[{"id":"x","refs":"a"}]})").value())
            .status()
            .message() == "items[0].sizeBytes: is missing");

  petrel::PullProgress p;
  petrel::Status result;
  auto line = DecodePullLine(ParseJson(R"({"progress":{"phase":"downloading","bytesDone":1048576,
      "bytesTotal":4194304,"layersDone":1,"layersTotal":2}})")
                                 .value(),
                             &p, &result);
  REQUIRE(line.ok());
  CHECK(*line);
  CHECK(PullProgressText(p, 0, 0) == "downloading 1.0 of 4.0 MiB, 1/2 layers");
  CHECK(PullProgressText(p, 1048576, 8) ==
        "[##......] downloading 1.0 of 4.0 MiB, 1/2 layers, 1.0MiB/s, ETA 3s");
  line = DecodePullLine(ParseJson(R"({"image":"a","pulled":true})").value(), &p, &result);
  REQUIRE(line.ok());
  CHECK(!*line);
  CHECK(result.ok());
  line = DecodePullLine(ParseJson(R"({"image":"a","error":"a: no","status":409})").value(), &p,
                        &result);
  REQUIRE(line.ok());
  CHECK(result.code() == petrel::Status::Code::kFailedPrecondition);
  CHECK(result.message() == "a: no");
  CHECK(!DecodePullLine(ParseJson(R"({"image":"a"})").value(), &p, &result).ok());
}

}  // namespace
}  // namespace petrelctl
