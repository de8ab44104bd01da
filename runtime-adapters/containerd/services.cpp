#include "runtime-adapters/containerd/services.h"

#include <protobuf-c/protobuf-c.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

#include "containerd/services/namespaces/v1/namespace.pb-c.h"
#include "containerd/services/version/v1/version.pb-c.h"
#include "google/protobuf/empty.pb-c.h"

namespace petrel::internal {
namespace {

struct MessageFree {
  void operator()(ProtobufCMessage* m) const { protobuf_c_message_free_unpacked(m, nullptr); }
};
using Message = std::unique_ptr<ProtobufCMessage, MessageFree>;

// Calls `method` with `request` and parses its answer as a `type`.
Result<Message> Invoke(GrpcChannel* channel, std::string_view method,
                       const ProtobufCMessage* request, const ProtobufCMessageDescriptor& type) {
  std::string bytes(protobuf_c_message_get_packed_size(request), '\0');
  protobuf_c_message_pack(request, reinterpret_cast<uint8_t*>(bytes.data()));
  std::string answer;
  PETREL_RETURN_IF_ERROR(channel->Call(method, bytes, &answer));
  Message m(protobuf_c_message_unpack(&type, nullptr, answer.size(),
                                      reinterpret_cast<const uint8_t*>(answer.data())));
  if (!m) {
    return Status::Corruption(std::string(method) + ": the answer is no " + type.name + " (" +
                              std::to_string(answer.size()) + " bytes)");
  }
  return Result<Message>(std::move(m));
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

}  // namespace petrel::internal
