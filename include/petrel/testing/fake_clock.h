// FakeClock: a Clock that moves only when told, with random numbers that are the same
// on every run. Thread-safe.
#ifndef PETREL_TESTING_FAKE_CLOCK_H_
#define PETREL_TESTING_FAKE_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "petrel/clock.h"

namespace petrel::testing {

class FakeClock final : public Clock {
 public:
  // 2023-11-14T22:13:20Z: far from 0 so "0 = unset" never collides with a real time.
  static constexpr TimeMs kDefaultStart = 1'700'000'000'000;
  // Where Monotonic() starts: as if the machine had booted a day ago.
  static constexpr TimeMs kMonotonicStart = 86'400'000;
  // The seed Random() starts from unless Seed() is called.
  static constexpr uint64_t kDefaultSeed = 0x5eed;

  explicit FakeClock(TimeMs start = kDefaultStart) : now_(start) {}
  TimeMs Now() override { return now_.load(); }
  TimeMs Monotonic() override { return monotonic_.load(); }
  // SplitMix64 over an atomic counter: a deterministic sequence for a given seed,
  // whichever threads draw from it.
  uint64_t Random() override {
    uint64_t z = state_.fetch_add(kGamma) + kGamma;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Moves both clocks forward by `ms`. REQUIRES: ms >= 0 (time does not go back; to
  // turn the wall clock back, as NTP may, use Set).
  void Advance(int64_t ms) {
    now_.fetch_add(ms);
    monotonic_.fetch_add(ms);
  }
  // Sets the wall clock alone, forward or back; Monotonic() does not move.
  void Set(TimeMs t) { now_.store(t); }
  // Restarts Random()'s sequence from `seed`.
  void Seed(uint64_t seed) { state_.store(seed); }

 private:
  static constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ULL;
  std::atomic<TimeMs> now_;
  std::atomic<TimeMs> monotonic_{kMonotonicStart};
  std::atomic<uint64_t> state_{kDefaultSeed};
};

}  // namespace petrel::testing

#endif  // PETREL_TESTING_FAKE_CLOCK_H_
