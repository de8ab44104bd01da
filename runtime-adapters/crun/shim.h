// The container monitor ("shim"): one small process per container that outlives
// petrel. It runs the OCI runtime's `run --detach`, becomes the container's parent (as a
// child subreaper), copies the container's stdout and stderr into size-capped,
// rotated log files, and when the container's main process ends writes its exit
// code to a file and tells petrel over a datagram socket. petrel can be killed and
// restarted at any time: the shim's files are the truth it adopts from.
//
// It is a fork of petrel's process (no extra binary to ship), so everything after
// fork() is async-signal-safe: raw system calls over buffers prepared beforehand, and
// the port's ChildSetup::Apply (prepared before fork too) for what is the platform's:
// becoming a subreaper, joining cgroups, the mount namespace.
#ifndef PETREL_RUNTIME_ADAPTERS_CRUN_SHIM_H_
#define PETREL_RUNTIME_ADAPTERS_CRUN_SHIM_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "petrel/port.h"
#include "petrel/status.h"

namespace petrel::internal {

// Files in a container's directory.
inline constexpr char kInitPidFile[] = "init.pid";  // written by the runtime
// "<code> <finished ms>\n", or "<code> <finished ms> OOMKilled\n"
inline constexpr char kExitFile[] = "exit";
inline constexpr char kShimPidFile[] = "shim.pid";  // "<pid> <start time>\n"
inline constexpr char kRuntimeLogFile[] = "runtime.log";
// and the container's output: log.<20-digit base offset> (lib/util/log_files.h)

struct ShimPlan {
  std::string id;
  std::string dir;                // the container's directory (absolute)
  std::vector<std::string> argv;  // the runtime's `run --detach` command line
  std::vector<std::string> env;   // its environment
  // What the runtime's process sets up for itself before exec (the cgroups it joins,
  // the container's overlay rootfs, a pure cgroup2 mount for crun on a hybrid host).
  // It always runs in a private mount namespace of its own (the container's is made
  // from it), so the host's mount table never holds what is mounted there.
  ChildPlan runtime_setup;
  std::shared_ptr<Port> port;       // lays out the shim's and the runtime's setup
  int64_t log_max_bytes = 1 << 20;  // per file; two files are kept
  // The shim, the runtime and the container run at this nice value, whatever the
  // calling thread's (petrel's workers run at a lower priority than petrel).
  int nice = 0;
  std::string notify_socket;  // datagram socket told "<id>" on exit
  // The container's lease (ContainerSpec::lease), none when the path is empty: the shim
  // does not start the container when it has run out, and SIGKILLs the container's init
  // (so its whole PID namespace) once it runs out, checking every kLeaseCheckMs
  // (lib/util/lease.h) and at the moment it would run out. It says so once, on
  // runtime.log.
  std::string lease_path;
  int64_t lease_ms = 0;
  // Port::OomKillsFile of the container's memory cgroup, "" for none: an exit by
  // SIGKILL is recorded as OOMKilled when it counts an OOM kill.
  std::string oom_file;
};

// Whether `text`, a memory cgroup's event counters as Port::OomKillsFile names them
// (memory.events on v2, memory.oom_control on v1), counts an OOM kill: its
// "oom_kill N" line has N > 0. Async-signal-safe: it allocates nothing.
bool CountsOomKill(const char* text);

// Starting a shim, in two halves so that several containers start at once:
// BeginShim starts the shim and returns at once; FinishShim waits until the
// runtime's command (`run --detach`) has finished. On success the container runs
// and the shim watches it; *shim_pid is set. On failure the shim has written exit
// code 255 and ended. A runtime that has not finished within `timeout_ms` is killed
// with the shim (DeadlineExceeded): nothing is left to start the container later.
// REQUIRES: FinishShim once for every BeginShim that returned OK.
struct PendingShim {
  std::string id, runtime;
  int sync_fd = -1;
  pid_t group = 0;  // the process group of the shim and the runtime it runs
  int64_t timeout_ms = 120 * 1000;
};
Status BeginShim(const ShimPlan& plan, PendingShim* pending);
Status FinishShim(PendingShim* pending, pid_t* shim_pid);

// A runtime command that works on a running container from outside it (`<runtime>
// exec`), started as the container's own processes were: after `setup` (the limit
// cgroups petrel made for it, so that everything the command starts is born in them),
// at `nice`, in a session and process group of its own, with default signal handling,
// stdin on /dev/null and stdout and stderr into one pipe. Unlike the shim it stays
// petrel's child: the caller reaps it.
struct CommandPlan {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  ChildPlan setup;
  std::shared_ptr<Port> port;  // lays out `setup`
  int nice = 0;
};
struct StartedCommand {
  pid_t pid = -1;   // its session and process group have this id too
  int output = -1;  // the read end of its stdout and stderr (close-on-exec); caller closes it
};
// Returns once the command runs (its binary was exec'd), or with the error of the step
// that failed ("/sys/fs/cgroup/pids/petrel/x/cgroup.procs: No such file or directory").
Status StartCommand(const CommandPlan& plan, StartedCommand* started);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CRUN_SHIM_H_
