#include "petrel/testing/fake_runtime.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>

namespace petrel::testing {

FakeRuntime::FakeRuntime(std::shared_ptr<Clock> clock) : clock_(std::move(clock)) {}

void FakeRuntime::Door(Op op) {
  std::unique_lock<std::mutex> lock(door_mu_);
  if (!held_.count(op)) return;
  ++waiting_[op];
  door_cv_.notify_all();
  door_cv_.wait(lock, [&] { return !held_.count(op); });
  --waiting_[op];
}

void FakeRuntime::Hold(Op op) {
  std::lock_guard<std::mutex> lock(door_mu_);
  held_.insert(op);
}

void FakeRuntime::Release(Op op) {
  {
    std::lock_guard<std::mutex> lock(door_mu_);
    held_.erase(op);
  }
  door_cv_.notify_all();
}

bool FakeRuntime::AwaitHeld(Op op, int n, int timeout_ms) {
  std::unique_lock<std::mutex> lock(door_mu_);
  return door_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                           [&] { return waiting_[op] >= n; });
}

Status FakeRuntime::PullImage(const std::string& image) {
  Door(Op::kPull);
  std::lock_guard<std::mutex> lock(mu_);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kPull));
  if (missing_images_.count(image)) return Status::NotFound(image + ": no such image");
  pulled_.push_back(image);
  return Status::OK();
}

void FakeRuntime::SetImageMissing(const std::string& image, bool missing) {
  std::lock_guard<std::mutex> lock(mu_);
  if (missing) {
    missing_images_.insert(image);
  } else {
    missing_images_.erase(image);
  }
}

std::vector<std::string> FakeRuntime::Pulled() {
  std::lock_guard<std::mutex> lock(mu_);
  return pulled_;
}

Status FakeRuntime::TakeInjected(Op op) {
  ++calls_[op];
  auto it = injected_.find(op);
  if (it == injected_.end()) return Status::OK();
  Status s = it->second.first;
  if (--it->second.second <= 0) injected_.erase(it);
  return s;
}

void FakeRuntime::EndProcess(Container* c, int exit_code) {
  c->info.state = ContainerState::kExited;
  c->info.exit_code = exit_code;
  c->info.pid = 0;
  c->info.finished_at = clock_->Now();
}

void FakeRuntime::NotifyExit(const std::string& id, int exit_code) {
  std::shared_ptr<ExitHandler> handler;
  {
    std::lock_guard<std::mutex> lock(mu_);
    handler = exit_handler_;
  }
  if (handler && *handler) (*handler)(id, exit_code);
}

Result<std::string> FakeRuntime::Create(const ContainerSpec& spec) {
  Door(Op::kCreate);
  std::lock_guard<std::mutex> lock(mu_);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kCreate));
  if (missing_images_.count(spec.image)) return Status::NotFound(spec.image + ": no such image");
  for (const Container& c : containers_) {
    if (c.info.name == spec.name) {
      return Status::AlreadyExists("container name " + spec.name + " is in use by " + c.info.id);
    }
  }
  char id[32];
  std::snprintf(id, sizeof(id), "fake%06d", next_id_++);
  Container c;
  c.info.id = id;
  c.info.name = spec.name;
  c.info.labels = spec.labels;
  c.info.state = ContainerState::kCreated;
  c.info.created_at = clock_->Now();
  c.spec = spec;
  containers_.push_back(std::move(c));
  return std::string(id);
}

Status FakeRuntime::Start(const std::string& id) {
  Door(Op::kStart);
  std::lock_guard<std::mutex> lock(mu_);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kStart));
  for (Container& c : containers_) {
    if (c.info.id != id) continue;
    if (c.info.state != ContainerState::kCreated) {
      return Status::FailedPrecondition("container " + id + " is " +
                                        ContainerStateName(c.info.state) + ", not created");
    }
    c.info.state = ContainerState::kRunning;
    c.info.pid = next_pid_++;
    c.info.started_at = clock_->Now();
    return Status::OK();
  }
  return Status::NotFound("no container " + id);
}

Status FakeRuntime::Kill(const std::string& id, int signal) {
  Door(Op::kKill);
  int exit_code = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    PETREL_RETURN_IF_ERROR(TakeInjected(Op::kKill));
    auto it = std::find_if(containers_.begin(), containers_.end(),
                           [&](const Container& c) { return c.info.id == id; });
    if (it == containers_.end()) return Status::NotFound("no container " + id);
    if (it->info.state != ContainerState::kRunning) return Status::OK();
    if (signal == SIGTERM && ignore_sigterm_) return Status::OK();
    if (signal == SIGTERM || signal == SIGKILL || signal == SIGINT) {
      exit_code = 128 + signal;
      EndProcess(&*it, exit_code);
    }
  }
  if (exit_code >= 0) NotifyExit(id, exit_code);
  return Status::OK();
}

Status FakeRuntime::Remove(const std::string& id) {
  Door(Op::kRemove);
  std::lock_guard<std::mutex> lock(mu_);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kRemove));
  auto it = std::find_if(containers_.begin(), containers_.end(),
                         [&](const Container& c) { return c.info.id == id; });
  if (it == containers_.end()) return Status::NotFound("no container " + id);
  if (it->info.state == ContainerState::kRunning) {
    return Status::FailedPrecondition("container " + id + " is running");
  }
  containers_.erase(it);
  return Status::OK();
}

Result<std::vector<ContainerInfo>> FakeRuntime::List(
    const std::map<std::string, std::string>& selector) {
  Door(Op::kList);
  std::lock_guard<std::mutex> lock(mu_);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kList));
  std::vector<ContainerInfo> out;
  for (const Container& c : containers_) {
    bool match = std::all_of(selector.begin(), selector.end(), [&](const auto& kv) {
      auto it = c.info.labels.find(kv.first);
      return it != c.info.labels.end() && it->second == kv.second;
    });
    if (match) out.push_back(c.info);
  }
  return out;
}

Result<ContainerInfo> FakeRuntime::Inspect(const std::string& id) {
  Door(Op::kInspect);
  std::lock_guard<std::mutex> lock(mu_);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kInspect));
  for (const Container& c : containers_) {
    if (c.info.id == id) return c.info;
  }
  return Status::NotFound("no container " + id);
}

Result<LogChunk> FakeRuntime::Logs(const std::string& id, const LogOptions& options) {
  Door(Op::kLogs);
  std::lock_guard<std::mutex> lock(mu_);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kLogs));
  for (const Container& c : containers_) {
    if (c.info.id != id) continue;
    const int64_t size = static_cast<int64_t>(c.log.size());
    const int64_t limit = static_cast<int64_t>(options.limit_bytes);
    LogChunk chunk;
    chunk.start_offset = options.since_offset < 0 ? std::max<int64_t>(0, size - limit)
                                                  : std::min(options.since_offset, size);
    chunk.end_offset = std::min(size, chunk.start_offset + limit);
    chunk.data = c.log.substr(chunk.start_offset, chunk.end_offset - chunk.start_offset);
    return chunk;
  }
  return Status::NotFound("no container " + id);
}

void FakeRuntime::SetExitHandler(ExitHandler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  exit_handler_ = handler ? std::make_shared<ExitHandler>(std::move(handler)) : nullptr;
}

Status FakeRuntime::Exit(const std::string& id, int exit_code) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = std::find_if(containers_.begin(), containers_.end(),
                           [&](const Container& c) { return c.info.id == id; });
    if (it == containers_.end()) return Status::NotFound("no container " + id);
    if (it->info.state != ContainerState::kRunning) {
      return Status::FailedPrecondition("container " + id + " is not running");
    }
    EndProcess(&*it, exit_code);
  }
  NotifyExit(id, exit_code);
  return Status::OK();
}

Status FakeRuntime::ForceRemove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(containers_.begin(), containers_.end(),
                         [&](const Container& c) { return c.info.id == id; });
  if (it == containers_.end()) return Status::NotFound("no container " + id);
  containers_.erase(it);
  return Status::OK();
}

void FakeRuntime::FailNext(Op op, Status status, int times) {
  std::lock_guard<std::mutex> lock(mu_);
  injected_[op] = {std::move(status), times};
}

void FakeRuntime::SetIgnoreSigterm(bool ignore) {
  std::lock_guard<std::mutex> lock(mu_);
  ignore_sigterm_ = ignore;
}

void FakeRuntime::AppendLog(const std::string& id, const std::string& text) {
  std::lock_guard<std::mutex> lock(mu_);
  for (Container& c : containers_) {
    if (c.info.id == id) c.log += text;
  }
}

Result<ContainerSpec> FakeRuntime::SpecOf(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Container& c : containers_) {
    if (c.info.id == id) return c.spec;
  }
  return Status::NotFound("no container " + id);
}

std::vector<ContainerInfo> FakeRuntime::Containers() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ContainerInfo> out;
  for (const Container& c : containers_) out.push_back(c.info);
  return out;
}

int FakeRuntime::Calls(Op op) {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_[op];
}

Status RegisterFakeRuntime(RuntimeRegistry* registry) {
  auto factory = [](const RuntimeConfig& config) -> Result<std::shared_ptr<ContainerRuntime>> {
    if (!config.endpoint.empty()) {
      return Status::InvalidArgument(
          "runtime fake takes no endpoint (its containers live in memory); got \"" +
          config.endpoint + "\"");
    }
    return std::shared_ptr<ContainerRuntime>(
        std::make_shared<FakeRuntime>(config.clock ? config.clock : SystemClock()));
  };
  return registry->Register(
      {"fake", "containers in memory that \"run\" until killed, for tests", factory});
}

}  // namespace petrel::testing
