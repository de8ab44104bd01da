// CPU limits as the kernel's CFS bandwidth control takes them: a quota of run time per
// period. One definition for the OCI config (runc, crun) and the cgroups petrel writes
// itself (crun on a hybrid host), so both enforce a limit the same way.
#ifndef PETREL_LIB_UTIL_CPU_QUOTA_H_
#define PETREL_LIB_UTIL_CPU_QUOTA_H_

#include <cstdint>

namespace petrel::internal {

inline constexpr int64_t kCfsPeriodUs = 100000;  // 100 ms, the kernel's default

// The quota, in microseconds per kCfsPeriodUs, of `cpu_millis` (1000 = one core).
inline int64_t CfsQuotaUs(int64_t cpu_millis) { return cpu_millis * kCfsPeriodUs / 1000; }

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_CPU_QUOTA_H_
