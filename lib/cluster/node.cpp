#include "lib/cluster/node.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "lib/cluster/schedule.h"
#include "lib/net/pki.h"
#include "lib/util/json.h"

namespace petrel::internal {

using nlohmann::json;

namespace {

constexpr int64_t kRetryMs = 50;            // between tries to reach a leader
constexpr int64_t kRelayTimeoutMs = 40000;  // a join waits for a catch-up and two commits
constexpr int64_t kLeaderWaitMs = 5000;     // a relay waits this long to learn the leader

bool SameSecret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); i++) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// At most this many members' ages are read from a heartbeat's answer.
constexpr size_t kMaxHeard = 256;

// What a peer sent, as JSON; discarded when it is not JSON or nests too deep.
json Parse(const std::string& text) {
  Result<json> j = internal::ParseJson(text, "peer message");
  return j.ok() ? std::move(*j) : json(json::value_t::discarded);
}

// raft_uv's decoder steps over each entry padded to 8 bytes but counts the payload
// unpadded: a buffer of another length is overrun. What petrel hands raft is JSON, so
// trailing blanks change nothing.
void PadForRaft(std::string* text) { text->append((8 - text->size() % 8) % 8, ' '); }

// The workloads a heartbeat summary ({"web":[...],...}) names with a replica.
std::set<std::string> Running(const std::string& summary) {
  std::set<std::string> names;
  json j = Parse(summary);
  if (!j.is_object()) return names;
  // A warm standby (created, not started) runs nothing.
  for (auto& [name, replicas] : j.items()) {
    if (!replicas.is_array()) continue;
    for (const json& r : replicas) {
      if (!r.is_object() || r.value("phase", "") != "Standby") {
        names.insert(name);
        break;
      }
    }
  }
  return names;
}

// The "heard" of a heartbeat's answer: member name -> ms since the peer heard it. What
// is not a name with an age of 0 or more is left out (an older petrel sends none).
std::map<std::string, int64_t> HeardOf(const json& answer) {
  std::map<std::string, int64_t> heard;
  if (!answer.is_object() || !answer.contains("heard") || !answer["heard"].is_object()) {
    return heard;
  }
  for (const auto& [name, age] : answer["heard"].items()) {
    if (heard.size() >= kMaxHeard) break;
    if (age.is_number_integer() && age.get<int64_t>() >= 0) heard[name] = age.get<int64_t>();
  }
  return heard;
}

}  // namespace

std::string ErrorReply(const Status& status, bool not_leader) {
  json j = {{"code", static_cast<int>(status.code())}, {"error", status.message()}};
  if (not_leader) j["notLeader"] = true;
  return j.dump();
}

bool IsNotLeader(const std::string& reply) {
  json j = Parse(reply);
  return j.is_object() && j.value("notLeader", false);
}

std::string JoinRequest(const std::string& secret, const NodeSelf& n, const std::string& csr) {
  json j = {{"op", "join"},   {"secret", secret},   {"name", n.name}, {"address", n.address},
            {"role", n.role}, {"labels", n.labels}, {"csr", csr}};
  if (n.id != 0) j["id"] = n.id;
  if (n.capacity_memory_bytes > 0) j["capacityMemory"] = n.capacity_memory_bytes;
  if (n.capacity_cpu_millis > 0) j["capacityCpuMillis"] = n.capacity_cpu_millis;
  return j.dump();
}

std::string PromoteRequest(uint64_t id) { return json{{"op", "promote"}, {"id", id}}.dump(); }

std::string RemoveRequest(const std::string& name) {
  return json{{"op", "remove"}, {"name", name}}.dump();
}

// A write this node waits to see applied.
struct ClusterNode::Waiter {
  std::string result;
  TimeMs deadline = 0;
  WriteDone done;
};

// A write forwarded to the leader, until it answers.
struct ClusterNode::Forward {
  uint64_t id = 0;
  std::string entry;
  TimeMs deadline = 0;
  WriteDone done;
};

ClusterNode::ClusterNode(NodeSelf self, PeerLink* link, Clock* clock, LogSink log)
    : self_(std::move(self)), link_(link), clock_(clock), log_(std::move(log)) {
  started_ = clock_->Monotonic();
  fsm_.version = 2;
  fsm_.data = this;
  fsm_.apply = &ClusterNode::FsmApply;
  fsm_.snapshot = &ClusterNode::FsmSnapshot;
  fsm_.restore = &ClusterNode::FsmRestore;
  fsm_.snapshot_finalize = &ClusterNode::FsmSnapshotFinalize;
}

ClusterNode::~ClusterNode() {
  // Whoever still waits hears that the node is going away.
  auto waiters = std::move(waiters_);
  for (auto& [index, w] : waiters) w->done(Status::Unavailable("cluster: node closing"), "");
  auto forwards = std::move(forwards_);
  for (auto& [id, f] : forwards) f->done(Status::Unavailable("cluster: node closing"), "");
}

int ClusterNode::FsmApply(raft_fsm* fsm, const raft_buffer* buf, void** result) {
  auto* n = static_cast<ClusterNode*>(fsm->data);
  const uint64_t index = raft_last_applied(n->raft_) + 1;
  std::string r;
  {
    std::lock_guard<std::mutex> lock(n->mu_);
    r = n->state_.Apply(index, std::string_view(static_cast<const char*>(buf->base), buf->len));
    if (n->fallback_ && n->state_.applied_index() >= n->fallback_->applied_index()) {
      n->fallback_.reset();  // caught up
    }
  }
  *result = nullptr;
  auto it = n->results_.find(index);
  if (it != n->results_.end()) it->second = r;
  // Writes that waited for this index (read your writes on this node).
  while (!n->waiters_.empty() && n->waiters_.begin()->first <= index) {
    std::shared_ptr<Waiter> w = n->waiters_.begin()->second;
    n->waiters_.erase(n->waiters_.begin());
    w->done(Status::OK(), w->result);
  }
  n->place_pending_ = true;
  if (n->on_applied_) n->on_applied_();
  return 0;
}

int ClusterNode::FsmSnapshot(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n_bufs) {
  auto* n = static_cast<ClusterNode*>(fsm->data);
  std::string snap;
  {
    std::lock_guard<std::mutex> lock(n->mu_);
    snap = n->state_.Snapshot();
  }
  PadForRaft(&snap);
  auto* b = static_cast<raft_buffer*>(raft_malloc(sizeof(raft_buffer)));
  if (b == nullptr) return RAFT_NOMEM;
  b->len = snap.size();
  b->base = raft_malloc(snap.size());
  if (b->base == nullptr) {
    raft_free(b);
    return RAFT_NOMEM;
  }
  std::memcpy(b->base, snap.data(), snap.size());
  *bufs = b;
  *n_bufs = 1;
  return 0;
}

int ClusterNode::FsmSnapshotFinalize(raft_fsm*, raft_buffer* bufs[], unsigned* n_bufs) {
  for (unsigned i = 0; i < *n_bufs; i++) raft_free((*bufs)[i].base);
  raft_free(*bufs);
  *bufs = nullptr;
  *n_bufs = 0;
  return 0;
}

int ClusterNode::FsmRestore(raft_fsm* fsm, raft_buffer* buf) {
  auto* n = static_cast<ClusterNode*>(fsm->data);
  Status s;
  {
    std::lock_guard<std::mutex> lock(n->mu_);
    s = n->state_.Restore(std::string_view(static_cast<const char*>(buf->base), buf->len));
  }
  raft_free(buf->base);  // ours now, as raft says
  if (!s.ok()) {
    if (n->log_) n->log_(LogLevel::kError, "cluster: " + s.message());
    return RAFT_CORRUPT;
  }
  n->restores_++;
  if (n->on_applied_) n->on_applied_();
  return 0;
}

Status ClusterNode::SetFallback(const std::string& snapshot) {
  auto fallback = std::make_unique<ClusterState>();
  PETREL_RETURN_IF_ERROR(fallback->Restore(snapshot));
  std::lock_guard<std::mutex> lock(mu_);
  fallback_ = std::move(fallback);
  return Status::OK();
}

bool ClusterNode::IsLeader() { return raft_ != nullptr && raft_state(raft_) == RAFT_LEADER; }

std::string ClusterNode::LeaderName() {
  if (raft_ == nullptr) return "";
  raft_id id = 0;
  const char* address = nullptr;
  raft_leader(raft_, &id, &address);
  if (id == 0) return "";
  std::lock_guard<std::mutex> lock(mu_);
  const ClusterMember* m = state_.MemberById(id);
  return m != nullptr ? m->name : (address != nullptr ? address : "");
}

void ClusterNode::Write(std::string entry, int64_t timeout_ms, WriteDone done) {
  auto f = std::make_shared<Forward>();
  f->id = next_forward_++;
  f->entry = std::move(entry);
  f->deadline = clock_->Monotonic() + timeout_ms;
  f->done = std::move(done);
  forwards_[f->id] = f;
  SendForward(f);
}

// Proposes here when this node leads, else sends to the leader; without a leader, or
// when the one asked is no longer it, tries again shortly, until the deadline.
void ClusterNode::SendForward(std::shared_ptr<Forward> f) {
  if (forwards_.find(f->id) == forwards_.end()) return;  // answered already
  const TimeMs now = clock_->Monotonic();
  if (now >= f->deadline) {
    forwards_.erase(f->id);
    return f->done(Status::Unavailable("cluster: no leader answered in time (is a majority "
                                       "of the members up and reachable?)"),
                   "");
  }
  if (IsLeader()) {
    Propose(std::move(f->entry), [this, f](Status s, uint64_t, std::string result) {
      forwards_.erase(f->id);
      f->done(s, std::move(result));  // the leader applied it before this callback
    });
    return;
  }
  raft_id id = 0;
  const char* address = nullptr;
  if (raft_ != nullptr) raft_leader(raft_, &id, &address);
  if (id == 0 || address == nullptr || id == raft_->id) {
    return Later(kRetryMs, [this, f] { SendForward(f); });
  }
  json request = {{"op", "write"}, {"entry", f->entry}};
  link_->Call(address, request.dump(), f->deadline - now,
              [this, f, leader = std::string(address)](Status s, std::string reply) {
                if (forwards_.find(f->id) == forwards_.end()) return;
                if (s.code() == Status::Code::kDeadlineExceeded) {
                  forwards_.erase(f->id);
                  return f->done(
                      Status::DeadlineExceeded("cluster: the leader " + leader +
                                               " did not answer in time; the change may or may not "
                                               "have been made"),
                      "");
                }
                if (!s.ok() || IsNotLeader(reply)) {
                  // Not delivered, or refused before proposing: safe to try again.
                  return Later(kRetryMs, [this, f] { SendForward(f); });
                }
                forwards_.erase(f->id);
                Status rs = ResultStatus(reply);
                if (!rs.ok()) return f->done(rs, "");
                json j = Parse(reply);
                if (!j.is_object() || !j.contains("index") || !j.contains("result") ||
                    !j["index"].is_number_unsigned() || !j["result"].is_string()) {
                  return f->done(Status::Corruption("cluster: unreadable reply from " + leader),
                                 "");
                }
                AwaitApplied(j["index"].get<uint64_t>(), j["result"].get<std::string>(),
                             f->deadline, f->done);
              });
}

void ClusterNode::Later(int64_t ms, std::function<void()> fn) {
  later_.emplace(clock_->Monotonic() + ms, std::move(fn));
}

void ClusterNode::AwaitApplied(uint64_t index, std::string result, TimeMs deadline,
                               WriteDone done) {
  bool applied;
  {
    std::lock_guard<std::mutex> lock(mu_);
    applied = state_.applied_index() >= index;
  }
  if (applied) return done(Status::OK(), std::move(result));
  auto w = std::make_shared<Waiter>();
  w->result = std::move(result);
  w->deadline = deadline;
  w->done = std::move(done);
  waiters_.emplace(index, std::move(w));
}

namespace {
struct ApplyReq {
  struct raft_apply req;
  std::function<void(Status, uint64_t, std::string)> done;
  std::map<uint64_t, std::string>* results;
};
}  // namespace

void ClusterNode::Propose(std::string entry, ProposeDone done) {
  PadForRaft(&entry);  // entries are never empty: every one is a JSON object
  raft_buffer buf;
  buf.len = entry.size();
  buf.base = raft_malloc(entry.size());
  if (buf.base == nullptr) return done(Status::Unavailable("cluster: out of memory"), 0, "");
  std::memcpy(buf.base, entry.data(), entry.size());
  auto* r = new ApplyReq{};
  r->req.data = r;
  r->done = std::move(done);
  r->results = &results_;
  int rv = raft_apply(raft_, &r->req, &buf, 1, [](struct raft_apply* req, int status, void*) {
    auto* a = static_cast<ApplyReq*>(req->data);
    std::string result;
    auto it = a->results->find(req->index);
    if (it != a->results->end()) {
      result = std::move(it->second);
      a->results->erase(it);
    }
    const uint64_t index = req->index;
    auto then = std::move(a->done);
    delete a;
    if (status != 0) {
      return then(
          Status::Unavailable(std::string("cluster: not committed: ") + raft_strerror(status)),
          index, "");
    }
    Status s = ResultStatus(result);  // before the move below: argument order is unspecified
    then(std::move(s), index, std::move(result));
  });
  if (rv != 0) {
    raft_free(buf.base);
    auto d = std::move(r->done);
    delete r;
    return d(Status::Unavailable(std::string("cluster: cannot propose: ") + raft_strerror(rv)), 0,
             "");
  }
  results_[r->req.index] = "";
}

void ClusterNode::Tick() {
  const TimeMs now = clock_->Monotonic();
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->second->deadline > now) {
      ++it;
      continue;
    }
    std::shared_ptr<Waiter> w = it->second;
    it = waiters_.erase(it);
    w->done(Status::DeadlineExceeded("cluster: committed, but not yet applied on this node"), "");
  }
  while (!later_.empty() && later_.begin()->first <= now) {
    std::function<void()> fn = std::move(later_.begin()->second);
    later_.erase(later_.begin());
    fn();
  }
  if (raft_ == nullptr) return;
  if (now >= next_heartbeat_) Heartbeat(now);
  if (IsLeader()) Place();
}

// A round trip to every other member: what it answers (its replicas' summary) and
// when, so any node knows who is up, and a leader elected later knows it at once.
void ClusterNode::Heartbeat(TimeMs now) {
  ClusterSettings settings;
  std::vector<std::pair<std::string, std::string>> others;
  WithState([&](const ClusterState& s) {
    settings = s.settings();
    for (const auto& [name, m] : s.members()) {
      if (name != self_.name) others.emplace_back(name, m.address);
    }
    return 0;
  });
  next_heartbeat_ = now + settings.heartbeat_ms;
  if (others.empty()) return;
  const std::string ping =
      json{{"op", "ping"}, {"from", self_.name}, {"summary", summary_ ? summary_() : "{}"}}.dump();
  for (const auto& [name, address] : others) {
    if (!pings_in_flight_.insert(name).second) continue;
    link_->Call(address, ping, settings.node_lost_after_ms,
                [this, name = name](Status s, std::string reply) {
                  pings_in_flight_.erase(name);
                  if (!s.ok()) return;
                  json j = Parse(reply);
                  std::lock_guard<std::mutex> lock(peers_mu_);
                  Peer& p = peers_[name];
                  p.last_heard = clock_->Monotonic();
                  p.heard = HeardOf(j);
                  if (j.is_object() && j.contains("summary") && j["summary"].is_string()) {
                    KeepSummaryLocked(name, j["summary"].get<std::string>());
                  }
                });
  }
}

void ClusterNode::KeepSummaryLocked(const std::string& node, std::string summary) {
  Peer& p = peers_[node];
  if (p.summary == summary) return;
  p.running = Running(summary);
  p.summary = std::move(summary);
}

std::map<std::string, ClusterNode::Peer> ClusterNode::Peers() {
  std::lock_guard<std::mutex> lock(peers_mu_);
  return peers_;
}

std::map<std::string, std::string> ClusterNode::Unplaced() {
  std::lock_guard<std::mutex> lock(peers_mu_);
  return unplaced_;
}

namespace {
// How long after its start a node counts a peer it has not heard yet as up.
constexpr int64_t kStartGraceMs = 5000;
}  // namespace

bool ClusterNode::Ready(const std::string& name) {
  if (name == self_.name) return true;
  const TimeMs now = clock_->Monotonic();
  int64_t lost_after = 0, fence_after = 0;
  WithState([&](const ClusterState& s) {
    lost_after = s.settings().node_lost_after_ms;
    fence_after = s.settings().fence_after_ms;
    return 0;
  });
  std::lock_guard<std::mutex> lock(peers_mu_);
  auto it = peers_.find(name);
  if (it != peers_.end() && it->second.last_heard != 0 &&
      now - it->second.last_heard <= lost_after) {
    return true;
  }
  for (const auto& [other, p] : peers_) {
    if (other == name || p.last_heard == 0 || now - p.last_heard > fence_after) continue;
    auto h = p.heard.find(name);
    if (h != p.heard.end() && h->second + (now - p.last_heard) <= lost_after) return true;
  }
  if (it != peers_.end() && it->second.last_heard != 0) return false;
  // Not heard since this node started: it may not have had the time to. Peers
  // restarted together come up one after another (a power cut of the whole site), and
  // the first up must not move the others' replicas for starting later.
  return now - started_ <= std::max<int64_t>(lost_after, kStartGraceMs);
}

bool ClusterNode::Fenced() {
  int64_t fence_after = 0;
  std::vector<std::string> members;
  WithState([&](const ClusterState& s) {
    fence_after = s.settings().fence_after_ms;
    for (const auto& [name, m] : s.members()) members.push_back(name);
    return 0;
  });
  if (members.empty()) return false;  // not in a cluster (yet): nothing to fence
  const TimeMs now = clock_->Monotonic();
  size_t heard = 0;
  std::lock_guard<std::mutex> lock(peers_mu_);
  for (const std::string& name : members) {
    if (name == self_.name) {
      heard++;
      continue;
    }
    auto it = peers_.find(name);
    if (it != peers_.end() && it->second.last_heard != 0 &&
        now - it->second.last_heard <= fence_after) {
      heard++;
    }
  }
  return heard < members.size() / 2 + 1;
}

bool ClusterNode::RunsElsewhere(const std::string& workload) {
  int64_t fence_after = 0, lost_after = 0;
  std::vector<std::string> others;
  WithState([&](const ClusterState& s) {
    fence_after = s.settings().fence_after_ms;
    lost_after = s.settings().node_lost_after_ms;
    for (const auto& [name, m] : s.members()) {
      if (name != self_.name) others.push_back(name);
    }
    return 0;
  });
  const TimeMs now = clock_->Monotonic();
  std::lock_guard<std::mutex> lock(peers_mu_);
  for (const std::string& name : others) {
    auto it = peers_.find(name);
    if (it == peers_.end() || it->second.last_heard == 0) {
      // Not had the time to hear it yet (see Ready).
      if (now - started_ <= std::max<int64_t>(lost_after, kStartGraceMs)) return true;
      continue;
    }
    if (now - it->second.last_heard <= fence_after && it->second.running.count(workload)) {
      return true;
    }
  }
  return false;
}

// On the leader: places what is unplaced or on a node that is gone, through raft.
void ClusterNode::Place() {
  if (placing_) return;
  std::vector<NodeView> nodes;
  bool initialized = false;
  WithState([&](const ClusterState& s) {
    initialized = s.initialized();
    for (const auto& [name, m] : s.members()) {
      NodeView v;
      v.name = name;
      v.draining = m.draining;
      v.witness = m.role == "witness";
      v.labels = m.labels;
      v.capacity_memory_bytes = m.capacity_memory_bytes;
      v.capacity_cpu_millis = m.capacity_cpu_millis;
      nodes.push_back(std::move(v));
    }
    return 0;
  });
  if (!initialized) return;
  // Who is up and what each says it runs (for exclusive workloads): read every tick,
  // so it must stay cheap; the workloads are copied and placed only when this or the
  // state changed.
  if (summary_) {
    std::string mine = summary_();
    if (mine != self_summary_) {
      self_running_ = Running(mine);
      self_summary_ = std::move(mine);
    }
  }
  std::map<std::string, std::pair<bool, std::set<std::string>>> view;
  for (NodeView& v : nodes) {
    v.ready = Ready(v.name);
    if (v.name == self_.name) {
      v.running = self_running_;
    } else {
      std::lock_guard<std::mutex> lock(peers_mu_);
      auto it = peers_.find(v.name);
      if (it != peers_.end()) v.running = it->second.running;
    }
    view[v.name] = {v.ready, v.running};
  }
  if (!place_pending_ && view == last_view_) return;
  last_view_ = std::move(view);
  const std::map<std::string, ClusterWorkload> workloads =
      WithState([](const ClusterState& s) { return s.workloads(); });
  Placement placement = Schedule(workloads, nodes);
  {
    std::lock_guard<std::mutex> lock(peers_mu_);
    unplaced_ = placement.unplaced;
  }
  place_pending_ = false;
  if (placement.changes.empty() && placement.standby_changes.empty()) return;
  for (const auto& [name, to] : placement.changes) {
    std::string where;
    for (const std::string& n : to) where += (where.empty() ? "" : ",") + (n.empty() ? "-" : n);
    if (log_) log_(LogLevel::kInfo, "cluster: placing workload " + name + " on " + where);
  }
  placing_ = true;
  for (const auto& [name, to] : placement.standby_changes) {
    if (log_) {
      log_(LogLevel::kInfo,
           "cluster: warm standby of workload " + name + ": " + (to.empty() ? "none" : "on " + to));
    }
  }
  Propose(AssignEntry(placement.changes, placement.standby_changes),
          [this](Status s, uint64_t, std::string) {
            placing_ = false;
            if (!s.ok() && log_) log_(LogLevel::kWarn, "cluster: placing replicas: " + s.message());
          });
}

// A membership change (raft_add, raft_assign or raft_remove), retried while another
// change is still in flight.
void ClusterNode::Change(ChangeKind kind, uint64_t id, std::string address, int role,
                         TimeMs deadline, std::function<void(Status)> done) {
  struct Req {
    raft_change req;
    std::function<void(Status)> done;
  };
  auto* r = new Req{};
  r->req.data = r;
  r->done = done;
  auto cb = [](raft_change* req, int status) {
    auto* c = static_cast<Req*>(req->data);
    auto d = std::move(c->done);
    delete c;
    d(status == 0 ? Status::OK()
                  : Status::Unavailable(std::string("cluster: membership change: ") +
                                        raft_strerror(status)));
  };
  int rv = kind == ChangeKind::kAdd      ? raft_add(raft_, &r->req, id, address.c_str(), cb)
           : kind == ChangeKind::kAssign ? raft_assign(raft_, &r->req, id, role, cb)
                                         : raft_remove(raft_, &r->req, id, cb);
  if (rv == 0) return;
  delete r;
  if (kind == ChangeKind::kAssign && rv == RAFT_BADROLE)
    return done(Status::OK());  // it has that role already
  if (rv == RAFT_CANTCHANGE && clock_->Monotonic() < deadline) {
    // Another change is still being committed.
    return Later(kRetryMs, [=] { Change(kind, id, address, role, deadline, done); });
  }
  done(Status::Unavailable(
      std::string("cluster: membership change: ") + raft_strerror(rv) +
      (raft_errmsg(raft_) ? std::string(" (") + raft_errmsg(raft_) + ")" : std::string())));
}

void ClusterNode::HandleRequest(const std::string& from, std::string request, Reply reply) {
  json j = Parse(request);
  if (!j.is_object() || !j.contains("op") || !j["op"].is_string()) {
    return reply(ErrorReply(Status::InvalidArgument("cluster: unreadable request from " + from)));
  }
  const std::string op = j["op"].get<std::string>();
  if (op == "ping") {
    // Any member answers; what the sender says of its replicas is kept too.
    if (j.contains("summary") && j["summary"].is_string() && j.contains("from") &&
        j["from"].is_string()) {
      std::lock_guard<std::mutex> lock(peers_mu_);
      KeepSummaryLocked(j["from"].get<std::string>(), j["summary"].get<std::string>());
    }
    json answer = {{"name", self_.name}, {"summary", summary_ ? summary_() : "{}"}};
    json heard = json::object();
    const TimeMs now = clock_->Monotonic();
    {
      std::lock_guard<std::mutex> lock(peers_mu_);
      for (const auto& [name, p] : peers_) {
        if (p.last_heard != 0) heard[name] = now - p.last_heard;
      }
    }
    answer["heard"] = std::move(heard);
    return reply(answer.dump());
  }
  if (!IsLeader()) {
    raft_id id = 0;
    const char* address = nullptr;
    if (raft_ != nullptr) raft_leader(raft_, &id, &address);
    // Joins, promotions and removals are passed on to the leader, whose answer goes
    // back as it is (a newcomer knows only the member it was told about). Writes are
    // refused: their sender asks the leader itself.
    if (op != "write" && id != 0 && address != nullptr && id != raft_->id) {
      link_->Call(address, std::move(request), kRelayTimeoutMs,
                  [reply](Status s, std::string r) { reply(s.ok() ? r : ErrorReply(s)); });
      return;
    }
    // A member that just joined, or one in an election, learns the leader shortly.
    const TimeMs now = clock_->Monotonic();
    const TimeMs deadline = j.contains("until") && j["until"].is_number_integer()
                                ? j["until"].get<int64_t>()
                                : now + kLeaderWaitMs;
    if (op != "write" && now < deadline) {
      j["until"] = deadline;
      return Later(kRetryMs, [this, from, request = j.dump(), reply]() mutable {
        HandleRequest(from, std::move(request), std::move(reply));
      });
    }
    return reply(ErrorReply(Status::Unavailable("cluster: " + self_.name + " is not the leader" +
                                                (id == 0 ? " and knows none now" : "")),
                            /*not_leader=*/true));
  }
  if (op == "write") {
    if (!j.contains("entry") || !j["entry"].is_string()) {
      return reply(ErrorReply(Status::InvalidArgument("cluster: write without an entry")));
    }
    // The leader answers once the entry is applied here; the index lets the sender
    // wait until it is applied there too.
    Propose(j["entry"].get<std::string>(), [reply](Status s, uint64_t index, std::string result) {
      // An entry whose own result is an error was still committed: its index matters.
      if (!s.ok() && index == 0) return reply(ErrorReply(s));
      reply(json{{"index", index}, {"result", result}}.dump());
    });
    return;
  }
  if (op == "join") return LeaderJoin(std::move(request), std::move(reply));
  if (op == "promote") {
    const uint64_t id = j.value("id", uint64_t{0});
    const TimeMs deadline = clock_->Monotonic() + 30000;
    return Change(ChangeKind::kAssign, id, "", RAFT_VOTER, deadline,
                  [reply](Status s) { reply(s.ok() ? "{}" : ErrorReply(s)); });
  }
  if (op == "remove") {
    const std::string name = j.value("name", "");
    uint64_t id = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const ClusterMember* m = state_.MemberByName(name);
      if (m == nullptr) return reply(ErrorReply(Status::NotFound("no node named " + name)));
      id = m->id;
    }
    if (id == raft_->id) {
      // The leader removes itself: it hands leadership over first, then the request
      // goes to the new leader like any other.
      struct Req {
        struct raft_transfer req;
        std::function<void()> next;
      };
      auto* t = new Req{};
      t->req.data = t;
      t->next = [this, from, request, reply]() mutable {
        HandleRequest(from, std::move(request), std::move(reply));
      };
      int rv = raft_transfer(raft_, &t->req, 0, [](struct raft_transfer* req) {
        auto* transfer = static_cast<Req*>(req->data);
        auto next = std::move(transfer->next);
        delete transfer;
        next();
      });
      if (rv != 0) {
        delete t;
        return reply(ErrorReply(Status::FailedPrecondition(
            std::string("cluster: cannot remove the leader ") + name + ": " + raft_strerror(rv) +
            " (no other voter to hand leadership to)")));
      }
      return;
    }
    const TimeMs deadline = clock_->Monotonic() + 30000;
    // Revoked first, so its certificate is refused before it leaves the configuration.
    Propose(RemoveEntry(name), [this, id, deadline, reply](Status s, uint64_t, std::string) {
      if (!s.ok()) return reply(ErrorReply(s));
      Change(ChangeKind::kRemove, id, "", 0, deadline,
             [reply](Status changed) { reply(changed.ok() ? "{}" : ErrorReply(changed)); });
    });
    return;
  }
  reply(
      ErrorReply(Status::InvalidArgument("cluster: unknown request \"" + op + "\" from " + from)));
}

void ClusterNode::LeaderJoin(std::string request, Reply reply) {
  json j = Parse(request);
  auto field = [&](const char* key) {
    return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
  };
  const std::string name = field("name"), address = field("address"), csr = field("csr");
  const std::string role = field("role").empty() ? "voter" : field("role");
  std::string secret = field("secret");
  ClusterMember m;
  CertAndKey ca;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!SameSecret(secret, state_.token_secret())) {
      return reply(ErrorReply(Status::PermissionDenied("join of " + name + ": wrong token")));
    }
    if (state_.MemberByName(name) != nullptr) {
      return reply(ErrorReply(Status::AlreadyExists("join: a node named " + name +
                                                    " is already a member (remove it first)")));
    }
    ca.cert_pem = state_.ca_cert();
    ca.key_pem = state_.ca_key();
  }
  if (name.empty() || address.empty() || (role != "voter" && role != "witness")) {
    return reply(ErrorReply(Status::InvalidArgument("join: name, address and role are required")));
  }
  Result<std::string> cert = SignCsr(ca, csr, name, clock_->Now());
  if (!cert.ok()) return reply(ErrorReply(cert.status().WithContext("join of " + name)));
  Result<std::string> fingerprint = CertFingerprint(*cert);
  if (!fingerprint.ok()) return reply(ErrorReply(fingerprint.status()));
  m.name = name;
  m.address = address;
  m.role = role;
  m.fingerprint = *fingerprint;
  m.joined_at = clock_->Now();
  // The newcomer may bring its id (the test fixture's servers have fixed ones).
  m.id = j.contains("id") && j["id"].is_number_unsigned() ? j["id"].get<uint64_t>() : 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (m.id != 0 && state_.MemberById(m.id) != nullptr) {
      return reply(
          ErrorReply(Status::AlreadyExists("join: raft id " + std::to_string(m.id) + " is taken")));
    }
  }
  while (m.id == 0) m.id = clock_->Random() >> 1;
  auto positive = [&](const char* key) {
    return j.contains(key) && j[key].is_number_integer() && j[key].get<int64_t>() > 0
               ? j[key].get<int64_t>()
               : int64_t{0};
  };
  m.capacity_memory_bytes = positive("capacityMemory");
  m.capacity_cpu_millis = positive("capacityCpuMillis");
  if (j.contains("labels") && j["labels"].is_object()) {
    for (auto& [k, v] : j["labels"].items()) {
      if (v.is_string()) m.labels[k] = v.get<std::string>();
    }
  }
  const TimeMs deadline = clock_->Monotonic() + 30000;
  Propose(MemberEntry(m), [this, m, cert = *cert, deadline, reply](Status s, uint64_t,
                                                                   std::string) {
    if (!s.ok()) return reply(ErrorReply(s));
    Change(ChangeKind::kAdd, m.id, m.address, 0, deadline, [this, m, cert, reply](Status added) {
      if (!added.ok()) return reply(ErrorReply(added));
      json members = json::array();
      std::string ca_cert;
      std::vector<std::string> revoked;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& [n, mm] : state_.members()) {
          members.push_back({{"name", mm.name}, {"id", mm.id}, {"address", mm.address}});
        }
        ca_cert = state_.ca_cert();
        revoked.assign(state_.revoked().begin(), state_.revoked().end());
      }
      reply(json{{"id", m.id},
                 {"cert", cert},
                 {"caCert", ca_cert},
                 {"revoked", revoked},
                 {"members", members}}
                .dump());
    });
  });
}

}  // namespace petrel::internal
