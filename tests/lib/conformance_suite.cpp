// The conformance suite's cases (see conformance.h): part one is the ContainerRuntime
// contract, part two the Orchestrator on top of the runtime. Each case reads the
// target it runs on from CurrentTarget(), takes a fresh state dir, and removes what it
// made, checking that nothing is left.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "lib/util/fs.h"
#include "lib/util/lease.h"
#include "petrel/orchestrator.h"
#include "tests/lib/conformance.h"
#include "tests/lib/files.h"
#include "tests/lib/orchestrator.h"
#include "tests/lib/wait.h"

namespace petrel::testing {
namespace {

using namespace steps;  // NOLINT: the suite speaks in steps

const ConformanceTarget& T() { return CurrentTarget(); }

const std::string& Image() {
  static const std::string image = T().image();
  return image;
}

// A container name of this case on this target: targets may run side by side.
std::string Name(const std::string& name) { return T().name + "-" + name; }

// A runtime object over `state`, with the suite's image pulled.
std::shared_ptr<ContainerRuntime> Open(const std::string& state) {
  Result<std::shared_ptr<ContainerRuntime>> rt = T().factory(state);
  REQUIRE_MESSAGE(rt.ok(), rt.status().ToString());
  Status pulled = (*rt)->PullImage(Image(), petrel::PullOptions());
  REQUIRE_MESSAGE(pulled.ok(), pulled.ToString());
  return *rt;
}

ContainerSpec Spec(const std::string& name, const Program& program) {
  ContainerSpec s;
  s.name = Name(name);
  s.image = Image();
  ContainerCommand c = T().command(program);
  s.command = std::move(c.command);
  s.args = std::move(c.args);
  s.labels = {{"test", "conformance"}, {"name", s.name}};
  return s;
}

// Runs a container to its end: its id and exit code.
std::pair<std::string, int> RunToEnd(ContainerRuntime* rt, const ContainerSpec& spec) {
  const std::string id = CreateAndStart(rt, spec);
  return {id, WaitExit(rt, id)};
}

// Waits until the container's output is `text`: a program got that far.
void WaitLog(ContainerRuntime* rt, const std::string& id, const std::string& text) {
  const bool got = WaitFor([&] { return LogOf(rt, id) == text; });
  // Read here, not in the message: doctest makes a message while it holds its reporter's
  // lock, which the REQUIRE in LogOf would wait for for ever.
  const std::string log = LogOf(rt, id);
  CHECK_MESSAGE(got, "log of " << id << ": \"" << log << "\", not \"" << text << "\"");
}

size_t Occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) n++;
  return n;
}

// The exit calls a runtime made, by container. They are kept apart from this object,
// so a late call from a runtime that outlives it finds them.
class Exits {
 public:
  void Install(ContainerRuntime* rt) {
    rt->SetExitHandler([calls = calls_](const std::string& id, int code) {
      std::lock_guard<std::mutex> lock(calls->mu);
      calls->codes[id] = code;
      calls->counts[id]++;
    });
  }
  // How many exit calls `id` has had so far.
  int Count(const std::string& id) {
    std::lock_guard<std::mutex> lock(calls_->mu);
    auto it = calls_->counts.find(id);
    return it == calls_->counts.end() ? 0 : it->second;
  }
  // Waits for the exit call of `id`: its code, or nullopt when none came.
  std::optional<int> Await(const std::string& id) {
    WaitFor([&] { return Of(id).has_value(); });
    return Of(id);
  }

 private:
  struct Calls {
    std::mutex mu;
    std::map<std::string, int> codes;
    std::map<std::string, int> counts;
  };
  std::optional<int> Of(const std::string& id) {
    std::lock_guard<std::mutex> lock(calls_->mu);
    auto it = calls_->codes.find(id);
    if (it == calls_->codes.end()) return std::nullopt;
    return it->second;
  }
  std::shared_ptr<Calls> calls_ = std::make_shared<Calls>();
};

// Threads that read beside the overlap case's calls (List, Inspect, Logs), as petrel's
// lister and API do, and note what they must not see. Container i of `names` prints
// texts[i] and runs until killed. Once every one has printed (AllSaidHello), an answer
// is whole or NotFound, through the kills and removals that follow.
class Readers {
 public:
  Readers(ContainerRuntime* rt, std::vector<std::string> names, std::vector<std::string> texts)
      : rt_(rt), names_(std::move(names)), texts_(std::move(texts)) {}
  ~Readers() { Stop(); }  // joins them however the case ends (a REQUIRE throws)

  // Starts `n` threads that list all containers and read each one listed.
  void StartListing(int n) {
    for (int t = 0; t < n; t++) threads_.emplace_back([this] { ListUntilStopped(); });
  }
  void AllSaidHello() { said_hello_ = true; }
  // Inspects container i (id `id`) once and reads its log.
  void Read(const std::string& id, int i) {
    Result<ContainerInfo> info = rt_->Inspect(id);
    if (!info.ok()) {
      if (!info.status().IsNotFound()) Complain("Inspect: " + info.status().ToString());
    } else if (info->name != names_[i]) {
      Complain("Inspect " + id + ": name " + info->name);
    } else if (said_hello_ && info->state == ContainerState::kCreated) {
      Complain("Inspect " + id + ": created, after it ran");
    } else if (said_hello_ && info->state == ContainerState::kExited && info->exit_code != 137) {
      Complain("Inspect " + id + ": exit code " + std::to_string(info->exit_code));
    }
    const std::string whole = texts_[i] + "\n";
    Result<LogChunk> log = rt_->Logs(id, LogOptions{0, 1024});
    if (!log.ok()) {
      if (!log.status().IsNotFound()) Complain("Logs: " + log.status().ToString());
    } else if (said_hello_ ? log->data != whole : whole.rfind(log->data, 0) != 0) {
      Complain("Logs " + id + ": \"" + log->data + "\"");
    }
    reads_++;
  }
  // Stops and joins the threads: what they saw that they must not, one line each.
  std::string Stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    std::lock_guard<std::mutex> lock(mu_);
    std::string seen;
    for (const std::string& w : wrong_) seen += "\n  " + w;
    return seen;
  }
  int reads() const { return reads_; }

 private:
  void ListUntilStopped() {
    while (!stop_) {
      Result<std::vector<ContainerInfo>> all = rt_->List({});
      if (!all.ok()) {
        Complain("List: " + all.status().ToString());
        continue;
      }
      for (const ContainerInfo& c : *all) {
        auto it = std::find(names_.begin(), names_.end(), c.name);
        if (it == names_.end()) {
          Complain("List: a container " + c.name);
        } else {
          Read(c.id, static_cast<int>(it - names_.begin()));
        }
      }
    }
  }
  void Complain(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (wrong_.size() < 20) wrong_.push_back(what);
  }

  ContainerRuntime* const rt_;
  const std::vector<std::string> names_, texts_;
  std::atomic<bool> said_hello_{false};
  std::atomic<bool> stop_{false};
  std::atomic<int> reads_{0};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::vector<std::string> wrong_;
};

TEST_SUITE("runtime") {
  TEST_CASE("a container runs to completion: its exit code, output and exit call arrive") {
    TempDir state;
    auto rt = Open(state.path());
    CHECK(rt->Name() == T().name);
    Exits exits;
    exits.Install(rt.get());
    ContainerSpec spec = Spec("done", {Print("out"), PrintErr("err"), Exit(7)});
    const std::string id = Create(rt.get(), spec);
    Result<ContainerInfo> created = rt->Inspect(id);
    REQUIRE(created.ok());
    CHECK(created->id == id);
    CHECK(created->name == spec.name);
    CHECK(created->labels == spec.labels);
    CHECK(created->state == ContainerState::kCreated);
    CHECK(created->created_at > 0);
    CHECK(created->started_at == 0);
    Result<std::vector<ContainerInfo>> listed = rt->List({{"name", spec.name}});
    REQUIRE(listed.ok());
    REQUIRE(listed->size() == 1);
    CHECK(listed->at(0).id == id);
    CHECK(rt->List({{"name", spec.name}, {"test", "other"}})->empty());

    REQUIRE(rt->Start(id).ok());
    CHECK(WaitExit(rt.get(), id) == 7);
    CHECK(exits.Await(id) == 7);
    Result<ContainerInfo> info = rt->Inspect(id);
    REQUIRE(info.ok());
    CHECK(info->started_at >= info->created_at);
    CHECK(info->finished_at >= info->started_at);
    Result<LogChunk> logs = rt->Logs(id, {});
    REQUIRE(logs.ok());
    if (T().streams_in_order) {
      CHECK(logs->data == "out\nerr\n");
    } else {
      CHECK_MESSAGE((logs->data == "out\nerr\n" || logs->data == "err\nout\n"), logs->data);
    }
    CHECK(logs->start_offset == 0);
    CHECK(logs->end_offset == 8);

    CHECK(rt->Create(spec).status().code() == Status::Code::kAlreadyExists);
    CHECK(rt->Start(id).code() == Status::Code::kFailedPrecondition);
    CHECK(rt->Kill(id, SIGKILL).ok());  // it already exited: fine
    CHECK(exits.Count(id) == 1);        // one exit, told once
    RemoveAndCheck(rt.get(), state.path(), id);
    CHECK(rt->Remove(id).IsNotFound());
    CHECK(rt->Start(id).IsNotFound());
    CHECK(rt->Kill(id, SIGKILL).IsNotFound());
  }

  TEST_CASE(
      "signals: SIGTERM to a handler gives its code, an ignored SIGTERM does nothing, "
      "SIGKILL gives 137, and a running container is not removed") {
    TempDir state;
    auto rt = Open(state.path());
    Exits exits;
    exits.Install(rt.get());
    // Each says "up" once its handler is in place.
    const std::string polite =
        CreateAndStart(rt.get(), Spec("polite", {TrapTerm(42, "bye"), Print("up"), Run()}));
    const std::string stubborn =
        CreateAndStart(rt.get(), Spec("stubborn", {IgnoreTerm(), Print("up"), Run()}));
    const std::string plain = CreateAndStart(rt.get(), Spec("plain", {Print("up"), Run()}));
    for (const std::string& id : {polite, stubborn, plain}) WaitLog(rt.get(), id, "up\n");

    Result<ContainerInfo> info = rt->Inspect(stubborn);
    REQUIRE(info.ok());
    CHECK(info->state == ContainerState::kRunning);
    CHECK(info->pid > 0);
    CHECK(info->started_at > 0);
    CHECK(info->finished_at == 0);
    CHECK(rt->Remove(stubborn).code() == Status::Code::kFailedPrecondition);
    CHECK(rt->Inspect(stubborn)->state == ContainerState::kRunning);
    Result<std::vector<ContainerInfo>> running = rt->List({{"test", "conformance"}});
    REQUIRE(running.ok());
    CHECK(running->size() == 3);
    CHECK(rt->List({{"name", Name("polite")}})->size() == 1);

    REQUIRE(rt->Kill(polite, SIGTERM).ok());
    REQUIRE(rt->Kill(stubborn, SIGTERM).ok());
    REQUIRE(rt->Kill(plain, SIGKILL).ok());
    CHECK(WaitExit(rt.get(), polite) == 42);
    CHECK(exits.Await(polite) == 42);
    CHECK(LogOf(rt.get(), polite) == "up\nbye\n");
    CHECK(WaitExit(rt.get(), plain) == 137);
    CHECK(exits.Await(plain) == 137);
    CHECK(HoldsFor([&] { return rt->Inspect(stubborn)->state == ContainerState::kRunning; }, 0.5));
    REQUIRE(rt->Kill(stubborn, SIGKILL).ok());
    CHECK(WaitExit(rt.get(), stubborn) == 137);
    CHECK(rt->Kill(stubborn, SIGKILL).ok());  // already gone: fine
    for (const std::string& id : {polite, stubborn, plain}) {
      RemoveAndCheck(rt.get(), state.path(), id);
    }
  }

  TEST_CASE("env, args, user, working dir and hostname reach the process as given") {
    TempDir state;
    auto rt = Open(state.path());
    const std::string text = "two  spaces, 'single' \"double\" $HOME \\ and * stay";
    ContainerSpec s =
        Spec("shape", {Env("FOO"), Env("UNSET"), Print(text), Cwd(), Uid(), Hostname()});
    s.env = {{"FOO", "bar baz"}};
    s.user = "65534";
    s.working_dir = "/tmp";
    s.hostname = "shape-host";
    auto [id, code] = RunToEnd(rt.get(), s);
    CHECK(code == 0);
    CHECK(LogOf(rt.get(), id) == "FOO=bar baz\nUNSET=\n" + text + "\n/tmp\n65534\nshape-host\n");
    // Without them: root, in /.
    auto [plain, plain_code] = RunToEnd(rt.get(), Spec("shape-plain", {Cwd(), Uid()}));
    CHECK(plain_code == 0);
    CHECK(LogOf(rt.get(), plain) == "/\n0\n");
    for (const std::string& c : {id, plain}) RemoveAndCheck(rt.get(), state.path(), c);
  }

  TEST_CASE("bind and tmpfs mounts, read-only binds and a read-only root filesystem") {
    TempDir state, shared, ro;
    auto rt = Open(state.path());
    WriteFile(shared.Sub("in"), "from the host\n");
    WriteFile(ro.Sub("in"), "read only\n");
    const MountSpec bind{MountSpec::Type::kBind, shared.path(), "/data", false, 0};
    const MountSpec ro_bind{MountSpec::Type::kBind, ro.path(), "/ro", true, 0};
    const MountSpec tmpfs{MountSpec::Type::kTmpfs, "", "/scratch", false, 1 << 20};

    ContainerSpec s =
        Spec("mounts", {Cat("/data/in"), Write("/data/out", "from the container"), Cat("/ro/in"),
                        Write("/ro/out", "refused"), Write("/scratch/t", "in tmpfs"),
                        Cat("/scratch/t"), Write("/rootfs-file", "refused"), Print("done")});
    s.mounts = {bind, ro_bind, tmpfs};
    s.read_only_rootfs = true;
    auto [id, code] = RunToEnd(rt.get(), s);
    CHECK(code == 0);
    const std::string out = LogOf(rt.get(), id);
    INFO(out);
    if (T().streams_in_order) CHECK(out.find("from the host\nread only\n") == 0);
    CHECK(out.find("\nin tmpfs\n") != std::string::npos);
    CHECK(Occurrences(out, "Read-only file system") == 2);
    // Each stream in its order; how the two interleave is the runtime's (containerd's
    // shim copies them through a pipe each): stdout's lines alone end so.
    std::string stdout_lines;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("Read-only file system") == std::string::npos) stdout_lines += line + "\n";
    }
    CHECK(stdout_lines == "from the host\nread only\nin tmpfs\ndone\n");
    CHECK(ReadFile(shared.Sub("out")) == "from the container\n");
    CHECK_FALSE(std::filesystem::exists(ro.Sub("out")));

    // A writable root keeps what is written; each tmpfs starts empty.
    ContainerSpec w =
        Spec("mounts-rw", {Write("/rootfs-file", "kept"), Cat("/rootfs-file"), Cat("/scratch/t")});
    w.mounts = {tmpfs};
    auto [rw, rw_code] = RunToEnd(rt.get(), w);
    CHECK(rw_code == 1);  // the last cat failed
    const std::string rw_out = LogOf(rt.get(), rw);
    INFO(rw_out);
    // stdout's line first, unless the runtime copies the two streams apart (Docker),
    // where the last cat's complaint on stderr may come before it.
    if (T().streams_in_order) CHECK(rw_out.find("kept\n") == 0);
    CHECK(rw_out.find("kept\n") != std::string::npos);
    CHECK(Occurrences(rw_out, "No such file or directory") == 1);
    for (const std::string& c : {id, rw}) RemoveAndCheck(rt.get(), state.path(), c);
    CHECK(ReadFile(shared.Sub("in")) == "from the host\n");  // binds are the host's files
  }

  TEST_CASE(
      "a memory limit is enforced: past it the process is OOM-killed (137, reason "
      "OOMKilled), and the same program without the limit exits 0") {
    TempDir state;
    auto rt = Open(state.path());
    ContainerSpec hog = Spec("hog", {Alloc(64), Print("survived")});
    hog.resources.memory_bytes = 16 << 20;
    auto [hog_id, hog_code] = RunToEnd(rt.get(), hog);
    CHECK(hog_code == 137);
    Result<ContainerInfo> hog_info = rt->Inspect(hog_id);
    REQUIRE(hog_info.ok());
    if (T().oom_kills_always_told) {
      CHECK(hog_info->exit_reason == "OOMKilled");
    } else {
      CHECK_MESSAGE((hog_info->exit_reason == "OOMKilled" || hog_info->exit_reason.empty()),
                    hog_info->exit_reason);
    }
    CHECK(LogOf(rt.get(), hog_id).find("survived") == std::string::npos);
    auto [free_id, free_code] = RunToEnd(rt.get(), Spec("free", {Alloc(64), Print("survived")}));
    CHECK(free_code == 0);
    Result<ContainerInfo> free_info = rt->Inspect(free_id);
    REQUIRE(free_info.ok());
    CHECK(free_info->exit_reason.empty());
    CHECK(LogOf(rt.get(), free_id) == "survived\n");
    for (const std::string& id : {hog_id, free_id}) RemoveAndCheck(rt.get(), state.path(), id);
  }

  TEST_CASE("logs: offsets let a reader follow a container's output across calls") {
    TempDir state;
    auto rt = Open(state.path());
    const std::string id =
        CreateAndStart(rt.get(), Spec("follow", {TrapTerm(0, "two"), Print("one"), Run()}));
    WaitLog(rt.get(), id, "one\n");
    Result<LogChunk> first = rt->Logs(id, LogOptions{0, 1024});
    REQUIRE(first.ok());
    CHECK(first->data == "one\n");
    CHECK(first->start_offset == 0);
    CHECK(first->end_offset == 4);
    Result<LogChunk> nothing = rt->Logs(id, LogOptions{first->end_offset, 1024});
    REQUIRE(nothing.ok());
    CHECK(nothing->data.empty());
    CHECK(nothing->start_offset == 4);
    CHECK(nothing->end_offset == 4);

    REQUIRE(rt->Kill(id, SIGTERM).ok());
    CHECK(WaitExit(rt.get(), id) == 0);
    Result<LogChunk> next = rt->Logs(id, LogOptions{first->end_offset, 1024});
    REQUIRE(next.ok());
    CHECK(next->data == "two\n");
    CHECK(next->start_offset == 4);
    CHECK(next->end_offset == 8);
    // At most limit_bytes per call; -1 reads the tail.
    Result<LogChunk> head = rt->Logs(id, LogOptions{0, 2});
    CHECK(head->data == "on");
    CHECK(head->end_offset == 2);
    Result<LogChunk> rest = rt->Logs(id, LogOptions{head->end_offset, 1024});
    CHECK(rest->data == "e\ntwo\n");
    CHECK(rest->start_offset == 2);
    Result<LogChunk> tail = rt->Logs(id, LogOptions{-1, 3});
    CHECK(tail->data == "wo\n");
    CHECK(tail->start_offset == 5);
    CHECK(tail->end_offset == 8);
    Result<LogChunk> all = rt->Logs(id, LogOptions{-1, 1024});
    CHECK(all->data == "one\ntwo\n");
    CHECK(all->start_offset == 0);
    RemoveAndCheck(rt.get(), state.path(), id);
  }

  TEST_CASE("logs are capped: the oldest output is dropped and offsets go on counting") {
    TempDir state;
    auto rt = Open(state.path());
    const int64_t cap = T().log_cap_bytes;
    REQUIRE(cap > 0);
    const int64_t lines = std::max<int64_t>(1000, 3 * cap / 20);  // 20 bytes a line
    std::string expected;
    char line[32];
    for (int64_t i = 0; i < lines; i++) {
      std::snprintf(line, sizeof(line), "%019lld\n", static_cast<long long>(i));
      expected += line;
    }
    const int64_t total = static_cast<int64_t>(expected.size());
    auto [id, code] = RunToEnd(rt.get(), Spec("chatty", {Count(lines)}));
    CHECK(code == 0);

    Result<LogChunk> all = rt->Logs(id, LogOptions{0, 1 << 30});
    REQUIRE(all.ok());
    CHECK(all->end_offset == total);
    CHECK(all->start_offset > 0);  // the oldest output is gone
    CHECK(all->data.size() <= static_cast<size_t>(cap));
    CHECK(all->data.size() == static_cast<size_t>(all->end_offset - all->start_offset));
    CHECK(all->data == expected.substr(static_cast<size_t>(all->start_offset)));
    Result<LogChunk> tail = rt->Logs(id, LogOptions{-1, 40});
    CHECK(tail->data == expected.substr(expected.size() - 40));
    CHECK(tail->start_offset == total - 40);
    Result<LogChunk> after = rt->Logs(id, LogOptions{total, 100});
    CHECK(after->data.empty());
    CHECK(after->start_offset == total);
    // A reader following from 0 in small reads starts at the oldest byte kept.
    std::string followed;
    int64_t offset = 0;
    for (int i = 0; i < 10000 && offset < total; i++) {
      Result<LogChunk> chunk = rt->Logs(id, LogOptions{offset, 1000});
      REQUIRE(chunk.ok());
      if (i == 0) CHECK(chunk->start_offset == all->start_offset);
      followed += chunk->data;
      offset = chunk->end_offset;
    }
    CHECK(followed == all->data);
    RemoveAndCheck(rt.get(), state.path(), id);
  }

  TEST_CASE("a new runtime object adopts the containers of an earlier one and hears their exits") {
    TempDir state;
    std::string lasting, waiting;
    int pid = 0;
    {
      auto rt = Open(state.path());
      lasting = CreateAndStart(rt.get(), Spec("lasting", {TrapTerm(3, "bye"), Print("up"), Run()}));
      waiting = Create(rt.get(), Spec("waiting", {Print("late"), Run()}));
      WaitLog(rt.get(), lasting, "up\n");
      pid = rt->Inspect(lasting)->pid;
    }                              // petrel's side is gone; the containers are not
    auto rt = Open(state.path());  // pulls the image again too: fine
    Exits exits;
    exits.Install(rt.get());
    Result<ContainerInfo> info = rt->Inspect(lasting);
    REQUIRE(info.ok());
    CHECK(info->state == ContainerState::kRunning);
    CHECK(info->pid == pid);
    CHECK(info->name == Name("lasting"));
    CHECK(rt->Inspect(waiting)->state == ContainerState::kCreated);
    Result<std::vector<ContainerInfo>> listed = rt->List({{"test", "conformance"}});
    REQUIRE(listed.ok());
    std::set<std::string> ids;
    for (const ContainerInfo& c : *listed) ids.insert(c.id);
    CHECK(ids == std::set<std::string>{lasting, waiting});
    CHECK(LogOf(rt.get(), lasting) == "up\n");

    REQUIRE(rt->Start(waiting).ok());
    WaitLog(rt.get(), waiting, "late\n");
    CHECK(rt->Inspect(waiting)->state == ContainerState::kRunning);
    REQUIRE(rt->Kill(lasting, SIGTERM).ok());
    REQUIRE(rt->Kill(waiting, SIGKILL).ok());
    CHECK(exits.Await(lasting) == 3);
    CHECK(exits.Await(waiting) == 137);
    CHECK(WaitExit(rt.get(), lasting) == 3);
    CHECK(LogOf(rt.get(), lasting) == "up\nbye\n");
    // Each exit told once, and the object of a third petrel tells none again.
    CHECK(exits.Count(lasting) == 1);
    CHECK(exits.Count(waiting) == 1);
    rt.reset();
    auto third = Open(state.path());
    Exits late;
    late.Install(third.get());
    CHECK(HoldsFor([&] { return late.Count(lasting) + late.Count(waiting) == 0; }, 0.5));
    CHECK(exits.Count(lasting) == 1);
    for (const std::string& id : {lasting, waiting}) {
      RemoveAndCheck(third.get(), state.path(), id);
    }
  }

  TEST_CASE("a lease: kept while renewed, enforced while petrel is gone, none started run out") {
    TempDir state, leases;
    const std::string file = leases.Sub("node.lease");
    const auto renew = [&] {
      REQUIRE(ReplaceFile(file, internal::LeaseText(internal::LeaseClockNow())));
    };
    constexpr int64_t kLeaseMs = 1000;
    std::string id;
    {
      auto rt = Open(state.path());
      ContainerSpec spec = Spec("leased", {Print("up"), Run()});
      spec.lease = {file, kLeaseMs};
      renew();
      id = CreateAndStart(rt.get(), spec);
      WaitLog(rt.get(), id, "up\n");
      // Renewed for twice the lease: it runs on.
      for (int i = 0; i < 20; i++) {
        renew();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      CHECK(rt->Inspect(id)->state == ContainerState::kRunning);
    }  // petrel is gone, and nobody renews the lease
    // The runtime's own process (crun's shim, containerd's logger, Docker's watcher)
    // kills it once the lease runs out, with no runtime object of petrel's alive.
    std::this_thread::sleep_for(std::chrono::milliseconds(kLeaseMs + 2000));
    const int64_t reopened_at = SystemClock()->Now();
    auto rt = Open(state.path());
    if (T().check_leases) T().check_leases(rt.get());
    CHECK(WaitExit(rt.get(), id) == 128 + SIGKILL);
    if (!T().check_leases) {
      // Before the new runtime object came, which would also enforce it at adoption.
      const int64_t finished_at = rt->Inspect(id)->finished_at;
      CHECK_MESSAGE(finished_at < reopened_at,
                    "killed " << finished_at - reopened_at << " ms after the runtime came back");
    }
    // A lease run out already: Start fails naming it, and the container never runs.
    ContainerSpec late = Spec("late", {Print("late"), Run()});
    late.lease = {file, kLeaseMs};
    const std::string late_id = Create(rt.get(), late);
    const Status started = rt->Start(late_id);
    CHECK_FALSE(started.ok());
    CHECK_MESSAGE(started.message().find(file) != std::string::npos, started.ToString());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(rt->Inspect(late_id)->state != ContainerState::kRunning);
    CHECK(LogOf(rt.get(), late_id).find("late") == std::string::npos);
    for (const std::string& c : {id, late_id}) RemoveAndCheck(rt.get(), state.path(), c);
  }

  TEST_CASE("remove leaves nothing, whatever the container went through") {
    TempDir state;
    std::vector<std::string> removed;
    {
      auto rt = Open(state.path());
      const std::string never = Create(rt.get(), Spec("never-started", {Print("x")}));
      CHECK(rt->Kill(never, SIGKILL).ok());  // no process yet: nothing to signal
      RemoveAndCheck(rt.get(), state.path(), never);
      auto [exited, code] = RunToEnd(rt.get(), Spec("exited", {Print("x"), Exit(1)}));
      CHECK(code == 1);
      RemoveAndCheck(rt.get(), state.path(), exited);
      const std::string killed = CreateAndStart(rt.get(), Spec("killed", {Print("x"), Run()}));
      WaitLog(rt.get(), killed, "x\n");
      REQUIRE(rt->Kill(killed, SIGKILL).ok());
      CHECK(WaitExit(rt.get(), killed) == 137);
      RemoveAndCheck(rt.get(), state.path(), killed);
      removed = {never, exited, killed};
      CHECK(rt->List({})->empty());
    }
    // Nor does a later runtime object over the same state find anything.
    auto again = Open(state.path());
    CHECK(again->List({})->empty());
    for (const std::string& id : removed) CheckGone(again.get(), state.path(), id);
  }

  TEST_CASE("a bad image fails PullImage and Create naming it, and the same image twice is fine") {
    TempDir state;
    auto rt = Open(state.path());
    const std::string missing = T().missing_image;
    Status pull = rt->PullImage(missing, petrel::PullOptions());
    REQUIRE_FALSE(pull.ok());
    CHECK_MESSAGE(pull.message().find(missing) != std::string::npos, pull.ToString());
    ContainerSpec s = Spec("noimage", {Print("x")});
    s.image = missing;
    Result<std::string> r = rt->Create(s);
    REQUIRE_FALSE(r.ok());
    CHECK_MESSAGE(r.status().message().find(missing) != std::string::npos, r.status().ToString());
    CHECK(rt->List({{"name", s.name}})->empty());
    CheckGone(rt.get(), state.path(), s.name);

    REQUIRE(rt->PullImage(Image(), petrel::PullOptions()).ok());  // Open pulled it once already
    REQUIRE(rt->PullImage(Image(), petrel::PullOptions()).ok());
    auto [id, code] = RunToEnd(rt.get(), Spec("image-again", {Print("x")}));
    CHECK(code == 0);
    RemoveAndCheck(rt.get(), state.path(), id);
  }

  TEST_CASE("images: Never, IfNotPresent, list, remove refused while in use, prune") {
    TempDir state;
    Result<std::shared_ptr<ContainerRuntime>> made = T().factory(state.path());
    REQUIRE_MESSAGE(made.ok(), made.status().ToString());
    ContainerRuntime* rt = made->get();
    PullOptions never;
    never.policy = PullPolicy::kNever;
    CHECK(rt->PullImage(Image(), never).message() ==
          Image() + ": not present, and imagePullPolicy is Never");
    CHECK(rt->ListImages()->empty());
    std::vector<PullProgress> heard;
    PullOptions options;
    options.progress = [&](const PullProgress& p) { heard.push_back(p); };
    REQUIRE(rt->PullImage(Image(), options).ok());
    CHECK(!heard.empty());
    heard.clear();
    REQUIRE(rt->PullImage(Image(), options).ok());  // IfNotPresent: had already
    CHECK(heard.empty());
    REQUIRE(rt->PullImage(Image(), never).ok());

    Result<std::vector<ImageInfo>> images = rt->ListImages();
    REQUIRE_MESSAGE(images.ok(), images.status().ToString());
    REQUIRE(images->size() == 1);
    const ImageInfo image = images->at(0);
    CHECK(image.id.size() == 71);
    CHECK(image.refs == std::vector<std::string>{Image()});
    CHECK(image.size_bytes > 0);
    CHECK(!image.in_use);

    const std::string user = Create(rt, Spec("image-user", {Print("x")}));
    CHECK(rt->ListImages()->at(0).in_use);
    const std::string in_use = ": in use by container " + Name("image-user");
    CHECK(rt->RemoveImage(Image()).message() == Image() + in_use);
    CHECK(rt->RemoveImage(image.id).message() == image.id + in_use);
    CHECK(rt->RemoveImage(T().missing_image).code() == Status::Code::kNotFound);
    Result<PruneResult> pruned = rt->PruneImages();
    REQUIRE_MESSAGE(pruned.ok(), pruned.status().ToString());
    CHECK(pruned->removed.empty());
    RemoveAndCheck(rt, state.path(), user);

    pruned = rt->PruneImages();
    REQUIRE_MESSAGE(pruned.ok(), pruned.status().ToString());
    CHECK(pruned->removed == std::vector<std::string>{image.id});
    CHECK(pruned->bytes_freed > 0);
    CHECK(rt->ListImages()->empty());
    CHECK(rt->PullImage(Image(), never).code() == Status::Code::kFailedPrecondition);
    REQUIRE(rt->PullImage(Image(), PullOptions()).ok());
    CHECK(rt->RemoveImage(Image()).ok());  // by reference
    CHECK(rt->ListImages()->empty());
    // A container made after all that runs from the image pulled again.
    REQUIRE(rt->PullImage(Image(), PullOptions()).ok());
    auto [id, code] = RunToEnd(rt, Spec("image-back", {Print("x")}));
    CHECK(code == 0);
    RemoveAndCheck(rt, state.path(), id);
  }

  TEST_CASE("a bad command fails Start naming the binary, and the container can be removed") {
    TempDir state;
    auto rt = Open(state.path());
    ContainerSpec s = Spec("nocmd", {});
    s.command = {kMissingBinary};
    s.args = {};
    const std::string id = Create(rt.get(), s);  // Create only prepares
    Status started = rt->Start(id);
    REQUIRE_FALSE(started.ok());
    CHECK_MESSAGE(started.message().find(kMissingBinary) != std::string::npos, started.ToString());
    Result<ContainerInfo> info = rt->Inspect(id);
    REQUIRE(info.ok());
    CHECK(info->state != ContainerState::kRunning);
    RemoveAndCheck(rt.get(), state.path(), id);
  }

  TEST_CASE("calls that may overlap do so safely and leave a consistent state") {
    TempDir state;
    auto rt = Open(state.path());
    constexpr int kCount = 8;
    std::vector<std::string> names, texts, ids(kCount);
    for (int i = 0; i < kCount; i++) {
      names.push_back(Name("many" + std::to_string(i)));
      texts.push_back("hello " + std::to_string(i));
    }
    Readers readers(rt.get(), names, texts);
    readers.StartListing(2);

    // Creates and starts side by side, with a pull of the image beside them.
    std::vector<Status> results(kCount);
    Status pulled;
    std::vector<std::thread> threads;
    threads.emplace_back([&] { pulled = rt->PullImage(Image(), petrel::PullOptions()); });
    for (int i = 0; i < kCount; i++) {
      threads.emplace_back([&, i] {
        Result<std::string> id =
            rt->Create(Spec("many" + std::to_string(i), {Print(texts[i]), Run()}));
        results[i] = id.status();
        if (id.ok()) results[i] = rt->Start(ids[i] = *id);
      });
    }
    for (std::thread& t : threads) t.join();
    threads.clear();
    CHECK_MESSAGE(pulled.ok(), pulled.ToString());
    std::set<int> pids;
    for (int i = 0; i < kCount; i++) {
      CAPTURE(i);
      REQUIRE_MESSAGE(results[i].ok(), results[i].ToString());
      Result<ContainerInfo> info = rt->Inspect(ids[i]);
      REQUIRE(info.ok());
      CHECK(info->state == ContainerState::kRunning);
      pids.insert(info->pid);
      WaitLog(rt.get(), ids[i], texts[i] + "\n");
    }
    CHECK(pids.size() == static_cast<size_t>(kCount));
    CHECK(rt->Start(ids[0]).code() == Status::Code::kFailedPrecondition);  // started by then
    CHECK(rt->Start(Name("nothere")).IsNotFound());

    // Kills and removes side by side, each beside reads of its own container.
    readers.AllSaidHello();
    for (int i = 0; i < kCount; i++) {
      threads.emplace_back([&, i] {
        std::atomic<bool> done{false};
        std::thread own([&] {
          while (!done) readers.Read(ids[i], i);
        });
        results[i] = rt->Kill(ids[i], SIGKILL);
        if (results[i].ok()) {
          results[i] = WaitFor([&] { return HasExited(rt.get(), ids[i]); })
                           ? rt->Remove(ids[i])
                           : Status::Internal("still running after SIGKILL");
        }
        done = true;
        own.join();
      });
    }
    for (std::thread& t : threads) t.join();
    const std::string seen = readers.Stop();
    CHECK(readers.reads() > 0);
    CHECK_MESSAGE(seen.empty(), "readers saw:" << seen);
    for (int i = 0; i < kCount; i++) {
      CAPTURE(i);
      CHECK_MESSAGE(results[i].ok(), results[i].ToString());
      CheckGone(rt.get(), state.path(), ids[i]);
    }
    CHECK(rt->List({})->empty());
  }
}

// --- Exec ---

// Exec's options that run `program` on this target (all of its command's words as one
// argv), with `timeout_ms`.
ExecOptions ExecOf(const Program& program, int64_t timeout_ms = 10000) {
  ContainerCommand c = T().command(program);
  ExecOptions o;
  o.command = std::move(c.command);
  o.command.insert(o.command.end(), c.args.begin(), c.args.end());
  o.timeout_ms = timeout_ms;
  return o;
}

// Starts a container `name` from `spec` that says "up" and runs until killed, and
// waits until it has said it.
std::string StartRunning(ContainerRuntime* rt, ContainerSpec spec) {
  const std::string id = CreateAndStart(rt, spec);
  WaitLog(rt, id, "up\n");
  return id;
}

// Kills a running container, waits for its end, and removes it.
void KillAndRemove(ContainerRuntime* rt, const std::string& state, const std::string& id) {
  REQUIRE(rt->Kill(id, SIGKILL).ok());
  CHECK(WaitExit(rt, id) == 137);
  RemoveAndCheck(rt, state, id);
}

// 20 bytes a line, as the count step writes them.
std::string Counted(int64_t lines) {
  std::string out;
  char line[32];
  for (int64_t i = 0; i < lines; i++) {
    std::snprintf(line, sizeof(line), "%019lld\n", static_cast<long long>(i));
    out += line;
  }
  return out;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST_SUITE("exec") {
  TEST_CASE("exec: the command's exit code and output (stdout and stderr together), not logged") {
    TempDir state;
    auto rt = Open(state.path());
    const std::string id = StartRunning(rt.get(), Spec("exec-out", {Print("up"), Run()}));
    Result<ExecResult> r =
        rt->Exec(id, ExecOf({Print("out"), PrintErr("err"), Print("more"), Exit(3)}));
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->exit_code == 3);
    // Each stream in its order; how the two interleave is the runtime's (runc copies
    // them through pipes of its own).
    std::string out = r->output;
    const size_t err = out.find("err\n");
    REQUIRE_MESSAGE(err != std::string::npos, r->output);
    CHECK_MESSAGE(out.erase(err, 4) == "out\nmore\n", r->output);
    CHECK_FALSE(r->truncated);
    Result<ExecResult> quiet = rt->Exec(id, ExecOf({Exit(0)}));
    REQUIRE_MESSAGE(quiet.ok(), quiet.status().ToString());
    CHECK(quiet->exit_code == 0);
    CHECK(quiet->output.empty());
    // The container's own output and state are its own.
    CHECK(LogOf(rt.get(), id) == "up\n");
    CHECK(rt->Inspect(id)->state == ContainerState::kRunning);
    KillAndRemove(rt.get(), state.path(), id);
  }

  TEST_CASE("exec: output past the limit is dropped and said so, and the command runs to its end") {
    TempDir state;
    auto rt = Open(state.path());
    const std::string id = StartRunning(rt.get(), Spec("exec-big", {Print("up"), Run()}));
    // 100 KB: more than a pipe holds, so a runtime that stopped reading would hang it.
    ExecOptions big = ExecOf({Count(5000), Print("end"), Exit(4)});
    big.output_limit = 100;
    Result<ExecResult> r = rt->Exec(id, big);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->exit_code == 4);
    CHECK(r->output == Counted(5000).substr(0, 100));
    CHECK(r->truncated);
    // Exactly the limit is not past it.
    ExecOptions exact = ExecOf({Count(5)});
    exact.output_limit = 100;
    Result<ExecResult> e = rt->Exec(id, exact);
    REQUIRE_MESSAGE(e.ok(), e.status().ToString());
    CHECK(e->output == Counted(5));
    CHECK_FALSE(e->truncated);
    ExecOptions none = ExecOf({Print("x")});
    none.output_limit = 0;
    Result<ExecResult> n = rt->Exec(id, none);
    REQUIRE_MESSAGE(n.ok(), n.status().ToString());
    CHECK(n->output.empty());
    CHECK(n->truncated);
    KillAndRemove(rt.get(), state.path(), id);
  }

  TEST_CASE(
      "exec: past its timeout the command is killed, nothing of it goes on, the container does") {
    TempDir state, shared;
    auto rt = Open(state.path());
    ContainerSpec s = Spec("exec-slow", {Print("up"), Run()});
    s.mounts = {{MountSpec::Type::kBind, shared.path(), "/data", false, 0}};
    const std::string id = StartRunning(rt.get(), s);
    const auto start = std::chrono::steady_clock::now();
    Result<ExecResult> r = rt->Exec(
        id, ExecOf({Write("/data/began", "x"), Sleep(2000), Write("/data/late", "x")}, 1000));
    const double took = SecondsSince(start);
    CHECK(r.status().code() == Status::Code::kDeadlineExceeded);
    CHECK(r.status().message() == "exec in " + id + ": timed out after 1s");
    CHECK_MESSAGE(took < 6, "Exec took " << took << " s");
    CHECK(std::filesystem::exists(shared.Sub("began")));
    // Had the command lived on, it would have written this 1 s after Exec returned.
    CHECK(HoldsFor([&] { return !std::filesystem::exists(shared.Sub("late")); }, 2.0));
    // A command that waits for a signal, and a timeout below a second.
    Result<ExecResult> waits = rt->Exec(id, ExecOf({Print("x"), Run()}, 300));
    CHECK(waits.status().code() == Status::Code::kDeadlineExceeded);
    CHECK(waits.status().message() == "exec in " + id + ": timed out after 300ms");
    CHECK(rt->Inspect(id)->state == ContainerState::kRunning);
    Result<ExecResult> after = rt->Exec(id, ExecOf({Print("after")}));
    REQUIRE_MESSAGE(after.ok(), after.status().ToString());
    CHECK(after->output == "after\n");
    CHECK(LogOf(rt.get(), id) == "up\n");
    KillAndRemove(rt.get(), state.path(), id);
  }

  TEST_CASE("exec: a binary not in the image exits 127, naming it, as a shell says it") {
    TempDir state;
    auto rt = Open(state.path());
    const std::string id = StartRunning(rt.get(), Spec("exec-nobin", {Print("up"), Run()}));
    ExecOptions o;
    o.command = {kMissingBinary, "arg"};
    Result<ExecResult> r = rt->Exec(id, o);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->exit_code == 127);
    CHECK_MESSAGE(r->output.find(kMissingBinary) != std::string::npos, r->output);
    CHECK(rt->Inspect(id)->state == ContainerState::kRunning);
    KillAndRemove(rt.get(), state.path(), id);
  }

  TEST_CASE(
      "exec: a container created or exited refuses (FailedPrecondition), an unknown one is "
      "NotFound") {
    TempDir state;
    auto rt = Open(state.path());
    const std::string created = Create(rt.get(), Spec("exec-created", {Print("up"), Run()}));
    Result<ExecResult> r = rt->Exec(created, ExecOf({Print("x")}));
    CHECK_MESSAGE(r.status().code() == Status::Code::kFailedPrecondition, r.status().ToString());
    auto [exited, code] = RunToEnd(rt.get(), Spec("exec-exited", {Exit(0)}));
    CHECK(code == 0);
    r = rt->Exec(exited, ExecOf({Print("x")}));
    CHECK_MESSAGE(r.status().code() == Status::Code::kFailedPrecondition, r.status().ToString());
    r = rt->Exec(Name("exec-nothere"), ExecOf({Print("x")}));
    CHECK_MESSAGE(r.status().IsNotFound(), r.status().ToString());
    for (const std::string& id : {created, exited}) RemoveAndCheck(rt.get(), state.path(), id);
  }

  TEST_CASE("exec: the command runs as the container's process: user, env, working dir, host") {
    TempDir state;
    auto rt = Open(state.path());
    ContainerSpec s = Spec("exec-as", {Print("up"), Run()});
    s.env = {{"FOO", "bar baz"}};
    s.user = "65534";
    s.working_dir = "/tmp";
    s.hostname = "exec-host";
    const std::string id = StartRunning(rt.get(), s);
    Result<ExecResult> r =
        rt->Exec(id, ExecOf({Uid(), Cwd(), Env("FOO"), Env("UNSET"), Hostname()}));
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->exit_code == 0);
    CHECK(r->output == "65534\n/tmp\nFOO=bar baz\nUNSET=\nexec-host\n");
    KillAndRemove(rt.get(), state.path(), id);
  }

  TEST_CASE("exec: several at once in one container each get their own output and exit code") {
    TempDir state;
    auto rt = Open(state.path());
    const std::string id = StartRunning(rt.get(), Spec("exec-many", {Print("up"), Run()}));
    constexpr int kCount = 4;
    std::vector<Result<ExecResult>> results(kCount, Status::Internal("not run"));
    std::vector<std::thread> threads;
    for (int i = 0; i < kCount; i++) {
      threads.emplace_back([&, i] {
        const std::string me = std::to_string(i);
        results[i] = rt->Exec(id, ExecOf({Print(me), Sleep(300), Print(me + " again"), Exit(i)}));
      });
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < kCount; i++) {
      CAPTURE(i);
      REQUIRE_MESSAGE(results[i].ok(), results[i].status().ToString());
      CHECK(results[i]->exit_code == i);
      CHECK(results[i]->output == std::to_string(i) + "\n" + std::to_string(i) + " again\n");
    }
    KillAndRemove(rt.get(), state.path(), id);
  }

  TEST_CASE("exec: a Kill of the container during an Exec ends both, and Exec answers at once") {
    TempDir state, shared;
    auto rt = Open(state.path());
    ContainerSpec s = Spec("exec-killed", {Print("up"), Run()});
    s.mounts = {{MountSpec::Type::kBind, shared.path(), "/data", false, 0}};
    const std::string id = StartRunning(rt.get(), s);
    Result<ExecResult> r = Status::Internal("not run");
    double took = 0;
    std::thread exec([&] {
      const auto start = std::chrono::steady_clock::now();
      r = rt->Exec(id, ExecOf({Write("/data/began", "x"), Sleep(20000)}, 30000));
      took = SecondsSince(start);
    });
    CHECK(WaitFor([&] { return std::filesystem::exists(shared.Sub("began")); }));
    Status killed = rt->Kill(id, SIGKILL);
    exec.join();
    REQUIRE_MESSAGE(killed.ok(), killed.ToString());
    // Either the command ended first (the fake's takes no time) or the container took
    // it with it; either way Exec did not wait out the sleep.
    CHECK_MESSAGE((r.ok() || r.status().code() == Status::Code::kFailedPrecondition),
                  r.status().ToString());
    CHECK_MESSAGE(took < 15, "Exec took " << took << " s");
    CHECK(WaitExit(rt.get(), id) == 137);
    r = rt->Exec(id, ExecOf({Print("x")}));
    CHECK_MESSAGE(r.status().code() == Status::Code::kFailedPrecondition, r.status().ToString());
    RemoveAndCheck(rt.get(), state.path(), id);
  }
}

// --- the Orchestrator on the runtime ---

struct Petrel {
  TempDir dir;
  std::string runtime_dir = dir.Sub("runtime");
  std::shared_ptr<ContainerRuntime> rt;
  std::unique_ptr<Orchestrator> orch;

  Petrel() {
    Result<std::shared_ptr<ContainerRuntime>> made = T().factory(runtime_dir);
    REQUIRE_MESSAGE(made.ok(), made.status().ToString());
    rt = *made;
    Options o = TestOptions(dir, rt, SystemClock());
    o.node_name = "n-" + T().name;  // targets may run side by side
    o.resync_interval_ms = 500;
    orch = OpenOrDie(o);
    REQUIRE(orch->Start().ok());
  }
  ~Petrel() {
    // Leave nothing running behind a failed test; a case that passes has checked that
    // already (DeleteAllAndCheck).
    auto all = orch->List();
    if (all.ok()) {
      for (auto& w : *all) (void)orch->Delete(w.spec.name);
    }
    WaitFor([&] { return NoContainers(); }, 30);
  }
  // Deletes every workload, waits until the runtime lists no container, and checks
  // that nothing is left of any container it listed meanwhile, by id and by name (the
  // leftovers of a container whose removal failed half-way carry its name).
  void DeleteAllAndCheck() {
    std::set<std::string> seen;
    auto note = [&] {
      Result<std::vector<ContainerInfo>> l = rt->List({});
      REQUIRE(l.ok());
      for (const ContainerInfo& c : *l) seen.insert({c.id, c.name});
      return l->empty();
    };
    note();
    Result<std::vector<WorkloadState>> all = orch->List();
    REQUIRE(all.ok());
    for (const WorkloadState& w : *all) REQUIRE(orch->Delete(w.spec.name).ok());
    // Until the workloads are forgotten too: a Create still in flight makes a container
    // after the runtime's list was empty, and the workload goes only once it is removed.
    CHECK(WaitFor(
        [&] {
          const bool none = note();
          Result<std::vector<WorkloadState>> left = orch->List();
          return none && left.ok() && left->empty();
        },
        30));
    CHECK_FALSE(seen.empty());
    for (const std::string& id : seen) CheckGone(rt.get(), runtime_dir, id);
  }
  bool NoContainers() {
    Result<std::vector<ContainerInfo>> left = rt->List({});
    return left.ok() && left->empty();
  }
  WorkloadState Get(const std::string& name) {
    auto r = orch->Get(name);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    return *r;
  }
  std::vector<ContainerInfo> Containers(const std::string& workload) {
    auto l = rt->List({{kLabelWorkload, workload}});
    REQUIRE(l.ok());
    return *l;
  }
};

WorkloadSpec Workload(const std::string& name, const Program& program) {
  WorkloadSpec w;
  w.name = name;
  w.image = Image();
  ContainerCommand c = T().command(program);
  w.command = std::move(c.command);
  w.args = std::move(c.args);
  w.backoff.initial_ms = 100;
  w.backoff.max_ms = 400;
  w.termination_grace_ms = 2000;
  return w;
}

TEST_SUITE("orchestrator-on-runtime") {
  TEST_CASE("restart policies: Never keeps the exit, OnFailure retries failures, Always restarts") {
    Petrel p;
    WorkloadSpec never = Workload("never", {Exit(3)});
    never.restart_policy = RestartPolicy::kNever;
    WorkloadSpec onfail = Workload("onfail", {Exit(1)});
    onfail.restart_policy = RestartPolicy::kOnFailure;
    WorkloadSpec onfail_ok = Workload("onfail-ok", {Exit(0)});
    onfail_ok.restart_policy = RestartPolicy::kOnFailure;
    WorkloadSpec always = Workload("always", {Exit(0)});
    REQUIRE(p.orch->Apply({never, onfail, onfail_ok, always}).ok());
    // What each replica is at, for a failure to say.
    auto states = [&] {
      std::string all;
      for (const char* name : {"never", "onfail", "onfail-ok", "always"}) {
        const WorkloadState w = p.Get(name);
        const ReplicaStatus& r = w.replicas[0];
        all += std::string(name) + ": " + PhaseName(r.phase) + " restarts " +
               std::to_string(r.restarts) + " exit " + std::to_string(r.last_exit_code) + " " +
               r.message + "; ";
      }
      return all;
    };
    // Made into strings here: doctest evaluates a message while it holds its reporter's
    // lock, and the REQUIRE inside Get would then wait for that lock for ever.
    const bool settled = WaitFor(
        [&] {
          return p.Get("never").replicas[0].phase == Phase::kExited &&
                 p.Get("onfail-ok").replicas[0].phase == Phase::kExited &&
                 p.Get("onfail").replicas[0].restarts >= 2 &&
                 p.Get("always").replicas[0].restarts >= 2;
        },
        30);
    const std::string settled_states = states();
    CHECK_MESSAGE(settled, settled_states);
    INFO(settled_states);
    CHECK(p.Get("never").replicas[0].last_exit_code == 3);
    CHECK(p.Get("never").replicas[0].restarts == 0);
    CHECK(p.Get("onfail-ok").replicas[0].restarts == 0);
    CHECK(p.Get("onfail-ok").replicas[0].last_exit_code == 0);
    CHECK(p.Get("onfail").replicas[0].last_exit_code == 1);
    // Back-off shows in the events.
    auto events = p.orch->Events(0, 10000);
    REQUIRE(events.ok());
    int backoffs = 0;
    for (const Event& e : *events) backoffs += e.workload == "onfail" && e.type == "BackOff";
    CHECK(backoffs >= 2);
    p.DeleteAllAndCheck();
  }

  TEST_CASE("scale 1 to 3 to 0, then a spec change replaces, then delete removes everything") {
    Petrel p;
    WorkloadSpec w = Workload("web", {TrapTerm(0), Run()});
    REQUIRE(p.orch->Apply(w).ok());
    CHECK(WaitFor([&] { return p.Get("web").ready_replicas == 1; }));
    w.replicas = 3;
    REQUIRE(p.orch->Apply(w).ok());
    CHECK(WaitFor(
        [&] { return p.Get("web").ready_replicas == 3 && p.Containers("web").size() == 3; }));
    w.replicas = 0;
    REQUIRE(p.orch->Apply(w).ok());
    CHECK(WaitFor([&] { return p.Containers("web").empty(); }));
    w.replicas = 2;
    REQUIRE(p.orch->Apply(w).ok());
    CHECK(WaitFor([&] { return p.Get("web").ready_replicas == 2; }));
    const std::string old_hash = p.Get("web").spec_hash;
    w.env["VERSION"] = "2";
    REQUIRE(p.orch->Apply(w).ok());
    CHECK(WaitFor(
        [&] {
          std::vector<ContainerInfo> l = p.Containers("web");
          return l.size() == 2 && std::all_of(l.begin(), l.end(), [&](ContainerInfo& c) {
                   return c.labels[kLabelSpecHash] != old_hash &&
                          c.state == ContainerState::kRunning;
                 });
        },
        30));
    p.DeleteAllAndCheck();
  }
}

}  // namespace
}  // namespace petrel::testing
