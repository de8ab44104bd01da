#include "petrel/runtime.h"

namespace petrel {

const char* ContainerStateName(ContainerState state) {
  switch (state) {
    case ContainerState::kCreated: return "created";
    case ContainerState::kRunning: return "running";
    case ContainerState::kExited: return "exited";
  }
  return "unknown";
}

const char* PullPolicyName(PullPolicy policy) {
  switch (policy) {
    case PullPolicy::kIfNotPresent: return "IfNotPresent";
    case PullPolicy::kAlways: return "Always";
    case PullPolicy::kNever: return "Never";
  }
  return "unknown";
}

}  // namespace petrel
