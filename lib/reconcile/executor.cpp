#include "lib/reconcile/executor.h"

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

}  // namespace

TimeMs Executor::Run(const PlanOutput& plan, const std::map<std::string, Template>& templates,
                     TimeMs now, std::map<ReplicaKey, ReplicaStatus>* status,
                     std::vector<Event>* events) {
  TimeMs retry = kNever;
  std::set<ReplicaKey> failed;
  // Starts wait here and go to the runtime together (StartAll), which may run them
  // concurrently; an action of a replica whose start is pending flushes them first.
  struct PendingStart {
    const Action* action;
    std::string id;
  };
  std::vector<PendingStart> pending;
  std::set<ReplicaKey> pending_keys;
  auto flush = [&]() {
    if (pending.empty()) return;
    std::vector<std::string> ids;
    for (const PendingStart& p : pending) ids.push_back(p.id);
    std::vector<Status> results = runtime_->StartAll(ids);
    for (size_t i = 0; i < pending.size(); i++) {
      const Action& a = *pending[i].action;
      const std::string& id = pending[i].id;
      ReplicaKey key(a.workload, a.replica);
      auto t = templates.find(a.workload);
      ReplicaStatus& st = (*status)[key];
      Status s = i < results.size() ? results[i] : Status::Internal("runtime gave no result");
      if (!s.ok()) {
        std::string what = "start container " + id + ": " + s.message();
        // A container that cannot start is removed so the back-off, not the
        // leftover, decides when the next try comes.
        Status removed = runtime_->Remove(id);
        if (!removed.ok() && !removed.IsNotFound()) {
          what += " (and remove: " + removed.message() + ")";
        }
        st = AfterFailure(st, t->second.spec, t->second.hash, what, now);
        retry = std::min(retry, st.next_retry);
        failed.insert(key);
        events->push_back(MakeEvent(a, "Failed", what));
        continue;
      }
      Result<ContainerInfo> info = runtime_->Inspect(id);
      int pid = info.ok() ? info->pid : 0;
      st = AfterStarted(st, t->second.hash, id, pid, now);
      events->push_back(MakeEvent(
          a, "Started", "container " + id + " (pid " + std::to_string(pid) + "): " + a.reason));
    }
    pending.clear();
    pending_keys.clear();
  };
  for (const Action& a : plan.actions) {
    ReplicaKey key(a.workload, a.replica);
    if (pending_keys.count(key)) flush();
    if (failed.count(key)) continue;
    auto fail = [&](const std::string& what) {
      failed.insert(key);
      events->push_back(MakeEvent(a, "Failed", what));
    };
    switch (a.type) {
      case Action::Type::kKill: {
        Status s = runtime_->Kill(a.container_id, a.signal);
        if (!s.ok()) {
          fail("kill container " + a.container_id + ": " + s.message());
          break;
        }
        KillState& k = kills_[a.container_id];
        if (a.signal == SIGKILL) {
          k.kill_sent = true;
        } else {
          k.term_sent_at = now;
        }
        events->push_back(MakeEvent(a, "Killing", "container " + a.container_id + ": " + a.reason));
        break;
      }
      case Action::Type::kRemove: {
        Status s = runtime_->Remove(a.container_id);
        if (!s.ok() && !s.IsNotFound()) {
          fail("remove container " + a.container_id + ": " + s.message());
          break;
        }
        kills_.erase(a.container_id);
        events->push_back(MakeEvent(a, "Removed", "container " + a.container_id + ": " + a.reason));
        break;
      }
      case Action::Type::kStart:
      case Action::Type::kCreate: {
        auto t = templates.find(a.workload);
        if (t == templates.end()) break;  // deleted since the plan was made
        ReplicaStatus& st = (*status)[key];
        if (st.workload.empty()) {
          st.workload = a.workload;
          st.index = a.replica;
        }
        std::string id = a.container_id;
        if (a.type == Action::Type::kCreate) {
          Result<std::string> created = runtime_->Create(a.container);
          if (!created.ok()) {
            std::string what =
                "create container " + a.container.name + ": " + created.status().message();
            st = AfterFailure(st, t->second.spec, t->second.hash, what, now);
            retry = std::min(retry, st.next_retry);
            fail(what);
            break;
          }
          id = *created;
        }
        pending.push_back(PendingStart{&a, id});
        pending_keys.insert(key);
        break;
      }
    }
  }
  flush();
  return retry;
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
