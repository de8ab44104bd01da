// The calls of containerd's API this adapter makes, over a GrpcChannel, with the
// messages of proto/ (C from protobuf-c). Each returns what petrel reads of the answer,
// and the channel's errors as they came.
//
// Thread-safety: as the channel's, one call at a time on one channel.
#ifndef PETREL_RUNTIME_ADAPTERS_CONTAINERD_SERVICES_H_
#define PETREL_RUNTIME_ADAPTERS_CONTAINERD_SERVICES_H_

#include <chrono>
#include <functional>
#include <map>
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

// containerd.services.namespaces.v1.Namespaces/Create of namespace `name`, without
// labels. AlreadyExists when there is one. containerd publishes the event
// "/namespaces/create" in the channel's namespace, which must not be "".
Status ContainerdCreateNamespace(GrpcChannel* channel, const std::string& name);

// One event of containerd's, as its Events service sends it.
struct ContainerdEnvelope {
  std::chrono::system_clock::time_point timestamp;  // when containerd published it
  std::string ns;                                   // the namespace it happened in: "petrel"
  std::string topic;                                // "/tasks/exit"
  std::string type_url;  // the event's type: "containerd.events.TaskExit"
  std::string value;     // the event, serialized
};

// containerd.services.events.v1.Events/Subscribe: every event that matches any of
// `filters` (containerd's syntax: `topic~="/tasks/"`, `namespace==petrel`; none: all),
// in every namespace, each handed to `on_envelope` as it comes, until `stop` says so
// (kStopped) or containerd ends the stream. As GrpcChannel::Stream, which it is; also
// Corruption for a message that is no Envelope.
Result<GrpcStreamEnd> ContainerdSubscribe(
    GrpcChannel* channel, const std::vector<std::string>& filters,
    const std::function<Status(ContainerdEnvelope envelope)>& on_envelope,
    const std::function<bool()>& stop);

// The type containerd gives an OCI runtime spec in a container: its value is the JSON.
inline constexpr const char* kContainerdSpecType =
    "types.containerd.io/opencontainers/runtime-spec/1/Spec";

// A container as containerd keeps it: metadata, no process (that is a task).
struct ContainerdContainer {
  std::string id;
  std::map<std::string, std::string> labels;
  std::string image;    // the image's name, "" for none
  std::string runtime;  // the shim: "io.containerd.runc.v2"
  std::string spec;     // the OCI runtime spec (config.json), as kContainerdSpecType
  std::string spec_type = kContainerdSpecType;
  std::string snapshotter;   // "" for none
  std::string snapshot_key;  // the root filesystem's snapshot, "" for none
  // Set by containerd; ignored by Create.
  std::chrono::system_clock::time_point created_at;
  std::chrono::system_clock::time_point updated_at;
};

// containerd.services.containers.v1.Containers/Create, in the channel's namespace:
// the container as containerd stored it. AlreadyExists for an id in use;
// InvalidArgument (containerd's words) for a bad id or label, no runtime or no spec.
Result<ContainerdContainer> ContainerdCreateContainer(GrpcChannel* channel,
                                                      const ContainerdContainer& container);

// Containers/Get of container `id`: NotFound when there is none.
Result<ContainerdContainer> ContainerdGetContainer(GrpcChannel* channel, const std::string& id);

// Containers/List: the containers that match any of `filters` (containerd's syntax:
// `labels."petrel.node"==a`; none: all), as containerd orders them.
Result<std::vector<ContainerdContainer>> ContainerdListContainers(
    GrpcChannel* channel, const std::vector<std::string>& filters);

// Containers/Delete of container `id`: NotFound when there is none;
// FailedPrecondition while it has a task.
Status ContainerdDeleteContainer(GrpcChannel* channel, const std::string& id);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CONTAINERD_SERVICES_H_
