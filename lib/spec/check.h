// Workload validation as a pure function, and the limits it enforces.
//
// CheckWorkload names the failing field by its manifest path ("metadata.name",
// "spec.ports[0].containerPort", "spec.env.MODE") so the manifest layer can map it
// back to a file position; ValidateWorkload (spec.h) is its Status form.
#ifndef PETREL_LIB_SPEC_CHECK_H_
#define PETREL_LIB_SPEC_CHECK_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "petrel/spec.h"

namespace petrel::internal {

// Upper bounds on what a WorkloadSpec may ask for. Anything above is a typo, not a plan.
inline constexpr int kMaxReplicas = 10000;
inline constexpr int64_t kMaxMemoryBytes = int64_t{1} << 40;  // 1Ti
inline constexpr int64_t kMaxCpuMillis = 1024 * 1000;         // 1024 cores
inline constexpr int64_t kMaxPids = 4194304;                  // Linux PID_MAX_LIMIT
inline constexpr int64_t kMaxBackoffMs = 24 * 3600 * 1000;    // initial, max, resetAfter
inline constexpr int64_t kMaxGraceMs = 3600 * 1000;           // terminationGracePeriod
inline constexpr int64_t kMaxProbeMs = 3600 * 1000;  // a probe's initialDelay, period, timeout
inline constexpr int64_t kMinProbePeriodMs = 100;    // more often is a busy loop, not a check
inline constexpr int64_t kMinProbeTimeoutMs = 10;
inline constexpr int kMaxProbeThreshold = 1000;

// One validation failure: `path` is the field's manifest path, `reason` says what is
// wrong with it ("must be at most 10000").
struct FieldError {
  std::string path;
  std::string reason;
};

// Returns the first failure in field order, or nothing when `spec` is valid.
std::optional<FieldError> CheckWorkload(const WorkloadSpec& spec);

// CheckHostPaths (spec.h) naming the field, for the manifest layer. It reads the file
// system (to resolve symbolic links): not pure like CheckWorkload.
std::optional<FieldError> CheckHostPaths(const WorkloadSpec& spec,
                                         const std::vector<std::string>& allowed);

// `parent` + "." + `key`, the key escaped and cut like Quote (lib/util/strings.h)
// does, so that a field path stays one short printable line whatever keys a manifest
// uses.
std::string KeyPath(std::string_view parent, std::string_view key);

// The RestartPolicy named `name` ("Always", "OnFailure", "Never"), if any.
std::optional<RestartPolicy> ParseRestartPolicy(std::string_view name);

// Every capability Linux has (up to CAP_CHECKPOINT_RESTORE, 40), by number.
// clang-format off
inline constexpr const char* kCapabilities[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE"};
// clang-format on

// A capability as config.json names it: "CAP_" put in front where missing ("ALL" stays).
std::string CapabilityName(std::string_view name);
// Whether `name` ("NET_ADMIN" or "CAP_NET_ADMIN"; not "ALL") is in kCapabilities.
bool IsCapability(std::string_view name);

// The seccomp profile type named `name` ("RuntimeDefault", "Unconfined"), if any.
std::optional<SecurityContext::Seccomp> ParseSeccomp(std::string_view name);

// WorkloadSpec::standby's one mode besides "" (none).
inline constexpr std::string_view kStandbyWarm = "warm";

// Image transports whose remainder is a local path (skopeo's spelling).
inline constexpr std::string_view kPathTransports[] = {"oci:", "oci-archive:", "docker-archive:"};

}  // namespace petrel::internal

#endif  // PETREL_LIB_SPEC_CHECK_H_
