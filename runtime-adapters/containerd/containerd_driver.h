// ContainerdDriver: the ProcessDriver (runtime-adapters/crun/process_driver.h) that runs
// a bundle's process as a containerd task (issue 16), through containerd's gRPC API
// (services.h) under its runc shim, instead of petrel's own shim.
//
// One containerd container and task per bundle, both named by the bundle's id, in a
// namespace of petrel's own. The container's spec is the bundle's config.json; the
// task's output goes through the `binary://` logger (logger.h) to the bundle's log.*
// files; runc makes the cgroups from config.json's cgroupsPath. Its own files:
//   <containers>/<id>/started   written just before the task starts: the time in it
//                               is ProcessState::started_at; with no task in
//                               containerd, it says the task ran and is gone (a
//                               Delete under way, or containerd's state lost to a
//                               reboot): the container has exited, code unknown
//   <containers>/<id>/exited    written by Delete before it deletes a task that ran:
//                               "<exit code> <finished ms>", for State until the
//                               directory goes
//   <containers>/<id>/<exec id>.{stdout,stderr}   FIFOs of an Exec's output while it
//                               runs
//   <containers>/<id>/task.pid  the task's pid, written between its create and start,
//                               for the logger (logger.h), which writes
//   <containers>/<id>/drained   once the task's init has ended and its output is
//                               all in the log files
// An exit is told (State, the exit handler) once the container's logger has written
// the last of its output (its drained file, logger.h; at most 1 s after the exit), so
// that the output is whole by then: the logger is a process of its own, and the shim
// keeps the pipes open until the task is deleted.
// Exits are heard through a ContainerdExitWatcher (exits.h); one that happens while
// containerd cannot be reached is not heard, but State reads it from containerd.
//
// An Exec is a process of the task (Tasks/Exec, then Start, Wait, DeleteProcess), named
// "exec-<hex ms the driver was made>-<n>", the given OCI process as its spec. The runc
// shim copies its stdout and stderr each into a FIFO of the bundle's, read as it comes
// (past the output limit, dropped) and to the end once DeleteProcess has answered: the
// shim has written all then, or given up after 2 s. (Not one file:// for both: the shim
// would lose stderr's last output.) Its Wait has the Exec's timeout; past it the command
// is SIGKILLed (DeadlineExceeded). runc makes the command a process group of its own:
// that group is SIGKILLed when the command ends or times out, so nothing it started runs
// on (it must have kept to the group). A command runc cannot find exits 127 with runc's
// words as its output (`exec: "x": executable file not found in $PATH`); a container not
// running, or ending while the command runs (a Kill: its Wait answers at once), is
// ExecNotRunning. An Exec cut short by petrel's end leaves its process in the task, and
// the command blocks once the FIFO it writes to is full, until the container ends.
//
// Not yet: OOM kill reasons, a start timeout of its own (each call has the channel's).
//
// Thread-safety: as ProcessDriver's; each call opens a channel of its own.
#ifndef PETREL_RUNTIME_ADAPTERS_CONTAINERD_CONTAINERD_DRIVER_H_
#define PETREL_RUNTIME_ADAPTERS_CONTAINERD_CONTAINERD_DRIVER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "petrel/log.h"
#include "petrel/port.h"
#include "runtime-adapters/containerd/services.h"
#include "runtime-adapters/crun/process_driver.h"

namespace petrel::internal {

// The label every container the driver makes carries ("true"), so that petrel's can be
// told from others in a shared namespace.
inline constexpr char kContainerdPetrelLabel[] = "petrel.container";

struct ContainerdDriverOptions {
  std::string socket_path;    // containerd's gRPC socket
  std::string ns = "petrel";  // made by Open when missing
  // runc's state directory (its --root) as the runtime's options give it to the shim;
  // "" for the shim's default /run/containerd/runc, shared by every containerd.
  std::string runc_root;
  std::string runtime = "io.containerd.runc.v2";  // the shim
  std::string snapshotter = "overlayfs";          // of the roots on snapshots (Bundle::snapshot)
  std::string logger;  // absolute path of the `binary://` logger (petreld)
  int64_t log_max_bytes = 1 << 20;
  std::string containers_dir;  // <containers dir>/<id>: each container's own files
  // Whether container `id` is still there (ShimDriverOptions::present): State answers
  // NotFound for a container containerd does not know and this says is gone.
  std::function<bool(const std::string& id)> present;
  // Names each container's memory cgroup events (Port::OomKillsFile), so that an exit
  // by SIGKILL is told as OOMKilled when the kernel counted an OOM kill there; null:
  // never told.
  std::shared_ptr<Port> port;
  std::chrono::milliseconds call_timeout{30000};  // per gRPC call
  // Where the exit watcher's reports go (containerd gone, back again); may be empty.
  LogSink log_sink;
};

// REQUIRES: socket_path, logger and containers_dir set, log_max_bytes > 0, present set.
std::unique_ptr<ProcessDriver> NewContainerdDriver(ContainerdDriverOptions options);

// The mounts of a task's root filesystem for `overlay`, ImageStore's mount data
// ("lowerdir=/a,upperdir=/b,workdir=/c", with ',' ':' and '\' in paths escaped by '\'):
// one overlay mount whose options are the data split at unescaped commas (escapes kept,
// as overlayfs reads them); none for "".
std::vector<ContainerdMount> ContainerdOverlayMounts(const std::string& overlay);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CONTAINERD_CONTAINERD_DRIVER_H_
