// The README's embedding example, compiled with every build so it stays true.
#include <petrel/manifest.h>
#include <petrel/orchestrator.h>
#include <petrel/testing/fake_runtime.h>  // or a real adapter's factory
#include <unistd.h>

#include <cstdio>

int main() {
  petrel::Options options;
  options.state_dir = "/var/lib/petrel";  // created 0700 if missing
  options.runtime = std::make_shared<petrel::testing::FakeRuntime>(petrel::SystemClock());
  std::unique_ptr<petrel::Orchestrator> orch;
  if (petrel::Status s = petrel::Orchestrator::Open(options, &orch); !s.ok()) {
    fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  orch->Subscribe([](const petrel::Event& e) {  // on petrel's loop thread
    printf("%s/%d %s: %s\n", e.workload.c_str(), e.replica, e.type.c_str(), e.message.c_str());
  });
  auto specs = petrel::LoadManifests("/etc/petrel/manifests");  // file or directory
  if (!specs.ok()) {
    fprintf(stderr, "%s\n", specs.status().message().c_str());
    return 1;
  }
  (void)orch->Start();        // own loop thread; or Attach(uv_loop_t*), or Step()
  (void)orch->Apply(*specs);  // durable when it returns OK
  pause();                    // containers keep running after petrel exits
}
