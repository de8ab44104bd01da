// The containerd runtime (petrel/containerd.h): the crun adapter's bundle runtime
// (images, bundles, logs, network) with containerd's tasks as its ProcessDriver
// (containerd_driver.h), and its entry in a RuntimeRegistry.
#include <limits.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "lib/util/fs.h"
#include "lib/util/strings.h"
#include "petrel/containerd.h"
#include "runtime-adapters/containerd/containerd_driver.h"
#include "runtime-adapters/containerd/image_backend.h"
#include "runtime-adapters/containerd/logger.h"
#include "runtime-adapters/crun/process_driver.h"

namespace petrel {
namespace {

constexpr char kDefaultSocket[] = "/run/containerd/containerd.sock";
constexpr char kUnixScheme[] = "unix://";

// This process's binary, for containerd's shim to run as the logger. A binary replaced
// under a running petreld (a package upgrade) reads "PATH (deleted)": the new one at
// PATH is the logger then.
Result<std::string> OwnBinary() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return internal::ErrnoError("/proc/self/exe", "readlink", errno);
  std::string path(buf, static_cast<size_t>(n));
  const std::string deleted = " (deleted)";
  if (path.size() > deleted.size() &&
      path.compare(path.size() - deleted.size(), deleted.size(), deleted) == 0) {
    path.resize(path.size() - deleted.size());
  }
  return path;
}

}  // namespace

Result<std::string> ContainerdSocketPath(const std::string& endpoint) {
  if (endpoint.empty()) return std::string(kDefaultSocket);
  std::string path = endpoint;
  if (path.rfind(kUnixScheme, 0) == 0) path = path.substr(sizeof(kUnixScheme) - 1);
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string::npos) {
    return Status::InvalidArgument("runtime containerd: endpoint \"" + endpoint +
                                   "\": not unix:///PATH or an absolute socket path");
  }
  return path;
}

Result<std::shared_ptr<ContainerRuntime>> NewContainerdRuntime(const ContainerdOptions& options) {
  PETREL_ASSIGN_OR_RETURN(const std::string socket, ContainerdSocketPath(options.endpoint));
  if (options.ns.empty() || !internal::IsPlainName(options.ns, 76)) {
    return Status::InvalidArgument("runtime containerd: namespace \"" + options.ns +
                                   "\": letters, digits, '.', '_' and '-' only");
  }
  std::string logger = options.logger;
  if (logger.empty()) {
    // Without the hand-over, each container's start would run the whole program again.
    if (!internal::ContainerdLoggerHandOverAsked()) {
      return Status::FailedPrecondition(
          "runtime containerd: this program's main() never asks "
          "petrel::IsContainerdLoggerCall, so containerd's shim would start the whole "
          "program again as each container's logger; hand over to "
          "petrel::RunContainerdLogger in main() (petrel/containerd.h) or set "
          "ContainerdOptions::logger to petreld");
    }
    PETREL_ASSIGN_OR_RETURN(logger, OwnBinary());
  }
  if (logger[0] != '/' || access(logger.c_str(), X_OK) != 0) {
    return Status::InvalidArgument("runtime containerd: logger \"" + logger +
                                   "\": not an absolute path to a program");
  }
  if (options.log_max_bytes <= 0) {
    return Status::InvalidArgument("runtime containerd: log_max_bytes must be above 0");
  }
  return internal::NewBundleRuntime(
      options, "containerd",
      [&](const BundleRuntimeOptions& o, const std::string& containers,
          std::function<bool(const std::string&)> present)
          -> Result<std::unique_ptr<internal::ProcessDriver>> {
        internal::ContainerdDriverOptions d;
        d.socket_path = socket;
        d.ns = options.ns;
        d.runc_root = options.runc_root;
        d.logger = logger;
        d.log_max_bytes = o.log_max_bytes;
        d.containers_dir = containers;
        d.present = std::move(present);
        d.log_sink = o.log_sink;
        d.port = o.port;
        return internal::NewContainerdDriver(std::move(d));
      },
      options.petrel_image_store
          ? internal::ImageBackendFactory()
          : [&](const BundleRuntimeOptions&, const internal::ImageStoreOptions& store)
          -> Result<std::unique_ptr<internal::ImageBackend>> {
        internal::ContainerdImageBackendOptions b;
        b.socket_path = socket;
        b.ns = options.ns;
        b.store = store;
        return internal::NewContainerdImageBackend(std::move(b));
      });
}

Status RegisterContainerdRuntime(RuntimeRegistry* registry) {
  auto factory = [](const RuntimeConfig& config) -> Result<std::shared_ptr<ContainerRuntime>> {
    if (config.state_dir.empty()) {
      return Status::InvalidArgument("runtime containerd: state_dir is required");
    }
    ContainerdOptions o;
    // Images, bundles, container logs in <state_dir>/containerd.
    static_cast<BundleRuntimeOptions&>(o) = BundleOptionsOf(config, "containerd");
    o.endpoint = config.endpoint;
    if (!config.runtime_namespace.empty()) o.ns = config.runtime_namespace;
    return NewContainerdRuntime(o);
  };
  return registry->Register(
      {"containerd", "containerd's tasks and image stores (--runtime-endpoint)", factory});
}

}  // namespace petrel
