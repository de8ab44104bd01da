// The containerd adapter (issue 16): containers run as containerd tasks, driven through
// containerd's gRPC API on its socket (no Go client, no ctr), with images in
// containerd's own stores (local archives and registries read by petrel, imported into
// containerd's content store, named in its Images and unpacked by its snapshotter) and
// each container's root an active snapshot on its image.
//
//   petrel::ContainerdOptions o;
//   o.state_dir = "/var/lib/petrel/containerd";
//   auto runtime = petrel::NewContainerdRuntime(o);  // /run/containerd/containerd.sock
//   options.runtime = runtime.value();                // for Orchestrator::Open
//
// Each container is a containerd container and task of the same name, in a containerd
// namespace of petrel's own ("petrel"), under containerd's runc shim: containers keep
// running while petrel is down and are adopted by the next one. A container's output
// goes to a logger process the shim starts, petrel's own binary in a logger mode, which
// writes the same size-capped, rotated files as the crun adapter's shim; it outlives
// petrel too.
//
// REQUIRES: root; containerd 1.6 or later with its runc shim (io.containerd.runc.v2).
//
// An embedder's main() hands over to the logger when containerd started it as one:
//
//   int main(int argc, char** argv) {
//     if (petrel::IsContainerdLoggerCall(argc, argv)) {
//       return petrel::RunContainerdLogger(argc, argv);
//     }
//     ...
//   }
//
// petreld does so; an embedder that points the adapter at its own binary must too:
// NewContainerdRuntime refuses its own binary (FailedPrecondition) in a program that
// never asked IsContainerdLoggerCall, as containerd would start that program again for
// each container.
#ifndef PETREL_CONTAINERD_H_
#define PETREL_CONTAINERD_H_

#include <memory>
#include <string>

#include "petrel/crun.h"
#include "petrel/runtime.h"
#include "petrel/runtimes.h"
#include "petrel/status.h"

namespace petrel {

// The image store, bundles and logs as the crun adapter's (BundleRuntimeOptions in
// petrel/crun.h), and how to reach containerd.
struct ContainerdOptions : BundleRuntimeOptions {
  // containerd's gRPC socket: an absolute path or unix:///PATH; "" for
  // /run/containerd/containerd.sock.
  std::string endpoint;
  // The containerd namespace of petrel's containers, made when missing. Petrels that
  // share one containerd need one each.
  std::string ns = "petrel";
  // The logger program containerd's shim runs for each container (an absolute path);
  // "" for this process's own binary, whose main() must then hand over as shown above
  // (asked before this runtime is made).
  std::string logger;
  // runc's state directory as the shim is told it; "" for the shim's default,
  // /run/containerd/runc.
  std::string runc_root;
  // false (the default): images live in containerd's own stores (content, images,
  // snapshots; `ctr -n NS images ls` lists them) and each container's root is a
  // containerd snapshot. true: in petrel's image store in state_dir, as on crun, each
  // root an overlay petrel mounts.
  bool petrel_image_store = false;
};

// Checks root, the options and that containerd answers at the endpoint, makes the
// namespace, and starts listening for exits. Containers already in the state dir (from
// an earlier petrel) are adopted. Unavailable, naming the socket, when containerd does
// not answer.
Result<std::shared_ptr<ContainerRuntime>> NewContainerdRuntime(const ContainerdOptions& options);

// Adds "containerd" to `registry` (petrel/runtimes.h): its files in
// <RuntimeConfig::state_dir>/containerd, containerd at RuntimeConfig::endpoint.
Status RegisterContainerdRuntime(RuntimeRegistry* registry);

// The socket path of a containerd endpoint: PATH for "unix:///PATH" or "/PATH", the
// default socket for ""; InvalidArgument, quoting it, for anything else.
Result<std::string> ContainerdSocketPath(const std::string& endpoint);

// True when argv is a logger call from containerd's shim: its first argument is one of
// the logger's keys ("petrel-log-dir", "petrel-log-max"). Cheap; touches nothing.
bool IsContainerdLoggerCall(int argc, char** argv);

// Runs the logger as containerd's shim starts a `binary://` logger: the container's
// stdout on fd 3 and stderr on fd 4, fd 5 to close once ready, and the URI's query as
// argument pairs in any order:
//   petrel-log-dir <absolute directory, existing>   petrel-log-max <bytes per file, > 0>
//   and, for a container with a lease (ContainerSpec::lease), both of
//   petrel-log-lease <absolute lease file>          petrel-log-lease-ms <duration, > 0>
// Copies fd 3 and fd 4, as their bytes arrive, into "<dir>/log.<base offset>" files
// rotated at the cap (two kept, continuing files already there), closes fd 5 once the
// files are open, and returns 0 when both reach end of file, or after draining them
// on SIGTERM (the shim's way to stop it). Uses one fixed buffer: no allocation per read.
// With a lease, it SIGKILLs the task's init process (its pid in "<dir>/task.pid", which
// the adapter writes before starting the task) once the lease has run out, and says so
// in the log files.
// Returns 2 after a one-line error on stderr for bad arguments or missing fds; 1 after
// one for a failure of its own (the directory cannot be listed, poll fails).
// REQUIRES: called from main(), single-threaded; it owns the process until it returns.
int RunContainerdLogger(int argc, char** argv);

}  // namespace petrel

#endif  // PETREL_CONTAINERD_H_
