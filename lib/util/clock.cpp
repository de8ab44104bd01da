#include "petrel/clock.h"

#include <chrono>

namespace petrel {
namespace {

class RealClock final : public Clock {
 public:
  TimeMs Now() override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

std::shared_ptr<Clock> SystemClock() {
  static const std::shared_ptr<Clock> clock = std::make_shared<RealClock>();
  return clock;
}

}  // namespace petrel
