// ContainerdDriver (containerd_driver.h) against a real containerd, run by
// tests/integration/containerd_grpc_test.sh, which starts one and names its socket in
// $PETREL_TEST_CONTAINERD_SOCKET (a missing variable is a failure, never a skip). The
// bundles are made here as the crun adapter makes them: a busybox rootfs (Debian's
// busybox-static) and a config.json of lib/oci's; their output goes through
// petrel_containerd_logger (PETREL_CONTAINERD_LOGGER), as petreld's logger mode writes it.
#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lib/oci/runtime_config.h"
#include "lib/util/fs.h"
#include "lib/util/lease.h"
#include "lib/util/log_files.h"
#include "runtime-adapters/containerd/containerd_driver.h"
#include "runtime-adapters/containerd/grpc.h"
#include "runtime-adapters/containerd/services.h"
#include "runtime-adapters/containerd/tests/busybox.h"
#include "tests/lib/doctest_main.h"
#include "tests/lib/files.h"
#include "tests/lib/wait.h"

namespace petrel::internal {
namespace {

namespace fs = std::filesystem;

constexpr char kNamespace[] = "petrel-driver-test";

std::string Socket() {
  const char* socket = std::getenv("PETREL_TEST_CONTAINERD_SOCKET");
  REQUIRE_MESSAGE((socket != nullptr && *socket != '\0'),
                  "PETREL_TEST_CONTAINERD_SOCKET is not set (run containerd_grpc_test.sh)");
  return socket;
}

// The exits a driver reported, to wait for.
class Exits {
 public:
  ProcessDriver::ExitFn Fn() {
    return [this](const std::string& id, int code) {
      std::lock_guard<std::mutex> lock(mu_);
      seen_.emplace_back(id, code);
      changed_.notify_all();
    };
  }

  // Whether container `id` was reported to have ended with `code`, now or within `seconds`.
  bool Heard(const std::string& id, int code, int seconds) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, std::chrono::seconds(seconds), [&] {
      for (const auto& [i, c] : seen_) {
        if (i == id && c == code) return true;
      }
      return false;
    });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::pair<std::string, int>> seen_;
};

// A containers dir of bundles, and drivers on it in namespace petrel-driver-test: one
// opened, whose exits go to `exits`.
struct DriverBed {
  testing::TempDir dir;
  std::unique_ptr<GrpcChannel> channel;  // in the driver's namespace, for checks
  Exits exits;
  std::unique_ptr<ProcessDriver> driver;

  DriverBed() {
    fs::create_directories(dir.Sub("containers"));
    GrpcChannel::Options o;
    o.socket_path = Socket();
    o.ns = kNamespace;
    Result<std::unique_ptr<GrpcChannel>> c = GrpcChannel::Open(o);
    REQUIRE_MESSAGE(c.ok(), c.status().ToString());
    channel = std::move(*c);
    driver = NewDriver();
    Status s = driver->Open(exits.Fn());
    REQUIRE_MESSAGE(s.ok(), s.ToString());
  }

  std::unique_ptr<ProcessDriver> NewDriver() {
    ContainerdDriverOptions o;
    o.socket_path = Socket();
    o.ns = kNamespace;
    o.runc_root = dir.Sub("runc");
    o.logger = PETREL_CONTAINERD_LOGGER;
    o.log_max_bytes = 64 << 10;
    o.containers_dir = dir.Sub("containers");
    const std::string containers = o.containers_dir;
    o.present = [containers](const std::string& id) { return fs::exists(containers + "/" + id); };
    o.port = DefaultPort();
    return NewContainerdDriver(std::move(o));
  }

  // Bundle `id`: a busybox rootfs of its own and a config.json of lib/oci's that runs
  // `command`, its cgroups under /petrel-test with `limits`. With `overlay`, rootfs/ is
  // empty and the bundle's overlay (as ImageStore's mount data) has busybox in lower/
  // and its upper and work directories in scratch/.
  Bundle MakeBundle(const std::string& id, std::vector<std::string> command, bool overlay = false,
                    const Resources& limits = {}) {
    Bundle b;
    b.id = id;
    b.dir = dir.Sub("containers/" + id);
    b.cgroup_parent = "petrel-test";
    b.limits = limits;
    const std::string rootfs = b.dir + "/rootfs";
    if (overlay) {
      fs::create_directories(rootfs);
      fs::create_directories(b.dir + "/scratch/upper");
      fs::create_directories(b.dir + "/scratch/work");
      testing::MakeBusyboxRootfs(b.dir + "/lower");
      b.overlay = "lowerdir=" + b.dir + "/lower,upperdir=" + b.dir +
                  "/scratch/upper,workdir=" + b.dir + "/scratch/work";
    } else {
      testing::MakeBusyboxRootfs(rootfs);
    }
    ContainerSpec spec;
    spec.name = id;
    spec.command = std::move(command);
    spec.resources = limits;
    RuntimeConfigOptions options;
    // As a driver names it (one of its own: bed.driver may be gone, as in the adoption
    // case).
    options.rootfs = NewDriver()->RootPath(rootfs, overlay);
    options.cgroups_path = "/petrel-test/" + id;
    Result<std::string> config = MakeRuntimeConfig(spec, ImageConfig{}, options);
    REQUIRE_MESSAGE(config.ok(), config.status().ToString());
    REQUIRE(WriteFileAtomic(b.dir + "/config.json", *config).ok());
    return b;
  }

  Bundle ShellBundle(const std::string& id, const std::string& script) {
    return MakeBundle(id, {"/bin/sh", "-c", script});
  }

  // What an Exec of `command` in bundle `b` is given, as the crun adapter makes it: the
  // process of its config.json with the command as its args.
  static std::string Process(const Bundle& b, std::vector<std::string> command) {
    nlohmann::json config = nlohmann::json::parse(testing::ReadFile(b.dir + "/config.json"));
    nlohmann::json process = config["process"];
    process["args"] = std::move(command);
    process["terminal"] = false;
    return process.dump();
  }

  // An Exec of `/bin/sh -c script` in bundle `b`.
  Result<ExecResult> Exec(const Bundle& b, const std::string& script, int64_t timeout_ms = 10000,
                          size_t output_limit = 16 * 1024) {
    ExecOptions o;
    o.command = {"/bin/sh", "-c", script};
    o.timeout_ms = timeout_ms;
    o.output_limit = output_limit;
    return driver->Exec(b, Process(b, o.command), o);
  }

  // The files in bundle `b`'s directory whose names start with "exec-" (an Exec's).
  static std::vector<std::string> ExecFiles(const Bundle& b) {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(b.dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("exec-", 0) == 0) found.push_back(name);
    }
    return found;
  }

  // Runs bundle `id`, a shell that says "up" and sleeps until killed, and waits until
  // it has said so.
  Bundle StartSleeper(const std::string& id) {
    Bundle b = ShellBundle(id, "echo up; while :; do sleep 0.1; done");
    Status s = driver->Run(b);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    REQUIRE(testing::WaitFor([&] { return Logs(id) == "up\n"; }, 10));
    return b;
  }

  // Deletes container `id` through the driver, and checks that containerd has nothing
  // of it left.
  void DeleteAndCheck(const std::string& id) {
    Status s = driver->Delete(id);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK(Gone(id));
  }

  // What the bundle's log files hold.
  std::string Logs(const std::string& id) {
    Result<LogChunk> chunk = ReadLogFiles(dir.Sub("containers/" + id), LogOptions{});
    return chunk.ok() ? chunk->data : "";
  }

  // Whether containerd has neither a container nor a task named `id`.
  bool Gone(const std::string& id) {
    return ContainerdGetTask(channel.get(), id).status().IsNotFound() &&
           ContainerdGetContainer(channel.get(), id).status().IsNotFound();
  }

  // Returns once the exit watcher of `target`, whose exits go to `heard_by`, hears
  // exits: its subscription may not stand yet when Open returns. Runs a container that
  // exits with 0 until the exit is heard, for up to 10 s.
  bool Prime(ProcessDriver* target, Exits* heard_by) {
    static int n = 0;
    for (int i = 0; i < 10; i++) {
      const std::string id = "primer-" + std::to_string(n++);
      Bundle b = ShellBundle(id, "exit 0");
      Status s = target->Run(b);
      REQUIRE_MESSAGE(s.ok(), s.ToString());
      const bool heard = heard_by->Heard(id, 0, 1);
      REQUIRE(target->Delete(id).ok());
      if (heard) return true;
    }
    return false;
  }
};

// Takes container `id` away from containerd whatever happens to a case.
struct DeleteAtEnd {
  ProcessDriver* driver;
  std::string id;
  ~DeleteAtEnd() {
    if (driver != nullptr) (void)driver->Delete(id);
  }
};

TEST_SUITE("containerd") {
  TEST_CASE("ContainerdOverlayMounts: split at unescaped commas, escapes kept") {
    CHECK(ContainerdOverlayMounts("").empty());
    std::vector<ContainerdMount> m =
        ContainerdOverlayMounts(R"(lowerdir=/a\,b\:c,upperdir=/u,workdir=/w\\)");
    REQUIRE(m.size() == 1);
    CHECK(m[0].type == "overlay");
    CHECK(m[0].source == "overlay");
    CHECK(m[0].options ==
          std::vector<std::string>{R"(lowerdir=/a\,b\:c)", "upperdir=/u", R"(workdir=/w\\)"});
  }

  TEST_CASE("ContainerdDriver: run, output in the log files, SIGTERM, exit heard, delete") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    Exits& exits = bed.exits;
    CHECK(driver->Name() == "containerd");
    CHECK_FALSE(driver->PetrelMakesCgroups());
    REQUIRE_MESSAGE(bed.Prime(driver, &exits), "no exit heard within 10 s");

    Bundle b = bed.ShellBundle("term",
                               "trap 'echo bye, $0; exit 5' TERM; echo hello; echo oops >&2; "
                               "while :; do sleep 0.1; done");
    DeleteAtEnd at_end{driver, "term"};
    Result<ProcessState> st = driver->State("term");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kCreated);
    CHECK(st->started_at == 0);

    const TimeMs before = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
    Status s = driver->Run(b);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    st = driver->State("term");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kRunning);
    CHECK(st->pid > 0);
    CHECK(st->started_at >= before);
    CHECK(st->finished_at == 0);
    CHECK(testing::WaitFor(
        [&] {
          const std::string out = bed.Logs("term");
          return out == "hello\noops\n" || out == "oops\nhello\n";
        },
        10));
    MESSAGE("logs: ", bed.Logs("term"));
    Result<ContainerdContainer> c = ContainerdGetContainer(bed.channel.get(), "term");
    REQUIRE_MESSAGE(c.ok(), c.status().ToString());
    CHECK(c->labels.at(kContainerdPetrelLabel) == "true");
    CHECK(c->runtime == "io.containerd.runc.v2");

    s = driver->Signal("term", SIGTERM);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK_MESSAGE(exits.Heard("term", 5, 10), "no exit 5 of term heard");
    st = driver->State("term");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kExited);
    CHECK(st->exit_code == 5);
    CHECK(st->finished_at >= st->started_at);
    CHECK(st->pid == 0);
    CHECK(testing::WaitFor(
        [&] { return bed.Logs("term").find("bye, /bin/sh\n") != std::string::npos; }, 10));
    // Its process has ended: a signal is no error.
    s = driver->Signal("term", SIGTERM);
    CHECK_MESSAGE(s.ok(), s.ToString());

    s = driver->Delete("term");
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK(bed.Gone("term"));
    s = driver->Delete("term");
    CHECK_MESSAGE(s.ok(), s.ToString());
    // Gone from containerd, still there for petrel (a removal under way): exited as
    // its task ended, which Delete recorded.
    st = driver->State("term");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kExited);
    CHECK(st->exit_code == 5);
    CHECK(st->finished_at >= st->started_at);
    // Gone for petrel too: NotFound.
    REQUIRE(RemoveTree(b.dir).ok());
    CHECK(driver->State("term").status().IsNotFound());
  }

  TEST_CASE("ContainerdDriver: a process that exits 3 by itself") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    REQUIRE_MESSAGE(bed.Prime(driver, &bed.exits), "no exit heard within 10 s");
    Bundle b = bed.ShellBundle("three", "echo going; sleep 0.3; exit 3");
    DeleteAtEnd at_end{driver, "three"};
    Status s = driver->Run(b);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK_MESSAGE(bed.exits.Heard("three", 3, 10), "no exit 3 heard");
    Result<ProcessState> st = driver->State("three");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kExited);
    CHECK(st->exit_code == 3);
    CHECK(st->finished_at > 0);
    CHECK(bed.Logs("three") == "going\n");
    // An Exec in the exited container is refused, and leaves nothing.
    Result<ExecResult> r = bed.Exec(b, "echo x");
    CHECK_MESSAGE(r.status().code() == Status::Code::kFailedPrecondition, r.status().ToString());
    CHECK(r.status().message() == "exec in three: container three is exited");
    CHECK(DriverBed::ExecFiles(b).empty());
    bed.DeleteAndCheck("three");
  }

  // runc makes the memory cgroup config.json names; the driver reads its OOM kill count
  // when the task ends by SIGKILL, and records it before the task and cgroup go.
  TEST_CASE("ContainerdDriver: an OOM kill is told as OOMKilled, a plain SIGKILL is not") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    REQUIRE_MESSAGE(bed.Prime(driver, &bed.exits), "no exit heard within 10 s");
    Resources limits;
    limits.memory_bytes = 16 << 20;
    // dd's 64 MiB buffer is touched as it reads: past the 16 MiB limit.
    Bundle hog =
        bed.MakeBundle("hog", {"/bin/sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=1"},
                       false, limits);
    DeleteAtEnd hog_at_end{driver, "hog"};
    Status s = driver->Run(hog);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK_MESSAGE(bed.exits.Heard("hog", 137, 10), "no exit 137 heard");
    Result<ProcessState> st = driver->State("hog");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->exit_code == 137);
    CHECK(st->exit_reason == "OOMKilled");
    bed.DeleteAndCheck("hog");
    st = driver->State("hog");  // from what Delete recorded
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kExited);
    CHECK(st->exit_code == 137);
    CHECK(st->exit_reason == "OOMKilled");

    Bundle killed =
        bed.MakeBundle("killed", {"/bin/sh", "-c", "echo up; exec sleep 60"}, false, limits);
    DeleteAtEnd killed_at_end{driver, "killed"};
    s = driver->Run(killed);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK(testing::WaitFor([&] { return bed.Logs("killed") == "up\n"; }, 10));
    REQUIRE(driver->Signal("killed", SIGKILL).ok());
    CHECK_MESSAGE(bed.exits.Heard("killed", 137, 10), "no exit 137 heard");
    st = driver->State("killed");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->exit_code == 137);
    CHECK(st->exit_reason.empty());
    bed.DeleteAndCheck("killed");
    st = driver->State("killed");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->exit_reason.empty());
  }

  TEST_CASE("ContainerdDriver: Exec gives the exit code and both streams, cut at the limit") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    DeleteAtEnd at_end{driver, "execs"};
    Bundle b = bed.StartSleeper("execs");
    Result<ExecResult> r = bed.Exec(b, "echo out; echo err >&2; echo more; exit 3");
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->exit_code == 3);
    // Each stream in its order; how the two interleave is the shim's.
    std::string out = r->output;
    const size_t err = out.find("err\n");
    REQUIRE_MESSAGE(err != std::string::npos, r->output);
    CHECK_MESSAGE(out.erase(err, 4) == "out\nmore\n", r->output);
    CHECK_FALSE(r->truncated);
    // The command runs as the container's process does, in its file system.
    r = bed.Exec(b, "echo $PATH; cat /proc/1/cmdline | tr '\\0' ' '");
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->exit_code == 0);
    CHECK(r->output.find("/bin") != std::string::npos);
    CHECK_MESSAGE(r->output.find("/bin/sh -c echo up;") != std::string::npos, r->output);
    // 100 KB, cut at 100 bytes; exactly the limit is not past it; nothing at 0.
    r = bed.Exec(b, "i=0; while [ $i -lt 5000 ]; do printf '%019d\\n' $i; i=$((i+1)); done; exit 4",
                 10000, 100);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->exit_code == 4);
    CHECK(r->output.size() == 100);
    CHECK(r->output.substr(0, 40) == "0000000000000000000\n0000000000000000001\n");
    CHECK(r->truncated);
    r = bed.Exec(b, "printf 0123456789", 10000, 10);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->output == "0123456789");
    CHECK_FALSE(r->truncated);
    r = bed.Exec(b, "echo x", 10000, 0);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->output.empty());
    CHECK(r->truncated);
    // Output far past the limit is read and dropped as it comes: the command runs on to
    // its end.
    r = bed.Exec(b, "head -c 4000000 /dev/zero | tr '\\0' x; echo late >&2; exit 5", 10000, 100);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->exit_code == 5);
    CHECK(r->output == std::string(100, 'x'));
    CHECK(r->truncated);
    // What stderr says after stdout has ended is not lost (as it would be with one
    // file:// for both: services.h).
    r = bed.Exec(b, "echo out; exec 1>&-; sleep 0.2; echo err >&2");
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->output == "out\nerr\n");
    // Several at once, each with its own output and exit code.
    constexpr int kCount = 4;
    std::vector<Result<ExecResult>> results(kCount, Status::Internal("not run"));
    std::vector<std::thread> threads;
    for (int i = 0; i < kCount; i++) {
      threads.emplace_back([&, i] {
        const std::string me = std::to_string(i);
        results[i] = bed.Exec(b, "echo " + me + "; sleep 0.3; echo " + me + " again; exit " + me);
      });
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < kCount; i++) {
      CAPTURE(i);
      REQUIRE_MESSAGE(results[i].ok(), results[i].status().ToString());
      CHECK(results[i]->exit_code == i);
      CHECK(results[i]->output == std::to_string(i) + "\n" + std::to_string(i) + " again\n");
    }
    // Nothing of them is left: no output file, no process in the task; the container's
    // own output and state are its own.
    CHECK(DriverBed::ExecFiles(b).empty());
    CHECK(bed.Logs("execs") == "up\n");
    Result<ProcessState> st = driver->State("execs");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kRunning);
    bed.DeleteAndCheck("execs");
  }

  TEST_CASE("ContainerdDriver: Exec past its timeout is killed with what it started") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    DeleteAtEnd at_end{driver, "slow"};
    Bundle b = bed.StartSleeper("slow");
    const std::string tmp = b.dir + "/rootfs/tmp/";
    const auto start = std::chrono::steady_clock::now();
    // A child in the background, in the command's group, would write after the timeout.
    Result<ExecResult> r = bed.Exec(
        b, "echo x >/tmp/began; (sleep 1.5; echo x >/tmp/late) & sleep 2; echo x >/tmp/own", 1000);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(r.status().code() == Status::Code::kDeadlineExceeded);
    CHECK(r.status().message() == "exec in slow: timed out after 1s");
    CHECK_MESSAGE(took < 6, "Exec took " << took << " s");
    CHECK(fs::exists(tmp + "began"));
    CHECK(testing::HoldsFor([&] { return !fs::exists(tmp + "late") && !fs::exists(tmp + "own"); },
                            2.0));
    CHECK(DriverBed::ExecFiles(b).empty());
    // Below a second; and the container runs on, and Execs go on working.
    r = bed.Exec(b, "echo x; while :; do sleep 1; done", 300);
    CHECK(r.status().message() == "exec in slow: timed out after 300ms");
    Result<ProcessState> st = driver->State("slow");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kRunning);
    r = bed.Exec(b, "echo after");
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->output == "after\n");
    CHECK(bed.Logs("slow") == "up\n");
    CHECK(DriverBed::ExecFiles(b).empty());
    bed.DeleteAndCheck("slow");
  }

  TEST_CASE("ContainerdDriver: Exec of a binary not in the image exits 127, naming it") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    DeleteAtEnd at_end{driver, "nobin"};
    Bundle b = bed.StartSleeper("nobin");
    for (const std::string binary : {"/no/such/binary", "nosuchbinary"}) {
      CAPTURE(binary);
      ExecOptions o;
      o.command = {binary, "arg"};
      Result<ExecResult> r = driver->Exec(b, DriverBed::Process(b, o.command), o);
      REQUIRE_MESSAGE(r.ok(), r.status().ToString());
      MESSAGE(r->output);
      CHECK(r->exit_code == 127);
      CHECK(r->output.find("exec: \"" + binary + "\": ") == 0);
      CHECK(r->output.back() == '\n');
    }
    Result<ProcessState> st = driver->State("nobin");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kRunning);
    CHECK(DriverBed::ExecFiles(b).empty());
    // A container never run refuses too.
    Bundle created = bed.ShellBundle("unrun", "exit 0");
    Result<ExecResult> r = bed.Exec(created, "echo x");
    CHECK(r.status().message() == "exec in unrun: container unrun is created");
    bed.DeleteAndCheck("nobin");
  }

  TEST_CASE("ContainerdDriver: a Kill of the container during an Exec ends it at once") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    DeleteAtEnd at_end{driver, "killed"};
    Bundle b = bed.StartSleeper("killed");
    Result<ExecResult> r = Status::Internal("not run");
    double took = 0;
    std::thread exec([&] {
      const auto start = std::chrono::steady_clock::now();
      r = bed.Exec(b, "echo x >/tmp/began; sleep 20", 30000);
      took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
    CHECK(testing::WaitFor([&] { return fs::exists(b.dir + "/rootfs/tmp/began"); }, 10));
    Status killed = driver->Signal("killed", SIGKILL);
    exec.join();
    REQUIRE_MESSAGE(killed.ok(), killed.ToString());
    CHECK_MESSAGE(r.status().code() == Status::Code::kFailedPrecondition, r.status().ToString());
    CHECK(r.status().message() == "exec in killed: container killed ended while the command ran");
    CHECK_MESSAGE(took < 10, "Exec took " << took << " s");
    CHECK(DriverBed::ExecFiles(b).empty());
    // The shim may hear the command's end before its init process's: the container's
    // state follows.
    Result<ProcessState> st = Status::Internal("not asked");
    CHECK(testing::WaitFor(
        [&] {
          st = driver->State("killed");
          return st.ok() && st->state == ContainerState::kExited;
        },
        10));
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->exit_code == 137);
    bed.DeleteAndCheck("killed");
  }

  TEST_CASE("ContainerdDriver: a command not in the image fails Run and leaves nothing") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    Bundle b = bed.MakeBundle("bad", {"/no/such/command"});
    DeleteAtEnd at_end{driver, "bad"};
    Status s = driver->Run(b);
    REQUIRE_FALSE(s.ok());
    MESSAGE(s.ToString());
    CHECK(s.code() == Status::Code::kIOError);
    CHECK(s.message().find(R"(exec: "/no/such/command")") != std::string::npos);
    CHECK(bed.Gone("bad"));
    Result<ProcessState> st = driver->State("bad");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kCreated);
    CHECK(st->started_at == 0);
    // A Run again finds nothing in its way (and fails the same).
    CHECK_FALSE(driver->Run(b).ok());
    CHECK(bed.Gone("bad"));
  }

  TEST_CASE("ContainerdDriver: Run replaces a container a crash left without a task") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    Bundle b = bed.ShellBundle("leftover", "echo fresh");
    DeleteAtEnd at_end{driver, "leftover"};
    // What a crash between Containers/Create and Tasks/Create leaves: a container whose
    // spec may be stale.
    ContainerdContainer c;
    c.id = "leftover";
    c.runtime = "io.containerd.runc.v2";
    c.spec = R"({"ociVersion":"1.0.2","process":{"args":["/stale"],"cwd":"/"},)"
             R"("root":{"path":"rootfs"}})";
    REQUIRE(ContainerdCreateContainer(bed.channel.get(), c).ok());
    Result<ProcessState> st = driver->State("leftover");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kCreated);
    Status s = driver->Run(b);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK(testing::WaitFor([&] { return bed.Logs("leftover") == "fresh\n"; }, 10));
    // A second Run while its task is there is refused, and leaves it alone.
    s = driver->Run(b);
    CHECK(s.code() == Status::Code::kFailedPrecondition);
    MESSAGE(s.ToString());
    CHECK(ContainerdGetTask(bed.channel.get(), "leftover").ok());
    REQUIRE(driver->Delete("leftover").ok());
    CHECK(bed.Gone("leftover"));
  }

  TEST_CASE("ContainerdDriver: an overlay rootfs mounted by the task, writes in the upper dir") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    Bundle b =
        bed.MakeBundle("layered", {"/bin/sh", "-c", "echo written >/made && cat /made"}, true);
    DeleteAtEnd at_end{driver, "layered"};
    Status s = driver->Run(b);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK(testing::WaitFor(
        [&] {
          Result<ProcessState> st = driver->State("layered");
          return st.ok() && st->state == ContainerState::kExited;
        },
        10));
    Result<ProcessState> st = driver->State("layered");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->exit_code == 0);
    CHECK(bed.Logs("layered") == "written\n");
    CHECK(testing::ReadFile(b.dir + "/scratch/upper/made") == "written\n");
    CHECK_FALSE(fs::exists(b.dir + "/lower/made"));
    CHECK_FALSE(fs::exists(b.dir + "/rootfs/made"));  // mounted in containerd's bundle
    REQUIRE(driver->Delete("layered").ok());
    CHECK(bed.Gone("layered"));
  }

  TEST_CASE("ContainerdDriver: a new driver adopts a running container and hears its exit") {
    DriverBed bed;
    std::unique_ptr<ProcessDriver>& first = bed.driver;
    Exits exits;                            // the second driver's
    std::unique_ptr<ProcessDriver> second;  // outlives at_end, which may use it
    Bundle b = bed.ShellBundle("adopted", "while :; do sleep 0.1; done");
    DeleteAtEnd at_end{first.get(), "adopted"};
    Status s = first->Run(b);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    Result<ProcessState> before = first->State("adopted");
    REQUIRE_MESSAGE(before.ok(), before.status().ToString());
    REQUIRE(before->state == ContainerState::kRunning);

    // petrel restarts: a driver of its own, the container runs on.
    second = bed.NewDriver();
    REQUIRE(second->Open(exits.Fn()).ok());
    first.reset();
    at_end.driver = second.get();
    REQUIRE_MESSAGE(bed.Prime(second.get(), &exits), "no exit heard within 10 s");
    Result<ProcessState> after = second->State("adopted");
    REQUIRE_MESSAGE(after.ok(), after.status().ToString());
    CHECK(after->state == ContainerState::kRunning);
    CHECK(after->pid == before->pid);
    CHECK(after->started_at == before->started_at);
    s = second->Signal("adopted", SIGKILL);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK_MESSAGE(exits.Heard("adopted", 137, 10), "no exit 137 of adopted heard");
    after = second->State("adopted");
    REQUIRE_MESSAGE(after.ok(), after.status().ToString());
    CHECK(after->state == ContainerState::kExited);
    CHECK(after->exit_code == 137);
    REQUIRE(second->Delete("adopted").ok());
    CHECK(bed.Gone("adopted"));
  }

  // Leases (ContainerSpec::lease): the container's logger, not petrel, kills a task whose
  // lease is not renewed, so it dies also while petrel is gone; bounds allow a busy
  // machine.
  TEST_CASE("ContainerdDriver: a leased task lives while renewed, killed once not, driver gone") {
    DriverBed bed;
    const std::string lease = bed.dir.Sub("node.lease");
    // Renewed every 100 ms from before the task starts until told to stop.
    std::atomic<bool> renew{true};
    std::atomic<TimeMs> renewed{0};
    auto renew_once = [&] {
      const TimeMs now = LeaseClockNow();
      if (!testing::ReplaceFile(lease, LeaseText(now))) return false;
      renewed = now;
      return true;
    };
    REQUIRE(renew_once());
    std::thread renewer([&] {
      while (renew) {
        (void)renew_once();  // a failure shows as the task killed too early
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    struct Join {
      std::atomic<bool>* renew;
      std::thread* t;
      ~Join() {
        *renew = false;
        if (t->joinable()) t->join();
      }
    } join{&renew, &renewer};
    Bundle b = bed.ShellBundle("leased", "echo up; while :; do sleep 0.1; done");
    b.lease = ContainerLease{lease, 1000};
    DeleteAtEnd at_end{bed.driver.get(), "leased"};
    Status s = bed.driver->Run(b);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK(testing::WaitFor([&] { return bed.Logs("leased") == "up\n"; }, 10));
    // petrel dies; the lease is renewed on for 2 s, past its 1 s: the task lives.
    at_end.driver = nullptr;
    bed.driver.reset();
    for (int i = 0; i < 20; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      Result<ContainerdProcess> task = ContainerdGetTask(bed.channel.get(), "leased");
      REQUIRE_MESSAGE(task.ok(), task.status().ToString());
      REQUIRE(task->status == ContainerdTaskStatus::kRunning);
    }
    renew = false;
    renewer.join();
    // Not renewed any more: the logger kills the task.
    CHECK(testing::WaitFor(
        [&] {
          Result<ContainerdProcess> task = ContainerdGetTask(bed.channel.get(), "leased");
          return task.ok() && task->status == ContainerdTaskStatus::kStopped;
        },
        10));
    const TimeMs dead_after = LeaseClockNow() - renewed.load();
    MESSAGE("stopped " << dead_after << " ms after the last renewal (lease 1000 ms)");
    CHECK(dead_after >= 1000);
    CHECK(dead_after < 1000 + 2500);
    // petrel comes back.
    bed.driver = bed.NewDriver();
    REQUIRE(bed.driver->Open(bed.exits.Fn()).ok());
    at_end.driver = bed.driver.get();
    Result<ProcessState> st = bed.driver->State("leased");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kExited);
    CHECK(st->exit_code == 137);
    CHECK(st->exit_reason.empty());
    CHECK(testing::WaitFor(
        [&] {
          return bed.Logs("leased") ==
                 "up\npetrel-logger: lease " + lease + " ran out: killed the container\n";
        },
        10));
    bed.DeleteAndCheck("leased");
  }

  TEST_CASE("ContainerdDriver: a task whose lease has run out is not started, Run says why") {
    DriverBed bed;
    ProcessDriver* driver = bed.driver.get();
    const std::string lease = bed.dir.Sub("node.lease");  // never renewed: run out
    Bundle b = bed.ShellBundle("expired", "echo up");
    b.lease = ContainerLease{lease, 500};
    DeleteAtEnd at_end{driver, "expired"};
    Status s = driver->Run(b);
    CHECK(s.code() == Status::Code::kFailedPrecondition);
    CHECK(s.message() == "lease " + lease + " has run out: not starting the container");
    CHECK(bed.Gone("expired"));  // containerd never heard of it
    Result<ProcessState> st = driver->State("expired");
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    CHECK(st->state == ContainerState::kExited);
    CHECK(st->exit_code == 255);
    CHECK(bed.Logs("expired").empty());
    bed.DeleteAndCheck("expired");
  }
}

}  // namespace
}  // namespace petrel::internal

int main(int argc, char** argv) { return petrel::testing::RunDoctest(argc, argv); }
