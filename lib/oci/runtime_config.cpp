#include "lib/oci/runtime_config.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "lib/spec/check.h"
#include "lib/util/cpu_quota.h"

namespace petrel::internal {
namespace {

using nlohmann::json;

// Docker's default capability set (moby oci/caps/defaults.go).
constexpr const char* kDefaultCaps[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE"};

// Docker's masked and read-only paths.
constexpr const char* kMaskedPaths[] = {"/proc/asound",
                                        "/proc/acpi",
                                        "/proc/kcore",
                                        "/proc/keys",
                                        "/proc/latency_stats",
                                        "/proc/timer_list",
                                        "/proc/timer_stats",
                                        "/proc/sched_debug",
                                        "/proc/scsi",
                                        "/sys/firmware",
                                        "/sys/devices/virtual/powercap"};
constexpr const char* kReadonlyPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                          "/proc/sysrq-trigger"};

// petrel's default seccomp profile: everything is allowed but what a container has no
// business doing, which fails with EPERM. Most of it needs a capability a container
// lacks anyway (CAP_SYS_ADMIN, CAP_SYS_MODULE, ...); the profile is the second wall,
// and the only one for what needs none: user namespaces (unshare, clone), the kernel
// keyring, unprivileged bpf and perf, userfaultfd, open_by_handle_at.
constexpr const char* kDeniedSyscalls[] = {
    // namespaces and mounts
    "unshare", "setns", "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr",
    // the kernel keyring, tracing and kernel memory tricks
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "lookup_dcookie",
    "open_by_handle_at", "name_to_handle_at",
    // the machine's own business (adjtimex and clock_adjtime stay: with no change asked
    // they read the clock, and a change needs CAP_SYS_TIME)
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "settimeofday", "clock_settime", "iopl",
    "ioperm", "vhangup", "uselib", "ustat", "sysfs", "_sysctl"};

// clone() flags that make a namespace, each refused (clone's flags are its first
// argument on x86_64 and arm).
constexpr uint64_t kCloneNamespaceFlags[] = {0x00020000,   // CLONE_NEWNS
                                             0x02000000,   // CLONE_NEWCGROUP
                                             0x04000000,   // CLONE_NEWUTS
                                             0x08000000,   // CLONE_NEWIPC
                                             0x10000000,   // CLONE_NEWUSER
                                             0x20000000,   // CLONE_NEWPID
                                             0x40000000};  // CLONE_NEWNET

json DefaultSeccomp() {
  constexpr int kEPERM = 1, kENOSYS = 38;
  json syscalls = json::array();
  syscalls.push_back({{"names", json(std::vector<std::string>(std::begin(kDeniedSyscalls),
                                                              std::end(kDeniedSyscalls)))},
                      {"action", "SCMP_ACT_ERRNO"},
                      {"errnoRet", kEPERM}});
  for (uint64_t flag : kCloneNamespaceFlags) {
    syscalls.push_back(
        {{"names", {"clone"}},
         {"action", "SCMP_ACT_ERRNO"},
         {"errnoRet", kEPERM},
         {"args",
          {{{"index", 0}, {"value", flag}, {"valueTwo", flag}, {"op", "SCMP_CMP_MASKED_EQ"}}}}});
  }
  // clone3 passes its flags in memory, where a filter cannot look: "not implemented"
  // makes the C library fall back to clone, which is checked above.
  syscalls.push_back({{"names", {"clone3"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", kENOSYS}});
  return {{"defaultAction", "SCMP_ACT_ALLOW"}, {"syscalls", syscalls}};
}

std::optional<int64_t> ParseId(const std::string& s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v > 0xFFFFFFFELL) return std::nullopt;
  return v;
}

// Looks `key` up in an /etc/passwd or /etc/group text: field 0 is the name, 2 the
// id, 3 (passwd) the primary group. Returns the fields of the first match by name
// (by_name) or by id.
std::optional<std::vector<std::string>> FindEntry(const std::string& file, const std::string& key,
                                                  bool by_name) {
  std::istringstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::string field;
    std::istringstream ls(line);
    while (std::getline(ls, field, ':')) f.push_back(field);
    if (f.size() < 3) continue;
    if ((by_name && f[0] == key) || (!by_name && f[2] == key)) return f;
  }
  return std::nullopt;
}

// "name", "uid", "uid:gid", "name:group" as Docker reads them.
Status ResolveUser(const std::string& user, const RuntimeConfigOptions& o, int64_t* uid,
                   int64_t* gid) {
  *uid = 0;
  *gid = 0;
  if (user.empty()) return Status::OK();
  std::string u = user, g;
  size_t colon = user.find(':');
  if (colon != std::string::npos) {
    u = user.substr(0, colon);
    g = user.substr(colon + 1);
  }
  if (auto id = ParseId(u)) {
    *uid = *id;
    if (auto e = FindEntry(o.passwd, u, false); e && e->size() > 3) {
      if (auto pg = ParseId((*e)[3])) *gid = *pg;
    }
  } else {
    auto e = FindEntry(o.passwd, u, true);
    if (!e) return Status::InvalidArgument("user \"" + u + "\" is not in the image's /etc/passwd");
    auto named = ParseId((*e)[2]);
    if (!named) return Status::InvalidArgument("user \"" + u + "\" has a bad uid in /etc/passwd");
    *uid = *named;
    if (e->size() > 3) {
      if (auto pg = ParseId((*e)[3])) *gid = *pg;
    }
  }
  if (!g.empty()) {
    if (auto id = ParseId(g)) {
      *gid = *id;
    } else {
      auto e = FindEntry(o.group, g, true);
      if (!e)
        return Status::InvalidArgument("group \"" + g + "\" is not in the image's /etc/group");
      auto gid_of = ParseId((*e)[2]);
      if (!gid_of) return Status::InvalidArgument("group \"" + g + "\" has a bad gid");
      *gid = *gid_of;
    }
  }
  return Status::OK();
}

// Whether `list` (capability names as the spec writes them) names `cap` ("CAP_NET_RAW"),
// itself or through ALL.
bool Names(const std::vector<std::string>& list, const std::string& cap) {
  for (const std::string& name : list) {
    if (name == "ALL" || CapabilityName(name) == cap) return true;
  }
  return false;
}

// The capabilities a container runs with: petrel's set less what the spec drops, plus
// what it adds; every one the host can give (`host`) for a privileged container. One
// that publishes a host port shares the host's network (LinuxSection), where
// CAP_NET_RAW would let it sniff and forge the host's traffic: it loses that unless it
// asks.
std::vector<std::string> Capabilities(const ContainerSpec& spec, uint64_t host) {
  const SecurityContext& sc = spec.security_context;
  std::vector<std::string> every;
  for (size_t i = 0; i < std::size(kCapabilities); i++) {
    if ((host >> i) & 1) every.push_back(kCapabilities[i]);
  }
  if (sc.privileged) return every;
  std::vector<std::string> caps;
  for (const char* cap : kDefaultCaps) {
    if (Names(sc.capabilities_drop, cap)) continue;
    if (std::string(cap) == "CAP_NET_RAW" && spec.network == NetworkMode::kHost &&
        !Names(sc.capabilities_add, cap)) {
      continue;
    }
    caps.push_back(cap);
  }
  for (const std::string& cap : every) {
    if (Names(sc.capabilities_add, cap) && std::find(caps.begin(), caps.end(), cap) == caps.end()) {
      caps.push_back(cap);
    }
  }
  // A name the host cannot give goes to the runtime all the same, which then refuses it.
  for (const std::string& name : sc.capabilities_add) {
    const std::string cap = CapabilityName(name);
    if (name != "ALL" && std::find(caps.begin(), caps.end(), cap) == caps.end()) {
      caps.push_back(cap);
    }
  }
  return caps;
}

json Mount(const std::string& dest, const std::string& type, const std::string& source,
           std::vector<std::string> options) {
  return json{{"destination", dest}, {"type", type}, {"source", source}, {"options", options}};
}

// The command line, by Docker's rule: a given command replaces the entrypoint and drops
// the image's cmd; given args replace the cmd.
Result<std::vector<std::string>> Args(const ContainerSpec& spec, const ImageConfig& image) {
  std::vector<std::string> args;
  if (!spec.command.empty()) {
    args = spec.command;
    args.insert(args.end(), spec.args.begin(), spec.args.end());
  } else {
    args = image.entrypoint;
    const std::vector<std::string>& rest = spec.args.empty() ? image.cmd : spec.args;
    args.insert(args.end(), rest.begin(), rest.end());
  }
  if (args.empty()) {
    return Status::InvalidArgument(
        "no command: the image has no entrypoint or cmd and the spec gives none");
  }
  return args;
}

// The image's environment with the spec's on top, sorted, with a default PATH.
std::vector<std::string> Env(const ContainerSpec& spec, const ImageConfig& image) {
  std::map<std::string, std::string> env;
  for (const std::string& kv : image.env) {
    size_t eq = kv.find('=');
    env[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
  }
  for (const auto& [k, v] : spec.env) env[k] = v;
  std::vector<std::string> env_list;
  if (env.count("PATH") == 0) env_list.push_back(kDefaultPathEnv);
  for (const auto& [k, v] : env) env_list.push_back(k + "=" + v);
  return env_list;
}

// config.json's "process": what runs, as whom, with which capabilities and limits.
Result<json> Process(const ContainerSpec& spec, const ImageConfig& image,
                     const RuntimeConfigOptions& options) {
  PETREL_ASSIGN_OR_RETURN(std::vector<std::string> args, Args(spec, image));
  int64_t uid = 0, gid = 0;
  PETREL_RETURN_IF_ERROR(
      ResolveUser(spec.user.empty() ? image.user : spec.user, options, &uid, &gid));
  std::string cwd = !spec.working_dir.empty()    ? spec.working_dir
                    : !image.working_dir.empty() ? image.working_dir
                                                 : "/";
  const std::vector<std::string> caps = Capabilities(spec, options.host_capabilities);
  json process = {
      {"terminal", false},
      {"user", {{"uid", uid}, {"gid", gid}}},
      {"args", args},
      {"env", Env(spec, image)},
      {"cwd", cwd},
      {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
      {"noNewPrivileges", true},
  };
  if (options.nofile > 0) {
    process["rlimits"] = json::array(
        {{{"type", "RLIMIT_NOFILE"}, {"hard", options.nofile}, {"soft", options.nofile}}});
  }
  return process;
}

// config.json's "mounts": Docker's /proc, /dev and /sys, the hosts file, then the
// spec's.
json Mounts(const ContainerSpec& spec, const RuntimeConfigOptions& options) {
  json mounts = json::array();
  mounts.push_back(Mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}));
  mounts.push_back(
      Mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  mounts.push_back(
      Mount("/dev/pts", "devpts", "devpts",
            {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}));
  mounts.push_back(
      Mount("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}));
  mounts.push_back(Mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}));
  mounts.push_back(
      Mount("/sys", "sysfs", "sysfs",
            {"nosuid", "noexec", "nodev", spec.security_context.privileged ? "rw" : "ro"}));
  mounts.push_back(
      Mount("/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}));
  const bool own_hosts = std::any_of(spec.mounts.begin(), spec.mounts.end(),
                                     [](const MountSpec& m) { return m.target == "/etc/hosts"; });
  if (!options.hosts_file.empty() && !own_hosts) {
    mounts.push_back(Mount("/etc/hosts", "bind", options.hosts_file, {"rbind", "rprivate", "ro"}));
  }
  for (const MountSpec& m : spec.mounts) {
    if (m.type == MountSpec::Type::kTmpfs) {
      std::vector<std::string> o = {"nosuid", "nodev", "mode=1777"};
      if (m.size_bytes > 0) o.push_back("size=" + std::to_string(m.size_bytes));
      if (m.read_only) o.push_back("ro");
      mounts.push_back(Mount(m.target, "tmpfs", "tmpfs", o));
    } else {
      std::vector<std::string> o = {"rbind", "rprivate", m.read_only ? "ro" : "rw"};
      mounts.push_back(Mount(m.target, "bind", m.source, o));
    }
  }
  return mounts;
}

// config.json's "linux": namespaces, masked paths, cgroup and limits.
Result<json> LinuxSection(const ContainerSpec& spec, const RuntimeConfigOptions& options) {
  // Network: the host's (host), a namespace the runtime makes with loopback only (none),
  // or the one the adapter made and put on the bridge (bridge).
  json namespaces =
      json::array({{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}});
  switch (spec.network) {
    case NetworkMode::kHost:
      for (const PortSpec& p : spec.ports) {
        if (p.host_port != 0 && (p.host_port != p.container_port || !p.host_ip.empty())) {
          return Status::InvalidArgument("port " + std::to_string(p.container_port) +
                                         " published as " + std::to_string(p.host_port) +
                                         ": the host's network publishes a port as itself");
        }
      }
      break;
    case NetworkMode::kNone:
      for (const PortSpec& p : spec.ports) {
        if (p.host_port != 0) {
          return Status::InvalidArgument("port " + std::to_string(p.container_port) +
                                         ": a container without a network publishes no port");
        }
      }
      namespaces.push_back({{"type", "network"}});
      break;
    case NetworkMode::kBridge:
      if (options.netns_path.empty()) {
        return Status::InvalidArgument("a container on the bridge needs its network namespace");
      }
      namespaces.push_back({{"type", "network"}, {"path", options.netns_path}});
      break;
  }

  const SecurityContext& sc = spec.security_context;
  json linux_section = {{"namespaces", namespaces}};
  if (!sc.privileged) {
    linux_section["maskedPaths"] =
        std::vector<std::string>(std::begin(kMaskedPaths), std::end(kMaskedPaths));
    linux_section["readonlyPaths"] =
        std::vector<std::string>(std::begin(kReadonlyPaths), std::end(kReadonlyPaths));
  }
  if (!sc.privileged && sc.seccomp == SecurityContext::Seccomp::kRuntimeDefault) {
    linux_section["seccomp"] = DefaultSeccomp();
  }
  // Every device denied (the runtime then allows its default few), or all allowed.
  json resources = {{"devices", json::array({{{"allow", sc.privileged}, {"access", "rwm"}}})}};
  if (!options.cgroups_path.empty()) {
    linux_section["cgroupsPath"] = options.cgroups_path;
    const Resources& r = spec.resources;
    if (r.memory_bytes > 0) resources["memory"] = {{"limit", r.memory_bytes}};
    if (r.cpu_millis > 0) {
      resources["cpu"] = {{"quota", CfsQuotaUs(r.cpu_millis)}, {"period", kCfsPeriodUs}};
    }
    if (r.pids > 0) resources["pids"] = {{"limit", r.pids}};
  }
  linux_section["resources"] = resources;
  return linux_section;
}

}  // namespace

Result<std::string> MakeRuntimeConfig(const ContainerSpec& spec, const ImageConfig& image,
                                      const RuntimeConfigOptions& options) {
  PETREL_ASSIGN_OR_RETURN(json process, Process(spec, image, options));
  PETREL_ASSIGN_OR_RETURN(json linux_section, LinuxSection(spec, options));
  json labels = json::object();
  for (const auto& [k, v] : spec.labels) labels[k] = v;
  json config = {
      {"ociVersion", "1.0.2"},
      {"process", std::move(process)},
      {"root", {{"path", options.rootfs}, {"readonly", spec.read_only_rootfs}}},
      {"hostname", spec.hostname.empty() ? spec.name : spec.hostname},
      {"mounts", Mounts(spec, options)},
      {"linux", std::move(linux_section)},
      {"annotations", labels},
  };
  return config.dump(2);
}

}  // namespace petrel::internal
