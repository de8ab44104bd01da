#include "petrel/cluster.h"

namespace petrel {

Status Cluster::Open(const ClusterOptions&, std::unique_ptr<Orchestrator>,
                     std::unique_ptr<Cluster>*) {
  return Status::NotSupported("cluster: being written");
}

}  // namespace petrel
