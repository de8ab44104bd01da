// The calls of containerd's API this adapter makes, over a GrpcChannel, with the
// messages of proto/ (C from protobuf-c). Each returns what petrel reads of the answer,
// and the channel's errors as they came.
//
// Thread-safety: as the channel's, one call at a time on one channel.
#ifndef PETREL_RUNTIME_ADAPTERS_CONTAINERD_SERVICES_H_
#define PETREL_RUNTIME_ADAPTERS_CONTAINERD_SERVICES_H_

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

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CONTAINERD_SERVICES_H_
