// Clock: the only source of time and randomness in petrel (raft's raft_io does the
// same): lib/ and the runtime adapters read neither the system's clocks nor its random
// numbers directly, so tests use petrel::testing::FakeClock, never sleep, and get the
// same "random" numbers on every run.
//
// Thread-safety: every method may be called from any thread.
#ifndef PETREL_CLOCK_H_
#define PETREL_CLOCK_H_

#include <cstdint>
#include <memory>

#include "petrel/spec.h"

namespace petrel {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock milliseconds since the Unix epoch: for times that are shown and stored.
  // It may jump either way (NTP, an operator, a device without an RTC booting in 1970).
  // petrel's back-off deadlines and grace periods are wall times today, because they
  // are stored and must outlive a restart: a jump shortens or stretches those waits.
  // A duration that lives in memory only belongs on Monotonic().
  virtual TimeMs Now() = 0;
  // Milliseconds since some fixed point of this Clock (the boot, for SystemClock): for
  // durations, timeouts and deadlines. Never goes back and does not jump with the wall
  // clock. Values mean nothing across Clocks or across reboots.
  virtual TimeMs Monotonic() = 0;
  // 64 random bits, uniformly distributed: jitter for back-off, raft's election
  // timeouts. Not for secrets (keys, tokens).
  virtual uint64_t Random() = 0;
};

// The system's clocks (CLOCK_REALTIME, CLOCK_MONOTONIC) and a pseudo-random generator
// seeded from the kernel's random source; one object shared by every caller.
std::shared_ptr<Clock> SystemClock();

}  // namespace petrel

#endif  // PETREL_CLOCK_H_
