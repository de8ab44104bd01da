// The Cluster facade: files, the peer transport, raft_uv and the ClusterNode on one
// loop, and the bridge between the replicated workloads and the local Orchestrator.
//
// Files in <state_dir>/cluster (0700):
//   identity.json  this node's name, raft id, address, role; written once it is a member
//   ca.crt node.crt node.key (0600)   its TLS identity
//   raft/          raft's log, metadata and snapshots (raft_uv)
//   synced         the applied index the local Orchestrator last caught up with
//   state.json     the replica at that index: read at start, for reads and to find the
//                  peers, until raft has replayed past it
// and, on tmpfs, <lease_dir>/<node>-<hash>.lease (0600): the exclusive lease (RenewLease).
#include <sys/random.h>
#include <unistd.h>
#include <uv.h>
extern "C" {  // raft.h declares its functions without extern "C"
#include <raft.h>
#include <raft/uv.h>
}

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "lib/cluster/node.h"
#include "lib/cluster/schedule.h"
#include "lib/cluster/state.h"
#include "lib/net/peer_transport.h"
#include "lib/net/pki.h"
#include "lib/util/fs.h"
#include "lib/util/lease.h"
#include "lib/util/workers.h"
#include "petrel/cluster.h"

namespace petrel {
namespace internal {
class ClusterImpl;
namespace {

using nlohmann::json;

constexpr const char* kTokenPrefix = "PETREL1";
constexpr int64_t kTickMs = 50;
constexpr int64_t kPromoteTimeoutMs = 5000;
constexpr size_t kMaxFile = 1 << 20;
constexpr size_t kMaxState = 64 << 20;  // state.json: the replica's last known state

Result<std::string> RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(std::string("getrandom: ") + std::strerror(errno));
    }
    got += static_cast<size_t>(n);
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

// "PETREL1.<CA fingerprint>.<secret>"
std::string MakeToken(const std::string& ca_hash, const std::string& secret) {
  return std::string(kTokenPrefix) + "." + ca_hash + "." + secret;
}

Status ParseToken(const std::string& token, std::string* ca_hash, std::string* secret) {
  const size_t a = token.find('.');
  const size_t b = a == std::string::npos ? a : token.find('.', a + 1);
  if (b == std::string::npos || token.substr(0, a) != kTokenPrefix || b - a - 1 != 64 ||
      token.size() - b - 1 < 16) {
    return Status::InvalidArgument("token: not a petrel join token (" + std::string(kTokenPrefix) +
                                   ".<CA hash>.<secret>, as `petrelctl cluster token` prints)");
  }
  *ca_hash = token.substr(a + 1, 64);
  *secret = token.substr(b + 1);
  return Status::OK();
}

bool IsWildcard(const std::string& address) {
  return address.rfind("0.0.0.0:", 0) == 0 || address.rfind("[::]:", 0) == 0;
}

bool ValidAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) return false;
  int port = 0;
  for (size_t i = colon + 1; i < address.size(); i++) {
    if (address[i] < '0' || address[i] > '9') return false;
    port = port * 10 + (address[i] - '0');
    if (port > 65535) return false;
  }
  return port > 0;
}

// Where this node stands, as stored in identity.json.
struct Identity {
  NodeSelf self;
  PeerIdentity tls;
};

// Handles the loop owns; freed in the last close callback, so the facade may go away
// while they close.
struct Engine {
  uv_loop_t* loop = nullptr;
  uv_poll_t mail;  // the Mailbox's eventfd (workers.h says why not uv_async_t)
  uv_timer_t tick;
  raft_io io{};
  struct raft raft {};
  bool raft_started = false;
  int open_handles = 0;
  std::shared_ptr<ClusterNode> node;
  std::unique_ptr<PeerTransport> transport;
  std::function<void()> on_closed;
  ClusterImpl* owner = nullptr;  // null once closing began
};

}  // namespace

class ClusterImpl final : public Cluster, public PeerLink {
 public:
  ClusterImpl(ClusterOptions options, std::unique_ptr<Orchestrator> local)
      : opts_(std::move(options)),
        local_(std::move(local)),
        sync_pool_(1, "petrel-csync"),
        lease_pool_(1, "petrel-lease") {
    dir_ = opts_.state_dir + "/cluster";
  }

  ~ClusterImpl() override {
    if (summary_subscribed_) local_->Unsubscribe(summary_sub_);
    if (own_thread_.joinable()) {
      mailbox_.Post([this] { BeginClose(); });
      own_thread_.join();
      uv_loop_close(&own_loop_);
    }
    mailbox_.Close();
  }

  Status OpenFiles() {
    if (opts_.advertise.empty()) {
      if (IsWildcard(opts_.peer_listen)) {
        return Status::InvalidArgument(
            "cluster: --advertise is required when --peer-listen is a wildcard address (" +
            opts_.peer_listen + ")");
      }
      opts_.advertise = opts_.peer_listen;
    }
    if (!ValidAddress(opts_.peer_listen)) {
      return Status::InvalidArgument("cluster: peer-listen \"" + opts_.peer_listen +
                                     "\": not ADDR:PORT");
    }
    if (!ValidAddress(opts_.advertise)) {
      return Status::InvalidArgument("cluster: advertise \"" + opts_.advertise +
                                     "\": not ADDR:PORT");
    }
    if (!opts_.clock) opts_.clock = SystemClock();
    // Capacity: 0 = the machine's, -1 = not limited (0 in the member record).
    if (opts_.capacity_memory_bytes == 0) {
      const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
      if (pages > 0 && size > 0) opts_.capacity_memory_bytes = int64_t{pages} * size;
    }
    if (opts_.capacity_cpu_millis == 0) {
      const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
      if (cpus > 0) opts_.capacity_cpu_millis = int64_t{cpus} * 1000;
    }
    if (opts_.capacity_memory_bytes < 0) opts_.capacity_memory_bytes = 0;
    if (opts_.capacity_cpu_millis < 0) opts_.capacity_cpu_millis = 0;
    if (!opts_.log_sink) opts_.log_sink = StderrLogSink();
    PETREL_RETURN_IF_ERROR(MakeDurableDirs(dir_ + "/raft", 0700));
    PETREL_RETURN_IF_ERROR(OpenLease());
    Result<std::string> text = ReadSmallFile(dir_ + "/identity.json", kMaxFile);
    if (text.ok()) {
      PETREL_RETURN_IF_ERROR(LoadIdentity(*text));
      if (identity_.self.name != opts_.node_name) {
        return Status::FailedPrecondition("cluster: " + dir_ + " belongs to node " +
                                          identity_.self.name + ", not " + opts_.node_name +
                                          " (keep the node name, or use another state dir)");
      }
      member_ = true;
    } else if (!text.status().IsNotFound()) {
      return text.status();
    }
    Result<std::string> synced = ReadSmallFile(dir_ + "/synced", 64);
    if (synced.ok()) synced_index_ = std::strtoull(synced->c_str(), nullptr, 10);
    if (!member_ && !opts_.join.empty()) PETREL_RETURN_IF_ERROR(Join());
    return Status::OK();
  }

  // --- Orchestrator: writes through the cluster ---

  Result<std::vector<ApplyResult>> Apply(const std::vector<WorkloadSpec>& specs) override {
    for (const WorkloadSpec& spec : specs) {
      PETREL_RETURN_IF_ERROR(ValidateWorkload(spec).WithContext("workload " + spec.name));
      PETREL_RETURN_IF_ERROR(
          CheckHostPaths(spec, opts_.allowed_host_paths).WithContext("workload " + spec.name));
    }
    // Not in a cluster yet: a single node, as without --peer-listen (Init takes its
    // workloads along).
    if (!member_) return local_->Apply(specs);
    if (witness_) {
      return Status::FailedPrecondition("cluster: " + opts_.node_name +
                                        " is a witness and runs no workloads: apply through "
                                        "another node");
    }
    const std::string entry = PutEntry(specs, opts_.node_name, opts_.clock->Now());
    PETREL_ASSIGN_OR_RETURN(std::string result, WriteEntry(entry));
    Result<std::vector<ApplyResult>> results = PutResults(result);
    if (results.ok()) RequestSync();
    return results;
  }

  Status Delete(const std::string& name) override {
    if (!member_) return local_->Delete(name);
    Result<std::string> result = WriteEntry(DeleteEntry(name));
    if (!result.ok()) {
      // Already gone from the cluster but still stopping here: as on one node.
      if (result.status().IsNotFound()) {
        Result<WorkloadState> local = local_->Get(name);
        if (local.ok() && local->terminating()) return Status::OK();
      }
      return result.status();
    }
    RequestSync();
    return Status::OK();
  }

  // --- Orchestrator: reads from this node's replica ---

  Result<WorkloadState> Get(const std::string& name) override {
    PETREL_ASSIGN_OR_RETURN(std::vector<WorkloadState> all, List());
    for (WorkloadState& w : all) {
      if (w.spec.name == name) return std::move(w);
    }
    return Status::NotFound("no workload named " + name);
  }

  Result<std::vector<WorkloadState>> List() override {
    PETREL_ASSIGN_OR_RETURN(std::vector<WorkloadState> local, local_->List());
    std::map<std::string, WorkloadState> by_name;
    for (WorkloadState& w : local) by_name[w.spec.name] = std::move(w);
    if (!member_) {
      std::vector<WorkloadState> out;
      for (auto& [n, w] : by_name) out.push_back(std::move(w));
      return out;
    }
    std::shared_ptr<ClusterNode> node = Node();
    if (!node) return Status::Unavailable("cluster: closing");
    std::map<std::string, ClusterWorkload> cluster =
        node->WithState([](const ClusterState& s) { return s.workloads(); });
    std::map<std::string, ClusterNode::Peer> peers = node->Peers();
    std::map<std::string, std::string> unplaced = node->Unplaced();
    std::map<std::string, json> summaries;  // node -> what it last said of its replicas
    for (auto& [name, p] : peers) {
      json j = json::parse(p.summary, nullptr, false);
      if (j.is_object()) summaries[name] = std::move(j);
    }
    std::vector<WorkloadState> out;
    for (auto& [name, cw] : cluster) {
      Result<WorkloadSpec> spec = SpecFromJson(cw.spec_json);
      if (!spec.ok()) continue;
      auto it = by_name.find(name);
      WorkloadState w;
      w.spec = std::move(*spec);
      w.generation = cw.generation;
      w.spec_hash = cw.spec_hash;
      w.created_at = cw.created_at;
      w.updated_at = cw.updated_at;
      // Replica i is the k-th of its node's: local index k there.
      std::map<std::string, int> rank;
      const std::string& wname = name;  // a structured binding: not capturable in C++17
      auto fill = [&](const std::string& at, int k, const char* what, ReplicaStatus* r) {
        if (at == opts_.node_name) {
          if (it != by_name.end() && static_cast<size_t>(k) < it->second.replicas.size()) {
            const int index = r->index;
            *r = it->second.replicas[static_cast<size_t>(k)];
            r->index = index;
            r->node = at;
          } else {
            r->message = "handed to this node's loop";
          }
        } else if (!ReplicaFromSummary(summaries, at, wname, k, r)) {
          r->message = node->Ready(at) ? what + (" on node " + at + " (not reported yet)")
                                       : what + (" on node " + at + ", which is Lost");
        }
      };
      for (int i = 0; i < w.spec.replicas; i++) {
        const std::string at = static_cast<size_t>(i) < cw.assigned.size() ? cw.assigned[i] : "";
        ReplicaStatus r;
        r.workload = name;
        r.index = i;
        r.node = at;
        if (at.empty()) {
          auto why = unplaced.find(name);
          r.message = why != unplaced.end() ? why->second : "waiting for the leader to place it";
        } else {
          fill(at, rank[at]++, "replica", &r);
        }
        w.replicas.push_back(std::move(r));
      }
      // The warm standby, after the replicas (as a single node lists its standbys): on
      // its node, local index = the replicas it runs of this workload.
      if (!cw.standby.empty() && w.spec.replicas > 0) {
        ReplicaStatus r;
        r.workload = name;
        r.index = w.spec.replicas;
        r.node = cw.standby;
        fill(cw.standby, rank[cw.standby], "warm standby", &r);
        w.replicas.push_back(std::move(r));
      }
      w.ready_replicas = static_cast<int>(std::count_if(
          w.replicas.begin(),
          w.replicas.begin() + std::min<int>(w.spec.replicas, static_cast<int>(w.replicas.size())),
          [](const ReplicaStatus& r) { return r.ready; }));
      if (it != by_name.end()) by_name.erase(it);
      out.push_back(std::move(w));
    }
    // Deleted from the cluster, still stopping here.
    for (auto& [name, w] : by_name) {
      if (w.terminating()) out.push_back(std::move(w));
    }
    std::sort(out.begin(), out.end(), [](const WorkloadState& a, const WorkloadState& b) {
      return a.spec.name < b.spec.name;
    });
    return out;
  }

  Result<std::vector<Event>> Events(int64_t after_seq, size_t limit) override {
    return local_->Events(after_seq, limit);
  }
  // Images are this node's own: the local runtime's store.
  Status PullImage(const std::string& image, const PullOptions& options) override {
    return local_->PullImage(image, options);
  }
  Result<std::vector<ImageInfo>> ListImages() override { return local_->ListImages(); }
  Status RemoveImage(const std::string& ref) override { return local_->RemoveImage(ref); }
  Result<PruneResult> PruneImages() override { return local_->PruneImages(); }
  Result<ReplicaLog> Logs(const std::string& workload, int replica, const LogOptions& options,
                          const std::string& container_id) override {
    std::shared_ptr<ClusterNode> node = Node();
    if (!member_ || !node) return local_->Logs(workload, replica, options, container_id);
    // Replica `replica` of the cluster is the k-th of the node it runs on.
    std::vector<std::string> assigned;
    const bool known = node->WithState([&](const ClusterState& s) {
      auto it = s.workloads().find(workload);
      if (it == s.workloads().end()) return false;
      assigned = it->second.assigned;
      return true;
    });
    if (!known) return local_->Logs(workload, replica, options, container_id);  // Terminating
    if (replica < 0 || static_cast<size_t>(replica) >= assigned.size()) {
      return Status::NotFound("workload " + workload + " has no replica " +
                              std::to_string(replica));
    }
    const std::string& at = assigned[static_cast<size_t>(replica)];
    if (at != opts_.node_name) {
      return Status::FailedPrecondition(
          "workload " + workload + " replica " + std::to_string(replica) +
          (at.empty() ? " is not placed on a node yet"
                      : " runs on node " + at + ": ask that node's petreld for its logs"));
    }
    const int local =
        static_cast<int>(std::count(assigned.begin(), assigned.begin() + replica, opts_.node_name));
    return local_->Logs(workload, local, options, container_id);
  }
  SubscriptionId Subscribe(EventCallback callback) override {
    return local_->Subscribe(std::move(callback));
  }
  void Unsubscribe(SubscriptionId id) override { local_->Unsubscribe(id); }

  // --- running ---

  Status Start() override {
    PETREL_RETURN_IF_ERROR(local_->Start());
    int rc = uv_loop_init(&own_loop_);
    if (rc != 0) return Status::Internal(std::string("uv_loop_init: ") + uv_strerror(rc));
    PETREL_RETURN_IF_ERROR(StartOnLoop(&own_loop_));
    own_thread_ = std::thread([this] { uv_run(&own_loop_, UV_RUN_DEFAULT); });
    return Status::OK();
  }

  Status Attach(uv_loop_s* loop) override {
    PETREL_RETURN_IF_ERROR(local_->Attach(loop));
    return StartOnLoop(loop);
  }

  void Detach() override {
    BeginClose();
    local_->Detach();
  }

  Status Step() override {
    return Status::NotSupported("cluster: needs a loop (Start or Attach), not Step");
  }
  TimeMs NextWakeup() override { return local_->NextWakeup(); }

  // --- Cluster ---

  Result<std::string> Init(const ClusterSettings& settings) override {
    PETREL_RETURN_IF_ERROR(CheckSettings(settings).WithContext("cluster init"));
    if (member_) {
      return Status::FailedPrecondition("cluster init: " + opts_.node_name +
                                        " is already a member of cluster " + cluster_id_);
    }
    // The slow part (keys) here, on the caller's thread.
    PETREL_ASSIGN_OR_RETURN(std::string cluster_id, RandomHex(8));
    PETREL_ASSIGN_OR_RETURN(std::string secret, RandomHex(16));
    PETREL_ASSIGN_OR_RETURN(CertAndKey ca, CreateCa(cluster_id, opts_.clock->Now()));
    PETREL_ASSIGN_OR_RETURN(KeyAndCsr kc, CreateKeyAndCsr(opts_.node_name));
    PETREL_ASSIGN_OR_RETURN(std::string cert,
                            SignCsr(ca, kc.csr_pem, opts_.node_name, opts_.clock->Now()));
    PETREL_ASSIGN_OR_RETURN(std::string fingerprint, CertFingerprint(cert));
    Identity id;
    id.self.name = opts_.node_name;
    id.self.address = opts_.advertise;
    id.self.role = opts_.witness ? "witness" : "voter";
    id.self.labels = opts_.labels;
    do id.self.id = opts_.clock->Random() >> 1;
    while (id.self.id == 0);
    id.tls = {ca.cert_pem, cert, kc.key_pem};
    // A crash before identity.json is written leaves at most raft files of a cluster
    // that never was: start them afresh.
    PETREL_RETURN_IF_ERROR(RemoveTree(dir_ + "/raft"));
    PETREL_RETURN_IF_ERROR(MakeDurableDirs(dir_ + "/raft", 0700));
    PETREL_ASSIGN_OR_RETURN(std::vector<WorkloadState> local, local_->List());

    PETREL_RETURN_IF_ERROR(OnLoop<bool>([&, id](std::function<void(Result<bool>)> done) {
                             identity_ = id;
                             witness_ = id.self.role == "witness";
                             Status s = StartMember(/*bootstrap=*/true);
                             done(s.ok() ? Result<bool>(true) : Result<bool>(s));
                           }).status());
    ClusterMember self;
    self.name = id.self.name;
    self.id = id.self.id;
    self.address = id.self.address;
    self.role = id.self.role;
    self.labels = id.self.labels;
    self.capacity_memory_bytes = opts_.capacity_memory_bytes;
    self.capacity_cpu_millis = opts_.capacity_cpu_millis;
    self.fingerprint = fingerprint;
    self.joined_at = opts_.clock->Now();
    PETREL_RETURN_IF_ERROR(
        WriteEntry(InitEntry(cluster_id, ca.cert_pem, ca.key_pem, secret, settings)).status());
    PETREL_RETURN_IF_ERROR(WriteEntry(MemberEntry(self)).status());
    // This node's workloads become the cluster's, still on this node.
    std::vector<WorkloadSpec> specs;
    for (WorkloadState& w : local) {
      if (!w.terminating()) specs.push_back(std::move(w.spec));
    }
    if (witness_) specs.clear();  // a witness runs none
    if (!specs.empty()) {
      PETREL_RETURN_IF_ERROR(
          WriteEntry(PutEntry(specs, opts_.node_name, opts_.clock->Now())).status());
    }
    PETREL_RETURN_IF_ERROR(SaveIdentity(id));
    cluster_id_ = cluster_id;
    member_ = true;
    EnableSync();
    Log(LogLevel::kInfo, "cluster: " + opts_.node_name + " initialized cluster " + cluster_id +
                             " (" + std::to_string(specs.size()) + " workloads imported)");
    return Token(false);
  }

  Result<std::string> Token(bool rotate) override {
    PETREL_RETURN_IF_ERROR(RequireMember("token"));
    if (rotate) {
      PETREL_ASSIGN_OR_RETURN(std::string secret, RandomHex(16));
      PETREL_RETURN_IF_ERROR(WriteEntry(TokenEntry(secret)).status());
    }
    std::shared_ptr<ClusterNode> node = Node();
    if (!node) return Status::Unavailable("cluster: closing");
    auto [ca, secret] = node->WithState(
        [](const ClusterState& s) { return std::make_pair(s.ca_cert(), s.token_secret()); });
    if (ca.empty()) return Status::Unavailable("cluster: this node has not caught up yet");
    PETREL_ASSIGN_OR_RETURN(std::string ca_hash, CertFingerprint(ca));
    return MakeToken(ca_hash, secret);
  }

  Result<ClusterStatus> GetStatus() override {
    ClusterStatus st;
    st.self = opts_.node_name;
    st.member = member_;
    if (!member_ || !Node()) return st;
    PETREL_ASSIGN_OR_RETURN(st, OnLoop<ClusterStatus>([this](auto done) { done(StatusOnLoop()); }));
    return st;
  }

  Result<std::vector<NodeInfo>> Nodes() override {
    PETREL_RETURN_IF_ERROR(RequireMember("nodes"));
    PETREL_ASSIGN_OR_RETURN(ClusterStatus st, GetStatus());
    return st.members;
  }

  Status RemoveNode(const std::string& name) override {
    PETREL_RETURN_IF_ERROR(RequireMember("remove"));
    // As a member's request: the node handles it when it leads, else passes it on.
    Result<std::string> reply = OnLoop<std::string>([this, name](auto done) {
      engine_->node->HandleRequest(opts_.node_name, RemoveRequest(name), [done](std::string r) {
        Status s = ResultStatus(r);
        done(s.ok() ? Result<std::string>(r) : Result<std::string>(s));
      });
    });
    if (reply.ok()) Log(LogLevel::kInfo, "cluster: removed node " + name);
    return reply.status();
  }

  Status Drain(const std::string& name, bool drain) override {
    PETREL_RETURN_IF_ERROR(RequireMember(drain ? "drain" : "uncordon"));
    PETREL_RETURN_IF_ERROR(WriteEntry(DrainEntry(name, drain)).status());
    Log(LogLevel::kInfo,
        "cluster: node " + name + (drain ? " is Draining" : " takes workloads again"));
    return Status::OK();
  }

  Status SetSettings(const ClusterSettings& settings) override {
    PETREL_RETURN_IF_ERROR(CheckSettings(settings).WithContext("cluster set"));
    PETREL_RETURN_IF_ERROR(RequireMember("set"));
    PETREL_RETURN_IF_ERROR(WriteEntry(SettingsEntry(settings)).status());
    Log(LogLevel::kInfo, "cluster: settings now " + SettingsJson(settings));
    return Status::OK();
  }

  // --- PeerLink ---

  void Call(const std::string& address, std::string request, int64_t timeout_ms,
            Done done) override {
    if (!engine_ || !engine_->transport) {
      return done(Status::Unavailable("cluster: no transport"), "");
    }
    engine_->transport->Call(address, std::move(request), timeout_ms, std::move(done));
  }

 private:
  void Log(LogLevel level, const std::string& message) {
    if (opts_.log_sink) opts_.log_sink(level, message);
  }

  Status RequireMember(const char* what) {
    if (!member_ || !Node()) {
      return Status::FailedPrecondition(std::string("cluster ") + what + ": " + opts_.node_name +
                                        " is not in a cluster yet (petrelctl cluster init, or "
                                        "petreld --join)");
    }
    return Status::OK();
  }

  // Runs `fn` on the loop thread and waits for what it passes to its callback.
  template <typename T>
  Result<T> OnLoop(std::function<void(std::function<void(Result<T>)>)> fn) {
    auto promise = std::make_shared<std::promise<Result<T>>>();
    auto once = std::make_shared<std::atomic<bool>>(false);
    std::future<Result<T>> future = promise->get_future();
    {
      std::lock_guard<std::mutex> lock(loop_mu_);
      if (!running_) return Status::Unavailable("cluster: not running (Start or Attach first)");
    }
    mailbox_.Post([fn, promise, once] {
      fn([promise, once](Result<T> r) {
        if (!once->exchange(true)) promise->set_value(std::move(r));
      });
    });
    if (future.wait_for(std::chrono::milliseconds(opts_.write_timeout_ms + 5000)) !=
        std::future_status::ready) {
      return Status::DeadlineExceeded("cluster: the loop did not answer in time");
    }
    try {
      return future.get();
    } catch (const std::future_error&) {
      return Status::Unavailable("cluster: closing");
    }
  }

  // Commits an entry and returns its result (an error result as the error).
  Result<std::string> WriteEntry(const std::string& entry) {
    PETREL_ASSIGN_OR_RETURN(
        std::string result, OnLoop<std::string>([this, entry](auto done) {
          if (!engine_ || !engine_->node || !engine_->raft_started) {
            return done(Status::FailedPrecondition("cluster: " + opts_.node_name +
                                                   " is not in a cluster yet"));
          }
          engine_->node->Write(entry, opts_.write_timeout_ms, [done](Status s, std::string r) {
            if (s.ok()) s = ResultStatus(r);
            done(s.ok() ? Result<std::string>(r) : Result<std::string>(s));
          });
        }));
    return result;
  }

  // --- identity files ---

  Status LoadIdentity(const std::string& text) {
    json j = json::parse(text, nullptr, false);
    if (!j.is_object()) return Status::Corruption(dir_ + "/identity.json: not JSON");
    try {
      identity_.self.name = j.at("name").get<std::string>();
      identity_.self.id = j.at("id").get<uint64_t>();
      identity_.self.address = j.at("address").get<std::string>();
      identity_.self.role = j.at("role").get<std::string>();
      identity_.self.labels = j.at("labels").get<std::map<std::string, std::string>>();
      cluster_id_ = j.value("clusterId", "");
    } catch (const json::exception& e) {
      return Status::Corruption(dir_ + "/identity.json: " + e.what());
    }
    PETREL_ASSIGN_OR_RETURN(identity_.tls.ca_cert_pem, ReadSmallFile(dir_ + "/ca.crt", kMaxFile));
    PETREL_ASSIGN_OR_RETURN(identity_.tls.cert_pem, ReadSmallFile(dir_ + "/node.crt", kMaxFile));
    PETREL_ASSIGN_OR_RETURN(identity_.tls.key_pem, ReadSmallFile(dir_ + "/node.key", kMaxFile));
    // The address may change between runs (--advertise); the labels too.
    identity_.self.labels = opts_.labels.empty() ? identity_.self.labels : opts_.labels;
    witness_ = identity_.self.role == "witness";
    return Status::OK();
  }

  Status SaveIdentity(const Identity& id) {
    PETREL_RETURN_IF_ERROR(WriteSecret(dir_ + "/node.key", id.tls.key_pem));
    PETREL_RETURN_IF_ERROR(WriteFileAtomic(dir_ + "/node.crt", id.tls.cert_pem));
    PETREL_RETURN_IF_ERROR(WriteFileAtomic(dir_ + "/ca.crt", id.tls.ca_cert_pem));
    json j = {{"name", id.self.name}, {"id", id.self.id},         {"address", id.self.address},
              {"role", id.self.role}, {"labels", id.self.labels}, {"clusterId", cluster_id_}};
    // Written last: its presence says "member".
    return WriteFileAtomic(dir_ + "/identity.json", j.dump(2) + "\n");
  }

  static Status WriteSecret(const std::string& path, const std::string& data, bool sync = true) {
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return ErrnoError(tmp, "open", errno);
    Status s = WriteAll(fd, data, tmp);
    if (s.ok() && sync && ::fsync(fd) != 0) s = ErrnoError(tmp, "fsync", errno);
    ::close(fd);
    if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = ErrnoError(path, "rename", errno);
    return s;
  }

  // --- joining (in Open, on a private loop: petreld fails at start when it cannot) ---

  Status Join() {
    std::string ca_hash, secret;
    PETREL_RETURN_IF_ERROR(ParseToken(opts_.token, &ca_hash, &secret));
    if (!ValidAddress(opts_.join)) {
      return Status::InvalidArgument("cluster: join \"" + opts_.join + "\": not ADDR:PORT");
    }
    PETREL_ASSIGN_OR_RETURN(KeyAndCsr kc, CreateKeyAndCsr(opts_.node_name));
    NodeSelf self;
    self.name = opts_.node_name;
    self.address = opts_.advertise;
    self.role = opts_.witness ? "witness" : "voter";
    self.labels = opts_.labels;
    self.capacity_memory_bytes = opts_.capacity_memory_bytes;
    self.capacity_cpu_millis = opts_.capacity_cpu_millis;
    uv_loop_t loop;
    uv_loop_init(&loop);
    Status status = Status::Unavailable("cluster: join: no answer");
    std::string reply, ca_pem;
    JoinCall(
        &loop, opts_.join, ca_hash, JoinRequest(secret, self, kc.csr_pem),
        opts_.write_timeout_ms + 20000,
        [&](Status s, std::string r, std::string ca) {
          status = std::move(s);
          reply = std::move(r);
          ca_pem = std::move(ca);
        },
        opts_.log_sink);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (status.ok()) status = ResultStatus(reply);
    if (!status.ok()) return status.WithContext("cluster: join through " + opts_.join);
    json j = json::parse(reply, nullptr, false);
    if (!j.is_object() || !j.contains("id") || !j.contains("cert")) {
      return Status::Corruption("cluster: join through " + opts_.join + ": unreadable reply");
    }
    self.id = j["id"].get<uint64_t>();
    Identity id;
    id.self = self;
    id.tls = {ca_pem, j["cert"].get<std::string>(), kc.key_pem};
    for (const auto& f : j.value("revoked", json::array())) {
      if (f.is_string()) seed_revoked_.insert(f.get<std::string>());
    }
    PETREL_RETURN_IF_ERROR(RemoveTree(dir_ + "/raft"));
    PETREL_RETURN_IF_ERROR(MakeDurableDirs(dir_ + "/raft", 0700));
    PETREL_RETURN_IF_ERROR(SaveIdentity(id));
    identity_ = id;
    witness_ = id.self.role == "witness";
    member_ = true;
    import_after_promote_ = !witness_;  // a witness brings no workloads
    Log(LogLevel::kInfo,
        "cluster: " + self.name + " joined through " + opts_.join + "; catching up");
    return Status::OK();
  }

  // --- the loop ---

  Status StartOnLoop(uv_loop_t* loop) {
    PETREL_RETURN_IF_ERROR(mailbox_.CheckFd().WithContext("cluster"));
    engine_ = std::make_unique<Engine>();
    engine_->loop = loop;
    Engine* e = engine_.get();
    e->owner = this;
    // The handles' data is the Engine, which outlives them; `owner` is cleared when
    // closing begins, so a wakeup already queued then does nothing.
    if (int rc = uv_poll_init(loop, &e->mail, mailbox_.fd()); rc != 0) {
      engine_.reset();
      return Status::IOError(std::string("cluster: uv_poll_init: ") + uv_strerror(rc));
    }
    e->mail.data = e;
    uv_poll_start(&e->mail, UV_READABLE, [](uv_poll_t* h, int, int) {
      auto* engine = static_cast<Engine*>(h->data);
      if (engine->owner != nullptr) engine->owner->mailbox_.Drain();
    });
    uv_timer_init(loop, &e->tick);
    e->tick.data = e;
    e->open_handles = 2;
    uv_timer_start(
        &e->tick,
        [](uv_timer_t* t) {
          auto* engine = static_cast<Engine*>(t->data);
          if (engine->owner != nullptr) engine->owner->OnTick();
        },
        kTickMs, kTickMs);
    {
      std::lock_guard<std::mutex> lock(loop_mu_);
      running_ = true;
    }
    if (member_) {
      Status s = StartMember(/*bootstrap=*/false);
      if (!s.ok()) return s;
      // A node that joined in Open hands over its workloads once it is a voter; one
      // that restarts makes sure it is one (a crash may have come between its join
      // and its promotion) and follows the cluster at once.
      if (!import_after_promote_) EnableSync();
      promote_pending_ = true;
    }
    return Status::OK();
  }

  // Opens the transport and raft for identity_; on the loop thread.
  Status StartMember(bool bootstrap) {
    Engine* e = engine_.get();
    PeerTransportOptions to;
    to.loop = e->loop;
    to.listen = opts_.peer_listen;
    to.identity = identity_.tls;
    to.log = opts_.log_sink;
    to.authorize = [this](const PeerInfo& peer) { return Authorize(peer); };
    PETREL_RETURN_IF_ERROR(PeerTransport::Open(std::move(to), &e->transport));
    e->transport->OnRequest(
        [this](const PeerInfo& from, std::string request, PeerTransport::Reply reply) {
          OnPeerRequest(from.name, std::move(request), std::move(reply));
        });
    e->transport->OnJoin(
        [this](const std::string& remote, std::string request, PeerTransport::Reply reply) {
          // Only joins come this way; the leader decides.
          json j = json::parse(request, nullptr, false);
          if (!j.is_object() || j.value("op", "") != "join") {
            return reply(ErrorReply(Status::PermissionDenied("only joins without a certificate")));
          }
          Log(LogLevel::kInfo, "cluster: join request from " + remote + " for node " +
                                   j.value("name", std::string("?")));
          OnPeerRequest(remote, std::move(request), std::move(reply));
        });
    e->node =
        std::make_shared<ClusterNode>(identity_.self, this, opts_.clock.get(), opts_.log_sink);
    e->node->OnApplied([this] { OnApplied(); });
    e->node->SetSummary([this] { return Summary(); });
    summary_sub_ = local_->Subscribe([this](const Event&) { summary_dirty_ = true; });
    summary_subscribed_ = true;
    // What this node last knew, for reads and for finding its peers until raft has
    // replayed (a node alone after a reboot still knows what runs where).
    Result<std::string> known = ReadSmallFile(dir_ + "/state.json", kMaxState);
    if (known.ok()) {
      Status s = e->node->SetFallback(*known);
      if (!s.ok()) Log(LogLevel::kWarn, "cluster: " + dir_ + "/state.json: " + s.message());
    }
    {
      std::lock_guard<std::mutex> lock(node_mu_);
      node_ = e->node;
    }
    const std::string raft_dir = dir_ + "/raft";
    int rv = raft_uv_init(&e->io, e->loop, raft_dir.c_str(), e->transport->raft());
    if (rv != 0)
      return Status::IOError(std::string("cluster: raft storage ") + raft_dir + ": " +
                             e->io.errmsg);
    raft_uv_set_segment_size(&e->io, 64 * 1024);  // flash: small preallocated segments
    raft_uv_set_connect_retry_delay(&e->io, 250);
    rv = raft_init(&e->raft, &e->io, e->node->fsm(), identity_.self.id,
                   identity_.self.address.c_str());
    if (rv != 0) return Status::Internal(std::string("cluster: raft_init: ") + raft_strerror(rv));
    e->node->SetRaft(&e->raft);
    const unsigned election = static_cast<unsigned>(opts_.election_timeout_ms);
    raft_set_election_timeout(&e->raft, election);
    raft_set_heartbeat_timeout(&e->raft, std::max(10u, election / 10));
    raft_set_pre_vote(&e->raft, true);
    raft_set_snapshot_threshold(&e->raft, 128);
    raft_set_snapshot_trailing(&e->raft, 32);
    if (bootstrap) {
      raft_configuration conf;
      raft_configuration_init(&conf);
      raft_configuration_add(&conf, identity_.self.id, identity_.self.address.c_str(), RAFT_VOTER);
      rv = raft_bootstrap(&e->raft, &conf);
      raft_configuration_close(&conf);
      if (rv != 0)
        return Status::Internal(std::string("cluster: raft_bootstrap: ") + raft_strerror(rv));
    }
    rv = raft_start(&e->raft);
    if (rv != 0) {
      return Status::Internal(std::string("cluster: raft_start: ") + raft_strerror(rv) + ": " +
                              raft_errmsg(&e->raft));
    }
    e->raft_started = true;
    return Status::OK();
  }

  Status Authorize(const PeerInfo& peer) {
    bool revoked = seed_revoked_.count(peer.fingerprint) != 0;
    std::string owner;
    if (std::shared_ptr<ClusterNode> node = Node()) {
      node->WithState([&](const ClusterState& s) {
        if (s.revoked().count(peer.fingerprint) != 0) revoked = true;
        if (peer.raft_id != 0) {
          const ClusterMember* m = s.MemberById(peer.raft_id);
          if (m != nullptr) owner = m->name;
        }
        return 0;
      });
    }
    if (revoked) {
      return Status::PermissionDenied("node " + peer.name +
                                      " was removed from the cluster; its certificate is revoked");
    }
    if (!owner.empty() && owner != peer.name) {
      return Status::PermissionDenied("node " + peer.name + " claims raft id " +
                                      std::to_string(peer.raft_id) + ", which is " + owner + "'s");
    }
    return Status::OK();
  }

  void OnPeerRequest(const std::string& from, std::string request, PeerTransport::Reply reply) {
    if (!engine_ || !engine_->node) return reply(ErrorReply(Status::Unavailable("closing")));
    engine_->node->HandleRequest(from, std::move(request), std::move(reply));
  }

  void OnTick() {
    if (!engine_ || !engine_->node) return;
    engine_->node->Tick();
    const TimeMs now = opts_.clock->Monotonic();
    if (promote_pending_ && !promote_in_flight_ && now >= next_promote_) Promote();
    const bool fenced = FencedNow(engine_->node.get());
    RenewLease(engine_->node.get(), fenced, now);
    if (!fenced && !catch_up_in_flight_ && catch_up_wanted_.exchange(false) &&
        caught_up_epoch_ != fence_epoch_) {
      CatchUp();
    }
    if (exclusive_waiting_.exchange(false)) RequestSync();
    if (fenced != fenced_) {
      fenced_ = fenced;
      // Fenced until it first hears a majority (after a join or a restart) is no news:
      // said only once the node had a majority and lost it.
      if (fenced && majority_heard_ && sync_enabled_) {
        Log(LogLevel::kWarn, "cluster: " + opts_.node_name +
                                 " is cut off from the majority: its exclusive workloads stop");
        cut_off_said_ = true;
      }
      if (!fenced &&
          engine_->node->WithState([](const ClusterState& st) { return !st.members().empty(); })) {
        majority_heard_ = true;
        if (cut_off_said_) {
          Log(LogLevel::kInfo, "cluster: " + opts_.node_name + " reaches the majority again");
          cut_off_said_ = false;
        }
      }
      RequestSync();
    }
  }

  // --- catching up after a fence ---
  //
  // A node cut off from the majority misses what the leader decided meanwhile: when it
  // hears the majority again, its replica may still place on it an exclusive workload
  // that the leader has moved, and that another node already runs (one it may not have
  // heard yet, so RunsElsewhere cannot tell). So after each fence, and after its start,
  // a node starts no exclusive workload new to it until it has applied a barrier entry
  // of its own: everything committed before, such a move included, is then in its
  // replica. One entry per fence, written only when an exclusive workload waits on it.

  // Node()->Fenced(), and a fence counted: fence_epoch_ moves on while fenced, so a
  // barrier is caught up only if no fence came since it was asked.
  bool FencedNow(ClusterNode* node) {
    const bool fenced = node->Fenced();
    if (fenced) fence_epoch_++;
    return fenced;
  }

  // Loop thread.
  void CatchUp() {
    catch_up_in_flight_ = true;
    const uint64_t epoch = fence_epoch_;
    engine_->node->Write(BarrierEntry(), opts_.write_timeout_ms,
                         [this, epoch](Status s, std::string r) {
                           catch_up_in_flight_ = false;
                           if (s.ok()) s = ResultStatus(r);
                           if (s.ok() && epoch == fence_epoch_) caught_up_epoch_ = epoch;
                           RequestSync();  // a failure is tried again from the sync
                         });
  }

  // --- the exclusive lease ---
  //
  // Fencing in OnTick stops exclusive workloads when this node is cut off, but only
  // while petrel runs. The lease covers a petrel that died, hangs or was killed while
  // its containers live on: the local Orchestrator asks the runtime to SIGKILL exclusive
  // containers once this node's lease file is fenceAfter old, and the file is renewed
  // here only while the node is not fenced. A dead petrel's node is Lost after
  // nodeLostAfter >= fenceAfter + heartbeat + 200 ms, so its exclusive containers are
  // dead (within the runtime's check, 100 ms for crun) before the leader places them
  // elsewhere, as a cut-off node's are. A petrel restarted within the lease keeps them;
  // one restarted later finds them killed, and they start again where the leader says.

  // Names the lease and gives it to the local Orchestrator, with the default fenceAfter
  // until the replicated settings are known, so that no exclusive container is made
  // without one.
  Status OpenLease() {
    const std::string dir = opts_.lease_dir.empty() ? "/run/petrel" : opts_.lease_dir;
    PETREL_RETURN_IF_ERROR(
        MakeDirs(dir, 0700).WithContext("cluster: the lease dir (ClusterOptions::lease_dir)"));
    if (!InMemory(dir)) {
      Log(LogLevel::kWarn, "cluster: the lease dir " + dir +
                               " is not tmpfs: the lease, renewed every heartbeat, goes to disk");
    }
    lease_.path = LeaseFileOf(dir, opts_.node_name, opts_.state_dir);
    lease_.duration_ms = ClusterSettings{}.fence_after_ms;
    local_->SetExclusiveLease(lease_);
    return Status::OK();
  }

  // On every tick: renews the lease while this node reaches the majority, at most every
  // heartbeat (a quarter of fenceAfter at most), before a change of fencing hands out
  // the exclusive workloads. A fenced node lets it run out.
  void RenewLease(ClusterNode* node, bool fenced, TimeMs now) {
    if (fenced) return;
    const ClusterSettings settings =
        node->WithState([](const ClusterState& st) { return st.settings(); });
    if (settings.fence_after_ms != lease_.duration_ms) {
      lease_.duration_ms = settings.fence_after_ms;
      local_->SetExclusiveLease(lease_);
    }
    const int64_t every = std::min(settings.heartbeat_ms, settings.fence_after_ms / 4);
    if (lease_renewed_ != 0 && now - lease_renewed_ < every) return;
    // The file is written beside the loop (a write and a rename: disk work where the
    // lease dir is not tmpfs), one renewal at a time. It says `now`, when the loop knew
    // the node unfenced, not when the write lands: a slow write shortens the lease,
    // never stretches it.
    if (lease_writing_.exchange(true)) return;
    lease_renewed_ = now;
    lease_pool_.Submit([this, path = lease_.path, now] {
      Status s = WriteSecret(path, LeaseText(now), /*sync=*/false);
      if (!s.ok() && (lease_warned_ == 0 || now - lease_warned_ >= 30000)) {
        lease_warned_ = now;
        Log(LogLevel::kError, "cluster: renewing the lease of exclusive workloads: " + s.message() +
                                  " (they are killed when it runs out)");
      }
      lease_writing_ = false;
    });
  }

  // After a join: asks the leader to make this node a voter, then hands over its
  // workloads.
  void Promote() {
    promote_in_flight_ = true;
    auto done = [this](Status s, std::string r) {
      promote_in_flight_ = false;
      if (s.ok()) s = ResultStatus(r);
      if (!s.ok()) {
        const TimeMs now = opts_.clock->Monotonic();
        next_promote_ = now + 500;
        // Said now and then, not every try: a node the others refuse (removed) says so
        // here, and keeps running what it has.
        if (now >= next_promote_warning_) {
          next_promote_warning_ = now + 30000;
          Log(LogLevel::kWarn, "cluster: " + opts_.node_name +
                                   " cannot confirm its membership with the cluster: " +
                                   s.message() + " (removed? the others log why they refuse it)");
        }
        return;
      }
      promote_pending_ = false;
      Log(LogLevel::kInfo,
          "cluster: " + opts_.node_name + " is a " + identity_.self.role + " of the cluster");
      if (import_after_promote_) {
        import_after_promote_ = false;
        import_pending_ = true;
        RequestSync();
      }
    };
    // To the leader when this node knows it, else to the members it knows in turn
    // (they pass it on), else to the member it joined through.
    raft_id id = 0;
    const char* address = nullptr;
    raft_leader(&engine_->raft, &id, &address);
    std::string to = id != 0 && address != nullptr && id != identity_.self.id ? address : "";
    if (to.empty()) {
      std::vector<std::string> others = engine_->node->WithState([&](const ClusterState& s) {
        std::vector<std::string> out;
        for (const auto& [name, m] : s.members()) {
          if (m.id != identity_.self.id) out.push_back(m.address);
        }
        return out;
      });
      if (!others.empty()) to = others[promote_tries_++ % others.size()];
    }
    if (to.empty()) to = opts_.join;
    if (to.empty()) {
      promote_in_flight_ = false;
      next_promote_ = opts_.clock->Monotonic() + 500;
      return;
    }
    // Short: a refused node says so soon (a promotion itself is quick once it arrives).
    Call(to, PromoteRequest(identity_.self.id), kPromoteTimeoutMs, done);
  }

  ClusterStatus StatusOnLoop() {
    ClusterStatus st;
    st.self = opts_.node_name;
    st.member = member_;
    ClusterNode* node = engine_->node.get();
    st.leader = node->LeaderName();
    st.term = engine_->raft.current_term;
    const TimeMs now_mono = opts_.clock->Monotonic(), now = opts_.clock->Now();
    std::map<std::string, ClusterNode::Peer> heard = node->Peers();
    std::map<std::string, bool> ready;
    node->WithState([&](const ClusterState& s) {
      for (const auto& [name, m] : s.members()) ready[name] = false;
      return 0;
    });
    for (auto& [name, up] : ready) up = node->Ready(name);
    node->WithState([&](const ClusterState& s) {
      st.cluster_id = s.cluster_id();
      st.settings = s.settings();
      st.applied_index = s.applied_index();
      for (const auto& [name, m] : s.members()) {
        NodeInfo n;
        n.name = name;
        n.id = m.id;
        n.role = m.role;
        n.address = m.address;
        n.labels = m.labels;
        n.capacity_memory_bytes = m.capacity_memory_bytes;
        n.capacity_cpu_millis = m.capacity_cpu_millis;
        n.joined_at = m.joined_at;
        n.leader = name == st.leader;
        n.status = !ready[name] ? "Lost" : m.draining ? "Draining" : "Ready";
        if (name == opts_.node_name) {
          n.last_heard = now;
        } else {
          auto it = heard.find(name);
          const TimeMs at = it == heard.end() ? 0 : it->second.last_heard;
          n.last_heard = at == 0 ? 0 : now - (now_mono - at);
        }
        st.members.push_back(std::move(n));
      }
      return 0;
    });
    return st;
  }

  // What this node's heartbeats say of its replicas: {"web":[{"phase":..},..],..}, by
  // local index. Every peer asks every heartbeat, and reading the local state is not
  // free on the loop: made again only after a local event (at most every 100 ms), and
  // at least every 5 s in case a change came without one.
  std::string Summary() {
    const TimeMs now = opts_.clock->Monotonic();
    const int64_t age = now - summary_at_;
    if (!summary_.empty() && (age < 100 || (!summary_dirty_ && age < 5000))) return summary_;
    summary_dirty_ = false;
    json out = json::object();
    Result<std::vector<WorkloadState>> local = local_->List();
    if (local.ok()) {
      for (const WorkloadState& w : *local) {
        if (w.terminating()) continue;
        json replicas = json::array();
        for (const ReplicaStatus& r : w.replicas) {
          replicas.push_back({{"phase", PhaseName(r.phase)},
                              {"containerId", r.container_id},
                              {"pid", r.pid},
                              {"restarts", r.restarts},
                              {"lastExitCode", r.last_exit_code},
                              {"message", r.message},
                              {"since", r.since},
                              {"ready", r.ready}});
        }
        out[w.spec.name] = std::move(replicas);
      }
    }
    summary_ = out.dump();
    summary_at_ = now;
    return summary_;
  }

  // Replica `k` of `workload` on `node`, as its last heartbeat said.
  static bool ReplicaFromSummary(const std::map<std::string, json>& summaries,
                                 const std::string& node, const std::string& workload, int k,
                                 ReplicaStatus* r) {
    auto s = summaries.find(node);
    if (s == summaries.end() || !s->second.contains(workload)) return false;
    const json& list = s->second[workload];
    if (!list.is_array() || static_cast<size_t>(k) >= list.size() || !list[k].is_object()) {
      return false;
    }
    const json& j = list[k];
    std::optional<Phase> phase = ParsePhase(j.value("phase", ""));
    if (!phase) return false;
    r->phase = *phase;
    r->container_id = j.value("containerId", "");
    r->pid = j.value("pid", 0);
    r->restarts = j.value("restarts", 0);
    r->last_exit_code = j.value("lastExitCode", -1);
    r->message = j.value("message", "");
    r->since = j.value("since", int64_t{0});
    r->ready = j.value("ready", r->phase == Phase::kRunning);  // before probes: ready = running
    return true;
  }

  // --- the local Orchestrator follows what the cluster assigns to this node ---

  void EnableSync() {
    sync_enabled_ = true;
    RequestSync();
  }

  void OnApplied() { RequestSync(); }

  void RequestSync() {
    if (!sync_enabled_ && !import_pending_) return;
    if (sync_queued_.exchange(true)) return;
    sync_pool_.Submit([this] {
      sync_queued_ = false;
      Sync();
    });
  }

  // On the sync thread. The member record says what this node was when it joined;
  // labels and capacity given at a later start (--node-label, --capacity-memory,
  // --capacity-cpu) replace it through raft, so the scheduler sees them. True when the
  // record is up to date (written now or already so).
  bool RefreshSelf(ClusterNode* node) {
    std::optional<ClusterMember> m =
        node->WithState([&](const ClusterState& st) -> std::optional<ClusterMember> {
          const ClusterMember* found = st.MemberByName(opts_.node_name);
          if (found == nullptr) return std::nullopt;
          return *found;
        });
    if (!m) return false;
    ClusterMember want = *m;
    if (!opts_.labels.empty()) want.labels = opts_.labels;
    want.capacity_memory_bytes = opts_.capacity_memory_bytes;
    want.capacity_cpu_millis = opts_.capacity_cpu_millis;
    if (want.labels == m->labels && want.capacity_memory_bytes == m->capacity_memory_bytes &&
        want.capacity_cpu_millis == m->capacity_cpu_millis) {
      return true;
    }
    Result<std::string> r = WriteEntry(MemberEntry(want));
    if (!r.ok()) {
      Log(LogLevel::kWarn, "cluster: updating this node's labels and capacity: " +
                               r.status().message() + " (tried again later)");
      return false;
    }
    Log(LogLevel::kInfo, "cluster: " + opts_.node_name + "'s labels and capacity updated");
    return true;
  }

  // On the sync thread: makes the local desired state what the cluster assigns here.
  // Level-triggered, so a lost or repeated call does no harm.
  void Sync() {
    std::shared_ptr<ClusterNode> node = Node();
    if (!node) return;
    if (import_pending_) {
      // A node that just joined hands its own workloads to the cluster first; a name
      // the cluster already has stays the cluster's.
      Result<std::vector<WorkloadState>> local = local_->List();
      if (!local.ok()) return;
      std::set<std::string> known = node->WithState([](const ClusterState& s) {
        std::set<std::string> names;
        for (const auto& [n, w] : s.workloads()) names.insert(n);
        return names;
      });
      std::vector<WorkloadSpec> specs;
      for (WorkloadState& w : *local) {
        if (w.terminating()) continue;
        if (known.count(w.spec.name) != 0) {
          Log(LogLevel::kWarn, "cluster: workload " + w.spec.name +
                                   " exists in the cluster already; this node's copy is replaced");
          continue;
        }
        specs.push_back(std::move(w.spec));
      }
      if (!specs.empty()) {
        Result<std::string> r = WriteEntry(PutEntry(specs, opts_.node_name, opts_.clock->Now()));
        if (!r.ok()) {
          Log(LogLevel::kWarn, "cluster: importing this node's workloads: " + r.status().message());
          return;  // the next applied entry tries again
        }
      }
      import_pending_ = false;
      sync_enabled_ = true;
    }
    if (!sync_enabled_) return;
    if (!self_refreshed_) self_refreshed_ = RefreshSelf(node.get());
    struct Want {
      std::string json;
      uint64_t index;
    };
    uint64_t applied = 0;
    // What runs here: each workload with a replica placed on this node, with as many
    // replicas as are placed here, and a created, unstarted container for each whose
    // warm standby this node is (so that taking a replica over is only a start).
    // A node cut off from the majority runs no exclusive workload: the leader may have
    // placed it elsewhere.
    const bool fenced = FencedNow(node.get());
    std::map<std::string, std::string> wanted = node->WithState([&](const ClusterState& s) {
      applied = s.applied_index();
      std::map<std::string, std::string> out;
      for (const auto& [n, w] : s.workloads()) {
        const int here =
            static_cast<int>(std::count(w.assigned.begin(), w.assigned.end(), opts_.node_name));
        const int standby = w.standby == opts_.node_name ? 1 : 0;
        if (here == 0 && standby == 0) continue;
        Result<WorkloadSpec> spec = SpecFromJson(w.spec_json);
        if (!spec.ok() || (spec->exclusive && fenced)) continue;
        spec->replicas = here;
        spec->standby_replicas = standby;
        out[n] = SpecToJson(*spec);
      }
      return out;
    });
    // After a restart raft replays from its last snapshot: until this node's replica is
    // back where the local state was, it would take the local state backwards.
    if (applied < synced_index_) return;
    Result<std::vector<WorkloadState>> local = local_->List();
    if (!local.ok()) return;
    std::vector<WorkloadSpec> put;
    std::map<std::string, const WorkloadState*> have;
    for (const WorkloadState& w : *local) have[w.spec.name] = &w;
    for (const auto& [name, text] : wanted) {
      auto it = have.find(name);
      if (it != have.end() && !it->second->terminating() && SpecToJson(it->second->spec) == text) {
        continue;
      }
      Result<WorkloadSpec> spec = SpecFromJson(text);
      // Runs here already: a warm standby (replicas 0) runs nothing.
      const bool here =
          it != have.end() && !it->second->terminating() && it->second->spec.replicas > 0;
      if (spec.ok() && !ExclusiveMustWait(node.get(), *spec, here)) {
        put.push_back(std::move(*spec));
      }
    }
    if (!put.empty()) {
      Result<std::vector<ApplyResult>> r = local_->Apply(put);
      if (!r.ok()) {
        Log(LogLevel::kError, "cluster: handing workloads to this node: " + r.status().message());
        return;
      }
    }
    for (const auto& [name, w] : have) {
      if (!w->terminating() && wanted.count(name) == 0) {
        if (fenced && w->spec.exclusive) {
          // Fenced: killed at once (SIGKILL), not stopped gracefully. Scaled to 0 with
          // no grace period first, and deleted once no replica is left: a deleted
          // workload's containers are stopped with the grace period they were made with.
          if (w->spec.replicas != 0 || w->spec.standby_replicas != 0 ||
              w->spec.termination_grace_ms != 0) {
            WorkloadSpec now = w->spec;
            now.replicas = 0;
            now.standby_replicas = 0;
            now.termination_grace_ms = 0;
            Result<std::vector<ApplyResult>> r = local_->Apply(std::vector<WorkloadSpec>{now});
            if (!r.ok())
              Log(LogLevel::kError, "cluster: fencing " + name + ": " + r.status().message());
            continue;
          }
          if (!w->replicas.empty()) continue;  // still stopping
        }
        Status s = local_->Delete(name);
        if (!s.ok() && !s.IsNotFound()) {
          Log(LogLevel::kError, "cluster: removing workload " + name + ": " + s.message());
          return;
        }
      }
    }
    if (applied != synced_index_) {
      synced_index_ = applied;
      // The replica as of now, read back at the next start until raft has replayed.
      // It holds the CA key: owner-only, as node.key. No fsync: a cache, raft has it.
      Status s = WriteSecret(dir_ + "/state.json",
                             node->WithState([](const ClusterState& st) { return st.Snapshot(); }),
                             /*sync=*/false);
      if (s.ok()) s = WriteFileAtomic(dir_ + "/synced", std::to_string(applied) + "\n");
      if (!s.ok()) Log(LogLevel::kWarn, "cluster: " + s.message());
    }
  }

  // An exclusive workload new to this node waits until the node has caught up since
  // its last fence (CatchUp), and while another may run it (ClusterNode::RunsElsewhere);
  // the sync is tried again every tick until it may start. One already here stays:
  // stopping it is fencing's and the leader's business. A warm standby (no replica
  // here) starts nothing and never waits.
  // Sync thread only.
  bool ExclusiveMustWait(ClusterNode* node, const WorkloadSpec& spec, bool here) {
    if (!spec.exclusive || here || spec.replicas == 0) {
      exclusive_told_.erase(spec.name);
      return false;
    }
    const bool behind = caught_up_epoch_ != fence_epoch_;
    if (!behind && !node->RunsElsewhere(spec.name)) {
      exclusive_told_.erase(spec.name);
      return false;
    }
    if (behind) catch_up_wanted_ = true;
    exclusive_waiting_ = true;
    if (exclusive_told_.insert(spec.name).second) {
      Log(LogLevel::kInfo,
          "cluster: exclusive workload " + spec.name + " waits until " +
              (behind ? "this node has caught up with the cluster" : "no other node runs it"));
    }
    return true;
  }

  // --- closing ---

  void BeginClose() {
    if (!engine_ || closing_) return;
    closing_ = true;
    {
      std::lock_guard<std::mutex> lock(loop_mu_);
      running_ = false;
    }
    Engine* e = engine_.release();
    {
      std::lock_guard<std::mutex> lock(node_mu_);
      node_.reset();  // readers see no replica from now on
    }
    // raft first (its pending writes end), then the transport (its pending calls end),
    // then the node they called back into, then the handles.
    auto finish = [e] {
      e->node.reset();  // writes still waiting hear Unavailable
      auto closed = [](uv_handle_t* h) {
        auto* engine = static_cast<Engine*>(h->data);
        if (--engine->open_handles == 0) delete engine;
      };
      uv_close(reinterpret_cast<uv_handle_t*>(&e->mail), closed);
      uv_close(reinterpret_cast<uv_handle_t*>(&e->tick), closed);
    };
    e->owner = nullptr;
    uv_timer_stop(&e->tick);
    e->on_closed = finish;
    if (e->raft_started) {
      e->raft.data = e;
      raft_close(&e->raft, [](struct raft* r) {
        auto* engine = static_cast<Engine*>(r->data);
        raft_uv_close(&engine->io);
        CloseTransport(engine);
      });
    } else {
      CloseTransport(e);
    }
  }

  static void CloseTransport(Engine* e) {
    if (e->transport) {
      e->transport->Close([e] {
        e->transport.reset();
        e->on_closed();
      });
    } else {
      e->on_closed();
    }
  }

  ClusterOptions opts_;
  std::unique_ptr<Orchestrator> local_;
  std::string dir_;
  Identity identity_;
  std::string cluster_id_;
  std::atomic<bool> member_{false};
  std::atomic<bool> witness_{false};  // identity_.self.role == "witness", for any thread
  std::set<std::string> seed_revoked_;

  Mailbox mailbox_;
  std::mutex loop_mu_;
  bool running_ = false;
  bool closing_ = false;
  uv_loop_t own_loop_;
  std::thread own_thread_;
  std::unique_ptr<Engine> engine_;  // loop thread only
  std::mutex node_mu_;
  std::shared_ptr<ClusterNode> node_;  // engine_->node, for readers on other threads

  std::shared_ptr<ClusterNode> Node() {
    std::lock_guard<std::mutex> lock(node_mu_);
    return node_;
  }

  bool promote_pending_ = false, promote_in_flight_ = false, import_after_promote_ = false;
  TimeMs next_promote_ = 0, next_promote_warning_ = 0;
  size_t promote_tries_ = 0;
  bool fenced_ = true;           // as ClusterNode::Fenced() said at the last tick
  bool self_refreshed_ = false;  // sync thread: RefreshSelf found the record up to date
  bool majority_heard_ = false;  // loop: unfenced in a cluster at least once since Start
  bool cut_off_said_ = false;    // loop: "cut off" logged, "reaches again" not yet
  ContainerLease lease_;         // loop thread after Open
  TimeMs lease_renewed_ = 0;     // loop: Monotonic() of the last renewal asked; 0: never
  TimeMs lease_warned_ = 0;      // lease_pool_: when a failed write was last logged

  std::string summary_;  // loop thread
  TimeMs summary_at_ = 0;
  std::atomic<bool> summary_dirty_{true};  // set by the local Orchestrator's events
  SubscriptionId summary_sub_ = 0;
  bool summary_subscribed_ = false;

  WorkerPool sync_pool_;
  std::atomic<bool> sync_queued_{false};
  std::atomic<bool> sync_enabled_{false}, import_pending_{false};
  std::atomic<bool> exclusive_waiting_{false};  // ExclusiveMustWait held one back
  // Catching up (CatchUp): fences counted, the count the last barrier caught up with
  // (behind while they differ; from the start too), one barrier at a time.
  std::atomic<uint64_t> fence_epoch_{1}, caught_up_epoch_{0};
  std::atomic<bool> catch_up_wanted_{false};  // set by the sync thread, taken by the loop
  bool catch_up_in_flight_ = false;           // loop thread
  std::set<std::string> exclusive_told_;      // sync thread: waits logged
  uint64_t synced_index_ = 0;                 // sync thread only after Open
  // Writes the lease file (RenewLease); declared last, so destroyed first: a write in
  // flight ends before the members it uses go.
  std::atomic<bool> lease_writing_{false};  // a write is queued or running
  WorkerPool lease_pool_;
};

}  // namespace internal

Status Cluster::Open(const ClusterOptions& options, std::unique_ptr<Orchestrator> local,
                     std::unique_ptr<Cluster>* result) {
  if (!local) return Status::InvalidArgument("cluster: no local orchestrator");
  if (options.state_dir.empty()) return Status::InvalidArgument("cluster: state_dir is required");
  if (options.node_name.empty()) return Status::InvalidArgument("cluster: node_name is required");
  if (options.peer_listen.empty())
    return Status::InvalidArgument("cluster: peer_listen is required");
  if (!options.join.empty() && options.token.empty()) {
    return Status::InvalidArgument("cluster: joining needs the cluster's token (--token)");
  }
  auto impl = std::make_unique<internal::ClusterImpl>(options, std::move(local));
  PETREL_RETURN_IF_ERROR(impl->OpenFiles());
  *result = std::move(impl);
  return Status::OK();
}

}  // namespace petrel
