#include "runtime-adapters/containerd/services.h"

#include <protobuf-c/protobuf-c.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

#include "containerd/services/containers/v1/containers.pb-c.h"
#include "containerd/services/events/v1/events.pb-c.h"
#include "containerd/services/namespaces/v1/namespace.pb-c.h"
#include "containerd/services/version/v1/version.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

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

// An answer read as protobuf-c's struct Response, which it owns.
template <typename Response>
class Reply {
 public:
  explicit Reply(Message m) : m_(std::move(m)) {}
  const Response* operator->() const { return reinterpret_cast<const Response*>(m_.get()); }

 private:
  Message m_;
};

// Invoke, the answer a Response (`type`).
template <typename Response>
Result<Reply<Response>> InvokeAs(GrpcChannel* channel, std::string_view method,
                                 const ProtobufCMessage* request,
                                 const ProtobufCMessageDescriptor& type) {
  PETREL_ASSIGN_OR_RETURN(Message m, Invoke(channel, method, request, type));
  return Reply<Response>(std::move(m));
}

// `t` as a time point; the epoch for none.
std::chrono::system_clock::time_point TimeOf(const Google__Protobuf__Timestamp* t) {
  std::chrono::system_clock::time_point at;
  if (t != nullptr) {
    at += std::chrono::duration_cast<std::chrono::system_clock::duration>(
        std::chrono::seconds(t->seconds) + std::chrono::nanoseconds(t->nanos));
  }
  return at;
}

// The bytes of `any`'s value, "" for none.
std::string ValueOf(const Google__Protobuf__Any* any) {
  if (any == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(any->value.data), any->value.len);
}

// Points protobuf-c at `s`, which it only reads while packing.
char* Chars(const std::string& s) { return const_cast<char*>(s.c_str()); }

// `strings` as protobuf-c's repeated string field, valid while both live.
std::vector<char*> CharsOf(const std::vector<std::string>& strings) {
  std::vector<char*> list;
  for (const std::string& s : strings) list.push_back(Chars(s));
  return list;
}

using ContainerMessage = Containerd__Services__Containers__V1__Container;
using LabelEntry = Containerd__Services__Containers__V1__Container__LabelsEntry;

ContainerdContainer FromMessage(const ContainerMessage& m) {
  ContainerdContainer c;
  c.id = m.id;
  for (size_t i = 0; i < m.n_labels; i++) c.labels[m.labels[i]->key] = m.labels[i]->value;
  c.image = m.image;
  if (m.runtime != nullptr) c.runtime = m.runtime->name;
  c.spec = ValueOf(m.spec);
  c.spec_type = m.spec != nullptr ? m.spec->type_url : "";
  c.snapshotter = m.snapshotter;
  c.snapshot_key = m.snapshot_key;
  c.created_at = TimeOf(m.created_at);
  c.updated_at = TimeOf(m.updated_at);
  return c;
}

// Calls `method` of the Containers service with `request` and reads the container of
// its answer, a Response (`type`) with field 1 that container.
template <typename Response>
Result<ContainerdContainer> InvokeForContainer(GrpcChannel* channel, const char* method,
                                               const ProtobufCMessage* request,
                                               const ProtobufCMessageDescriptor& type) {
  PETREL_ASSIGN_OR_RETURN(Reply<Response> r, InvokeAs<Response>(channel, method, request, type));
  if (r->container == nullptr) return Status::Corruption(std::string(method) + ": no container");
  return FromMessage(*r->container);
}

}  // namespace

Result<ContainerdVersion> ContainerdGetVersion(GrpcChannel* channel) {
  Google__Protobuf__Empty request = GOOGLE__PROTOBUF__EMPTY__INIT;
  using Response = Containerd__Services__Version__V1__VersionResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.version.v1.Version/Version", &request.base,
                         containerd__services__version__v1__version_response__descriptor));
  return ContainerdVersion{r->version, r->revision};
}

Result<std::vector<std::string>> ContainerdListNamespaces(GrpcChannel* channel) {
  Containerd__Services__Namespaces__V1__ListNamespacesRequest request =
      CONTAINERD__SERVICES__NAMESPACES__V1__LIST_NAMESPACES_REQUEST__INIT;
  using Response = Containerd__Services__Namespaces__V1__ListNamespacesResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(
          channel, "containerd.services.namespaces.v1.Namespaces/List", &request.base,
          containerd__services__namespaces__v1__list_namespaces_response__descriptor));
  std::vector<std::string> names;
  for (size_t i = 0; i < r->n_namespaces; i++) names.emplace_back(r->namespaces[i]->name);
  return names;
}

Status ContainerdCreateNamespace(GrpcChannel* channel, const std::string& name) {
  Containerd__Services__Namespaces__V1__Namespace ns =
      CONTAINERD__SERVICES__NAMESPACES__V1__NAMESPACE__INIT;
  ns.name = Chars(name);
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
  std::vector<char*> list = CharsOf(filters);
  Containerd__Services__Events__V1__SubscribeRequest request =
      CONTAINERD__SERVICES__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
  request.n_filters = list.size();
  request.filters = list.data();
  auto on_message = [&](std::string bytes) -> Status {
    PETREL_ASSIGN_OR_RETURN(
        Message m, Unpack(kMethod, bytes, containerd__services__events__v1__envelope__descriptor));
    const auto* e = reinterpret_cast<const Containerd__Services__Events__V1__Envelope*>(m.get());
    ContainerdEnvelope envelope;
    envelope.timestamp = TimeOf(e->timestamp);
    envelope.ns = e->namespace_;
    envelope.topic = e->topic;
    if (e->event != nullptr) envelope.type_url = e->event->type_url;
    envelope.value = ValueOf(e->event);
    return on_envelope(std::move(envelope));
  };
  return channel->Stream(kMethod, Pack(&request.base), on_message, stop);
}

Result<ContainerdContainer> ContainerdCreateContainer(GrpcChannel* channel,
                                                      const ContainerdContainer& container) {
  std::vector<LabelEntry> entries;
  for (const auto& [key, value] : container.labels) {
    LabelEntry e = CONTAINERD__SERVICES__CONTAINERS__V1__CONTAINER__LABELS_ENTRY__INIT;
    e.key = Chars(key);
    e.value = Chars(value);
    entries.push_back(e);
  }
  std::vector<LabelEntry*> labels;
  for (LabelEntry& e : entries) labels.push_back(&e);
  Containerd__Services__Containers__V1__Container__Runtime runtime =
      CONTAINERD__SERVICES__CONTAINERS__V1__CONTAINER__RUNTIME__INIT;
  runtime.name = Chars(container.runtime);
  Google__Protobuf__Any spec = GOOGLE__PROTOBUF__ANY__INIT;
  spec.type_url = Chars(container.spec_type);
  spec.value.data = reinterpret_cast<uint8_t*>(const_cast<char*>(container.spec.data()));
  spec.value.len = container.spec.size();
  ContainerMessage m = CONTAINERD__SERVICES__CONTAINERS__V1__CONTAINER__INIT;
  m.id = Chars(container.id);
  m.n_labels = labels.size();
  m.labels = labels.data();
  m.image = Chars(container.image);
  m.runtime = &runtime;
  m.spec = &spec;
  m.snapshotter = Chars(container.snapshotter);
  m.snapshot_key = Chars(container.snapshot_key);
  Containerd__Services__Containers__V1__CreateContainerRequest request =
      CONTAINERD__SERVICES__CONTAINERS__V1__CREATE_CONTAINER_REQUEST__INIT;
  request.container = &m;
  return InvokeForContainer<Containerd__Services__Containers__V1__CreateContainerResponse>(
      channel, "containerd.services.containers.v1.Containers/Create", &request.base,
      containerd__services__containers__v1__create_container_response__descriptor);
}

Result<ContainerdContainer> ContainerdGetContainer(GrpcChannel* channel, const std::string& id) {
  Containerd__Services__Containers__V1__GetContainerRequest request =
      CONTAINERD__SERVICES__CONTAINERS__V1__GET_CONTAINER_REQUEST__INIT;
  request.id = Chars(id);
  return InvokeForContainer<Containerd__Services__Containers__V1__GetContainerResponse>(
      channel, "containerd.services.containers.v1.Containers/Get", &request.base,
      containerd__services__containers__v1__get_container_response__descriptor);
}

Result<std::vector<ContainerdContainer>> ContainerdListContainers(
    GrpcChannel* channel, const std::vector<std::string>& filters) {
  std::vector<char*> list = CharsOf(filters);
  Containerd__Services__Containers__V1__ListContainersRequest request =
      CONTAINERD__SERVICES__CONTAINERS__V1__LIST_CONTAINERS_REQUEST__INIT;
  request.n_filters = list.size();
  request.filters = list.data();
  using Response = Containerd__Services__Containers__V1__ListContainersResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(
          channel, "containerd.services.containers.v1.Containers/List", &request.base,
          containerd__services__containers__v1__list_containers_response__descriptor));
  std::vector<ContainerdContainer> containers;
  for (size_t i = 0; i < r->n_containers; i++) containers.push_back(FromMessage(*r->containers[i]));
  return containers;
}

Status ContainerdDeleteContainer(GrpcChannel* channel, const std::string& id) {
  Containerd__Services__Containers__V1__DeleteContainerRequest request =
      CONTAINERD__SERVICES__CONTAINERS__V1__DELETE_CONTAINER_REQUEST__INIT;
  request.id = Chars(id);
  return Invoke(channel, "containerd.services.containers.v1.Containers/Delete", &request.base,
                google__protobuf__empty__descriptor)
      .status();
}

}  // namespace petrel::internal
