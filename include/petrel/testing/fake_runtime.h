// FakeRuntime: an in-memory ContainerRuntime for tests, petrel's and embedders'.
//
// Containers are records; "running" means a fake pid. Nothing runs, nothing sleeps.
// The test plays the containers' processes: Exit() ends one with a code, and
// SIGTERM/SIGKILL end one as a real process would (143 / 137) unless the test made
// it ignore SIGTERM. Failures can be injected per operation, images can be made
// missing, and calls can be held at the door (Hold) to test what petrel does while a
// runtime call takes long.
//
// Thread-safe: every method may be called from any thread. The exit handler is
// called without the runtime's lock held, on the thread that caused the exit.
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

class FakeRuntime final : public ContainerRuntime {
 public:
  enum class Op { kPull, kCreate, kStart, kKill, kRemove, kList, kInspect, kLogs };

  explicit FakeRuntime(std::shared_ptr<Clock> clock);

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

  // Ends a running container's process with `exit_code`. NotFound / FailedPrecondition
  // when there is no such running container.
  Status Exit(const std::string& id, int exit_code);
  // Removes a container whatever its state, as someone with the runtime's CLI would
  // behind petrel's back.
  Status ForceRemove(const std::string& id);
  // The next `times` calls of `op` fail with `status`.
  void FailNext(Op op, Status status, int times = 1);
  // When true, SIGTERM does not end containers (SIGKILL still does).
  void SetIgnoreSigterm(bool ignore);
  // Appends to a container's log.
  void AppendLog(const std::string& id, const std::string& text);
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
  struct Container {
    ContainerInfo info;
    ContainerSpec spec;
    std::string log;
  };
  void Door(Op op);                                       // REQUIRES: mu_ not held
  Status TakeInjected(Op op);                             // REQUIRES: mu_ held
  void EndProcess(Container* c, int exit_code);           // REQUIRES: mu_ held
  void NotifyExit(const std::string& id, int exit_code);  // REQUIRES: mu_ not held

  std::shared_ptr<Clock> clock_;
  std::mutex mu_;
  std::vector<Container> containers_;  // creation order; few, so linear search is fine
  std::map<Op, std::pair<Status, int>> injected_;
  std::map<Op, int> calls_;
  bool ignore_sigterm_ = false;
  int next_id_ = 1;
  int next_pid_ = 1000;
  std::shared_ptr<ExitHandler> exit_handler_;
  std::set<std::string> missing_images_;
  std::vector<std::string> pulled_;

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
