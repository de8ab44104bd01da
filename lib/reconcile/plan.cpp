#include "lib/reconcile/plan.h"

#include <algorithm>
#include <charconv>
#include <csignal>
#include <string_view>
#include <unordered_set>

namespace petrel::internal {
namespace {

using SlotKey = std::pair<std::string_view, int>;

struct SlotKeyHash {
  size_t operator()(const SlotKey& k) const {
    return std::hash<std::string_view>()(k.first) * 1000003u ^ static_cast<size_t>(k.second);
  }
};

// What a container's labels say it is. ok=false for a container without petrel's labels.
struct Identity {
  bool ok = false;
  std::string_view workload;
  int replica = -1;
  std::string_view hash;
};

Identity Identify(const ContainerInfo& c) {
  Identity id;
  auto w = c.labels.find(kLabelWorkload);
  auto r = c.labels.find(kLabelReplica);
  auto h = c.labels.find(kLabelSpecHash);
  if (w == c.labels.end() || r == c.labels.end() || h == c.labels.end()) return id;
  const std::string& rs = r->second;
  auto [end, ec] = std::from_chars(rs.data(), rs.data() + rs.size(), id.replica);
  if (ec != std::errc() || end != rs.data() + rs.size() || id.replica < 0) return id;
  id.workload = w->second;
  id.hash = h->second;
  id.ok = true;
  return id;
}

// The grace period a container was created with; the default when unlabelled.
int64_t GraceOf(const ContainerInfo& c) {
  auto it = c.labels.find(kLabelStopGrace);
  if (it == c.labels.end()) return kDefaultGraceMs;
  int64_t ms = 0;
  const std::string& v = it->second;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), ms);
  if (ec != std::errc() || end != v.data() + v.size() || ms < 0) return kDefaultGraceMs;
  return ms;
}

// Which of two containers of the same template to keep: a running one, then the
// newest, so a replica never ends up with a stale twin.
bool Better(const ContainerInfo& a, const ContainerInfo* b) {
  if (b == nullptr) return true;
  bool ar = a.state == ContainerState::kRunning, br = b->state == ContainerState::kRunning;
  if (ar != br) return ar;
  if (a.created_at != b->created_at) return a.created_at > b->created_at;
  return a.id > b->id;
}

// Which policy a pull shared by workloads of different policies follows: the highest.
int Strength(PullPolicy policy) {
  switch (policy) {
    case PullPolicy::kNever: return 0;
    case PullPolicy::kIfNotPresent: return 1;
    case PullPolicy::kAlways: return 2;
  }
  return 1;
}

bool WantsRestart(RestartPolicy policy, int exit_code) {
  return policy == RestartPolicy::kAlways ||
         (policy == RestartPolicy::kOnFailure && exit_code != 0);
}

// "exit code 3", "killed by signal 15 (exit code 143)", and with the runtime's reason
// (ContainerInfo::exit_reason) before it: "OOMKilled: over its memory limit, killed by
// signal 9 (exit code 137)".
std::string ExitText(int code, const std::string& reason = "") {
  std::string text = "exit code " + std::to_string(code);
  if (code > 128 && code < 128 + 65) {
    text = "killed by signal " + std::to_string(code - 128) + " (" + text + ")";
  }
  if (reason == "OOMKilled") return reason + ": over its memory limit, " + text;
  return reason.empty() ? text : reason + ": " + text;
}

class Planner {
 public:
  explicit Planner(const PlanInput& in) : in_(in) {}

  PlanOutput Run() {
    Index();
    // Containers no workload replica wants any more: deleted workloads, scaled-down
    // replicas, unknown leftovers carrying our labels.
    for (const auto& [key, containers] : slots_) {
      auto d = desired_.find(key.first);
      bool wanted = d != desired_.end() && key.second < Slots(*d->second->spec);
      if (wanted || Busy(key)) continue;
      for (const auto& [c, hash] : containers) {
        if (d == desired_.end()) {
          Stop(*c, std::string(key.first), key.second, GraceOf(*c), "workload deleted");
        } else {
          Stop(*c, std::string(key.first), key.second, d->second->spec->termination_grace_ms,
               "scaled down");
        }
      }
    }
    for (const DesiredWorkload& d : in_.desired) {
      for (int i = 0; i < Slots(*d.spec); i++) Replica(d, i);
    }
    ForgetUnwanted();
    if (!in_.terminating.empty()) Terminating();
    return std::move(out_);
  }

 private:
  void Index() {
    for (const auto& [workload, index] : in_.busy) busy_.emplace(workload, index);
    desired_.reserve(in_.desired.size());
    for (const DesiredWorkload& d : in_.desired) desired_.emplace(d.spec->name, &d);
    status_.reserve(in_.replicas.size());
    for (const ReplicaStatus& r : in_.replicas) status_.emplace(SlotKey(r.workload, r.index), &r);
    slots_.reserve(in_.containers.size());
    for (const ContainerInfo& c : in_.containers) {
      Identity id = Identify(c);
      if (!id.ok) continue;
      slots_[SlotKey(id.workload, id.replica)].emplace_back(&c, id.hash);
    }
  }

  // Replicas and warm standbys: the indexes that may have a container.
  static int Slots(const WorkloadSpec& spec) {
    return std::max(0, spec.replicas) + std::max(0, spec.standby_replicas);
  }

  void Wake(TimeMs t) { out_.next_wakeup = std::min(out_.next_wakeup, t); }

  // When a container whose removal failed may be removed again (0: at once).
  TimeMs RemoveRetry(const ContainerInfo& c) const {
    if (in_.removes.empty()) return 0;
    auto it = in_.removes.find(c.id);
    return it == in_.removes.end() ? 0 : it->second.next_retry;
  }

  // Why a probe failed for container `c`, when it did (PlanInput::unhealthy).
  const Unhealthy* UnhealthyOf(const ContainerInfo& c) const {
    if (in_.unhealthy.empty()) return nullptr;
    auto it = in_.unhealthy.find(c.id);
    return it == in_.unhealthy.end() ? nullptr : &it->second;
  }

  bool Busy(const SlotKey& key) const { return !busy_.empty() && busy_.count(key) != 0; }

  void AddEvent(const std::string& workload, int replica, const char* type, std::string msg) {
    Event e;
    e.workload = workload;
    e.replica = replica;
    e.type = type;
    e.message = std::move(msg);
    out_.events.push_back(std::move(e));
  }

  Action MakeAction(Action::Type type, const std::string& workload, int replica,
                    const ContainerInfo* c, std::string reason) {
    Action a;
    a.type = type;
    a.workload = workload;
    a.replica = replica;
    if (c != nullptr) a.container_id = c->id;
    a.reason = std::move(reason);
    return a;
  }

  // Moves a container toward gone: remove it if stopped, else SIGTERM, then SIGKILL
  // once the grace period has passed.
  void Stop(const ContainerInfo& c, const std::string& workload, int replica, int64_t grace,
            const std::string& why) {
    if (c.state != ContainerState::kRunning) {
      TimeMs retry = RemoveRetry(c);
      if (in_.now < retry) {
        Wake(retry);
        return;
      }
      out_.actions.push_back(MakeAction(Action::Type::kRemove, workload, replica, &c, why));
      return;
    }
    auto k = in_.kills.find(c.id);
    if (k == in_.kills.end()) {
      Action a = MakeAction(Action::Type::kKill, workload, replica, &c,
                            why + ": SIGTERM, SIGKILL after " + FormatDurationMs(grace));
      a.signal = SIGTERM;
      out_.actions.push_back(std::move(a));
      Wake(in_.now + grace);
      return;
    }
    if (k->second.kill_sent) return;  // SIGKILL cannot be ignored; wait for the exit
    TimeMs deadline = k->second.term_sent_at + grace;
    if (in_.now < deadline) {
      Wake(deadline);
      return;
    }
    Action a = MakeAction(Action::Type::kKill, workload, replica, &c,
                          why + ": grace period of " + FormatDurationMs(grace) + " ended, SIGKILL");
    a.signal = SIGKILL;
    out_.actions.push_back(std::move(a));
  }

  // Replica `index` of the workload, or its warm standby when index >= replicas: a
  // container of the current template, created and never started, so that scaling up
  // onto it is only a start (anything else in a standby's slot is stopped first).
  void Replica(const DesiredWorkload& d, int index) {
    const WorkloadSpec& spec = *d.spec;
    const bool standby = index >= spec.replicas;
    SlotKey key(spec.name, index);
    if (Busy(key)) return;
    auto st = status_.find(key);
    ReplicaStatus fresh;  // a replica the loop has not seen yet
    if (st == status_.end()) {
      fresh.workload = spec.name;
      fresh.index = index;
    }
    const ReplicaStatus& cur = st != status_.end() ? *st->second : fresh;
    ReplicaStatus next = cur;

    const ContainerInfo* keep = nullptr;
    bool old_present = false;
    auto slot = slots_.find(key);
    if (slot != slots_.end()) {
      for (const auto& [c, hash] : slot->second) {
        const bool fits = !standby || c->state == ContainerState::kCreated;
        if (hash == d.hash && fits && Better(*c, keep)) keep = c;
      }
      for (const auto& [c, hash] : slot->second) {
        if (c == keep) continue;
        bool same = hash == d.hash;
        const char* why = !same                                             ? "spec changed"
                          : standby && c->state != ContainerState::kCreated ? "now a warm standby"
                                                                            : "duplicate container";
        Stop(*c, spec.name, index, spec.termination_grace_ms, why);
        if (!same || standby) old_present = true;
      }
    }

    if (keep != nullptr && standby) {
      next.phase = Phase::kStandby;
      next.container_id = keep->id;
      next.spec_hash = d.hash;
      next.pid = 0;
      next.next_retry = 0;
      next.message = kStandbyMessage;
    } else if (keep != nullptr) {
      Existing(d, *keep, cur, &next);
    } else if (old_present) {
      next.phase = Phase::kStopping;
      next.container_id.clear();
      next.pid = 0;
      next.message = standby ? "warm standby: waiting for the old container to stop"
                             : "replacing: waiting for the old container to stop";
    } else if (!standby && cur.spec_hash == d.hash && cur.phase == Phase::kExited &&
               !WantsRestart(spec.restart_policy, cur.last_exit_code)) {
      // Done under its restart policy; its container may be gone, which is fine.
    } else if (cur.spec_hash == d.hash && cur.phase == Phase::kCrashLoop &&
               in_.now < cur.next_retry) {
      Wake(cur.next_retry);
    } else if (standby) {
      Create(d, index, "warm standby: creating, not starting", &next, /*start=*/false);
    } else {
      std::string why = "creating";
      if (cur.phase == Phase::kRunning && !cur.container_id.empty()) {
        why = "container " + cur.container_id + " disappeared; recreating";
      } else if (cur.phase == Phase::kCrashLoop) {
        why = "retrying after back-off";
      }
      Create(d, index, std::move(why), &next);
    }
    if (next.phase != cur.phase) next.since = in_.now;
    bool changed = st == status_.end() ? next.phase != Phase::kPending : next != cur;
    if (changed) out_.status_updates.push_back(std::move(next));
  }

  // A container of the current template exists for this replica.
  void Existing(const DesiredWorkload& d, const ContainerInfo& c, const ReplicaStatus& cur,
                ReplicaStatus* next) {
    const WorkloadSpec& spec = *d.spec;
    next->container_id = c.id;
    next->spec_hash = d.hash;
    switch (c.state) {
      case ContainerState::kCreated:
        next->phase = Phase::kCreating;
        next->pid = 0;
        // A warm standby's first start is no restart (the executor counts one when a
        // container was recorded before).
        if (cur.phase == Phase::kStandby) next->container_id.clear();
        out_.actions.push_back(
            MakeAction(Action::Type::kStart, spec.name, next->index, &c,
                       cur.phase == Phase::kStandby ? "starting the warm standby" : "starting"));
        return;
      case ContainerState::kRunning: {
        if (cur.container_id != c.id) {
          AddEvent(spec.name, next->index, "Adopted",
                   "running container " + c.id + " (pid " + std::to_string(c.pid) + ")");
        }
        next->phase = Phase::kRunning;
        next->pid = c.pid;
        next->message.clear();
        next->next_retry = 0;
        const Unhealthy* unhealthy = UnhealthyOf(c);
        if (unhealthy != nullptr) {
          next->message = unhealthy->reason;
          Stop(c, spec.name, next->index, spec.termination_grace_ms,
               unhealthy->probe + " probe failed");
        }
        return;
      }
      case ContainerState::kExited: break;
    }
    // An exit already recorded needs nothing new, unless the restart policy has changed
    // since to one that restarts it.
    bool recorded =
        cur.container_id == c.id &&
        (cur.phase == Phase::kCrashLoop ||
         (cur.phase == Phase::kExited && !WantsRestart(spec.restart_policy, cur.last_exit_code)));
    if (!recorded) {
      int code = c.exit_code;
      // Its probe's doing only if petrel signalled it: a container that exited by
      // itself just as its probe failed exited by itself.
      const Unhealthy* unhealthy = in_.kills.count(c.id) != 0 ? UnhealthyOf(c) : nullptr;
      // "killed by signal 15 (exit code 143) after its liveness probe failed"
      const std::string exit_text =
          ExitText(code, c.exit_reason) +
          (unhealthy == nullptr ? "" : " after its " + unhealthy->probe + " probe failed");
      // A container killed for a failed probe failed, whatever it exited with.
      bool restart =
          WantsRestart(spec.restart_policy, unhealthy != nullptr && code == 0 ? 1 : code);
      TimeMs finished = c.finished_at > 0 ? c.finished_at : in_.now;
      next->pid = 0;
      next->last_exit_code = code;
      if (!restart) {
        next->phase = Phase::kExited;
        next->next_retry = 0;
        next->message = code == 0 && unhealthy == nullptr ? "completed" : "exited: " + exit_text;
        AddEvent(spec.name, next->index, "Exited",
                 exit_text + "; restartPolicy " + RestartPolicyName(spec.restart_policy) +
                     ", not restarting");
      } else {
        bool stayed_up =
            c.started_at > 0 && finished - c.started_at >= BackoffResetMs(spec.backoff);
        next->failures = (stayed_up ? 0 : cur.failures) + 1;
        int64_t delay = BackoffDelayMs(spec.backoff, next->failures);
        next->next_retry = finished + delay;
        next->phase = Phase::kCrashLoop;
        next->message = "exited: " + exit_text + "; back-off " + FormatDurationMs(delay);
        AddEvent(spec.name, next->index, "BackOff",
                 exit_text + "; restarting in " + FormatDurationMs(delay) + " (failure " +
                     std::to_string(next->failures) + ")");
      }
    }
    if (next->phase != Phase::kCrashLoop) return;
    if (in_.now < next->next_retry) {
      Wake(next->next_retry);
      return;
    }
    out_.actions.push_back(MakeAction(Action::Type::kRemove, spec.name, next->index, &c,
                                      "restarting after " + ExitText(next->last_exit_code)));
    Create(d, next->index, "restarting after back-off", next);
  }

  // A new container for the replica once its image is ready (phase Creating until
  // the executor has made and started it); until then the replica waits in Pulling.
  // The current container id is kept: the executor counts a restart by it. A warm
  // standby's (start false) is created only.
  void Create(const DesiredWorkload& d, int index, std::string why, ReplicaStatus* next,
              bool start = true) {
    const std::string& image = d.spec->image;
    const PullPolicy policy = d.spec->image_pull_policy;
    auto img = in_.images.find(image);
    next->pid = 0;
    next->next_retry = 0;
    bool ready = img != in_.images.end() && img->second.ready;
    if (ready && policy == PullPolicy::kAlways) {
      // Resolved again for this container: by a pull begun since the replica waits.
      TimeMs waiting_since = next->phase == Phase::kPulling ? next->since : in_.now;
      ready = img->second.pulled_at >= waiting_since;
    }
    if (ready) {
      next->phase = Phase::kCreating;
      next->message = why;
      Action a = MakeAction(Action::Type::kCreate, d.spec->name, index, nullptr, std::move(why));
      a.container = LowerToContainer(in_.node, *d.spec, d.hash, index);
      a.start = start;
      out_.actions.push_back(std::move(a));
      return;
    }
    next->phase = Phase::kPulling;
    if (img != in_.images.end() && !img->second.pulling && img->second.failures > 0 &&
        in_.now < img->second.next_retry) {
      next->message = img->second.message;
      Wake(img->second.next_retry);
      return;
    }
    next->message = "waiting for image " + image;
    if (img != in_.images.end() && img->second.pulling) return;
    auto [it, added] = pull_index_.emplace(image, out_.pulls.size());
    if (added) out_.pulls.push_back(PullRequest{image, {}, policy});
    PullRequest& request = out_.pulls[it->second];
    if (Strength(policy) > Strength(request.policy)) request.policy = policy;
    std::vector<std::string>& waiting = request.workloads;
    if (waiting.empty() || waiting.back() != d.spec->name) waiting.push_back(d.spec->name);
  }

  // Deleted workloads: gone once no container is left and no job of theirs is in
  // flight (a Create under way makes a container the list does not show yet, which the
  // workload, forgotten, would no longer account for). A container removed in this pass
  // asks for another pass at once, which then finds it gone.
  void Terminating() {
    std::unordered_set<std::string_view> left;  // terminating, with a container
    for (const std::string& name : in_.terminating) left.insert(name);
    std::unordered_set<std::string_view> with_containers;
    for (const SlotKey& key : busy_) {
      if (left.count(key.first)) with_containers.insert(key.first);
    }
    for (const auto& [key, containers] : slots_) {
      if (containers.empty() || !left.count(key.first)) continue;
      with_containers.insert(key.first);
      for (const auto& [c, hash] : containers) {
        if (c->state != ContainerState::kRunning && !Busy(key)) {
          Wake(std::max(in_.now, RemoveRetry(*c)));
        }
      }
    }
    for (const std::string& name : in_.terminating) {
      if (!with_containers.count(name)) out_.gone.push_back(name);
    }
  }

  // Status rows of replicas that are no longer wanted: Stopping while a container is
  // left, deleted once none is.
  void ForgetUnwanted() {
    for (const ReplicaStatus& r : in_.replicas) {
      auto d = desired_.find(r.workload);
      if (d != desired_.end() && r.index < Slots(*d->second->spec)) continue;
      if (Busy(SlotKey(r.workload, r.index))) continue;
      auto slot = slots_.find(SlotKey(r.workload, r.index));
      if (slot == slots_.end() || slot->second.empty()) {
        out_.status_deletes.emplace_back(r.workload, r.index);
        continue;
      }
      if (r.phase != Phase::kStopping) {
        ReplicaStatus next = r;
        next.phase = Phase::kStopping;
        next.since = in_.now;
        next.message = d == desired_.end() ? "workload deleted" : "scaled down";
        out_.status_updates.push_back(std::move(next));
      }
    }
  }

  const PlanInput& in_;
  PlanOutput out_;
  std::unordered_map<std::string_view, const DesiredWorkload*> desired_;
  std::unordered_map<SlotKey, const ReplicaStatus*, SlotKeyHash> status_;
  // The containers of each replica, with the template hash their labels name.
  using Labelled = std::pair<const ContainerInfo*, std::string_view>;
  std::unordered_map<SlotKey, std::vector<Labelled>, SlotKeyHash> slots_;
  std::unordered_set<SlotKey, SlotKeyHash> busy_;
  std::unordered_map<std::string_view, size_t> pull_index_;  // image -> out_.pulls index
};

}  // namespace

PlanOutput Plan(const PlanInput& input) { return Planner(input).Run(); }

int64_t BackoffDelayMs(const Backoff& backoff, int failures) {
  int64_t delay = backoff.initial_ms;
  for (int i = 1; i < failures && delay < backoff.max_ms; i++) delay *= 2;
  return std::min(delay, backoff.max_ms);
}

int64_t RemoveRetryDelayMs(int failures) {
  return BackoffDelayMs(Backoff{1000, 30000, 0}, failures);
}

int64_t BackoffResetMs(const Backoff& backoff) {
  if (backoff.reset_after_ms > 0) return backoff.reset_after_ms;
  return std::max<int64_t>(10 * backoff.initial_ms, 60000);
}

std::string ContainerName(const std::string& node, const std::string& workload, int index) {
  return "petrel_" + node + "_" + workload + "_" + std::to_string(index);
}

ContainerSpec LowerToContainer(const std::string& node, const WorkloadSpec& spec,
                               const std::string& hash, int index) {
  ContainerSpec c;
  c.name = ContainerName(node, spec.name, index);
  c.labels = spec.labels;
  c.labels[kLabelWorkload] = spec.name;
  c.labels[kLabelReplica] = std::to_string(index);
  c.labels[kLabelSpecHash] = hash;
  c.labels[kLabelNode] = node;
  c.labels[kLabelStopGrace] = std::to_string(spec.termination_grace_ms);
  c.image = spec.image;
  c.command = spec.command;
  c.args = spec.args;
  c.env = spec.env;
  c.working_dir = spec.working_dir;
  c.user = spec.user;
  c.hostname = spec.name + "-" + std::to_string(index);
  c.read_only_rootfs = spec.read_only_rootfs;
  c.network = spec.network;
  c.ports = spec.ports;
  c.mounts = spec.mounts;
  c.resources = spec.resources;
  c.resources.all_devices = spec.security_context.privileged;
  c.security_context = spec.security_context;
  return c;
}

}  // namespace petrel::internal
