// Waiting on real time, for tests of real things (containers, processes): unit tests
// use a fake clock and never wait.
#ifndef PETREL_TESTS_LIB_WAIT_H_
#define PETREL_TESTS_LIB_WAIT_H_

#include <chrono>
#include <functional>
#include <thread>

namespace petrel::testing {

// Polls `cond` every 20 ms until it holds (true) or `seconds` passed (false).
inline bool WaitFor(const std::function<bool()>& cond, double seconds = 20) {
  const auto end =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(int(seconds * 1000));
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

// Polls `cond` every 20 ms for `seconds`: true when it held every time.
inline bool HoldsFor(const std::function<bool()>& cond, double seconds) {
  return !WaitFor([&] { return !cond(); }, seconds);
}

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_WAIT_H_
