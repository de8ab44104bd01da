// The OCI runtime config (a bundle's config.json) for one container: a pure function
// of the ContainerSpec, the image's config and how the host runs containers, so it can
// be tested without a runtime, and is the same for every adapter that hands an OCI
// runtime its config (crun and runc; containerd next). Defaults follow Docker's: its
// capability set, masked and read-only /proc and /sys paths, a private /dev, no new
// privileges.
//
// Thread-safety: pure functions.
#ifndef PETREL_LIB_OCI_RUNTIME_CONFIG_H_
#define PETREL_LIB_OCI_RUNTIME_CONFIG_H_

#include <cstdint>
#include <string>

#include "lib/oci/image_config.h"
#include "petrel/runtime.h"
#include "petrel/status.h"

namespace petrel::internal {

// The PATH a container gets when neither its image nor its spec sets one, and the
// one the runtime's own process runs with.
inline constexpr char kDefaultPathEnv[] =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct RuntimeConfigOptions {
  // root.path: the container's root filesystem, absolute, or relative to the bundle the
  // runtime is given (containerd's, where the task's mounts make it).
  std::string rootfs;
  // Where the runtime puts the container's cgroups ("/petrel/<id>"), with the
  // limits in linux.resources. Empty: the runtime manages no cgroup and petrel
  // enforces limits itself (crun on a hybrid host).
  std::string cgroups_path;
  // The image's /etc/passwd and /etc/group, to turn a user name into ids; "" if none.
  std::string passwd, group;
  // RLIMIT_NOFILE for the container (soft = hard); 0 leaves it to the runtime. The
  // adapter gives the host's hard limit: a container cannot be given more.
  uint64_t nofile = 0;
  // The capabilities the runtime can pass on, bit n for capability n: the bounding set
  // of petrel's process (a runtime started in a container may lack some, and a kernel
  // those added after it). A privileged container, or one that adds ALL, gets these.
  uint64_t host_capabilities = ~uint64_t{0};
  // The network namespace (a path) of a container on the bridge, made and attached by
  // the adapter (Port::CreateNetns, Port::AttachNetwork). Unused for other networks.
  std::string netns_path;
  // A file the adapter wrote from ContainerSpec::hosts, bind-mounted read-only on
  // /etc/hosts, unless a mount of the spec's is there. "" for none.
  std::string hosts_file;
};

// The config.json text. InvalidArgument when the user cannot be resolved, a port is
// published in a way the host network cannot, or the image and spec give no command.
Result<std::string> MakeRuntimeConfig(const ContainerSpec& spec, const ImageConfig& image,
                                      const RuntimeConfigOptions& options);

}  // namespace petrel::internal

#endif  // PETREL_LIB_OCI_RUNTIME_CONFIG_H_
