// The fake runtime's own cases, in the binary of its conformance run: its language's
// errors, its images, hosts shared by runtime objects, the log cap, and the controls
// petrel's other tests play containers with. A fake clock; nothing waits.
#include "petrel/testing/fake_runtime.h"

#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <future>

#include "lib/util/lease.h"
#include "petrel/testing/fake_clock.h"
#include "petrel/testing/fake_program.h"
#include "tests/lib/files.h"

namespace petrel::testing {
namespace {

struct Fake {
  std::shared_ptr<FakeClock> clock = std::make_shared<FakeClock>();
  std::shared_ptr<FakeHost> host = std::make_shared<FakeHost>();
  FakeRuntime rt{clock, host};

  std::string Start(const std::string& name, std::vector<std::string> args,
                    const std::string& image = "fake:test") {
    ContainerSpec s;
    s.name = name;
    s.image = image;
    s.command = {"petrel-fake"};
    s.args = std::move(args);
    Result<std::string> id = rt.Create(s);
    REQUIRE(id.ok());
    REQUIRE(rt.Start(*id).ok());
    return *id;
  }
  std::string Log(const std::string& id) { return rt.Logs(id, {})->data; }
};

TEST_SUITE("fake-runtime") {
  TEST_CASE("a step the language does not have fails Start, naming it, and ends the container") {
    for (const std::string bad : {"frobnicate", "exit", "exit 256", "exit -1", "count x", "run now",
                                  "cat", "env A B", "trap-term", "write", "alloc 1.5"}) {
      CAPTURE(bad);
      Fake f;
      ContainerSpec s;
      s.name = "c";
      s.image = "fake:test";
      s.command = {"petrel-fake", "print before"};
      s.args = {bad};
      Result<std::string> id = f.rt.Create(s);
      REQUIRE(id.ok());
      Status started = f.rt.Start(*id);
      CHECK(started.IsInvalidArgument());
      CHECK(started.message() == "start container " + *id + ": fake: step \"" + bad +
                                     "\": not a step of the fake's language");
      CHECK(f.rt.Inspect(*id)->exit_code == 127);
      CHECK(f.Log(*id).empty());  // nothing ran
    }
  }

  TEST_CASE("a fake: image holds the interpreter alone, other images any command") {
    Fake f;
    ContainerSpec s;
    s.name = "sh";
    s.image = "fake:test";
    s.command = {"/bin/sh", "-c", "sleep 1d"};
    const std::string refused = *f.rt.Create(s);
    CHECK(f.rt.Start(refused).message() ==
          "start container " + refused + ": fake: exec /bin/sh: No such file or directory");
    CHECK(f.rt.Inspect(refused)->state == ContainerState::kExited);
    s.name = "played";
    s.image = "oci-archive:/images/busybox.tar";
    const std::string played = *f.rt.Create(s);
    REQUIRE(f.rt.Start(played).ok());
    CHECK(f.rt.Inspect(played)->state == ContainerState::kRunning);  // until the test ends it
    REQUIRE(f.rt.Exit(played, 4).ok());
    CHECK(f.rt.Inspect(played)->exit_code == 4);
  }

  TEST_CASE("images: pull policies, progress, list, remove refused while in use, prune") {
    Fake f;
    PullOptions never;
    never.policy = PullPolicy::kNever;
    CHECK(f.rt.PullImage("fake:a", never).message() ==
          "fake:a: not present, and imagePullPolicy is Never");
    std::vector<PullProgress> heard;
    PullOptions options;
    options.progress = [&](const PullProgress& p) { heard.push_back(p); };
    REQUIRE(f.rt.PullImage("fake:a", options).ok());
    REQUIRE(heard.size() == 1);
    CHECK(heard[0].bytes_done == heard[0].bytes_total);
    CHECK(heard[0].layers_total == 1);
    heard.clear();
    REQUIRE(f.rt.PullImage("fake:a", options).ok());  // IfNotPresent: had already
    CHECK(heard.empty());
    REQUIRE(f.rt.PullImage("fake:a", never).ok());
    options.policy = PullPolicy::kAlways;
    REQUIRE(f.rt.PullImage("fake:a", options).ok());
    CHECK(heard.size() == 1);
    REQUIRE(f.rt.PullImage("fake:b", PullOptions()).ok());

    const std::string used = f.Start("user", {"run"}, "fake:a");
    Result<std::vector<ImageInfo>> images = f.rt.ListImages();
    REQUIRE(images.ok());
    REQUIRE(images->size() == 2);
    std::map<std::string, ImageInfo> by_ref;
    for (const ImageInfo& i : *images) by_ref[i.refs.at(0)] = i;
    CHECK(by_ref["fake:a"].in_use);
    CHECK(!by_ref["fake:b"].in_use);
    CHECK(by_ref["fake:a"].id.size() == 71);
    CHECK(f.rt.RemoveImage("fake:a").message() == "fake:a: in use by container user");
    CHECK(f.rt.RemoveImage("fake:nope").code() == Status::Code::kNotFound);

    Result<PruneResult> pruned = f.rt.PruneImages();
    REQUIRE(pruned.ok());
    CHECK(pruned->removed == std::vector<std::string>{by_ref["fake:b"].id});
    CHECK(pruned->bytes_freed > 0);
    REQUIRE(f.rt.Kill(used, SIGKILL).ok());
    REQUIRE(f.rt.Remove(used).ok());
    CHECK(f.rt.RemoveImage(by_ref["fake:a"].id).ok());  // by id
    CHECK(f.rt.ListImages()->empty());
  }

  TEST_CASE("programs: the status of the last step, relative paths, and SIGTERM as set") {
    Fake f;
    const std::string failed = f.Start("failed", {"cat /nope"});
    CHECK(f.rt.Inspect(failed)->exit_code == 1);
    CHECK(f.Log(failed) == "cat: can't open '/nope': No such file or directory\n");
    ContainerSpec s;
    s.name = "relative";
    s.image = "fake:test";
    s.working_dir = "/work";
    s.command = {"petrel-fake", "write file hi", "cat /work/file"};
    const std::string relative = *f.rt.Create(s);
    REQUIRE(f.rt.Start(relative).ok());
    CHECK(f.Log(relative) == "hi\n");

    f.rt.SetIgnoreSigterm(true);  // for containers that say nothing about SIGTERM
    const std::string trapped = f.Start("trapped", {"trap-term 5", "run"});
    const std::string plain = f.Start("plain", {"run"});
    REQUIRE(f.rt.Kill(trapped, SIGTERM).ok());
    REQUIRE(f.rt.Kill(plain, SIGTERM).ok());
    CHECK(f.rt.Inspect(trapped)->exit_code == 5);
    CHECK(f.rt.Inspect(plain)->state == ContainerState::kRunning);
    f.rt.SetIgnoreSigterm(false);
    REQUIRE(f.rt.Kill(plain, SIGTERM).ok());
    CHECK(f.rt.Inspect(plain)->exit_code == 143);
  }

  TEST_CASE("bind mounts are the host's files and a read-only one refuses writes") {
    Fake f;
    TempDir host;
    WriteFile(host.Sub("in"), "host\n");
    ContainerSpec s;
    s.name = "binds";
    s.image = "fake:test";
    s.command = {"petrel-fake", "cat /data/in", "write /data/deep/x no", "write /data/out yes",
                 "write /ro/out no"};
    MountSpec data{MountSpec::Type::kBind, host.path(), "/data", false, 0};
    MountSpec ro{MountSpec::Type::kBind, host.path(), "/ro", true, 0};
    s.mounts = {data, ro};
    const std::string id = *f.rt.Create(s);
    REQUIRE(f.rt.Start(id).ok());
    CHECK(f.Log(id) ==
          "host\n"
          "sh: can't create /data/deep/x: No such file or directory\n"
          "sh: can't create /ro/out: Read-only file system\n");
    CHECK(f.rt.Inspect(id)->exit_code == 1);
    CHECK(ReadFile(host.Sub("out")) == "yes\n");
  }

  TEST_CASE("paths are cleaned as in a container and never lead out of a bind's source") {
    Fake f;
    TempDir host;
    const std::string source = host.Sub("src");
    WriteFile(source + "/etc/in", "inside\n");
    std::filesystem::create_symlink(host.path(), source + "/out");
    ContainerSpec s;
    s.name = "escape";
    s.image = "fake:test";
    s.working_dir = "/data";
    s.command = {kFakeProgram};
    s.args = FakeProgramWords(
        {steps::Write("/data/../escaped", "a"), steps::Write("../../escaped2", "b"),
         steps::Cat("/data/./sub/../etc/in"), steps::Write("/data/out/linked", "c"),
         steps::Cat("/data/out/src/etc/in"), steps::Cat("/escaped")});
    s.mounts = {{MountSpec::Type::kBind, source, "/data", false, 0}};
    const std::string id = *f.rt.Create(s);
    REQUIRE(f.rt.Start(id).ok());
    // The first two are the container's own root filesystem ("/escaped"); the link is
    // refused, not followed to the host's directory it names.
    CHECK(f.Log(id) ==
          "inside\n"
          "sh: can't create /data/out/linked: Not a directory\n"
          "cat: can't open '/data/out/src/etc/in': Not a directory\n"
          "a\n");
    for (const char* name : {"escaped", "escaped2", "linked"}) {
      CHECK_FALSE(std::filesystem::exists(host.Sub(name)));
    }

    // A bind at "/": every path is below its source, "/.." included.
    const std::string root = host.Sub("root");
    std::filesystem::create_directories(root + "/etc");
    s.name = "root";
    s.working_dir = "";
    s.args = FakeProgramWords({steps::Write("/etc/x", "at etc"), steps::Write("/../../y", "at y"),
                               steps::Cat("/etc/../etc/x")});
    s.mounts = {{MountSpec::Type::kBind, root, "/", false, 0}};
    const std::string at_root = *f.rt.Create(s);
    REQUIRE(f.rt.Start(at_root).ok());
    CHECK(f.Log(at_root) == "at etc\n");
    CHECK(ReadFile(root + "/etc/x") == "at etc\n");
    CHECK(ReadFile(root + "/y") == "at y\n");
    CHECK_FALSE(std::filesystem::exists(host.Sub("y")));
  }

  TEST_CASE("logs: any limit_bytes, up to the largest, reads what there is") {
    Fake f;
    const std::string id = f.Start("big-limit", {"print 0123456789"});
    for (const int64_t since : {int64_t{-1}, int64_t{0}, int64_t{3}}) {
      CAPTURE(since);
      Result<LogChunk> all = f.rt.Logs(id, LogOptions{since, SIZE_MAX});
      REQUIRE(all.ok());
      CHECK(all->data ==
            std::string("0123456789\n").substr(since < 0 ? 0 : static_cast<size_t>(since)));
      CHECK(all->end_offset == 11);
    }
  }

  TEST_CASE("SIGTERM prints a trap's text only when it has one, and other signals do nothing") {
    Fake f;
    const std::string quiet = f.Start("quiet", {"trap-term 3", "run"});
    const std::string loud = f.Start("loud", {"trap-term 4 bye", "run"});
    REQUIRE(f.rt.Kill(quiet, SIGINT).ok());
    REQUIRE(f.rt.Kill(quiet, SIGHUP).ok());
    CHECK(f.rt.Inspect(quiet)->state == ContainerState::kRunning);
    REQUIRE(f.rt.Kill(quiet, SIGTERM).ok());
    REQUIRE(f.rt.Kill(loud, SIGTERM).ok());
    CHECK(f.rt.Inspect(quiet)->exit_code == 3);
    CHECK(f.Log(quiet).empty());
    CHECK(f.rt.Inspect(loud)->exit_code == 4);
    CHECK(f.Log(loud) == "bye\n");
  }

  TEST_CASE("exec: a program beside the container's own, binaries as the image has them") {
    Fake f;
    ContainerSpec s;
    s.name = "c";
    s.image = "fake:test";
    s.command = {"petrel-fake", "trap-term 3", "print up", "run"};
    s.resources.memory_bytes = 16 << 20;
    const std::string id = *f.rt.Create(s);
    REQUIRE(f.rt.Start(id).ok());
    ExecOptions o;
    o.command = {"petrel-fake", "write /f from exec", "ignore-term", "cat /f",
                 "sleep 999",   "alloc 64",           "print never"};
    o.timeout_ms = 1000;
    Result<ExecResult> r = f.rt.Exec(id, o);
    REQUIRE(r.ok());
    CHECK(r->exit_code == 137);  // the command is OOM-killed, not the container
    CHECK(r->output == "from exec\n");
    CHECK(f.Log(id) == "up\n");
    CHECK(f.rt.Inspect(id)->state == ContainerState::kRunning);
    o.command = {"petrel-fake", "sleep 999", "sleep 1", "print never"};
    CHECK(f.rt.Exec(id, o).status().message() == "exec in " + id + ": timed out after 1s");
    o.command = {"petrel-fake", "print x", "frobnicate"};
    r = f.rt.Exec(id, o);
    REQUIRE(r.ok());
    CHECK(r->exit_code == 127);
    CHECK(r->output == "step \"frobnicate\": not a step of the fake's language\n");
    o.command = {"/bin/true"};
    CHECK(f.rt.Exec(id, o)->exit_code == 127);
    CHECK(f.rt.Exec(id, o)->output == "exec /bin/true: No such file or directory\n");
    o.command = {};
    CHECK(f.rt.Exec(id, o).status().IsInvalidArgument());
    // The container's SIGTERM is as its own program set it, whatever exec'd ones did.
    REQUIRE(f.rt.Kill(id, SIGTERM).ok());
    CHECK(f.rt.Inspect(id)->exit_code == 3);

    s.name = "any";
    s.image = "oci-archive:/images/busybox.tar";
    s.command = {"/bin/sh"};
    const std::string any = *f.rt.Create(s);
    REQUIRE(f.rt.Start(any).ok());
    o.command = {"/bin/true"};
    r = f.rt.Exec(any, o);
    REQUIRE(r.ok());
    CHECK(r->exit_code == 0);
    CHECK(r->output.empty());
  }

  TEST_CASE("exec: injected failures, call counts and the door, as for other calls") {
    Fake f;
    const std::string id = f.Start("c", {"run"});
    ExecOptions o;
    o.command = {"petrel-fake", "print hi"};
    f.rt.FailNext(FakeRuntime::Op::kExec, Status::Unavailable("injected"));
    CHECK(f.rt.Exec(id, o).status().code() == Status::Code::kUnavailable);
    CHECK(f.rt.Exec(id, o)->output == "hi\n");
    CHECK(f.rt.Calls(FakeRuntime::Op::kExec) == 2);
    std::future<Result<ExecResult>> held;
    HeldCalls hold(&f.rt, FakeRuntime::Op::kExec);
    held = std::async(std::launch::async, [&] { return f.rt.Exec(id, o); });
    REQUIRE(f.rt.AwaitHeld(FakeRuntime::Op::kExec, 1));
    hold.Release();
    REQUIRE(held.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(held.get()->output == "hi\n");
  }

  TEST_CASE("a call held at the door goes through on Release, also when Hold follows at once") {
    Fake f;
    std::future<Status> pull;  // before the holds: they are released before it waits
    HeldCalls held(&f.rt, FakeRuntime::Op::kPull);
    pull = std::async(std::launch::async,
                      [&] { return f.rt.PullImage("fake:x", petrel::PullOptions()); });
    REQUIRE(f.rt.AwaitHeld(FakeRuntime::Op::kPull, 1));
    held.Release();
    HeldCalls again(&f.rt, FakeRuntime::Op::kPull);  // before the call woke, most likely
    REQUIRE(pull.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(pull.get().ok());
    // The next call waits for the next Release: here, the guard's, however the scope ends.
    std::future<Status> next;
    {
      HeldCalls scoped(&f.rt, FakeRuntime::Op::kInspect);
      next = std::async(std::launch::async, [&] { return f.rt.Inspect("none").status(); });
      REQUIRE(f.rt.AwaitHeld(FakeRuntime::Op::kInspect, 1));
    }
    REQUIRE(next.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(next.get().IsNotFound());
  }

  TEST_CASE("runtime objects over one host share its containers and each hears their exits") {
    Fake f;
    FakeRuntime second(f.clock, f.host);
    FakeRuntime elsewhere(f.clock);
    std::vector<std::string> heard;
    f.rt.SetExitHandler([&](const std::string& id, int code) {
      heard.push_back("first " + id + " " + std::to_string(code));
    });
    second.SetExitHandler([&](const std::string& id, int code) {
      heard.push_back("second " + id + " " + std::to_string(code));
    });
    const std::string id = f.Start("shared", {"run"});
    CHECK(second.Inspect(id)->state == ContainerState::kRunning);
    CHECK(elsewhere.Inspect(id).status().IsNotFound());
    second.FailNext(FakeRuntime::Op::kKill, Status::Unavailable("injected"));
    CHECK(f.rt.Kill(id, SIGKILL).ok());     // injected failures are per runtime object
    std::sort(heard.begin(), heard.end());  // in no particular order
    CHECK(heard == std::vector<std::string>{"first " + id + " 137", "second " + id + " 137"});
    CHECK(second.Calls(FakeRuntime::Op::kKill) == 0);
  }

  TEST_CASE("a log limit drops the oldest bytes and offsets go on counting") {
    Fake f;
    f.rt.SetLogLimit(10);
    const std::string id = f.Start("capped", {"print 0123456789", "print abc"});
    f.rt.AppendLog(id, "de");
    Result<LogChunk> all = f.rt.Logs(id, LogOptions{0, 100});
    CHECK(all->data == "789\nabc\nde");
    CHECK(all->start_offset == 7);
    CHECK(all->end_offset == 17);
  }

  TEST_CASE("a lease: kept while renewed, killed by CheckLeases once run out, never started") {
    Fake f;
    TempDir dir;
    const std::string lease = dir.Sub("node.lease");
    auto renew = [&] { WriteFile(lease, internal::LeaseText(f.clock->Monotonic())); };
    renew();
    ContainerSpec s;
    s.name = "leased";
    s.image = "busybox";
    s.lease = {lease, 1000};
    Result<std::string> id = f.rt.Create(s);
    REQUIRE(id.ok());
    REQUIRE(f.rt.Start(*id).ok());
    std::vector<std::string> heard;
    f.rt.SetExitHandler(
        [&](const std::string& c, int code) { heard.push_back(c + " " + std::to_string(code)); });
    f.clock->Advance(999);
    CHECK(f.rt.CheckLeases().empty());
    renew();
    f.clock->Advance(999);
    CHECK(f.rt.CheckLeases().empty());
    f.clock->Advance(1);
    CHECK(f.rt.CheckLeases() == std::vector<std::string>{*id});
    CHECK(heard == std::vector<std::string>{*id + " 137"});
    CHECK(f.rt.Inspect(*id)->exit_code == 137);
    CHECK(f.rt.CheckLeases().empty());  // once

    // A container without a lease is never killed for one.
    const std::string free = f.Start("free", {"run"});
    f.clock->Advance(60000);
    CHECK(f.rt.CheckLeases().empty());
    CHECK(f.rt.Inspect(free)->state == ContainerState::kRunning);

    // Run out before Start: it does not run, and Start says why.
    s.name = "late";
    Result<std::string> late = f.rt.Create(s);
    REQUIRE(late.ok());
    Status started = f.rt.Start(*late);
    CHECK(started.message() == "start container " + *late + ": fake: lease " + lease +
                                   " has run out: not starting the container");
    CHECK(f.rt.Inspect(*late)->state == ContainerState::kExited);
  }

  TEST_CASE("a runtime that cannot enforce leases refuses a container with one") {
    Fake f;
    f.rt.SetLeaseSupport(false);
    ContainerSpec s;
    s.name = "leased";
    s.image = "busybox";
    s.lease = {"/run/petrel/n1.lease", 1000};
    Result<std::string> id = f.rt.Create(s);
    CHECK(id.status().code() == Status::Code::kNotSupported);
    CHECK(id.status().message() ==
          "create container leased: runtime fake cannot enforce a container lease");
    s.lease = {};
    CHECK(f.rt.Create(s).ok());
  }
}

}  // namespace
}  // namespace petrel::testing
