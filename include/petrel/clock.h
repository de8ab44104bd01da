// Clock: the only source of time in petrel. Tests use petrel::testing::FakeClock
// and never sleep.
#ifndef PETREL_CLOCK_H_
#define PETREL_CLOCK_H_

#include <memory>

#include "petrel/spec.h"

namespace petrel {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock milliseconds since the Unix epoch. Thread-safe.
  virtual TimeMs Now() = 0;
};

// The system's real-time clock.
std::shared_ptr<Clock> SystemClock();

}  // namespace petrel

#endif  // PETREL_CLOCK_H_
