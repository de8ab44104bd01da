// The runtime "none" (petrel/runtimes.h): a witness's, which runs no containers.
#include "petrel/runtimes.h"

namespace petrel {
namespace {

constexpr const char kRunsNothing[] = "runtime none runs no containers (a witness)";

class NoContainerRuntime : public ContainerRuntime {
 public:
  std::string Name() const override { return "none"; }

  Status PullImage(const std::string& image, const PullOptions& /*options*/) override {
    return Status::FailedPrecondition(image + ": " + kRunsNothing);
  }
  Result<std::string> Create(const ContainerSpec& spec) override {
    return Status::FailedPrecondition(spec.name + ": " + kRunsNothing);
  }
  Status Start(const std::string& id) override {
    return Status::FailedPrecondition(id + ": " + kRunsNothing);
  }
  Status Kill(const std::string& id, int /*signal*/) override { return NoSuch(id); }
  Status Remove(const std::string& id) override { return NoSuch(id); }
  Result<std::vector<ContainerInfo>> List(
      const std::map<std::string, std::string>& /*selector*/) override {
    return std::vector<ContainerInfo>();
  }
  Result<ContainerInfo> Inspect(const std::string& id) override { return NoSuch(id); }
  Result<LogChunk> Logs(const std::string& id, const LogOptions& /*options*/) override {
    return NoSuch(id);
  }
  // No container ever exits: the handler is never called, so there is nothing to keep.
  void SetExitHandler(ExitHandler /*handler*/) override {}

 private:
  static Status NoSuch(const std::string& id) {
    return Status::NotFound("container " + id + " not found (" + kRunsNothing + ")");
  }
};

}  // namespace

std::shared_ptr<ContainerRuntime> NoRuntime() { return std::make_shared<NoContainerRuntime>(); }

Status RegisterNoRuntime(RuntimeRegistry* registry) {
  auto factory = [](const RuntimeConfig& config) -> Result<std::shared_ptr<ContainerRuntime>> {
    if (!config.endpoint.empty()) {
      return Status::InvalidArgument(
          "runtime none takes no endpoint (it runs no containers); got \"" + config.endpoint +
          "\"");
    }
    return NoRuntime();
  };
  return registry->Register({"none", "no containers: for a witness (with --witness)", factory});
}

}  // namespace petrel
