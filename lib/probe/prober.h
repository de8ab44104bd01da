// Prober: the bookkeeping of health probes (WorkloadSpec's liveness, readiness and
// startup probes), on the loop thread.
//
//   Sync(running containers, now)      which containers have probes, with which specs
//   TakeDue(now) -> checks to run      the orchestrator runs them beside the loop
//   Report(check, result, now) -> news ready flips, kills, events
//
// Pure like Plan: no I/O and no clock, so thresholds, delays and the startup gate are
// unit-tested on values. The orchestrator runs each check (an exec through
// ContainerRuntime::Exec on a worker, tcpSocket and httpGet with RunNetCheck on the
// loop) and reports what it found.
//
// Rules, as Kubernetes' kubelet has them:
//  - A container's probes start when it is first seen running; each first checks
//    initial_delay_ms after that, then at each multiple of period_ms (on the clock,
//    never more than a period after the start of its last check), so that the probes
//    of one period fall due together and are made in one wake-up of the loop. Only
//    one check of a probe is in flight at a time.
//  - The startup probe, while it has not passed, holds the other two back. It passes
//    on its first success; failure_threshold failures in a row kill the container.
//  - Liveness starts passing; failure_threshold failures in a row kill the container.
//    After a kill, a container is probed no more.
//  - Readiness starts failing; success_threshold successes in a row make the replica
//    ready, failure_threshold failures in a row not ready again.
//  - A result that says the container is gone (kGone: it exited meanwhile) counts for
//    nothing: the exit itself is the news, and the plan handles it once.
//
// Thread-safety: none; one thread (the loop's) uses a Prober.
#ifndef PETREL_LIB_PROBE_PROBER_H_
#define PETREL_LIB_PROBE_PROBER_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "petrel/spec.h"

namespace petrel::internal {

enum class ProbeType { kStartup, kLiveness, kReadiness };
const char* ProbeTypeName(ProbeType type);  // "startup", "liveness", "readiness"

// A replica's container that runs, with the probes its workload asks for.
struct ProbeTarget {
  std::pair<std::string, int> key;  // (workload, replica index)
  std::string container_id;
  int pid = 0;
  TimeMs running_since = 0;  // when it was first seen running
  ProbeSpec startup, liveness, readiness;
};

// One check to make.
struct ProbeCheck {
  std::pair<std::string, int> key;
  std::string container_id;
  int pid = 0;
  ProbeType type = ProbeType::kLiveness;
  ProbeSpec probe;
  uint64_t seq = 0;  // told apart from a later check of the same probe
};

// What one check found.
struct ProbeResult {
  enum class Outcome { kSuccess, kFailure, kGone };
  Outcome outcome = Outcome::kFailure;
  std::string message;  // kFailure: why, one line ("connect 127.0.0.1:80: connection refused")

  static ProbeResult Success() { return {Outcome::kSuccess, ""}; }
  static ProbeResult Failure(std::string why) { return {Outcome::kFailure, std::move(why)}; }
  static ProbeResult Gone() { return {Outcome::kGone, ""}; }
};

// What a result changed.
struct ProbeNews {
  bool ready_changed = false;  // ReadyContainers() differs from before
  // Not empty: kill this container (its liveness or startup probe failed) for this
  // reason, e.g. "liveness probe failed 3 times in a row: HTTP 500".
  std::string kill_reason;
  std::vector<Event> events;  // about the replica; seq and time left to the caller
};

class Prober {
 public:
  // The containers to probe from now on: those of `targets` that have a probe. Probes
  // of other containers are forgotten (a result still in flight for one is then
  // dropped by Report). A probe whose spec changed starts over. Returns whether
  // ReadyContainers() changed.
  bool Sync(const std::vector<ProbeTarget>& targets, TimeMs now);
  // The checks due by `now`, each marked in flight until reported.
  std::vector<ProbeCheck> TakeDue(TimeMs now);
  // Records the result of a check TakeDue gave.
  ProbeNews Report(const ProbeCheck& check, const ProbeResult& result, TimeMs now);
  // When the next check is due (kNever-like max when none).
  TimeMs NextDue() const;
  // The ready container of each replica that has a readiness or startup probe. A
  // replica without either is ready while it runs: the orchestrator knows that alone.
  const std::map<std::pair<std::string, int>, std::string>& ReadyContainers() const {
    return ready_;
  }
  size_t size() const { return containers_.size(); }

 private:
  struct State {
    ProbeSpec spec;
    bool passing = false;
    int successes = 0, failures = 0;  // in a row
    TimeMs next_due = 0;
    uint64_t in_flight = 0;  // seq of the check in flight, 0 when none
    std::string last_failure;
  };
  struct Container {
    std::string id;
    int pid = 0;
    TimeMs running_since = 0;
    bool killed = false;
    State startup, liveness, readiness;
    bool Ready() const;
  };

  static void Reset(State* s, const ProbeSpec& spec, ProbeType type, TimeMs running_since);
  static State* Of(Container* c, ProbeType type);
  void UpdateReady(const std::pair<std::string, int>& key, const Container& c, ProbeNews* news);

  std::map<std::pair<std::string, int>, Container> containers_;
  std::map<std::pair<std::string, int>, std::string> ready_;
  uint64_t next_seq_ = 1;
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_PROBE_PROBER_H_
