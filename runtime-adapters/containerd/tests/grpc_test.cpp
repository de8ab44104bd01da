// The gRPC transport, calls and streams, against a real containerd (issue 16), run by
// tests/integration/containerd_grpc_test.sh, which starts Debian's containerd with a
// root, state and socket of its own: $PETREL_TEST_CONTAINERD_SOCKET is that socket, and
// the script has created the namespace petrel-test (label petrel=test) with ctr. A
// missing variable is a failure, never a skip.
#include "runtime-adapters/containerd/grpc.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lib/oci/runtime_config.h"
#include "lib/util/sha256.h"
#include "petrel/runtime.h"
#include "petrel/status.h"
#include "runtime-adapters/containerd/exits.h"
#include "runtime-adapters/containerd/images.h"
#include "runtime-adapters/containerd/services.h"
#include "runtime-adapters/containerd/tests/busybox.h"
#include "tests/lib/doctest_main.h"
#include "tests/lib/files.h"
#include "tests/lib/images.h"
#include "tests/lib/wait.h"

namespace petrel::internal {
namespace {

std::unique_ptr<GrpcChannel> Channel(GrpcChannel::Options o = {}) {
  const char* socket = std::getenv("PETREL_TEST_CONTAINERD_SOCKET");
  REQUIRE_MESSAGE((socket != nullptr && *socket != '\0'),
                  "PETREL_TEST_CONTAINERD_SOCKET is not set (run containerd_grpc_test.sh)");
  if (o.socket_path.empty()) o.socket_path = socket;
  Result<std::unique_ptr<GrpcChannel>> channel = GrpcChannel::Open(o);
  REQUIRE_MESSAGE(channel.ok(), channel.status().ToString());
  return std::move(*channel);
}

// Container `id` in containerd, for a task that runs `script` with busybox sh, its OCI
// spec petrel's own (lib/oci) with root.path `root` (an absolute rootfs, or "rootfs" for
// one the task's mounts make) and its cgroups under /petrel-test, runc's state in
// `runc_root` (not the shim's default /run/containerd/runc, shared by every containerd
// of the machine).
void CreateShellContainer(GrpcChannel* channel, const std::string& id, const std::string& root,
                          const std::string& runc_root, const std::string& script,
                          const std::string& snapshotter = "") {
  ContainerSpec spec;
  spec.name = id;
  spec.command = {"/bin/sh", "-c", script};
  RuntimeConfigOptions options;
  options.rootfs = root;
  options.cgroups_path = "/petrel-test/" + id;
  Result<std::string> config = MakeRuntimeConfig(spec, ImageConfig{}, options);
  REQUIRE_MESSAGE(config.ok(), config.status().ToString());
  ContainerdContainer c;
  c.id = id;
  c.runtime = "io.containerd.runc.v2";
  c.runc_root = runc_root;
  c.spec = *config;
  if (!snapshotter.empty()) {  // its root an active snapshot of the same name: it holds it
    c.snapshotter = snapshotter;
    c.snapshot_key = id;
  }
  Result<ContainerdContainer> made = ContainerdCreateContainer(channel, c);
  REQUIRE_MESSAGE(made.ok(), made.status().ToString());
}

// A busybox root filesystem in a directory of its own (dir.Sub("rootfs")) and a
// channel in namespace petrel-test, for a case that runs tasks.
struct TaskBed {
  testing::TempDir dir;
  std::unique_ptr<GrpcChannel> channel;
  TaskBed() {
    testing::MakeBusyboxRootfs(dir.Sub("rootfs"));
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    channel = Channel(o);
  }
};

// Removes container `id` and its task, whatever state they are in (errors ignored), so
// a failed case leaves no process or mount behind.
struct RemoveContainer {
  GrpcChannel* channel;
  std::string id;
  ~RemoveContainer() {
    (void)ContainerdKillTask(channel, id, SIGKILL, true);
    (void)testing::WaitFor(
        [&] {
          return ContainerdDeleteTask(channel, id).status().code() == Status::Code::kNotFound;
        },
        10);
    (void)ContainerdDeleteContainer(channel, id);
  }
};

// The events of a subscription to `filters` and to namespaces made (for Prime), as they
// come, from a thread of its own, stopped and joined on destruction.
class EventLog {
 public:
  explicit EventLog(std::vector<std::string> filters) : channel_(Channel()) {
    filters.emplace_back(R"(topic=="/namespaces/create")");
    thread_ = std::thread([this, filters] {
      end_ = ContainerdSubscribe(
          channel_.get(), filters,
          [&](ContainerdEnvelope e) {
            std::lock_guard<std::mutex> lock(mu_);
            seen_.push_back(std::move(e));
            changed_.notify_all();
            return Status::OK();
          },
          [&] { return stop_.load(); });
    });
  }
  ~EventLog() { (void)Stop(); }
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Returns once the subscription is in place: it may not be when the first namespace
  // is made, so one more (petrel-prime-<n>) a second until an event names one, for up to
  // 10 s. How many it made, or the error.
  Result<int> Prime() {
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    std::unique_ptr<GrpcChannel> calls = Channel(o);
    auto any = [](const ContainerdEnvelope&) { return true; };
    static int named = 0;  // names stay unique across the process's logs
    int made = 0;
    do {
      PETREL_RETURN_IF_ERROR(
          ContainerdCreateNamespace(calls.get(), "petrel-prime-" + std::to_string(named++)));
      made++;
    } while (!Arrived(any, 1) && made < 10);
    if (!Arrived(any, 0)) {
      return Status::Unavailable("no event within 10 s of " + std::to_string(made) + " namespaces");
    }
    return made;
  }

  // The channel of the subscription, for a call once it is stopped.
  GrpcChannel* channel() { return channel_.get(); }

  // The first event so far or within `seconds` for which `match` holds, if any.
  bool Arrived(const std::function<bool(const ContainerdEnvelope&)>& match, int seconds,
               ContainerdEnvelope* found = nullptr) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, std::chrono::seconds(seconds), [&] {
      for (const ContainerdEnvelope& e : seen_) {
        if (!match(e)) continue;
        if (found != nullptr) *found = e;
        return true;
      }
      return false;
    });
  }

  // How the stream ended; only once stopped.
  Result<GrpcStreamEnd> Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return end_;
  }

 private:
  std::unique_ptr<GrpcChannel> channel_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<ContainerdEnvelope> seen_;
  std::atomic<bool> stop_{false};
  Result<GrpcStreamEnd> end_ = Status::Internal("the stream has not ended");
  std::thread thread_;
};

TEST_SUITE("containerd") {
  TEST_CASE("Version: containerd 1.x, twice on one channel") {
    std::unique_ptr<GrpcChannel> channel = Channel();
    for (int i = 0; i < 2; i++) {
      Result<ContainerdVersion> v = ContainerdGetVersion(channel.get());
      REQUIRE_MESSAGE(v.ok(), v.status().ToString());
      MESSAGE("containerd ", v->version, " revision ", v->revision);
      CHECK(v->version.rfind("1.", 0) == 0);
    }
  }

  TEST_CASE("Namespaces/List: the namespace the script made, in a namespaced call") {
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    Result<std::vector<std::string>> names = ContainerdListNamespaces(channel.get());
    REQUIRE_MESSAGE(names.ok(), names.status().ToString());
    CHECK(std::count(names->begin(), names->end(), "petrel-test") == 1);
  }

  TEST_CASE("a method or service containerd does not have: NotSupported, UNIMPLEMENTED") {
    std::unique_ptr<GrpcChannel> channel = Channel();
    std::string answer;
    Status s = channel->Call("/containerd.services.version.v1.Version/Nope", "", &answer);
    CHECK(s.code() == Status::Code::kNotSupported);
    CHECK(s.message() ==
          "containerd.services.version.v1.Version/Nope: UNIMPLEMENTED: unknown method Nope "
          "for service containerd.services.version.v1.Version");
    s = channel->Call("petrel.NoSuch/Thing", "", &answer);
    CHECK(s.code() == Status::Code::kNotSupported);
    CHECK(s.message().rfind("petrel.NoSuch/Thing: UNIMPLEMENTED: unknown service", 0) == 0);
    // The connection still serves after errors.
    CHECK(ContainerdGetVersion(channel.get()).ok());
  }

  TEST_CASE("an answer over the limit is an IOError, not a truncated message") {
    GrpcChannel::Options o;
    o.max_response = 8;  // Version's answer is about 40 bytes
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    Result<ContainerdVersion> v = ContainerdGetVersion(channel.get());
    CHECK(v.status().code() == Status::Code::kIOError);
    CHECK(v.status().message() ==
          "containerd.services.version.v1.Version/Version: answer over 8 bytes");
  }

  TEST_CASE("Events/Subscribe: a namespace's creation arrives, and stop ends the stream at once") {
    using Clock = std::chrono::steady_clock;
    EventLog events({});
    Result<int> made = events.Prime();
    REQUIRE_MESSAGE(made.ok(), made.status().ToString());
    ContainerdEnvelope e;
    REQUIRE(events.Arrived([](const ContainerdEnvelope&) { return true; }, 0, &e));
    MESSAGE("after ", *made, " namespace(s): ", e.topic, " in ", e.ns, ", ", e.type_url, ", ",
            e.value.size(), " bytes");
    CHECK(e.topic == "/namespaces/create");
    CHECK(e.ns == "petrel-test");
    CHECK(e.type_url == "containerd.events.NamespaceCreate");
    // NamespaceCreate's name: field 1, a string of fewer than 128 bytes.
    REQUIRE(e.value.size() > 2);
    CHECK(e.value[0] == '\x0a');
    CHECK(e.value.substr(2).rfind("petrel-prime-", 0) == 0);
    const auto age = std::chrono::system_clock::now() - e.timestamp;
    CHECK(age < std::chrono::minutes(1));
    CHECK(age > -std::chrono::minutes(1));
    // Idle now: stop is only seen by libcurl's progress callback.
    const auto asked = Clock::now();
    Result<GrpcStreamEnd> end = events.Stop();
    const auto took = Clock::now() - asked;
    MESSAGE("stopped after ", std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
            " ms");
    CHECK(took < std::chrono::seconds(3));
    REQUIRE_MESSAGE(end.ok(), end.status().ToString());
    CHECK(*end == GrpcStreamEnd::kStopped);
    // The channel serves calls after a stopped stream.
    CHECK(ContainerdGetVersion(events.channel()).ok());
  }

  TEST_CASE("Containers: create two, list by label, get, delete, get again is NotFound") {
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    ContainerdContainer c;
    c.image = "docker.io/library/busybox:latest";
    c.runtime = "io.containerd.runc.v2";
    c.runc_root = "/run/petrel-test/runc";
    c.spec = R"({"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/"},)"
             R"("root":{"path":"rootfs"}})";
    c.id = "petrel-a";
    c.labels = {{"petrel.node", "a"}, {"petrel.workload", "web"}};
    Result<ContainerdContainer> a = ContainerdCreateContainer(channel.get(), c);
    REQUIRE_MESSAGE(a.ok(), a.status().ToString());
    CHECK(a->id == "petrel-a");
    CHECK(a->labels == c.labels);
    c.id = "petrel-b";
    c.labels = {{"petrel.node", "b"}};
    REQUIRE(ContainerdCreateContainer(channel.get(), c).ok());
    Result<ContainerdContainer> again = ContainerdCreateContainer(channel.get(), c);
    CHECK(again.status().code() == Status::Code::kAlreadyExists);

    Result<std::vector<ContainerdContainer>> listed =
        ContainerdListContainers(channel.get(), {R"(labels."petrel.node"==a)"});
    REQUIRE_MESSAGE(listed.ok(), listed.status().ToString());
    REQUIRE(listed->size() == 1);
    CHECK(listed->front().id == "petrel-a");
    listed = ContainerdListContainers(channel.get(), {});
    REQUIRE(listed.ok());
    CHECK(listed->size() == 2);

    Result<ContainerdContainer> b = ContainerdGetContainer(channel.get(), "petrel-b");
    REQUIRE_MESSAGE(b.ok(), b.status().ToString());
    CHECK(b->labels == c.labels);
    CHECK(b->image == c.image);
    CHECK(b->runtime == "io.containerd.runc.v2");
    CHECK(b->runc_root == "/run/petrel-test/runc");
    CHECK(b->spec == c.spec);
    CHECK(b->spec_type == kContainerdSpecType);
    const auto age = std::chrono::system_clock::now() - b->created_at;
    CHECK(age < std::chrono::minutes(1));
    CHECK(age > -std::chrono::minutes(1));
    CHECK(b->updated_at >= b->created_at);

    for (const char* id : {"petrel-a", "petrel-b"}) {
      Status s = ContainerdDeleteContainer(channel.get(), id);
      CHECK_MESSAGE(s.ok(), s.ToString());
    }
    b = ContainerdGetContainer(channel.get(), "petrel-b");
    CHECK(b.status().code() == Status::Code::kNotFound);
    MESSAGE(b.status().ToString());
    CHECK(b.status().message().rfind(
              "containerd.services.containers.v1.Containers/Get: NOT_FOUND: ", 0) == 0);
    CHECK(ContainerdDeleteContainer(channel.get(), "petrel-b").code() == Status::Code::kNotFound);
    // No runtime: containerd's InvalidArgument, in its words.
    c.runtime = "";
    Status s = ContainerdCreateContainer(channel.get(), c).status();
    CHECK(s.code() == Status::Code::kInvalidArgument);
    MESSAGE(s.ToString());
  }

  TEST_CASE("Tasks: create, start, RUNNING, Wait times out, SIGKILL, exit 137 everywhere, delete") {
    TaskBed bed;
    testing::TempDir& dir = bed.dir;
    GrpcChannel* channel = bed.channel.get();
    EventLog events({R"(topic=="/tasks/exit",namespace==petrel-test)"});
    Result<int> primed = events.Prime();
    REQUIRE_MESSAGE(primed.ok(), primed.status().ToString());
    CreateShellContainer(channel, "petrel-task", dir.Sub("rootfs"), dir.Sub("runc"),
                         "echo hello, $0; echo oops >&2; exec sleep 1000");
    RemoveContainer remove{channel, "petrel-task"};

    ContainerdTaskIO io;
    io.stdout_uri = "file://" + dir.Sub("out");
    io.stderr_uri = io.stdout_uri;  // services.h: the 1.6 shim dies without one
    Result<uint32_t> pid = ContainerdCreateTask(channel, "petrel-task", {}, io);
    REQUIRE_MESSAGE(pid.ok(), pid.status().ToString());
    CHECK(*pid > 0);
    Result<ContainerdProcess> p = ContainerdGetTask(channel, "petrel-task");
    REQUIRE_MESSAGE(p.ok(), p.status().ToString());
    CHECK(ContainerdTaskStatusName(p->status) == std::string("CREATED"));
    CHECK(p->pid == *pid);
    CHECK(p->io.stdout_uri == io.stdout_uri);

    Result<uint32_t> started = ContainerdStartTask(channel, "petrel-task");
    REQUIRE_MESSAGE(started.ok(), started.status().ToString());
    CHECK(*started == *pid);
    p = ContainerdGetTask(channel, "petrel-task");
    REQUIRE_MESSAGE(p.ok(), p.status().ToString());
    CHECK(p->status == ContainerdTaskStatus::kRunning);
    CHECK(p->id == "petrel-task");
    // runc's state where the container's runtime options said, per namespace.
    CHECK(std::filesystem::exists(dir.Sub("runc/petrel-test/petrel-task/state.json")));
    // Both streams in the one file, in either order: the shim copies each from a pipe of
    // its own.
    CHECK(testing::WaitFor(
        [&] {
          const std::string out = testing::ReadFile(dir.Sub("out"));
          return out == "hello, /bin/sh\noops\n" || out == "oops\nhello, /bin/sh\n";
        },
        10));
    Result<std::vector<ContainerdProcess>> tasks = ContainerdListTasks(channel);
    REQUIRE_MESSAGE(tasks.ok(), tasks.status().ToString());
    REQUIRE(tasks->size() == 1);
    CHECK(tasks->front().id == "petrel-task");
    CHECK(tasks->front().status == ContainerdTaskStatus::kRunning);

    // While it runs, a second Create and a Delete are refused.
    Status again = ContainerdCreateTask(channel, "petrel-task", {}, io).status();
    MESSAGE(again.ToString());
    CHECK(again.code() == Status::Code::kAlreadyExists);
    Status busy = ContainerdDeleteTask(channel, "petrel-task").status();
    MESSAGE(busy.ToString());
    CHECK(busy.code() == Status::Code::kInternal);  // containerd 1.6 says UNKNOWN
    CHECK(busy.message().find("cannot delete a running process") != std::string::npos);

    // Wait blocks while the process runs: the channel's timeout ends it.
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    o.timeout = std::chrono::milliseconds(500);
    std::unique_ptr<GrpcChannel> impatient = Channel(o);
    Result<ContainerdExit> exit = ContainerdWaitTask(impatient.get(), "petrel-task");
    CHECK(exit.status().code() == Status::Code::kDeadlineExceeded);

    // sleep as the pid namespace's init ignores SIGTERM; SIGKILL it is.
    Status s = ContainerdKillTask(channel, "petrel-task", SIGKILL);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    exit = ContainerdWaitTask(channel, "petrel-task");
    REQUIRE_MESSAGE(exit.ok(), exit.status().ToString());
    CHECK(exit->exit_status == 137);
    const auto age = std::chrono::system_clock::now() - exit->exited_at;
    CHECK(age < std::chrono::minutes(1));
    CHECK(age > -std::chrono::minutes(1));
    p = ContainerdGetTask(channel, "petrel-task");
    REQUIRE_MESSAGE(p.ok(), p.status().ToString());
    CHECK(p->status == ContainerdTaskStatus::kStopped);
    CHECK(p->exit_status == 137);
    CHECK(p->exited_at == exit->exited_at);

    ContainerdEnvelope e;
    REQUIRE_MESSAGE(
        events.Arrived([](const ContainerdEnvelope& x) { return x.topic == "/tasks/exit"; }, 10,
                       &e),
        "no /tasks/exit within 10 s");
    Result<ContainerdExit> event = ContainerdDecodeTaskExit(e);
    REQUIRE_MESSAGE(event.ok(), event.status().ToString());
    CHECK(e.ns == "petrel-test");
    CHECK(event->container_id == "petrel-task");
    CHECK(event->id == "petrel-task");
    CHECK(event->pid == *pid);
    CHECK(event->exit_status == 137);
    CHECK(event->exited_at == exit->exited_at);

    Result<ContainerdExit> deleted = ContainerdDeleteTask(channel, "petrel-task");
    REQUIRE_MESSAGE(deleted.ok(), deleted.status().ToString());
    CHECK(deleted->pid == *pid);
    CHECK(deleted->exit_status == 137);
    CHECK(ContainerdGetTask(channel, "petrel-task").status().code() == Status::Code::kNotFound);
    CHECK(ContainerdDeleteTask(channel, "petrel-task").status().code() == Status::Code::kNotFound);
    s = ContainerdDeleteContainer(channel, "petrel-task");
    CHECK_MESSAGE(s.ok(), s.ToString());
    Result<GrpcStreamEnd> end = events.Stop();
    REQUIRE_MESSAGE(end.ok(), end.status().ToString());
    CHECK(*end == GrpcStreamEnd::kStopped);
  }

  TEST_CASE("Tasks: a process that exits by itself with 3, waited for while it runs") {
    TaskBed bed;
    testing::TempDir& dir = bed.dir;
    GrpcChannel* channel = bed.channel.get();
    CreateShellContainer(channel, "petrel-exit3", dir.Sub("rootfs"), dir.Sub("runc"),
                         "sleep 0.3; exit 3");
    RemoveContainer remove{channel, "petrel-exit3"};
    Result<uint32_t> pid = ContainerdCreateTask(channel, "petrel-exit3", {}, {});
    REQUIRE_MESSAGE(pid.ok(), pid.status().ToString());
    REQUIRE(ContainerdStartTask(channel, "petrel-exit3").ok());
    Result<ContainerdExit> exit = ContainerdWaitTask(channel, "petrel-exit3");
    REQUIRE_MESSAGE(exit.ok(), exit.status().ToString());
    CHECK(exit->exit_status == 3);
    // Deleting a task that is still RUNNING is refused; this one is STOPPED.
    Result<ContainerdExit> deleted = ContainerdDeleteTask(channel, "petrel-exit3");
    REQUIRE_MESSAGE(deleted.ok(), deleted.status().ToString());
    CHECK(deleted->exit_status == 3);
    CHECK(deleted->exited_at == exit->exited_at);
  }

  TEST_CASE("Tasks: Create for a container that does not exist is NotFound") {
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    Result<uint32_t> pid = ContainerdCreateTask(channel.get(), "petrel-nothing", {}, {});
    CHECK(pid.status().code() == Status::Code::kNotFound);
    MESSAGE(pid.status().ToString());
    CHECK(ContainerdKillTask(channel.get(), "petrel-nothing", SIGKILL).code() ==
          Status::Code::kNotFound);
    CHECK(ContainerdWaitTask(channel.get(), "petrel-nothing").status().code() ==
          Status::Code::kNotFound);
  }

  TEST_CASE("Tasks: a rootfs bind-mounted read-only by the task's mounts, SIGTERM trapped") {
    TaskBed bed;
    testing::TempDir& dir = bed.dir;
    GrpcChannel* channel = bed.channel.get();
    // root.path relative: the bundle's rootfs, on which containerd mounts the task's.
    CreateShellContainer(channel, "petrel-bind", "rootfs", dir.Sub("runc"),
                         "trap 'exit 5' TERM; touch /new 2>/dev/null || echo read-only; "
                         "while :; do sleep 0.1; done");
    RemoveContainer remove{channel, "petrel-bind"};
    ContainerdTaskIO io;
    io.stdout_uri = "file://" + dir.Sub("out");
    io.stderr_uri = io.stdout_uri;  // services.h: the 1.6 shim dies without one
    Result<uint32_t> pid = ContainerdCreateTask(
        channel, "petrel-bind", {{"bind", dir.Sub("rootfs"), "", {"rbind", "ro"}}}, io);
    REQUIRE_MESSAGE(pid.ok(), pid.status().ToString());
    REQUIRE(ContainerdStartTask(channel, "petrel-bind").ok());
    CHECK(testing::WaitFor([&] { return testing::ReadFile(dir.Sub("out")) == "read-only\n"; }, 10));
    CHECK(!std::filesystem::exists(dir.Sub("rootfs/new")));
    Status s = ContainerdKillTask(channel, "petrel-bind", SIGTERM);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    Result<ContainerdExit> exit = ContainerdWaitTask(channel, "petrel-bind");
    REQUIRE_MESSAGE(exit.ok(), exit.status().ToString());
    CHECK(exit->exit_status == 5);
    REQUIRE(ContainerdDeleteTask(channel, "petrel-bind").ok());
  }

  // The last case that needs containerd up: it restarts containerd.
  TEST_CASE("the exit watcher hears exits, and again after containerd restarts under it") {
    TaskBed bed;
    testing::TempDir& dir = bed.dir;
    GrpcChannel* channel = bed.channel.get();
    CreateShellContainer(channel, "petrel-watched", dir.Sub("rootfs"), dir.Sub("runc"),
                         "sleep 3600");
    RemoveContainer remove_watched{channel, "petrel-watched"};
    CreateShellContainer(channel, "petrel-primer", dir.Sub("rootfs"), dir.Sub("runc"), "exit 7");
    RemoveContainer remove_primer{channel, "petrel-primer"};
    REQUIRE(ContainerdCreateTask(channel, "petrel-watched", {}, {}).ok());
    REQUIRE(ContainerdStartTask(channel, "petrel-watched").ok());

    std::mutex mu;
    std::condition_variable changed;
    std::vector<ContainerdExit> exits;
    std::vector<Status> reports;
    ContainerdExitWatcher::Options o;
    o.socket_path = std::getenv("PETREL_TEST_CONTAINERD_SOCKET");
    o.ns = "petrel-test";
    o.on_exit = [&](const ContainerdExit& e) {
      std::lock_guard<std::mutex> lock(mu);
      exits.push_back(e);
      changed.notify_all();
    };
    o.on_report = [&](const Status& s) {
      std::lock_guard<std::mutex> lock(mu);
      reports.push_back(s);
      changed.notify_all();
    };
    Result<std::unique_ptr<ContainerdExitWatcher>> watcher = ContainerdExitWatcher::Start(o);
    REQUIRE_MESSAGE(watcher.ok(), watcher.status().ToString());
    auto heard = [&](const std::string& id, uint32_t status, int seconds) {
      std::unique_lock<std::mutex> lock(mu);
      return changed.wait_for(lock, std::chrono::seconds(seconds), [&] {
        return std::any_of(exits.begin(), exits.end(), [&](const ContainerdExit& e) {
          return e.container_id == id && e.exit_status == status;
        });
      });
    };
    // A subscription may not be in place when the watcher's call has gone out: runs
    // the primer (exit 7) until the watcher hears it, for up to 10 s.
    auto prime = [&] {
      for (int i = 0; i < 10; i++) {
        (void)ContainerdDeleteTask(channel, "petrel-primer");
        Result<uint32_t> pid = ContainerdCreateTask(channel, "petrel-primer", {}, {});
        if (!pid.ok() || !ContainerdStartTask(channel, "petrel-primer").ok()) {
          MESSAGE("primer: ", pid.status().ToString());  // containerd not back yet
          std::this_thread::sleep_for(std::chrono::seconds(1));
          continue;
        }
        if (heard("petrel-primer", 7, 1)) return true;
      }
      return false;
    };
    REQUIRE_MESSAGE(prime(), "the watcher heard no exit of the primer within 10 s");
    {
      std::lock_guard<std::mutex> lock(mu);
      exits.clear();
      CHECK(reports.empty());
    }

    // containerd restarts: the shims and their containers live on; the watcher says the
    // stream broke, subscribes again, and says so once it stands.
    const char* restart = std::getenv("PETREL_TEST_CONTAINERD_RESTART");
    REQUIRE_MESSAGE((restart != nullptr && *restart != '\0'),
                    "PETREL_TEST_CONTAINERD_RESTART is not set (run containerd_grpc_test.sh)");
    REQUIRE(std::system(restart) == 0);
    REQUIRE_MESSAGE(prime(), "the watcher heard no exit of the primer within 10 s of the restart");
    Result<ContainerdProcess> watched = ContainerdGetTask(channel, "petrel-watched");
    REQUIRE_MESSAGE(watched.ok(), watched.status().ToString());
    CHECK(watched->status == ContainerdTaskStatus::kRunning);
    REQUIRE(ContainerdKillTask(channel, "petrel-watched", SIGKILL).ok());
    CHECK_MESSAGE(heard("petrel-watched", 137, 10), "no exit 137 of petrel-watched");
    {
      std::unique_lock<std::mutex> lock(mu);
      changed.wait_for(lock, std::chrono::seconds(3), [&] { return reports.size() >= 2; });
      REQUIRE(reports.size() >= 2);
      CHECK_FALSE(reports[0].ok());
      MESSAGE("outage: ", reports[0].ToString());
      CHECK(reports[1].ok());
    }
    CHECK((*watcher)->subscriptions() >= 2);
    const auto before = std::chrono::steady_clock::now();
    watcher->reset();
    CHECK(std::chrono::steady_clock::now() - before < std::chrono::seconds(3));
  }

  // Issue 16's images in containerd's own stores: blobs written through Content/Write (a
  // client stream of many messages), held from containerd's garbage collection by a
  // lease or by an image that names them, and collected once nothing holds them.
  TEST_CASE("Content, Leases, Images: a blob is kept by its lease or an image, then collected") {
    const std::string lease = "petrel-test-lease-" + std::to_string(getpid());
    {
      GrpcChannel::Options o;
      o.ns = "petrel-test";
      std::unique_ptr<GrpcChannel> plain = Channel(o);
      REQUIRE(ContainerdCreateLease(plain.get(), lease, {{"petrel.test", "lease"}}).ok());
      CHECK(ContainerdCreateLease(plain.get(), lease, {}).code() == Status::Code::kAlreadyExists);
    }
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    o.lease = lease;
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    // Over three messages' worth, so that offsets and the commit after them count.
    std::string data;
    uint32_t x = 12345;
    while (data.size() < 3 * kContainerdWriteChunk + 123) {
      x = x * 1103515245 + 12345;
      data += static_cast<char>(x >> 24);
    }
    auto reader = [](const std::string& bytes) {
      auto at = std::make_shared<size_t>(0);
      return [&bytes, at](char* buf, size_t size) -> Result<size_t> {
        const size_t n = std::min(size, bytes.size() - *at);
        std::copy_n(bytes.data() + *at, n, buf);
        *at += n;
        return n;
      };
    };
    ContainerdContent blob;
    blob.digest = "sha256:" + Sha256Hex(data);
    blob.size = static_cast<int64_t>(data.size());
    blob.labels = {{"petrel.test", "blob"}};
    Status written =
        ContainerdWriteContent(channel.get(), "petrel-test-" + blob.digest, blob, reader(data));
    REQUIRE_MESSAGE(written.ok(), written.ToString());
    Result<ContainerdContent> info = ContainerdContentInfo(channel.get(), blob.digest);
    REQUIRE_MESSAGE(info.ok(), info.status().ToString());
    CHECK(info->digest == blob.digest);
    CHECK(info->size == blob.size);
    CHECK(info->labels.at("petrel.test") == "blob");
    Status again = ContainerdWriteContent(channel.get(), "petrel-test-again", blob, reader(data));
    CHECK_MESSAGE(again.code() == Status::Code::kAlreadyExists, again.ToString());

    // What containerd refuses: bytes of another digest, and fewer bytes than said.
    const std::string other = "not what the digest says";
    ContainerdContent wrong;
    wrong.digest = "sha256:" + std::string(64, '0');
    wrong.size = static_cast<int64_t>(other.size());
    Status refused =
        ContainerdWriteContent(channel.get(), "petrel-test-wrong", wrong, reader(other));
    CHECK_FALSE(refused.ok());
    CHECK_MESSAGE(refused.message().find("digest") != std::string::npos, refused.ToString());
    CHECK(ContainerdContentInfo(channel.get(), wrong.digest).status().IsNotFound());
    ContainerdContent longer;
    longer.digest = "sha256:" + Sha256Hex(other + "!");
    longer.size = static_cast<int64_t>(other.size()) + 1;
    Status short_read =
        ContainerdWriteContent(channel.get(), "petrel-test-short", longer, reader(other));
    CHECK(short_read.code() == Status::Code::kInvalidArgument);
    CHECK(ContainerdContentInfo(channel.get(), longer.digest).status().IsNotFound());

    // A second blob, which an image names; an empty one, written too.
    const std::string manifest = R"({"schemaVersion":2,"layers":[]})";
    ContainerdContent target;
    target.media_type = "application/vnd.oci.image.manifest.v1+json";
    target.digest = "sha256:" + Sha256Hex(manifest);
    target.size = static_cast<int64_t>(manifest.size());
    REQUIRE(ContainerdWriteContent(channel.get(), "petrel-test-manifest", target, reader(manifest))
                .ok());
    const std::string nothing;
    ContainerdContent empty;
    empty.digest = "sha256:" + Sha256Hex(nothing);
    Status wrote_empty =
        ContainerdWriteContent(channel.get(), "petrel-test-empty", empty, reader(nothing));
    CHECK((wrote_empty.ok() || wrote_empty.code() == Status::Code::kAlreadyExists));
    ContainerdImage image;
    image.name = "petrel.test/gc:1";
    image.labels = {{"petrel.test", "image"}};
    image.target = target;
    REQUIRE(ContainerdCreateImage(channel.get(), image).ok());
    CHECK(ContainerdCreateImage(channel.get(), image).code() == Status::Code::kAlreadyExists);
    Result<ContainerdImage> got = ContainerdGetImage(channel.get(), image.name);
    REQUIRE(got.ok());
    CHECK(got->target.digest == target.digest);
    CHECK(got->target.size == target.size);
    CHECK(got->target.media_type == target.media_type);
    CHECK(got->labels.at("petrel.test") == "image");

    // The lease gone (collected before the answer): the blob only it held goes; the
    // image's stays, until the image goes too.
    REQUIRE(ContainerdDeleteLease(channel.get(), lease, true).ok());
    CHECK(ContainerdDeleteLease(channel.get(), lease, true).IsNotFound());
    GrpcChannel::Options unleased;
    unleased.ns = "petrel-test";
    std::unique_ptr<GrpcChannel> plain = Channel(unleased);
    CHECK(ContainerdContentInfo(plain.get(), blob.digest).status().IsNotFound());
    CHECK(ContainerdContentInfo(plain.get(), target.digest).ok());
    // A blob the store has, written again under a second lease: not sent, but held by
    // that lease too, so the image's end does not take it.
    const std::string second = lease + "-2";
    REQUIRE(ContainerdCreateLease(plain.get(), second, {}).ok());
    GrpcChannel::Options o2 = unleased;
    o2.lease = second;
    std::unique_ptr<GrpcChannel> leased = Channel(o2);
    CHECK(ContainerdWriteContent(leased.get(), "petrel-test-manifest", target, reader(manifest))
              .code() == Status::Code::kAlreadyExists);
    REQUIRE(ContainerdDeleteImage(plain.get(), image.name, true).ok());
    CHECK(ContainerdGetImage(plain.get(), image.name).status().IsNotFound());
    CHECK(ContainerdContentInfo(plain.get(), target.digest).ok());
    REQUIRE(ContainerdDeleteLease(plain.get(), second, true).ok());
    CHECK(ContainerdContentInfo(plain.get(), target.digest).status().IsNotFound());
    CHECK(ContainerdDeleteImage(plain.get(), image.name, true).IsNotFound());
  }

  // A layer unpacked by containerd itself (Snapshots + Diff) under a lease, and a task
  // run on an active snapshot above it: what the adapter will do with an image's layers.
  TEST_CASE("Snapshots and Diff: a layer unpacked into a committed snapshot, a task run on it") {
    TaskBed bed;
    testing::TempDir& dir = bed.dir;
    // The layer: busybox's root filesystem as a gzipped tar; its diff id the tar's.
    REQUIRE(std::system(("tar -C " + dir.Sub("rootfs") + " -cf " + dir.Sub("layer.tar") +
                         " . && gzip -kn " + dir.Sub("layer.tar"))
                            .c_str()) == 0);
    const std::string tar = testing::ReadFile(dir.Sub("layer.tar"));
    const std::string gz = testing::ReadFile(dir.Sub("layer.tar.gz"));
    REQUIRE(!tar.empty());
    const std::string diff_id = "sha256:" + Sha256Hex(tar);
    ContainerdContent layer;
    layer.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    layer.digest = "sha256:" + Sha256Hex(gz);
    layer.size = static_cast<int64_t>(gz.size());

    const std::string lease = "petrel-test-unpack-" + std::to_string(getpid());
    REQUIRE(ContainerdCreateLease(bed.channel.get(), lease, {}).ok());
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    o.lease = lease;
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    size_t at = 0;
    Status written = ContainerdWriteContent(channel.get(), "petrel-test-layer", layer,
                                            [&](char* buf, size_t size) -> Result<size_t> {
                                              const size_t n = std::min(size, gz.size() - at);
                                              std::copy_n(gz.data() + at, n, buf);
                                              at += n;
                                              return n;
                                            });
    REQUIRE_MESSAGE(written.ok(), written.ToString());

    const std::string snapshotter = "overlayfs";
    const std::string extract = "petrel-test-extract";
    Result<std::vector<ContainerdMount>> mounts =
        ContainerdPrepareSnapshot(channel.get(), snapshotter, extract, "", {});
    REQUIRE_MESSAGE(mounts.ok(), mounts.status().ToString());
    REQUIRE(!mounts->empty());
    Result<ContainerdContent> applied = ContainerdApplyDiff(channel.get(), layer, *mounts);
    REQUIRE_MESSAGE(applied.ok(), applied.status().ToString());
    CHECK(applied->digest == diff_id);
    // A first layer's chain id is its diff id.
    REQUIRE(ContainerdCommitSnapshot(channel.get(), snapshotter, diff_id, extract,
                                     {{"petrel.test", "layer"}})
                .ok());
    Result<ContainerdSnapshot> committed =
        ContainerdStatSnapshot(channel.get(), snapshotter, diff_id);
    REQUIRE(committed.ok());
    CHECK(committed->committed);
    CHECK(committed->parent.empty());
    CHECK(committed->labels.at("petrel.test") == "layer");
    CHECK(ContainerdStatSnapshot(channel.get(), snapshotter, extract).status().IsNotFound());
    // A layer the store lacks is NotFound.
    ContainerdContent missing = layer;
    missing.digest = "sha256:" + std::string(64, 'f');
    CHECK(ContainerdApplyDiff(channel.get(), missing, *mounts).status().IsNotFound());

    // The container's root: an active snapshot on the layer, given to its task.
    const std::string id = "petrel-unpacked";
    Result<std::vector<ContainerdMount>> root =
        ContainerdPrepareSnapshot(channel.get(), snapshotter, id, diff_id, {});
    REQUIRE_MESSAGE(root.ok(), root.status().ToString());
    Result<std::vector<ContainerdMount>> again =
        ContainerdSnapshotMounts(channel.get(), snapshotter, id);
    REQUIRE(again.ok());
    CHECK(again->size() == root->size());
    CHECK(ContainerdRemoveSnapshot(channel.get(), snapshotter, diff_id).code() ==
          Status::Code::kFailedPrecondition);  // the container's snapshot is on it
    CreateShellContainer(channel.get(), id, "rootfs", dir.Sub("runc"),
                         "echo from the snapshot > /made; cat /made; exit 7");
    {
      RemoveContainer remove{channel.get(), id};
      ContainerdTaskIO io;
      io.stdout_uri = "file://" + dir.Sub("out");
      io.stderr_uri = io.stdout_uri;
      Result<uint32_t> pid = ContainerdCreateTask(channel.get(), id, *root, io);
      REQUIRE_MESSAGE(pid.ok(), pid.status().ToString());
      REQUIRE(ContainerdStartTask(channel.get(), id).ok());
      Result<ContainerdExit> exit = ContainerdWaitTask(channel.get(), id);
      REQUIRE_MESSAGE(exit.ok(), exit.status().ToString());
      CHECK(exit->exit_status == 7);
      CHECK(testing::ReadFile(dir.Sub("out")) == "from the snapshot\n");
      REQUIRE(ContainerdDeleteTask(channel.get(), id).ok());
    }
    // What the task wrote is the container's snapshot's, never the layer's.
    CHECK(!std::filesystem::exists(dir.Sub("rootfs/made")));
    REQUIRE(ContainerdRemoveSnapshot(channel.get(), snapshotter, id).ok());
    REQUIRE(ContainerdDeleteLease(channel.get(), lease, true).ok());
    // The lease held the layer's blob and its snapshot: both collected with it.
    CHECK(ContainerdContentInfo(channel.get(), layer.digest).status().IsNotFound());
    CHECK(ContainerdStatSnapshot(channel.get(), snapshotter, diff_id).status().IsNotFound());
  }

  // The whole of an image into containerd (images.h): from petrel's busybox image (an
  // OCI archive), blobs, name and unpacked layers; a task on a snapshot above them; a
  // second import that sends and unpacks nothing; the name's end collecting it all.
  TEST_CASE("ContainerdImportImage: an image's blobs, name and snapshots, a task run from it") {
    TaskBed bed;
    testing::TempDir& dir = bed.dir;
    Result<std::string> image = testing::MakeBusyboxImage(dir.Sub("busybox.tar"));
    REQUIRE_MESSAGE(image.ok(), image.status().ToString());
    ArchiveUse archive;  // libarchive, loaded while the archive is read
    REQUIRE(archive.status().ok());
    std::unique_ptr<ImageSource> source = ImageSource::Tar(dir.Sub("busybox.tar"));
    Result<ImagePlan> plan = ReadOciLayout(source.get(), "");
    REQUIRE_MESSAGE(plan.ok(), plan.status().ToString());
    REQUIRE(!plan->layers.empty());
    GrpcChannel::Options o;
    o.socket_path = std::getenv("PETREL_TEST_CONTAINERD_SOCKET");
    o.ns = "petrel-test";
    const std::string snapshotter = "overlayfs";
    const std::string name = "petrel.test/busybox:import";
    Result<ContainerdImported> imported =
        ContainerdImportImage(o, snapshotter, name, source.get(), *plan);
    REQUIRE_MESSAGE(imported.ok(), imported.status().ToString());
    std::vector<std::string> diff_ids;
    for (const LayerRef& layer : plan->layers) diff_ids.push_back(layer.diff_id);
    CHECK(imported->chain_id == ContainerdChainId(diff_ids));
    GrpcChannel* channel = bed.channel.get();
    Result<ContainerdImage> named = ContainerdGetImage(channel, name);
    REQUIRE(named.ok());
    CHECK(named->target.digest == imported->manifest);
    Result<ContainerdContent> config = ContainerdContentInfo(channel, plan->id);
    REQUIRE(config.ok());
    CHECK(config->labels.at("containerd.io/gc.ref.snapshot." + snapshotter) == imported->chain_id);
    for (const LayerRef& layer : plan->layers) {
      CHECK(ContainerdContentInfo(channel, layer.digest).ok());
    }
    Result<ContainerdSnapshot> top =
        ContainerdStatSnapshot(channel, snapshotter, imported->chain_id);
    REQUIRE(top.ok());
    CHECK(top->committed);

    // Again: the same answer, nothing written or unpacked anew (the same snapshot).
    Result<ContainerdImported> again =
        ContainerdImportImage(o, snapshotter, name, source.get(), *plan);
    REQUIRE_MESSAGE(again.ok(), again.status().ToString());
    CHECK(again->manifest == imported->manifest);
    CHECK(ContainerdStatSnapshot(channel, snapshotter, imported->chain_id)->name ==
          imported->chain_id);

    // A container's root on it: an active snapshot, made under a lease until the
    // container that names it holds it; the layers below held by the image alone.
    const std::string id = "petrel-imported";
    const std::string lease = "petrel-test-container-" + std::to_string(getpid());
    REQUIRE(ContainerdCreateLease(channel, lease, {}).ok());
    GrpcChannel::Options leased = o;
    leased.lease = lease;
    std::unique_ptr<GrpcChannel> making = Channel(leased);
    Result<std::vector<ContainerdMount>> root =
        ContainerdPrepareSnapshot(making.get(), snapshotter, id, imported->chain_id, {});
    REQUIRE_MESSAGE(root.ok(), root.status().ToString());
    CreateShellContainer(making.get(), id, "rootfs", dir.Sub("runc"), "echo imported; exit 4",
                         snapshotter);
    REQUIRE(ContainerdDeleteLease(channel, lease, true).ok());  // collected before the answer
    {
      RemoveContainer remove{channel, id};
      ContainerdTaskIO io;
      io.stdout_uri = "file://" + dir.Sub("out");
      io.stderr_uri = io.stdout_uri;
      Result<uint32_t> pid = ContainerdCreateTask(channel, id, *root, io);
      REQUIRE_MESSAGE(pid.ok(), pid.status().ToString());
      REQUIRE(ContainerdStartTask(channel, id).ok());
      Result<ContainerdExit> exit = ContainerdWaitTask(channel, id);
      REQUIRE_MESSAGE(exit.ok(), exit.status().ToString());
      CHECK(exit->exit_status == 4);
      CHECK(testing::ReadFile(dir.Sub("out")) == "imported\n");
      REQUIRE(ContainerdDeleteTask(channel, id).ok());
    }
    REQUIRE(ContainerdRemoveSnapshot(channel, snapshotter, id).ok());
    // The name gone, containerd's collection takes blobs and snapshots.
    REQUIRE(ContainerdDeleteImage(channel, name, true).ok());
    CHECK(ContainerdContentInfo(channel, imported->manifest).status().IsNotFound());
    CHECK(ContainerdContentInfo(channel, plan->id).status().IsNotFound());
    CHECK(ContainerdStatSnapshot(channel, snapshotter, imported->chain_id).status().IsNotFound());
  }

  TEST_CASE("a stream of a method containerd does not have: NotSupported, UNIMPLEMENTED") {
    std::unique_ptr<GrpcChannel> channel = Channel();
    Result<GrpcStreamEnd> end = channel->Stream(
        "containerd.services.events.v1.Events/Nope", "", [](std::string) { return Status::OK(); },
        [] { return false; });
    CHECK(end.status().code() == Status::Code::kNotSupported);
  }

  TEST_CASE("no containerd on the socket: Unavailable, naming method and socket") {
    GrpcChannel::Options o;
    o.socket_path = "/nonexistent/petrel-test/containerd.sock";
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    Result<ContainerdVersion> v = ContainerdGetVersion(channel.get());
    CHECK(v.status().code() == Status::Code::kUnavailable);
    CHECK(v.status().message().rfind("containerd.services.version.v1.Version/Version: "
                                     "containerd at unix:/nonexistent/petrel-test/",
                                     0) == 0);
  }
}

}  // namespace
}  // namespace petrel::internal

int main(int argc, char** argv) { return petrel::testing::RunDoctest(argc, argv); }
