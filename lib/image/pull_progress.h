// Progress of a pull as its listener hears it (PullOptions::progress, petrel/runtime.h),
// for every image backend: the phase, and layers and bytes at most every 250 ms between.
//
// Thread-safety: none; one reporter per pull.
#ifndef PETREL_LIB_IMAGE_PULL_PROGRESS_H_
#define PETREL_LIB_IMAGE_PULL_PROGRESS_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "petrel/runtime.h"

namespace petrel::internal {

// Tells a pull's listener how it goes: at each phase and at most every 250 ms between.
class ProgressReporter {
 public:
  explicit ProgressReporter(const std::function<void(const PullProgress&)>& fn) : fn_(fn) {}

  void Phase(const char* phase) {
    p_.phase = phase;
    Send(true);
  }
  // The layers of this pull: `sizes` by digest; those in `have` are done already.
  void Layers(const std::map<std::string, int64_t>& sizes, const std::set<std::string>& have) {
    sizes_ = sizes;
    p_.layers_total = static_cast<int>(sizes.size());
    for (const auto& [digest, size] : sizes) {
      p_.bytes_total += std::max<int64_t>(size, 0);
      if (have.count(digest) != 0) {
        p_.bytes_done += std::max<int64_t>(size, 0);
        p_.layers_done++;
        got_[digest] = std::max<int64_t>(size, 0);
      }
    }
  }
  void Bytes(const std::string& digest, uint64_t bytes) {
    if (sizes_.count(digest) == 0) return;  // a config, not a layer
    int64_t& got = got_[digest];
    p_.bytes_done += static_cast<int64_t>(bytes) - got;
    got = static_cast<int64_t>(bytes);
    Send(false);
  }
  void LayerDone(const std::string& digest) {
    Bytes(digest, static_cast<uint64_t>(std::max<int64_t>(sizes_[digest], 0)));
    p_.layers_done++;
    Send(p_.layers_done == p_.layers_total);  // the last one is always heard
  }

 private:
  void Send(bool now) {
    if (!fn_) return;
    const auto t = std::chrono::steady_clock::now();
    if (!now && t - last_ < std::chrono::milliseconds(250)) return;
    last_ = t;
    fn_(p_);
  }

  const std::function<void(const PullProgress&)>& fn_;
  PullProgress p_;
  std::map<std::string, int64_t> sizes_, got_;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_PULL_PROGRESS_H_
