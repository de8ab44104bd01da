// Apply-to-running time of petrel on crun and runc, side by side with the raw runtime
// starting the same prepared bundle in the same process, printed as a ratio; and, in
// its own run (mode containerd), on containerd beside `ctr run -d` of the same image,
// with the containerd whose socket $PETREL_BENCH_CONTAINERD_SOCKET names (tests/run
// starts one); and (mode docker) on Docker beside `docker run -d`, with the dockerd whose
// socket $PETREL_BENCH_DOCKERD_SOCKET names.
//
//   runtime_bench [IMAGE_REF [TRIALS [exec|containerd|docker]]]
//     exec: the Exec table alone; containerd, docker: that runtime's table alone
//     (IMAGE_REF "" for the default image)
//
// Without IMAGE_REF it takes the busybox image of tests/lib/images.h ($PETREL_TEST_IMAGE,
// else built with examples/images/make-busybox-image).
// petrel: Apply of a workload with N replicas (N = 1, 20) until the orchestrator
// reports N ready (Subscribe, no polling), image already unpacked (a cached image).
// The orchestrator runs each replica's create and start on its workers, so those of
// different replicas run side by side. one-by-one: the adapter alone, Create + Start
// per container in turn, no orchestrator (the serial cost of a container).
// raw: `<runtime> run -d` of N containers, one after another, from the bundle
// petrel made (its config.json, a copy of the image's rootfs) - what a hand-written
// script would do. On a hybrid cgroup host crun runs, as petrel runs it, in a private
// mount namespace with a pure cgroup2 mount and the cgroup manager disabled.
// petrel, raw and one-by-one containers have a network namespace of their own with
// loopback only (network none, what `run` of the bundle gives); "bridge ms" is petrel's
// apply again with the workload on petrel's bridge (CNI's plugins: a veth, an address,
// iptables rules per container), and "/petrel" its ratio to network none.
// On containerd, raw is `ctr run -d IMAGE` of N containers one after another (ctr
// returns once the task runs), the image imported into containerd beforehand, in a
// namespace of the bench's own; petrel's containers go in another, new each run.
// On Docker, raw is Debian's CLI, `docker run -d --network none IMAGE` of N containers
// one after another (it returns once the container runs), the image the one petrel
// loaded (by its id).
// Medians of TRIALS runs (default 5; three times that for N = 1). Never fails on speed; prints a
// table.
// Then Exec: ContainerRuntime::Exec of /bin/true in a running container through the
// adapter, beside `<runtime> exec <id> /bin/true` by hand against the same container
// (`ctr tasks exec` on containerd, `docker exec` on Docker; medians of 3 x TRIALS).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifdef PETREL_WITH_CONTAINERD
#include "petrel/containerd.h"
#endif
#ifdef PETREL_WITH_DOCKER
#include "petrel/docker.h"
#endif
#include "petrel/crun.h"
#include "petrel/orchestrator.h"
#include "petrel/port.h"
#include "tests/lib/images.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void Die(const std::string& what) {
  std::fprintf(stderr, "runtime_bench: %s\n", what.c_str());
  std::exit(1);
}

// Runs argv to its end; for hybrid crun inside the private cgroup2 mount namespace.
// `quiet`: its stderr goes too (ctr's warnings when it deletes what it killed).
int Run(const std::vector<std::string>& argv, bool private_cgroup2, bool quiet = false) {
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    if (quiet) dup2(null, 2);
    if (private_cgroup2) {
      if (unshare(CLONE_NEWNS) != 0 ||
          mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
          umount2("/sys/fs/cgroup", MNT_DETACH) != 0 ||
          mount("none", "/sys/fs/cgroup", "cgroup2", 0, nullptr) != 0) {
        _exit(126);
      }
    }
    std::vector<char*> a;
    for (const std::string& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execvp(a[0], a.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

struct PetrelRun {
  std::string dir;
  std::unique_ptr<petrel::Orchestrator> orch;
  std::shared_ptr<petrel::ContainerRuntime> rt;
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
};

void WaitStarted(PetrelRun* p, int n) {
  std::unique_lock<std::mutex> lock(p->mu);
  if (!p->cv.wait_for(lock, std::chrono::seconds(120), [&] { return p->started >= n; })) {
    Die("timed out waiting for " + std::to_string(n) + " containers");
  }
}

void WaitNone(PetrelRun* p) {
  for (int i = 0; i < 12000; i++) {
    auto l = p->rt->List({});
    if (l.ok() && l->empty()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto l = p->rt->List({});
  Die("containers were not removed: " +
      (l.ok() ? std::to_string(l->size()) + " left, first " + (*l)[0].id + " " +
                    petrel::ContainerStateName((*l)[0].state)
              : l.status().ToString()));
}

petrel::WorkloadSpec Workload(const std::string& image, int replicas,
                              petrel::NetworkMode network = petrel::NetworkMode::kNone) {
  petrel::WorkloadSpec w;
  w.name = "bench";
  w.image = image;
  w.replicas = replicas;
  w.network = network;
  w.command = {"/bin/sleep", "3600"};
  w.termination_grace_ms = 0;
  return w;
}

// The containerd socket of the containerd rows ("" for none).
std::string ContainerdSocket() {
  const char* socket = std::getenv("PETREL_BENCH_CONTAINERD_SOCKET");
  return socket != nullptr ? socket : "";
}

// The dockerd socket of the Docker rows ("" for none).
std::string DockerSocket() {
  const char* socket = std::getenv("PETREL_BENCH_DOCKERD_SOCKET");
  return socket != nullptr ? socket : "";
}

// The runtime `runtime` ("crun", "runc", "containerd" or "docker") keeping its files in
// `dir`.
std::shared_ptr<petrel::ContainerRuntime> OpenRuntime(const std::string& runtime,
                                                      const std::string& dir) {
  petrel::Result<std::shared_ptr<petrel::ContainerRuntime>> rt =
      petrel::Status::NotSupported("runtime " + runtime + ": not built");
  if (runtime == "containerd") {
#ifdef PETREL_WITH_CONTAINERD
    petrel::ContainerdOptions o;
    o.endpoint = ContainerdSocket();
    o.ns = "petrel-bench-" + std::to_string(getpid());  // nothing an earlier run left
    o.state_dir = dir + "/containerd";
    rt = petrel::NewContainerdRuntime(o);
#endif
  } else if (runtime == "docker") {
#ifdef PETREL_WITH_DOCKER
    petrel::DockerOptions o;
    o.endpoint = DockerSocket();
    o.state_dir = dir + "/docker";
    rt = petrel::NewDockerRuntime(o);
#endif
  } else {
    petrel::CrunOptions co;
    co.runtime = runtime;
    co.state_dir = dir + "/oci";
    rt = petrel::NewCrunRuntime(co);
  }
  if (!rt.ok()) Die(rt.status().ToString());
  return *rt;
}

// petrel over `runtime` in a fresh directory, counting the containers it starts.
void OpenPetrel(const std::string& runtime, PetrelRun* p) {
  char tmpl[] = "/tmp/petrel-bench.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) Die("mkdtemp");
  p->dir = tmpl;
  auto rt = OpenRuntime(runtime, p->dir);
  p->rt = rt;
  petrel::Options o;
  o.state_dir = p->dir;
  o.runtime = p->rt;
  o.node_name = "bench";
  o.log_sink = [](petrel::LogLevel level, std::string_view msg) {
    if (level >= petrel::LogLevel::kWarn)
      std::fprintf(stderr, "%.*s\n", int(msg.size()), msg.data());
  };
  if (!petrel::Orchestrator::Open(o, &p->orch).ok() || !p->orch->Start().ok()) Die("open petrel");
  p->orch->Subscribe([p](const petrel::Event& e) {
    if (e.type != "Started") return;
    std::lock_guard<std::mutex> lock(p->mu);
    p->started++;
    p->cv.notify_all();
  });
}

// Starts one container through petrel (which unpacks the image once) and copies its
// bundle for the raw runs. Returns the copy's directory.
std::string MakeRawBundle(PetrelRun* p, const std::string& image) {
  if (!p->orch->Apply(Workload(image, 1)).ok()) Die("apply");
  WaitStarted(p, 1);
  const std::string oci = p->dir + "/oci";
  const std::string cdir = oci + "/containers/petrel_bench_bench_0";
  nlohmann::json config = nlohmann::json::parse(std::ifstream(cdir + "/config.json"));
  nlohmann::json meta = nlohmann::json::parse(std::ifstream(cdir + "/meta.json"));
  const std::string id = meta["imageId"];
  const std::string image_rootfs = oci + "/images/" + id.substr(id.find(':') + 1) + "/rootfs";
  const std::string bundle = p->dir + "/raw-bundle";
  fs::create_directories(bundle);
  if (std::system(("cp -a " + image_rootfs + " " + bundle + "/rootfs").c_str()) != 0) Die("cp");
  config["root"]["path"] = bundle + "/rootfs";
  config["linux"].erase("cgroupsPath");  // the runtime's default: one per container id
  std::ofstream(bundle + "/config.json") << config.dump();
  if (!p->orch->Delete("bench").ok()) Die("delete");
  WaitNone(p);
  return bundle;
}

// Apply of `n` replicas until petrel reports them started; deleted afterwards.
double TimePetrel(PetrelRun* p, const std::string& image, int n,
                  petrel::NetworkMode network = petrel::NetworkMode::kNone) {
  {
    std::lock_guard<std::mutex> lock(p->mu);
    p->started = 0;
  }
  auto t0 = Clock::now();
  if (!p->orch->Apply(Workload(image, n, network)).ok()) Die("apply");
  WaitStarted(p, n);
  const double ms = Ms(t0, Clock::now());
  if (!p->orch->Delete("bench").ok()) Die("delete");
  WaitNone(p);
  return ms;
}

// The adapter alone, without the orchestrator: Create + Start per container in turn.
double TimeAdapter(PetrelRun* p, const std::string& image, int n) {
  auto t0 = Clock::now();
  for (int i = 0; i < n; i++) {
    petrel::ContainerSpec c;
    c.name = "adapter" + std::to_string(i);
    c.image = image;
    c.command = {"/bin/sleep", "3600"};
    auto id = p->rt->Create(c);
    if (!id.ok() || !p->rt->Start(*id).ok()) Die("adapter create/start");
  }
  const double ms = Ms(t0, Clock::now());
  for (int i = 0; i < n; i++) {
    const std::string id = "adapter" + std::to_string(i);
    (void)p->rt->Kill(id, SIGKILL);
    for (int k = 0; k < 500 && p->rt->Inspect(id)->state != petrel::ContainerState::kExited; k++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!p->rt->Remove(id).ok()) Die("adapter remove");
  }
  return ms;
}

// `<runtime> run -d` of `n` containers from `bundle`, one after another; `base` is the
// runtime's command line up to the subcommand.
double TimeRaw(const std::vector<std::string>& base, const std::string& bundle, int n, bool wrap) {
  auto t0 = Clock::now();
  for (int i = 0; i < n; i++) {
    std::vector<std::string> a = base;
    for (const char* s : {"run", "-d", "--bundle"}) a.push_back(s);
    a.push_back(bundle);
    a.push_back("raw" + std::to_string(i));
    if (Run(a, wrap) != 0) Die(base[0] + " run failed");
  }
  const double ms = Ms(t0, Clock::now());
  for (int i = 0; i < n; i++) {
    std::vector<std::string> a = base;
    for (const char* s : {"delete", "--force"}) a.push_back(s);
    a.push_back("raw" + std::to_string(i));
    Run(a, false);
  }
  return ms;
}

// `ctr run -d IMAGE` of `n` containers on containerd at `socket`, one after another,
// in namespace petrel-bench-raw, where `image` was imported as petrel.local/busybox.
double TimeCtr(const std::string& socket, int n) {
  const std::vector<std::string> base = {"ctr", "--address", socket, "-n", "petrel-bench-raw"};
  auto t0 = Clock::now();
  for (int i = 0; i < n; i++) {
    std::vector<std::string> a = base;
    for (const char* s : {"run", "-d", "petrel.local/busybox:latest"}) a.push_back(s);
    for (std::string s :
         {"raw" + std::to_string(i), std::string("/bin/sleep"), std::string("3600")}) {
      a.push_back(s);
    }
    if (Run(a, false) != 0) Die("ctr run failed");
  }
  const double ms = Ms(t0, Clock::now());
  for (int i = 0; i < n; i++) {
    const std::string id = "raw" + std::to_string(i);
    std::vector<std::string> a = base;
    a.insert(a.end(), {"tasks", "delete", "--force", id});
    Run(a, false, true);
    a = base;
    a.insert(a.end(), {"containers", "delete", id});
    Run(a, false, true);
  }
  return ms;
}

// The containerd rows: petrel on containerd beside `ctr run -d` of the same image.
void BenchContainerd(const std::string& image, int trials) {
  const std::string socket = ContainerdSocket();
  const std::string archive = image.substr(image.find(':') + 1);
  if (Run({"ctr", "--address", socket, "-n", "petrel-bench-raw", "images", "import", "--base-name",
           "petrel.local/busybox", archive},
          false) != 0) {
    Die("ctr images import " + archive);
  }
  PetrelRun p;
  OpenPetrel("containerd", &p);
  for (int n : {1, 20}) {
    std::vector<double> petrel_ms, adapter_ms, raw_ms, bridge_ms;
    const int runs = n == 1 ? 3 * trials : trials;
    for (int t = 0; t < runs; t++) {
      petrel_ms.push_back(TimePetrel(&p, image, n));
      adapter_ms.push_back(TimeAdapter(&p, image, n));
      raw_ms.push_back(TimeCtr(socket, n));
      bridge_ms.push_back(TimePetrel(&p, image, n, petrel::NetworkMode::kBridge));
    }
    double pm = Median(petrel_ms), am = Median(adapter_ms), rm = Median(raw_ms),
           bm = Median(bridge_ms);
    std::printf("%-10s %4d %10.1f %12.1f %10.1f %7.2fx %10.1f %7.2fx\n", "containerd", n, pm, am,
                rm, pm / rm, bm, bm / pm);
    std::fflush(stdout);
  }
  p.orch.reset();
  p.rt.reset();
  std::system(("rm -rf " + p.dir).c_str());
}

// `docker run -d --network none IMAGE /bin/sleep 3600` of `n` containers on the dockerd at
// `socket`, one after another (Debian's CLI, /usr/bin/docker).
double TimeDockerRun(const std::string& socket, const std::string& image, int n) {
  const std::vector<std::string> base = {"/usr/bin/docker", "-H", "unix://" + socket};
  auto t0 = Clock::now();
  for (int i = 0; i < n; i++) {
    std::vector<std::string> a = base;
    a.insert(a.end(), {"run", "-d", "--network", "none", "--name", "raw" + std::to_string(i), image,
                       "/bin/sleep", "3600"});
    if (Run(a, false) != 0) Die("docker run failed");
  }
  const double ms = Ms(t0, Clock::now());
  for (int i = 0; i < n; i++) {
    std::vector<std::string> a = base;
    a.insert(a.end(), {"rm", "-f", "raw" + std::to_string(i)});
    Run(a, false, true);
  }
  return ms;
}

// The Docker rows: petrel on Docker beside `docker run -d` of the same image.
void BenchDocker(const std::string& image, int trials) {
  PetrelRun p;
  OpenPetrel("docker", &p);
  if (!p.rt->PullImage(image, petrel::PullOptions()).ok()) Die("docker: pull " + image);
  auto images = p.rt->ListImages();
  if (!images.ok() || images->empty()) Die("docker: the image petrel loaded is not listed");
  const std::string id = images->front().id;  // what `docker run` is given
  for (int n : {1, 20}) {
    std::vector<double> petrel_ms, adapter_ms, raw_ms, bridge_ms;
    const int runs = n == 1 ? 3 * trials : trials;
    for (int t = 0; t < runs; t++) {
      petrel_ms.push_back(TimePetrel(&p, image, n));
      adapter_ms.push_back(TimeAdapter(&p, image, n));
      raw_ms.push_back(TimeDockerRun(DockerSocket(), id, n));
      bridge_ms.push_back(TimePetrel(&p, image, n, petrel::NetworkMode::kBridge));
    }
    double pm = Median(petrel_ms), am = Median(adapter_ms), rm = Median(raw_ms),
           bm = Median(bridge_ms);
    std::printf("%-10s %4d %10.1f %12.1f %10.1f %7.2fx %10.1f %7.2fx\n", "docker", n, pm, am, rm,
                pm / rm, bm, bm / pm);
    std::fflush(stdout);
  }
  p.orch.reset();
  p.rt.reset();
  std::system(("rm -rf " + p.dir).c_str());
}

// Exec of /bin/true through the adapter and by hand, in one container: the median ms.
void BenchExec(const std::string& runtime, const std::string& image, int trials, bool hybrid) {
  char tmpl[] = "/tmp/petrel-bench.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) Die("mkdtemp");
  const std::string dir = tmpl;
  petrel::Result<std::shared_ptr<petrel::ContainerRuntime>> rt = OpenRuntime(runtime, dir);
  petrel::ContainerSpec c;
  c.name = "exec";
  c.image = image;
  c.command = {"/bin/sleep", "3600"};
  if (!(*rt)->PullImage(image, petrel::PullOptions()).ok()) Die("pull");
  auto id = (*rt)->Create(c);
  if (!id.ok() || !(*rt)->Start(*id).ok()) Die("exec bench: create/start");
  std::vector<std::string> raw = {runtime, "--root", dir + "/oci/runtime"};
  if (runtime == "crun") {
    raw.push_back(hybrid ? "--cgroup-manager=disabled" : "--cgroup-manager=cgroupfs");
  }
  raw.insert(raw.end(), {"exec", *id, "/bin/true"});
  if (runtime == "docker") {
    raw = {"/usr/bin/docker", "-H", "unix://" + DockerSocket(), "exec", *id, "/bin/true"};
  }
  int execs = 0;  // ctr's exec ids, one per exec
  if (runtime == "containerd") {
    raw = {"ctr",
           "--address",
           ContainerdSocket(),
           "-n",
           "petrel-bench-" + std::to_string(getpid()),
           "tasks",
           "exec",
           "--exec-id",
           "",
           *id,
           "/bin/true"};
  }
  std::vector<double> adapter_ms, raw_ms;
  petrel::ExecOptions o;
  o.command = {"/bin/true"};
  for (int t = 0; t < 3 * trials; t++) {
    auto t0 = Clock::now();
    auto r = (*rt)->Exec(*id, o);
    adapter_ms.push_back(Ms(t0, Clock::now()));
    if (!r.ok() || r->exit_code != 0) Die("exec: " + r.status().ToString());
    if (runtime == "containerd") raw[8] = "bench" + std::to_string(execs++);
    t0 = Clock::now();
    if (Run(raw, false) != 0) Die(runtime + " exec failed");
    raw_ms.push_back(Ms(t0, Clock::now()));
  }
  const double am = Median(adapter_ms), rm = Median(raw_ms);
  std::printf("%-10s %10.1f %10.1f %7.2fx\n", runtime.c_str(), am, rm, am / rm);
  std::fflush(stdout);
  (void)(*rt)->Kill(*id, SIGKILL);
  for (int k = 0; k < 500 && (*rt)->Inspect(*id)->state != petrel::ContainerState::kExited; k++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!(*rt)->Remove(*id).ok()) Die("exec bench: remove");
  rt->reset();
  std::system(("rm -rf " + dir).c_str());
}

// The table's rows of one runtime.
void Bench(const std::string& runtime, const std::string& image, int trials, bool hybrid) {
  PetrelRun p;
  OpenPetrel(runtime, &p);
  const std::string bundle = MakeRawBundle(&p, image);
  std::vector<std::string> base = {runtime, "--root", p.dir + "/raw-root"};
  const bool wrap = hybrid && runtime == "crun";
  if (runtime == "crun") {
    base.push_back(wrap ? "--cgroup-manager=disabled" : "--cgroup-manager=cgroupfs");
  }
  for (int n : {1, 20}) {
    std::vector<double> petrel_ms, adapter_ms, raw_ms, bridge_ms;
    // One container is quick and noisy on a shared machine: three times the trials.
    const int runs = n == 1 ? 3 * trials : trials;
    for (int t = 0; t < runs; t++) {
      petrel_ms.push_back(TimePetrel(&p, image, n));
      adapter_ms.push_back(TimeAdapter(&p, image, n));
      raw_ms.push_back(TimeRaw(base, bundle, n, wrap));
      bridge_ms.push_back(TimePetrel(&p, image, n, petrel::NetworkMode::kBridge));
    }
    double pm = Median(petrel_ms), am = Median(adapter_ms), rm = Median(raw_ms),
           bm = Median(bridge_ms);
    std::printf("%-7s %4d %10.1f %12.1f %10.1f %7.2fx %10.1f %7.2fx\n", runtime.c_str(), n, pm, am,
                rm, pm / rm, bm, bm / pm);
    std::fflush(stdout);
  }
  p.orch.reset();
  p.rt.reset();
  std::system(("rm -rf " + p.dir).c_str());
}

}  // namespace

int main(int argc, char** argv) {
#ifdef PETREL_WITH_CONTAINERD
  // containerd's shim runs this binary as its containers' logger.
  if (petrel::IsContainerdLoggerCall(argc, argv)) return petrel::RunContainerdLogger(argc, argv);
#endif
  std::string image = argc > 1 ? argv[1] : "";
  if (image.empty()) {
    petrel::Result<std::string> busybox = petrel::testing::BusyboxImage();
    if (!busybox.ok()) Die(busybox.status().ToString());
    image = *busybox;
  }
  const int trials = argc > 2 ? std::atoi(argv[2]) : 5;
  const bool hybrid = petrel::DefaultPort()->DetectCgroupLayout() == petrel::CgroupLayout::kHybrid;
  const std::string mode = argc > 3 ? argv[3] : "";
  if (mode == "containerd") {
    if (ContainerdSocket().empty()) Die("containerd: set PETREL_BENCH_CONTAINERD_SOCKET");
    std::printf("%-10s %4s %10s %14s %10s %8s %10s %8s\n", "runtime", "N", "petrel ms",
                "one-by-one ms", "ctr run -d", "ratio", "bridge ms", "/petrel");
    BenchContainerd(image, trials);
    std::printf("\n%-10s %10s %10s %8s\n", "exec", "petrel ms", "ctr exec", "ratio");
    BenchExec("containerd", image, trials, hybrid);
    return 0;
  }
  if (mode == "docker") {
    if (DockerSocket().empty()) Die("docker: set PETREL_BENCH_DOCKERD_SOCKET");
    std::printf("%-10s %4s %10s %14s %10s %8s %10s %8s\n", "runtime", "N", "petrel ms",
                "one-by-one ms", "docker run", "ratio", "bridge ms", "/petrel");
    BenchDocker(image, trials);
    std::printf("\n%-10s %10s %10s %8s\n", "exec", "petrel ms", "docker exec", "ratio");
    BenchExec("docker", image, trials, hybrid);
    return 0;
  }
  if (mode != "exec") {
    std::printf("%-7s %4s %10s %14s %10s %8s %10s %8s\n", "runtime", "N", "petrel ms",
                "one-by-one ms", "raw ms", "ratio", "bridge ms", "/petrel");
    for (const std::string runtime : {"crun", "runc"}) Bench(runtime, image, trials, hybrid);
    std::printf("\n");
  }
  std::printf("%-10s %10s %10s %8s\n", "exec", "petrel ms", "raw ms", "ratio");
  for (const std::string runtime : {"crun", "runc"}) BenchExec(runtime, image, trials, hybrid);
  return 0;
}
