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

bool MakesContainer(const Action& a) {
  return a.type == Action::Type::kCreate || a.type == Action::Type::kStart;
}

// Starts container `id` for `result`'s action; a container that cannot start is
// removed again.
void StartContainer(ContainerRuntime* runtime, const std::string& id, ActionResult* result) {
  result->status = runtime->Start(id);
  if (!result->status.ok()) {
    Status removed = runtime->Remove(id);
    if (!removed.ok() && !removed.IsNotFound()) result->cleanup = removed.message();
    return;
  }
  Result<ContainerInfo> info = runtime->Inspect(id);
  result->pid = info.ok() ? info->pid : 0;
}

}  // namespace

std::vector<ReplicaJob> SplitIntoJobs(const PlanOutput& plan,
                                      const std::map<std::string, Template>& templates) {
  std::vector<ReplicaJob> jobs;
  std::map<ReplicaKey, size_t> index;
  for (const Action& a : plan.actions) {
    auto t = templates.find(a.workload);
    if (MakesContainer(a) && t == templates.end()) continue;  // deleted since the plan
    ReplicaKey key(a.workload, a.replica);
    auto [it, added] = index.emplace(key, jobs.size());
    if (added) {
      jobs.emplace_back();
      jobs.back().key = key;
    }
    ReplicaJob& job = jobs[it->second];
    job.actions.push_back(a);
    if (MakesContainer(a) && !job.tmpl) job.tmpl = t->second;
  }
  return jobs;
}

void RunReplicaJob(ContainerRuntime* runtime, ReplicaJob* job) {
  job->results.clear();
  for (const Action& a : job->actions) {
    job->results.emplace_back();
    ActionResult& r = job->results.back();
    switch (a.type) {
      case Action::Type::kKill: r.status = runtime->Kill(a.container_id, a.signal); break;
      case Action::Type::kRemove:
        r.status = runtime->Remove(a.container_id);
        if (r.status.IsNotFound()) r.status = Status::OK();  // gone is what was wanted
        break;
      case Action::Type::kCreate: {
        Result<std::string> created = runtime->Create(a.container);
        if (!created.ok()) {
          r.status = created.status();
          break;
        }
        r.container_id = *created;
        if (a.start) StartContainer(runtime, r.container_id, &r);
        break;
      }
      case Action::Type::kStart:
        r.container_id = a.container_id;
        StartContainer(runtime, r.container_id, &r);
        break;
    }
    if (!r.status.ok()) return;
  }
}

void RunPullJob(ContainerRuntime* runtime, PullJob* job) {
  job->status = runtime->PullImage(job->request.image,
                                   PullOptions{job->request.policy, job->progress, job->cancelled});
}

TimeMs Executor::Record(const ReplicaJob& job, TimeMs now, ReplicaStatus* st,
                        std::vector<Event>* events) {
  busy_.erase(job.key);
  if (st->workload.empty()) {
    st->workload = job.key.first;
    st->index = job.key.second;
  }
  TimeMs retry = kNever;
  for (size_t i = 0; i < job.results.size() && i < job.actions.size(); i++) {
    const Action& a = job.actions[i];
    const ActionResult& r = job.results[i];
    switch (a.type) {
      case Action::Type::kKill:
        if (!r.status.ok()) {
          events->push_back(MakeEvent(
              a, "Failed", "kill container " + a.container_id + ": " + r.status.message()));
          break;
        }
        if (a.signal == SIGKILL) {
          kills_[a.container_id].kill_sent = true;
        } else {
          kills_[a.container_id].term_sent_at = job.planned_at;
        }
        events->push_back(MakeEvent(a, "Killing", "container " + a.container_id + ": " + a.reason));
        break;
      case Action::Type::kRemove:
        if (!r.status.ok()) {
          RemoveState& rs = removes_[a.container_id];
          rs.failures++;
          const int64_t delay = RemoveRetryDelayMs(rs.failures);
          rs.next_retry = now + delay;
          retry = std::min(retry, rs.next_retry);
          events->push_back(MakeEvent(a, "Failed",
                                      "remove container " + a.container_id + ": " +
                                          r.status.message() + "; retry in " +
                                          FormatDurationMs(delay)));
          break;
        }
        kills_.erase(a.container_id);
        removes_.erase(a.container_id);
        events->push_back(MakeEvent(a, "Removed", "container " + a.container_id + ": " + a.reason));
        break;
      case Action::Type::kCreate:
      case Action::Type::kStart: {
        const Template& t = *job.tmpl;
        if (r.status.ok() && !a.start) {
          st->phase = Phase::kStandby;
          st->container_id = r.container_id;
          st->pid = 0;
          st->message = kStandbyMessage;
          st->since = now;
          st->next_retry = 0;
          st->spec_hash = t.hash;
          events->push_back(
              MakeEvent(a, "Created", "container " + r.container_id + ": " + a.reason));
          break;
        }
        if (r.status.ok()) {
          *st = AfterStarted(*st, t.hash, r.container_id, r.pid, now);
          events->push_back(MakeEvent(
              a, "Started",
              "container " + r.container_id + " (pid " + std::to_string(r.pid) + "): " + a.reason));
          break;
        }
        // Said once: runtimes' own errors often name the step and container already.
        const std::string step = a.type == Action::Type::kCreate && r.container_id.empty()
                                     ? "create container " + a.container.name + ": "
                                     : "start container " + r.container_id + ": ";
        std::string what(r.status.message());
        if (what.rfind(step, 0) != 0) what = step + what;
        if (!r.cleanup.empty()) what += " (and remove: " + r.cleanup + ")";
        *st = AfterFailure(*st, t.spec, t.hash, what, now);
        retry = std::min(retry, st->next_retry);
        events->push_back(MakeEvent(a, "Failed", what));
        break;
      }
    }
  }
  return retry;
}

void Executor::PruneKills(const std::vector<ContainerInfo>& present) {
  if (kills_.empty() && removes_.empty()) return;
  std::unordered_set<std::string> ids;
  for (const ContainerInfo& c : present) ids.insert(c.id);
  for (auto it = kills_.begin(); it != kills_.end();) {
    it = ids.count(it->first) ? std::next(it) : kills_.erase(it);
  }
  for (auto it = removes_.begin(); it != removes_.end();) {
    it = ids.count(it->first) ? std::next(it) : removes_.erase(it);
  }
}

}  // namespace petrel::internal
