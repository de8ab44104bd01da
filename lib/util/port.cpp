#include "petrel/port.h"

namespace petrel {

const char* CgroupLayoutName(CgroupLayout layout) {
  switch (layout) {
    case CgroupLayout::kV1: return "v1";
    case CgroupLayout::kV2: return "v2";
    case CgroupLayout::kHybrid: return "hybrid";
  }
  return "?";
}

}  // namespace petrel
