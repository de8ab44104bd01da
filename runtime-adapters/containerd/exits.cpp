#include "runtime-adapters/containerd/exits.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace petrel::internal {

Result<std::unique_ptr<ContainerdExitWatcher>> ContainerdExitWatcher::Start(Options options) {
  GrpcChannel::Options co;
  co.socket_path = options.socket_path;
  co.ns = options.ns;
  PETREL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcChannel> channel, GrpcChannel::Open(co));
  std::unique_ptr<ContainerdExitWatcher> watcher(
      new ContainerdExitWatcher(std::move(options), std::move(channel)));
  watcher->thread_ = std::thread([w = watcher.get()] { w->Run(); });
  return watcher;
}

ContainerdExitWatcher::ContainerdExitWatcher(Options options, std::unique_ptr<GrpcChannel> channel)
    : options_(std::move(options)), channel_(std::move(channel)) {}

ContainerdExitWatcher::~ContainerdExitWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stopping_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int ContainerdExitWatcher::subscriptions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return subscriptions_;
}

void ContainerdExitWatcher::Run() {
  using Clock = std::chrono::steady_clock;
  // A stream that stood this long was subscribed: the next outage starts its waits
  // from retry_first again, and one reported is over.
  constexpr auto kStood = std::chrono::seconds(1);
  const std::vector<std::string> filters = {R"(topic=="/tasks/exit",namespace==")" + options_.ns +
                                            "\""};
  auto report = [&](const Status& what) {
    if (options_.on_report) options_.on_report(what);
  };
  std::chrono::milliseconds wait = options_.retry_first;
  bool outage = false;  // reported, and not yet over
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      subscriptions_++;
    }
    const Clock::time_point began = Clock::now();
    // Polled about once a second while the stream is idle (grpc.h): also the moment to
    // say that a reported outage is over.
    auto stop = [&] {
      if (outage && Clock::now() - began >= kStood) {
        outage = false;
        report(Status::OK());
      }
      std::lock_guard<std::mutex> lock(mu_);
      return stopping_;
    };
    auto on_envelope = [&](ContainerdEnvelope envelope) {
      Result<ContainerdExit> exit = ContainerdDecodeTaskExit(envelope);
      if (!exit.ok()) {
        report(exit.status().WithContext("containerd event " + envelope.topic));
        return Status::OK();
      }
      if (options_.on_exit) options_.on_exit(*exit);
      return Status::OK();
    };
    const Result<GrpcStreamEnd> end =
        ContainerdSubscribe(channel_.get(), filters, on_envelope, stop);
    if (end.ok() && *end == GrpcStreamEnd::kStopped) return;
    if (Clock::now() - began >= kStood) wait = options_.retry_first;
    if (!outage) {
      outage = true;
      report(end.ok() ? Status::Unavailable("containerd ended the events stream on " +
                                            options_.socket_path)
                      : end.status());
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_cv_.wait_for(lock, wait, [&] { return stopping_; })) return;
    wait = std::min(wait * 2, options_.retry_max);
  }
}

}  // namespace petrel::internal
