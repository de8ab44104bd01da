// FakeRuntime: an in-memory ContainerRuntime for tests, petrel's and embedders'.
//
// Containers are records; "running" means a fake pid. Nothing sleeps and no process
// runs: the test plays a container's process, in one of two ways.
//  - By hand: a container whose command is anything else than a program (below) runs
//    until something ends it: Exit() with a code, or SIGTERM/SIGKILL as a real process
//    (143 / 137) unless the test made it ignore SIGTERM (SetIgnoreSigterm).
//  - With a program: a container whose command starts with "petrel-fake" runs the
//    steps of the small language below, so the shared conformance suite
//    (tests/lib/conformance.h) runs on the fake as it does on crun and runc.
// Failures can be injected per operation, images can be made missing, and calls can be
// held at the door (Hold) to test what petrel does while a runtime call takes long.
//
// Programs. Each element of the command after "petrel-fake", then each of the args, is
// one step. The steps run in order when the container starts, on the thread that
// calls Start and at once: no time passes. Their output goes to the container's log,
// stdout and stderr as a real container's.
//   print TEXT         TEXT and a newline
//   print-err TEXT     the same on stderr
//   env NAME           "NAME=" and the value ContainerSpec::env gives it ("" if none)
//   cwd                ContainerSpec::working_dir, or "/" when empty
//   id                 the user id: ContainerSpec::user up to a ':', or 0 when empty
//   hostname           ContainerSpec::hostname, or the container's name when empty
//   cat PATH           the file's bytes; a missing one prints "cat: can't open 'PATH':
//                      No such file or directory" on stderr (status 1)
//   write PATH TEXT    TEXT and a newline into the file, replacing it; under a
//                      read-only mount, or a read-only root filesystem outside any
//                      mount, "sh: can't create PATH: Read-only file system" on stderr
//                      (status 1)
//   count N            N lines of 20 bytes: 0 to N-1 as 19 digits with leading zeros
//   alloc MIB          uses MIB MiB of memory for a moment; past a memory limit
//                      (ContainerSpec::resources.memory_bytes) the container is
//                      OOM-killed: it ends with 137 at once
//   trap-term CODE [TEXT]  from now on SIGTERM prints TEXT (when given) and ends the
//                      container with CODE
//   ignore-term        from now on SIGTERM does nothing
//   run                waits for a signal to end the container: the steps after it
//                      never run. SIGKILL ends it with 137, SIGINT with 130;
//                      SIGTERM as trap-term or ignore-term said, else with 143
//   exit CODE          ends the container with CODE
// A program that runs past its last step ends with the status of that step (0, or 1
// after a failed cat or write), as sh does. Paths map as in a container: under a bind
// mount's target to the same place below its source, on the host (real files); under
// a tmpfs to memory that starts empty; anywhere else to the container's own root
// filesystem, in memory and empty too (the fake has no image contents). An unknown or
// malformed step fails Start, naming it, and the container ends with 127.
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
  enum class Op { kPull, kCreate, kStart, kKill, kRemove, kList, kInspect, kLogs };

  // A runtime on a host of its own.
  explicit FakeRuntime(std::shared_ptr<Clock> clock);
  // A runtime over `host`: it sees the containers of every other runtime over it.
  FakeRuntime(std::shared_ptr<Clock> clock, std::shared_ptr<FakeHost> host);
  ~FakeRuntime() override;

  std::string Name() const override { return "fake"; }
  Status PullImage(const std::string& image) override;
  Result<std::string> Create(const ContainerSpec& spec) override;
  Status Start(const std::string& id) override;
  Status Kill(const std::string& id, int signal) override;
  Status Remove(const std::string& id) override;
  Result<std::vector<ContainerInfo>> List(
      const std::map<std::string, std::string>& selector) override;
  Result<ContainerInfo> Inspect(const std::string& id) override;
  Result<LogChunk> Logs(const std::string& id, const LogOptions& options) override;
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
  // The spec a container was created from.
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
  // Release(op). Calls already past the door are not affected.
  void Hold(Op op);
  void Release(Op op);
  // Waits up to `timeout_ms` of real time until at least `n` calls of `op` wait at
  // the door; false when they did not come.
  bool AwaitHeld(Op op, int n, int timeout_ms = 10000);

 private:
  void Door(Op op);            // REQUIRES: the host's lock not held
  Status TakeInjected(Op op);  // REQUIRES: the host's lock held
  // Calls the exit handler of every runtime over the host. REQUIRES: its lock not held.
  void NotifyExit(const std::string& id, int exit_code);

  std::shared_ptr<Clock> clock_;
  std::shared_ptr<FakeHost> host_;
  FakeHost::State& state_;  // *host_->state_; its mutex guards the members below too
  std::map<Op, std::pair<Status, int>> injected_;
  std::map<Op, int> calls_;

  std::mutex door_mu_;  // guards held_ and waiting_
  std::condition_variable door_cv_;
  std::set<Op> held_;
  std::map<Op, int> waiting_;
};

// Adds "fake" to `registry` (petrel/runtimes.h): a FakeRuntime on the config's clock
// (SystemClock() when null), for trying things out and for tests of a daemon. It keeps
// nothing on disk and refuses an endpoint.
Status RegisterFakeRuntime(RuntimeRegistry* registry);

}  // namespace petrel::testing

#endif  // PETREL_TESTING_FAKE_RUNTIME_H_
