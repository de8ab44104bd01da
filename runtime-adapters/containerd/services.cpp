#include "runtime-adapters/containerd/services.h"

#include <protobuf-c/protobuf-c.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

#include "containerd/services/events/v1/events.pb-c.h"
#include "containerd/services/namespaces/v1/namespace.pb-c.h"
#include "containerd/services/version/v1/version.pb-c.h"
#include "google/protobuf/empty.pb-c.h"

namespace petrel::internal {
namespace {

struct MessageFree {
  void operator()(ProtobufCMessage* m) const { protobuf_c_message_free_unpacked(m, nullptr); }
};
using Message = std::unique_ptr<ProtobufCMessage, MessageFree>;

std::string Pack(const ProtobufCMessage* m) {
  std::string bytes(protobuf_c_message_get_packed_size(m), '\0');
  protobuf_c_message_pack(m, reinterpret_cast<uint8_t*>(bytes.data()));
  return bytes;
}

// `bytes`, which came from `method`, parsed as a `type`.
Result<Message> Unpack(std::string_view method, const std::string& bytes,
                       const ProtobufCMessageDescriptor& type) {
  Message m(protobuf_c_message_unpack(&type, nullptr, bytes.size(),
                                      reinterpret_cast<const uint8_t*>(bytes.data())));
  if (!m) {
    return Status::Corruption(std::string(method) + ": the answer is no " + type.name + " (" +
                              std::to_string(bytes.size()) + " bytes)");
  }
  return Result<Message>(std::move(m));
}

// Calls `method` with `request` and parses its answer as a `type`.
Result<Message> Invoke(GrpcChannel* channel, std::string_view method,
                       const ProtobufCMessage* request, const ProtobufCMessageDescriptor& type) {
  std::string answer;
  PETREL_RETURN_IF_ERROR(channel->Call(method, Pack(request), &answer));
  return Unpack(method, answer, type);
}

}  // namespace

Result<ContainerdVersion> ContainerdGetVersion(GrpcChannel* channel) {
  Google__Protobuf__Empty request = GOOGLE__PROTOBUF__EMPTY__INIT;
  PETREL_ASSIGN_OR_RETURN(
      Message m, Invoke(channel, "containerd.services.version.v1.Version/Version", &request.base,
                        containerd__services__version__v1__version_response__descriptor));
  const auto* r =
      reinterpret_cast<const Containerd__Services__Version__V1__VersionResponse*>(m.get());
  return ContainerdVersion{r->version, r->revision};
}

Result<std::vector<std::string>> ContainerdListNamespaces(GrpcChannel* channel) {
  Containerd__Services__Namespaces__V1__ListNamespacesRequest request =
      CONTAINERD__SERVICES__NAMESPACES__V1__LIST_NAMESPACES_REQUEST__INIT;
  PETREL_ASSIGN_OR_RETURN(
      Message m,
      Invoke(channel, "containerd.services.namespaces.v1.Namespaces/List", &request.base,
             containerd__services__namespaces__v1__list_namespaces_response__descriptor));
  const auto* r =
      reinterpret_cast<const Containerd__Services__Namespaces__V1__ListNamespacesResponse*>(
          m.get());
  std::vector<std::string> names;
  for (size_t i = 0; i < r->n_namespaces; i++) names.emplace_back(r->namespaces[i]->name);
  return names;
}

Status ContainerdCreateNamespace(GrpcChannel* channel, const std::string& name) {
  Containerd__Services__Namespaces__V1__Namespace ns =
      CONTAINERD__SERVICES__NAMESPACES__V1__NAMESPACE__INIT;
  ns.name = const_cast<char*>(name.c_str());
  Containerd__Services__Namespaces__V1__CreateNamespaceRequest request =
      CONTAINERD__SERVICES__NAMESPACES__V1__CREATE_NAMESPACE_REQUEST__INIT;
  request.namespace_ = &ns;
  return Invoke(channel, "containerd.services.namespaces.v1.Namespaces/Create", &request.base,
                containerd__services__namespaces__v1__create_namespace_response__descriptor)
      .status();
}

Result<GrpcStreamEnd> ContainerdSubscribe(
    GrpcChannel* channel, const std::vector<std::string>& filters,
    const std::function<Status(ContainerdEnvelope envelope)>& on_envelope,
    const std::function<bool()>& stop) {
  constexpr const char* kMethod = "containerd.services.events.v1.Events/Subscribe";
  std::vector<char*> list;
  for (const std::string& f : filters) list.push_back(const_cast<char*>(f.c_str()));
  Containerd__Services__Events__V1__SubscribeRequest request =
      CONTAINERD__SERVICES__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
  request.n_filters = list.size();
  request.filters = list.data();
  auto on_message = [&](std::string bytes) -> Status {
    PETREL_ASSIGN_OR_RETURN(
        Message m, Unpack(kMethod, bytes, containerd__services__events__v1__envelope__descriptor));
    const auto* e = reinterpret_cast<const Containerd__Services__Events__V1__Envelope*>(m.get());
    ContainerdEnvelope envelope;
    if (e->timestamp != nullptr) {
      envelope.timestamp += std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(e->timestamp->seconds) +
          std::chrono::nanoseconds(e->timestamp->nanos));
    }
    envelope.ns = e->namespace_;
    envelope.topic = e->topic;
    if (e->event != nullptr) {
      envelope.type_url = e->event->type_url;
      envelope.value.assign(reinterpret_cast<const char*>(e->event->value.data),
                            e->event->value.len);
    }
    return on_envelope(std::move(envelope));
  };
  return channel->Stream(kMethod, Pack(&request.base), on_message, stop);
}

}  // namespace petrel::internal
