#include "petrel/testing/cluster_fixture.h"

extern "C" {  // raft.h declares its functions without extern "C"
#include <raft.h>
#include <raft/fixture.h>
}

#include <algorithm>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "lib/cluster/node.h"
#include "lib/cluster/state.h"
#include "lib/net/pki.h"

namespace petrel::testing {

using internal::ClusterMember;
using internal::ClusterNode;
using internal::ClusterState;
using internal::NodeSelf;
using internal::PeerLink;

namespace {

constexpr int64_t kLatencyMs = 1;
constexpr int64_t kTickMs = 50;
const TimeMs kEpoch = 1800000000000;  // the fixture's wall clock starts here

// Time and randomness from the fixture.
class FixtureClock final : public Clock {
 public:
  explicit FixtureClock(raft_fixture* f) : f_(f) {}
  TimeMs Now() override { return kEpoch + static_cast<TimeMs>(raft_fixture_time(f_)); }
  TimeMs Monotonic() override { return static_cast<TimeMs>(raft_fixture_time(f_)); }
  uint64_t Random() override {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return state_;
  }

 private:
  raft_fixture* f_;
  uint64_t state_ = 42;
};

}  // namespace

struct ClusterFixture::Impl {
  // A request or a reply on its way.
  struct Message {
    TimeMs at = 0;
    int from = 0, to = 0;
    std::function<void()> deliver;  // runs when it arrives
  };
  // A call waiting for its reply.
  struct Pending {
    TimeMs deadline = 0;
    PeerLink::Done done;
  };
  // Node i's way out.
  class Link final : public PeerLink {
   public:
    Link(Impl* impl, int self) : impl_(impl), self_(self) {}
    void Call(const std::string& address, std::string request, int64_t timeout_ms,
              Done done) override {
      impl_->Send(self_, std::atoi(address.c_str()) - 1, std::move(request), timeout_ms,
                  std::move(done));
    }

   private:
    Impl* impl_;
    int self_;
  };

  raft_fixture f{};
  FixtureClock clock{&f};
  std::vector<std::unique_ptr<Link>> links;
  std::vector<std::unique_ptr<ClusterNode>> nodes;
  std::set<std::pair<int, int>> cut;  // (i, j) with i < j
  std::deque<Message> wire;
  std::map<uint64_t, Pending> pending;
  uint64_t next_call = 1;
  TimeMs next_tick = 0;
  bool initialized = false;
  unsigned snapshot_threshold = 16;
  internal::CertAndKey ca;
  std::string secret = "fixture-secret-0123456789abcdef";

  bool Connected(int i, int j) const { return cut.count({std::min(i, j), std::max(i, j)}) == 0; }
  bool Alive(int i) const { return raft_fixture_alive(const_cast<raft_fixture*>(&f), i); }

  void Send(int from, int to, std::string request, int64_t timeout_ms, PeerLink::Done done) {
    if (to < 0 || to >= static_cast<int>(nodes.size())) {
      return done(Status::Unavailable("fixture: no such node"), "");
    }
    const uint64_t id = next_call++;
    pending[id] = Pending{clock.Monotonic() + timeout_ms, std::move(done)};
    Message m;
    m.at = clock.Monotonic() + kLatencyMs;
    m.from = from;
    m.to = to;
    m.deliver = [this, id, from, to, request = std::move(request)]() mutable {
      if (!Alive(to)) return Finish(id, Status::Unavailable("fixture: connection refused"), "");
      nodes[to]->HandleRequest("node" + std::to_string(from), std::move(request),
                               [this, id, from, to](std::string reply) {
                                 Message r;
                                 r.at = clock.Monotonic() + kLatencyMs;
                                 r.from = to;
                                 r.to = from;
                                 r.deliver = [this, id, reply] { Finish(id, Status::OK(), reply); };
                                 wire.push_back(std::move(r));
                               });
    };
    wire.push_back(std::move(m));
  }

  void Finish(uint64_t id, Status s, std::string reply) {
    auto it = pending.find(id);
    if (it == pending.end()) return;
    PeerLink::Done done = std::move(it->second.done);
    pending.erase(it);
    done(std::move(s), std::move(reply));
  }

  // Delivers what is due (dropped on a cut link or to a dead node: the caller times out),
  // expires calls, and runs the nodes' timers.
  void Pump() {
    const TimeMs now = clock.Monotonic();
    std::deque<Message> later;
    while (!wire.empty()) {
      Message m = std::move(wire.front());
      wire.pop_front();
      if (m.at > now) {
        later.push_back(std::move(m));
        continue;
      }
      if (!Connected(m.from, m.to) || !Alive(m.from)) continue;  // lost on the way
      m.deliver();
    }
    for (Message& m : later) wire.push_back(std::move(m));
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.deadline > now) {
        ++it;
        continue;
      }
      PeerLink::Done done = std::move(it->second.done);
      it = pending.erase(it);
      done(Status::DeadlineExceeded("fixture: no reply in time"), "");
    }
    if (now >= next_tick) {
      next_tick = now + kTickMs;
      for (size_t i = 0; i < nodes.size(); i++) {
        if (Alive(static_cast<int>(i))) nodes[i]->Tick();
      }
    }
  }

  void Run(int64_t ms) {
    const raft_time until = raft_fixture_time(&f) + static_cast<raft_time>(ms);
    while (raft_fixture_time(&f) < until) {
      raft_fixture_step(&f);
      Pump();
    }
  }

  // Runs until `done` is true or `max_ms` passes.
  bool RunUntil(const std::function<bool()>& done, int64_t max_ms) {
    const raft_time until = raft_fixture_time(&f) + static_cast<raft_time>(max_ms);
    while (!done()) {
      if (raft_fixture_time(&f) >= until) return false;
      raft_fixture_step(&f);
      Pump();
    }
    return true;
  }

  int Leader() const {
    int leader = -1;
    raft_term term = 0;
    for (size_t i = 0; i < nodes.size(); i++) {
      struct raft* r = raft_fixture_get(const_cast<raft_fixture*>(&f), static_cast<unsigned>(i));
      if (Alive(static_cast<int>(i)) && raft_state(r) == RAFT_LEADER && r->current_term >= term) {
        leader = static_cast<int>(i);
        term = r->current_term;
      }
    }
    return leader;
  }

  std::unique_ptr<ClusterNode> MakeNode(int i, const std::string& role) {
    NodeSelf self;
    self.name = "node" + std::to_string(i);
    self.id = static_cast<uint64_t>(i + 1);
    self.address = std::to_string(i + 1);  // raft_fixture's addresses
    self.role = role;
    links.push_back(std::make_unique<Link>(this, i));
    auto node = std::make_unique<ClusterNode>(self, links.back().get(), &clock, nullptr);
    // As a real node's heartbeats say: what it runs (one entry per replica placed on
    // it by its own replica's word; exclusive ones only while not fenced).
    ClusterNode* n = node.get();
    node->SetSummary([n] {
      nlohmann::json out = nlohmann::json::object();
      for (const std::string& w : Running(n))
        out[w] = nlohmann::json::array({{{"phase", "Running"}}});
      return out.dump();
    });
    return node;
  }

  // The workloads node `n` runs: those with a replica placed on it, by its own replica's
  // word, the exclusive ones only while it is not fenced.
  static std::set<std::string> Running(ClusterNode* n) {
    const bool fenced = n->Fenced();
    return n->WithState([&](const ClusterState& s) {
      std::set<std::string> out;
      for (const auto& [name, w] : s.workloads()) {
        if (std::find(w.assigned.begin(), w.assigned.end(), n->self().name) == w.assigned.end()) {
          continue;
        }
        Result<WorkloadSpec> spec = SpecFromJson(w.spec_json);
        if (spec.ok() && spec->exclusive && fenced) continue;
        out.insert(name);
      }
      return out;
    });
  }

  void Configure(int i) {
    struct raft* r = raft_fixture_get(&f, static_cast<unsigned>(i));
    raft_set_pre_vote(r, true);
    raft_set_snapshot_threshold(r, snapshot_threshold);
    raft_set_snapshot_trailing(r, snapshot_threshold / 2);
    nodes[i]->SetRaft(r);
  }

  // A request from node `from` to node `to`, run until answered; the reply, or its error.
  Result<std::string> Request(int from, int to, std::string request, int64_t max_ms) {
    bool answered = false;
    Status status;
    std::string reply;
    Send(from, to, std::move(request), max_ms, [&](Status s, std::string got) {
      answered = true;
      status = std::move(s);
      reply = std::move(got);
    });
    if (!RunUntil([&] { return answered; }, max_ms + 1000)) {
      return Status::DeadlineExceeded("fixture: no answer");
    }
    if (status.ok()) status = internal::ResultStatus(reply);
    if (!status.ok()) return status;
    return reply;
  }

  // Writes through node i and runs until answered.
  Result<std::string> Write(int i, std::string entry, int64_t max_ms) {
    bool answered = false;
    Status status;
    std::string result;
    nodes[i]->Write(std::move(entry), max_ms, [&](Status s, std::string r) {
      answered = true;
      status = std::move(s);
      result = std::move(r);
    });
    if (!RunUntil([&] { return answered; }, max_ms + 1000)) {
      return Status::DeadlineExceeded("fixture: write not answered");
    }
    if (status.ok()) status = internal::ResultStatus(result);
    if (!status.ok()) return status;
    return result;
  }

  // Once a leader exists: the cluster's identity and its first members.
  Status Initialize() {
    int leader = Leader();
    PETREL_ASSIGN_OR_RETURN(ca, internal::CreateCa("fixture", clock.Now()));
    PETREL_RETURN_IF_ERROR(
        Write(leader, internal::InitEntry("fixture", ca.cert_pem, ca.key_pem, secret, {}), 10000)
            .status());
    for (size_t i = 0; i < nodes.size(); i++) {
      ClusterMember m;
      m.name = nodes[i]->self().name;
      m.id = nodes[i]->self().id;
      m.address = nodes[i]->self().address;
      m.role = nodes[i]->self().role;
      m.fingerprint = "fixture-" + m.name;
      m.joined_at = clock.Now();
      PETREL_RETURN_IF_ERROR(Write(leader, internal::MemberEntry(m), 10000).status());
    }
    initialized = true;
    return Status::OK();
  }
};

ClusterFixture::ClusterFixture(int voters, unsigned snapshot_threshold) : impl_(new Impl) {
  Impl& m = *impl_;
  m.snapshot_threshold = snapshot_threshold;
  raft_fixture_initialize(&m.f);
  for (int i = 0; i < voters; i++) {
    m.nodes.push_back(m.MakeNode(i, "voter"));
    raft_fixture_grow(&m.f, m.nodes.back()->fsm());
    m.Configure(i);
  }
  raft_configuration conf;
  raft_fixture_configuration(&m.f, static_cast<unsigned>(voters), &conf);
  raft_fixture_bootstrap(&m.f, &conf);
  raft_configuration_close(&conf);
  raft_fixture_start(&m.f);
}

ClusterFixture::~ClusterFixture() {
  // Calls still waiting end now, before the nodes go.
  auto pending = std::move(impl_->pending);
  for (auto& [id, p] : pending) p.done(Status::Unavailable("fixture: closing"), "");
  impl_->wire.clear();
  raft_fixture_close(&impl_->f);
  impl_->nodes.clear();
}

int ClusterFixture::size() const { return static_cast<int>(impl_->nodes.size()); }
int64_t ClusterFixture::now() const { return impl_->clock.Monotonic(); }
void ClusterFixture::Run(int64_t ms) { impl_->Run(ms); }
int ClusterFixture::Leader() const { return impl_->Leader(); }
bool ClusterFixture::alive(int i) const { return impl_->Alive(i); }

int ClusterFixture::StepUntilLeader(int64_t max_ms) {
  if (!impl_->RunUntil([&] { return impl_->Leader() >= 0; }, max_ms)) return -1;
  if (!impl_->initialized && !impl_->Initialize().ok()) return -1;
  return impl_->Leader();
}

void ClusterFixture::Kill(int i) { raft_fixture_kill(&impl_->f, static_cast<unsigned>(i)); }

void ClusterFixture::Revive(int i) {
  raft_fixture_revive(&impl_->f, static_cast<unsigned>(i));
  for (const auto& [a, b] : impl_->cut) {  // revive reconnects everything: cut again
    raft_fixture_disconnect(&impl_->f, a, b);
    raft_fixture_disconnect(&impl_->f, b, a);
  }
}

void ClusterFixture::Cut(int i, int j) {
  impl_->cut.insert({std::min(i, j), std::max(i, j)});
  raft_fixture_disconnect(&impl_->f, i, j);
  raft_fixture_disconnect(&impl_->f, j, i);
}

void ClusterFixture::Heal(int i, int j) {
  impl_->cut.erase({std::min(i, j), std::max(i, j)});
  if (alive(i) && alive(j)) {
    raft_fixture_reconnect(&impl_->f, i, j);
    raft_fixture_reconnect(&impl_->f, j, i);
  }
}

void ClusterFixture::Isolate(int i) {
  for (int j = 0; j < size(); j++) {
    if (j != i) Cut(i, j);
  }
}

void ClusterFixture::Reconnect(int i) {
  for (int j = 0; j < size(); j++) {
    if (j != i) Heal(i, j);
  }
}

Status ClusterFixture::Apply(int i, const std::vector<WorkloadSpec>& specs, int64_t max_ms) {
  return impl_
      ->Write(i, internal::PutEntry(specs, impl_->nodes[i]->self().name, impl_->clock.Now()),
              max_ms)
      .status();
}

Status ClusterFixture::Delete(int i, const std::string& name, int64_t max_ms) {
  return impl_->Write(i, internal::DeleteEntry(name), max_ms).status();
}

Result<int> ClusterFixture::Join(int via, int64_t max_ms, const std::string& secret_override) {
  Impl& m = *impl_;
  const int i = size();
  m.nodes.push_back(m.MakeNode(i, "voter"));
  if (int rv = raft_fixture_grow(&m.f, m.nodes.back()->fsm()); rv != 0) {
    return Status::Internal(std::string("fixture: grow: ") + raft_strerror(rv));
  }
  m.Configure(i);
  for (const auto& [a, b] : m.cut) {
    raft_fixture_disconnect(&m.f, a, b);
    raft_fixture_disconnect(&m.f, b, a);
  }
  struct raft* r = raft_fixture_get(&m.f, static_cast<unsigned>(i));
  if (int rv = raft_start(r); rv != 0) {
    return Status::Internal(std::string("fixture: raft_start: ") + raft_strerror(rv));
  }
  PETREL_ASSIGN_OR_RETURN(internal::KeyAndCsr kc,
                          internal::CreateKeyAndCsr(m.nodes[i]->self().name));
  const std::string secret = secret_override.empty() ? m.secret : secret_override;
  // The join and the promotion, as a newcomer sends them to the member it knows.
  auto call = [&](std::string request) { return m.Request(i, via, std::move(request), max_ms); };
  PETREL_RETURN_IF_ERROR(
      call(internal::JoinRequest(secret, m.nodes[i]->self(), kc.csr_pem)).status());
  PETREL_RETURN_IF_ERROR(call(internal::PromoteRequest(m.nodes[i]->self().id)).status());
  return i;
}

Status ClusterFixture::Remove(int via, int target, int64_t max_ms) {
  Impl& m = *impl_;
  // As the facade does: to the leader, through `via` when it does not lead.
  int leader = m.Leader();
  if (leader < 0) return Status::Unavailable("fixture: no leader");
  return m.Request(via, leader, internal::RemoveRequest(m.nodes[target]->self().name), max_ms)
      .status();
}

Status ClusterFixture::Drain(int via, int target, bool drain, int64_t max_ms) {
  return impl_->Write(via, internal::DrainEntry(impl_->nodes[target]->self().name, drain), max_ms)
      .status();
}

Status ClusterFixture::Label(int target, const std::map<std::string, std::string>& labels,
                             int64_t max_ms) {
  Impl& m = *impl_;
  ClusterMember member;
  const std::string name = m.nodes[target]->self().name;
  const bool known = m.nodes[target]->WithState([&](const ClusterState& s) {
    const ClusterMember* found = s.MemberByName(name);
    if (found != nullptr) member = *found;
    return found != nullptr;
  });
  if (!known) return Status::NotFound("fixture: " + name + " is not a member");
  member.labels = labels;
  const int leader = m.Leader();
  if (leader < 0) return Status::Unavailable("fixture: no leader");
  return m.Write(leader, internal::MemberEntry(member), max_ms).status();
}

std::vector<std::string> ClusterFixture::Placement(int i, const std::string& workload) const {
  return impl_->nodes[i]->WithState([&](const ClusterState& s) {
    auto it = s.workloads().find(workload);
    return it == s.workloads().end() ? std::vector<std::string>() : it->second.assigned;
  });
}

std::string ClusterFixture::Standby(int i, const std::string& workload) const {
  return impl_->nodes[i]->WithState([&](const ClusterState& s) {
    auto it = s.workloads().find(workload);
    return it == s.workloads().end() ? std::string() : it->second.standby;
  });
}

bool ClusterFixture::Runs(int i, const std::string& workload) const {
  return alive(i) && Impl::Running(impl_->nodes[i].get()).count(workload) != 0;
}

bool ClusterFixture::Fenced(int i) const { return impl_->nodes[i]->Fenced(); }

bool ClusterFixture::RunsElsewhere(int i, const std::string& workload) const {
  return impl_->nodes[i]->RunsElsewhere(workload);
}

bool ClusterFixture::Ready(int i, const std::string& name) const {
  return impl_->nodes[i]->Ready(name);
}

std::map<std::string, std::string> ClusterFixture::Workloads(int i) const {
  return impl_->nodes[i]->WithState([](const ClusterState& s) {
    std::map<std::string, std::string> out;
    for (const auto& [name, w] : s.workloads()) out[name] = w.spec_hash + "@" + w.node;
    return out;
  });
}

std::vector<std::string> ClusterFixture::Members(int i) const {
  return impl_->nodes[i]->WithState([](const ClusterState& s) {
    std::vector<std::string> out;
    for (const auto& [name, m] : s.members()) out.push_back(name);
    return out;
  });
}

uint64_t ClusterFixture::AppliedIndex(int i) const {
  return impl_->nodes[i]->WithState([](const ClusterState& s) { return s.applied_index(); });
}

bool ClusterFixture::Converged() const {
  const int leader = Leader();
  if (leader < 0) return false;
  std::set<std::string> members;
  const std::string want = impl_->nodes[leader]->WithState([&](const ClusterState& s) {
    for (const auto& [name, m] : s.members()) members.insert(name);
    return s.Snapshot();
  });
  for (int i = 0; i < size(); i++) {
    if (!alive(i) || members.count(impl_->nodes[i]->self().name) == 0) continue;
    if (impl_->nodes[i]->WithState([](const ClusterState& s) { return s.Snapshot(); }) != want) {
      return false;
    }
  }
  return true;
}

int ClusterFixture::restores(int i) const { return impl_->nodes[i]->restores(); }

}  // namespace petrel::testing
