#include "lib/reconcile/executor.h"

#include <algorithm>
#include <csignal>
#include <set>
#include <unordered_set>

namespace petrel::internal {

ReplicaStatus AfterStarted(const ReplicaStatus& cur, const std::string& hash,
                           const std::string& container_id, int pid, TimeMs now) {
  ReplicaStatus next = cur;
  if (cur.spec_hash == hash) {
    if (!cur.container_id.empty()) next.restarts++;
  } else {
    next.restarts = 0;  // a new template starts a new count, as a new pod would
    next.failures = 0;
  }
  next.phase = Phase::kRunning;
  next.container_id = container_id;
  next.pid = pid;
  next.message.clear();
  next.since = now;
  next.next_retry = 0;
  next.spec_hash = hash;
  return next;
}

ReplicaStatus AfterFailure(const ReplicaStatus& cur, const WorkloadSpec& spec,
                           const std::string& hash, const std::string& what, TimeMs now) {
  ReplicaStatus next = cur;
  next.failures = (cur.spec_hash == hash ? cur.failures : 0) + 1;
  int64_t delay = BackoffDelayMs(spec.backoff, next.failures);
  next.phase = Phase::kCrashLoop;
  next.container_id.clear();
  next.pid = 0;
  next.message = what + "; retry in " + FormatDurationMs(delay);
  next.since = now;
  next.next_retry = now + delay;
  next.spec_hash = hash;
  return next;
}

namespace {

Event MakeEvent(const Action& a, const char* type, std::string message) {
  Event e;
  e.workload = a.workload;
  e.replica = a.replica;
  e.type = type;
  e.message = std::move(message);
  return e;
}

// One Executor::Run: the actions' outcomes so far, and the starts waiting to go to the
// runtime together (StartAll, which may run them concurrently). An action of a
// replica whose start is pending flushes them first, so each replica's actions still
// run in plan order.
class Pass {
 public:
  Pass(ContainerRuntime* runtime, std::unordered_map<std::string, KillState>* kills,
       const std::map<std::string, Executor::Template>& templates, TimeMs now,
       std::map<ReplicaKey, ReplicaStatus>* status, std::vector<Event>* events)
      : runtime_(runtime),
        kills_(kills),
        templates_(templates),
        now_(now),
        status_(status),
        events_(events) {}

  void Do(const Action& a) {
    ReplicaKey key(a.workload, a.replica);
    if (pending_keys_.count(key)) FlushStarts();
    if (failed_.count(key)) return;
    switch (a.type) {
      case Action::Type::kKill: Kill(a); break;
      case Action::Type::kRemove: Remove(a); break;
      case Action::Type::kStart:
      case Action::Type::kCreate: CreateOrStart(a); break;
    }
  }

  // Hands the pending starts to the runtime and records how each went.
  void FlushStarts() {
    if (pending_.empty()) return;
    std::vector<std::string> ids;
    for (const PendingStart& p : pending_) ids.push_back(p.id);
    std::vector<Status> results = runtime_->StartAll(ids);
    for (size_t i = 0; i < pending_.size(); i++) {
      Status s = i < results.size() ? results[i] : Status::Internal("runtime gave no result");
      Started(*pending_[i].action, pending_[i].id, s);
    }
    pending_.clear();
    pending_keys_.clear();
  }

  // The earliest time a failure wants a retry (kNever when none).
  TimeMs retry() const { return retry_; }

 private:
  struct PendingStart {
    const Action* action;
    std::string id;
  };

  void Fail(const Action& a, const std::string& what) {
    failed_.insert(ReplicaKey(a.workload, a.replica));
    events_->push_back(MakeEvent(a, "Failed", what));
  }

  // A failure that counts against the replica: it backs off before the next try.
  void FailReplica(const Action& a, const Executor::Template& t, const std::string& what) {
    ReplicaStatus& st = (*status_)[ReplicaKey(a.workload, a.replica)];
    st = AfterFailure(st, t.spec, t.hash, what, now_);
    retry_ = std::min(retry_, st.next_retry);
    Fail(a, what);
  }

  void Kill(const Action& a) {
    Status s = runtime_->Kill(a.container_id, a.signal);
    if (!s.ok()) {
      Fail(a, "kill container " + a.container_id + ": " + s.message());
      return;
    }
    KillState& k = (*kills_)[a.container_id];
    if (a.signal == SIGKILL) {
      k.kill_sent = true;
    } else {
      k.term_sent_at = now_;
    }
    events_->push_back(MakeEvent(a, "Killing", "container " + a.container_id + ": " + a.reason));
  }

  void Remove(const Action& a) {
    Status s = runtime_->Remove(a.container_id);
    if (!s.ok() && !s.IsNotFound()) {
      Fail(a, "remove container " + a.container_id + ": " + s.message());
      return;
    }
    kills_->erase(a.container_id);
    events_->push_back(MakeEvent(a, "Removed", "container " + a.container_id + ": " + a.reason));
  }

  // Creates the container if the action says so, and queues its start.
  void CreateOrStart(const Action& a) {
    auto t = templates_.find(a.workload);
    if (t == templates_.end()) return;  // deleted since the plan was made
    ReplicaStatus& st = (*status_)[ReplicaKey(a.workload, a.replica)];
    if (st.workload.empty()) {
      st.workload = a.workload;
      st.index = a.replica;
    }
    std::string id = a.container_id;
    if (a.type == Action::Type::kCreate) {
      Result<std::string> created = runtime_->Create(a.container);
      if (!created.ok()) {
        FailReplica(a, t->second,
                    "create container " + a.container.name + ": " + created.status().message());
        return;
      }
      id = *created;
    }
    pending_.push_back(PendingStart{&a, id});
    pending_keys_.insert(ReplicaKey(a.workload, a.replica));
  }

  // Records the outcome `s` of starting the container `id` for `a`.
  void Started(const Action& a, const std::string& id, const Status& s) {
    const Executor::Template& t = templates_.at(a.workload);
    if (!s.ok()) {
      std::string what = "start container " + id + ": " + s.message();
      // A container that cannot start is removed so the back-off, not the leftover,
      // decides when the next try comes.
      Status removed = runtime_->Remove(id);
      if (!removed.ok() && !removed.IsNotFound()) {
        what += " (and remove: " + removed.message() + ")";
      }
      FailReplica(a, t, what);
      return;
    }
    Result<ContainerInfo> info = runtime_->Inspect(id);
    int pid = info.ok() ? info->pid : 0;
    ReplicaStatus& st = (*status_)[ReplicaKey(a.workload, a.replica)];
    st = AfterStarted(st, t.hash, id, pid, now_);
    events_->push_back(MakeEvent(
        a, "Started", "container " + id + " (pid " + std::to_string(pid) + "): " + a.reason));
  }

  ContainerRuntime* const runtime_;
  std::unordered_map<std::string, KillState>* const kills_;
  const std::map<std::string, Executor::Template>& templates_;
  const TimeMs now_;
  std::map<ReplicaKey, ReplicaStatus>* const status_;
  std::vector<Event>* const events_;
  TimeMs retry_ = kNever;
  std::set<ReplicaKey> failed_;
  std::vector<PendingStart> pending_;
  std::set<ReplicaKey> pending_keys_;
};

}  // namespace

TimeMs Executor::Run(const PlanOutput& plan, const std::map<std::string, Template>& templates,
                     TimeMs now, std::map<ReplicaKey, ReplicaStatus>* status,
                     std::vector<Event>* events) {
  Pass pass(runtime_, &kills_, templates, now, status, events);
  for (const Action& a : plan.actions) pass.Do(a);
  pass.FlushStarts();
  return pass.retry();
}

void Executor::PruneKills(const std::vector<ContainerInfo>& present) {
  if (kills_.empty()) return;
  std::unordered_set<std::string> ids;
  for (const ContainerInfo& c : present) ids.insert(c.id);
  for (auto it = kills_.begin(); it != kills_.end();) {
    it = ids.count(it->first) ? std::next(it) : kills_.erase(it);
  }
}

}  // namespace petrel::internal
