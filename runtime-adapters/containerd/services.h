// The calls of containerd's API this adapter makes, over a GrpcChannel, with the
// messages of proto/ (C from protobuf-c). Each returns what petrel reads of the answer,
// and the channel's errors as they came.
//
// Thread-safety: as the channel's, one call at a time on one channel.
#ifndef PETREL_RUNTIME_ADAPTERS_CONTAINERD_SERVICES_H_
#define PETREL_RUNTIME_ADAPTERS_CONTAINERD_SERVICES_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "petrel/status.h"
#include "runtime-adapters/containerd/grpc.h"

namespace petrel::internal {

struct ContainerdVersion {
  std::string version;   // "1.6.20~ds1"
  std::string revision;  // what it was built from: "1.6.20~ds1-1+deb12u3" in Debian 12
};

// containerd.services.version.v1.Version/Version. Not namespaced.
Result<ContainerdVersion> ContainerdGetVersion(GrpcChannel* channel);

// containerd.services.namespaces.v1.Namespaces/List: the names of the namespaces,
// as containerd orders them.
Result<std::vector<std::string>> ContainerdListNamespaces(GrpcChannel* channel);

// containerd.services.namespaces.v1.Namespaces/Create of namespace `name`, without
// labels. AlreadyExists when there is one. containerd publishes the event
// "/namespaces/create" in the channel's namespace, which must not be "".
Status ContainerdCreateNamespace(GrpcChannel* channel, const std::string& name);

// One event of containerd's, as its Events service sends it.
struct ContainerdEnvelope {
  std::chrono::system_clock::time_point timestamp;  // when containerd published it
  std::string ns;                                   // the namespace it happened in: "petrel"
  std::string topic;                                // "/tasks/exit"
  std::string type_url;  // the event's type: "containerd.events.TaskExit"
  std::string value;     // the event, serialized
};

// containerd.services.events.v1.Events/Subscribe: every event that matches any of
// `filters` (containerd's syntax: `topic~="/tasks/"`, `namespace==petrel`; none: all),
// in every namespace, each handed to `on_envelope` as it comes, until `stop` says so
// (kStopped) or containerd ends the stream. As GrpcChannel::Stream, which it is; also
// Corruption for a message that is no Envelope.
Result<GrpcStreamEnd> ContainerdSubscribe(
    GrpcChannel* channel, const std::vector<std::string>& filters,
    const std::function<Status(ContainerdEnvelope envelope)>& on_envelope,
    const std::function<bool()>& stop);

// The type containerd gives an OCI runtime spec in a container: its value is the JSON.
inline constexpr const char* kContainerdSpecType =
    "types.containerd.io/opencontainers/runtime-spec/1/Spec";

// A container as containerd keeps it: metadata, no process (that is a task).
struct ContainerdContainer {
  std::string id;
  std::map<std::string, std::string> labels;
  std::string image;    // the image's name, "" for none
  std::string runtime;  // the shim: "io.containerd.runc.v2"
  // For that shim: runc's state directory (its --root), sent as the runtime's options
  // (containerd.runc.v1.Options); "" for none, then the shim's /run/containerd/runc,
  // whatever containerd's own state directory.
  std::string runc_root;
  std::string spec;  // the OCI runtime spec (config.json), as kContainerdSpecType
  std::string spec_type = kContainerdSpecType;
  std::string snapshotter;   // "" for none
  std::string snapshot_key;  // the root filesystem's snapshot, "" for none
  // Set by containerd; ignored by Create.
  std::chrono::system_clock::time_point created_at;
  std::chrono::system_clock::time_point updated_at;
};

// containerd.services.containers.v1.Containers/Create, in the channel's namespace:
// the container as containerd stored it. AlreadyExists for an id in use;
// InvalidArgument (containerd's words) for a bad id or label, no runtime or no spec.
Result<ContainerdContainer> ContainerdCreateContainer(GrpcChannel* channel,
                                                      const ContainerdContainer& container);

// Containers/Get of container `id`: NotFound when there is none.
Result<ContainerdContainer> ContainerdGetContainer(GrpcChannel* channel, const std::string& id);

// Containers/List: the containers that match any of `filters` (containerd's syntax:
// `labels."petrel.node"==a`; none: all), as containerd orders them.
Result<std::vector<ContainerdContainer>> ContainerdListContainers(
    GrpcChannel* channel, const std::vector<std::string>& filters);

// Containers/Delete of container `id`: NotFound when there is none;
// FailedPrecondition while it has a task.
Status ContainerdDeleteContainer(GrpcChannel* channel, const std::string& id);

// A mount containerd makes for a task: its root filesystem on the bundle's rootfs.
struct ContainerdMount {
  std::string type;                  // "bind", "overlay"
  std::string source;                // "/var/lib/petrel/rootfs/web"
  std::string target;                // unused for a task's root filesystem
  std::vector<std::string> options;  // "rbind", "ro"
};

// Where a task's standard streams go, as URIs the shim opens: "file:///path",
// "binary:///path?k=v" (a program the shim starts with the streams as its fds 3 and 4),
// a FIFO's path; "" for /dev/null. containerd 1.6's runc shim writes both stdout and
// stderr to stdout's file:// (it ignores stderr's URI) through one descriptor, and dies
// of a nil pointer (Create: UNKNOWN "ttrpc: closed") when a file:// stdout comes with
// stderr "": give stderr the same URI. It closes that descriptor once stdout's copy
// ends, though stderr's may not have (pkg/process/io.go, copyPipes: stdout's copier
// has the file itself, not the counting wrapper): what stderr says last may be lost.
// Two FIFOs, one a stream, lose nothing.
struct ContainerdTaskIO {
  std::string stdin_uri;
  std::string stdout_uri;
  std::string stderr_uri;
  bool terminal = false;
};

// containerd.services.tasks.v1.Tasks/Create: the task (the init process) of container
// `container_id`, created but not started, with `rootfs` mounted on its bundle's rootfs
// (none when the container's spec has an absolute root.path): its pid. NotFound for no
// such container; AlreadyExists when it has a task; Internal (UNKNOWN) with the shim's
// or runc's words otherwise ("failed to create shim task: OCI runtime create failed: ...").
Result<uint32_t> ContainerdCreateTask(GrpcChannel* channel, const std::string& container_id,
                                      const std::vector<ContainerdMount>& rootfs,
                                      const ContainerdTaskIO& io);

// Tasks/Start of the task's init process (`exec_id` "") or of an exec'd one: its pid.
// NotFound for no task. For an exec'd process whose command runc cannot start, Internal
// (UNKNOWN) with runc's words, quotes escaped ("OCI runtime exec failed: exec failed:
// unable to start container process: exec: \"x\": executable file not found in $PATH:
// unknown"); the process stays, created, until ContainerdDeleteProcess.
Result<uint32_t> ContainerdStartTask(GrpcChannel* channel, const std::string& container_id,
                                     const std::string& exec_id = "");

// Tasks/Kill: sends `signal` to the task's init process, or with `all` to every process
// in the container, or to the exec'd process `exec_id` (`all` then means nothing).
// NotFound for no task or a process gone (containerd 1.6: "process already finished").
Status ContainerdKillTask(GrpcChannel* channel, const std::string& container_id, int signal,
                          bool all = false, const std::string& exec_id = "");

// How a task's process ended. An exit status is the process's code, or 128+N for death
// by signal N (as the shim reports it).
struct ContainerdExit {
  std::string container_id;
  std::string id;    // the process: the container's id for the init process; "" where
                     // the answer does not say (Delete's and Wait's, in containerd 1.6)
  uint32_t pid = 0;  // 0 where the answer does not say (Wait's)
  uint32_t exit_status = 0;
  std::chrono::system_clock::time_point exited_at;
};

// Tasks/Delete of the task (its process must have exited): how it ended. NotFound for no
// task; Internal (containerd 1.6 answers UNKNOWN) "... cannot delete a running process"
// while it runs.
Result<ContainerdExit> ContainerdDeleteTask(GrpcChannel* channel, const std::string& container_id);

// Tasks/Wait for the task's init process (`exec_id` "") or an exec'd one to exit: its exit status
// and time. Blocks until then, or until the channel's timeout has passed (DeadlineExceeded): a long
// wait wants a channel of its own with a long timeout. Answers at once for a process that has
// exited. NotFound for no task or no such exec'd process.
Result<ContainerdExit> ContainerdWaitTask(GrpcChannel* channel, const std::string& container_id,
                                          const std::string& exec_id = "");

// The type of an OCI runtime-spec process in an Any (containerd's typeurl registration of
// specs.Process): its value is the JSON.
inline constexpr const char* kContainerdProcessType =
    "types.containerd.io/opencontainers/runtime-spec/1/Process";

// Tasks/Exec: adds process `exec_id` to the task of container `container_id`, created
// (ContainerdStartTask starts it), running `process` (an OCI runtime-spec "process" object,
// JSON) with its streams on `io` as a task's. containerd checks `exec_id` as it checks ids
// (InvalidArgument); AlreadyExists for one the task has; NotFound for no task; Internal
// (UNKNOWN) "cannot exec in a stopped state" once the init process has exited.
Status ContainerdExecProcess(GrpcChannel* channel, const std::string& container_id,
                             const std::string& exec_id, const std::string& process,
                             const ContainerdTaskIO& io);

// Tasks/DeleteProcess of the exec'd process `exec_id`, exited or never started: how it
// ended. The runc shim first waits up to 2 s for its output to be copied. NotFound for
// no such process; an error while it runs.
Result<ContainerdExit> ContainerdDeleteProcess(GrpcChannel* channel,
                                               const std::string& container_id,
                                               const std::string& exec_id);

// A task's state, containerd.v1.types.Status.
enum class ContainerdTaskStatus { kUnknown, kCreated, kRunning, kStopped, kPaused, kPausing };

// containerd's name of `status`: "RUNNING"; "UNKNOWN" for kUnknown.
const char* ContainerdTaskStatusName(ContainerdTaskStatus status);

// A task's process as containerd reports it.
struct ContainerdProcess {
  // The task's: the container's id for its init process. (containerd 1.6 leaves the
  // answer's container_id empty, so it is not read.)
  std::string id;
  uint32_t pid = 0;
  ContainerdTaskStatus status = ContainerdTaskStatus::kUnknown;  // kUnknown also for a new value
  ContainerdTaskIO io;
  uint32_t exit_status = 0;                         // when kStopped
  std::chrono::system_clock::time_point exited_at;  // when kStopped
};

// Tasks/Get of the task's init process. NotFound for no task.
Result<ContainerdProcess> ContainerdGetTask(GrpcChannel* channel, const std::string& container_id);

// Tasks/List: the init processes of every task in the channel's namespace. containerd
// 1.6 ignores the request's filter, so none is taken.
Result<std::vector<ContainerdProcess>> ContainerdListTasks(GrpcChannel* channel);

// The type_url of the event a task's process exit publishes (topic "/tasks/exit").
inline constexpr const char* kContainerdTaskExitType = "containerd.events.TaskExit";

// The TaskExit event `envelope` carries (all of ContainerdExit's fields set).
// InvalidArgument for another type of event; Corruption for a value that is no TaskExit.
Result<ContainerdExit> ContainerdDecodeTaskExit(const ContainerdEnvelope& envelope);

// ---- Images in containerd's own stores (issue 16): content, leases, image names.

// A blob in containerd's content store, or what an image names (an OCI descriptor).
struct ContainerdContent {
  std::string media_type;  // a descriptor's; "" from Info
  std::string digest;      // "sha256:<hex>"
  int64_t size = 0;
  std::map<std::string, std::string> labels;  // Info's; none in a descriptor
};

// containerd.services.content.v1.Content/Info of blob `digest`: NotFound when the
// store has none.
Result<ContainerdContent> ContainerdContentInfo(GrpcChannel* channel, const std::string& digest);

// The most bytes of a blob one message of a Write carries.
inline constexpr size_t kContainerdWriteChunk = 1 << 20;

// Content/Write of blob `blob` (digest and size) from the bytes `read` gives (it fills
// the buffer and returns how much it put there, 0 only at the end), in messages of
// kContainerdWriteChunk, under the writer's ref `ref` (containerd locks it: one writer
// per ref), committed with blob.labels; containerd checks size and digest at the commit
// (FailedPrecondition "unexpected commit digest ..." / "... size ..."). AlreadyExists
// when the store has the blob already, nothing read (asked first with Info: containerd
// refuses such a stream at its first message, and Debian 12's libcurl 7.88 drops an
// answer that comes before the whole request has gone); it is then added to the
// channel's lease, if it has one. InvalidArgument for `read` giving more or fewer than
// blob.size bytes.
Status ContainerdWriteContent(GrpcChannel* channel, const std::string& ref,
                              const ContainerdContent& blob,
                              const std::function<Result<size_t>(char* buf, size_t size)>& read);

// Content/Delete of blob `digest`: NotFound when there is none.
Status ContainerdDeleteContent(GrpcChannel* channel, const std::string& digest);

// containerd.services.leases.v1.Leases/Create of lease `id` with `labels`
// ("containerd.io/gc.expire": an RFC 3339 time after which containerd drops it):
// AlreadyExists when there is one.
Status ContainerdCreateLease(GrpcChannel* channel, const std::string& id,
                             const std::map<std::string, std::string>& labels);

// Leases/List: the ids of the leases any of `filters` (containerd's syntax:
// `labels."petrel.root"==true`) matches; all for none.
Result<std::vector<std::string>> ContainerdListLeases(GrpcChannel* channel,
                                                      const std::vector<std::string>& filters);

// Leases/AddResource: blob `digest` is held by lease `id` too. NotFound for no such
// lease.
Status ContainerdLeaseContent(GrpcChannel* channel, const std::string& id,
                              const std::string& digest);

// Leases/Delete of lease `id`; with `sync`, containerd's garbage collection has run
// before the answer, so what only the lease held is gone. NotFound when there is none.
Status ContainerdDeleteLease(GrpcChannel* channel, const std::string& id, bool sync);

// An image as containerd names it: a name for a manifest (or index) in the content store.
struct ContainerdImage {
  std::string name;  // "docker.io/library/busybox:latest"
  std::map<std::string, std::string> labels;
  ContainerdContent target;  // media type, digest and size
  // Set by containerd; ignored by Create.
  std::chrono::system_clock::time_point created_at;
};

// containerd.services.images.v1.Images/Create: AlreadyExists for a name in use;
// InvalidArgument (containerd's words) for a bad name or target.
Status ContainerdCreateImage(GrpcChannel* channel, const ContainerdImage& image);

// Images/Get of image `name`: NotFound when there is none.
Result<ContainerdImage> ContainerdGetImage(GrpcChannel* channel, const std::string& name);

// Images/List: the images any of `filters` (containerd's syntax:
// `labels."petrel.image.id"==sha256:..`) matches; all for none.
Result<std::vector<ContainerdImage>> ContainerdListImages(GrpcChannel* channel,
                                                          const std::vector<std::string>& filters);

// Images/Delete of image `name`; with `sync`, containerd's garbage collection has run
// before the answer. NotFound when there is none.
Status ContainerdDeleteImage(GrpcChannel* channel, const std::string& name, bool sync);

// A snapshot as containerd's Snapshots service tells it.
struct ContainerdSnapshot {
  std::string name;
  std::string parent;      // "" for none
  bool committed = false;  // else active or a view
  std::map<std::string, std::string> labels;
};

// containerd.services.snapshots.v1.Snapshots/Prepare of an active snapshot `key` on
// committed `parent` ("" for none) with `labels`, from `snapshotter` ("overlayfs"): the
// mounts that give it. AlreadyExists for a key in use; NotFound for no such parent.
Result<std::vector<ContainerdMount>> ContainerdPrepareSnapshot(
    GrpcChannel* channel, const std::string& snapshotter, const std::string& key,
    const std::string& parent, const std::map<std::string, std::string>& labels);

// Snapshots/Mounts of snapshot `key`: the mounts that give it. NotFound for none.
Result<std::vector<ContainerdMount>> ContainerdSnapshotMounts(GrpcChannel* channel,
                                                              const std::string& snapshotter,
                                                              const std::string& key);

// Snapshots/Commit of active snapshot `key` as committed `name`, with `labels`.
// AlreadyExists for a name in use; NotFound for no such key.
Status ContainerdCommitSnapshot(GrpcChannel* channel, const std::string& snapshotter,
                                const std::string& name, const std::string& key,
                                const std::map<std::string, std::string>& labels);

// Snapshots/Remove of snapshot `key`. NotFound for none; FailedPrecondition while
// another snapshot has it as its parent.
Status ContainerdRemoveSnapshot(GrpcChannel* channel, const std::string& snapshotter,
                                const std::string& key);

// Snapshots/Stat of snapshot `key`. NotFound for none.
Result<ContainerdSnapshot> ContainerdStatSnapshot(GrpcChannel* channel,
                                                  const std::string& snapshotter,
                                                  const std::string& key);

// containerd.services.diff.v1.Diff/Apply of layer `layer` (media type, digest and size
// of a blob in the content store; gzip, zstd or plain tar) onto `mounts` (an active
// snapshot's): the layer as applied, its digest the uncompressed tar's (the diff id).
// NotFound for a blob the store lacks; NotSupported for a media type containerd cannot
// apply.
Result<ContainerdContent> ContainerdApplyDiff(GrpcChannel* channel, const ContainerdContent& layer,
                                              const std::vector<ContainerdMount>& mounts);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CONTAINERD_SERVICES_H_
