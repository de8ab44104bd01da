// FakeRuntime: an in-memory ContainerRuntime for tests, petrel's and embedders'.
//
// Containers are records; "running" means a fake pid. Nothing sleeps and no process
// runs: the test plays a container's process, in one of two ways.
//  - By hand: a container whose command is anything else than a program (below) runs
//    until something ends it: Exit() with a code, or SIGTERM/SIGKILL as a real process
//    (143 / 137) unless the test made it ignore SIGTERM (SetIgnoreSigterm).
//  - With a program: a container whose command starts with "petrel-fake" (kFakeProgram)
//    runs the steps of the small language of petrel/testing/fake_program.h, so the
//    shared conformance suite (tests/lib/conformance.h) runs on the fake as it does on
//    crun and runc.
// Failures can be injected per operation, images can be made missing, and calls can be
// held at the door (Hold, HeldCalls) to test what petrel does while a runtime call
// takes long.
//
// Programs. The steps run in order when the container starts, on the thread that calls
// Start and at once: no time passes. Their output goes to the container's log, stdout
// and stderr as a real container's. `run` waits for a signal: SIGKILL ends the
// container with 137, SIGTERM as trap-term or ignore-term said, else with 143; other
// signals do nothing. A program that runs past its last step ends with the status of
// that step (0, or 1 after a failed cat or write), as sh does. `cat` and `write` fail
// as busybox does ("cat: can't open 'PATH': No such file or directory", "sh: can't
// create PATH: Read-only file system" on stderr, status 1). `alloc` past
// ContainerSpec::resources.memory_bytes OOM-kills the container: 137 at once. `sleep`
// takes no time either.
//
// Exec runs a command in a running container, as a second process of it. A command
// that starts with "petrel-fake" runs the program of its other elements, at once, on
// the calling thread: its steps see and change the container's files as the
// container's do, `env`, `cwd` and `id` answer as for the container, and its output
// (up to ExecOptions::output_limit bytes) is Exec's result, not the container's log. Time passes
// only in `sleep` steps: a command whose sleeps reach ExecOptions::timeout_ms, or that gets to
// `run` (which waits for a signal that never comes), ends there, before its later steps, and Exec
// answers DeadlineExceeded ("exec in ID: timed out after 1s"). trap-term and ignore-term do nothing
// (no signal reaches the command); `alloc` past the container's memory limit ends the command, not
// the container, with 137; an unknown step ends it with 127, naming the step in its output. Any
// other command names a binary: as the container's does under Images (below), one that a fake:NAME
// image lacks exits 127 with "exec BINARY: No such file or directory" as its output, and in any
// other image it exits 0 with no output.
//
// Paths map as in a container: made absolute against ContainerSpec::working_dir and
// cleaned as the kernel does ("/data/../x" is "/x"); then under a bind mount's target
// to the same place below its source, on the host (real files, opened without
// following a symbolic link, so a program never reaches outside the source); under a
// tmpfs to memory that starts empty; anywhere else to the container's own root
// filesystem, in memory and empty too (the fake has no image contents). `cwd` prints
// ContainerSpec::working_dir ("/" when empty), `id` the user up to a ':' (0 when
// empty), `hostname` ContainerSpec::hostname (the container's name when empty). An
// unknown or malformed step fails Start, naming it, and the container ends with 127.
//
// Images: "fake:NAME" is an image that holds the interpreter and nothing else: a
// container from it whose command names another binary fails Start ("exec
// /bin/sh: No such file or directory") and ends with 127, as an image without that
// binary does on a real runtime. Any other image is taken to hold whatever a command
// names (the fake cannot look inside it).
//
// Logs keep a container's whole output unless SetLogLimit caps them; past the cap the
// oldest bytes are dropped and offsets go on counting, as a real runtime's rotation.
//
// Leases (ContainerSpec::lease) are enforced when the test says: CheckLeases() kills
// (SIGKILL, 137) every running container whose lease file has run out by the runtime's
// clock (Clock::Monotonic, so a FakeClock drives it), as the crun shim does on its own
// every 100 ms; Start refuses a container whose lease has run out. SetLeaseSupport(false)
// makes the fake an adapter that cannot enforce leases: Create refuses them.
//
// Containers live on a FakeHost, not in the runtime object: a FakeRuntime made over the
// host of an earlier one adopts its containers and hears their exits, as a new crun
// object over the same state dir does; destroying a runtime object stops nothing. Each
// runtime object has its own exit handler, injected failures, call counts and doors.
//
// Thread-safe: every method may be called from any thread. The exit handler is
// called without the runtime's lock held, on the thread that caused the exit, for
// every runtime object over the container's host.
#ifndef PETREL_TESTING_FAKE_RUNTIME_H_
#define PETREL_TESTING_FAKE_RUNTIME_H_

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "petrel/clock.h"
#include "petrel/runtime.h"
#include "petrel/runtimes.h"

namespace petrel::testing {

// The machine a FakeRuntime's containers live on (with their logs and files), and the
// images it has or lacks. Share it to make a second runtime object over the same
// containers: std::make_shared<FakeHost>(), then FakeRuntime(clock, host).
class FakeHost {
 public:
  FakeHost();
  ~FakeHost();
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;

  struct State;  // what is on it; internal to the fake

 private:
  friend class FakeRuntime;
  std::unique_ptr<State> state_;
};

class FakeRuntime final : public ContainerRuntime {
 public:
  enum class Op {
    kPull,
    kCreate,
    kStart,
    kKill,
    kRemove,
    kList,
    kInspect,
    kLogs,
    kExec,
    kSetHosts
  };

  // A runtime on a host of its own.
  explicit FakeRuntime(std::shared_ptr<Clock> clock);
  // A runtime over `host`: it sees the containers of every other runtime over it.
  FakeRuntime(std::shared_ptr<Clock> clock, std::shared_ptr<FakeHost> host);
  ~FakeRuntime() override;

  std::string Name() const override { return "fake"; }
  Status PullImage(const std::string& image, const PullOptions& options) override;
  Result<std::string> Create(const ContainerSpec& spec) override;
  Status Start(const std::string& id) override;
  Status Kill(const std::string& id, int signal) override;
  Status Remove(const std::string& id) override;
  Result<std::vector<ContainerInfo>> List(
      const std::map<std::string, std::string>& selector) override;
  Result<ContainerInfo> Inspect(const std::string& id) override;
  Result<LogChunk> Logs(const std::string& id, const LogOptions& options) override;
  Result<ExecResult> Exec(const std::string& id, const ExecOptions& options) override;
  // Replaces the hosts of the container's spec (SpecOf shows them).
  Status SetHosts(const std::string& id, const std::string& hosts) override;
  // Images: each pulled reference is an image of its own, of 1 MiB, whose id is the
  // SHA-256 of the reference. A container uses the image its spec names. A pull
  // reports its progress once, whole.
  Result<std::vector<ImageInfo>> ListImages() override;
  Status RemoveImage(const std::string& ref) override;
  Result<PruneResult> PruneImages() override;
  void SetExitHandler(ExitHandler handler) override;

  // --- test controls ---
  // Those about containers, images and logs act on the host, the others on this
  // runtime object alone.

  // Ends a running container's process with `exit_code`. NotFound / FailedPrecondition
  // when there is no such running container.
  Status Exit(const std::string& id, int exit_code);
  // Removes a container whatever its state, as someone with the runtime's CLI would
  // behind petrel's back.
  Status ForceRemove(const std::string& id);
  // The next `times` calls of `op` fail with `status`.
  void FailNext(Op op, Status status, int times = 1);
  // When true, SIGTERM does not end containers (SIGKILL still does), except those
  // whose program says what SIGTERM does (trap-term).
  void SetIgnoreSigterm(bool ignore);
  // Appends to a container's log.
  void AppendLog(const std::string& id, const std::string& text);
  // Keeps at most the last `bytes` bytes of each container's output; 0 (the default)
  // keeps all of it.
  void SetLogLimit(int64_t bytes);
  // Kills every running container whose lease has run out (ContainerSpec::lease), as
  // a real runtime's watcher would have by now; returns their ids.
  std::vector<std::string> CheckLeases();
  // When false, Create refuses a container with a lease (NotSupported), as an adapter
  // that cannot enforce one must. True by default.
  void SetLeaseSupport(bool supported);
  // The spec a container was created from, with the hosts SetHosts gave it last.
  Result<ContainerSpec> SpecOf(const std::string& id);
  // Every container, in creation order.
  std::vector<ContainerInfo> Containers();
  // How many times `op` was called (failed calls included).
  int Calls(Op op);

  // A missing image fails PullImage and Create with NotFound
  // ("<image>: no such image"), as a deleted archive would.
  void SetImageMissing(const std::string& image, bool missing);
  // The images PullImage succeeded for, once per call, in order.
  std::vector<std::string> Pulled();

  // From now on, calls of `op` wait at the door (before doing anything) until
  // Release(op), which lets every call then waiting through, also when Hold(op)
  // follows at once. Calls already past the door are not affected. A test that holds
  // calls an Orchestrator makes should use HeldCalls (below), so that a failed REQUIRE
  // does not leave the Orchestrator's destructor waiting for them.
  void Hold(Op op);
  void Release(Op op);
  // Waits up to `timeout_ms` of real time until at least `n` calls of `op` wait at
  // the door; false when they did not come.
  bool AwaitHeld(Op op, int n, int timeout_ms = 10000);

 private:
  void Door(Op op);                               // REQUIRES: the host's lock not held
  bool LeaseRunOut(const ContainerLease& lease);  // false when there is none
  Status TakeInjected(Op op);                     // REQUIRES: the host's lock held
  // The name of a container made from image `ref`, or "". REQUIRES: the lock held.
  std::string ImageUserLocked(const std::string& ref);
  // Calls the exit handler of every runtime over the host. REQUIRES: its lock not held.
  void NotifyExit(const std::string& id, int exit_code);

  std::shared_ptr<Clock> clock_;
  std::shared_ptr<FakeHost> host_;
  FakeHost::State& state_;  // *host_->state_; its mutex guards the members below too
  std::map<Op, std::pair<Status, int>> injected_;
  bool lease_support_ = true;
  std::map<Op, int> calls_;

  std::mutex door_mu_;  // guards held_, releases_ and waiting_
  std::condition_variable door_cv_;
  std::set<Op> held_;
  std::map<Op, uint64_t> releases_;  // Release calls so far: a waiter waits for the next
  std::map<Op, int> waiting_;
};

// Holds calls of `op` at `runtime`'s door (FakeRuntime::Hold) while it lives, and
// releases them when it goes, however the scope ends. Declare it after whatever waits
// for those calls when it is destroyed (an Orchestrator joins its workers), so that it
// goes first:
//   std::unique_ptr<Orchestrator> orch = ...;
//   HeldCalls held(runtime.get(), FakeRuntime::Op::kStart);
//   ... REQUIRE(runtime->AwaitHeld(FakeRuntime::Op::kStart, 3)); ...
//   held.Release();
// REQUIRES: `runtime` outlives it.
class HeldCalls {
 public:
  HeldCalls(FakeRuntime* runtime, FakeRuntime::Op op);
  ~HeldCalls();
  HeldCalls(const HeldCalls&) = delete;
  HeldCalls& operator=(const HeldCalls&) = delete;

  // Releases the calls now; the destructor then does nothing.
  void Release();

 private:
  FakeRuntime* runtime_;
  FakeRuntime::Op op_;
};

// Adds "fake" to `registry` (petrel/runtimes.h): a FakeRuntime on the config's clock
// (SystemClock() when null), for trying things out and for tests of a daemon. It keeps
// nothing on disk and refuses an endpoint.
Status RegisterFakeRuntime(RuntimeRegistry* registry);

}  // namespace petrel::testing

#endif  // PETREL_TESTING_FAKE_RUNTIME_H_
