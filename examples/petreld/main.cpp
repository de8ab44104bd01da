// petreld: the reference daemon. One libuv loop runs petrel's reconcile loop and the
// control API (API.md) on a Unix socket; see README.md for the flags.
//
//   petreld [--config FILE] [--state-dir DIR] [--socket PATH]
//           [--runtime crun|runc|containerd|docker|fake|none]
//           [--runtime-endpoint ADDR] [--runtime-namespace NS] [--manifests FILE_OR_DIR]
//           [--log-level debug|info|warn|error] [--node-name NAME]
//           [--max-layer-size Q] [--request-timeout D] [--cgroup-parent NAME]
//           [--bridge-name NAME] [--bridge-subnet CIDR]
//           [--registry-auth FILE] [--registry-ca FILE] [--insecure-registry HOST[:PORT]]...
//           [--image-store-max Q] [--image-preload DIR] [--max-concurrent-downloads N]
//           [--socket-group NAME] [--allow-host-path DIR]...
//           [--peer-listen ADDR:PORT [--advertise ADDR:PORT] [--join ADDR:PORT --token T]
//            [--witness] [--node-label KEY=VALUE]... [--capacity-memory Q] [--capacity-cpu Q]
//            [--lease-dir DIR]]
//
// With --peer-listen it is cluster-capable: the local Orchestrator is wrapped in a
// petrel::Cluster, which then serves the API and runs on the loop in its place.
//
// It offers the runtimes it was built with (PETREL_WITH_CRUN, PETREL_WITH_CONTAINERD,
// PETREL_WITH_DOCKER, PETREL_WITH_FAKE), and "none" for a witness (--witness --runtime none), from
// a petrel::RuntimeRegistry that RegisterRuntimes fills.
//
// Built with the containerd adapter (PETREL_WITH_CONTAINERD), it is also the logger
// containerd's shim runs for each container's output (binary:///usr/sbin/petreld?
// petrel-log-dir=...&petrel-log-max=..., petrel/containerd.h): nothing of the daemon
// starts then.
//
// SIGTERM or SIGINT stops it cleanly (exit 0). Containers keep running: stopping the
// daemon is not stopping the workloads; the next petreld adopts them. (In a cluster, an
// exclusive workload's containers are the exception: their lease runs out fenceAfter
// after petreld stops renewing it, and the runtime's shim kills them.)
#include <arpa/inet.h>
#include <malloc.h>
#include <unistd.h>
#include <uv.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "petrel/api.h"
#include "petrel/cluster.h"
#include "petrel/manifest.h"
#include "petrel/orchestrator.h"
#include "petrel/port.h"
#include "petrel/runtimes.h"
#ifdef PETREL_WITH_CONTAINERD
#include "petrel/containerd.h"
#endif
#ifdef PETREL_WITH_CRUN
#include "petrel/crun.h"
#endif
#ifdef PETREL_WITH_DOCKER
#include "petrel/docker.h"
#endif
#ifdef PETREL_WITH_FAKE
#include "petrel/testing/fake_runtime.h"
#endif

#ifndef PETREL_VERSION
#define PETREL_VERSION "0.0.0"
#endif

namespace {

// The runtimes this petreld was built with (CMake's PETREL_WITH_<ADAPTER>), registered
// by name; the first is the default.
petrel::Status RegisterRuntimes(petrel::RuntimeRegistry* runtimes) {
#ifdef PETREL_WITH_CRUN
  PETREL_RETURN_IF_ERROR(petrel::RegisterCrunRuntimes(runtimes));
#endif
#ifdef PETREL_WITH_CONTAINERD
  PETREL_RETURN_IF_ERROR(petrel::RegisterContainerdRuntime(runtimes));
#endif
#ifdef PETREL_WITH_DOCKER
  PETREL_RETURN_IF_ERROR(petrel::RegisterDockerRuntime(runtimes));
#endif
#ifdef PETREL_WITH_FAKE
  PETREL_RETURN_IF_ERROR(petrel::testing::RegisterFakeRuntime(runtimes));
#endif
  if (runtimes->entries().empty()) return petrel::Status::NotFound("built without a runtime");
  // Last, so that it is never the default: only a witness runs without containers.
  return petrel::RegisterNoRuntime(runtimes);
}

std::string Usage(const petrel::RuntimeRegistry& runtimes) {
  std::string names, table;
  size_t width = 0;
  for (const petrel::RuntimeEntry& r : runtimes.entries()) width = std::max(width, r.name.size());
  for (const petrel::RuntimeEntry& r : runtimes.entries()) {
    names += (names.empty() ? "" : "|") + r.name;
    table += "                         " + r.name + std::string(width + 2 - r.name.size(), ' ') +
             r.description + "\n";
  }
  return "usage: petreld [--config FILE] [--state-dir DIR] [--socket PATH]\n"
         "               [--runtime " +
         names +
         "] [--runtime-endpoint ADDR]\n"
         "               [--runtime-namespace NS]\n"
         "               [--manifests FILE_OR_DIR] [--log-level debug|info|warn|error]\n"
         "               [--node-name NAME] [--loop-probe-ms MS]\n"
         "               [--max-layer-size Q] [--request-timeout D] [--cgroup-parent NAME]\n"
         "               [--bridge-name NAME] [--bridge-subnet CIDR]\n"
         "               [--registry-auth FILE] [--registry-ca FILE]\n"
         "               [--insecure-registry HOST[:PORT]]...\n"
         "               [--image-store-max Q] [--image-preload DIR]\n"
         "               [--max-concurrent-downloads N]\n"
         "               [--socket-group NAME] [--allow-host-path DIR]...\n"
         "               [--peer-listen ADDR:PORT [--advertise ADDR:PORT]\n"
         "                [--join ADDR:PORT --token T] [--witness] [--node-label KEY=VALUE]...]\n"
         "               [--help] [--version]\n"
         "\n"
         "  --config FILE        YAML with the same keys without dashes (state-dir: /x);\n"
         "                       flags override it\n"
         "  --state-dir DIR      petrel's database (default /var/lib/petrel)\n"
         "  --socket PATH        the control API's socket (default /run/petrel/petrel.sock);\n"
         "                       whoever may use it is root on this host\n"
         "  --socket-group NAME  the socket's group (mode 0660): its members may use it\n"
         "                       (default: petreld's group)\n"
         "  --allow-host-path DIR\n"
         "                       bind mounts may only take host paths below DIR;\n"
         "                       repeatable (default: any path)\n"
         "  --runtime NAME       the container runtime (default " +
         runtimes.entries().front().name + "):\n" + table +
         "  --runtime-endpoint ADDR\n"
         "                       the runtime daemon's address, for runtimes that have one\n"
         "                       (containerd: unix:///PATH, default\n"
         "                       /run/containerd/containerd.sock; docker: unix:///PATH,\n"
         "                       default /var/run/docker.sock)\n"
         "  --runtime-namespace NS\n"
         "                       containerd: the namespace of petrel's containers and\n"
         "                       images (default petrel); petrels sharing one containerd\n"
         "                       need one each\n"
         "  --manifests PATH     a manifest file or directory applied at start\n"
         "  --log-level LEVEL    debug, info, warn or error (default info)\n"
         "  --node-name NAME     this node's name (default: the host name)\n"
         "  --loop-probe-ms MS   measure the loop's stalls with a timer every MS ms\n"
         "                       (1..1000; GET /v1/debug/loop reports them; default off)\n"
         "  --max-layer-size Q   refuse an image layer that decompresses to more than Q\n"
         "                       (512Mi, 8Gi; default 4Gi): a small blob can be a bomb\n"
         "  --image-store-max Q  crun, runc, containerd: after a pull, remove the least\n"
         "                       recently used images no container uses while the store\n"
         "                       takes more than Q (2Gi; default: no limit)\n"
         "  --image-preload DIR  crun, runc, containerd: import the archives in DIR\n"
         "                       (oci-archive or docker-archive) at start, found by the\n"
         "                       names they carry\n"
         "  --request-timeout D  a request to the socket must arrive whole, headers and\n"
         "                       body, within D of its first byte, else 408 (default 30s)\n"
         "  --cgroup-parent NAME the cgroup, relative to the cgroup root, below which crun\n"
         "                       and runc put each container's (default petrel)\n"
         "  --bridge-name NAME   the bridge of network: bridge containers (default petrel0)\n"
         "  --bridge-subnet CIDR the IPv4 network their addresses come from, the bridge's\n"
         "                       the first (default 10.47.0.0/16)\n"
         "  --registry-auth FILE a Docker config.json whose \"auths\" hold registries'\n"
         "                       credentials, or whose credsStore and credHelpers name\n"
         "                       docker-credential-NAME helpers; read at start (crun, runc,\n"
         "                       and docker, which hands them to dockerd's pulls)\n"
         "  --registry-ca FILE   a PEM bundle of CAs trusted for registries' HTTPS\n"
         "                       certificates, besides the system store\n"
         "  --insecure-registry HOST[:PORT]\n"
         "                       pull from this registry over plain HTTP (loopback ones\n"
         "                       always may); repeatable\n"
         "  --max-concurrent-downloads N\n"
         "                       image blobs downloaded at once across every pull, 1..16\n"
         "                       (default 3): fewer share a slow uplink better (crun, runc)\n"
         "\n"
         "Clusters (ADDR is an IPv4 address or an [IPv6] one in brackets):\n"
         "  --peer-listen ADDR:PORT\n"
         "                       make this node cluster-capable: peers' mutual-TLS port;\n"
         "                       then 'petrelctl cluster init' starts a cluster here.\n"
         "                       Without it petreld opens no port.\n"
         "  --advertise ADDR:PORT\n"
         "                       where peers reach this node (default: --peer-listen;\n"
         "                       required when that is 0.0.0.0 or [::])\n"
         "  --join ADDR:PORT     join the cluster of this member (with --token)\n"
         "  --token T            the join token ('petrelctl cluster token' on a member)\n"
         "  --witness            vote in the cluster, run no workloads; with\n"
         "                       --runtime none it needs no container runtime\n"
         "  --node-label KEY=VALUE\n"
         "                       a label of this node, for scheduling; repeatable\n"
         "  --capacity-memory Q  memory this node offers replicas (64Mi, 2Gi; default: the\n"
         "                       machine's; 0: not limited)\n"
         "  --capacity-cpu Q     CPUs this node offers replicas (1.5, 500m; default: the\n"
         "                       machine's; 0: not limited)\n"
         "  --lease-dir DIR      tmpfs dir of this node's lease file, renewed while it\n"
         "                       reaches the majority; its exclusive workloads die when\n"
         "                       it runs out, also if petreld dies (default /run/petrel)\n";
}

// A whole number in lo..hi (lo > 0), else 0 (not given, or not a valid value).
int64_t NumberIn(const std::string& text, int64_t lo, int64_t hi) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < lo || n > hi) return 0;
  return n;
}

// --loop-probe-ms: 1..1000, else 0 (off, or not a valid value).
int64_t ProbeMs(const std::string& text) { return NumberIn(text, 1, 1000); }

// The settings, by their flag names without dashes; keys of the config file too.
// --node-label, repeatable, goes to Labels instead.
const char* const kKeys[] = {"state-dir",        "socket",        "runtime",
                             "runtime-endpoint", "manifests",     "log-level",
                             "node-name",        "loop-probe-ms", "peer-listen",
                             "advertise",        "join",          "token",
                             "witness",          "node-label",    "capacity-memory",
                             "capacity-cpu",     "lease-dir",     "max-layer-size",
                             "request-timeout",  "socket-group",  "allow-host-path",
                             "cgroup-parent",    "bridge-name",   "bridge-subnet",
                             "registry-auth",    "registry-ca",   "insecure-registry",
                             "image-store-max",  "image-preload", "max-concurrent-downloads",
                             "runtime-namespace"};

using Settings = std::map<std::string, std::string>;
using Labels = std::map<std::string, std::string>;

// Repeatable settings hold their values one per line.
bool IsRepeatable(const std::string& key) {
  return key == "allow-host-path" || key == "insecure-registry";
}

std::vector<std::string> Repeated(const Settings& settings, const std::string& key) {
  std::vector<std::string> values;
  auto it = settings.find(key);
  if (it == settings.end()) return values;
  size_t start = 0;
  while (start <= it->second.size()) {
    size_t end = it->second.find('\n', start);
    if (end == std::string::npos) end = it->second.size();
    values.push_back(it->second.substr(start, end - start));
    start = end + 1;
  }
  return values;
}

// Settings that only mean something in a cluster, so need --peer-listen.
const char* const kClusterKeys[] = {"advertise",       "join",         "token",    "witness",
                                    "capacity-memory", "capacity-cpu", "lease-dir"};

// Reads "KEY=VALUE" into *labels (a KEY given again replaces the value). Returns an
// error message, or "" when it is a valid label.
std::string AddLabel(const std::string& text, Labels* labels) {
  size_t eq = text.find('=');
  if (eq == std::string::npos) return "node-label \"" + text + "\" is not KEY=VALUE";
  std::string key = text.substr(0, eq), value = text.substr(eq + 1);
  if (petrel::Status s = petrel::ValidateLabel(key, value); !s.ok()) {
    return "node-label: " + s.message();
  }
  (*labels)[key] = value;
  return "";
}

// "" when `text` is ADDR:PORT, with ADDR an IPv4 address or an IPv6 one in brackets
// and PORT in 1..65535 (a wildcard ADDR only where `wildcard_ok`); else why not.
std::string CheckAddress(const std::string& key, const std::string& text, bool wildcard_ok) {
  const std::string bad =
      key + " \"" + text + "\" is not ADDR:PORT (e.g. 10.0.0.5:7400, [fd00::5]:7400)";
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return bad;
  std::string host = text.substr(0, colon), port = text.substr(colon + 1);
  int family = AF_INET;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    family = AF_INET6;
    host = host.substr(1, host.size() - 2);
  }
  unsigned char addr[16];
  int number = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (inet_pton(family, host.c_str(), addr) != 1 || ec != std::errc() ||
      end != port.data() + port.size() || number < 1 || number > 65535) {
    return bad;
  }
  if (!wildcard_ok && (host == "0.0.0.0" ||
                       (family == AF_INET6 && host.find_first_not_of(":0") == std::string::npos))) {
    return key + " \"" + text + "\": a wildcard address is not one peers can reach";
  }
  return "";
}

bool IsKey(const std::string& key) {
  for (const char* k : kKeys) {
    if (key == k) return true;
  }
  return false;
}

// The bridge network the settings ask for: the defaults where they say nothing.
petrel::BridgeNetwork BridgeOf(const Settings& settings) {
  petrel::BridgeNetwork bridge;
  if (auto it = settings.find("bridge-name"); it != settings.end()) bridge.name = it->second;
  if (auto it = settings.find("bridge-subnet"); it != settings.end()) bridge.subnet = it->second;
  return bridge;
}

int BadUsage(const std::string& message) {
  std::fprintf(stderr, "petreld: %s (see petreld --help)\n", message.c_str());
  return 2;
}

// Reads the config file into the keys the flags left unset, and its node-label map
// into the labels the flags did not give. On error, false with "FILE:LINE: what" in
// *error.
bool LoadConfig(const std::string& path, Settings* settings, Labels* labels, std::string* error) {
  try {
    YAML::Node root = YAML::LoadFile(path);
    if (root.IsNull()) return true;
    if (!root.IsMap()) {
      *error = path + ":" + std::to_string(root.Mark().line + 1) + ": expected key: value lines";
      return false;
    }
    for (const auto& kv : root) {
      const int line = kv.first.Mark().line + 1;
      const std::string where = path + ":" + std::to_string(line) + ": ";
      std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
      if (!IsKey(key)) {
        std::string known;
        for (const char* k : kKeys) known += std::string(known.empty() ? "" : ", ") + k;
        *error = where + "unknown key \"" + key + "\" (known: " + known + ")";
        return false;
      }
      if (key == "node-label") {
        if (!kv.second.IsMap()) {
          *error = where + "node-label: must be a map of KEY: VALUE";
          return false;
        }
        Labels from_file;
        for (const auto& label : kv.second) {
          std::string bad =
              label.first.IsScalar() && label.second.IsScalar()
                  ? AddLabel(label.first.Scalar() + "=" + label.second.Scalar(), &from_file)
                  : "node-label: each label must be KEY: VALUE";
          if (!bad.empty()) {
            *error = path + ":" + std::to_string(label.first.Mark().line + 1) + ": " + bad;
            return false;
          }
        }
        labels->insert(from_file.begin(), from_file.end());  // a flag's value wins
        continue;
      }
      if (IsRepeatable(key) && kv.second.IsSequence()) {
        std::string joined;
        for (const auto& item : kv.second) {
          if (!item.IsScalar()) {
            *error = where + key + ": must be a list of single values";
            return false;
          }
          joined += (joined.empty() ? "" : "\n") + item.Scalar();
        }
        settings->emplace(key, joined);  // a flag's value wins
        continue;
      }
      if (!kv.second.IsScalar()) {
        *error = where + key + ": must be a single value";
        return false;
      }
      settings->emplace(key, kv.second.Scalar());  // a flag's value wins
    }
    return true;
  } catch (const YAML::BadFile&) {
    *error = path + ": cannot read: " + std::strerror(errno);
  } catch (const YAML::Exception& e) {
    *error = path + ":" + std::to_string(e.mark.line + 1) + ":" +
             std::to_string(e.mark.column + 1) + ": " + e.msg;
  } catch (const std::exception& e) {
    *error = path + ": " + e.what();
  }
  return false;
}

bool ParseLogLevel(const std::string& name, petrel::LogLevel* level) {
  static const std::map<std::string, petrel::LogLevel> levels = {
      {"debug", petrel::LogLevel::kDebug},
      {"info", petrel::LogLevel::kInfo},
      {"warn", petrel::LogLevel::kWarn},
      {"error", petrel::LogLevel::kError}};
  auto it = levels.find(name);
  if (it == levels.end()) return false;
  *level = it->second;
  return true;
}

// What the signal handler needs to shut down.
struct Daemon {
  uv_loop_t loop;
  uv_signal_t sigterm;
  uv_signal_t sigint;
  // The Orchestrator petreld runs and serves: the local one, or with --peer-listen the
  // Cluster wrapped around it (then `cluster` points to it too).
  std::unique_ptr<petrel::Orchestrator> orch;
  petrel::Cluster* cluster = nullptr;
  std::unique_ptr<petrel::ApiServer> server;
  petrel::LogSink log;
  // The host: the service manager hears READY=1 and STOPPING=1 through it.
  std::shared_ptr<petrel::Port> port = petrel::DefaultPort();
  bool stopping = false;

  // Tells systemd (Type=notify) how petreld is; nothing without NOTIFY_SOCKET.
  void Notify(const std::string& state) {
    if (petrel::Status s = port->NotifyServiceManager(state); !s.ok()) {
      log(petrel::LogLevel::kWarn, "petreld: " + s.message());
    }
  }
};

void OnSignal(uv_signal_t* handle, int signum) {
  auto* d = static_cast<Daemon*>(handle->data);
  if (d->stopping) return;
  d->stopping = true;
  d->log(petrel::LogLevel::kInfo,
         std::string("petreld: ") + strsignal(signum) + ": shutting down; containers keep running");
  d->Notify("STOPPING=1");
  d->server->StopAccepting();
  d->orch->Detach();
  d->server->Close();
  uv_close(reinterpret_cast<uv_handle_t*>(&d->sigterm), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&d->sigint), nullptr);
}

// Reads the flags into *flags and *labels and the --config file's name into *config.
// Returns an exit code when petreld is to stop here (--help, --version, a bad flag).
std::optional<int> ParseFlags(int argc, char** argv, const petrel::RuntimeRegistry& runtimes,
                              Settings* flags, Labels* labels, std::string* config) {
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      // In one write(), not stdio's 4 KiB pieces: a reader that stops at its first
      // match (grep -q) must not make petreld die of SIGPIPE on the next piece.
      const std::string usage = Usage(runtimes);
      for (size_t done = 0; done < usage.size();) {
        ssize_t n = write(STDOUT_FILENO, usage.data() + done, usage.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 1;
        done += static_cast<size_t>(n);
      }
      return 0;
    }
    if (arg == "--version") {
      std::printf("petreld %s\n", PETREL_VERSION);
      return 0;
    }
    if (arg.rfind("--", 0) != 0) return BadUsage("unexpected argument \"" + arg + "\"");
    std::string key = arg.substr(2), value;
    size_t eq = key.find('=');
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (key == "witness") {  // a switch; --witness=false turns it off
      value = "true";
    } else if (key == "config" || IsKey(key)) {
      if (i + 1 >= argc) return BadUsage("--" + key + " needs a value");
      value = argv[++i];
    }
    if (key == "config") {
      *config = value;
    } else if (key == "node-label") {
      if (std::string bad = AddLabel(value, labels); !bad.empty()) return BadUsage(bad);
    } else if (IsRepeatable(key) && flags->count(key)) {
      (*flags)[key] += "\n" + value;
    } else if (IsKey(key)) {
      (*flags)[key] = value;
    } else {
      return BadUsage("unknown flag \"--" + key + "\"");
    }
  }
  return std::nullopt;
}

// The cluster settings, checked: addresses, and the flags that need others.
std::optional<int> CheckClusterSettings(Settings& settings, const Labels& labels) {
  const std::string witness = settings.count("witness") ? settings["witness"] : "false";
  if (witness != "true" && witness != "false") {
    return BadUsage("witness \"" + witness + "\" is not true or false");
  }
  // Any other node is given workloads, which "none" would only ever fail to run.
  if (settings["runtime"] == "none" && witness != "true") {
    return BadUsage("--runtime none is for a witness: add --witness");
  }
  if (!settings.count("peer-listen")) {
    for (const char* key : kClusterKeys) {
      if (settings.count(key) && !(key == std::string("witness") && witness == "false")) {
        return BadUsage(std::string("--") + key + " needs --peer-listen ADDR:PORT");
      }
    }
    if (!labels.empty()) return BadUsage("--node-label needs --peer-listen ADDR:PORT");
    return std::nullopt;
  }
  for (const char* key : {"peer-listen", "advertise", "join"}) {
    if (!settings.count(key) || settings[key].empty()) continue;  // empty: checked below
    if (std::string bad = CheckAddress(key, settings[key], key == std::string("peer-listen"));
        !bad.empty()) {
      return BadUsage(bad);
    }
  }
  for (const char* key : {"capacity-memory", "capacity-cpu"}) {
    if (!settings.count(key)) continue;
    const std::string& text = settings[key];
    petrel::Result<int64_t> q = key == std::string("capacity-memory")
                                    ? petrel::ParseBytes(text)
                                    : petrel::ParseCpuMillis(text);
    if (!q.ok()) return BadUsage(std::string(key) + ": " + q.status().message());
  }
  if (settings.count("join") && !settings.count("token")) {
    return BadUsage("--join needs --token T (run 'petrelctl cluster token' on a member)");
  }
  if (settings.count("token") && !settings.count("join")) {
    return BadUsage("--token needs --join ADDR:PORT (the member whose token it is)");
  }
  return std::nullopt;
}

// --max-layer-size and --request-timeout: a quantity and a duration, above 0.
std::optional<int> CheckLimits(Settings& settings) {
  if (settings.count("max-layer-size")) {
    petrel::Result<int64_t> q = petrel::ParseBytes(settings["max-layer-size"]);
    if (!q.ok()) return BadUsage("max-layer-size: " + q.status().message());
    if (*q == 0) return BadUsage("max-layer-size: must be more than 0");
  }
  if (settings.count("image-store-max")) {
    petrel::Result<int64_t> q = petrel::ParseBytes(settings["image-store-max"]);
    if (!q.ok()) return BadUsage("image-store-max: " + q.status().message());
    if (*q == 0) return BadUsage("image-store-max: must be more than 0");
  }
  if (settings.count("max-concurrent-downloads") &&
      NumberIn(settings["max-concurrent-downloads"], 1,
               petrel::RegistryAccess::kMaxDownloadsLimit) == 0) {
    return BadUsage("max-concurrent-downloads \"" + settings["max-concurrent-downloads"] +
                    "\" is not a number in 1.." +
                    std::to_string(petrel::RegistryAccess::kMaxDownloadsLimit));
  }
  if (settings.count("image-preload") && settings["image-preload"].empty()) {
    return BadUsage("image-preload: needs a directory");
  }
  for (const std::string& dir : Repeated(settings, "allow-host-path")) {
    if (dir.empty() || dir.front() != '/') {
      return BadUsage("allow-host-path \"" + dir + "\" is not an absolute path");
    }
  }
  for (const std::string& registry : Repeated(settings, "insecure-registry")) {
    if (registry.empty() ||
        registry.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]") !=
            std::string::npos) {
      return BadUsage("insecure-registry \"" + registry +
                      "\" is not HOST[:PORT] as images name it (e.g. 192.168.1.5:5000)");
    }
  }
  if (petrel::Status s = petrel::CheckCgroupParent(settings["cgroup-parent"]); !s.ok()) {
    return BadUsage(s.message());
  }
  if (petrel::Status s = petrel::CheckBridgeNetwork(BridgeOf(settings)); !s.ok()) {
    return BadUsage(s.message());
  }
  if (settings.count("request-timeout")) {
    petrel::Result<int64_t> ms = petrel::ParseDurationMs(settings["request-timeout"]);
    if (!ms.ok()) return BadUsage("request-timeout: " + ms.status().message());
    if (*ms == 0) return BadUsage("request-timeout: must be longer than 0");
  }
  return std::nullopt;
}

// The settings: the flags, then the config file, then the defaults, checked. Returns
// an exit code when petreld is to stop here.
std::optional<int> ReadSettings(int argc, char** argv, const petrel::RuntimeRegistry& runtimes,
                                Settings* settings, Labels* labels, petrel::LogLevel* level) {
  std::string config;
  if (std::optional<int> done = ParseFlags(argc, argv, runtimes, settings, labels, &config)) {
    return done;
  }
  if (!config.empty()) {
    std::string error;
    if (!LoadConfig(config, settings, labels, &error)) {
      std::fprintf(stderr, "petreld: %s\n", error.c_str());
      return 2;
    }
  }
  settings->emplace("state-dir", "/var/lib/petrel");
  settings->emplace("socket", "/run/petrel/petrel.sock");
  settings->emplace("runtime", runtimes.entries().front().name);
  settings->emplace("log-level", "info");
  settings->emplace("cgroup-parent", "petrel");
  const std::string& log_level = (*settings)["log-level"];
  if (!ParseLogLevel(log_level, level)) {
    return BadUsage("log-level \"" + log_level + "\" is not debug, info, warn or error");
  }
  const std::string& runtime = (*settings)["runtime"];
  if (auto known = runtimes.Find(runtime); !known.ok()) return BadUsage(known.status().message());
  for (const auto& [key, value] : *settings) {
    if (value.empty() && key != "manifests" && key != "node-name" && key != "runtime-endpoint" &&
        key != "loop-probe-ms") {
      return BadUsage(key + " must not be empty");
    }
  }
  const std::string& probe = (*settings)["loop-probe-ms"];
  if (!probe.empty() && ProbeMs(probe) == 0) {
    return BadUsage("loop-probe-ms \"" + probe + "\" is not a number of milliseconds in 1..1000");
  }
  if (std::optional<int> bad = CheckLimits(*settings)) return bad;
  return CheckClusterSettings(*settings, *labels);
}

// Opens petrel over the runtime and applies the manifests given at start. Prints why
// and returns false when any of it fails.
bool OpenOrchestrator(Settings& settings, const petrel::RuntimeRegistry& runtimes, Daemon* d,
                      petrel::Options* options) {
  std::vector<petrel::WorkloadSpec> specs;
  if (!settings["manifests"].empty()) {
    auto loaded =
        petrel::LoadManifests(settings["manifests"], Repeated(settings, "allow-host-path"));
    if (!loaded.ok()) {
      std::fprintf(stderr, "petreld: %s\n", loaded.status().message().c_str());
      return false;
    }
    specs = std::move(*loaded);
  }
  petrel::RuntimeConfig config;
  config.state_dir = settings["state-dir"];
  config.endpoint = settings["runtime-endpoint"];
  config.runtime_namespace = settings["runtime-namespace"];
  config.port = d->port;
  config.log_sink = d->log;
  if (settings.count("max-layer-size")) {
    config.max_layer_bytes = static_cast<uint64_t>(*petrel::ParseBytes(settings["max-layer-size"]));
  }
  if (settings.count("image-store-max")) {
    config.image_store_max_bytes = *petrel::ParseBytes(settings["image-store-max"]);
  }
  config.image_preload_dir = settings["image-preload"];
  config.cgroup_parent = settings["cgroup-parent"];
  config.registry.auth_file = settings["registry-auth"];
  config.registry.ca_file = settings["registry-ca"];
  config.registry.insecure = Repeated(settings, "insecure-registry");
  if (settings.count("max-concurrent-downloads")) {
    config.registry.max_downloads = static_cast<int>(NumberIn(
        settings["max-concurrent-downloads"], 1, petrel::RegistryAccess::kMaxDownloadsLimit));
  }
  auto runtime = runtimes.Create(settings["runtime"], config);
  if (!runtime.ok()) {
    std::fprintf(stderr, "petreld: %s\n", runtime.status().message().c_str());
    return false;
  }
  options->state_dir = settings["state-dir"];
  options->allowed_host_paths = Repeated(settings, "allow-host-path");
  options->runtime = *runtime;
  options->log_sink = d->log;
  options->port = d->port;
  options->node_name =
      settings["node-name"].empty() ? petrel::DefaultNodeName() : settings["node-name"];
  if (petrel::Status s = petrel::Orchestrator::Open(*options, &d->orch); !s.ok()) {
    std::fprintf(stderr, "petreld: %s\n", s.message().c_str());
    return false;
  }
  if (specs.empty()) return true;
  auto applied = d->orch->Apply(specs);
  if (!applied.ok()) {
    std::fprintf(stderr, "petreld: %s\n", applied.status().message().c_str());
    return false;
  }
  for (const petrel::ApplyResult& r : *applied) {
    d->log(petrel::LogLevel::kInfo, "petreld: workload " + r.name + " " +
                                        petrel::OutcomeName(r.outcome) + " from " +
                                        settings["manifests"]);
  }
  return true;
}

// On cgroup v2, with the containers' cgroup parent in petreld's own cgroup (a systemd
// unit's, delegated): petreld moves into a leaf of it, <its cgroup>/petreld, before it
// starts anything, so that the unit's cgroup may give controllers to its children. A
// failed move is only a warning: the runtime then says what it could not do.
void EnterLeafCgroup(Settings& settings, Daemon* d) {
  petrel::Result<petrel::LeafCgroupMove> moved =
      d->port->EnterLeafCgroup(settings["cgroup-parent"], "petreld");
  if (!moved.ok()) {
    d->log(petrel::LogLevel::kWarn,
           "petreld: move into a leaf cgroup: " + moved.status().message());
  } else if (!moved->leaf.empty()) {
    d->log(petrel::LogLevel::kInfo, "petreld: moved into cgroup " + moved->leaf +
                                        " so that its own cgroup may hold the containers'");
  } else {
    d->log(petrel::LogLevel::kDebug, "petreld: stays in its cgroup: " + moved->skipped);
  }
}

// With --peer-listen, wraps the local Orchestrator in d->orch into a Cluster, which
// takes its place. Prints why and returns false when that fails.
bool OpenCluster(Settings& settings, const Labels& labels, const petrel::Options& options,
                 Daemon* d) {
  if (!settings.count("peer-listen")) return true;
  petrel::ClusterOptions c;
  c.state_dir = options.state_dir;
  c.node_name = options.node_name;
  c.peer_listen = settings["peer-listen"];
  c.advertise = settings["advertise"];
  c.join = settings["join"];
  c.token = settings["token"];
  c.witness = settings["witness"] == "true";
  c.labels = labels;
  c.lease_dir = settings["lease-dir"];
  c.allowed_host_paths = options.allowed_host_paths;
  // Given: what it says (0: not limited, -1 to ClusterOptions); else detected (0).
  if (settings.count("capacity-memory")) {
    const int64_t q = petrel::ParseBytes(settings["capacity-memory"]).value();
    c.capacity_memory_bytes = q == 0 ? -1 : q;
  }
  if (settings.count("capacity-cpu")) {
    const int64_t q = petrel::ParseCpuMillis(settings["capacity-cpu"]).value();
    c.capacity_cpu_millis = q == 0 ? -1 : q;
  }
  c.log_sink = d->log;
  std::unique_ptr<petrel::Cluster> cluster;
  if (petrel::Status s = petrel::Cluster::Open(c, std::move(d->orch), &cluster); !s.ok()) {
    std::fprintf(stderr, "petreld: %s\n", s.message().c_str());
    return false;
  }
  d->cluster = cluster.get();
  d->orch = std::move(cluster);
  return true;
}

// Runs the loop until SIGTERM or SIGINT: petrel's reconcile loop and the control API on
// the socket. Returns the exit code.
int Serve(Settings& settings, const petrel::Options& options, Daemon* d) {
  uv_loop_init(&d->loop);
  if (petrel::Status s = d->orch->Attach(&d->loop); !s.ok()) {
    std::fprintf(stderr, "petreld: %s\n", s.message().c_str());
    return 1;
  }
  petrel::ApiOptions api;
  api.node_name = options.node_name;
  api.runtime_name = options.runtime->Name();
  api.log_sink = d->log;
  api.loop_probe_ms = ProbeMs(settings["loop-probe-ms"]);
  api.cluster = d->cluster;
  api.socket_group = settings["socket-group"];
  if (settings.count("request-timeout")) {
    api.request_timeout_ms = *petrel::ParseDurationMs(settings["request-timeout"]);
  }
  d->server = std::make_unique<petrel::ApiServer>(d->orch.get(), api);
  if (petrel::Status s = d->server->Listen(&d->loop, settings["socket"]); !s.ok()) {
    std::fprintf(stderr, "petreld: %s\n", s.message().c_str());
    d->orch->Detach();
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
    return 1;
  }
  uv_signal_init(&d->loop, &d->sigterm);
  uv_signal_init(&d->loop, &d->sigint);
  d->sigterm.data = d;
  d->sigint.data = d;
  uv_signal_start(&d->sigterm, OnSignal, SIGTERM);
  uv_signal_start(&d->sigint, OnSignal, SIGINT);

  d->log(petrel::LogLevel::kInfo,
         "petreld: listening on " + settings["socket"] + " (runtime " + settings["runtime"] +
             ", node " + options.node_name + ", state " + options.state_dir +
             (d->cluster ? ", peers on " + settings["peer-listen"] : std::string()) + ")");
  d->Notify("READY=1\nSTATUS=listening on " + settings["socket"]);
  uv_run(&d->loop, UV_RUN_DEFAULT);
  d->server.reset();
  d->orch.reset();
  if (uv_loop_close(&d->loop) != 0) {
    d->log(petrel::LogLevel::kWarn, "petreld: handles left open at exit");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef PETREL_WITH_CONTAINERD
  if (petrel::IsContainerdLoggerCall(argc, argv)) return petrel::RunContainerdLogger(argc, argv);
#endif
  // One malloc arena for all of petreld's threads (workers, lister, store, API): each
  // thread's own arena would cost resident memory for what is a trickle of small
  // allocations, and every shim forked from petreld would carry those pages too.
  mallopt(M_ARENA_MAX, 1);
  Settings settings;
  Labels labels;
  petrel::LogLevel level;
  petrel::RuntimeRegistry runtimes;
  if (petrel::Status s = RegisterRuntimes(&runtimes); !s.ok()) {
    std::fprintf(stderr, "petreld: %s\n", s.message().c_str());
    return 1;
  }
  if (std::optional<int> done = ReadSettings(argc, argv, runtimes, &settings, &labels, &level)) {
    return *done;
  }

  // A client hanging up mid-answer must cost an EPIPE, not the daemon.
  std::signal(SIGPIPE, SIG_IGN);

  Daemon d;
  d.log = petrel::StderrLogSink(level);
  // The shared port unless the bridge is not the default one (checked with the settings).
  if (const petrel::BridgeNetwork bridge = BridgeOf(settings); bridge != petrel::BridgeNetwork()) {
    d.port = *petrel::MakePort(bridge);
  }
  petrel::Options options;
  EnterLeafCgroup(settings, &d);
  if (!OpenOrchestrator(settings, runtimes, &d, &options)) return 1;
  if (!OpenCluster(settings, labels, options, &d)) return 1;
  return Serve(settings, options, &d);
}
