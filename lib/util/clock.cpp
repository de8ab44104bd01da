#include "petrel/clock.h"

#include <time.h>

#include <random>

namespace petrel {
namespace {

TimeMs Read(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return static_cast<TimeMs>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

class RealClock final : public Clock {
 public:
  TimeMs Now() override { return Read(CLOCK_REALTIME); }
  TimeMs Monotonic() override { return Read(CLOCK_MONOTONIC); }
  // One generator per thread, each seeded from the kernel (getrandom through
  // std::random_device): no lock, and no two threads share a sequence.
  uint64_t Random() override {
    thread_local std::mt19937_64 generator = [] {
      std::random_device kernel;
      std::seed_seq seed{kernel(), kernel(), kernel(), kernel()};
      return std::mt19937_64(seed);
    }();
    return generator();
  }
};

}  // namespace

std::shared_ptr<Clock> SystemClock() {
  static const std::shared_ptr<Clock> clock = std::make_shared<RealClock>();
  return clock;
}

}  // namespace petrel
