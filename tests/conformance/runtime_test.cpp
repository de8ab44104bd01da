// The crun/runc adapter against the real runtime named by $PETREL_TEST_RUNTIME
// ("crun" or "runc"; CTest runs this suite once per runtime). Nothing is skipped:
// a missing runtime, image tool or privilege is a failure.
//
// Part one is the ContainerRuntime contract; part two runs the Orchestrator on top
// (restart policies, scaling, replacement, deletion, petrel killed and restarted).
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "petrel/crun.h"
#include "petrel/orchestrator.h"
#include "tests/lib/files.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using petrel::testing::TempDir;

std::string RuntimeName() {
  const char* r = getenv("PETREL_TEST_RUNTIME");
  return r != nullptr ? r : "crun";
}

// The busybox image, built once per run by the script the README uses.
const std::string& BusyboxImage() {
  static const std::string image = [] {
    if (const char* given = getenv("PETREL_TEST_IMAGE")) return std::string(given);
    static TempDir dir;
    const std::string out = dir.path() + "/busybox.tar";
    const std::string cmd = std::string(PETREL_SOURCE_DIR) +
                            "/examples/images/make-busybox-image " + out + " >/dev/null";
    REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
    return "oci-archive:" + out;
  }();
  return image;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls `cond` every 20 ms for up to `seconds`; real containers take real time.
bool WaitFor(const std::function<bool()>& cond, double seconds = 20) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(int(seconds * 1000));
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

std::shared_ptr<ContainerRuntime> OpenRuntime(const std::string& state, int64_t log_max = 1 << 20) {
  CrunOptions o;
  o.runtime = RuntimeName();
  o.state_dir = state;
  o.log_max_bytes = log_max;
  Result<std::shared_ptr<ContainerRuntime>> rt = NewCrunRuntime(o);
  REQUIRE_MESSAGE(rt.ok(), rt.status().ToString());
  return *rt;
}

// Container ids carry the runtime's name, so the crun and runc suites can run at the
// same time without sharing cgroup paths.
std::string Id(const std::string& name) { return RuntimeName() + "-" + name; }

ContainerSpec Spec(const std::string& name, std::vector<std::string> command) {
  ContainerSpec s;
  s.name = Id(name);
  s.image = BusyboxImage();
  s.command = std::move(command);
  s.labels = {{"test", "conformance"}, {"name", s.name}};
  return s;
}

// Everything a container leaves behind must be gone: its directory, mounts, cgroups
// and the runtime's record.
void CheckNoLeaks(const std::string& state, const std::string& id) {
  CAPTURE(id);
  CHECK_FALSE(fs::exists(state + "/containers/" + id));
  CHECK_FALSE(fs::exists(state + "/runtime/" + id));
  CHECK(ReadAll("/proc/self/mountinfo").find(state + "/containers/" + id) == std::string::npos);
  for (const char* c : {"memory", "cpu", "pids"}) {
    CHECK_FALSE(fs::exists(std::string("/sys/fs/cgroup/") + c + "/petrel/" + id));
  }
  CHECK_FALSE(fs::exists("/sys/fs/cgroup/petrel/" + id));
}

struct Exits {
  std::mutex mu;
  std::map<std::string, int> codes;
  void Install(ContainerRuntime* rt) {
    rt->SetExitHandler([this](const std::string& id, int code) {
      std::lock_guard<std::mutex> lock(mu);
      codes[id] = code;
    });
  }
  std::optional<int> Of(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = codes.find(id);
    if (it == codes.end()) return std::nullopt;
    return it->second;
  }
};

// Runs a container to its end; returns its exit code from Inspect.
int RunToEnd(ContainerRuntime* rt, const ContainerSpec& spec) {
  Result<std::string> id = rt->Create(spec);
  REQUIRE_MESSAGE(id.ok(), id.status().ToString());
  Status s = rt->Start(*id);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  REQUIRE(WaitFor([&] {
    auto info = rt->Inspect(*id);
    return info.ok() && info->state == ContainerState::kExited;
  }));
  return rt->Inspect(*id)->exit_code;
}

TEST_SUITE("runtime") {
  TEST_CASE("a container runs to completion, its exit code, output and exit call arrive") {
    TempDir state;
    auto rt = OpenRuntime(state.path());
    CHECK(rt->Name() == RuntimeName());
    Exits exits;
    exits.Install(rt.get());
    ContainerSpec spec = Spec("done", {"/bin/sh", "-c", "echo out; echo err >&2; exit 7"});
    CHECK(RunToEnd(rt.get(), spec) == 7);
    CHECK(WaitFor([&] { return exits.Of(Id("done")).has_value(); }));
    CHECK(exits.Of(Id("done")) == 7);
    auto info = rt->Inspect(Id("done"));
    REQUIRE(info.ok());
    CHECK(info->labels.at("name") == Id("done"));
    CHECK(info->started_at > 0);
    CHECK(info->finished_at >= info->started_at);
    auto logs = rt->Logs(Id("done"), {});
    REQUIRE(logs.ok());
    CHECK(logs->data == "out\nerr\n");
    CHECK(logs->start_offset == 0);
    CHECK(logs->end_offset == 8);

    CHECK(rt->Create(spec).status().code() == Status::Code::kAlreadyExists);
    REQUIRE(rt->Remove(Id("done")).ok());
    CheckNoLeaks(state.path(), Id("done"));
    CHECK(rt->Inspect(Id("done")).status().IsNotFound());
    CHECK(rt->Remove(Id("done")).IsNotFound());
  }

  TEST_CASE(
      "signals: SIGTERM to a handler, SIGKILL to anything, and a running container is not "
      "removed") {
    TempDir state;
    auto rt = OpenRuntime(state.path());
    ContainerSpec polite =
        Spec("polite", {"/bin/sh", "-c", "trap 'exit 143' TERM; while :; do sleep 0.1; done"});
    ContainerSpec stubborn = Spec("stubborn", {"/bin/sleep", "3600"});
    for (auto* s : {&polite, &stubborn}) {
      REQUIRE(rt->Create(*s).ok());
      REQUIRE(rt->Start(s->name).ok());
    }
    auto info = rt->Inspect(Id("stubborn"));
    REQUIRE(info.ok());
    CHECK(info->state == ContainerState::kRunning);
    CHECK(info->pid > 0);
    CHECK(kill(info->pid, 0) == 0);
    CHECK(rt->Remove(Id("stubborn")).code() == Status::Code::kFailedPrecondition);

    auto running = rt->List({{"test", "conformance"}});
    REQUIRE(running.ok());
    CHECK(running->size() == 2);
    CHECK(rt->List({{"name", Id("polite")}})->size() == 1);

    REQUIRE(rt->Kill(Id("polite"), SIGTERM).ok());
    REQUIRE(rt->Kill(Id("stubborn"), SIGKILL).ok());
    CHECK(WaitFor([&] {
      return rt->Inspect(Id("polite"))->state == ContainerState::kExited &&
             rt->Inspect(Id("stubborn"))->state == ContainerState::kExited;
    }));
    CHECK(rt->Inspect(Id("polite"))->exit_code == 143);
    CHECK(rt->Inspect(Id("stubborn"))->exit_code == 137);
    CHECK(rt->Kill(Id("stubborn"), SIGKILL).ok());  // already gone: fine
    for (const std::string& id : {Id("polite"), Id("stubborn")}) {
      REQUIRE(rt->Remove(id).ok());
      CheckNoLeaks(state.path(), id);
    }
  }

  TEST_CASE("env, args, user, working dir, mounts, tmpfs and a read-only rootfs") {
    TempDir state, host;
    auto rt = OpenRuntime(state.path());
    ContainerSpec s = Spec("shape", {"/bin/sh", "-c"});
    s.args = {
        "echo FOO=$FOO; id -u; pwd; echo hi > /data/from-container; "
        "echo t > /scratch/t && echo tmpfs-ok; touch /rootfs-file || echo rootfs-ro; "
        "cat /proc/self/status | grep NoNewPrivs; grep -c . /proc/kcore || echo kcore-masked"};
    s.env = {{"FOO", "bar baz"}};
    s.user = "65534";
    s.working_dir = "/tmp";
    s.read_only_rootfs = true;
    MountSpec bind;
    bind.source = host.path();
    bind.target = "/data";
    MountSpec tmp;
    tmp.type = MountSpec::Type::kTmpfs;
    tmp.target = "/scratch";
    tmp.size_bytes = 1 << 20;
    s.mounts = {bind, tmp};
    chmod(host.path().c_str(), 0777);
    CHECK(RunToEnd(rt.get(), s) == 0);
    std::string out = rt->Logs(Id("shape"), {})->data;
    INFO(out);
    CHECK(out.find("FOO=bar baz\n65534\n/tmp\n") == 0);
    CHECK(out.find("tmpfs-ok") != std::string::npos);
    CHECK(out.find("rootfs-ro") != std::string::npos);
    CHECK(out.find("NoNewPrivs:\t1") != std::string::npos);
    CHECK(out.find("kcore-masked") != std::string::npos);
    CHECK(ReadAll(host.path() + "/from-container") == "hi\n");
    REQUIRE(rt->Remove(Id("shape")).ok());
    CheckNoLeaks(state.path(), Id("shape"));
  }

  TEST_CASE("a memory limit is enforced: a container allocating past it is OOM-killed") {
    TempDir state;
    auto rt = OpenRuntime(state.path());
    ContainerSpec s =
        Spec("hog", {"/bin/sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=1"});
    s.resources.memory_bytes = 16 << 20;
    CHECK(RunToEnd(rt.get(), s) == 137);
    // The same allocation without a limit succeeds: the limit, not the program, killed it.
    ContainerSpec free = Spec("free", s.command);
    CHECK(RunToEnd(rt.get(), free) == 0);
    for (const std::string& id : {Id("hog"), Id("free")}) {
      REQUIRE(rt->Remove(id).ok());
      CheckNoLeaks(state.path(), id);
    }
  }

  TEST_CASE("logs are capped and rotated, offsets let a reader follow them") {
    TempDir state;
    auto rt = OpenRuntime(state.path(), 4096);
    // 1000 lines of 20 bytes = 20000 bytes through files of 4 KiB.
    ContainerSpec s = Spec(
        "chatty",
        {"/bin/sh", "-c", "i=0; while [ $i -lt 1000 ]; do printf '%019d\\n' $i; i=$((i+1)); done"});
    CHECK(RunToEnd(rt.get(), s) == 0);
    auto all = rt->Logs(Id("chatty"), LogOptions{0, 1 << 20});
    REQUIRE(all.ok());
    CHECK(all->end_offset == 20000);
    CHECK(all->start_offset > 0);  // the oldest output was rotated away
    CHECK(all->data.size() <= 2 * 4096);
    CHECK(all->data.size() == static_cast<size_t>(all->end_offset - all->start_offset));
    CHECK(all->data.substr(all->data.size() - 20) == "0000000000000000999\n");
    auto tail = rt->Logs(Id("chatty"), LogOptions{-1, 40});
    CHECK(tail->data == "0000000000000000998\n0000000000000000999\n");
    auto next = rt->Logs(Id("chatty"), LogOptions{all->end_offset, 100});
    CHECK(next->data.empty());
    CHECK(next->start_offset == 20000);
    int files = 0;
    for (auto& e : fs::directory_iterator(state.path() + "/containers/" + Id("chatty"))) {
      if (e.path().filename().string().rfind("log.", 0) == 0) files++;
    }
    CHECK(files == 2);
    REQUIRE(rt->Remove(Id("chatty")).ok());
  }

  TEST_CASE("a new runtime object adopts running containers and hears their exit") {
    TempDir state;
    {
      auto rt = OpenRuntime(state.path());
      REQUIRE(rt->Create(Spec("lasting", {"/bin/sleep", "3600"})).ok());
      REQUIRE(rt->Create(Spec("waiting", {"/bin/sleep", "3600"})).ok());
      REQUIRE(rt->Start(Id("lasting")).ok());
    }  // petrel's side is gone; the containers are not
    auto rt = OpenRuntime(state.path());
    Exits exits;
    exits.Install(rt.get());
    auto info = rt->Inspect(Id("lasting"));
    REQUIRE(info.ok());
    CHECK(info->state == ContainerState::kRunning);
    CHECK(rt->Inspect(Id("waiting"))->state == ContainerState::kCreated);
    REQUIRE(rt->Start(Id("waiting")).ok());
    CHECK(rt->Inspect(Id("waiting"))->state == ContainerState::kRunning);
    REQUIRE(rt->Kill(Id("lasting"), SIGKILL).ok());
    REQUIRE(rt->Kill(Id("waiting"), SIGKILL).ok());
    CHECK(WaitFor([&] {
      return exits.Of(Id("lasting")).has_value() && exits.Of(Id("waiting")).has_value();
    }));
    CHECK(exits.Of(Id("lasting")) == 137);
    for (const std::string& id : {Id("lasting"), Id("waiting")}) {
      REQUIRE(rt->Remove(id).ok());
      CheckNoLeaks(state.path(), id);
    }
  }

  TEST_CASE("calls for different containers overlap safely, and Start answers for each") {
    TempDir state;
    auto rt = OpenRuntime(state.path());
    REQUIRE(rt->PullImage(BusyboxImage()).ok());
    constexpr int kCount = 8;
    std::vector<std::string> ids(kCount);
    std::vector<Status> results(kCount);
    std::atomic<bool> stop_listing{false};
    std::atomic<int> lists{0};
    // A List and an Inspect keep running beside the creates and starts, as petrel's
    // lister and API do.
    std::thread lister([&] {
      while (!stop_listing) {
        Result<std::vector<ContainerInfo>> all = rt->List({});
        CHECK_MESSAGE(all.ok(), all.status().ToString());
        lists++;
      }
    });
    std::vector<std::thread> threads;
    for (int i = 0; i < kCount; i++) {
      threads.emplace_back([&, i] {
        Result<std::string> id =
            rt->Create(Spec("many" + std::to_string(i), {"/bin/sleep", "3600"}));
        if (!id.ok()) {
          results[i] = id.status();
          return;
        }
        ids[i] = *id;
        results[i] = rt->Start(*id);
      });
    }
    for (std::thread& t : threads) t.join();
    stop_listing = true;
    lister.join();
    CHECK(lists > 0);
    std::set<int> pids;
    for (int i = 0; i < kCount; i++) {
      CAPTURE(i);
      REQUIRE_MESSAGE(results[i].ok(), results[i].ToString());
      auto info = rt->Inspect(ids[i]);
      REQUIRE(info.ok());
      CHECK(info->state == ContainerState::kRunning);
      pids.insert(info->pid);
    }
    CHECK(pids.size() == static_cast<size_t>(kCount));
    CHECK(rt->Start(ids[0]).code() == Status::Code::kFailedPrecondition);  // started by then
    CHECK(rt->Start(Id("nothere")).IsNotFound());
    for (const std::string& id : ids) REQUIRE(rt->Kill(id, SIGKILL).ok());
    for (const std::string& id : ids) {
      CHECK(WaitFor([&] { return rt->Inspect(id)->state == ContainerState::kExited; }));
      REQUIRE(rt->Remove(id).ok());
      CheckNoLeaks(state.path(), id);
    }
  }

  TEST_CASE("a bad image or command fails Create with the reason and leaves nothing") {
    TempDir state;
    auto rt = OpenRuntime(state.path());
    ContainerSpec missing = Spec("noimage", {"/bin/true"});
    missing.image = "oci-archive:" + state.path() + "/nope.tar";
    Result<std::string> r = rt->Create(missing);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("nope.tar") != std::string::npos);
    CheckNoLeaks(state.path(), Id("noimage"));

    ContainerSpec nocmd = Spec("nocmd", {"/no/such/binary"});
    Result<std::string> id = rt->Create(nocmd);
    REQUIRE_MESSAGE(id.ok(), id.status().ToString());  // Create only prepares the bundle
    // Both runtimes refuse at start, and the error carries their words.
    Status s = rt->Start(*id);
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().find("start container " + *id + ": " + RuntimeName() + ": ") == 0);
    CHECK(s.message().find("/no/such/binary") != std::string::npos);
    CHECK(rt->Inspect(*id)->state == ContainerState::kExited);
    REQUIRE(rt->Remove(*id).ok());
    CheckNoLeaks(state.path(), Id("nocmd"));
  }
}

// --- the Orchestrator on the real runtime ---

struct Petrel {
  TempDir dir;
  std::shared_ptr<ContainerRuntime> rt;
  std::unique_ptr<Orchestrator> orch;

  Petrel() { Open(); }
  void Open() {
    rt = OpenRuntime(dir.path() + "/oci");
    Options o;
    o.state_dir = dir.path();
    o.runtime = rt;
    o.node_name = "n-" + RuntimeName();
    o.resync_interval_ms = 500;
    o.log_sink = [](LogLevel, std::string_view) {};
    REQUIRE(Orchestrator::Open(o, &orch).ok());
    REQUIRE(orch->Start().ok());
  }
  void Close() {
    orch.reset();
    rt.reset();
  }
  ~Petrel() {
    if (!orch) return;
    // Leave nothing running behind a failed test.
    auto all = orch->List();
    if (all.ok()) {
      for (auto& w : *all) (void)orch->Delete(w.spec.name);
    }
    WaitFor([&] { return rt->List({})->empty(); }, 30);
  }
  WorkloadState Get(const std::string& name) {
    auto r = orch->Get(name);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    return *r;
  }
  size_t Containers(const std::string& workload) {
    auto l = rt->List({{kLabelWorkload, workload}});
    REQUIRE(l.ok());
    return l->size();
  }
};

WorkloadSpec Workload(const std::string& name, const std::string& script) {
  WorkloadSpec w;
  w.name = name;
  w.image = BusyboxImage();
  w.command = {"/bin/sh", "-c", script};
  w.backoff.initial_ms = 100;
  w.backoff.max_ms = 400;
  w.termination_grace_ms = 2000;
  return w;
}

TEST_SUITE("orchestrator-on-runtime") {
  TEST_CASE("restart policies: Never keeps the exit, OnFailure retries failures, Always restarts") {
    Petrel p;
    WorkloadSpec never = Workload("never", "exit 3");
    never.restart_policy = RestartPolicy::kNever;
    WorkloadSpec onfail = Workload("onfail", "exit 1");
    onfail.restart_policy = RestartPolicy::kOnFailure;
    WorkloadSpec onfail_ok = Workload("onfail-ok", "exit 0");
    onfail_ok.restart_policy = RestartPolicy::kOnFailure;
    WorkloadSpec always = Workload("always", "exit 0");
    REQUIRE(p.orch->Apply({never, onfail, onfail_ok, always}).ok());
    CHECK(WaitFor(
        [&] {
          return p.Get("never").replicas[0].phase == Phase::kExited &&
                 p.Get("onfail-ok").replicas[0].phase == Phase::kExited &&
                 p.Get("onfail").replicas[0].restarts >= 2 &&
                 p.Get("always").replicas[0].restarts >= 2;
        },
        30));
    CHECK(p.Get("never").replicas[0].last_exit_code == 3);
    CHECK(p.Get("never").replicas[0].restarts == 0);
    CHECK(p.Get("onfail-ok").replicas[0].restarts == 0);
    CHECK(p.Get("onfail-ok").replicas[0].last_exit_code == 0);
    CHECK(p.Get("onfail").replicas[0].last_exit_code == 1);
    // Back-off shows in the events.
    auto events = p.orch->Events(0, 10000);
    REQUIRE(events.ok());
    int backoffs = 0;
    for (const Event& e : *events) backoffs += e.workload == "onfail" && e.type == "BackOff";
    CHECK(backoffs >= 2);
  }

  TEST_CASE("scale 1 -> 3 -> 0, then a spec change replaces, then delete removes everything") {
    Petrel p;
    WorkloadSpec w = Workload("web", "trap 'exit 0' TERM; while :; do sleep 0.1; done");
    REQUIRE(p.orch->Apply(w).ok());
    CHECK(WaitFor([&] { return p.Get("web").ready_replicas == 1; }));
    w.replicas = 3;
    REQUIRE(p.orch->Apply(w).ok());
    CHECK(WaitFor([&] { return p.Get("web").ready_replicas == 3 && p.Containers("web") == 3; }));
    w.replicas = 0;
    REQUIRE(p.orch->Apply(w).ok());
    CHECK(WaitFor([&] { return p.Containers("web") == 0; }));
    w.replicas = 2;
    REQUIRE(p.orch->Apply(w).ok());
    CHECK(WaitFor([&] { return p.Get("web").ready_replicas == 2; }));
    const std::string old_hash = p.Get("web").spec_hash;
    w.env["VERSION"] = "2";
    REQUIRE(p.orch->Apply(w).ok());
    CHECK(WaitFor(
        [&] {
          auto l = p.rt->List({{kLabelWorkload, "web"}});
          if (!l.ok() || l->size() != 2) return false;
          for (auto& c : *l) {
            if (c.labels[kLabelSpecHash] == old_hash || c.state != ContainerState::kRunning)
              return false;
          }
          return true;
        },
        30));
    std::vector<std::string> ids;
    auto listed = p.rt->List({{kLabelWorkload, "web"}});
    REQUIRE(listed.ok());
    for (auto& c : *listed) ids.push_back(c.id);
    REQUIRE(p.orch->Delete("web").ok());
    CHECK(WaitFor([&] { return p.Containers("web") == 0; }));
    for (const std::string& id : ids) CheckNoLeaks(p.dir.path() + "/oci", id);
  }
}

}  // namespace
}  // namespace petrel
