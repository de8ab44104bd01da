// petreld: the reference daemon. One libuv loop runs petrel's reconcile loop and the
// control API (API.md) on a Unix socket; see README.md for the flags.
//
//   petreld [--config FILE] [--state-dir DIR] [--socket PATH] [--runtime crun|runc|fake]
//           [--runtime-endpoint ADDR] [--manifests FILE_OR_DIR]
//           [--log-level debug|info|warn|error] [--node-name NAME]
//
// It offers the runtimes it was built with (PETREL_WITH_CRUN, PETREL_WITH_FAKE), from
// a petrel::RuntimeRegistry that RegisterRuntimes fills.
//
// SIGTERM or SIGINT stops it cleanly (exit 0). Containers keep running: stopping the
// daemon is not stopping the workloads; the next petreld adopts them.
#include <malloc.h>
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
#include "petrel/manifest.h"
#include "petrel/orchestrator.h"
#include "petrel/port.h"
#include "petrel/runtimes.h"
#ifdef PETREL_WITH_CRUN
#include "petrel/crun.h"
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
#ifdef PETREL_WITH_FAKE
  PETREL_RETURN_IF_ERROR(petrel::testing::RegisterFakeRuntime(runtimes));
#endif
  if (runtimes->entries().empty()) return petrel::Status::NotFound("built without a runtime");
  return petrel::Status::OK();
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
         "               [--manifests FILE_OR_DIR] [--log-level debug|info|warn|error]\n"
         "               [--node-name NAME] [--loop-probe-ms MS] [--help] [--version]\n"
         "\n"
         "  --config FILE        YAML with the same keys without dashes (state-dir: /x);\n"
         "                       flags override it\n"
         "  --state-dir DIR      petrel's database (default /var/lib/petrel)\n"
         "  --socket PATH        the control API's socket (default /run/petrel/petrel.sock)\n"
         "  --runtime NAME       the container runtime (default " +
         runtimes.entries().front().name + "):\n" + table +
         "  --runtime-endpoint ADDR\n"
         "                       the runtime daemon's address, for runtimes that have one\n"
         "  --manifests PATH     a manifest file or directory applied at start\n"
         "  --log-level LEVEL    debug, info, warn or error (default info)\n"
         "  --node-name NAME     this node's name (default: the host name)\n"
         "  --loop-probe-ms MS   measure the loop's stalls with a timer every MS ms\n"
         "                       (1..1000; GET /v1/debug/loop reports them; default off)\n";
}

// --loop-probe-ms: 1..1000, else 0 (off, or not a valid value).
int64_t ProbeMs(const std::string& text) {
  int64_t ms = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (ec != std::errc() || end != text.data() + text.size() || ms < 1 || ms > 1000) return 0;
  return ms;
}

// The settings, by their flag names without dashes; keys of the config file too.
const char* const kKeys[] = {"state-dir", "socket",    "runtime",   "runtime-endpoint",
                             "manifests", "log-level", "node-name", "loop-probe-ms"};

using Settings = std::map<std::string, std::string>;

bool IsKey(const std::string& key) {
  for (const char* k : kKeys) {
    if (key == k) return true;
  }
  return false;
}

int BadUsage(const std::string& message) {
  std::fprintf(stderr, "petreld: %s (see petreld --help)\n", message.c_str());
  return 2;
}

// Reads the config file into the keys the flags left unset. On error, false with
// "FILE:LINE: what" in *error.
bool LoadConfig(const std::string& path, Settings* settings, std::string* error) {
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
  std::unique_ptr<petrel::Orchestrator> orch;
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

// Reads the flags into *flags and the --config file's name into *config. Returns an
// exit code when petreld is to stop here (--help, --version, a bad flag).
std::optional<int> ParseFlags(int argc, char** argv, const petrel::RuntimeRegistry& runtimes,
                              Settings* flags, std::string* config) {
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(Usage(runtimes).c_str(), stdout);
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
    } else if (key == "config" || IsKey(key)) {
      if (i + 1 >= argc) return BadUsage("--" + key + " needs a value");
      value = argv[++i];
    }
    if (key == "config") {
      *config = value;
    } else if (IsKey(key)) {
      (*flags)[key] = value;
    } else {
      return BadUsage("unknown flag \"--" + key + "\"");
    }
  }
  return std::nullopt;
}

// The settings: the flags, then the config file, then the defaults, checked. Returns
// an exit code when petreld is to stop here.
std::optional<int> ReadSettings(int argc, char** argv, const petrel::RuntimeRegistry& runtimes,
                                Settings* settings, petrel::LogLevel* level) {
  std::string config;
  if (std::optional<int> done = ParseFlags(argc, argv, runtimes, settings, &config)) return done;
  if (!config.empty()) {
    std::string error;
    if (!LoadConfig(config, settings, &error)) {
      std::fprintf(stderr, "petreld: %s\n", error.c_str());
      return 2;
    }
  }
  settings->emplace("state-dir", "/var/lib/petrel");
  settings->emplace("socket", "/run/petrel/petrel.sock");
  settings->emplace("runtime", runtimes.entries().front().name);
  settings->emplace("log-level", "info");
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
  return std::nullopt;
}

// Opens petrel over the runtime and applies the manifests given at start. Prints why
// and returns false when any of it fails.
bool OpenOrchestrator(Settings& settings, const petrel::RuntimeRegistry& runtimes, Daemon* d,
                      petrel::Options* options) {
  std::vector<petrel::WorkloadSpec> specs;
  if (!settings["manifests"].empty()) {
    auto loaded = petrel::LoadManifests(settings["manifests"]);
    if (!loaded.ok()) {
      std::fprintf(stderr, "petreld: %s\n", loaded.status().message().c_str());
      return false;
    }
    specs = std::move(*loaded);
  }
  petrel::RuntimeConfig config;
  config.state_dir = settings["state-dir"];
  config.endpoint = settings["runtime-endpoint"];
  config.port = d->port;
  config.log_sink = d->log;
  auto runtime = runtimes.Create(settings["runtime"], config);
  if (!runtime.ok()) {
    std::fprintf(stderr, "petreld: %s\n", runtime.status().message().c_str());
    return false;
  }
  options->state_dir = settings["state-dir"];
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

  d->log(petrel::LogLevel::kInfo, "petreld: listening on " + settings["socket"] + " (runtime " +
                                      settings["runtime"] + ", node " + options.node_name +
                                      ", state " + options.state_dir + ")");
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
  // One malloc arena for all of petreld's threads (workers, lister, store, API): each
  // thread's own arena would cost resident memory for what is a trickle of small
  // allocations, and every shim forked from petreld would carry those pages too.
  mallopt(M_ARENA_MAX, 1);
  Settings settings;
  petrel::LogLevel level;
  petrel::RuntimeRegistry runtimes;
  if (petrel::Status s = RegisterRuntimes(&runtimes); !s.ok()) {
    std::fprintf(stderr, "petreld: %s\n", s.message().c_str());
    return 1;
  }
  if (std::optional<int> done = ReadSettings(argc, argv, runtimes, &settings, &level)) {
    return *done;
  }

  // A client hanging up mid-answer must cost an EPIPE, not the daemon.
  std::signal(SIGPIPE, SIG_IGN);

  Daemon d;
  d.log = petrel::StderrLogSink(level);
  petrel::Options options;
  if (!OpenOrchestrator(settings, runtimes, &d, &options)) return 1;
  return Serve(settings, options, &d);
}
