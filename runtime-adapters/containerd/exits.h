// The exits of a namespace's tasks as containerd publishes them ("/tasks/exit"), heard on
// a thread of the watcher's own through an Events subscription that is made again
// whenever it breaks: containerd restarted, its socket not there yet, an answer cut off.
//
// An exit that happens while no subscription stands is not heard (containerd keeps no
// backlog of events): the adapter's List and Inspect read the task's state from
// containerd and find it, as the Orchestrator's periodic List does. So an outage costs
// promptness, never an exit.
//
// Thread-safety: the handlers run on the watcher's thread, one at a time; the object is
// made and destroyed by its owner's thread.
#ifndef PETREL_RUNTIME_ADAPTERS_CONTAINERD_EXITS_H_
#define PETREL_RUNTIME_ADAPTERS_CONTAINERD_EXITS_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "petrel/status.h"
#include "runtime-adapters/containerd/services.h"

namespace petrel::internal {

class ContainerdExitWatcher {
 public:
  struct Options {
    std::string socket_path;  // containerd's gRPC socket
    std::string ns;           // the namespace whose tasks are watched
    // Each exit of a task's process (the init process's and exec'd ones' alike).
    std::function<void(const ContainerdExit& exit)> on_exit;
    // What the owner may log: the subscription broke (the error, naming method and
    // socket; said once per outage, not per attempt), it stands again after that (OK,
    // once it has lasted a second), an event that could not be read (Corruption; it is
    // skipped). May be empty.
    std::function<void(const Status& what)> on_report;
    // Waits between attempts while containerd cannot be reached: from `retry_first`,
    // doubling up to `retry_max`.
    std::chrono::milliseconds retry_first{100};
    std::chrono::milliseconds retry_max{2000};
  };

  // Starts the thread; the first subscription is made there. IOError when libcurl
  // cannot be loaded.
  static Result<std::unique_ptr<ContainerdExitWatcher>> Start(Options options);
  // Ends the subscription and the thread, within about a second.
  ~ContainerdExitWatcher();
  ContainerdExitWatcher(const ContainerdExitWatcher&) = delete;
  ContainerdExitWatcher& operator=(const ContainerdExitWatcher&) = delete;

  // How many subscriptions were made so far (1 while the first stands): for tests.
  int subscriptions() const;

 private:
  ContainerdExitWatcher(Options options, std::unique_ptr<GrpcChannel> channel);
  void Run();

  const Options options_;
  std::unique_ptr<GrpcChannel> channel_;  // the watcher thread's only
  mutable std::mutex mu_;
  std::condition_variable stopping_cv_;
  bool stopping_ = false;
  int subscriptions_ = 0;
  std::thread thread_;
};

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CONTAINERD_EXITS_H_
