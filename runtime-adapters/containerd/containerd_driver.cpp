// The containerd ProcessDriver (containerd_driver.h): a container and a task per bundle.
// A container is "created" while containerd has no task of it (or one not yet started),
// "running" while its task runs, "exited" once the task stopped.
#include "runtime-adapters/containerd/containerd_driver.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <utility>

#include "lib/util/fs.h"
#include "runtime-adapters/containerd/exits.h"
#include "runtime-adapters/containerd/grpc.h"
#include "runtime-adapters/containerd/logger.h"
#include "runtime-adapters/containerd/services.h"

namespace petrel::internal {
namespace {

using nlohmann::json;

constexpr char kStartedFile[] = "started";
constexpr char kExitedFile[] = "exited";
constexpr size_t kSmallFile = 256;
constexpr size_t kConfigFile = 4 << 20;  // a config.json is a few KiB

// Why a task could not be made or started, from containerd's answer: containerd 1.6
// passes runc's error on as runc's JSON log has it, its quotes escaped
// (`exec: \"x\": stat x: no such file or directory`); they are unescaped. The shim's or
// runc's refusal (containerd's UNKNOWN, an Internal) is an IOError, as the shim driver's.
Status StartError(const Status& s) {
  if (s.code() != Status::Code::kInternal) return s;
  std::string message(s.message());
  for (size_t at = message.find("\\\""); at != std::string::npos;
       at = message.find("\\\"", at + 1)) {
    message.erase(at, 1);
  }
  return Status::IOError(message);
}

TimeMs ToMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

class ContainerdDriver final : public ProcessDriver {
 public:
  explicit ContainerdDriver(ContainerdDriverOptions options) : opts_(std::move(options)) {}

  ~ContainerdDriver() override { watcher_.reset(); }

  std::string Name() const override { return "containerd"; }

  bool PetrelMakesCgroups() const override { return false; }

  Status Open(ExitFn on_exit) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    Status made = ContainerdCreateNamespace(channel.get(), opts_.ns);
    if (!made.ok() && made.code() != Status::Code::kAlreadyExists) {
      return made.WithContext("containerd namespace " + opts_.ns);
    }
    on_exit_ = std::move(on_exit);
    ContainerdExitWatcher::Options wo;
    wo.socket_path = opts_.socket_path;
    wo.ns = opts_.ns;
    wo.on_exit = [this](const ContainerdExit& exit) {
      // The init process's exit is the container's; an exec'd process's is not. Tasks
      // of the namespace that are not this runtime's (another petrel's, or made by
      // hand) are none of its business.
      if (exit.id != exit.container_id || !opts_.present(exit.container_id)) return;
      on_exit_(exit.container_id, static_cast<int>(exit.exit_status));
    };
    if (opts_.log_sink) {
      wo.on_report = [sink = opts_.log_sink](const Status& what) {
        if (what.ok()) {
          sink(LogLevel::kInfo, "containerd adapter: hearing containerd's exits again");
        } else if (what.code() == Status::Code::kCorruption) {
          sink(LogLevel::kWarn, "containerd adapter: an event skipped: " + what.ToString());
        } else {
          sink(LogLevel::kWarn,
               "containerd adapter: not hearing containerd's exits (they are read from its "
               "tasks until it is back): " +
                   what.ToString());
        }
      };
    }
    PETREL_ASSIGN_OR_RETURN(watcher_, ContainerdExitWatcher::Start(std::move(wo)));
    return Status::OK();
  }

  Result<ProcessState> State(const std::string& id) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    ProcessState info;
    Result<ContainerdProcess> task = ContainerdGetTask(channel.get(), id);
    if (!task.ok()) {
      if (!task.status().IsNotFound()) return task.status();
      // No task: never run (or its Run failed and took what it made), unless the
      // container itself is gone, or its task was started once (the `started` file)
      // and is gone now: deleted by a Delete under way, or lost by containerd (its
      // state is on tmpfs: a reboot), so it has exited, with a code nobody knows.
      if (!opts_.present(id)) return Status::NotFound("no container " + id);
      Result<std::string> started = ReadSmallFile(DirOf(id) + "/" + kStartedFile, kSmallFile);
      if (!started.ok()) {
        return started.status().IsNotFound() ? Result<ProcessState>(info) : started.status();
      }
      info.state = ContainerState::kExited;
      info.started_at = std::atoll(started->c_str());
      // How it ended, when a Delete recorded it: "<code> <finished ms>".
      Result<std::string> exited = ReadSmallFile(DirOf(id) + "/" + kExitedFile, kSmallFile);
      if (exited.ok()) {
        char* end = nullptr;
        info.exit_code = static_cast<int>(std::strtol(exited->c_str(), &end, 10));
        info.finished_at = std::atoll(end);
      } else if (exited.status().IsNotFound()) {
        info.exit_reason = "its task is gone from containerd";
      } else {
        return exited.status();
      }
      return info;
    }
    switch (task->status) {
      case ContainerdTaskStatus::kCreated:
        return info;  // a Run under way, or one cut short by a crash
      case ContainerdTaskStatus::kStopped:
        info.state = ContainerState::kExited;
        info.exit_code = static_cast<int>(task->exit_status);
        info.finished_at = ToMs(task->exited_at);
        break;
      default:  // running, paused, or a state this build does not know: it lives
        info.state = ContainerState::kRunning;
        info.pid = static_cast<int>(task->pid);
        break;
    }
    Result<std::string> started = ReadSmallFile(DirOf(id) + "/" + kStartedFile, kSmallFile);
    if (started.ok()) info.started_at = std::atoll(started->c_str());
    return info;
  }

  Status Run(const Bundle& bundle) override {
    const std::string& id = bundle.id;
    if (!bundle.lease.empty()) {
      // The crun shim enforces a lease; containerd's shim knows of none.
      return Status::NotSupported("start container " + id +
                                  ": leases (exclusive workloads in a cluster) need the crun or "
                                  "runc runtime, not containerd yet");
    }
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    ContainerdContainer c;
    c.id = id;
    c.labels = {{kContainerdPetrelLabel, "true"}};
    c.runtime = opts_.runtime;
    c.runc_root = opts_.runc_root;
    PETREL_ASSIGN_OR_RETURN(c.spec, SpecOf(bundle));
    Result<ContainerdContainer> made = ContainerdCreateContainer(channel.get(), c);
    if (made.status().code() == Status::Code::kAlreadyExists) {
      // Left by a Run a crash cut short: taken away unless its task has started.
      PETREL_RETURN_IF_ERROR(RemoveUnstarted(channel.get(), id));
      made = ContainerdCreateContainer(channel.get(), c);
    }
    if (!made.ok()) return made.status();

    ContainerdTaskIO io;
    io.stdout_uri = ContainerdLogUri(opts_.logger, bundle.dir, opts_.log_max_bytes);
    io.stderr_uri = io.stdout_uri;  // services.h: the 1.6 shim dies without one
    Status s = ContainerdCreateTask(channel.get(), id, ContainerdOverlayMounts(bundle.overlay), io)
                   .status();
    const std::string started = bundle.dir + "/" + kStartedFile;
    if (s.ok()) {
      const TimeMs now = ToMs(std::chrono::system_clock::now());
      s = WriteFileAtomic(started, std::to_string(now) + "\n");
    }
    if (s.ok()) s = ContainerdStartTask(channel.get(), id).status();
    if (s.ok()) return s;
    // Nothing of a failed Run stays in containerd.
    (void)Remove(channel.get(), id);
    unlink(started.c_str());
    unlink((bundle.dir + "/" + kExitedFile).c_str());
    return StartError(s);
  }

  Status Signal(const std::string& id, int signal) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    Status s = ContainerdKillTask(channel.get(), id, signal);
    if (s.ok()) return s;
    // containerd 1.6 answers NotFound "process already finished" for a stopped task.
    Result<ContainerdProcess> task = ContainerdGetTask(channel.get(), id);
    if (task.ok() && task->status == ContainerdTaskStatus::kStopped) return Status::OK();
    return s.WithContext("signal container " + id);
  }

  Result<ExecResult> Exec(const Bundle& bundle, const std::string&, const ExecOptions&) override {
    return Status::NotSupported("exec in " + bundle.id + ": exec on containerd: not yet");
  }

  Status Delete(const std::string& id) override {
    PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, Channel());
    // The `started` file stays, for State to say "exited" until the container's
    // directory goes (ProcessDriver's caller removes it next).
    return Remove(channel.get(), id);
  }

 private:
  std::string DirOf(const std::string& id) const { return opts_.containers_dir + "/" + id; }

  Result<std::unique_ptr<GrpcChannel>> Channel() const {
    GrpcChannel::Options o;
    o.socket_path = opts_.socket_path;
    o.ns = opts_.ns;
    o.timeout = opts_.call_timeout;
    return GrpcChannel::Open(o);
  }

  // The container's spec: the bundle's config.json, whose root.path names its rootfs
  // directory. With an overlay, the task's mount makes the root filesystem on the
  // bundle containerd keeps: root.path becomes "rootfs", relative to that bundle.
  static Result<std::string> SpecOf(const Bundle& bundle) {
    const std::string path = bundle.dir + "/config.json";
    PETREL_ASSIGN_OR_RETURN(std::string spec, ReadSmallFile(path, kConfigFile));
    if (bundle.overlay.empty()) return spec;
    json j = json::parse(spec, nullptr, false);
    if (!j.is_object()) return Status::Corruption(path + ": not a JSON object");
    j["root"]["path"] = "rootfs";
    return j.dump();
  }

  // Kills the task (every process) should it run, deletes it and the container: OK when
  // they are gone, also when they were not there.
  Status Remove(GrpcChannel* channel, const std::string& id) {
    Result<ContainerdProcess> task = ContainerdGetTask(channel, id);
    if (task.ok()) {
      ContainerdExit exit;
      exit.exit_status = task->exit_status;
      exit.exited_at = task->exited_at;
      if (task->status != ContainerdTaskStatus::kStopped) {
        Status k = ContainerdKillTask(channel, id, SIGKILL, true);
        if (!k.ok() && !k.IsNotFound()) return k.WithContext("delete container " + id);
        Result<ContainerdExit> waited = ContainerdWaitTask(channel, id);
        if (!waited.ok() && !waited.status().IsNotFound()) {
          return waited.status().WithContext("delete container " + id);
        }
        if (waited.ok()) exit = *waited;
      }
      // What State answers once the task is gone, until the directory goes.
      if (task->status != ContainerdTaskStatus::kCreated) {
        PETREL_RETURN_IF_ERROR(WriteFileAtomic(
            DirOf(id) + "/" + kExitedFile,
            std::to_string(exit.exit_status) + " " + std::to_string(ToMs(exit.exited_at)) + "\n"));
      }
      Status d = ContainerdDeleteTask(channel, id).status();
      if (!d.ok() && !d.IsNotFound()) return d.WithContext("delete container " + id);
    } else if (!task.status().IsNotFound()) {
      return task.status().WithContext("delete container " + id);
    }
    Status d = ContainerdDeleteContainer(channel, id);
    if (!d.ok() && !d.IsNotFound()) return d.WithContext("delete container " + id);
    return Status::OK();
  }

  // Removes container `id` from containerd when its task never started (a Run cut
  // short); FailedPrecondition when it has.
  Status RemoveUnstarted(GrpcChannel* channel, const std::string& id) {
    Result<ContainerdProcess> task = ContainerdGetTask(channel, id);
    if (task.ok() && task->status != ContainerdTaskStatus::kCreated) {
      return Status::FailedPrecondition("start container " + id + ": containerd has its task, " +
                                        ContainerdTaskStatusName(task->status));
    }
    if (!task.ok() && !task.status().IsNotFound()) return task.status();
    return Remove(channel, id);
  }

  const ContainerdDriverOptions opts_;
  ExitFn on_exit_;
  std::unique_ptr<ContainerdExitWatcher> watcher_;
};

}  // namespace

std::vector<ContainerdMount> ContainerdOverlayMounts(const std::string& overlay) {
  if (overlay.empty()) return {};
  ContainerdMount m;
  m.type = "overlay";
  m.source = "overlay";
  std::string option;
  for (size_t i = 0; i < overlay.size(); i++) {
    const char c = overlay[i];
    if (c == '\\' && i + 1 < overlay.size()) {
      option += c;
      option += overlay[++i];
    } else if (c == ',') {
      m.options.push_back(std::move(option));
      option.clear();
    } else {
      option += c;
    }
  }
  m.options.push_back(std::move(option));
  return {m};
}

std::unique_ptr<ProcessDriver> NewContainerdDriver(ContainerdDriverOptions options) {
  return std::make_unique<ContainerdDriver>(std::move(options));
}

}  // namespace petrel::internal
