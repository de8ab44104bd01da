// Container leases (ContainerSpec::lease, petrel/runtime.h): the one place that knows
// the file's format, for the side that renews it (the cluster) and the sides that
// enforce it (the crun shim, containerd's logger, the fake runtime, and WatchLease's
// process for Docker).
//
// The file: "<ms of the renewal, CLOCK_MONOTONIC>\n", replaced whole through a rename at
// each renewal, so a reader never sees half of one value. Monotonic, not wall time: a
// wall clock set back (NTP, a device booting without an RTC) must neither stretch nor
// cut short a lease. Both sides run on one host and so read the same monotonic clock,
// also across PID namespaces.
//
// Thread-safety: pure functions; the file functions and WatchLease are safe to call from
// any thread.
#ifndef PETREL_LIB_UTIL_LEASE_H_
#define PETREL_LIB_UTIL_LEASE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "petrel/runtime.h"
#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrel::internal {

// The text of a lease renewed at `renewed_at`.
std::string LeaseText(TimeMs renewed_at);

// When the lease file at `path` was last renewed; -1 when it cannot be told (missing,
// unreadable, not a number). One open and one read. ASYNC-SIGNAL-SAFE: for the shim,
// between fork() and exit.
TimeMs ReadLease(const char* path);

// How often a process enforcing a lease reads its file (one open and read on tmpfs),
// besides at the moment it would run out.
inline constexpr int64_t kLeaseCheckMs = 100;

// Now on the lease's clock (CLOCK_MONOTONIC, in ms). ASYNC-SIGNAL-SAFE.
TimeMs LeaseClockNow();

// True when a lease of `duration_ms` last renewed at `renewed_at` (-1: unknown) has
// run out at `now`.
inline bool LeaseExpired(TimeMs renewed_at, int64_t duration_ms, TimeMs now) {
  return renewed_at < 0 || now - renewed_at >= duration_ms;
}

// When a process enforcing a lease looks at its file next, having found it at `now`
// renewed at `renewed_at` and not run out: at the moment it would run out if not
// renewed again, or kLeaseCheckMs on, whichever comes first. The one rule of the crun
// shim, containerd's logger and WatchLease's watcher. ASYNC-SIGNAL-SAFE.
inline TimeMs NextLeaseLook(TimeMs renewed_at, int64_t duration_ms, TimeMs now) {
  const TimeMs runs_out = renewed_at + duration_ms;
  return runs_out < now + kLeaseCheckMs ? runs_out : now + kLeaseCheckMs;
}

// Whether `dir` is in memory (tmpfs, ramfs): a lease renewed every heartbeat must not
// wear flash.
bool InMemory(const std::string& dir);

// The lease file of node `node` whose state is in `state_dir`, under `dir`:
// "<dir>/<node>-<16 hex digits of the state dir's absolute path>.lease". Several nodes
// of one host (petrel's local cluster: one /run, a PID namespace each) get one each.
std::string LeaseFileOf(const std::string& dir, const std::string& node,
                        const std::string& state_dir);

// A lease enforced on a process petrel neither started nor parents (a Docker container's
// init), for runtimes with no process of petrel's own beside each container.
struct LeaseWatchPlan {
  ContainerLease lease;   // not empty
  int pid = 0;            // the process to SIGKILL (a container's init: its PID namespace)
  std::string lock_file;  // one per watched process; created 0600
  std::string said_file;  // appended to (created 0640) with what the watcher did
};

// Starts the watcher of `plan`: a fork of this process (no binary to ship, nothing
// exec'd), cut loose from petrel (a session of its own, nobody's child in petrel, none
// of petrel's fds open: its state-dir lock above all), that holds `plan.pid` by a
// pidfd, reads the lease every kLeaseCheckMs and at the moment it would run out, and
// once it has run out SIGKILLs the process and appends one line to said_file:
// "petrel-lease: lease PATH ran out: killed the container". It ends when the process
// ends, so it never signals a pid reused later, and lives on while petrel is down.
//
// At most one per process: the watcher holds an flock on lock_file for its life. A call
// that finds it held starts none and returns OK, so this may be called again for the
// same process (at each adoption).
//
// `confirm` is called once the pidfd is open and before the fork: it must return OK
// only if plan.pid is still the process meant (asked again of whoever told the pid),
// so a pid reused between the telling and the pidfd is never watched. NotFound when
// the process has ended (before or per `confirm`); the errno of what failed otherwise.
Status WatchLease(const LeaseWatchPlan& plan, const std::function<Status()>& confirm);

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_LEASE_H_
