// RuntimeRegistry: the container runtimes a program can run on, by name, as crun keeps
// its handlers in a table. Each entry has a name ("crun"), a line that says what it is,
// and a factory that makes the runtime from one RuntimeConfig. petreld's --runtime
// reads the table; so can an embedder's own daemon.
//
// Adapters are registered explicitly, by the program, with the function each adapter
// exports (RegisterCrunRuntimes in petrel/crun.h, testing::RegisterFakeRuntime in
// petrel/testing/fake_runtime.h; docker and containerd will join them), and
// RegisterNoRuntime below, which is in libpetrel itself. Never by static initialisers:
// a static libpetrel.a drops objects nothing refers to, and with them a
// self-registering adapter.
//
//   petrel::RuntimeRegistry runtimes;
//   (void)petrel::RegisterCrunRuntimes(&runtimes);
//   petrel::RuntimeConfig config;
//   config.state_dir = "/var/lib/petrel";
//   auto runtime = runtimes.Create("crun", config);  // options.runtime = runtime.value()
//
// Thread-safety: Register is not thread-safe; fill the table first. The const methods
// may then be called from any thread.
#ifndef PETREL_RUNTIMES_H_
#define PETREL_RUNTIMES_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "petrel/clock.h"
#include "petrel/log.h"
#include "petrel/port.h"
#include "petrel/runtime.h"
#include "petrel/status.h"

namespace petrel {

// How runtimes that pull images themselves (crun, runc) reach registries (petreld's
// --registry-auth, --insecure-registry, --registry-ca).
struct RegistryAccess {
  // A Docker config.json ({"auths": {"HOST[:PORT]": {"auth": base64("user:pass")}}}),
  // read when the runtime is made: a bad file or entry fails it. Its credentials go to
  // their registry (HTTP basic auth) or to the realm of its Bearer challenge; never
  // over plain HTTP to another machine, never to another host after a redirect.
  std::string auth_file;
  // host[:port] of registries reached over plain HTTP; loopback ones always are.
  std::vector<std::string> insecure;
  // A PEM bundle of CAs trusted for registries' certificates besides the system store.
  std::string ca_file;
  // Blobs downloaded at once, across every pull (1..kMaxDownloadsLimit): on a slow
  // uplink, a few downloads finish sooner than many sharing it, and leave room for the
  // rest of the device's traffic. Docker's --max-concurrent-downloads, default 3.
  int max_downloads = 3;
  static constexpr int kMaxDownloadsLimit = 16;
};

// What every runtime's factory is given. A field an adapter has no use for is ignored,
// except `endpoint`: an adapter without a daemon refuses a non-empty one.
struct RuntimeConfig {
  // The orchestrator's state directory. An adapter keeps its files in a folder of its
  // own below it (crun and runc: <state_dir>/oci).
  std::string state_dir;
  // Where the runtime's daemon listens (docker, containerd: a socket path or URL);
  // "" for the adapter's default.
  std::string endpoint;
  // containerd: the namespace of petrel's containers and images there (petreld
  // --runtime-namespace); "" for the adapter's default, "petrel". Petrels sharing one
  // containerd need one each. Ignored by the others.
  std::string runtime_namespace;
  // Null: the adapter's default (SystemClock(), DefaultPort(), StderrLogSink()).
  std::shared_ptr<Clock> clock;
  std::shared_ptr<Port> port;
  LogSink log_sink;
  // Adapters that unpack images themselves (crun, runc) refuse a layer that
  // decompresses to more than this many bytes (petreld --max-layer-size).
  uint64_t max_layer_bytes = uint64_t{4} << 30;
  // Adapters with images of their own (crun, runc, containerd): above 0, the least recently
  // used images no container uses are removed after a pull while the store takes more
  // (petreld --image-store-max); archives in this directory are imported at start and
  // found by the names they carry (petreld --image-preload).
  int64_t image_store_max_bytes = 0;
  std::string image_preload_dir;
  // The cgroup, relative to the cgroup root, below which containers get theirs
  // (petreld --cgroup-parent; CheckCgroupParent in petrel/port.h). crun and runc use
  // it; daemons with cgroup parents of their own (docker, containerd) keep those.
  std::string cgroup_parent = "petrel";
  RegistryAccess registry;
};

using RuntimeFactory =
    std::function<Result<std::shared_ptr<ContainerRuntime>>(const RuntimeConfig& config)>;

struct RuntimeEntry {
  std::string name;         // what --runtime takes: letters, digits, '-' and '_'
  std::string description;  // one line, for --help
  RuntimeFactory factory;
};

class RuntimeRegistry {
 public:
  // Adds `entry` after those there. InvalidArgument for a bad name or no factory;
  // AlreadyExists when the name is taken.
  Status Register(RuntimeEntry entry);
  // The entries in the order they were registered.
  const std::vector<RuntimeEntry>& entries() const { return entries_; }
  // The entry named `name`. NotFound, naming the known ones, when there is none:
  // `runtime "docker" is not crun, runc or fake`.
  Result<const RuntimeEntry*> Find(std::string_view name) const;
  // The names joined for a message: "crun, runc or fake" (`last` before the last).
  std::string Names(std::string_view last = " or ") const;
  // Makes the runtime `name` from `config`: Find's NotFound for an unknown name, else
  // what its factory returns.
  Result<std::shared_ptr<ContainerRuntime>> Create(std::string_view name,
                                                   const RuntimeConfig& config) const;

 private:
  std::vector<RuntimeEntry> entries_;
};

// The runtime "none", for a node that runs no containers: a cluster's witness
// (petreld --witness --runtime none), which votes and never runs a workload. It needs
// nothing on the machine, so it is part of libpetrel, not an optional adapter. List
// answers no containers and the exit handler is never called; PullImage, Create and
// Start, which would make or run something, are FailedPrecondition ("runtime none runs
// no containers (a witness)"); Kill, Remove, Inspect and Logs are NotFound, as for any
// container that does not exist. Stateless: every call may come from any thread.
std::shared_ptr<ContainerRuntime> NoRuntime();
// Registers NoRuntime() as "none"; its factory refuses an endpoint. Register it after
// the real runtimes, so that one of them stays the first, the default.
Status RegisterNoRuntime(RuntimeRegistry* registry);

}  // namespace petrel

#endif  // PETREL_RUNTIMES_H_
