// FakeClock: a Clock that moves only when told. Thread-safe.
#ifndef PETREL_TESTING_FAKE_CLOCK_H_
#define PETREL_TESTING_FAKE_CLOCK_H_

#include <atomic>

#include "petrel/clock.h"

namespace petrel::testing {

class FakeClock final : public Clock {
 public:
  // 2023-11-14T22:13:20Z: far from 0 so "0 = unset" never collides with a real time.
  static constexpr TimeMs kDefaultStart = 1'700'000'000'000;

  explicit FakeClock(TimeMs start = kDefaultStart) : now_(start) {}
  TimeMs Now() override { return now_.load(); }
  void Advance(int64_t ms) { now_.fetch_add(ms); }
  void Set(TimeMs t) { now_.store(t); }

 private:
  std::atomic<TimeMs> now_;
};

}  // namespace petrel::testing

#endif  // PETREL_TESTING_FAKE_CLOCK_H_
