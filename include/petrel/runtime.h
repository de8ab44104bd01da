// ContainerRuntime: the seam between petrel's reconcile loop and whatever runs
// containers (crun/runc, Docker, containerd, or the fake in petrel/testing).
//
// Every adapter passes the shared conformance suite (tests/lib/conformance.h), which
// checks what follows on the real runtime. The contract:
//  - Containers carry the labels given at Create; List filters on them. petrel finds
//    its own containers again after a restart through the labels alone.
//  - Calls block until done and may take long (a runtime process, an HTTP or gRPC
//    round trip, an image import of minutes). petrel never makes them on its loop
//    thread: they run on worker threads petrel owns, several at once. What an adapter
//    may assume about overlap:
//      * Create, Start, Kill and Remove of one container never overlap each other
//        (petrel runs one operation at a time per replica). Calls for different
//        containers may run at the same time, on different threads.
//      * PullImage is never called twice at once for one image; it may overlap with
//        any other call, Creates from other images included.
//      * List, Inspect and Logs may be called at any time, from any thread,
//        concurrently with anything, also with a Remove of the same container (they
//        then answer as of before or after it; NotFound is fine).
//    So an adapter guards what its containers share (caches, sockets, counters), not
//    each container's own state.
//  - The exit handler may be called from any thread, also from inside a call of the
//    adapter (the fake calls it from Kill); it must not call back into the adapter,
//    and petrel's handler only wakes the loop.
//  - Stopping is asynchronous by design: petrel sends Kill(SIGTERM), waits for the exit
//    (via the exit handler or List), and after the grace period sends Kill(SIGKILL).
//    No call waits out a grace period.
//  - Containers outlive petrel: destroying the runtime object stops nothing.
//  - Leases (ContainerSpec::lease, optional): an adapter that supports them guarantees
//    that a container created with one is SIGKILLed once its lease file has not been
//    renewed for the lease's duration, also while petrel itself is dead or hung, and
//    that it does not start with a lease already run out (Start fails, naming the
//    file). An adapter that cannot enforce one refuses Create of a container asking
//    for one: NotSupported, "runtime <name> cannot enforce a container lease".
#ifndef PETREL_RUNTIME_H_
#define PETREL_RUNTIME_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrel {

// Labels petrel puts on every container it creates.
inline constexpr const char kLabelWorkload[] = "io.petrel.workload";
inline constexpr const char kLabelReplica[] = "io.petrel.replica";
inline constexpr const char kLabelSpecHash[] = "io.petrel.spec-hash";
inline constexpr const char kLabelNode[] = "io.petrel.node";
// The workload's termination grace period, so a container outliving its workload's
// spec (deleted) is still stopped as the spec asked.
inline constexpr const char kLabelStopGrace[] = "io.petrel.stop-grace-ms";

// A lease on a container's life: the container may run only while the file `path` says
// it was renewed less than `duration_ms` ago. The file holds one line, the decimal
// milliseconds of the host's CLOCK_MONOTONIC (Clock::Monotonic of SystemClock()) at the
// last renewal, and is replaced whole at each renewal (written aside, then renamed); a
// file missing or unreadable counts as run out. A fake clock's times work with the
// fake runtime only. petrel's Cluster asks for one for exclusive workloads, so that a
// node whose petrel died stops them as a node cut off from its peers does
// (Orchestrator::SetExclusiveLease). Not part of the spec hash: no label records it.
struct ContainerLease {
  std::string path;  // empty: no lease
  int64_t duration_ms = 0;

  bool empty() const { return path.empty(); }
  bool operator==(const ContainerLease& o) const {
    return path == o.path && duration_ms == o.duration_ms;
  }
  bool operator!=(const ContainerLease& o) const { return !(*this == o); }
};

// A workload replica lowered to one container. Names are deterministic:
// "petrel_<node>_<workload>_<index>" so a runtime refuses a duplicate by name.
struct ContainerSpec {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string image;
  std::vector<std::string> command;
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  std::string working_dir;
  std::string user;
  std::string hostname;
  bool read_only_rootfs = false;
  // kNone here (a WorkloadSpec's default is kBridge): a container made through this
  // interface alone gets the simplest network unless it asks for another. With kBridge
  // the adapter puts the container on petrel's bridge (Port::AttachNetwork) and
  // publishes `ports` there; with kHost a port is published as itself.
  NetworkMode network = NetworkMode::kNone;
  std::vector<PortSpec> ports;
  std::vector<MountSpec> mounts;
  Resources resources;
  SecurityContext security_context;
  ContainerLease lease;  // none unless set; see ContainerLease
  // Non-empty: the container's /etc/hosts, whole (petrel's names of the bridge
  // network), which SetHosts may replace while it lives; unless a mount of `mounts`
  // is on /etc/hosts. Empty: the image's own. Not part of the spec hash.
  std::string hosts;
};

enum class ContainerState { kCreated, kRunning, kExited };
const char* ContainerStateName(ContainerState state);

struct ContainerInfo {
  std::string id;
  std::string name;
  std::map<std::string, std::string> labels;
  ContainerState state = ContainerState::kCreated;
  int pid = 0;         // when running
  int exit_code = -1;  // when exited; 128+N for death by signal N
  // When exited, why, where the runtime knows more than the code: "OOMKilled" when the
  // kernel killed it for going past its memory limit (Kubernetes' word).
  std::string exit_reason;
  // The container's own IPv4 address on petrel's bridge (NetworkMode::kBridge), ""
  // on other networks.
  std::string address;
  TimeMs created_at = 0;
  TimeMs started_at = 0;   // 0 = never started
  TimeMs finished_at = 0;  // 0 = not exited
};

// Offsets count bytes of a container's whole output since it was created, so a
// reader can follow a log across calls: pass the last chunk's end_offset as
// since_offset. Bytes a runtime has already rotated away are gone; a chunk then
// starts at the oldest byte still kept (start_offset > since_offset).
struct LogOptions {
  int64_t since_offset = -1;       // -1: the last limit_bytes bytes
  size_t limit_bytes = 64 * 1024;  // at most this many bytes per call
};

struct LogChunk {
  std::string data;
  int64_t start_offset = 0;  // offset of data[0]
  int64_t end_offset = 0;    // offset just past the data: the next since_offset
};

// A command to run in a running container (ContainerRuntime::Exec), as a health
// probe's exec check or a user's `petrelctl exec` does.
struct ExecOptions {
  std::vector<std::string> command;  // argv; command[0] looked up in the container's PATH
  int64_t timeout_ms = 10000;        // then the command is SIGKILLed: DeadlineExceeded
  size_t output_limit = 16 * 1024;   // at most this many bytes of output are kept
};

struct ExecResult {
  int exit_code = -1;      // 128+N for death by signal N
  std::string output;      // stdout and stderr combined, the first output_limit bytes
  bool truncated = false;  // the command wrote more than output_limit bytes
};

struct PullOptions {
  PullPolicy policy = PullPolicy::kIfNotPresent;
  // Called on the pulling thread as the pull goes on: at each change of phase and at
  // most a few times a second in between. Must be quick, and must not call back into
  // the runtime. May be empty.
  std::function<void(const PullProgress&)> progress;
  // Asked on the pulling thread, at least once a second while the pull waits on the
  // network: once it answers true, the pull stops within about a second and fails
  // Unavailable, its message ending in "pull cancelled". What it completed stays for
  // the next pull: whole blobs, and a partial one resumes. May be empty.
  std::function<bool()> cancelled;
};

// An image in a runtime's store.
struct ImageInfo {
  std::string id;                 // "sha256:<hex>", the digest of its config
  std::vector<std::string> refs;  // the references that gave it (pulls, imports)
  int64_t size_bytes = 0;         // what it takes on disk
  TimeMs created_at = 0;          // when it came into the store
  bool in_use = false;            // a container (in any state) was made from it
};

struct PruneResult {
  std::vector<std::string> removed;  // ids of the images removed
  int64_t bytes_freed = 0;
};

class ContainerRuntime {
 public:
  using ExitHandler = std::function<void(const std::string& container_id, int exit_code)>;

  virtual ~ContainerRuntime() = default;

  // A short name for messages: "crun", "runc", "docker", "fake".
  virtual std::string Name() const = 0;

  // Makes `image` ready for Create: imports a local archive, pulls from a registry, or
  // does nothing where Create needs nothing. May take minutes. Errors name the image
  // first ("oci-archive:/x.tar: no such file or directory"); petrel reports them as
  // the image's, with their own back-off, never as a crash loop of creates.
  // options.policy says what to do with an image already had; options.progress hears
  // how the pull goes.
  virtual Status PullImage(const std::string& image, const PullOptions& options) = 0;
  // Creates a container (not started) and returns its id. AlreadyExists when a
  // container of that name exists. A Create may still fail on its image (a file
  // replaced since PullImage); petrel then runs PullImage again before the next try.
  virtual Result<std::string> Create(const ContainerSpec& spec) = 0;
  // Starts a container in state kCreated: FailedPrecondition in any other state,
  // NotFound when no such container exists. A command that cannot run (its binary is
  // not in the image) fails here, naming the binary; the container then does not run.
  virtual Status Start(const std::string& id) = 0;
  // Sends a signal to the container's main process. OK when it has none (created, or
  // already exited); NotFound when no such container exists.
  virtual Status Kill(const std::string& id, int signal) = 0;
  // Removes a container that is not running, and everything it owns on disk.
  // FailedPrecondition while it runs; NotFound when no such container exists.
  virtual Status Remove(const std::string& id) = 0;
  // The containers whose labels include every pair of `selector`.
  virtual Result<std::vector<ContainerInfo>> List(
      const std::map<std::string, std::string>& selector) = 0;
  // The container as it is now; NotFound when no such container exists.
  virtual Result<ContainerInfo> Inspect(const std::string& id) = 0;
  // The container's combined stdout and stderr, oldest first. NotFound when no such
  // container exists.
  virtual Result<LogChunk> Logs(const std::string& id, const LogOptions& options) = 0;
  // Runs options.command in the running container `id` (its namespaces, root, cgroups,
  // user, environment and working directory, as the container's own process), waits
  // for it and returns its exit code and output. The command's processes are gone when
  // Exec returns, also after a timeout: DeadlineExceeded ("exec in <id>: timed out
  // after 1s"). A command that cannot run (not in the image) gives exit code 127 with
  // the reason in the output, as a shell does. FailedPrecondition when the container
  // is not running (created, or exited meanwhile); NotFound when no such container
  // exists; NotSupported from an adapter that cannot exec (the default). May be called
  // at any time, from any thread, concurrently with anything (several at once for one
  // container, a Kill or Remove of it included).
  virtual Result<ExecResult> Exec(const std::string& id, const ExecOptions& options) {
    (void)id;
    (void)options;
    return Status::NotSupported("runtime " + Name() + " cannot exec in a container");
  }

  // Replaces the /etc/hosts of a container created with ContainerSpec::hosts by `hosts`,
  // in place: the running container reads the new names at its next lookup (a reader
  // at that very moment may see a mix of both). May be called at any time, from any
  // thread, concurrently with anything but another SetHosts of the same container.
  // NotFound when no such container exists; FailedPrecondition when it was created
  // without hosts; NotSupported from an adapter that cannot (the default).
  virtual Status SetHosts(const std::string& id, const std::string& hosts) {
    (void)id;
    (void)hosts;
    return Status::NotSupported("runtime " + Name() + " cannot rewrite a container's hosts");
  }

  // The images in the runtime's own store, oldest first. NotSupported from an adapter
  // whose images another daemon keeps (the default).
  virtual Result<std::vector<ImageInfo>> ListImages() {
    return Status::NotSupported("runtime " + Name() + " does not list images");
  }
  // Removes the image that `ref` (a reference it came by, or its id) names, with all
  // its references. NotFound when no image has that name; FailedPrecondition when a
  // container uses it ("<ref>: in use by container <name>").
  virtual Status RemoveImage(const std::string& ref) {
    (void)ref;
    return Status::NotSupported("runtime " + Name() + " does not remove images");
  }
  // Removes every image no container uses, and what only they needed (blobs, layers).
  virtual Result<PruneResult> PruneImages() {
    return Status::NotSupported("runtime " + Name() + " does not prune images");
  }

  // Installs the function called when a container's main process exits. Pass an
  // empty function to remove it. petrel treats a call as a hint to look (it lists
  // again), so a runtime may call it late, twice, or not at all; exits are then
  // found by the periodic resync.
  virtual void SetExitHandler(ExitHandler handler) = 0;
};

}  // namespace petrel

#endif  // PETREL_RUNTIME_H_
