// The Orchestrator facade: owns the store, the desired/observed caches, the loop
// handles and the worker threads. A reconcile pass lists the runtime's containers on a
// worker, plans on the loop thread, and dispatches the plan's runtime calls to workers
// (one job per replica, one per image to pull), whose results come back to the loop
// through a Mailbox. Store commits go through a StoreWriter, never on the loop thread.
#include "petrel/orchestrator.h"

#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include "lib/core/store_writer.h"
#include "lib/probe/net_check.h"
#include "lib/probe/prober.h"
#include "lib/reconcile/executor.h"
#include "lib/reconcile/plan.h"
#include "lib/store/store.h"
#include "lib/util/dir_lock.h"
#include "lib/util/fs.h"
#include "lib/util/workers.h"

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

// The libuv handles petrel adds to a loop. Heap-allocated and freed by their own
// close callbacks, so closing never touches the Orchestrator after it is gone.
struct LoopHandles {
  uv_poll_t mail;  // the Mailbox's eventfd
  uv_timer_t timer;
  uv_timer_t probe_timer;  // the next health check is due
  int open = 3;
};

void OnHandleClosed(uv_handle_t* h) {
  auto* handles = static_cast<LoopHandles*>(h->data);
  if (--handles->open == 0) delete handles;
}

// How much lower the workers' scheduling priority is than the loop thread's.
constexpr int kWorkerNice = 10;

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
      : opts_(options), waker_(std::make_shared<Waker>()), mailbox_(std::make_shared<Mailbox>()) {}

  ~OrchestratorImpl() override {
    *pulls_cancelled_ = true;  // the workers' pulls end within a second, not at their end
    if (opts_.runtime) opts_.runtime->SetExitHandler(nullptr);
    {
      std::lock_guard<std::mutex> lock(waker_->mu);
      waker_->impl = nullptr;
    }
    if (mode_ == Mode::kOwnThread) {
      stopping_ = true;
      mailbox_->Wake();
      thread_.join();
      uv_run(&own_loop_, UV_RUN_DEFAULT);  // runs the close callbacks
      uv_loop_close(&own_loop_);
    } else if (mode_ == Mode::kAttached && handles_ != nullptr) {
      Log(LogLevel::kError, "Orchestrator destroyed while attached; call Detach() first");
      CloseHandles();
    }
    // Jobs still running finish (a runtime call cannot be cut short); what they
    // report is dropped. Then what is queued for the database is written.
    mailbox_->Close();
    workers_.reset();
    lister_.reset();
    if (store_pool_) store_pool_->WaitIdle();
    store_pool_.reset();
    if (writer_) writer_->Flush();
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
    if (opts_.worker_threads < 1) {
      return Status::InvalidArgument("options: worker_threads must be >= 1");
    }
    if (!opts_.clock) opts_.clock = SystemClock();
    if (!opts_.port) opts_.port = DefaultPort();
    if (!opts_.log_sink) opts_.log_sink = StderrLogSink();
    if (opts_.node_name.empty()) opts_.node_name = petrel::DefaultNodeName();
    PETREL_RETURN_IF_ERROR(ValidateNodeName(opts_.node_name).WithContext("options: node_name"));
    for (const std::string& dir : opts_.allowed_host_paths) {
      if (dir.empty() || dir.front() != '/') {
        return Status::InvalidArgument("options: allowed_host_paths: \"" + dir +
                                       "\" is not an absolute path");
      }
    }

    PETREL_RETURN_IF_ERROR(PrepareStateDir(opts_.state_dir));
    PETREL_RETURN_IF_ERROR(DirLock::Acquire(opts_.state_dir, &lock_));
    StoreOptions so;
    so.state_dir = opts_.state_dir;
    so.event_log_capacity = opts_.event_log_capacity;
    PETREL_RETURN_IF_ERROR(Store::Open(so, &store_));
    std::weak_ptr<Mailbox> mailbox = mailbox_;
    writer_ = std::make_unique<StoreWriter>(
        store_.get(), [this, mailbox](const ObservedBatch& batch, const Status& s) {
          // On the thread that flushed: the loop marks the rows to write again.
          std::shared_ptr<Mailbox> m = mailbox.lock();
          if (m) m->Post([this, batch, s] { OnWriteFailed(batch, s); });
        });

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

  // Like Apply: the store's mutex across the durable write and the memory update, so
  // the two happen in the same order for every caller; the loop never waits for it.
  Status Delete(const std::string& name) override {
    return Guard("delete", [&]() -> Status {
      std::lock_guard<std::mutex> store_lock(writer_->store_mu());
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = desired_.find(name);
        if (it == desired_.end()) return Status::NotFound("workload " + name + " not found");
        if (it->second.deleted_at != 0) return Status::OK();  // already Terminating
      }
      const TimeMs now = opts_.clock->Now();
      Status s = store_->DeleteWorkload(name, now);
      if (!s.ok()) return s.WithContext("delete workload " + name);
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = desired_.find(name);
        if (it != desired_.end()) it->second.deleted_at = now;
        Event e;
        e.workload = name;
        e.type = "Terminating";
        e.message = "workload deleted; stopping its containers";
        QueueLocked({std::move(e)});
      }
      writer_->FlushLocked();
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

  // What the database holds, then what is still queued for it: none missed, none twice.
  Result<std::vector<Event>> Events(int64_t after_seq, size_t limit) override {
    return Guard("events", [&]() -> Result<std::vector<Event>> {
      std::lock_guard<std::mutex> store_lock(writer_->store_mu());
      std::vector<Event> events;
      PETREL_RETURN_IF_ERROR(store_->LoadEvents(after_seq, limit, &events));
      int64_t last = events.empty() ? after_seq : events.back().seq;
      for (Event& e : writer_->UnwrittenLocked(last)) {
        if (events.size() >= limit) break;
        events.push_back(std::move(e));
      }
      return events;
    });
  }

  Status PullImage(const std::string& image, const PullOptions& options) override {
    PullOptions o = options;
    o.cancelled = [given = options.cancelled, mine = PullsCancelled()] {
      return mine() || (given && given());
    };
    return Guard("pull", [&] { return opts_.runtime->PullImage(image, o); });
  }
  Result<std::vector<ImageInfo>> ListImages() override {
    return Guard("list images", [&] { return opts_.runtime->ListImages(); });
  }
  Status RemoveImage(const std::string& ref) override {
    return Guard("remove image", [&] { return opts_.runtime->RemoveImage(ref); });
  }
  Result<PruneResult> PruneImages() override {
    return Guard("prune images", [&] { return opts_.runtime->PruneImages(); });
  }

  Result<ReplicaLog> Logs(const std::string& workload, int replica, const LogOptions& options,
                          const std::string& container_id) override {
    return Guard("logs", [&]() -> Result<ReplicaLog> {
      ReplicaLog log;
      log.container_id = container_id;
      if (log.container_id.empty()) {
        std::lock_guard<std::mutex> lock(mu_);
        auto d = desired_.find(workload);
        if (d == desired_.end()) return Status::NotFound("workload " + workload + " not found");
        auto r = replicas_.find(ReplicaKey(workload, replica));
        const std::string who = "workload " + workload + " replica " + std::to_string(replica);
        if (r == replicas_.end()) {
          if (replica < 0 || replica >= d->second.spec.replicas) {
            return Status::NotFound("workload " + workload + " has no replica " +
                                    std::to_string(replica) +
                                    " (replicas: " + std::to_string(d->second.spec.replicas) + ")");
          }
          return Status::FailedPrecondition(who + " has no container yet (phase Pending)");
        }
        if (r->second.container_id.empty()) {
          return Status::FailedPrecondition(
              who + " has no container yet (phase " + PhaseName(r->second.phase) +
              (r->second.message.empty() ? "" : ": " + r->second.message) + ")");
        }
        log.container_id = r->second.container_id;
      }
      Result<LogChunk> chunk = opts_.runtime->Logs(log.container_id, options);
      if (!chunk.ok()) {
        return chunk.status().WithContext("workload " + workload + " replica " +
                                          std::to_string(replica) + ": logs of container " +
                                          log.container_id);
      }
      log.chunk = std::move(*chunk);
      return log;
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
      if (Status s = InitHandles(&own_loop_); !s.ok()) {
        uv_loop_close(&own_loop_);
        mode_ = Mode::kIdle;
        return s;
      }
      thread_ = std::thread([this] { uv_run(&own_loop_, UV_RUN_DEFAULT); });
      return Status::OK();
    });
  }

  Status Attach(uv_loop_s* loop) override {
    if (loop == nullptr) return Status::InvalidArgument("attach: loop is null");
    PETREL_RETURN_IF_ERROR(EnterMode(Mode::kAttached));
    if (Status s = InitHandles(loop); !s.ok()) {
      mode_ = Mode::kIdle;
      return s;
    }
    return Status::OK();
  }

  void Detach() override {
    *pulls_cancelled_ = true;
    if (mode_ == Mode::kAttached && handles_ != nullptr) CloseHandles();
  }

  // One pass, its runtime calls made here, inline. When the pass pulled an image, the
  // replicas that waited for it are planned again at once, so one Step still takes a
  // new workload from nothing to running (or to Pulling with the image's error).
  Status Step() override {
    return Guard("step", [&]() -> Status {
      if (mode_ == Mode::kIdle) PETREL_RETURN_IF_ERROR(EnterMode(Mode::kManual));
      if (mode_ != Mode::kManual) {
        return Status::FailedPrecondition("step: petrel already runs a loop (Start or Attach)");
      }
      mailbox_->Drain();
      Status s;
      for (int round = 0; round < 2; round++) {
        pulls_finished_ = false;
        StartPass();
        mailbox_->Drain();
        s = last_list_status_;
        if (!s.ok() || !pulls_finished_) break;
      }
      if (s.ok() && ProbeStep()) {  // a probe failed: the pass that kills the container
        StartPass();
        mailbox_->Drain();
        s = last_list_status_;
      }
      return s;
    });
  }

  TimeMs NextWakeup() override { return std::min(PassWakeup(), probe_due_); }

  void Wake() {
    wake_pending_ = true;
    mailbox_->Wake();
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

  // When the next reconcile pass is due (a back-off or grace period ends, or the resync).
  TimeMs PassWakeup() const {
    if (last_pass_ == 0) return opts_.clock->Now();
    return std::min(plan_wakeup_, last_pass_ + opts_.resync_interval_ms);
  }

  // Picks the mode and, with it, where jobs run: inline for Step, on threads else.
  Status EnterMode(Mode mode) {
    if (mode_ != Mode::kIdle) {
      return Status::FailedPrecondition(
          "petrel already runs (Start, Attach and Step are exclusive; Attach again after "
          "Detach is not supported)");
    }
    const bool threads = mode != Mode::kManual;
    // A loop is woken through the Mailbox's eventfd (InitHandles): without one, nothing
    // is made.
    if (threads) PETREL_RETURN_IF_ERROR(mailbox_->CheckFd().WithContext("orchestrator"));
    mode_ = mode;
    // Workers yield to the loop thread (and so to peers' heartbeats and the API)
    // when the machine is busy: their work is bulk, the loop's is latency.
    workers_ = std::make_unique<WorkerPool>(threads ? opts_.worker_threads : 0, "petrel-worker",
                                            kWorkerNice);
    lister_ = std::make_unique<WorkerPool>(threads ? 1 : 0, "petrel-list");
    store_pool_ = std::make_unique<WorkerPool>(threads ? 1 : 0, "petrel-store");
    return Status::OK();
  }

  bool threaded() const { return mode_ == Mode::kOwnThread || mode_ == Mode::kAttached; }

  Result<std::vector<ApplyResult>> DoApply(const std::vector<WorkloadSpec>& specs) {
    std::vector<WorkloadRow> rows;
    rows.reserve(specs.size());
    std::map<std::string, int> seen;
    TimeMs now = opts_.clock->Now();
    for (const WorkloadSpec& spec : specs) {
      Status s = ValidateWorkload(spec);
      if (s.ok()) s = CheckHostPaths(spec, opts_.allowed_host_paths);
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
    std::lock_guard<std::mutex> store_lock(writer_->store_mu());
    std::vector<PutOutcome> outcomes;
    std::vector<int64_t> generations;
    PETREL_RETURN_IF_ERROR(store_->PutWorkloads(rows, &outcomes, &generations));
    {
      std::lock_guard<std::mutex> lock(mu_);
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
      QueueLocked(std::move(events));
    }
    writer_->FlushLocked();
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
      for (ReplicaStatus& r : st.replicas) r.node = opts_.node_name;
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
    // Ready: running and, with a startup or readiness probe, passing it (Prober).
    const bool gated = !d.spec.startup_probe.empty() || !d.spec.readiness_probe.empty();
    std::optional<PullProgress> pull = PullProgressOf(d.spec.image);
    for (ReplicaStatus& r : st.replicas) {
      r.node = opts_.node_name;
      if (r.phase == Phase::kPulling && pull) {
        r.pull = pull;
        r.message = "pulling " + d.spec.image + ": " + FormatPullProgress(*pull);
      }
      if (r.phase != Phase::kRunning || r.index >= d.spec.replicas) continue;
      if (gated) {
        auto ready = ready_.find(ReplicaKey(name, r.index));
        r.ready = ready != ready_.end() && ready->second == r.container_id;
      } else {
        r.ready = true;
      }
      if (r.ready) st.ready_replicas++;
    }
    return st;
  }

  // How the pull of `image` goes, while one runs.
  std::optional<PullProgress> PullProgressOf(const std::string& image) const {
    std::lock_guard<std::mutex> lock(progress_mu_);
    auto it = progress_.find(image);
    if (it == progress_.end()) return std::nullopt;
    return it->second;
  }

  // --- observed state on its way to the database ---

  // Gives `events` their seq and time, queues them for the database together with the
  // replica rows changed since the last batch, and for subscribers and the log sink
  // (Deliver). An event is news even if its write fails. REQUIRES: mu_ held.
  void QueueLocked(std::vector<Event> events) {
    TimeMs now = opts_.clock->Now();
    ObservedBatch batch;
    for (Event& e : events) {
      e.seq = next_seq_++;
      e.time = now;
      undelivered_.push_back(e);
    }
    batch.events = std::move(events);
    for (const ReplicaKey& key : dirty_) {
      auto r = replicas_.find(key);
      if (r != replicas_.end()) {
        batch.upserts.push_back(r->second);
      } else {
        batch.deletes.push_back(key);
      }
    }
    dirty_.clear();
    batch.purges.assign(dirty_purges_.begin(), dirty_purges_.end());
    dirty_purges_.clear();
    writer_->Push(std::move(batch));
  }

  // Writes what QueueLocked queued: on the store thread, or here when there is none.
  void Flush() {
    if (store_pool_ && !store_pool_->inline_jobs()) {
      StoreWriter* writer = writer_.get();
      store_pool_->Submit([writer] { writer->Flush(); });
    } else {
      writer_->Flush();
    }
  }

  // A batch did not reach the database: its rows and purges go into the next one.
  void OnWriteFailed(const ObservedBatch& batch, const Status& s) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const ReplicaStatus& r : batch.upserts) dirty_.insert(ReplicaKey(r.workload, r.index));
      for (const auto& key : batch.deletes) dirty_.insert(key);
      for (const std::string& name : batch.purges) {
        if (!desired_.count(name)) dirty_purges_.insert(name);
      }
      pending_error_ = "store observed state: " + s.ToString();
    }
    plan_wakeup_ = std::min(plan_wakeup_, opts_.clock->Now() + 1000);
    Deliver();
    ScheduleAfterLoopWork();
  }

  // --- a reconcile pass: list (on a worker), then plan and dispatch (here) ---

  void StartPass() {
    if (listing_) {
      pass_again_ = true;
      return;
    }
    listing_ = true;
    pass_again_ = false;
    wake_pending_ = false;
    settled_.clear();  // jobs that end from now on ended after this list began
    std::shared_ptr<ContainerRuntime> runtime = opts_.runtime;
    std::shared_ptr<Mailbox> mailbox = mailbox_;
    std::map<std::string, std::string> selector = {{kLabelNode, opts_.node_name}};
    lister_->Submit([this, runtime, mailbox, selector] {
      auto listed = std::make_shared<Result<std::vector<ContainerInfo>>>(runtime->List(selector));
      mailbox->Post([this, listed] { OnListed(std::move(*listed)); });
    });
  }

  void OnListed(Result<std::vector<ContainerInfo>> listed) {
    listing_ = false;
    const TimeMs now = opts_.clock->Now();
    last_pass_ = now;
    last_list_status_ = listed.status();
    if (!listed.ok()) {
      Status s = listed.status().WithContext("list containers of runtime " + opts_.runtime->Name());
      last_list_status_ = s;
      Log(LogLevel::kWarn, s.message());
      plan_wakeup_ = kNever;
      Deliver();
      ScheduleAfterLoopWork();
      return;
    }
    executor_.PruneKills(*listed);
    PruneUnhealthy(*listed);
    std::map<std::string, std::string> addresses;
    for (const ContainerInfo& c : *listed) {
      if (!c.address.empty()) addresses[c.id] = c.address;
    }

    PlanInput in;
    in.node = opts_.node_name;
    in.now = now;
    in.containers = std::move(*listed);
    in.kills = executor_.kills();
    in.removes = executor_.removes();
    in.images = images_;
    in.unhealthy = unhealthy_;
    in.busy.assign(executor_.busy().begin(), executor_.busy().end());
    for (const ReplicaKey& key : settled_) {
      if (!executor_.busy().count(key)) in.busy.push_back(key);
    }
    // Replicas whose job ended while the list was taken are planned by the next pass.
    if (!settled_.empty()) pass_again_ = true;

    std::vector<ReplicaJob> jobs;
    std::vector<PullJob> pulls;
    HostsJob hosts;
    {
      std::lock_guard<std::mutex> lock(mu_);
      addresses_ = std::move(addresses);
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
      PlanOutput plan = internal::Plan(in);
      plan_wakeup_ = plan.next_wakeup;
      ApplyPlanLocked(&plan);
      jobs = JobsLocked(plan, now);
      pulls = PullsLocked(plan, now);
      ForgetUnusedImagesLocked();
      SyncProbesLocked(now);
      hosts = SyncHostsLocked();
    }
    SubmitHosts(std::move(hosts));
    for (ReplicaJob& job : jobs) Dispatch(std::move(job));
    for (PullJob& job : pulls) Dispatch(std::move(job));
    Flush();
    Deliver();
    ScheduleAfterLoopWork();
  }

  // The plan's status changes into memory, marked for the database, with its events.
  // Terminating workloads whose last container is gone (and that no Apply has brought
  // back meanwhile) are forgotten. REQUIRES: mu_ held.
  void ApplyPlanLocked(PlanOutput* plan) {
    for (ReplicaStatus& u : plan->status_updates) {
      ReplicaKey key(u.workload, u.index);
      if (!desired_.count(key.first)) continue;
      dirty_.insert(key);
      replicas_[key] = std::move(u);
    }
    for (const auto& key : plan->status_deletes) {
      if (replicas_.erase(key) > 0) dirty_.insert(key);
    }
    for (const std::string& name : plan->gone) {
      auto d = desired_.find(name);
      if (d == desired_.end() || d->second.deleted_at == 0) continue;
      desired_.erase(d);
      replicas_.erase(replicas_.lower_bound(ReplicaKey(name, 0)),
                      replicas_.lower_bound(ReplicaKey(name + '\0', 0)));
      dirty_purges_.insert(name);
      Event e;
      e.workload = name;
      e.type = "Deleted";
      e.message = "its last container is gone";
      plan->events.push_back(std::move(e));
    }
    QueueLocked(std::move(plan->events));
  }

  // What the loop knows of images no workload names any more goes (a pull in flight
  // stays until it reports). REQUIRES: mu_ held.
  void ForgetUnusedImagesLocked() {
    if (images_.empty()) return;
    std::set<std::string_view> used;
    for (const auto& [name, d] : desired_) used.insert(d.spec.image);
    for (auto it = images_.begin(); it != images_.end();) {
      it = it->second.pulling || used.count(it->first) ? std::next(it) : images_.erase(it);
    }
  }

  // The plan's actions as one job per replica. REQUIRES: mu_ held.
  std::vector<ReplicaJob> JobsLocked(const PlanOutput& plan, TimeMs now) {
    std::map<std::string, Template> templates;
    for (const Action& a : plan.actions) {
      auto d = desired_.find(a.workload);
      if (d != desired_.end() && d->second.deleted_at == 0 && !templates.count(a.workload)) {
        templates[a.workload] = Template{d->second.spec, d->second.hash};
      }
    }
    std::vector<ReplicaJob> jobs = SplitIntoJobs(plan, templates);
    std::optional<std::string> table;  // the names, made once for all creates
    for (ReplicaJob& job : jobs) {
      job.planned_at = now;
      if (job.tmpl && job.tmpl->spec.exclusive) LeaseCreates(&job);
      for (Action& a : job.actions) {
        if (a.type != Action::Type::kCreate || a.container.network != NetworkMode::kBridge)
          continue;
        if (!table) table = HostsTableLocked(nullptr);
        a.container.hosts = HostsFile(opts_.node_name, *table, a.container.hostname, "");
      }
    }
    return jobs;
  }

  // --- names on the bridge: each container's /etc/hosts ---
  //
  // Every bridge container of this node gets an /etc/hosts of petrel's that names the
  // ready replicas of the node's bridge workloads: "<workload>-<index>" and
  // "<workload>" for each, so the workload's name gives the first ready replica's
  // address, or all of them where the C library returns every line of a name (glibc
  // with "multi on"). A replica that stops being ready leaves every file at the next
  // rewrite, which follows the change on a worker. The alternative, a DNS responder on
  // the bridge, would be a server in petreld to keep up, bound to each node's bridge
  // address and reached through its firewall rules, for what a file a few hundred bytes
  // long does with no process and no port.
  //
  // A pass compares, per container, the generation of the names and its own line with
  // what it was given last: the files are made, and written, only when they changed.

  // The names: one line per ready replica of a bridge workload whose address is known,
  // in the order of workloads and indexes; the containers named go to `named`.
  // REQUIRES: mu_ held.
  std::string HostsTableLocked(std::set<std::string>* named) const {
    std::string table;
    ForEachBridgeContainerLocked(
        [&](const ReplicaKey& key, const ReplicaStatus& r, const Desired& d) {
          if (d.deleted_at != 0 || key.second >= d.spec.replicas) return;
          if (!d.spec.startup_probe.empty() || !d.spec.readiness_probe.empty()) {
            auto ready = ready_.find(key);
            if (ready == ready_.end() || ready->second != r.container_id) return;
          }
          auto address = addresses_.find(r.container_id);
          if (address == addresses_.end()) return;
          table += address->second + "\t" + key.first + "-" + std::to_string(key.second) + " " +
                   key.first + "\n";
          if (named) named->insert(r.container_id);
        });
    return table;
  }

  // Calls f(key, replica, desired) for each running container of a bridge workload, in
  // the order of workloads and indexes. REQUIRES: mu_ held.
  template <typename F>
  void ForEachBridgeContainerLocked(F f) const {
    for (const auto& [key, r] : replicas_) {
      if (r.phase != Phase::kRunning || r.container_id.empty()) continue;
      auto d = desired_.find(key.first);
      if (d == desired_.end() || d->second.spec.network != NetworkMode::kBridge) continue;
      f(key, r, d->second);
    }
  }

  // The whole /etc/hosts of the container called `hostname`: loopback, its own
  // `address` when it is not among the names (not ready yet; "" while unknown), then
  // the names.
  static std::string HostsFile(const std::string& node, const std::string& table,
                               const std::string& hostname, const std::string& address) {
    std::string f = "# petrel: names on the bridge network of node " + node +
                    ", rewritten as replicas become ready or stop being ready\n"
                    "127.0.0.1\tlocalhost\n"
                    "::1\tlocalhost ip6-localhost ip6-loopback\n";
    if (!address.empty()) f += address + "\t" + hostname + "\n";
    return f + table;
  }

  // What a SetHosts job writes: the names, and per container its id, name and own
  // address (see HostsFile).
  struct HostsWrite {
    std::string id, hostname, own_address;
  };
  struct HostsJobData {
    std::string table;
    uint64_t generation = 0;
    std::vector<HostsWrite> writes;
  };
  using HostsJob = std::shared_ptr<HostsJobData>;

  // The running bridge containers whose hosts are not what they should be, for
  // SubmitHosts; null when there are none, or while a job runs (a job for the names
  // that changed meanwhile follows it). REQUIRES: mu_ held.
  HostsJob SyncHostsLocked() {
    if (hosts_busy_) {
      hosts_again_ = true;
      return nullptr;
    }
    std::set<std::string> named;
    std::string table = HostsTableLocked(&named);
    if (table != hosts_table_) {
      hosts_table_ = std::move(table);
      hosts_generation_++;
    }
    auto job = std::make_shared<HostsJobData>();
    std::map<std::string, HostsGiven> kept;
    ForEachBridgeContainerLocked([&](const ReplicaKey& key, const ReplicaStatus& r,
                                     const Desired&) {
      auto address = addresses_.find(r.container_id);
      const std::string own = address == addresses_.end() || named.count(r.container_id)
                                  ? std::string()
                                  : address->second;
      auto had = hosts_given_.find(r.container_id);
      if (had != hosts_given_.end() && had->second.generation == hosts_generation_ &&
          had->second.own_address == own) {
        kept.insert(*had);
      } else {
        job->writes.push_back({r.container_id, key.first + "-" + std::to_string(key.second), own});
      }
    });
    hosts_given_ = std::move(kept);  // containers gone are forgotten
    if (job->writes.empty()) return nullptr;
    job->table = hosts_table_;
    job->generation = hosts_generation_;
    hosts_busy_ = true;
    return job;
  }

  // Runs SetHosts for each of `job`'s writes on a worker. REQUIRES: mu_ not held (a
  // worker pool without threads runs the job here).
  void SubmitHosts(HostsJob job) {
    if (!job) return;
    std::shared_ptr<ContainerRuntime> runtime = opts_.runtime;
    std::shared_ptr<Mailbox> mailbox = mailbox_;
    workers_->Submit([this, runtime, mailbox, job, node = opts_.node_name] {
      auto results = std::make_shared<std::vector<Status>>();
      for (const HostsWrite& w : job->writes) {
        results->push_back(
            runtime->SetHosts(w.id, HostsFile(node, job->table, w.hostname, w.own_address)));
      }
      mailbox->Post([this, job, results] { OnHostsSet(*job, *results); });
    });
  }

  void OnHostsSet(const HostsJobData& job, const std::vector<Status>& results) {
    HostsJob next;
    std::unique_lock<std::mutex> lock(mu_);
    hosts_busy_ = false;
    for (size_t i = 0; i < job.writes.size(); i++) {
      const Status& s = results[i];
      const Status::Code c = s.code();
      // Made before names (no hosts of petrel's), gone, or a runtime without: not
      // tried again until the names change. Anything else: at the next pass.
      if (s.ok() || c == Status::Code::kFailedPrecondition || c == Status::Code::kNotFound ||
          c == Status::Code::kNotSupported) {
        hosts_given_[job.writes[i].id] = {job.generation, job.writes[i].own_address};
      } else {
        Log(LogLevel::kWarn, s.WithContext("names of container " + job.writes[i].id).message());
      }
    }
    if (hosts_again_) {
      hosts_again_ = false;
      next = SyncHostsLocked();
    }
    lock.unlock();
    SubmitHosts(std::move(next));
  }
  // The exclusive lease on the containers `job` creates; not on the template (its hash):
  // it belongs to this node's cluster, not to the workload. REQUIRES: mu_ held.
  void LeaseCreates(ReplicaJob* job) const {
    if (exclusive_lease_.empty()) return;
    for (Action& a : job->actions) {
      if (a.type == Action::Type::kCreate) a.container.lease = exclusive_lease_;
    }
  }

  void SetExclusiveLease(const ContainerLease& lease) override {
    std::lock_guard<std::mutex> lock(mu_);
    exclusive_lease_ = lease;
  }

  // The plan's image pulls, each with the back-off of its first waiting workload.
  // REQUIRES: mu_ held.
  std::vector<PullJob> PullsLocked(const PlanOutput& plan, TimeMs now) {
    std::vector<PullJob> pulls;
    for (const PullRequest& request : plan.pulls) {
      PullJob job;
      job.request = request;
      job.planned_at = now;
      auto d = desired_.find(request.workloads.front());
      if (d != desired_.end()) job.backoff = d->second.spec.backoff;
      pulls.push_back(std::move(job));
    }
    return pulls;
  }

  void Dispatch(ReplicaJob job) {
    executor_.Started(job);
    OnWorker(std::move(job), RunReplicaJob, &OrchestratorImpl::OnReplicaJobDone);
  }

  void Dispatch(PullJob job) {
    ImageState& image = images_[job.request.image];
    image.pulling = true;
    // Called on the worker, a few times a second at most: one short lock, no wake-up.
    job.progress = [this, ref = job.request.image](const PullProgress& p) {
      std::lock_guard<std::mutex> lock(progress_mu_);
      progress_[ref] = p;
    };
    job.cancelled = PullsCancelled();
    std::vector<Event> events;
    for (const std::string& w : job.request.workloads) {
      events.push_back(WorkloadEvent(w, "Pulling", "image " + job.request.image));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      QueueLocked(std::move(events));
    }
    OnWorker(std::move(job), RunPullJob, &OrchestratorImpl::OnPullDone);
  }

  // PullOptions::cancelled for the pulls of this Orchestrator: true once it stops.
  std::function<bool()> PullsCancelled() const {
    return [flag = pulls_cancelled_] { return flag->load(); };
  }

  // Runs `run(runtime, &job)` on a worker, then `done(job)` here on the loop thread.
  template <typename Job>
  void OnWorker(Job job, void (*run)(ContainerRuntime*, Job*),
                void (OrchestratorImpl::*done)(const Job&)) {
    std::shared_ptr<ContainerRuntime> runtime = opts_.runtime;
    std::shared_ptr<Mailbox> mailbox = mailbox_;
    auto shared = std::make_shared<Job>(std::move(job));
    workers_->Submit([this, runtime, mailbox, shared, run, done] {
      run(runtime.get(), shared.get());
      mailbox->Post([this, shared, done] { (this->*done)(*shared); });
    });
  }

  static Event WorkloadEvent(const std::string& workload, const char* type, std::string message) {
    Event e;
    e.workload = workload;
    e.type = type;
    e.message = std::move(message);
    return e;
  }

  void OnReplicaJobDone(const ReplicaJob& job) {
    const TimeMs now = opts_.clock->Now();
    TimeMs retry = kNever;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::vector<Event> events;
      auto found = replicas_.find(job.key);
      ReplicaStatus status = found != replicas_.end() ? found->second : ReplicaStatus();
      retry = executor_.Record(job, now, &status, &events);
      auto d = desired_.find(job.key.first);
      if (d != desired_.end() && d->second.deleted_at == 0) {
        replicas_[job.key] = std::move(status);
        dirty_.insert(job.key);
      }
      QueueLocked(std::move(events));
      SyncProbesLocked(now);
    }
    // A Create that failed may have failed on its image (a file replaced since): the
    // next try pulls again first, and an image error is then reported as one.
    for (size_t i = 0; i < job.results.size(); i++) {
      const Action& a = job.actions[i];
      // A container removed or made anew is not the one a probe failed for, even
      // where the runtime reuses its name as its id.
      if ((a.type == Action::Type::kRemove || a.type == Action::Type::kCreate) &&
          job.results[i].status.ok()) {
        unhealthy_.erase(a.type == Action::Type::kRemove ? a.container_id
                                                         : job.results[i].container_id);
      }
      if (a.type == Action::Type::kCreate && !job.results[i].status.ok() &&
          job.results[i].container_id.empty()) {
        images_[a.container.image].ready = false;
      }
    }
    settled_.insert(job.key);
    plan_wakeup_ = std::min(plan_wakeup_, retry);
    Flush();
    Deliver();
    if (threaded()) StartPass();
  }

  void OnPullDone(const PullJob& job) {
    const TimeMs now = opts_.clock->Now();
    const std::string& ref = job.request.image;
    ImageState& image = images_[ref];
    image.pulling = false;
    pulls_finished_ = true;
    {
      std::lock_guard<std::mutex> lock(progress_mu_);
      progress_.erase(ref);
    }
    std::vector<Event> events;
    if (job.status.ok()) {
      image = ImageState();
      image.ready = true;
      image.pulled_at = job.planned_at;
      for (const std::string& w : job.request.workloads) {
        events.push_back(WorkloadEvent(
            w, "Pulled", "image " + ref + " in " + FormatDurationMs(now - job.planned_at)));
      }
    } else {
      image.ready = false;
      image.failures++;
      int64_t delay = BackoffDelayMs(job.backoff, image.failures);
      image.next_retry = now + delay;
      image.message = "image " + job.status.message() + "; retry in " + FormatDurationMs(delay);
      plan_wakeup_ = std::min(plan_wakeup_, image.next_retry);
      for (const std::string& w : job.request.workloads) {
        events.push_back(WorkloadEvent(w, "Failed", image.message));
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      QueueLocked(std::move(events));
    }
    Flush();
    Deliver();
    if (threaded()) StartPass();
  }

  // After loop work outside a pass's end: runs the pass that was asked for meanwhile,
  // else sets the timer for the next one (threaded modes; Step asks by itself).
  void ScheduleAfterLoopWork() {
    if (!threaded() || handles_ == nullptr) return;
    if (pass_again_ && !listing_) {
      StartPass();
      return;
    }
    if (listing_) return;  // OnListed schedules
    TimeMs delay = std::max<TimeMs>(0, PassWakeup() - opts_.clock->Now());
    ScheduleTimer(delay);
    ScheduleProbeTimer();
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

  // --- health probes (lib/probe): checks beside the loop, results decided here ---

  // The running replicas' containers and their probes, to the Prober; the ready set
  // follows. REQUIRES: mu_ held.
  void SyncProbesLocked(TimeMs now) {
    std::vector<ProbeTarget> targets;
    for (const auto& [key, r] : replicas_) {
      if (r.phase != Phase::kRunning || r.container_id.empty()) continue;
      auto d = desired_.find(key.first);
      if (d == desired_.end() || d->second.deleted_at != 0) continue;
      const WorkloadSpec& spec = d->second.spec;
      if (key.second >= spec.replicas) continue;
      if (spec.liveness_probe.empty() && spec.readiness_probe.empty() &&
          spec.startup_probe.empty()) {
        continue;
      }
      ProbeTarget t;
      t.key = key;
      t.container_id = r.container_id;
      t.pid = r.pid;
      t.running_since = r.since;
      t.startup = spec.startup_probe;
      t.liveness = spec.liveness_probe;
      t.readiness = spec.readiness_probe;
      targets.push_back(std::move(t));
    }
    if (prober_.Sync(targets, now)) ready_ = prober_.ReadyContainers();
    probe_due_ = prober_.NextDue();
    for (auto it = probe_netns_.begin(); it != probe_netns_.end();) {
      bool probed = std::any_of(targets.begin(), targets.end(), [&](const ProbeTarget& t) {
        return t.container_id == it->first && t.pid == it->second.pid;
      });
      it = probed ? std::next(it) : probe_netns_.erase(it);
    }
  }

  // A socket in the network namespace of the probed container, from the namespace kept
  // open for it: opened once per container, not once per check (a tenth of what a
  // check cost).
  Result<int> ProbeSocket(const ProbeCheck& check) {
    auto it = probe_netns_.find(check.container_id);
    if (it == probe_netns_.end() || it->second.pid != check.pid) {
      PETREL_RETURN_IF_ERROR(OpenProbeNetns(check));
      it = probe_netns_.find(check.container_id);
    }
    return opts_.port->SocketInNetns(it->second.fd.get(), SOCK_STREAM);
  }

  // (Re)opens the namespace of the probed container; NotFound when its process is gone.
  Status OpenProbeNetns(const ProbeCheck& check) {
    probe_netns_.erase(check.container_id);
    Result<int> fd = opts_.port->OpenNetnsOf(check.pid);
    if (!fd.ok()) return fd.status();
    ProbeNetns& ns = probe_netns_[check.container_id];
    ns.pid = check.pid;
    ns.fd.reset(*fd);
    return Status::OK();
  }

  // Starts the checks that are due: an exec through the runtime on a worker; a
  // tcpSocket or httpGet on `loop`, from a socket made in the container's network
  // namespace.
  void RunDueProbes(uv_loop_t* loop) {
    for (ProbeCheck& check : prober_.TakeDue(opts_.clock->Now())) {
      std::shared_ptr<ContainerRuntime> runtime = opts_.runtime;
      std::shared_ptr<Mailbox> mailbox = mailbox_;
      auto shared = std::make_shared<ProbeCheck>(std::move(check));
      if (shared->probe.kind == ProbeSpec::Kind::kExec) {
        std::shared_ptr<Port> port = opts_.port;
        workers_->Submit([this, runtime, port, mailbox, shared] {
          auto result =
              std::make_shared<ProbeResult>(ExecCheck(runtime.get(), port.get(), *shared));
          mailbox->Post([this, shared, result] { OnProbeResult(*shared, *result); });
        });
        continue;
      }
      // The socket is made here: a few system calls (Port::SocketInNetns).
      Result<int> fd = ProbeSocket(*shared);
      if (!fd.ok()) {
        // Reported from the mailbox, as every result is, never inside TakeDue's loop.
        ProbeResult r = fd.status().code() == Status::Code::kNotFound
                            ? ProbeResult::Gone()
                            : ProbeResult::Failure(fd.status().message());
        mailbox->Post([this, shared, r] { OnProbeResult(*shared, r); });
        continue;
      }
      net_checks_.Start(loop, *fd, shared->probe, [this, shared](const ProbeResult& r) {
        // The namespace kept open outlives the container: a check of one that has just
        // exited is refused there, which is no failure of the probe. The process is
        // looked up again, as a check without a kept namespace would.
        if (r.outcome == ProbeResult::Outcome::kFailure) {
          if (OpenProbeNetns(*shared).code() == Status::Code::kNotFound) {
            OnProbeResult(*shared, ProbeResult::Gone());
            return;
          }
        }
        OnProbeResult(*shared, r);
      });
    }
    probe_due_ = prober_.NextDue();
  }

  // An exec check, on a worker: exit code 0 passes.
  static ProbeResult ExecCheck(ContainerRuntime* runtime, Port* port, const ProbeCheck& check) {
    ExecOptions options;
    options.command = check.probe.command;
    options.timeout_ms = check.probe.timeout_ms;
    options.output_limit = 1024;
    Result<ExecResult> r = runtime->Exec(check.container_id, options);
    std::string failure;
    if (!r.ok()) {
      Status::Code code = r.status().code();
      if (code == Status::Code::kNotFound || code == Status::Code::kFailedPrecondition) {
        return ProbeResult::Gone();  // it exited meanwhile: the exit is the news
      }
      failure = code == Status::Code::kDeadlineExceeded
                    ? "timed out after " + FormatDurationMs(check.probe.timeout_ms)
                    : r.status().message();
    } else if (r->exit_code == 0) {
      return ProbeResult::Success();
    } else {
      std::string out = r->output.substr(0, r->output.find_last_not_of("\r\n") + 1);
      size_t last_line = out.find_last_of('\n');
      if (last_line != std::string::npos) out = out.substr(last_line + 1);
      if (out.size() > 200) out = out.substr(0, 200) + "...";
      failure = "exit code " + std::to_string(r->exit_code) + (out.empty() ? "" : ": " + out);
    }
    // The container may have exited while the check ran: the runtime could not enter it
    // (runc: "error executing setns process"; dockerd: exit code 126, "cannot exec in a
    // stopped state"), or the command died with it. It is looked up again, as for a
    // network check, so that only a container still running fails its probe: first
    // the runtime's word, then its process, which the runtime may still call running
    // for a moment after it exited (a zombie its shim has not reaped, whose namespaces
    // are gone: what runc's setns met).
    Result<ContainerInfo> info = runtime->Inspect(check.container_id);
    if (info.ok() ? info->state != ContainerState::kRunning
                  : info.status().code() == Status::Code::kNotFound) {
      return ProbeResult::Gone();
    }
    if (port != nullptr && check.pid > 0) {
      Result<int> ns = port->OpenNetnsOf(check.pid);
      if (ns.ok()) close(*ns);
      if (ns.status().code() == Status::Code::kNotFound) return ProbeResult::Gone();
    }
    return ProbeResult::Failure(failure);
  }

  void OnProbeResult(const ProbeCheck& check, const ProbeResult& result) {
    ProbeNews news = prober_.Report(check, result, opts_.clock->Now());
    if (!news.kill_reason.empty()) {
      unhealthy_[check.container_id] = {ProbeTypeName(check.type), news.kill_reason};
      probe_wants_pass_ = true;
    }
    if (news.ready_changed || !news.events.empty()) {
      HostsJob hosts;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (news.ready_changed) {
          ready_ = prober_.ReadyContainers();
          hosts = SyncHostsLocked();
        }
        QueueLocked(std::move(news.events));
      }
      SubmitHosts(std::move(hosts));
    }
    probe_due_ = prober_.NextDue();
    if (!threaded()) return;  // Step flushes, delivers and passes after its probes
    if (news.ready_changed || !news.events.empty() || !news.kill_reason.empty()) {
      Flush();
      Deliver();
    }
    if (probe_wants_pass_) {
      probe_wants_pass_ = false;
      StartPass();
    }
    ScheduleProbeTimer();
  }

  // Step's probes: those due now, run to their end on a loop of their own. Returns
  // whether one failed so that its container must be killed (a pass is due).
  bool ProbeStep() {
    if (prober_.size() == 0) return false;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) return false;
    RunDueProbes(&loop);
    mailbox_->Drain();  // exec results, and the sockets of net checks, which start now
    uv_run(&loop, UV_RUN_DEFAULT);
    mailbox_->Drain();
    net_checks_.CancelAll();  // none in flight: closes the watcher of their sockets
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    Flush();
    Deliver();
    bool pass = probe_wants_pass_;
    probe_wants_pass_ = false;
    return pass;
  }

  void ScheduleProbeTimer() {
    if (!threaded() || handles_ == nullptr) return;
    if (probe_due_ == kNever) {
      uv_timer_stop(&handles_->probe_timer);
      return;
    }
    TimeMs delay = std::max<TimeMs>(0, probe_due_ - opts_.clock->Now());
    uv_timer_start(
        &handles_->probe_timer,
        [](uv_timer_t* t) {
          auto* self = static_cast<OrchestratorImpl*>(t->data);
          self->RunDueProbes(t->loop);
          self->ScheduleProbeTimer();
        },
        static_cast<uint64_t>(delay), 0);
  }

  // Kill reasons of containers that are gone are forgotten.
  void PruneUnhealthy(const std::vector<ContainerInfo>& listed) {
    if (unhealthy_.empty()) return;
    std::unordered_map<std::string, Unhealthy> still;
    for (const ContainerInfo& c : listed) {
      auto it = unhealthy_.find(c.id);
      if (it != unhealthy_.end()) still.insert(*it);
    }
    unhealthy_.swap(still);
  }

  // --- loop plumbing ---

  // The Mailbox's eventfd wakes the loop for letters and for Wake() (workers.h says
  // why not uv_async_t).
  Status InitHandles(uv_loop_t* loop) {
    handles_ = new LoopHandles();
    int rc = uv_poll_init(loop, &handles_->mail, mailbox_->fd());
    if (rc != 0) {
      delete handles_;
      handles_ = nullptr;
      return Status::Internal(std::string("orchestrator: uv_poll_init: ") + uv_strerror(rc));
    }
    uv_timer_init(loop, &handles_->timer);
    uv_timer_init(loop, &handles_->probe_timer);
    handles_->mail.data = this;
    handles_->timer.data = this;
    handles_->probe_timer.data = this;
    uv_poll_start(&handles_->mail, UV_READABLE, [](uv_poll_t* h, int, int) {
      static_cast<OrchestratorImpl*>(h->data)->OnAsync();
    });
    ScheduleTimer(0);
    return Status::OK();
  }

  void CloseHandles() {
    uv_timer_stop(&handles_->timer);
    uv_timer_stop(&handles_->probe_timer);
    net_checks_.CancelAll();
    handles_->mail.data = handles_;
    handles_->timer.data = handles_;
    handles_->probe_timer.data = handles_;
    // A poll handle stops watching its descriptor here, not in a later callback.
    uv_close(reinterpret_cast<uv_handle_t*>(&handles_->mail), OnHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&handles_->timer), OnHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&handles_->probe_timer), OnHandleClosed);
    handles_ = nullptr;
  }

  void OnAsync() {
    if (stopping_) {
      CloseHandles();
      return;
    }
    mailbox_->Drain();
    if (handles_ == nullptr) return;
    if (wake_pending_) {
      StartPass();
    } else {
      Deliver();
    }
  }

  void ScheduleTimer(TimeMs delay) {
    uv_timer_start(
        &handles_->timer,
        [](uv_timer_t* t) { static_cast<OrchestratorImpl*>(t->data)->StartPass(); },
        static_cast<uint64_t>(delay), 0);
  }

  Options opts_;
  std::unique_ptr<DirLock> lock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<StoreWriter> writer_;
  std::shared_ptr<Waker> waker_;
  // Jobs report here; the loop thread drains it. Shared with the jobs, which may
  // outlive a pass (never the Orchestrator: its destructor waits for them).
  std::shared_ptr<Mailbox> mailbox_;
  // Set by Detach and the destructor: pulls in flight stop (PullOptions::cancelled)
  // rather than hold the shutdown for as long as a download takes.
  std::shared_ptr<std::atomic<bool>> pulls_cancelled_ = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<WorkerPool> workers_;     // replica jobs and image pulls
  std::unique_ptr<WorkerPool> lister_;      // List, one at a time
  std::unique_ptr<WorkerPool> store_pool_;  // StoreWriter::Flush, one at a time

  std::mutex mu_;  // guards everything below up to exclusive_lease_
  std::map<std::string, Desired> desired_;
  std::map<ReplicaKey, ReplicaStatus> replicas_;
  std::set<ReplicaKey> dirty_;          // replica rows changed since the last batch
  std::set<std::string> dirty_purges_;  // forgotten workloads not yet purged
  int64_t next_seq_ = 1;
  std::vector<Event> undelivered_;
  std::string pending_error_;       // a store failure for the log sink, "" when none
  ContainerLease exclusive_lease_;  // SetExclusiveLease
  // The ready container of each replica with a startup or readiness probe
  // (Prober::ReadyContainers), for Get and List.
  std::map<ReplicaKey, std::string> ready_;
  // Names (SyncHostsLocked): each bridge container's address as last listed, by
  // container id; the names and their generation; what each container was last given;
  // whether a SetHosts job runs, and whether the names changed meanwhile.
  std::map<std::string, std::string> addresses_;
  std::string hosts_table_;
  uint64_t hosts_generation_ = 0;
  struct HostsGiven {
    uint64_t generation = 0;
    std::string own_address;
  };
  std::map<std::string, HostsGiven> hosts_given_;
  bool hosts_busy_ = false;
  bool hosts_again_ = false;

  std::mutex sub_mu_;
  std::map<SubscriptionId, std::shared_ptr<EventCallback>> subscribers_;
  SubscriptionId next_sub_ = 1;

  // Loop thread only.
  Mode mode_ = Mode::kIdle;
  Executor executor_;
  Prober prober_;
  NetChecker net_checks_;
  struct ProbeNetns {
    pid_t pid = 0;
    UniqueFd fd;
  };
  std::map<std::string, ProbeNetns> probe_netns_;  // container id -> its namespace, kept open
  TimeMs probe_due_ = kNever;
  std::unordered_map<std::string, Unhealthy> unhealthy_;  // PlanInput::unhealthy
  bool probe_wants_pass_ = false;                         // a probe failed since the last pass
  std::unordered_map<std::string, ImageState> images_;
  // The latest progress of each pull in flight, by image: written by the pulls' workers,
  // read by Get and List; memory only, never stored.
  mutable std::mutex progress_mu_;
  std::unordered_map<std::string, PullProgress> progress_;
  bool listing_ = false;          // a List runs; its result makes the pass
  bool pass_again_ = false;       // another pass was asked for while listing
  std::set<ReplicaKey> settled_;  // replicas whose job ended since the current List began
  bool pulls_finished_ = false;   // Step: a pull ended during the last pass
  Status last_list_status_;
  TimeMs last_pass_ = 0;
  TimeMs plan_wakeup_ = kNever;
  uv_loop_t own_loop_{};
  std::thread thread_;
  LoopHandles* handles_ = nullptr;
  std::atomic<bool> wake_pending_{false};
  std::atomic<bool> stopping_{false};
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
  return ValidateNodeName(name).ok() ? name : "node";
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
