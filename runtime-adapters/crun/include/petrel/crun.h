// The daemonless runtime adapter: crun (the default) or runc, driven through the
// OCI runtime command line, with images from local files unpacked into petrel's own
// store. Nothing else runs on the device but petrel and, per container, a small
// monitor process (see shim.h) that keeps its logs and exit code while petrel is down.
//
//   petrel::CrunOptions o;
//   o.state_dir = "/var/lib/petrel/oci";
//   auto runtime = petrel::NewCrunRuntime(o);          // crun from $PATH
//   options.runtime = runtime.value();                  // for Orchestrator::Open
//
// REQUIRES: root (rootless containers are not supported yet).
//
// Limits (memory, cpu, pids) are enforced on every cgroup layout: by the runtime on
// v1 and v2, and on a hybrid host by v1 cgroups petrel prepares for crun (which
// refuses that layout by itself); runc handles hybrid as is.
#ifndef PETREL_CRUN_H_
#define PETREL_CRUN_H_

#include <cstdint>
#include <memory>
#include <string>

#include "petrel/clock.h"
#include "petrel/log.h"
#include "petrel/port.h"
#include "petrel/runtime.h"
#include "petrel/runtimes.h"
#include "petrel/status.h"

namespace petrel {

// What every runtime built on petrel's own image store and bundles takes: crun and runc
// (CrunOptions), containerd (ContainerdOptions in petrel/containerd.h).
struct BundleRuntimeOptions {
  // Images, container bundles, root filesystems and logs live here; created 0700.
  // Required. Give each petrel its own (e.g. <orchestrator state dir>/oci).
  std::string state_dir;
  // A container's output is kept in two files of at most this size each.
  int64_t log_max_bytes = 1 << 20;
  // Copy the image for each container instead of mounting an overlay.
  bool copy_rootfs = false;
  // An image layer that decompresses to more than this many bytes is refused.
  uint64_t max_layer_bytes = uint64_t{4} << 30;
  // Above 0: after a pull, while the image store (unpacked images and blobs) takes more
  // than this, the least recently used images no container uses are removed (logged).
  int64_t image_store_max_bytes = 0;
  // Not empty: the archives in this directory (oci-archive or docker-archive) are
  // imported in the background when the runtime starts and named by the names they
  // carry, so a registry image of that name is not pulled (a registry PullImage waits
  // for the preload).
  std::string image_preload_dir;
  // Defaults to StderrLogSink().
  LogSink log_sink;
  // Times recorded in the containers' files. Defaults to SystemClock().
  std::shared_ptr<Clock> clock;
  // The host's cgroups and mounts. Defaults to DefaultPort().
  std::shared_ptr<Port> port;
  // The cgroup, relative to the cgroup root (as Docker's --cgroup-parent), below which
  // each container gets its own, <cgroup_parent>/<id>, in every hierarchy the runtime
  // or petrel uses: "petrel" -> /sys/fs/cgroup/petrel/<id> on v2. A valid parent
  // (CheckCgroupParent in petrel/port.h). Each container records the one it was made
  // under, so one made under an earlier parent is removed from there.
  std::string cgroup_parent = "petrel";
  // Credentials, insecure registries and CAs for registry images (petrel/runtimes.h).
  RegistryAccess registry;
};

struct CrunOptions : BundleRuntimeOptions {
  // "crun", "runc", or a path to either. A bare name is looked up in $PATH.
  std::string runtime = "crun";
  // A runtime that has not started a container within this time is killed, and the
  // start fails (DeadlineExceeded): nothing starts the container behind petrel's back.
  int64_t start_timeout_ms = 120 * 1000;
};

// Checks the runtime binary and the state dir, and starts listening for container
// exits. Containers already in the state dir (from an earlier petrel) are adopted:
// List reports them as they are now.
Result<std::shared_ptr<ContainerRuntime>> NewCrunRuntime(const CrunOptions& options);

// What a runtime registry's factory (petrel/runtimes.h) gives a bundle runtime of
// `config`: its fields, the runtime's files in <config.state_dir>/<folder>.
BundleRuntimeOptions BundleOptionsOf(const RuntimeConfig& config, const std::string& folder);

// Adds "crun" and "runc" to `registry` (petrel/runtimes.h). Their factories keep the
// runtime's files in <RuntimeConfig::state_dir>/oci and refuse an endpoint: there is
// no daemon to reach.
Status RegisterCrunRuntimes(RuntimeRegistry* registry);

}  // namespace petrel

#endif  // PETREL_CRUN_H_
