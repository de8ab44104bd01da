// Schedule(): where replicas go, on values.
#include "lib/cluster/schedule.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

namespace petrel::internal {
namespace {

ClusterWorkload Workload(const std::string& name, int replicas, const std::string& through,
                         std::vector<std::string> assigned = {},
                         std::map<std::string, std::string> selector = {},
                         std::vector<std::string> preferred = {}) {
  WorkloadSpec spec;
  spec.name = name;
  spec.image = "oci:/images/a";
  spec.replicas = replicas;
  spec.node_selector = std::move(selector);
  spec.preferred_nodes = std::move(preferred);
  ClusterWorkload w;
  w.name = name;
  w.spec_json = SpecToJson(spec);
  w.node = through;
  w.assigned = std::move(assigned);
  return w;
}

std::vector<NodeView> Nodes(std::initializer_list<std::string> names) {
  std::vector<NodeView> out;
  for (const std::string& n : names) {
    NodeView v;
    v.name = n;
    v.ready = true;
    out.push_back(v);
  }
  return out;
}

TEST_CASE("schedule: replicas spread over the nodes and stay where they are") {
  std::map<std::string, ClusterWorkload> ws = {{"web", Workload("web", 3, "a")}};
  Placement p = Schedule(ws, Nodes({"a", "b", "c"}));
  REQUIRE(p.changes.count("web") == 1);
  std::vector<std::string> got = p.changes["web"];
  CHECK(got[0] == "a");  // the node it was applied through comes first
  CHECK(std::set<std::string>(got.begin(), got.end()) == std::set<std::string>{"a", "b", "c"});
  ws["web"].assigned = got;
  CHECK(Schedule(ws, Nodes({"a", "b", "c"})).changes.empty());  // stable
}

TEST_CASE("schedule: a lost node's replicas move, the others stay") {
  std::map<std::string, ClusterWorkload> ws = {{"web", Workload("web", 2, "a", {"a", "b"})},
                                               {"db", Workload("db", 1, "b", {"b"})}};
  std::vector<NodeView> nodes = Nodes({"a", "b", "c"});
  nodes[1].ready = false;  // b is Lost
  Placement p = Schedule(ws, nodes);
  REQUIRE(p.changes.count("web") == 1);
  CHECK(p.changes["web"][0] == "a");
  CHECK(p.changes["web"][1] == "c");                        // a already has one of web's: spread
  CHECK(p.changes["db"] == std::vector<std::string>{"c"});  // the least loaded
}

TEST_CASE("schedule: witnesses and draining nodes get nothing - preferredNodes come first") {
  std::vector<NodeView> nodes = Nodes({"a", "b", "w"});
  nodes[2].witness = true;
  nodes[0].draining = true;
  std::map<std::string, ClusterWorkload> ws = {{"web", Workload("web", 2, "a", {"a", "b"})}};
  Placement p = Schedule(ws, nodes);
  CHECK(p.changes["web"] == std::vector<std::string>{"b", "b"});
  ws = {{"mqtt", Workload("mqtt", 1, "a", {}, {}, {"x", "b", "a"})}};
  nodes[0].draining = false;
  CHECK(Schedule(ws, nodes).changes["mqtt"] == std::vector<std::string>{"b"});
}

ClusterWorkload Warm(ClusterWorkload w, bool exclusive = false) {
  Result<WorkloadSpec> spec = SpecFromJson(w.spec_json);
  REQUIRE(spec.ok());
  spec->standby = "warm";
  spec->exclusive = exclusive;
  w.spec_json = SpecToJson(*spec);
  return w;
}

TEST_CASE("schedule: a warm standby is the node next in line and takes the replica first") {
  std::map<std::string, ClusterWorkload> ws = {
      {"mqtt", Warm(Workload("mqtt", 1, "a", {}, {}, {"a", "c", "b"}))}};
  std::vector<NodeView> nodes = Nodes({"a", "b", "c"});
  Placement p = Schedule(ws, nodes);
  CHECK(p.changes["mqtt"] == std::vector<std::string>{"a"});
  CHECK(p.standby_changes["mqtt"] == "c");  // preferredNodes' next
  ws["mqtt"].assigned = {"a"};
  ws["mqtt"].standby = "c";
  p = Schedule(ws, nodes);
  CHECK(p.changes.empty());  // stable
  CHECK(p.standby_changes.empty());

  // Without preferredNodes: the least loaded node that runs none of it.
  std::map<std::string, ClusterWorkload> two = {{"web", Warm(Workload("web", 1, "a", {"a"}))},
                                                {"db", Workload("db", 1, "b", {"b"})}};
  CHECK(Schedule(two, nodes).standby_changes["web"] == "c");

  // a is Lost: the replica goes to the standby (not to b, preferred before it would be
  // wrong: c is next in line), and a new standby is chosen among the rest.
  nodes[0].ready = false;
  p = Schedule(ws, nodes);
  CHECK(p.changes["mqtt"] == std::vector<std::string>{"c"});
  CHECK(p.standby_changes["mqtt"] == "b");

  // A standby that stops qualifying (Draining) is replaced; none left: none.
  nodes[0].ready = true;
  nodes[2].draining = true;
  p = Schedule(ws, nodes);
  CHECK(p.standby_changes["mqtt"] == "b");
  nodes[1].draining = true;
  p = Schedule(ws, nodes);
  CHECK(p.standby_changes.count("mqtt") == 1);
  CHECK(p.standby_changes["mqtt"] == "");

  // standby removed from the spec: the standby goes too.
  nodes[1].draining = nodes[2].draining = false;
  ws["mqtt"] = Workload("mqtt", 1, "a", {"a"});
  ws["mqtt"].standby = "c";
  p = Schedule(ws, nodes);
  CHECK(p.standby_changes["mqtt"] == "");
}

TEST_CASE("schedule: an exclusive workload keeps its standby while it waits - then moves there") {
  std::map<std::string, ClusterWorkload> ws = {{"plc", Warm(Workload("plc", 1, "a", {"a"}), true)}};
  ws["plc"].standby = "b";
  std::vector<NodeView> nodes = Nodes({"a", "b", "c"});
  nodes[0].draining = true;
  nodes[0].running = {"plc"};  // still running it
  Placement p = Schedule(ws, nodes);
  CHECK(p.changes["plc"] == std::vector<std::string>{""});
  CHECK(p.standby_changes.empty());  // b stays warm meanwhile
  ws["plc"].assigned = {""};
  nodes[0].running.clear();
  p = Schedule(ws, nodes);
  CHECK(p.changes["plc"] == std::vector<std::string>{"b"});
  CHECK(p.standby_changes["plc"] == "c");
}

TEST_CASE("schedule: nodeSelector - an unplaceable replica is reported") {
  std::vector<NodeView> nodes = Nodes({"a", "b"});
  nodes[1].labels = {{"zone", "attic"}};
  std::map<std::string, ClusterWorkload> ws = {
      {"cam", Workload("cam", 1, "a", {}, {{"zone", "attic"}})},
      {"gpu", Workload("gpu", 1, "a", {}, {{"gpu", "yes"}})}};
  Placement p = Schedule(ws, nodes);
  CHECK(p.changes["cam"] == std::vector<std::string>{"b"});
  CHECK(p.changes.count("gpu") == 0);  // nothing changes: it was not placed and still is not
  REQUIRE(p.unplaced.count("gpu") == 1);
  CHECK(p.unplaced["gpu"].find("gpu=yes") != std::string::npos);
}

TEST_CASE("schedule: scaling down drops the highest replicas") {
  std::map<std::string, ClusterWorkload> ws = {{"web", Workload("web", 1, "a", {"a", "b", "c"})}};
  CHECK(Schedule(ws, Nodes({"a", "b", "c"})).changes["web"] == std::vector<std::string>{"a"});
}

TEST_CASE("schedule: an exclusive workload stops on its node before it starts on another") {
  ClusterWorkload w = Workload("lock", 1, "a", {"a"});
  WorkloadSpec spec = *SpecFromJson(w.spec_json);
  spec.exclusive = true;
  w.spec_json = SpecToJson(spec);
  std::map<std::string, ClusterWorkload> ws = {{"lock", w}};
  std::vector<NodeView> nodes = Nodes({"a", "b"});
  nodes[0].draining = true;
  nodes[0].running = {"lock"};
  Placement p = Schedule(ws, nodes);
  CHECK(p.changes["lock"] == std::vector<std::string>{""});  // off a first
  CHECK(p.unplaced["lock"] == "exclusive: waiting for node a to stop it");
  ws["lock"].assigned = {""};
  CHECK(Schedule(ws, nodes).changes.count("lock") == 0);  // a still runs it: wait
  nodes[0].running.clear();
  CHECK(Schedule(ws, nodes).changes["lock"] == std::vector<std::string>{"b"});
  // A Lost node is not waited for: it has fenced itself.
  ws["lock"].assigned = {"a"};
  nodes[0].draining = false;
  nodes[0].ready = false;
  nodes[0].running = {"lock"};
  CHECK(Schedule(ws, nodes).changes["lock"] == std::vector<std::string>{"b"});
}

TEST_CASE("schedule: a node takes replicas while their resources fit its capacity") {
  ClusterWorkload w = Workload("big", 3, "a");
  WorkloadSpec spec = *SpecFromJson(w.spec_json);
  spec.resources.memory_bytes = 600 << 20;
  w.spec_json = SpecToJson(spec);
  std::map<std::string, ClusterWorkload> ws = {{"big", w}};
  std::vector<NodeView> nodes = Nodes({"a", "b"});
  nodes[0].capacity_memory_bytes = 1024 << 20;  // room for one
  nodes[1].capacity_memory_bytes = 1300 << 20;  // room for two
  Placement p = Schedule(ws, nodes);
  std::vector<std::string> got = p.changes["big"];
  REQUIRE(got.size() == 3);
  CHECK(std::count(got.begin(), got.end(), "a") == 1);
  CHECK(std::count(got.begin(), got.end(), "b") == 2);
  // A fourth has no room anywhere: reported, not placed.
  spec.replicas = 4;
  ws["big"].spec_json = SpecToJson(spec);
  ws["big"].assigned = got;
  p = Schedule(ws, nodes);
  CHECK(p.changes.count("big") == 0);
  REQUIRE(p.unplaced.count("big") == 1);
  CHECK(p.unplaced["big"].find("has room") != std::string::npos);
  // A capacity of 0 limits nothing.
  nodes[0].capacity_memory_bytes = 0;
  CHECK(Schedule(ws, nodes).changes["big"][3] == "a");
}

TEST_CASE("cluster settings: fenceAfter stays below nodeLostAfter by a heartbeat and a margin") {
  ClusterSettings s;  // 200ms, 1.5s, 1s
  CHECK(CheckSettings(s).ok());
  s.fence_after_ms = 1200;
  Status bad = CheckSettings(s);
  CHECK(bad.IsInvalidArgument());
  CHECK(bad.message().find("at least fenceAfter + heartbeat + 200ms (1s600ms)") !=
        std::string::npos);
  s.node_lost_after_ms = 1600;
  CHECK(CheckSettings(s).ok());
  s.heartbeat_ms = 0;
  CHECK_FALSE(CheckSettings(s).ok());
}

}  // namespace
}  // namespace petrel::internal
