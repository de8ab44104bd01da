#include "lib/probe/prober.h"

#include <algorithm>
#include <limits>

namespace petrel::internal {

const char* ProbeTypeName(ProbeType type) {
  switch (type) {
    case ProbeType::kStartup: return "startup";
    case ProbeType::kLiveness: return "liveness";
    case ProbeType::kReadiness: return "readiness";
  }
  return "?";
}

namespace {

constexpr ProbeType kTypes[] = {ProbeType::kStartup, ProbeType::kLiveness, ProbeType::kReadiness};

Event ReplicaEvent(const std::pair<std::string, int>& key, const char* type, std::string message) {
  Event e;
  e.workload = key.first;
  e.replica = key.second;
  e.type = type;
  e.message = std::move(message);
  return e;
}

std::string Times(int n) { return n == 1 ? "once" : std::to_string(n) + " times in a row"; }

}  // namespace

bool Prober::Container::Ready() const { return !killed && startup.passing && readiness.passing; }

// A probe starts over: liveness passing (and an absent probe, vacuously), the others
// failing; the first check initial_delay_ms after the container was first seen running.
void Prober::Reset(State* s, const ProbeSpec& spec, ProbeType type, TimeMs running_since) {
  *s = State();
  s->spec = spec;
  s->passing = spec.empty() || type == ProbeType::kLiveness;
  s->next_due = running_since + spec.initial_delay_ms;
}

Prober::State* Prober::Of(Container* c, ProbeType type) {
  switch (type) {
    case ProbeType::kStartup: return &c->startup;
    case ProbeType::kLiveness: return &c->liveness;
    case ProbeType::kReadiness: return &c->readiness;
  }
  return &c->liveness;
}

bool Prober::Sync(const std::vector<ProbeTarget>& targets, TimeMs now) {
  (void)now;
  std::map<std::pair<std::string, int>, Container> next;
  for (const ProbeTarget& t : targets) {
    if (t.startup.empty() && t.liveness.empty() && t.readiness.empty()) continue;
    const ProbeSpec* specs[] = {&t.startup, &t.liveness, &t.readiness};
    auto it = containers_.find(t.key);
    // A runtime may reuse a name as the id (crun does): a new pid is a new container.
    const bool fresh =
        it == containers_.end() || it->second.id != t.container_id || it->second.pid != t.pid;
    Container c;
    if (fresh) {
      c.id = t.container_id;
      c.running_since = t.running_since;
    } else {
      c = std::move(it->second);
    }
    c.pid = t.pid;
    for (ProbeType type : kTypes) {
      State* s = Of(&c, type);
      const ProbeSpec& want = *specs[static_cast<int>(type)];
      if (fresh || s->spec != want) Reset(s, want, type, c.running_since);
    }
    next.emplace(t.key, std::move(c));
  }
  containers_ = std::move(next);
  std::map<std::pair<std::string, int>, std::string> ready;
  for (const auto& [key, c] : containers_) {
    bool gated = !c.startup.spec.empty() || !c.readiness.spec.empty();
    if (gated && c.Ready()) ready.emplace(key, c.id);
  }
  bool changed = ready != ready_;
  ready_ = std::move(ready);
  return changed;
}

std::vector<ProbeCheck> Prober::TakeDue(TimeMs now) {
  std::vector<ProbeCheck> due;
  for (auto& [key, c] : containers_) {
    if (c.killed) continue;
    for (ProbeType type : kTypes) {
      State* s = Of(&c, type);
      if (s->spec.empty() || s->in_flight != 0 || s->next_due > now) continue;
      if (type == ProbeType::kStartup ? s->passing : !c.startup.passing) continue;
      ProbeCheck check;
      check.key = key;
      check.container_id = c.id;
      check.pid = c.pid;
      check.type = type;
      check.probe = s->spec;
      check.seq = next_seq_++;
      s->in_flight = check.seq;
      // The next check at the next multiple of the period: probes of the same period,
      // on every container, then fall due together and are made in one wake-up of the
      // loop, whose sleeps and wake-ups cost more than the checks' own work. Never
      // more than a period after this one.
      s->next_due = now - now % s->spec.period_ms + s->spec.period_ms;
      due.push_back(std::move(check));
    }
  }
  return due;
}

TimeMs Prober::NextDue() const {
  TimeMs next = std::numeric_limits<TimeMs>::max();
  for (const auto& [key, c] : containers_) {
    if (c.killed) continue;
    for (const State* s : {&c.startup, &c.liveness, &c.readiness}) {
      if (s->spec.empty() || s->in_flight != 0) continue;
      if (s == &c.startup ? s->passing : !c.startup.passing) continue;
      next = std::min(next, s->next_due);
    }
  }
  return next;
}

ProbeNews Prober::Report(const ProbeCheck& check, const ProbeResult& result, TimeMs now) {
  (void)now;
  ProbeNews news;
  auto it = containers_.find(check.key);
  if (it == containers_.end() || it->second.id != check.container_id) return news;
  Container& c = it->second;
  State* s = Of(&c, check.type);
  if (s->in_flight != check.seq) return news;  // a check of a spec since replaced
  s->in_flight = 0;
  if (c.killed || result.outcome == ProbeResult::Outcome::kGone) return news;
  const char* name = ProbeTypeName(check.type);
  if (result.outcome == ProbeResult::Outcome::kSuccess) {
    s->failures = 0;
    s->successes++;
    if (!s->passing && s->successes >= s->spec.success_threshold) s->passing = true;
  } else {
    s->successes = 0;
    s->failures++;
    s->last_failure = result.message;
    if (s->failures == s->spec.failure_threshold) {
      std::string why =
          std::string(name) + " probe failed " + Times(s->failures) + ": " + result.message;
      if (check.type == ProbeType::kReadiness) {
        s->passing = false;
        news.events.push_back(ReplicaEvent(check.key, "Unhealthy", why + "; not ready"));
      } else {
        c.killed = true;
        news.kill_reason = why;
        news.events.push_back(
            ReplicaEvent(check.key, "Unhealthy", why + "; killing the container"));
      }
    }
  }
  UpdateReady(check.key, c, &news);
  return news;
}

void Prober::UpdateReady(const std::pair<std::string, int>& key, const Container& c,
                         ProbeNews* news) {
  bool gated = !c.startup.spec.empty() || !c.readiness.spec.empty();
  bool ready = gated && c.Ready();
  auto it = ready_.find(key);
  bool was = it != ready_.end() && it->second == c.id;
  if (ready == was) return;
  news->ready_changed = true;
  if (!ready) {
    ready_.erase(key);
    return;
  }
  ready_[key] = c.id;
  std::string passed = c.readiness.spec.empty() ? "startup probe passed"
                       : c.startup.spec.empty() ? "readiness probe passed"
                                                : "startup and readiness probes passed";
  news->events.push_back(ReplicaEvent(key, "Ready", passed));
}

}  // namespace petrel::internal
