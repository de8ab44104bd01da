// Tests of the Clock seam: FakeClock's two clocks and its seeded random numbers, and
// SystemClock's monotonic time and random source.
#include "petrel/clock.h"

#include <doctest/doctest.h>
#include <time.h>

#include <set>
#include <thread>
#include <vector>

#include "petrel/testing/fake_clock.h"

namespace petrel {
namespace {

using testing::FakeClock;

std::vector<uint64_t> Draw(Clock* clock, int n) {
  std::vector<uint64_t> out;
  for (int i = 0; i < n; i++) out.push_back(clock->Random());
  return out;
}

TEST_SUITE("clock") {
  TEST_CASE("FakeClock: Advance moves both clocks, Set only the wall clock") {
    FakeClock clock;
    CHECK(clock.Now() == FakeClock::kDefaultStart);
    CHECK(clock.Monotonic() == FakeClock::kMonotonicStart);
    clock.Advance(1500);
    CHECK(clock.Now() == FakeClock::kDefaultStart + 1500);
    CHECK(clock.Monotonic() == FakeClock::kMonotonicStart + 1500);
    clock.Set(1000);  // the wall clock jumps back, as NTP may make it
    CHECK(clock.Now() == 1000);
    CHECK(clock.Monotonic() == FakeClock::kMonotonicStart + 1500);
    clock.Set(FakeClock::kDefaultStart + 3'600'000);  // and forward
    CHECK(clock.Monotonic() == FakeClock::kMonotonicStart + 1500);
  }

  TEST_CASE("FakeClock: the same random numbers for the same seed, spread evenly") {
    FakeClock a, b;
    const std::vector<uint64_t> first = Draw(&a, 100);
    CHECK(Draw(&b, 100) == first);
    CHECK(std::set<uint64_t>(first.begin(), first.end()).size() == 100);
    a.Seed(42);
    const std::vector<uint64_t> seeded = Draw(&a, 100);
    CHECK(seeded != first);
    a.Seed(42);
    CHECK(Draw(&a, 100) == seeded);
    a.Seed(FakeClock::kDefaultSeed);
    CHECK(Draw(&a, 100) == first);

    int buckets[8] = {};
    for (uint64_t r : Draw(&b, 8000)) buckets[r >> 61]++;  // the top bits
    for (int n : buckets) CHECK((n > 850 && n < 1150));
  }

  TEST_CASE("SystemClock: monotonic time never goes back and follows CLOCK_MONOTONIC") {
    std::shared_ptr<Clock> clock = SystemClock();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const TimeMs raw = static_cast<TimeMs>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
    TimeMs last = clock->Monotonic();
    CHECK(last >= raw);
    CHECK(last - raw < 1000);
    for (int i = 0; i < 100000; i++) {
      TimeMs now = clock->Monotonic();
      REQUIRE(now >= last);
      last = now;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    CHECK(clock->Now() - static_cast<TimeMs>(ts.tv_sec) * 1000 < 2000);
  }

  TEST_CASE("SystemClock: random numbers differ from draw to draw and thread to thread") {
    std::shared_ptr<Clock> clock = SystemClock();
    std::vector<uint64_t> here = Draw(clock.get(), 50), there;
    std::thread other([&] { there = Draw(clock.get(), 50); });
    other.join();
    std::set<uint64_t> all(here.begin(), here.end());
    all.insert(there.begin(), there.end());
    CHECK(all.size() == 100);
  }
}

}  // namespace
}  // namespace petrel
