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

}  // namespace petrel
