// The crun/runc adapter's own cases, in the binary of its conformance run (the target
// comes from conformance_main.cpp): what is particular to containers run through the
// OCI runtime command line on this host, beyond the ContainerRuntime contract.
#include "petrel/crun.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "lib/util/fs.h"
#include "lib/util/lease.h"
#include "petrel/clock.h"
#include "tests/lib/conformance.h"
#include "tests/lib/files.h"
#include "tests/lib/mounts.h"
#include "tests/lib/wait.h"

namespace petrel::testing {
namespace {

namespace fs = std::filesystem;

struct Runtime {
  TempDir state;
  std::shared_ptr<ContainerRuntime> rt;
  std::string image = CurrentTarget().image();

  Runtime() {
    Result<std::shared_ptr<ContainerRuntime>> made = CurrentTarget().factory(state.path());
    REQUIRE_MESSAGE(made.ok(), made.status().ToString());
    rt = *made;
  }
  // Creates and starts `script` under sh as container `name`.
  std::string Start(const std::string& name, const std::string& script, Resources limits = {},
                    SecurityContext security = {}) {
    ContainerSpec s;
    s.name = CurrentTarget().name + "-" + name;
    s.image = image;
    s.command = {"/bin/sh", "-c", script};
    s.resources = limits;
    s.resources.all_devices = security.privileged;  // as LowerToContainer sets it
    s.security_context = security;
    return CreateAndStart(rt.get(), s);
  }
  std::string Log(const std::string& id) { return LogOf(rt.get(), id); }
  // Ends the container and removes it; nothing of it may be left.
  void Finish(const std::string& id) {
    REQUIRE(rt->Kill(id, SIGKILL).ok());
    WaitExit(rt.get(), id);
    RemoveAndCheck(rt.get(), state.path(), id);
  }
  std::string Dir(const std::string& id) const { return state.Sub("containers/" + id); }
  // A container `name` that sleeps, with a lease of `ms` on the file `lease`.
  ContainerSpec Leased(const std::string& name, const std::string& lease, int64_t ms) const {
    ContainerSpec s;
    s.name = CurrentTarget().name + "-" + name;
    s.image = image;
    s.command = {"/bin/sh", "-c", "sleep 60"};
    s.lease = {lease, ms};
    return s;
  }
};

// A lease file of the test's own, renewed as petrel does: replaced whole, through a
// rename, with the time of CLOCK_MONOTONIC.
struct LeaseFile {
  TempDir dir;
  const std::string path = dir.Sub("node.lease");
  std::shared_ptr<Clock> clock = SystemClock();
  // Returns the time of the renewal.
  TimeMs Renew() {
    const TimeMs now = clock->Monotonic();
    (void)ReplaceFile(path, internal::LeaseText(now));  // a failure shows as a kill too early
    return now;
  }
};

// The body of http://ip:port/path (HTTP/1.0), "" when there is no answer in 2 s.
std::string HttpGet(const std::string& ip, int port, const std::string& path) {
  internal::UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct timeval two_s = {2, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &two_s, sizeof two_s);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &two_s, sizeof two_s);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "";
  const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) < 0) return "";
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = recv(fd.get(), buf, sizeof buf, 0)) > 0;) answer.append(buf, n);
  const size_t body = answer.find("\r\n\r\n");
  return body == std::string::npos ? "" : answer.substr(body + 4);
}

// The host pids of live processes (not zombies) whose command line is `argv`.
std::vector<int> ProcessesRunning(const std::vector<std::string>& argv) {
  std::string want;
  for (const std::string& a : argv) want += a + '\0';
  std::vector<int> pids;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    // Read raw: a process may end meanwhile (ESRCH), and a zombie's is empty.
    const int fd = open((e.path() / "cmdline").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char buf[256];
    const ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n > 0 && std::string(buf, static_cast<size_t>(n)) == want) pids.push_back(std::stoi(name));
  }
  return pids;
}

// The cgroup of each v1 controller (and "" for v2) that process `pid` is in.
std::map<std::string, std::string> CgroupsOfProcess(const std::string& proc_cgroup) {
  std::istringstream lines(proc_cgroup);
  std::map<std::string, std::string> where;
  for (std::string line; std::getline(lines, line);) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    where[line.substr(a + 1, b - a - 1)] = line.substr(b + 1);
  }
  return where;
}

// Prints the container's capability sets (CapEff, CapBnd, ... of /proc/self/status),
// then whether chown (which needs CAP_CHOWN) failed, then "done".
constexpr const char* kShowCaps =
    "grep ^Cap /proc/self/status; touch /tmp/f; chown 1 /tmp/f 2>/dev/null; echo chown=$?; "
    "echo done; sleep 60";

// The capability set `name` ("CapEff") of a /proc/<pid>/status text.
uint64_t CapSet(const std::string& status, const std::string& name) {
  const size_t at = status.find(name + ":");
  REQUIRE(at != std::string::npos);
  return std::stoull(status.substr(at + name.size() + 1), nullptr, 16);
}

TEST_SUITE("crun-adapter") {
  TEST_CASE("an exec'd command is born in the container's cgroups, limits included") {
    Runtime r;
    Resources limits;
    limits.memory_bytes = 32 << 20;
    limits.pids = 32;
    const std::string id = r.Start("exec-cgroups", "echo up; while :; do sleep 0.1; done", limits);
    CHECK(WaitFor([&] { return r.Log(id) == "up\n"; }));
    const int pid = r.rt->Inspect(id)->pid;
    ExecOptions o;
    o.command = {"cat", "/proc/self/cgroup"};
    Result<ExecResult> exec = r.rt->Exec(id, o);
    REQUIRE_MESSAGE(exec.ok(), exec.status().ToString());
    REQUIRE(exec->exit_code == 0);
    const std::string init = ReadFile("/proc/" + std::to_string(pid) + "/cgroup");
    INFO("exec: " << exec->output << "init: " << init);
    // Read from inside, the paths are relative to the container's cgroup namespace
    // where it has one: compare the controllers' paths as the container sees them.
    o.command = {"sh", "-c", "cat /proc/1/cgroup"};
    Result<ExecResult> seen = r.rt->Exec(id, o);
    REQUIRE_MESSAGE(seen.ok(), seen.status().ToString());
    const auto mine = CgroupsOfProcess(exec->output), its = CgroupsOfProcess(seen->output);
    for (const char* controller : {"memory", "pids"}) {
      CAPTURE(controller);
      REQUIRE(its.count(controller));
      CHECK(mine.at(controller) == its.at(controller));
    }
    // And from the host, the container's limit cgroups.
    const auto host = CgroupsOfProcess(init);
    CHECK(host.at("memory").find(id) != std::string::npos);
    r.Finish(id);
  }

  TEST_CASE("exec: what the command started goes with it, after a timeout and after its end") {
    Runtime r;
    const std::string id = r.Start("exec-leftovers", "echo up; while :; do sleep 0.1; done");
    CHECK(WaitFor([&] { return r.Log(id) == "up\n"; }));
    ExecOptions slow;
    slow.command = {"sh", "-c", "sleep 1001 & sleep 1002"};
    slow.timeout_ms = 500;
    Result<ExecResult> timed_out = r.rt->Exec(id, slow);
    CHECK(timed_out.status().code() == Status::Code::kDeadlineExceeded);
    // SIGKILL is sent before Exec returns; the process ends when it next runs, which on
    // a loaded machine (TSan, two cores) can be some milliseconds later.
    CHECK(WaitFor([] { return ProcessesRunning({"sleep", "1001"}).empty(); }, 5));
    CHECK(WaitFor([] { return ProcessesRunning({"sleep", "1002"}).empty(); }, 5));
    // A command that leaves a process behind holding its output: Exec returns when the
    // command ends (runc would wait for the output to close), and that process is gone.
    ExecOptions quick;
    quick.command = {"sh", "-c", "sleep 0.2; sleep 1003 & echo started"};
    const auto start = std::chrono::steady_clock::now();
    Result<ExecResult> done = r.rt->Exec(id, quick);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    REQUIRE_MESSAGE(done.ok(), done.status().ToString());
    CHECK(done->exit_code == 0);
    CHECK(done->output == "started\n");
    CHECK_MESSAGE(took < 5, "Exec took " << took << " s");
    CHECK(WaitFor([] { return ProcessesRunning({"sleep", "1003"}).empty(); }, 5));
    r.Finish(id);
  }

  TEST_CASE("networks: bridge (by address, published ports), none and host") {
    Runtime r;
    // Ports of the host apart for crun and runc, whose runs may overlap.
    const int host_port = CurrentTarget().name == "crun" ? 18090 : 18091;
    ContainerSpec web;
    web.name = CurrentTarget().name + "-net-web";
    web.image = r.image;
    web.command = {"/bin/sh", "-c", "mkdir /w && echo hello > /w/i && exec httpd -f -p 8080 -h /w"};
    web.network = NetworkMode::kBridge;
    PortSpec published;
    published.container_port = 8080;
    published.host_port = host_port;
    web.ports = {published};
    const std::string server = CreateAndStart(r.rt.get(), web);
    Result<ContainerInfo> info = r.rt->Inspect(server);
    REQUIRE_MESSAGE(info.ok(), info.status().ToString());
    const std::string address = info->address;
    CHECK_MESSAGE(address.rfind("10.47.", 0) == 0, address);

    // Another container reaches it by its address over the bridge.
    ContainerSpec client = web;
    client.name = CurrentTarget().name + "-net-client";
    client.ports = {};
    client.command = {"/bin/sh", "-c",
                      "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://" + address +
                          ":8080/i && exit 0; sleep 0.5; done; exit 1"};
    const std::string fetcher = CreateAndStart(r.rt.get(), client);
    CHECK(WaitExit(r.rt.get(), fetcher) == 0);
    CHECK(r.Log(fetcher) == "hello\n");
    RemoveAndCheck(r.rt.get(), r.state.path(), fetcher);
    // And by a name its hosts give (ContainerSpec::hosts, as petrel's names are).
    client.name += "-by-name";
    client.hosts = "127.0.0.1\tlocalhost\n" + address + "\tweb-0 web\n";
    client.command = {"/bin/sh", "-c",
                      "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://web:8080/i && "
                      "exit 0; sleep 0.5; done; exit 1"};
    const std::string by_name = CreateAndStart(r.rt.get(), client);
    CHECK(WaitExit(r.rt.get(), by_name) == 0);
    CHECK(r.Log(by_name) == "hello\n");
    RemoveAndCheck(r.rt.get(), r.state.path(), by_name);

    // The host reaches it on the published port, another number, on 127.0.0.1 too.
    std::string got;
    CHECK(WaitFor(
        [&] {
          got = HttpGet("127.0.0.1", host_port, "/i");
          return got == "hello\n";
        },
        10));
    CHECK(got == "hello\n");

    // none: loopback only; host: the host's interfaces.
    const std::string none = r.Start("net-none", "ls /sys/class/net");
    CHECK(WaitExit(r.rt.get(), none) == 0);
    CHECK(r.Log(none) == "lo\n");
    RemoveAndCheck(r.rt.get(), r.state.path(), none);
    ContainerSpec host = client;
    host.name = CurrentTarget().name + "-net-host";
    host.network = NetworkMode::kHost;
    host.command = {"/bin/sh", "-c", "ls /sys/class/net"};
    const std::string on_host = CreateAndStart(r.rt.get(), host);
    CHECK(WaitExit(r.rt.get(), on_host) == 0);
    std::string interfaces;
    for (const auto& e : fs::directory_iterator("/sys/class/net")) {
      interfaces += e.path().filename().string() + "\n";
    }
    std::vector<std::string> want, seen;
    std::istringstream a(interfaces), b(r.Log(on_host));
    for (std::string l; std::getline(a, l);) want.push_back(l);
    for (std::string l; std::getline(b, l);) seen.push_back(l);
    std::sort(want.begin(), want.end());
    std::sort(seen.begin(), seen.end());
    CHECK(seen == want);
    RemoveAndCheck(r.rt.get(), r.state.path(), on_host);

    // Removed: its namespace, attachment and iptables rules go (Finish checks them).
    r.Finish(server);
    CHECK(HttpGet("127.0.0.1", host_port, "/i").empty());
  }

  TEST_CASE("hosts: the spec's on /etc/hosts, read-only, replaced while the container runs") {
    Runtime r;
    ContainerSpec s;
    s.name = CurrentTarget().name + "-hosts";
    s.image = r.image;
    s.command = {"/bin/sh", "-c", "while :; do sleep 0.1; done"};
    s.hosts = "127.0.0.1\tlocalhost\n10.47.9.9\tpeer-0 peer\n";
    const std::string id = CreateAndStart(r.rt.get(), s);
    ExecOptions cat;
    cat.command = {"cat", "/etc/hosts"};
    cat.timeout_ms = 10000;
    Result<ExecResult> seen = r.rt->Exec(id, cat);
    REQUIRE_MESSAGE(seen.ok(), seen.status().ToString());
    CHECK(seen->output == s.hosts);
    ExecOptions write = cat;
    write.command = {"sh", "-c", "echo 1.2.3.4 evil >> /etc/hosts"};
    Result<ExecResult> wrote = r.rt->Exec(id, write);
    REQUIRE_MESSAGE(wrote.ok(), wrote.status().ToString());
    CHECK(wrote->exit_code != 0);  // root, but the mount is read-only
    ExecOptions mode = cat;
    mode.command = {"stat", "-c", "%a", "/etc/hosts"};
    Result<ExecResult> mode_seen = r.rt->Exec(id, mode);
    REQUIRE_MESSAGE(mode_seen.ok(), mode_seen.status().ToString());
    CHECK(mode_seen->output == "644\n");  // any user of the container reads it
    // Shorter than before: nothing of the old one is left at its end.
    const std::string shorter = "127.0.0.1\tlocalhost\n";
    REQUIRE(r.rt->SetHosts(id, shorter).ok());
    seen = r.rt->Exec(id, cat);
    REQUIRE_MESSAGE(seen.ok(), seen.status().ToString());
    CHECK(seen->output == shorter);
    CHECK(r.rt->SetHosts("no-such-container", shorter).code() == Status::Code::kNotFound);
    const std::string plain = r.Start("hosts-none", "while :; do sleep 0.1; done");
    CHECK(r.rt->SetHosts(plain, shorter).code() == Status::Code::kFailedPrecondition);
    r.Finish(plain);
    r.Finish(id);
  }

  TEST_CASE("a container runs with no new privileges and masked /proc files") {
    Runtime r;
    // /proc/timer_list, one of Docker's masked paths that every kernel has: the
    // container reads nothing where the host reads the kernel's timers.
    REQUIRE_FALSE(ReadFile("/proc/timer_list").empty());
    const std::string id =
        r.Start("confined", "grep NoNewPrivs /proc/self/status; wc -c < /proc/timer_list");
    CHECK(WaitExit(r.rt.get(), id) == 0);
    CHECK(r.Log(id) == "NoNewPrivs:\t1\n0\n");
    r.Finish(id);
  }

  TEST_CASE("output is kept in two files of the configured size, the older dropped") {
    Runtime r;
    const std::string id =
        r.Start("files", "i=0; while [ $i -lt 1000 ]; do printf '%019d\\n' $i; i=$((i+1)); done");
    CHECK(WaitExit(r.rt.get(), id) == 0);
    int files = 0;
    for (const auto& e : fs::directory_iterator(r.Dir(id))) {
      if (e.path().filename().string().rfind("log.", 0) != 0) continue;
      files++;
      CHECK(fs::file_size(e.path()) * 2 <= static_cast<uintmax_t>(CurrentTarget().log_cap_bytes));
    }
    CHECK(files == 2);
    r.Finish(id);
  }

  TEST_CASE("the overlay root is mounted only where the container runs, never on the host") {
    Runtime r;
    const std::string id = r.Start("overlay", "echo up; while :; do sleep 0.1; done");
    CHECK(WaitFor([&] { return r.Log(id) == "up\n"; }));
    CHECK_FALSE(Mounted(r.Dir(id) + "/rootfs"));
    CHECK(ReadFile("/proc/self/mountinfo").find(r.Dir(id)) == std::string::npos);
    // The container itself sees a root filesystem with the image in it.
    const int pid = r.rt->Inspect(id)->pid;
    CHECK(fs::exists("/proc/" + std::to_string(pid) + "/root/bin/busybox"));
    r.Finish(id);
  }

  TEST_CASE("limits land in the container's cgroups on this host's layout and go with it") {
    Runtime r;
    Resources limits;
    limits.memory_bytes = 16 << 20;
    limits.cpu_millis = 250;
    limits.pids = 32;
    const std::string id = r.Start("limits", "echo up; while :; do sleep 0.1; done", limits);
    CHECK(WaitFor([&] { return r.Log(id) == "up\n"; }));
    const int pid = r.rt->Inspect(id)->pid;
    // "<n>:<controllers>:<path>" per hierarchy; v2 is "0::<path>".
    std::istringstream lines(ReadFile("/proc/" + std::to_string(pid) + "/cgroup"));
    std::map<std::string, std::string> where;  // controller ("" for v2) -> its directory
    for (std::string line; std::getline(lines, line);) {
      const size_t a = line.find(':'), b = line.find(':', a + 1);
      const std::string controllers = line.substr(a + 1, b - a - 1);
      const std::string path = line.substr(b + 1);
      const std::string mount = controllers.empty() ? "" : "/" + controllers;
      std::istringstream names(controllers);
      for (std::string c; std::getline(names, c, ',');) where[c] = "/sys/fs/cgroup" + mount + path;
      if (controllers.empty()) where[""] = "/sys/fs/cgroup" + path;
    }
    INFO(ReadFile("/proc/" + std::to_string(pid) + "/cgroup"));
    std::vector<std::string> dirs;
    if (where.count("memory")) {  // v1 controllers (a v1 or hybrid host)
      CHECK(ReadFile(where["memory"] + "/memory.limit_in_bytes") == "16777216\n");
      CHECK(ReadFile(where["cpu"] + "/cpu.cfs_quota_us") == "25000\n");
      CHECK(ReadFile(where["pids"] + "/pids.max") == "32\n");
      dirs = {where["memory"], where["cpu"], where["pids"]};
    } else {
      REQUIRE(where.count(""));
      CHECK(ReadFile(where[""] + "/memory.max") == "16777216\n");
      CHECK(ReadFile(where[""] + "/cpu.max") == "25000 100000\n");
      CHECK(ReadFile(where[""] + "/pids.max") == "32\n");
      dirs = {where[""]};
    }
    for (const std::string& d : dirs) CHECK(d.find(id) != std::string::npos);
    r.Finish(id);
    for (const std::string& d : dirs) CHECK_FALSE(fs::exists(d));
  }

  // The shim reads the memory cgroup's OOM kill count (memory.oom_control on v1 and
  // hybrid, memory.events on v2) when the container dies by SIGKILL.
  TEST_CASE("an OOM kill gives exit code 137 with the reason OOMKilled, a plain SIGKILL none") {
    Runtime r;
    Resources limits;
    limits.memory_bytes = 16 << 20;
    // dd's 64 MiB buffer is touched as it reads: past the 16 MiB limit.
    const std::string hog =
        r.Start("oom", "exec dd if=/dev/zero of=/dev/null bs=64M count=1", limits);
    WaitExit(r.rt.get(), hog);
    Result<ContainerInfo> info = r.rt->Inspect(hog);
    REQUIRE(info.ok());
    INFO(r.Log(hog));
    CHECK(info->exit_code == 137);
    CHECK(info->exit_reason == "OOMKilled");
    RemoveAndCheck(r.rt.get(), r.state.path(), hog);

    const std::string killed = r.Start("killed", "echo up; exec sleep 60", limits);
    CHECK(WaitFor([&] { return r.Log(killed) == "up\n"; }));
    REQUIRE(r.rt->Kill(killed, SIGKILL).ok());
    WaitExit(r.rt.get(), killed);
    info = r.rt->Inspect(killed);
    REQUIRE(info.ok());
    CHECK(info->exit_code == 137);
    CHECK(info->exit_reason.empty());
    RemoveAndCheck(r.rt.get(), r.state.path(), killed);
  }

  // Issue 9 §4: a full disk loses output, but never silently. The state dir is a small
  // tmpfs that a file fills while the container prints numbered lines.
  TEST_CASE("output lost to a full disk is counted and told in the log once space is back") {
    TempDir dir;
    const std::string state = dir.Sub("state");
    fs::create_directory(state);
    REQUIRE(mount("petrel-full", state.c_str(), "tmpfs", 0, "size=32m,mode=0700") == 0);
    MountGuard guard{state};
    Result<std::shared_ptr<ContainerRuntime>> made = CurrentTarget().factory(state);
    REQUIRE_MESSAGE(made.ok(), made.status().ToString());
    ContainerRuntime* rt = made->get();
    ContainerSpec s;
    s.name = CurrentTarget().name + "-chatty";
    s.image = CurrentTarget().image();
    // Lines of 90 bytes, 20 at a time, about 30 KiB/s: the log's last page of room fills
    // within a moment, and its first MiB lasts half a minute.
    const std::string pad(80, 'x');
    s.command = {"/bin/sh", "-c",
                 "i=0; while :; do for j in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; "
                 "do i=$((i+1)); echo \"line $i " +
                     pad + "\"; done; sleep 0.05; done"};
    const std::string id = CreateAndStart(rt, s);
    CHECK(WaitFor([&] { return LogOf(rt, id).find("line 5 ") != std::string::npos; }));

    // Fill the file system, and keep it full until the log has stopped growing for
    // 300 ms (its last page of room used up) while the container goes on printing.
    const std::string filler = state + "/filler";
    const int fd = open(filler.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    std::vector<char> chunk(1 << 16, 'x');
    auto fill = [&] {
      for (size_t n = chunk.size(); n > 0; n /= 2) {
        while (write(fd, chunk.data(), n) > 0) {
        }
      }
    };
    int64_t last_end = -1;
    auto since = std::chrono::steady_clock::now();
    CHECK(WaitFor(
        [&] {
          fill();
          const int64_t end = rt->Logs(id, {})->end_offset;
          const auto now = std::chrono::steady_clock::now();
          if (end != last_end) {
            last_end = end;
            since = now;
          }
          return now - since >= std::chrono::milliseconds(300);
        },
        30));
    close(fd);
    REQUIRE(unlink(filler.c_str()) == 0);

    const std::string kLost = " bytes of output lost: no space left on device\n";
    std::string log;
    CHECK(WaitFor([&] {
      log = LogOf(rt, id);  // from the start: 1 MiB lasts the container 30 s
      const size_t at = log.find(kLost);
      return at != std::string::npos && log.find("line", at) != std::string::npos;
    }));
    const size_t shown = log.find("petrel-shim: ");
    std::string around;
    for (char c : log.substr(shown == std::string::npos || shown < 100 ? 0 : shown - 100, 300)) {
      around += c == '\n' ? std::string("\\n") : c == '\0' ? std::string("\\0") : std::string(1, c);
    }
    INFO(around);
    // "line L\n" T "\n" "petrel-shim: K bytes ...\n" "line B\n", where T is either the
    // whole line L+1 or what the disk let through of it (then the shim ended it with the
    // "\n"). K counts exactly the bytes missing between them.
    const size_t marker = log.find("petrel-shim: ");
    REQUIRE(marker != std::string::npos);
    REQUIRE(marker >= 2);
    REQUIRE(log[marker - 1] == '\n');
    const size_t t_start = log.rfind('\n', marker - 2) + 1;
    REQUIRE(t_start >= 2);
    const std::string t = log.substr(t_start, marker - 1 - t_start);
    const size_t l_start = log.rfind('\n', t_start - 2) + 1;
    const int l = std::stoi(log.substr(l_start + 5));
    const uint64_t k = std::stoull(log.substr(marker + 13));
    const int b = std::stoi(log.substr(log.find('\n', marker) + 1 + 5));
    auto bytes = [&](int from, int to) {  // of lines from..to-1
      uint64_t n = 0;
      for (int i = from; i < to; i++) n += ("line " + std::to_string(i) + " " + pad + "\n").size();
      return n;
    };
    const std::string next = "line " + std::to_string(l + 1) + " " + pad;
    const bool whole = t == next && k == bytes(l + 2, b);
    const bool cut = next.rfind(t, 0) == 0 && k == bytes(l + 1, b) - t.size();
    CHECK(b > l + 1);
    CHECK((whole || cut));

    Result<ContainerInfo> seen = rt->Inspect(id);
    REQUIRE(seen.ok());
    CHECK(seen->state == ContainerState::kRunning);
    REQUIRE(rt->Kill(id, SIGKILL).ok());
    WaitExit(rt, id);
    RemoveAndCheck(rt, state, id);
  }

  // On every layout, the container's devices cgroup holds the allow-list: crun on a
  // hybrid host, whose cgroup manager is off, in one petrel makes; runc in its own.
  TEST_CASE("a container's devices cgroup allows the default devices, not a *:* rwm") {
    Runtime r;
    const std::string id = r.Start("devices", "echo up; while :; do sleep 0.1; done");
    CHECK(WaitFor([&] { return r.Log(id) == "up\n"; }));
    const int pid = r.rt->Inspect(id)->pid;
    const std::string proc_cgroup = ReadFile("/proc/" + std::to_string(pid) + "/cgroup");
    INFO(proc_cgroup);
    std::map<std::string, std::string> where = CgroupsOfProcess(proc_cgroup);
    if (where.count("devices") == 0) {
      // A pure cgroup v2 host: the runtime applies the list with an eBPF program.
      REQUIRE(where.count(""));
    } else {
      const std::string list =
          ReadFile("/sys/fs/cgroup/devices" + where["devices"] + "/devices.list");
      INFO(list);
      CHECK(where["devices"].find(id) != std::string::npos);
      CHECK(list.find("a *:* rwm") == std::string::npos);
      CHECK(list.find("c 1:3 rwm") != std::string::npos);  // /dev/null
      CHECK(list.find("b 8:") == std::string::npos);       // no disk
    }
    r.Finish(id);
  }

  // CrunOptions::cgroup_parent, as petreld --cgroup-parent sets it: the runtime's
  // cgroups (v1, v2) or those petrel makes (crun on a hybrid host) sit below it. A
  // container keeps the parent it was made under when a later petrel has another: its
  // exec'd commands join its cgroups, and removing it leaves nothing below the old one.
  TEST_CASE("a container's cgroups sit below the cgroup parent given, and go with it") {
    const std::string parent = "petrel-test-xyz";
    TempDir state;
    auto open_runtime = [&](const std::string& cgroup_parent) {
      CrunOptions o;
      o.runtime = CurrentTarget().name;
      o.state_dir = state.path();
      o.cgroup_parent = cgroup_parent;
      Result<std::shared_ptr<ContainerRuntime>> made = NewCrunRuntime(o);
      REQUIRE_MESSAGE(made.ok(), made.status().ToString());
      return *made;
    };
    std::shared_ptr<ContainerRuntime> rt = open_runtime(parent);
    ContainerSpec s;
    s.name = CurrentTarget().name + "-cgparent";
    s.image = CurrentTarget().image();
    s.command = {"/bin/sh", "-c", "echo up; while :; do sleep 0.1; done"};
    s.resources.memory_bytes = 32 << 20;
    const std::string id = CreateAndStart(rt.get(), s);
    CHECK(WaitFor([&] { return LogOf(rt.get(), id) == "up\n"; }));
    const int pid = rt->Inspect(id)->pid;
    const std::string proc_cgroup = ReadFile("/proc/" + std::to_string(pid) + "/cgroup");
    INFO(proc_cgroup);
    const std::map<std::string, std::string> where = CgroupsOfProcess(proc_cgroup);
    // The limit's and the device list's v1 cgroups, or the one of a pure v2 host.
    const std::vector<std::string> controllers = where.count("devices")
                                                     ? std::vector<std::string>{"memory", "devices"}
                                                     : std::vector<std::string>{""};
    for (const std::string& c : controllers) {
      CAPTURE(c);
      REQUIRE(where.count(c));
      CHECK(where.at(c) == "/" + parent + "/" + id);
    }

    // A later petrel with another parent: the container stays where it was made.
    rt.reset();
    rt = open_runtime("petrel-test-xyz-later");
    ExecOptions o;
    o.command = {"sh", "-c", "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup"};
    Result<ExecResult> exec = rt->Exec(id, o);
    REQUIRE_MESSAGE(exec.ok(), exec.status().ToString());
    const size_t split = exec->output.find("--\n");
    REQUIRE(split != std::string::npos);
    INFO("exec: " << exec->output);
    const auto mine = CgroupsOfProcess(exec->output.substr(0, split)),
               its = CgroupsOfProcess(exec->output.substr(split + 3));
    for (const std::string& c : controllers) {
      CAPTURE(c);
      REQUIRE(its.count(c));
      CHECK(mine.at(c) == its.at(c));
    }
    REQUIRE(rt->Kill(id, SIGKILL).ok());
    WaitExit(rt.get(), id);
    RemoveAndCheck(rt.get(), state.path(), id);

    // Nothing is left below the parent in any hierarchy, which then goes too.
    std::vector<std::string> parents = {"/sys/fs/cgroup/" + parent};
    for (const fs::directory_entry& h : fs::directory_iterator("/sys/fs/cgroup")) {
      if (!h.is_symlink() && h.is_directory()) parents.push_back(h.path().string() + "/" + parent);
    }
    for (const std::string& p : parents) {
      if (!fs::exists(p)) continue;
      for (const fs::directory_entry& e : fs::directory_iterator(p)) {
        CHECK_MESSAGE(!e.is_directory(), "left: " << e.path().string());
      }
      CHECK_MESSAGE(rmdir(p.c_str()) == 0, p << ": " << strerror(errno));
    }
  }

  // petrel's default seccomp profile: a user namespace needs no capability, so only the
  // profile stops a container from making one (these hosts allow them).
  TEST_CASE("a default container cannot make a user namespace (seccomp), and reads the clock") {
    Runtime r;
    const std::string id = r.Start("seccomp",
                                   "unshare -U true 2>&1; echo rc=$?; adjtimex >/dev/null && "
                                   "ls /dev/null >/dev/null && echo fine; sleep 60");
    CHECK(WaitFor([&] { return r.Log(id).find("fine\n") != std::string::npos; }));
    const std::string log = r.Log(id);
    INFO(log);
    CHECK(log.find("Operation not permitted") != std::string::npos);
    CHECK(log.find("rc=1\n") != std::string::npos);
    r.Finish(id);
  }

  // Issue 9: securityContext, read back from the kernel inside the container.
  TEST_CASE("securityContext: a dropped capability is gone, an added one is there") {
    Runtime r;
    SecurityContext sc;
    sc.capabilities_drop = {"NET_RAW", "CAP_CHOWN"};
    sc.capabilities_add = {"NET_ADMIN"};
    const std::string id = r.Start("caps", kShowCaps, {}, sc);
    CHECK(WaitFor([&] { return r.Log(id).find("done\n") != std::string::npos; }));
    const std::string log = r.Log(id);
    INFO(log);
    for (const char* set : {"CapEff", "CapBnd"}) {
      CAPTURE(set);
      const uint64_t caps = CapSet(log, set);
      CHECK((caps & (1u << 13)) == 0);  // CAP_NET_RAW
      CHECK((caps & (1u << 0)) == 0);   // CAP_CHOWN
      CHECK((caps & (1u << 12)) != 0);  // CAP_NET_ADMIN
      CHECK((caps & (1u << 5)) != 0);   // CAP_KILL, of the default set
    }
    // And the kernel holds to it: chown needs CAP_CHOWN.
    CHECK(log.find("chown=1\n") != std::string::npos);
    r.Finish(id);
  }

  TEST_CASE("securityContext: seccompProfile Unconfined lets a container make a user namespace") {
    Runtime r;
    SecurityContext sc;
    sc.seccomp = SecurityContext::Seccomp::kUnconfined;
    const std::string id =
        r.Start("unconfined", "unshare -U true 2>&1; echo rc=$?; sleep 60", {}, sc);
    CHECK(WaitFor([&] { return r.Log(id).find("rc=") != std::string::npos; }));
    const std::string log = r.Log(id);
    INFO(log);
    CHECK(log.find("rc=0\n") != std::string::npos);
    r.Finish(id);
  }

  TEST_CASE("securityContext: a privileged container has every capability and every device") {
    Runtime r;
    SecurityContext sc;
    sc.privileged = true;
    const std::string id = r.Start("privileged", kShowCaps, {}, sc);
    CHECK(WaitFor([&] { return r.Log(id).find("done\n") != std::string::npos; }));
    const std::string log = r.Log(id);
    INFO(log);
    // Every one the host can give: this process's bounding set, as the adapter's.
    const uint64_t all = CapSet(ReadFile("/proc/self/status"), "CapBnd");
    CHECK(CapSet(log, "CapEff") == all);
    CHECK(CapSet(log, "CapBnd") == all);
    CHECK(log.find("chown=0\n") != std::string::npos);
    const int pid = r.rt->Inspect(id)->pid;
    std::map<std::string, std::string> where =
        CgroupsOfProcess(ReadFile("/proc/" + std::to_string(pid) + "/cgroup"));
    if (where.count("devices")) {
      const std::string list =
          ReadFile("/sys/fs/cgroup/devices" + where["devices"] + "/devices.list");
      INFO(list);
      CHECK(list.find("a *:* rwm") != std::string::npos);
    }
    r.Finish(id);
  }

  TEST_CASE("a failed start says which runtime refused it, in the runtime's words") {
    Runtime r;
    ContainerSpec s;
    s.name = CurrentTarget().name + "-refused";
    s.image = r.image;
    s.command = {kMissingBinary};
    const std::string id = Create(r.rt.get(), s);
    Status started = r.rt->Start(id);
    CHECK(started.message().find("start container " + id + ": " + CurrentTarget().name + ": ") ==
          0);
    CHECK(HasExited(r.rt.get(), id));
    RemoveAndCheck(r.rt.get(), r.state.path(), id);
  }

  // petrel tests the shim's lock by taking it shared for a moment (List, Inspect): a
  // shim starting meanwhile waits that out instead of giving up.
  TEST_CASE("a shim that finds its lock tested for a moment starts the container all the same") {
    Runtime r;
    ContainerSpec s;
    s.name = CurrentTarget().name + "-locktest";
    s.image = r.image;
    s.command = {"/bin/sh", "-c", "sleep 60"};
    const std::string id = Create(r.rt.get(), s);
    const int fd = open((r.Dir(id) + "/shim.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    REQUIRE(fd >= 0);
    REQUIRE(flock(fd, LOCK_SH | LOCK_NB) == 0);
    std::thread release([fd] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      close(fd);
    });
    Status started = r.rt->Start(id);
    release.join();
    REQUIRE_MESSAGE(started.ok(), started.ToString());
    Result<ContainerInfo> info = r.rt->Inspect(id);
    REQUIRE(info.ok());
    CHECK(info->state == ContainerState::kRunning);
    r.Finish(id);
  }

  // A runtime that hangs while it starts a container is killed with its shim at the
  // start timeout: nothing is left to start the container later, behind petrel's back.
  TEST_CASE("a runtime that hangs starting a container is killed with its shim at the timeout") {
    TempDir bin;
    const std::string name = CurrentTarget().name == "runc" ? "runc" : "crun";
    std::string real;
    for (const char* dir : {"/usr/local/sbin/", "/usr/local/bin/", "/usr/sbin/", "/usr/bin/"}) {
      if (real.empty() && access((dir + name).c_str(), X_OK) == 0) real = dir + name;
    }
    REQUIRE(!real.empty());
    const std::string wrapper = bin.Sub(name + "-hangs");
    WriteFile(wrapper,
              "#!/bin/sh\n"
              "for a; do [ \"$a\" = run ] && exec /bin/sleep 6011; done\n"
              "exec " +
                  real + " \"$@\"\n");
    REQUIRE(chmod(wrapper.c_str(), 0755) == 0);
    TempDir state;
    CrunOptions o;
    o.runtime = wrapper;
    o.state_dir = state.path();
    o.start_timeout_ms = 1000;
    Result<std::shared_ptr<ContainerRuntime>> made = NewCrunRuntime(o);
    REQUIRE_MESSAGE(made.ok(), made.status().ToString());
    std::shared_ptr<ContainerRuntime> rt = *made;
    ContainerSpec s;
    s.name = CurrentTarget().name + "-hangs";
    s.image = CurrentTarget().image();
    s.command = {"/bin/sh", "-c", "sleep 60"};
    const std::string id = Create(rt.get(), s);
    const auto began = std::chrono::steady_clock::now();
    Status started = rt->Start(id);
    CHECK(started.code() == Status::Code::kDeadlineExceeded);
    CHECK(started.message().find("did not finish starting it within 1s") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - began < std::chrono::seconds(30));
    // The hung runtime went with the shim: no process is left to start it later.
    CHECK(WaitFor([] { return ProcessesRunning({"/bin/sleep", "6011"}).empty(); }, 10));
    // The shim's end is heard a moment later on a busy machine: until then it reads as
    // running, and Remove refuses, as it must.
    CHECK(WaitFor(
        [&] {
          Result<ContainerInfo> info = rt->Inspect(id);
          return info.ok() && info->state != ContainerState::kRunning;
        },
        10));
    RemoveAndCheck(rt.get(), state.path(), id);
  }

  // Leases (ContainerSpec::lease): the shim, not petrel, kills a container whose lease
  // is not renewed, so it dies also when petrel is gone; bounds allow a busy machine.
  TEST_CASE("a container whose lease is not renewed is killed, also with petrel gone") {
    Runtime r;
    LeaseFile lease;
    const std::string id = Create(r.rt.get(), r.Leased("leased", lease.path, 1000));
    const TimeMs renewed = lease.Renew();
    REQUIRE(r.rt->Start(id).ok());
    // petrel dies: the runtime object goes, its state dir lock with it.
    r.rt.reset();
    Result<std::shared_ptr<ContainerRuntime>> again = CurrentTarget().factory(r.state.path());
    REQUIRE(again.ok());
    r.rt = *again;
    CHECK(WaitExit(r.rt.get(), id) == 128 + SIGKILL);
    const TimeMs dead_after = lease.clock->Monotonic() - renewed;
    MESSAGE("killed " << dead_after << " ms after the last renewal (lease 1000 ms)");
    CHECK(dead_after >= 1000);
    CHECK(dead_after < 1000 + 1500);
    CHECK(ReadFile(r.Dir(id) + "/runtime.log").find("lease " + lease.path + " ran out") !=
          std::string::npos);
    RemoveAndCheck(r.rt.get(), r.state.path(), id);
  }

  TEST_CASE("a container whose lease is renewed keeps running") {
    Runtime r;
    LeaseFile lease;
    lease.Renew();
    std::atomic<bool> renew{true};
    std::thread renewer([&] {
      while (renew) {
        lease.Renew();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    const std::string id = CreateAndStart(r.rt.get(), r.Leased("renewed", lease.path, 500));
    CHECK(HoldsFor([&] { return !HasExited(r.rt.get(), id); }, 2.0));
    renew = false;
    renewer.join();
    CHECK(WaitExit(r.rt.get(), id) == 128 + SIGKILL);
    RemoveAndCheck(r.rt.get(), r.state.path(), id);
  }

  // Issue 9: one container's damaged files never stop the node. Each place the adapter
  // keeps a container's state: meta.json, the exit file, the bundle's config.json.
  TEST_CASE("a container whose meta.json is damaged is stopped and set aside, List goes on") {
    for (const std::string kind : kDamages) {
      CAPTURE(kind);
      Runtime r;
      const std::string script = "echo up; while :; do sleep 0.1; done";
      const std::string hurt = r.Start("meta-" + kind, script);
      const std::string well = r.Start("well-" + kind, script);
      REQUIRE(WaitFor([&] { return r.Log(hurt) == "up\n" && r.Log(well) == "up\n"; }));
      const int pid = r.rt->Inspect(hurt)->pid;
      const std::string meta = r.Dir(hurt) + "/meta.json";
      WriteFile(meta, Damaged(kind, ReadFile(meta)));
      Result<std::vector<ContainerInfo>> listed = r.rt->List({});
      REQUIRE_MESSAGE(listed.ok(), listed.status().ToString());
      REQUIRE(listed->size() == 1);
      CHECK(listed->front().id == well);
      CHECK(listed->front().state == ContainerState::kRunning);
      // Stopped, its files kept aside, and its name free for the container made anew.
      CHECK(WaitFor([&] { return kill(pid, 0) != 0; }));
      CheckGone(r.rt.get(), r.state.path(), hurt);
      CHECK(fs::exists(r.state.Sub("containers/.damaged-" + hurt + "/meta.json")));
      const std::string again = r.Start("meta-" + kind, "echo again; while :; do sleep 0.1; done");
      CHECK(again == hurt);
      CHECK(WaitFor([&] { return r.Log(again) == "again\n"; }));
      r.Finish(again);
      r.Finish(well);
    }
  }

  TEST_CASE("a damaged exit file reads as an unknown exit code, List goes on") {
    for (const std::string kind : kDamages) {
      CAPTURE(kind);
      Runtime r;
      const std::string id = r.Start("exit-" + kind, "exit 3");
      REQUIRE(WaitExit(r.rt.get(), id) == 3);
      const std::string exit = r.Dir(id) + "/exit";
      WriteFile(exit, Damaged(kind, ReadFile(exit)));
      Result<std::vector<ContainerInfo>> listed = r.rt->List({});
      REQUIRE_MESSAGE(listed.ok(), listed.status().ToString());
      REQUIRE(listed->size() == 1);
      CHECK(listed->front().state == ContainerState::kExited);
      CHECK(listed->front().exit_code == -1);  // not 3, not a number read from garbage
      RemoveAndCheck(r.rt.get(), r.state.path(), id);
    }
  }

  TEST_CASE("a damaged bundle config.json fails that start in the runtime's words, List goes on") {
    for (const std::string kind : kDamages) {
      CAPTURE(kind);
      Runtime r;
      ContainerSpec s;
      s.name = CurrentTarget().name + "-config-" + kind;
      s.image = r.image;
      s.command = {"/bin/sh", "-c", "sleep 60"};
      const std::string id = Create(r.rt.get(), s);
      const std::string config = r.Dir(id) + "/config.json";
      WriteFile(config, Damaged(kind, ReadFile(config)));
      Status started = r.rt->Start(id);
      CHECK(started.message().find("start container " + id + ": " + CurrentTarget().name + ": ") ==
            0);
      Result<std::vector<ContainerInfo>> listed = r.rt->List({});
      REQUIRE_MESSAGE(listed.ok(), listed.status().ToString());
      REQUIRE(listed->size() == 1);
      CHECK(HasExited(r.rt.get(), id));
      RemoveAndCheck(r.rt.get(), r.state.path(), id);
    }
  }

  TEST_CASE("a container whose lease has run out does not start, and Start says why") {
    Runtime r;
    LeaseFile lease;  // never renewed: run out
    const std::string id = Create(r.rt.get(), r.Leased("expired", lease.path, 500));
    Status started = r.rt->Start(id);
    CHECK(started.message().find("lease " + lease.path + " has run out") != std::string::npos);
    CHECK(HasExited(r.rt.get(), id));
    RemoveAndCheck(r.rt.get(), r.state.path(), id);
  }
}

}  // namespace
}  // namespace petrel::testing
