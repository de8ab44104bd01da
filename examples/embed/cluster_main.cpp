// The README's cluster example: a node that starts a one-member cluster and prints
// its join token, which other nodes give ClusterOptions::token with ::join set to this
// node's address. Compiled with every build; tests/install/pkgconfig_link_test.sh
// links it with `pkg-config petrel-cluster petrel-testing` and runs it.
// Usage: petrel-embed-cluster STATE_DIR ADDR:PORT
#include <petrel/cluster.h>
#include <petrel/testing/fake_runtime.h>  // or a real adapter's factory

#include <csignal>
#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s STATE_DIR ADDR:PORT\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);  // a peer's broken connection must not kill the process
  petrel::Options options;
  options.state_dir = argv[1];
  options.node_name = petrel::DefaultNodeName();
  options.runtime = std::make_shared<petrel::testing::FakeRuntime>(petrel::SystemClock());
  std::unique_ptr<petrel::Orchestrator> local;
  petrel::Status s = petrel::Orchestrator::Open(options, &local);
  petrel::ClusterOptions cluster_options;
  cluster_options.state_dir = options.state_dir;  // cluster state: <state_dir>/cluster
  cluster_options.node_name = options.node_name;
  cluster_options.peer_listen = argv[2];
  std::unique_ptr<petrel::Cluster> cluster;
  if (s.ok()) s = petrel::Cluster::Open(cluster_options, std::move(local), &cluster);
  if (s.ok()) s = cluster->Start();  // own loop thread; or Attach(uv_loop_t*)
  if (!s.ok()) {
    fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  petrel::Result<std::string> token = cluster->Init({});  // first node only; blocks
  if (!token.ok()) {
    fprintf(stderr, "%s\n", token.status().ToString().c_str());
    return 1;
  }
  printf("cluster initialized; join token %.12s...\n", token->c_str());
  // Use it as an Orchestrator: Apply, Get, List, Subscribe. Destroying it stops the
  // loop; a restart with the same state_dir rejoins as this member.
}
