#include "runtime-adapters/containerd/services.h"

#include <protobuf-c/protobuf-c.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

#include "containerd/events/task.pb-c.h"
#include "containerd/runc/v1/options.pb-c.h"
#include "containerd/services/containers/v1/containers.pb-c.h"
#include "containerd/services/content/v1/content.pb-c.h"
#include "containerd/services/diff/v1/diff.pb-c.h"
#include "containerd/services/events/v1/events.pb-c.h"
#include "containerd/services/images/v1/images.pb-c.h"
#include "containerd/services/leases/v1/leases.pb-c.h"
#include "containerd/services/namespaces/v1/namespace.pb-c.h"
#include "containerd/services/snapshots/v1/snapshots.pb-c.h"
#include "containerd/services/tasks/v1/tasks.pb-c.h"
#include "containerd/services/version/v1/version.pb-c.h"
#include "containerd/types/descriptor.pb-c.h"
#include "containerd/types/mount.pb-c.h"
#include "containerd/types/task/task.pb-c.h"
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

// `bytes`, which came from `method`, parsed as a `type`; `what` they are, for the error.
Result<Message> Unpack(std::string_view method, const std::string& bytes,
                       const ProtobufCMessageDescriptor& type, const char* what = "the answer") {
  Message m(protobuf_c_message_unpack(&type, nullptr, bytes.size(),
                                      reinterpret_cast<const uint8_t*>(bytes.data())));
  if (!m) {
    return Status::Corruption(std::string(method) + ": " + what + " is no " + type.name + " (" +
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

// `t` as a time point; the epoch for none, and for a time before it or past what a
// time point holds: containerd's "none" is Go's zero time, year 1, which nanoseconds
// since 1970 cannot hold (an exited_at before the process has exited).
std::chrono::system_clock::time_point TimeOf(const Google__Protobuf__Timestamp* t) {
  using Duration = std::chrono::system_clock::duration;
  constexpr int64_t kMaxSeconds =
      std::chrono::duration_cast<std::chrono::seconds>(Duration::max()).count() - 1;
  std::chrono::system_clock::time_point at;
  if (t != nullptr && t->seconds >= 0 && t->seconds <= kMaxSeconds) {
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

// An Any of `type` holding `value`, valid while both live.
Google__Protobuf__Any AnyOf(const std::string& type, const std::string& value) {
  Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
  any.type_url = Chars(type);
  any.value.data = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
  any.value.len = value.size();
  return any;
}

// `strings` as protobuf-c's repeated string field, valid while both live.
std::vector<char*> CharsOf(const std::vector<std::string>& strings) {
  std::vector<char*> list;
  for (const std::string& s : strings) list.push_back(Chars(s));
  return list;
}

// The type of the runc shim's options in an Any.
constexpr const char* kRuncOptionsType = "containerd.runc.v1.Options";

using ContainerMessage = Containerd__Services__Containers__V1__Container;
using LabelEntry = Containerd__Services__Containers__V1__Container__LabelsEntry;

ContainerdContainer FromMessage(const ContainerMessage& m) {
  ContainerdContainer c;
  c.id = m.id;
  for (size_t i = 0; i < m.n_labels; i++) c.labels[m.labels[i]->key] = m.labels[i]->value;
  c.image = m.image;
  if (m.runtime != nullptr) {
    c.runtime = m.runtime->name;
    const Google__Protobuf__Any* options = m.runtime->options;
    if (options != nullptr && options->type_url == std::string_view(kRuncOptionsType)) {
      Message o(protobuf_c_message_unpack(&containerd__runc__v1__options__descriptor, nullptr,
                                          options->value.len, options->value.data));
      if (o) c.runc_root = reinterpret_cast<const Containerd__Runc__V1__Options*>(o.get())->root;
    }
  }
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

using ProcessMessage = Containerd__V1__Types__Process;
using MountMessage = Containerd__Types__Mount;

ContainerdProcess FromMessage(const ProcessMessage& m) {
  ContainerdProcess p;
  p.id = m.id;
  p.pid = m.pid;
  if (m.status >= CONTAINERD__V1__TYPES__STATUS__UNKNOWN &&
      m.status <= CONTAINERD__V1__TYPES__STATUS__PAUSING) {
    p.status = static_cast<ContainerdTaskStatus>(m.status);
  }
  p.io = {m.stdin, m.stdout, m.stderr, m.terminal != 0};
  p.exit_status = m.exit_status;
  p.exited_at = TimeOf(m.exited_at);
  return p;
}

// Calls `method` of the Tasks service (Delete, DeleteProcess) with `request` for a process of
// container `container_id`, and reads how the process ended from its DeleteResponse.
Result<ContainerdExit> InvokeForExit(GrpcChannel* channel, const char* method,
                                     const std::string& container_id,
                                     const ProtobufCMessage* request) {
  using Response = Containerd__Services__Tasks__V1__DeleteResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, method, request,
                         containerd__services__tasks__v1__delete_response__descriptor));
  return ContainerdExit{container_id, r->id, r->pid, r->exit_status, TimeOf(r->exited_at)};
}

static_assert(static_cast<int>(ContainerdTaskStatus::kPausing) ==
              CONTAINERD__V1__TYPES__STATUS__PAUSING);

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
  Containerd__Runc__V1__Options runc = CONTAINERD__RUNC__V1__OPTIONS__INIT;
  runc.root = Chars(container.runc_root);
  const std::string runc_type = kRuncOptionsType;
  const std::string runc_bytes = Pack(&runc.base);
  Google__Protobuf__Any runtime_options = AnyOf(runc_type, runc_bytes);
  if (!container.runc_root.empty()) runtime.options = &runtime_options;
  Google__Protobuf__Any spec = AnyOf(container.spec_type, container.spec);
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

namespace {

// `mounts` as protobuf-c's repeated Mount field, valid while both live: `pointers`.
struct MountMessages {
  explicit MountMessages(const std::vector<ContainerdMount>& mounts) {
    options.reserve(mounts.size());
    messages.reserve(mounts.size());
    for (const ContainerdMount& mount : mounts) {
      options.push_back(CharsOf(mount.options));
      MountMessage m = CONTAINERD__TYPES__MOUNT__INIT;
      m.type = Chars(mount.type);
      m.source = Chars(mount.source);
      m.target = Chars(mount.target);
      m.n_options = options.back().size();
      m.options = options.back().data();
      messages.push_back(m);
    }
    for (MountMessage& m : messages) pointers.push_back(&m);
  }
  std::vector<std::vector<char*>> options;
  std::vector<MountMessage> messages;
  std::vector<MountMessage*> pointers;
};

// The repeated Mount field `mounts` (n of them) as petrel's.
std::vector<ContainerdMount> MountsOf(MountMessage* const* mounts, size_t n) {
  std::vector<ContainerdMount> out;
  for (size_t i = 0; i < n; i++) {
    ContainerdMount m;
    m.type = mounts[i]->type;
    m.source = mounts[i]->source;
    m.target = mounts[i]->target;
    for (size_t j = 0; j < mounts[i]->n_options; j++) m.options.push_back(mounts[i]->options[j]);
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

Result<uint32_t> ContainerdCreateTask(GrpcChannel* channel, const std::string& container_id,
                                      const std::vector<ContainerdMount>& rootfs,
                                      const ContainerdTaskIO& io) {
  MountMessages mounts(rootfs);
  Containerd__Services__Tasks__V1__CreateTaskRequest request =
      CONTAINERD__SERVICES__TASKS__V1__CREATE_TASK_REQUEST__INIT;
  request.container_id = Chars(container_id);
  request.n_rootfs = mounts.pointers.size();
  request.rootfs = mounts.pointers.data();
  request.stdin = Chars(io.stdin_uri);
  request.stdout = Chars(io.stdout_uri);
  request.stderr = Chars(io.stderr_uri);
  request.terminal = io.terminal;
  using Response = Containerd__Services__Tasks__V1__CreateTaskResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.tasks.v1.Tasks/Create", &request.base,
                         containerd__services__tasks__v1__create_task_response__descriptor));
  return r->pid;
}

Result<uint32_t> ContainerdStartTask(GrpcChannel* channel, const std::string& container_id,
                                     const std::string& exec_id) {
  Containerd__Services__Tasks__V1__StartRequest request =
      CONTAINERD__SERVICES__TASKS__V1__START_REQUEST__INIT;
  request.container_id = Chars(container_id);
  request.exec_id = Chars(exec_id);
  using Response = Containerd__Services__Tasks__V1__StartResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.tasks.v1.Tasks/Start", &request.base,
                         containerd__services__tasks__v1__start_response__descriptor));
  return r->pid;
}

Status ContainerdKillTask(GrpcChannel* channel, const std::string& container_id, int signal,
                          bool all, const std::string& exec_id) {
  Containerd__Services__Tasks__V1__KillRequest request =
      CONTAINERD__SERVICES__TASKS__V1__KILL_REQUEST__INIT;
  request.container_id = Chars(container_id);
  request.exec_id = Chars(exec_id);
  request.signal = static_cast<uint32_t>(signal);
  request.all = all;
  return Invoke(channel, "containerd.services.tasks.v1.Tasks/Kill", &request.base,
                google__protobuf__empty__descriptor)
      .status();
}

Result<ContainerdExit> ContainerdDeleteTask(GrpcChannel* channel, const std::string& container_id) {
  Containerd__Services__Tasks__V1__DeleteTaskRequest request =
      CONTAINERD__SERVICES__TASKS__V1__DELETE_TASK_REQUEST__INIT;
  request.container_id = Chars(container_id);
  return InvokeForExit(channel, "containerd.services.tasks.v1.Tasks/Delete", container_id,
                       &request.base);
}

Result<ContainerdExit> ContainerdDeleteProcess(GrpcChannel* channel,
                                               const std::string& container_id,
                                               const std::string& exec_id) {
  Containerd__Services__Tasks__V1__DeleteProcessRequest request =
      CONTAINERD__SERVICES__TASKS__V1__DELETE_PROCESS_REQUEST__INIT;
  request.container_id = Chars(container_id);
  request.exec_id = Chars(exec_id);
  return InvokeForExit(channel, "containerd.services.tasks.v1.Tasks/DeleteProcess", container_id,
                       &request.base);
}

Status ContainerdExecProcess(GrpcChannel* channel, const std::string& container_id,
                             const std::string& exec_id, const std::string& process,
                             const ContainerdTaskIO& io) {
  const std::string type = kContainerdProcessType;
  Google__Protobuf__Any spec = AnyOf(type, process);
  Containerd__Services__Tasks__V1__ExecProcessRequest request =
      CONTAINERD__SERVICES__TASKS__V1__EXEC_PROCESS_REQUEST__INIT;
  request.container_id = Chars(container_id);
  request.stdin = Chars(io.stdin_uri);
  request.stdout = Chars(io.stdout_uri);
  request.stderr = Chars(io.stderr_uri);
  request.terminal = io.terminal;
  request.spec = &spec;
  request.exec_id = Chars(exec_id);
  return Invoke(channel, "containerd.services.tasks.v1.Tasks/Exec", &request.base,
                google__protobuf__empty__descriptor)
      .status();
}

Result<ContainerdExit> ContainerdWaitTask(GrpcChannel* channel, const std::string& container_id,
                                          const std::string& exec_id) {
  Containerd__Services__Tasks__V1__WaitRequest request =
      CONTAINERD__SERVICES__TASKS__V1__WAIT_REQUEST__INIT;
  request.container_id = Chars(container_id);
  request.exec_id = Chars(exec_id);
  using Response = Containerd__Services__Tasks__V1__WaitResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.tasks.v1.Tasks/Wait", &request.base,
                         containerd__services__tasks__v1__wait_response__descriptor));
  ContainerdExit exit;
  exit.exit_status = r->exit_status;
  exit.exited_at = TimeOf(r->exited_at);
  return exit;
}

const char* ContainerdTaskStatusName(ContainerdTaskStatus status) {
  switch (status) {
    case ContainerdTaskStatus::kUnknown: return "UNKNOWN";
    case ContainerdTaskStatus::kCreated: return "CREATED";
    case ContainerdTaskStatus::kRunning: return "RUNNING";
    case ContainerdTaskStatus::kStopped: return "STOPPED";
    case ContainerdTaskStatus::kPaused: return "PAUSED";
    case ContainerdTaskStatus::kPausing: return "PAUSING";
  }
  return "UNKNOWN";
}

Result<ContainerdProcess> ContainerdGetTask(GrpcChannel* channel, const std::string& container_id) {
  constexpr const char* kMethod = "containerd.services.tasks.v1.Tasks/Get";
  Containerd__Services__Tasks__V1__GetRequest request =
      CONTAINERD__SERVICES__TASKS__V1__GET_REQUEST__INIT;
  request.container_id = Chars(container_id);
  using Response = Containerd__Services__Tasks__V1__GetResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, kMethod, &request.base,
                         containerd__services__tasks__v1__get_response__descriptor));
  if (r->process == nullptr) return Status::Corruption(std::string(kMethod) + ": no process");
  return FromMessage(*r->process);
}

Result<std::vector<ContainerdProcess>> ContainerdListTasks(GrpcChannel* channel) {
  Containerd__Services__Tasks__V1__ListTasksRequest request =
      CONTAINERD__SERVICES__TASKS__V1__LIST_TASKS_REQUEST__INIT;
  using Response = Containerd__Services__Tasks__V1__ListTasksResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.tasks.v1.Tasks/List", &request.base,
                         containerd__services__tasks__v1__list_tasks_response__descriptor));
  std::vector<ContainerdProcess> tasks;
  for (size_t i = 0; i < r->n_tasks; i++) tasks.push_back(FromMessage(*r->tasks[i]));
  return tasks;
}

Result<ContainerdExit> ContainerdDecodeTaskExit(const ContainerdEnvelope& envelope) {
  constexpr const char* kWhat = "containerd's event";
  if (envelope.type_url != kContainerdTaskExitType) {
    return Status::InvalidArgument(std::string(kWhat) + " " + envelope.topic + " is a " +
                                   envelope.type_url + ", not a " + kContainerdTaskExitType);
  }
  PETREL_ASSIGN_OR_RETURN(
      Message m,
      Unpack(kWhat, envelope.value, containerd__events__task_exit__descriptor, "its value"));
  const auto* e = reinterpret_cast<const Containerd__Events__TaskExit*>(m.get());
  return ContainerdExit{e->container_id, e->id, e->pid, e->exit_status, TimeOf(e->exited_at)};
}

// ---- Images in containerd's own stores.

namespace {

// `labels` as protobuf-c's map entries of type Entry (made from `init`), valid while
// both live: `pointers` is the repeated field.
template <typename Entry>
struct Entries {
  Entries(const std::map<std::string, std::string>& labels, const Entry& init) {
    for (const auto& [key, value] : labels) {
      Entry e = init;
      e.key = Chars(key);
      e.value = Chars(value);
      entries.push_back(e);
    }
    for (Entry& e : entries) pointers.push_back(&e);
  }
  std::vector<Entry> entries;
  std::vector<Entry*> pointers;
};

// The map entries `entries` (n of them) as a map.
template <typename Entry>
std::map<std::string, std::string> MapOf(Entry* const* entries, size_t n) {
  std::map<std::string, std::string> map;
  for (size_t i = 0; i < n; i++) map[entries[i]->key] = entries[i]->value;
  return map;
}

using WriteRequest = Containerd__Services__Content__V1__WriteContentRequest;
using WriteResponse = Containerd__Services__Content__V1__WriteContentResponse;
using ContentLabel = Containerd__Services__Content__V1__WriteContentRequest__LabelsEntry;

}  // namespace

Result<ContainerdContent> ContainerdContentInfo(GrpcChannel* channel, const std::string& digest) {
  Containerd__Services__Content__V1__InfoRequest request =
      CONTAINERD__SERVICES__CONTENT__V1__INFO_REQUEST__INIT;
  request.digest = Chars(digest);
  using Response = Containerd__Services__Content__V1__InfoResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.content.v1.Content/Info", &request.base,
                         containerd__services__content__v1__info_response__descriptor));
  ContainerdContent content;
  if (r->info != nullptr) {
    content.digest = r->info->digest;
    content.size = r->info->size;
    content.labels = MapOf(r->info->labels, r->info->n_labels);
  }
  return content;
}

Status ContainerdWriteContent(GrpcChannel* channel, const std::string& ref,
                              const ContainerdContent& blob,
                              const std::function<Result<size_t>(char* buf, size_t size)>& read) {
  constexpr const char* kMethod = "containerd.services.content.v1.Content/Write";
  const std::string what = std::string(kMethod) + " of " + blob.digest;
  // Whether the store has it (then leased, and AlreadyExists), or an error.
  auto there = [&]() -> Status {
    Result<ContainerdContent> have = ContainerdContentInfo(channel, blob.digest);
    if (have.status().IsNotFound()) return Status::OK();
    PETREL_RETURN_IF_ERROR(have.status());
    if (!channel->lease().empty()) {
      PETREL_RETURN_IF_ERROR(ContainerdLeaseContent(channel, channel->lease(), blob.digest));
    }
    return Status::AlreadyExists(what + ": the store has it");
  };
  PETREL_RETURN_IF_ERROR(there());
  std::string chunk(kContainerdWriteChunk, '\0');
  int64_t offset = 0;
  bool first = true, committed = false;
  const Entries<ContentLabel> labels(
      blob.labels, CONTAINERD__SERVICES__CONTENT__V1__WRITE_CONTENT_REQUEST__LABELS_ENTRY__INIT);
  // WRITE messages of the bytes as they are read (the first names the ref, the size
  // and the digest; each its offset, as an offset of 0 would start the blob over), then
  // a COMMIT with the labels.
  auto next = [&](std::string* message) -> Result<bool> {
    if (committed) return false;
    WriteRequest m = CONTAINERD__SERVICES__CONTENT__V1__WRITE_CONTENT_REQUEST__INIT;
    m.ref = Chars(ref);
    m.total = blob.size;
    m.expected = Chars(blob.digest);
    m.offset = offset;
    size_t got = 0;
    while (got < chunk.size()) {
      PETREL_ASSIGN_OR_RETURN(size_t n, read(chunk.data() + got, chunk.size() - got));
      if (n == 0) break;
      got += n;
    }
    if (offset + static_cast<int64_t>(got) > blob.size) {
      return Status::InvalidArgument(what + ": more than its " + std::to_string(blob.size) +
                                     " bytes to write");
    }
    if (got == 0 && offset < blob.size) {
      return Status::InvalidArgument(what + ": " + std::to_string(offset) + " of its " +
                                     std::to_string(blob.size) + " bytes to write");
    }
    if (got > 0 || first) {
      first = false;
      m.action = CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__WRITE;
      m.data.data = reinterpret_cast<uint8_t*>(chunk.data());
      m.data.len = got;
      offset += static_cast<int64_t>(got);
    } else {
      m.action = CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT;
      m.n_labels = labels.pointers.size();
      m.labels = const_cast<ContentLabel**>(labels.pointers.data());
      committed = true;
    }
    *message = Pack(&m.base);
    return true;
  };
  std::vector<std::string> responses;
  Status s = channel->Upload(kMethod, next, &responses);
  if (s.code() == Status::Code::kUnavailable) {
    // containerd's refusal may have come before the whole stream had gone, and so been
    // lost: another writer committed the blob meanwhile.
    PETREL_RETURN_IF_ERROR(there());
  }
  PETREL_RETURN_IF_ERROR(s);
  if (!committed || responses.empty()) {
    return Status::Internal(what + ": the stream ended before the commit");
  }
  PETREL_ASSIGN_OR_RETURN(
      Message m, Unpack(kMethod, responses.back(),
                        containerd__services__content__v1__write_content_response__descriptor));
  const auto* r = reinterpret_cast<const WriteResponse*>(m.get());
  if (r->action != CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT ||
      blob.digest != r->digest) {
    return Status::Internal(what + ": the last answer is no commit of it (" + r->digest + ")");
  }
  return Status::OK();
}

Status ContainerdDeleteContent(GrpcChannel* channel, const std::string& digest) {
  Containerd__Services__Content__V1__DeleteContentRequest request =
      CONTAINERD__SERVICES__CONTENT__V1__DELETE_CONTENT_REQUEST__INIT;
  request.digest = Chars(digest);
  return Invoke(channel, "containerd.services.content.v1.Content/Delete", &request.base,
                google__protobuf__empty__descriptor)
      .status();
}

Status ContainerdCreateLease(GrpcChannel* channel, const std::string& id,
                             const std::map<std::string, std::string>& labels) {
  using Label = Containerd__Services__Leases__V1__CreateRequest__LabelsEntry;
  const Entries<Label> entries(
      labels, CONTAINERD__SERVICES__LEASES__V1__CREATE_REQUEST__LABELS_ENTRY__INIT);
  Containerd__Services__Leases__V1__CreateRequest request =
      CONTAINERD__SERVICES__LEASES__V1__CREATE_REQUEST__INIT;
  request.id = Chars(id);
  request.n_labels = entries.pointers.size();
  request.labels = const_cast<Label**>(entries.pointers.data());
  return Invoke(channel, "containerd.services.leases.v1.Leases/Create", &request.base,
                containerd__services__leases__v1__create_response__descriptor)
      .status();
}

Result<std::vector<std::string>> ContainerdListLeases(GrpcChannel* channel,
                                                      const std::vector<std::string>& filters) {
  std::vector<char*> list = CharsOf(filters);
  Containerd__Services__Leases__V1__ListRequest request =
      CONTAINERD__SERVICES__LEASES__V1__LIST_REQUEST__INIT;
  request.n_filters = list.size();
  request.filters = list.data();
  using Response = Containerd__Services__Leases__V1__ListResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.leases.v1.Leases/List", &request.base,
                         containerd__services__leases__v1__list_response__descriptor));
  std::vector<std::string> ids;
  for (size_t i = 0; i < r->n_leases; i++) ids.push_back(r->leases[i]->id);
  return ids;
}

Status ContainerdLeaseContent(GrpcChannel* channel, const std::string& id,
                              const std::string& digest) {
  Containerd__Services__Leases__V1__Resource resource =
      CONTAINERD__SERVICES__LEASES__V1__RESOURCE__INIT;
  resource.id = Chars(digest);
  resource.type = const_cast<char*>("content");
  Containerd__Services__Leases__V1__AddResourceRequest request =
      CONTAINERD__SERVICES__LEASES__V1__ADD_RESOURCE_REQUEST__INIT;
  request.id = Chars(id);
  request.resource = &resource;
  return Invoke(channel, "containerd.services.leases.v1.Leases/AddResource", &request.base,
                google__protobuf__empty__descriptor)
      .status();
}

Status ContainerdDeleteLease(GrpcChannel* channel, const std::string& id, bool sync) {
  Containerd__Services__Leases__V1__DeleteRequest request =
      CONTAINERD__SERVICES__LEASES__V1__DELETE_REQUEST__INIT;
  request.id = Chars(id);
  request.sync = sync;
  return Invoke(channel, "containerd.services.leases.v1.Leases/Delete", &request.base,
                google__protobuf__empty__descriptor)
      .status();
}

Status ContainerdCreateImage(GrpcChannel* channel, const ContainerdImage& image) {
  using Label = Containerd__Services__Images__V1__Image__LabelsEntry;
  const Entries<Label> entries(image.labels,
                               CONTAINERD__SERVICES__IMAGES__V1__IMAGE__LABELS_ENTRY__INIT);
  Containerd__Types__Descriptor target = CONTAINERD__TYPES__DESCRIPTOR__INIT;
  target.media_type = Chars(image.target.media_type);
  target.digest = Chars(image.target.digest);
  target.size = image.target.size;
  Containerd__Services__Images__V1__Image m = CONTAINERD__SERVICES__IMAGES__V1__IMAGE__INIT;
  m.name = Chars(image.name);
  m.n_labels = entries.pointers.size();
  m.labels = const_cast<Label**>(entries.pointers.data());
  m.target = &target;
  Containerd__Services__Images__V1__CreateImageRequest request =
      CONTAINERD__SERVICES__IMAGES__V1__CREATE_IMAGE_REQUEST__INIT;
  request.image = &m;
  return Invoke(channel, "containerd.services.images.v1.Images/Create", &request.base,
                containerd__services__images__v1__create_image_response__descriptor)
      .status();
}

namespace {

ContainerdImage FromMessage(const Containerd__Services__Images__V1__Image& m) {
  ContainerdImage image;
  image.name = m.name;
  image.labels = MapOf(m.labels, m.n_labels);
  if (m.target != nullptr) {
    image.target.media_type = m.target->media_type;
    image.target.digest = m.target->digest;
    image.target.size = m.target->size;
  }
  image.created_at = TimeOf(m.created_at);
  return image;
}

}  // namespace

Result<ContainerdImage> ContainerdGetImage(GrpcChannel* channel, const std::string& name) {
  Containerd__Services__Images__V1__GetImageRequest request =
      CONTAINERD__SERVICES__IMAGES__V1__GET_IMAGE_REQUEST__INIT;
  request.name = Chars(name);
  using Response = Containerd__Services__Images__V1__GetImageResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.images.v1.Images/Get", &request.base,
                         containerd__services__images__v1__get_image_response__descriptor));
  if (r->image == nullptr) return ContainerdImage();
  return FromMessage(*r->image);
}

Result<std::vector<ContainerdImage>> ContainerdListImages(GrpcChannel* channel,
                                                          const std::vector<std::string>& filters) {
  std::vector<char*> list = CharsOf(filters);
  Containerd__Services__Images__V1__ListImagesRequest request =
      CONTAINERD__SERVICES__IMAGES__V1__LIST_IMAGES_REQUEST__INIT;
  request.n_filters = list.size();
  request.filters = list.data();
  using Response = Containerd__Services__Images__V1__ListImagesResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.images.v1.Images/List", &request.base,
                         containerd__services__images__v1__list_images_response__descriptor));
  std::vector<ContainerdImage> images;
  for (size_t i = 0; i < r->n_images; i++) images.push_back(FromMessage(*r->images[i]));
  return images;
}

Status ContainerdDeleteImage(GrpcChannel* channel, const std::string& name, bool sync) {
  Containerd__Services__Images__V1__DeleteImageRequest request =
      CONTAINERD__SERVICES__IMAGES__V1__DELETE_IMAGE_REQUEST__INIT;
  request.name = Chars(name);
  request.sync = sync;
  return Invoke(channel, "containerd.services.images.v1.Images/Delete", &request.base,
                google__protobuf__empty__descriptor)
      .status();
}

Result<std::vector<ContainerdMount>> ContainerdPrepareSnapshot(
    GrpcChannel* channel, const std::string& snapshotter, const std::string& key,
    const std::string& parent, const std::map<std::string, std::string>& labels) {
  using Label = Containerd__Services__Snapshots__V1__PrepareSnapshotRequest__LabelsEntry;
  const Entries<Label> entries(
      labels, CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__LABELS_ENTRY__INIT);
  Containerd__Services__Snapshots__V1__PrepareSnapshotRequest request =
      CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
  request.snapshotter = Chars(snapshotter);
  request.key = Chars(key);
  request.parent = Chars(parent);
  request.n_labels = entries.pointers.size();
  request.labels = const_cast<Label**>(entries.pointers.data());
  using Response = Containerd__Services__Snapshots__V1__PrepareSnapshotResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(
          channel, "containerd.services.snapshots.v1.Snapshots/Prepare", &request.base,
          containerd__services__snapshots__v1__prepare_snapshot_response__descriptor));
  return MountsOf(r->mounts, r->n_mounts);
}

Result<std::vector<ContainerdMount>> ContainerdSnapshotMounts(GrpcChannel* channel,
                                                              const std::string& snapshotter,
                                                              const std::string& key) {
  Containerd__Services__Snapshots__V1__MountsRequest request =
      CONTAINERD__SERVICES__SNAPSHOTS__V1__MOUNTS_REQUEST__INIT;
  request.snapshotter = Chars(snapshotter);
  request.key = Chars(key);
  using Response = Containerd__Services__Snapshots__V1__MountsResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.snapshots.v1.Snapshots/Mounts",
                         &request.base,
                         containerd__services__snapshots__v1__mounts_response__descriptor));
  return MountsOf(r->mounts, r->n_mounts);
}

Status ContainerdCommitSnapshot(GrpcChannel* channel, const std::string& snapshotter,
                                const std::string& name, const std::string& key,
                                const std::map<std::string, std::string>& labels) {
  using Label = Containerd__Services__Snapshots__V1__CommitSnapshotRequest__LabelsEntry;
  const Entries<Label> entries(
      labels, CONTAINERD__SERVICES__SNAPSHOTS__V1__COMMIT_SNAPSHOT_REQUEST__LABELS_ENTRY__INIT);
  Containerd__Services__Snapshots__V1__CommitSnapshotRequest request =
      CONTAINERD__SERVICES__SNAPSHOTS__V1__COMMIT_SNAPSHOT_REQUEST__INIT;
  request.snapshotter = Chars(snapshotter);
  request.name = Chars(name);
  request.key = Chars(key);
  request.n_labels = entries.pointers.size();
  request.labels = const_cast<Label**>(entries.pointers.data());
  return Invoke(channel, "containerd.services.snapshots.v1.Snapshots/Commit", &request.base,
                google__protobuf__empty__descriptor)
      .status();
}

Status ContainerdRemoveSnapshot(GrpcChannel* channel, const std::string& snapshotter,
                                const std::string& key) {
  Containerd__Services__Snapshots__V1__RemoveSnapshotRequest request =
      CONTAINERD__SERVICES__SNAPSHOTS__V1__REMOVE_SNAPSHOT_REQUEST__INIT;
  request.snapshotter = Chars(snapshotter);
  request.key = Chars(key);
  return Invoke(channel, "containerd.services.snapshots.v1.Snapshots/Remove", &request.base,
                google__protobuf__empty__descriptor)
      .status();
}

Result<ContainerdSnapshot> ContainerdStatSnapshot(GrpcChannel* channel,
                                                  const std::string& snapshotter,
                                                  const std::string& key) {
  Containerd__Services__Snapshots__V1__StatSnapshotRequest request =
      CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_REQUEST__INIT;
  request.snapshotter = Chars(snapshotter);
  request.key = Chars(key);
  using Response = Containerd__Services__Snapshots__V1__StatSnapshotResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.snapshots.v1.Snapshots/Stat", &request.base,
                         containerd__services__snapshots__v1__stat_snapshot_response__descriptor));
  ContainerdSnapshot snapshot;
  if (r->info != nullptr) {
    snapshot.name = r->info->name;
    snapshot.parent = r->info->parent;
    snapshot.committed = r->info->kind == CONTAINERD__SERVICES__SNAPSHOTS__V1__KIND__COMMITTED;
    snapshot.labels = MapOf(r->info->labels, r->info->n_labels);
  }
  return snapshot;
}

Result<ContainerdContent> ContainerdApplyDiff(GrpcChannel* channel, const ContainerdContent& layer,
                                              const std::vector<ContainerdMount>& mounts) {
  Containerd__Types__Descriptor diff = CONTAINERD__TYPES__DESCRIPTOR__INIT;
  diff.media_type = Chars(layer.media_type);
  diff.digest = Chars(layer.digest);
  diff.size = layer.size;
  MountMessages list(mounts);
  Containerd__Services__Diff__V1__ApplyRequest request =
      CONTAINERD__SERVICES__DIFF__V1__APPLY_REQUEST__INIT;
  request.diff = &diff;
  request.n_mounts = list.pointers.size();
  request.mounts = list.pointers.data();
  using Response = Containerd__Services__Diff__V1__ApplyResponse;
  PETREL_ASSIGN_OR_RETURN(
      Reply<Response> r,
      InvokeAs<Response>(channel, "containerd.services.diff.v1.Diff/Apply", &request.base,
                         containerd__services__diff__v1__apply_response__descriptor));
  ContainerdContent applied;
  if (r->applied != nullptr) {
    applied.media_type = r->applied->media_type;
    applied.digest = r->applied->digest;
    applied.size = r->applied->size;
  }
  return applied;
}

}  // namespace petrel::internal
