// The crun adapter's entries in a RuntimeRegistry: crun and runc.
#include "petrel/crun.h"

namespace petrel {
namespace {

// A factory for `binary` ("crun" or "runc"), keeping its files in <state_dir>/oci.
RuntimeFactory Factory(const std::string& binary) {
  return [binary](const RuntimeConfig& config) -> Result<std::shared_ptr<ContainerRuntime>> {
    if (!config.endpoint.empty()) {
      return Status::InvalidArgument("runtime " + binary + " takes no endpoint (it runs the " +
                                     binary + " command, no daemon); got \"" + config.endpoint +
                                     "\"");
    }
    if (config.state_dir.empty()) {
      return Status::InvalidArgument("runtime " + binary + ": state_dir is required");
    }
    CrunOptions o;
    // Images, bundles, container logs in <state_dir>/oci.
    static_cast<BundleRuntimeOptions&>(o) = BundleOptionsOf(config, "oci");
    o.runtime = binary;
    return NewCrunRuntime(o);
  };
}

}  // namespace

BundleRuntimeOptions BundleOptionsOf(const RuntimeConfig& config, const std::string& folder) {
  BundleRuntimeOptions o;
  o.state_dir = config.state_dir + "/" + folder;
  o.log_sink = config.log_sink;
  o.clock = config.clock;
  o.port = config.port;
  o.max_layer_bytes = config.max_layer_bytes;
  o.image_store_max_bytes = config.image_store_max_bytes;
  o.image_preload_dir = config.image_preload_dir;
  o.cgroup_parent = config.cgroup_parent;
  o.registry = config.registry;
  return o;
}

Status RegisterCrunRuntimes(RuntimeRegistry* registry) {
  PETREL_RETURN_IF_ERROR(registry->Register(
      {"crun", "crun through its command line, images from local files", Factory("crun")}));
  return registry->Register(
      {"runc", "runc through its command line, images from local files", Factory("runc")});
}

}  // namespace petrel
