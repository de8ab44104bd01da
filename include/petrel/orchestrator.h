// Orchestrator: the facade an embedder links against.
//
//   petrel::Options options;
//   options.state_dir = "/var/lib/petrel";
//   options.runtime = my_runtime;
//   std::unique_ptr<petrel::Orchestrator> orch;
//   petrel::Status s = petrel::Orchestrator::Open(options, &orch);
//   s = orch->Start();                       // or orch->Attach(loop), or orch->Step()
//   s = orch->Apply(petrel::LoadManifests("web.yaml").value()).status();
//
// One thread (the loop thread) owns the reconcile state and only decides: whatever may
// take longer than about a millisecond (every runtime call, image imports, commits
// that wait for the disk) runs on worker threads petrel owns (Options::worker_threads,
// never libuv's shared pool) and reports back to the loop. There are three ways to run
// it; pick exactly one per Orchestrator:
//  - Start(): petrel runs its own libuv loop on its own thread; destroying it ends it.
//  - Attach(loop): petrel adds its handles to the embedder's libuv loop; the thread
//    running that loop becomes the loop thread. Detach() before closing the loop.
//  - Step(): no loop and no worker threads; the caller reconciles when it likes (tests,
//    or embedders with their own scheduler) and asks NextWakeup() when to step again.
//    Step makes the runtime calls itself, on the caller's thread, so it blocks for as
//    long as they take, and it is deterministic: with a fake runtime and a fake clock
//    the same calls give the same results, which is what tests and the simulation use.
//
// Thread-safety: Apply, Delete, Get, List, Events, Logs, Subscribe and Unsubscribe may
// be called from any thread at any time (Apply, Delete, Events and Logs may block on
// the disk or the runtime: call them off the loop thread, as petreld's API server
// does). Start, Attach, Detach, Step and the destructor are not thread-safe against
// each other.
//
// Durability: when Apply or Delete returns OK the change is on disk (synchronous
// commit); a kill -9 or power cut after that loses nothing of it.
#ifndef PETREL_ORCHESTRATOR_H_
#define PETREL_ORCHESTRATOR_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "petrel/clock.h"
#include "petrel/log.h"
#include "petrel/port.h"
#include "petrel/runtime.h"
#include "petrel/spec.h"
#include "petrel/status.h"

struct uv_loop_s;

namespace petrel {

struct Options {
  // Directory for petrel's database; created (0700) if missing. Required.
  std::string state_dir;
  // Runs the containers. Required.
  std::shared_ptr<ContainerRuntime> runtime;
  // Defaults to SystemClock().
  std::shared_ptr<Clock> clock;
  // What differs per platform (cgroups, mounts, namespaces, the service manager).
  // Defaults to DefaultPort(). Give the runtime adapter the same one. The reconcile
  // core itself needs none of it yet; health probes and networking will (network
  // namespaces).
  std::shared_ptr<Port> port;
  // Defaults to StderrLogSink().
  LogSink log_sink;
  // This node's name: in container names and the io.petrel.node label. Defaults to
  // the host name.
  std::string node_name;
  // How often the loop compares desired and observed state even when nothing
  // happened, to repair drift. Must be > 0.
  int64_t resync_interval_ms = 10000;
  // Events kept in the database; the oldest are dropped beyond this.
  int64_t event_log_capacity = 10000;
  // Runtime calls (create, start, kill, remove) of different replicas run side by
  // side on this many threads; an image pull takes one too. List has a thread of its
  // own and store commits another, so a slow start never holds up the next pass.
  // Must be >= 1. (Step() uses none: it runs everything on its caller's thread.)
  int worker_threads = 8;
  // Host directories bind mounts may take their source from (CheckHostPaths, spec.h):
  // Apply refuses a workload whose bind mount lies elsewhere, with InvalidArgument
  // naming the workload and field. Each an absolute path. Empty: any host path, so
  // whoever may Apply may mount the host's / into a container, which is root on the
  // host. In a Cluster, give every node the same list (ClusterOptions too).
  std::vector<std::string> allowed_host_paths;
};

// The node name petrel uses when Options::node_name is empty: the host name with
// characters a node name cannot hold replaced by '-', or "node".
std::string DefaultNodeName();

// What one Apply did to one workload, like kubectl's "created / configured / unchanged".
struct ApplyResult {
  enum class Outcome { kCreated, kConfigured, kUnchanged };
  std::string name;
  Outcome outcome = Outcome::kUnchanged;
  int64_t generation = 0;  // increases by one per change of the spec
};
const char* OutcomeName(ApplyResult::Outcome outcome);

// A workload as stored, with what petrel observed of its replicas.
struct WorkloadState {
  WorkloadSpec spec;
  int64_t generation = 0;
  std::string spec_hash;
  TimeMs created_at = 0;  // when first applied
  TimeMs updated_at = 0;  // when the spec last changed
  // When Delete was called; 0 while the workload is wanted. A deleted workload is
  // Terminating, still listed with its replicas, until its last container is gone.
  TimeMs deleted_at = 0;
  std::vector<ReplicaStatus> replicas;  // by index; only indices that exist
  int ready_replicas = 0;               // replicas that are ready (ReplicaStatus::ready)

  bool terminating() const { return deleted_at != 0; }
};

// Output of one replica's container, from Orchestrator::Logs.
struct ReplicaLog {
  std::string container_id;  // the container read
  LogChunk chunk;            // offsets count bytes of that container's output
};

using EventCallback = std::function<void(const Event&)>;
using SubscriptionId = uint64_t;

class Orchestrator {
 public:
  // Opens (creating if needed) the state in options.state_dir. Fails with a clear
  // message if the directory is unusable or the database is from a newer petrel.
  static Status Open(const Options& options, std::unique_ptr<Orchestrator>* result);

  // Stops the loop if petrel runs one, and releases everything. Containers keep
  // running: closing petrel is not stopping the workloads.
  virtual ~Orchestrator() = default;

  Orchestrator(const Orchestrator&) = delete;
  Orchestrator& operator=(const Orchestrator&) = delete;

  // --- desired state (any thread) ---

  // Validates and stores the specs, all or nothing, then wakes the loop.
  // An unchanged spec writes nothing and reports kUnchanged.
  virtual Result<std::vector<ApplyResult>> Apply(const std::vector<WorkloadSpec>& specs) = 0;
  Result<ApplyResult> Apply(const WorkloadSpec& spec);
  // Deletes a workload: durably when it returns OK. The loop then stops and removes
  // its containers (each with the grace period it was created with); until the last
  // is gone the workload stays listed as Terminating (WorkloadState::deleted_at), also
  // across restarts of petrel. Applying it again meanwhile brings it back as created.
  // OK when it is already Terminating; NotFound when no such workload exists.
  virtual Status Delete(const std::string& name) = 0;

  // --- observed state (any thread) ---
  virtual Result<WorkloadState> Get(const std::string& name) = 0;
  virtual Result<std::vector<WorkloadState>> List() = 0;
  // Events with seq > after_seq, oldest first, at most `limit`.
  virtual Result<std::vector<Event>> Events(int64_t after_seq, size_t limit) = 0;
  // The combined stdout and stderr of replica `replica`'s container (`container_id`
  // when not empty: a container this replica had, e.g. to follow one across
  // restarts), read from the runtime on the caller's thread. NotFound when there is
  // no such workload, replica or container; FailedPrecondition when the replica has
  // no container yet ("workload web replica 0 has no container yet (phase Pending)").
  virtual Result<ReplicaLog> Logs(const std::string& workload, int replica,
                                  const LogOptions& options,
                                  const std::string& container_id = "") = 0;

  // --- this node's images (any thread; each calls the runtime on the caller's thread) ---
  // As ContainerRuntime's: a pull may take minutes, and options.progress hears it on
  // the caller's thread. The defaults say NotSupported.
  virtual Status PullImage(const std::string& image, const PullOptions& options) {
    (void)options;
    return Status::NotSupported("cannot pull " + image + " here");
  }
  virtual Result<std::vector<ImageInfo>> ListImages() {
    return Status::NotSupported("cannot list images here");
  }
  virtual Status RemoveImage(const std::string& ref) {
    return Status::NotSupported("cannot remove image " + ref + " here");
  }
  virtual Result<PruneResult> PruneImages() {
    return Status::NotSupported("cannot prune images here");
  }

  // Calls `callback` on the loop thread for every new event, until Unsubscribe.
  // The callback must not block and must not call Step, Detach or Close.
  virtual SubscriptionId Subscribe(EventCallback callback) = 0;
  virtual void Unsubscribe(SubscriptionId id) = 0;

  // --- for a Cluster around this Orchestrator (any thread) ---

  // From the next container created on, those of `exclusive` workloads ask the runtime
  // for `lease` (ContainerSpec::lease): they are SIGKILLed when it is not renewed, so an
  // exclusive workload stops when its node's petrel dies, hangs or is cut off, before
  // the cluster may start it on another node. Containers created before keep what they
  // were created with; an empty path (the default) asks for none, which is right for a
  // node outside a cluster. The Cluster facade sets it and renews the file; a runtime
  // that cannot enforce leases then fails the creates of exclusive workloads.
  virtual void SetExclusiveLease(const ContainerLease& lease) { (void)lease; }

  // --- running the loop ---

  // Runs petrel's own loop thread.
  virtual Status Start() = 0;
  // REQUIRES: called on the thread that runs `loop`, which must outlive Detach().
  virtual Status Attach(uv_loop_s* loop) = 0;
  // REQUIRES: called on the loop's thread. Closes petrel's handles; the embedder runs
  // the loop until they are closed (uv_run returns when nothing else is active).
  virtual void Detach() = 0;
  // One reconcile pass now, on the caller's thread (manual mode only).
  virtual Status Step() = 0;
  // When the loop next needs to run even if nothing happens (a backoff ends, a grace
  // period ends, or the resync is due).
  virtual TimeMs NextWakeup() = 0;

 protected:
  Orchestrator() = default;
};

}  // namespace petrel

#endif  // PETREL_ORCHESTRATOR_H_
