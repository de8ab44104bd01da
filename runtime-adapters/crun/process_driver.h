// ProcessDriver: the part of the bundle-based adapter (crun_runtime.cpp) that runs and
// watches a container's process, apart from everything else a container is (its image,
// root filesystem, config.json, network, hosts file, meta.json, logs, removal). Two
// implementations: the OCI runtime CLI (crun or runc) under petrel's own shim (shim.h),
// NewShimDriver; and containerd's tasks (runtime-adapters/containerd/containerd_driver.h).
// NewBundleRuntime makes the runtime around either.
//
// A container lives in <containers dir>/<id>/: config.json and rootfs/ (the bundle),
// made before the driver sees it, and its output in log.* (lib/util/log_files.h), which
// the driver's process writes. The driver may keep files of its own there.
//
// Thread-safety: as ContainerRuntime's (petrel/runtime.h): Run, Signal and Delete of
// one container never overlap each other; State and Exec may be called at any time,
// from any thread, also while a Delete takes the container away.
#ifndef PETREL_RUNTIME_ADAPTERS_CRUN_PROCESS_DRIVER_H_
#define PETREL_RUNTIME_ADAPTERS_CRUN_PROCESS_DRIVER_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "petrel/crun.h"
#include "petrel/port.h"
#include "petrel/runtime.h"
#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrel::internal {

class ImageBackend;        // image_backend.h
struct ImageStoreOptions;  // lib/image/image_store.h

// The bound for the small files a driver keeps beside a container (a pid, an exit
// code and time) and for the runtime's own, read whole.
constexpr size_t kDriverRecordMax = 256;

// A prepared container, as its meta.json records it: what the driver needs to run it.
struct Bundle {
  std::string id;
  std::string dir;            // <containers dir>/<id>: config.json, rootfs/
  std::string cgroup_parent;  // the one it was made under
  Resources limits;
  // The overlay to mount on dir/rootfs before the container starts (ImageStore's mount
  // data); "" when rootfs/ is a plain directory.
  std::string overlay;
  // The key of the container's snapshot in containerd's snapshotter, its root (the
  // containerd image backend's); "" for none.
  std::string snapshot;
  ContainerLease lease;
};

// The container's process as the driver knows it now.
struct ProcessState {
  ContainerState state = ContainerState::kCreated;
  int pid = 0;         // when running
  int exit_code = -1;  // when exited; -1 unknown
  std::string exit_reason;
  TimeMs started_at = 0;   // 0 = never started
  TimeMs finished_at = 0;  // 0 = not exited
};

class ProcessDriver {
 public:
  using ExitFn = std::function<void(const std::string& id, int exit_code)>;

  virtual ~ProcessDriver() = default;

  // The adapter's name in messages: "crun", "runc".
  virtual std::string Name() const = 0;

  // True when petrel makes each container's limit cgroups itself (crun on a hybrid
  // host, which refuses that layout by itself): config.json then names no cgroups, the
  // adapter records the cgroups at Create and removes them at Delete, and the driver
  // makes them at Run and puts an Exec into them. False: the runtime makes them from
  // config.json's cgroupsPath.
  virtual bool PetrelMakesCgroups() const = 0;

  // The root.path config.json names for a container whose root filesystem is prepared
  // at `rootfs` (absolute), `mounted` when an overlay or a snapshot is to be mounted
  // there at Run: by default `rootfs` itself. A driver whose runtime mounts the root on
  // a bundle of its own (containerd) names that bundle's directory instead.
  virtual std::string RootPath(const std::string& rootfs, bool mounted) const {
    (void)mounted;
    return rootfs;
  }

  // Makes the driver's own state ready (leftovers of a crash go) and starts calling
  // `on_exit` when a container's process ends, with its exit code (-1 unknown), on a
  // thread of the driver's, until the driver is destroyed. Once, before any other call
  // but Delete.
  virtual Status Open(ExitFn on_exit) = 0;

  // The process of container `id`: created until Run, running, exited. NotFound when
  // the container was removed meanwhile (`present` of ShimDriverOptions says no).
  virtual Result<ProcessState> State(const std::string& id) = 0;

  // Starts the container's process from its bundle; returns once it runs, or with why
  // it could not (the runtime's words: "crun: executable file `x` not found").
  // DeadlineExceeded when the runtime took too long: nothing is left to start it later.
  virtual Status Run(const Bundle& bundle) = 0;

  // Sends `signal` to the container's process. OK also when it has ended meanwhile.
  virtual Status Signal(const std::string& id, int signal) = 0;

  // Runs an OCI process (`process`, config.json's "process" with the command as its
  // args) in the running container, as ContainerRuntime::Exec promises. REQUIRES:
  // options valid (a command, a timeout above 0).
  virtual Result<ExecResult> Exec(const Bundle& bundle, const std::string& process,
                                  const ExecOptions& options) = 0;

  // Forgets the container: the runtime's record of it goes (its process, should it
  // run, is killed), and what watched it has finished writing its files. Tolerates a
  // container never run, or already forgotten.
  virtual Status Delete(const std::string& id) = 0;
};

// Exec's answer for a container not running: "exec in x: container x is exited". Inline:
// drivers outside this module (containerd's) give it too.
inline Status ExecNotRunning(const std::string& id, const std::string& how) {
  return Status::FailedPrecondition("exec in " + id + ": container " + id + " " + how);
}

// Keeps `data`, a piece of an Exec's output, in result->output up to `limit` bytes in
// all; what is past it is dropped, and result->truncated says so.
inline void KeepExecOutput(std::string_view data, size_t limit, ExecResult* result) {
  const size_t room = limit - std::min(limit, result->output.size());
  result->output.append(data.substr(0, room));
  if (data.size() > room) result->truncated = true;
}

struct ShimDriverOptions {
  std::string binary;  // the runtime's path
  bool is_runc = false;
  CgroupLayout layout = CgroupLayout::kV2;
  std::string state_dir;       // runtime/, exec/ and exits.sock go here
  std::string containers_dir;  // <containers dir>/<id>: each container's own files
  std::shared_ptr<Port> port;
  int64_t log_max_bytes = 1 << 20;
  int64_t start_timeout_ms = 120 * 1000;
  // Whether container `id` is still there: a container's files may go at any moment
  // (a Remove), and a file found missing is only believed while this says yes.
  std::function<bool(const std::string& id)> present;
};

// crun or runc under petrel's shim (shim.h), one shim per container start.
std::unique_ptr<ProcessDriver> NewShimDriver(ShimDriverOptions options);

// Makes the driver of a bundle runtime: `options` with its defaults filled in,
// `containers_dir` where the containers' directories are, `present` whether container
// `id` is still there (ShimDriverOptions::present).
using DriverFactory = std::function<Result<std::unique_ptr<ProcessDriver>>(
    const BundleRuntimeOptions& options, const std::string& containers_dir,
    std::function<bool(const std::string& id)> present)>;

// Makes the image backend of a bundle runtime: `options` with its defaults filled in,
// `store` the options petrel's image store would have (its directory
// <state_dir>/images, registries, limits).
using ImageBackendFactory = std::function<Result<std::unique_ptr<ImageBackend>>(
    const BundleRuntimeOptions& options, const ImageStoreOptions& store)>;

// The bundle-based runtime (crun_runtime.cpp) over the driver `make_driver` makes: what
// NewCrunRuntime is with the shim driver, and the containerd adapter with its own.
// `name` is the runtime's in messages ("crun", "containerd"); `options.runtime`, the
// binary, is the driver's business. Fills in the defaults, checks root and the cgroup
// parent, takes the state dir's lock, opens the image backend (`make_images`'s, else
// petrel's image store), then the driver, and adopts the containers already there.
Result<std::shared_ptr<ContainerRuntime>> NewBundleRuntime(
    const BundleRuntimeOptions& options, const std::string& name, const DriverFactory& make_driver,
    const ImageBackendFactory& make_images = nullptr);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CRUN_PROCESS_DRIVER_H_
