// The Orchestrator facade: owns the store, the desired/observed caches and the loop
// handles, and runs reconcile passes (Plan + Executor) on the loop thread.
#include "petrel/orchestrator.h"

#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "lib/reconcile/executor.h"
#include "lib/reconcile/plan.h"
#include "lib/store/store.h"
#include "lib/util/dir_lock.h"

namespace petrel {

const char* OutcomeName(ApplyResult::Outcome outcome) {
  switch (outcome) {
    case ApplyResult::Outcome::kCreated: return "created";
    case ApplyResult::Outcome::kConfigured: return "configured";
    case ApplyResult::Outcome::kUnchanged: return "unchanged";
  }
  return "?";
}

Result<ApplyResult> Orchestrator::Apply(const WorkloadSpec& spec) {
  PETREL_ASSIGN_OR_RETURN(std::vector<ApplyResult> results, Apply(std::vector<WorkloadSpec>{spec}));
  return results.front();
}

namespace internal {
namespace {

// Runs `fn`, turning any exception into a Status so none crosses the public API.
template <typename Fn>
auto Guard(const char* what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Status::Internal(std::string(what) + ": " + e.what());
  } catch (...) {
    return Status::Internal(std::string(what) + ": unknown exception");
  }
}

// A node name goes into container names: letters, digits, '.', '-'; at most 63.
bool ValidNodeName(const std::string& name) {
  if (name.empty() || name.size() > 63 || !std::isalnum(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
  });
}

// The libuv handles petrel adds to a loop. Heap-allocated and freed by their own
// close callbacks, so closing never touches the Orchestrator after it is gone.
struct LoopHandles {
  uv_async_t async;
  uv_timer_t timer;
  int open = 2;
};

void OnHandleClosed(uv_handle_t* h) {
  auto* handles = static_cast<LoopHandles*>(h->data);
  if (--handles->open == 0) delete handles;
}

class OrchestratorImpl;

// What the runtime's exit handler holds: it may fire from any thread, even while
// the Orchestrator is being destroyed.
struct Waker {
  std::mutex mu;
  OrchestratorImpl* impl = nullptr;
};

class OrchestratorImpl final : public Orchestrator {
 public:
  explicit OrchestratorImpl(const Options& options)
      : opts_(options), executor_(options.runtime.get()), waker_(std::make_shared<Waker>()) {}

  ~OrchestratorImpl() override {
    if (opts_.runtime) opts_.runtime->SetExitHandler(nullptr);
    {
      std::lock_guard<std::mutex> lock(waker_->mu);
      waker_->impl = nullptr;
    }
    if (mode_ == Mode::kOwnThread) {
      stopping_ = true;
      SendAsync();
      thread_.join();
      uv_run(&own_loop_, UV_RUN_DEFAULT);  // runs the close callbacks
      uv_loop_close(&own_loop_);
    } else if (mode_ == Mode::kAttached && handles_ != nullptr) {
      Log(LogLevel::kError, "Orchestrator destroyed while attached; call Detach() first");
      CloseHandles();
    }
  }

  Status Init() {
    if (opts_.state_dir.empty()) return Status::InvalidArgument("options: state_dir is empty");
    if (!opts_.runtime) return Status::InvalidArgument("options: runtime is not set");
    if (opts_.resync_interval_ms <= 0) {
      return Status::InvalidArgument("options: resync_interval_ms must be > 0");
    }
    if (opts_.event_log_capacity <= 0) {
      return Status::InvalidArgument("options: event_log_capacity must be > 0");
    }
    if (!opts_.clock) opts_.clock = SystemClock();
    if (!opts_.port) opts_.port = DefaultPort();
    if (!opts_.log_sink) opts_.log_sink = StderrLogSink();
    if (opts_.node_name.empty()) opts_.node_name = petrel::DefaultNodeName();
    if (!ValidNodeName(opts_.node_name)) {
      return Status::InvalidArgument("options: node_name \"" + opts_.node_name +
                                     "\" must be letters, digits, '.' or '-', at most 63");
    }

    PETREL_RETURN_IF_ERROR(PrepareStateDir(opts_.state_dir));
    PETREL_RETURN_IF_ERROR(DirLock::Acquire(opts_.state_dir, &lock_));
    StoreOptions so;
    so.state_dir = opts_.state_dir;
    so.event_log_capacity = opts_.event_log_capacity;
    PETREL_RETURN_IF_ERROR(Store::Open(so, &store_));

    std::vector<WorkloadRow> rows;
    PETREL_RETURN_IF_ERROR(store_->LoadWorkloads(&rows));
    for (WorkloadRow& row : rows) {
      Result<WorkloadSpec> spec = SpecFromJson(row.spec_json);
      if (!spec.ok()) {
        return Status::Corruption("stored workload " + row.name + ": " + spec.status().message());
      }
      Desired& d = desired_[row.name];
      d.spec = std::move(*spec);
      d.hash = std::move(row.spec_hash);
      d.generation = row.generation;
      d.created_at = row.created_at;
      d.updated_at = row.updated_at;
      d.deleted_at = row.deleted_at;
    }
    std::vector<ReplicaStatus> replicas;
    PETREL_RETURN_IF_ERROR(store_->LoadReplicas(&replicas));
    for (ReplicaStatus& r : replicas) {
      ReplicaKey key(r.workload, r.index);
      replicas_[key] = std::move(r);
    }
    next_seq_ = store_->LastEventSeq() + 1;

    waker_->impl = this;
    std::weak_ptr<Waker> weak = waker_;
    opts_.runtime->SetExitHandler([weak](const std::string&, int) {
      std::shared_ptr<Waker> w = weak.lock();
      if (!w) return;
      std::lock_guard<std::mutex> lock(w->mu);
      if (w->impl != nullptr) w->impl->Wake();
    });
    Log(LogLevel::kInfo, "opened " + opts_.state_dir + ": " + std::to_string(desired_.size()) +
                             " workloads, node " + opts_.node_name + ", runtime " +
                             opts_.runtime->Name());
    return Status::OK();
  }

  // --- desired state ---

  Result<std::vector<ApplyResult>> Apply(const std::vector<WorkloadSpec>& specs) override {
    return Guard("apply", [&]() -> Result<std::vector<ApplyResult>> { return DoApply(specs); });
  }

  Status Delete(const std::string& name) override {
    return Guard("delete", [&]() -> Status {
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = desired_.find(name);
        if (it == desired_.end()) return Status::NotFound("workload " + name + " not found");
        if (it->second.deleted_at != 0) return Status::OK();  // already Terminating
        const TimeMs now = opts_.clock->Now();
        Status s = store_->DeleteWorkload(name, now);
        if (!s.ok()) return s.WithContext("delete workload " + name);
        it->second.deleted_at = now;
        Event e;
        e.workload = name;
        e.type = "Terminating";
        e.message = "workload deleted; stopping its containers";
        RecordEventsLocked({e});
      }
      Wake();
      return Status::OK();
    });
  }

  // --- observed state ---

  Result<WorkloadState> Get(const std::string& name) override {
    return Guard("get", [&]() -> Result<WorkloadState> {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = desired_.find(name);
      if (it == desired_.end()) return Status::NotFound("workload " + name + " not found");
      return StateOfLocked(it->second);
    });
  }

  Result<std::vector<WorkloadState>> List() override {
    return Guard("list", [&]() -> Result<std::vector<WorkloadState>> {
      std::lock_guard<std::mutex> lock(mu_);
      std::vector<WorkloadState> out;
      out.reserve(desired_.size());
      for (const auto& [name, d] : desired_) out.push_back(StateOfLocked(d));
      return out;
    });
  }

  Result<std::vector<Event>> Events(int64_t after_seq, size_t limit) override {
    return Guard("events", [&]() -> Result<std::vector<Event>> {
      std::lock_guard<std::mutex> lock(mu_);
      std::vector<Event> events;
      PETREL_RETURN_IF_ERROR(store_->LoadEvents(after_seq, limit, &events));
      return events;
    });
  }

  SubscriptionId Subscribe(EventCallback callback) override {
    std::lock_guard<std::mutex> lock(sub_mu_);
    SubscriptionId id = next_sub_++;
    subscribers_[id] = std::make_shared<EventCallback>(std::move(callback));
    return id;
  }

  void Unsubscribe(SubscriptionId id) override {
    std::lock_guard<std::mutex> lock(sub_mu_);
    subscribers_.erase(id);
  }

  // --- running ---

  Status Start() override {
    return Guard("start", [&]() -> Status {
      PETREL_RETURN_IF_ERROR(EnterMode(Mode::kOwnThread));
      int rc = uv_loop_init(&own_loop_);
      if (rc != 0) {
        mode_ = Mode::kIdle;
        return Status::Internal(std::string("uv_loop_init: ") + uv_strerror(rc));
      }
      InitHandles(&own_loop_);
      thread_ = std::thread([this] { uv_run(&own_loop_, UV_RUN_DEFAULT); });
      return Status::OK();
    });
  }

  Status Attach(uv_loop_s* loop) override {
    if (loop == nullptr) return Status::InvalidArgument("attach: loop is null");
    PETREL_RETURN_IF_ERROR(EnterMode(Mode::kAttached));
    InitHandles(loop);
    return Status::OK();
  }

  void Detach() override {
    if (mode_ == Mode::kAttached && handles_ != nullptr) CloseHandles();
  }

  Status Step() override {
    return Guard("step", [&]() -> Status {
      if (mode_ == Mode::kIdle) mode_ = Mode::kManual;
      if (mode_ != Mode::kManual) {
        return Status::FailedPrecondition("step: petrel already runs a loop (Start or Attach)");
      }
      return Pass();
    });
  }

  TimeMs NextWakeup() override {
    if (last_pass_ == 0) return opts_.clock->Now();
    return std::min(plan_wakeup_, last_pass_ + opts_.resync_interval_ms);
  }

  void Wake() {
    wake_pending_ = true;
    SendAsync();
  }

 private:
  enum class Mode { kIdle, kManual, kOwnThread, kAttached };

  struct Desired {
    WorkloadSpec spec;
    std::string hash;
    int64_t generation = 0;
    TimeMs created_at = 0;
    TimeMs updated_at = 0;
    TimeMs deleted_at = 0;  // != 0: Terminating
  };

  void Log(LogLevel level, const std::string& msg) { opts_.log_sink(level, msg); }

  Status EnterMode(Mode mode) {
    if (mode_ != Mode::kIdle) {
      return Status::FailedPrecondition(
          "petrel already runs (Start, Attach and Step are exclusive; Attach again after "
          "Detach is not supported)");
    }
    mode_ = mode;
    return Status::OK();
  }

  Result<std::vector<ApplyResult>> DoApply(const std::vector<WorkloadSpec>& specs) {
    std::vector<WorkloadRow> rows;
    rows.reserve(specs.size());
    std::map<std::string, int> seen;
    TimeMs now = opts_.clock->Now();
    for (const WorkloadSpec& spec : specs) {
      Status s = ValidateWorkload(spec);
      if (!s.ok()) {
        return s.WithContext("workload " + (spec.name.empty() ? "(unnamed)" : spec.name));
      }
      if (seen[spec.name]++ > 0) {
        return Status::InvalidArgument("workload " + spec.name + " is given twice");
      }
      WorkloadRow row;
      row.name = spec.name;
      row.spec_json = SpecToJson(spec);
      row.spec_hash = TemplateHash(spec);
      row.updated_at = now;
      rows.push_back(std::move(row));
    }
    std::vector<ApplyResult> results;
    bool changed = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::vector<PutOutcome> outcomes;
      std::vector<int64_t> generations;
      PETREL_RETURN_IF_ERROR(store_->PutWorkloads(rows, &outcomes, &generations));
      std::vector<Event> events;
      for (size_t i = 0; i < specs.size(); i++) {
        ApplyResult r;
        r.name = specs[i].name;
        r.generation = generations[i];
        r.outcome = outcomes[i] == PutOutcome::kCreated      ? ApplyResult::Outcome::kCreated
                    : outcomes[i] == PutOutcome::kConfigured ? ApplyResult::Outcome::kConfigured
                                                             : ApplyResult::Outcome::kUnchanged;
        results.push_back(r);
        if (r.outcome == ApplyResult::Outcome::kUnchanged) continue;
        changed = true;
        Desired& d = desired_[r.name];
        d.spec = specs[i];
        d.hash = rows[i].spec_hash;
        d.generation = r.generation;
        if (r.outcome == ApplyResult::Outcome::kCreated) d.created_at = now;
        d.updated_at = now;
        d.deleted_at = 0;
        Event e;
        e.workload = r.name;
        e.type = "Applied";
        e.message = std::string(OutcomeName(r.outcome)) + ", generation " +
                    std::to_string(r.generation) + ", " + std::to_string(d.spec.replicas) +
                    " replicas";
        events.push_back(std::move(e));
      }
      RecordEventsLocked(std::move(events));
    }
    if (changed) Wake();
    return results;
  }

  WorkloadState StateOfLocked(const Desired& d) const {
    WorkloadState st;
    st.spec = d.spec;
    st.generation = d.generation;
    st.spec_hash = d.hash;
    st.created_at = d.created_at;
    st.updated_at = d.updated_at;
    st.deleted_at = d.deleted_at;
    const std::string& name = d.spec.name;
    auto it = replicas_.lower_bound(ReplicaKey(name, 0));
    if (d.deleted_at != 0) {  // Terminating: the replicas that are left, none ready
      for (; it != replicas_.end() && it->first.first == name; ++it) {
        st.replicas.push_back(it->second);
      }
      return st;
    }
    // Every wanted index (Pending until the loop has seen it), then any replica above
    // the wanted count that is still stopping.
    for (int i = 0; i < d.spec.replicas; i++) {
      if (it != replicas_.end() && it->first == ReplicaKey(name, i)) {
        st.replicas.push_back((it++)->second);
      } else {
        ReplicaStatus pending;
        pending.workload = name;
        pending.index = i;
        st.replicas.push_back(std::move(pending));
      }
    }
    for (; it != replicas_.end() && it->first.first == name; ++it) {
      if (it->first.second >= d.spec.replicas) st.replicas.push_back(it->second);
    }
    st.ready_replicas = static_cast<int>(
        std::count_if(st.replicas.begin(), st.replicas.end(),
                      [](const ReplicaStatus& r) { return r.phase == Phase::kRunning; }));
    return st;
  }

  // Writes replica status changes and events in one transaction, gives the events
  // their seq and time, and queues them for subscribers (and the log sink) even when
  // the write fails: the loop re-derives status, and an event is news either way.
  // REQUIRES: mu_ held.
  Status CommitLocked(const std::vector<ReplicaStatus>& writes,
                      const std::vector<ReplicaKey>& deletes, std::vector<Event> events,
                      const std::vector<std::string>& purges = {}) {
    TimeMs now = opts_.clock->Now();
    for (Event& e : events) {
      e.seq = next_seq_++;
      e.time = now;
    }
    Status s = store_->WriteObserved(writes, deletes, events, purges);
    for (Event& e : events) undelivered_.push_back(std::move(e));
    return s;
  }

  // Events of Apply and Delete: their desired-state change is already durable.
  // REQUIRES: mu_ held.
  void RecordEventsLocked(std::vector<Event> events) {
    Status s = CommitLocked({}, {}, std::move(events));
    if (!s.ok()) pending_error_ = "event log: " + s.ToString();
  }

  // One reconcile pass: list, plan, act, record. Runs on the loop thread.
  Status Pass() {
    wake_pending_ = false;
    TimeMs now = opts_.clock->Now();
    last_pass_ = now;
    Result<std::vector<ContainerInfo>> listed =
        opts_.runtime->List({{kLabelNode, opts_.node_name}});
    if (!listed.ok()) {
      Status s = listed.status().WithContext("list containers of runtime " + opts_.runtime->Name());
      Log(LogLevel::kWarn, s.message());
      plan_wakeup_ = kNever;
      Deliver();
      return s;
    }
    executor_.PruneKills(*listed);

    PlanInput in;
    in.node = opts_.node_name;
    in.now = now;
    in.containers = std::move(*listed);
    in.kills = executor_.kills();
    PlanOutput plan;
    std::map<std::string, Executor::Template> templates;
    std::map<ReplicaKey, ReplicaStatus> touched;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in.desired.reserve(desired_.size());
      for (const auto& [name, d] : desired_) {
        if (d.deleted_at != 0) {
          in.terminating.push_back(name);
        } else {
          in.desired.push_back({&d.spec, d.hash});
        }
      }
      in.replicas.reserve(replicas_.size());
      for (const auto& [key, r] : replicas_) in.replicas.push_back(r);
      plan = internal::Plan(in);
      for (const Action& a : plan.actions) {
        auto d = desired_.find(a.workload);
        if (d != desired_.end() && d->second.deleted_at == 0 && !templates.count(a.workload)) {
          templates[a.workload] = {d->second.spec, d->second.hash};
        }
        ReplicaKey key(a.workload, a.replica);
        auto r = replicas_.find(key);
        if (r != replicas_.end()) touched.emplace(key, r->second);
      }
    }
    for (ReplicaStatus& u : plan.status_updates) {
      ReplicaKey key(u.workload, u.index);
      touched[key] = std::move(u);
    }
    std::vector<Event> events = std::move(plan.events);
    TimeMs retry = executor_.Run(plan, templates, now, &touched, &events);
    plan_wakeup_ = std::min(plan.next_wakeup, retry);

    {
      std::lock_guard<std::mutex> lock(mu_);
      std::vector<ReplicaStatus> writes;
      for (auto& [key, r] : touched) {
        if (!desired_.count(key.first)) continue;  // deleted meanwhile
        auto cur = replicas_.find(key);
        if (cur != replicas_.end() && cur->second == r) continue;
        writes.push_back(r);
      }
      std::vector<ReplicaKey> deletes;
      for (auto& d : plan.status_deletes) {
        if (replicas_.count(d)) deletes.push_back(d);
      }
      // Terminating workloads whose last container is gone (and that no Apply has
      // brought back meanwhile) are forgotten.
      std::vector<std::string> purges;
      for (const std::string& name : plan.gone) {
        auto d = desired_.find(name);
        if (d == desired_.end() || d->second.deleted_at == 0) continue;
        purges.push_back(name);
        Event e;
        e.workload = name;
        e.type = "Deleted";
        e.message = "its last container is gone";
        events.push_back(std::move(e));
      }
      Status s = CommitLocked(writes, deletes, std::move(events), purges);
      if (s.ok()) {
        for (ReplicaStatus& r : writes) replicas_[ReplicaKey(r.workload, r.index)] = std::move(r);
        for (const ReplicaKey& d : deletes) replicas_.erase(d);
        for (const std::string& name : purges) {
          desired_.erase(name);
          replicas_.erase(replicas_.lower_bound(ReplicaKey(name, 0)),
                          replicas_.lower_bound(ReplicaKey(name + '\0', 0)));
        }
      } else {
        // The cache keeps the old status, so the next pass derives and writes it again.
        pending_error_ = "store replica status: " + s.ToString();
        plan_wakeup_ = std::min(plan_wakeup_, now + 1000);
      }
    }
    Deliver();
    return Status::OK();
  }

  // Hands queued events to subscribers, without holding mu_ (callbacks may call Get).
  // Also the one place events and store errors reach the log sink, so the sink is only
  // ever called on the loop thread and never under mu_.
  void Deliver() {
    std::vector<Event> events;
    std::string error;
    {
      std::lock_guard<std::mutex> lock(mu_);
      events.swap(undelivered_);
      error.swap(pending_error_);
    }
    if (!error.empty()) Log(LogLevel::kError, error);
    for (const Event& e : events) {
      Log(LogLevel::kInfo, e.workload + (e.replica >= 0 ? "/" + std::to_string(e.replica) : "") +
                               " " + e.type + ": " + e.message);
    }
    if (events.empty()) return;
    std::vector<std::shared_ptr<EventCallback>> subs;
    {
      std::lock_guard<std::mutex> lock(sub_mu_);
      for (auto& [id, cb] : subscribers_) subs.push_back(cb);
    }
    for (const Event& e : events) {
      for (auto& cb : subs) (*cb)(e);
    }
  }

  // --- loop plumbing ---

  void InitHandles(uv_loop_t* loop) {
    handles_ = new LoopHandles();
    uv_async_init(loop, &handles_->async,
                  [](uv_async_t* h) { static_cast<OrchestratorImpl*>(h->data)->OnAsync(); });
    uv_timer_init(loop, &handles_->timer);
    handles_->async.data = this;
    handles_->timer.data = this;
    {
      std::lock_guard<std::mutex> lock(async_mu_);
      async_ready_ = true;
    }
    ScheduleTimer(0);
  }

  void CloseHandles() {
    {
      std::lock_guard<std::mutex> lock(async_mu_);
      async_ready_ = false;
    }
    uv_timer_stop(&handles_->timer);
    handles_->async.data = handles_;
    handles_->timer.data = handles_;
    uv_close(reinterpret_cast<uv_handle_t*>(&handles_->async), OnHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&handles_->timer), OnHandleClosed);
    handles_ = nullptr;
  }

  void SendAsync() {
    std::lock_guard<std::mutex> lock(async_mu_);
    if (async_ready_) uv_async_send(&handles_->async);
  }

  void OnAsync() {
    if (stopping_) {
      CloseHandles();
      return;
    }
    if (wake_pending_) {
      RunPassAndSchedule();
    } else {
      Deliver();
    }
  }

  void RunPassAndSchedule() {
    (void)Pass();
    TimeMs delay = std::max<TimeMs>(0, NextWakeup() - opts_.clock->Now());
    ScheduleTimer(delay);
  }

  void ScheduleTimer(TimeMs delay) {
    uv_timer_start(
        &handles_->timer,
        [](uv_timer_t* t) { static_cast<OrchestratorImpl*>(t->data)->RunPassAndSchedule(); },
        static_cast<uint64_t>(delay), 0);
  }

  Options opts_;
  std::unique_ptr<DirLock> lock_;
  std::unique_ptr<Store> store_;
  Executor executor_;  // loop thread only
  std::shared_ptr<Waker> waker_;

  std::mutex mu_;  // guards the store and everything below up to undelivered_
  std::map<std::string, Desired> desired_;
  std::map<ReplicaKey, ReplicaStatus> replicas_;
  int64_t next_seq_ = 1;
  std::vector<Event> undelivered_;
  std::string pending_error_;  // a store failure for the log sink, "" when none

  std::mutex sub_mu_;
  std::map<SubscriptionId, std::shared_ptr<EventCallback>> subscribers_;
  SubscriptionId next_sub_ = 1;

  // Loop thread only.
  Mode mode_ = Mode::kIdle;
  TimeMs last_pass_ = 0;
  TimeMs plan_wakeup_ = kNever;
  uv_loop_t own_loop_{};
  std::thread thread_;
  LoopHandles* handles_ = nullptr;
  std::atomic<bool> wake_pending_{false};
  std::atomic<bool> stopping_{false};
  std::mutex async_mu_;  // guards async_ready_ against uv_async_send after close
  bool async_ready_ = false;
};

}  // namespace
}  // namespace internal

std::string DefaultNodeName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "node";
  std::string name;
  for (const char* p = host; *p && name.size() < 63; p++) {
    char c = *p;
    name += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '-';
  }
  return internal::ValidNodeName(name) ? name : "node";
}

Status Orchestrator::Open(const Options& options, std::unique_ptr<Orchestrator>* result) {
  try {
    auto impl = std::make_unique<internal::OrchestratorImpl>(options);
    PETREL_RETURN_IF_ERROR(impl->Init());
    *result = std::move(impl);
    return Status::OK();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("open: ") + e.what());
  }
}

}  // namespace petrel
