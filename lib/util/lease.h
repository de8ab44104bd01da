// Container leases (ContainerSpec::lease, petrel/runtime.h): the one place that knows
// the file's format, for the side that renews it (the cluster) and the sides that
// enforce it (the crun shim, the fake runtime).
//
// The file: "<ms of the renewal, CLOCK_MONOTONIC>\n", replaced whole through a rename at
// each renewal, so a reader never sees half of one value. Monotonic, not wall time: a
// wall clock set back (NTP, a device booting without an RTC) must neither stretch nor
// cut short a lease. Both sides run on one host and so read the same monotonic clock,
// also across PID namespaces.
//
// Thread-safety: pure functions; the file functions are safe to call from any thread.
#ifndef PETREL_LIB_UTIL_LEASE_H_
#define PETREL_LIB_UTIL_LEASE_H_

#include <cstdint>
#include <string>

#include "petrel/spec.h"

namespace petrel::internal {

// The text of a lease renewed at `renewed_at`.
std::string LeaseText(TimeMs renewed_at);

// When the lease file at `path` was last renewed; -1 when it cannot be told (missing,
// unreadable, not a number). One open and one read. ASYNC-SIGNAL-SAFE: for the shim,
// between fork() and exit.
TimeMs ReadLease(const char* path);

// Now on the lease's clock (CLOCK_MONOTONIC, in ms). ASYNC-SIGNAL-SAFE.
TimeMs LeaseClockNow();

// True when a lease of `duration_ms` last renewed at `renewed_at` (-1: unknown) has
// run out at `now`.
inline bool LeaseExpired(TimeMs renewed_at, int64_t duration_ms, TimeMs now) {
  return renewed_at < 0 || now - renewed_at >= duration_ms;
}

// Whether `dir` is in memory (tmpfs, ramfs): a lease renewed every heartbeat must not
// wear flash.
bool InMemory(const std::string& dir);

// The lease file of node `node` whose state is in `state_dir`, under `dir`:
// "<dir>/<node>-<16 hex digits of the state dir's absolute path>.lease". Several nodes
// of one host (petrel's local cluster: one /run, a PID namespace each) get one each.
std::string LeaseFileOf(const std::string& dir, const std::string& node,
                        const std::string& state_dir);

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_LEASE_H_
