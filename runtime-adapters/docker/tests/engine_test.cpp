// The Engine API calls (runtime-adapters/docker/calls.h) against a real dockerd (issue
// 15): CTest's fixture docker_daemon starts Debian's dockerd on a socket of its own
// (tests/lib/dockerd.sh), given here as --docker-socket=PATH. A missing socket is a
// failure, never a skip. Each case loads the busybox image it runs, built by
// examples/images/make-busybox-image as a docker-archive.
#include "runtime-adapters/docker/engine.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/util/strings.h"
#include "petrel/status.h"
#include "runtime-adapters/docker/calls.h"
#include "tests/lib/doctest_main.h"
#include "tests/lib/files.h"

namespace petrel::internal {
namespace {

std::string g_socket;  // --docker-socket

using Clock = std::chrono::steady_clock;

std::unique_ptr<DockerEngine> Engine(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  REQUIRE_MESSAGE(!g_socket.empty(), "no --docker-socket=PATH: the fixture docker_daemon gives it");
  DockerEngine::Options o;
  o.socket_path = g_socket;
  o.timeout = timeout;
  Result<std::unique_ptr<DockerEngine>> engine = DockerEngine::Open(o);
  REQUIRE_MESSAGE(engine.ok(), engine.status().ToString());
  return std::move(*engine);
}

// An Upload of the file at `path`.
DockerEngine::Upload FileUpload(int fd) {
  DockerEngine::Upload u;
  u.read = [fd](char* buf, size_t size) -> Result<size_t> {
    const ssize_t n = ::read(fd, buf, size);
    if (n < 0) return Status::IOError(std::string("read: ") + std::strerror(errno));
    return static_cast<size_t>(n);
  };
  return u;
}

// Loads busybox as a docker-archive named `name` (built once per run): its id.
std::string LoadBusybox(DockerEngine* engine, const std::string& name) {
  static testing::TempDir dir;
  const std::string archive = dir.path() + "/" + UrlEscape(name) + ".tar";
  if (!std::filesystem::exists(archive)) {
    const std::string cmd = std::string(PETREL_SOURCE_DIR) +
                            "/examples/images/make-busybox-image --format docker-archive --name " +
                            name + " " + archive + " >/dev/null";
    REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
  }
  const int fd = ::open(archive.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  Result<std::vector<std::string>> names = DockerLoadImage(engine, FileUpload(fd));
  ::close(fd);
  REQUIRE_MESSAGE(names.ok(), names.status().ToString());
  CHECK(*names == std::vector<std::string>{name});
  Result<DockerImage> image = DockerInspectImage(engine, name);
  REQUIRE_MESSAGE(image.ok(), image.status().ToString());
  CHECK(image->id.rfind("sha256:", 0) == 0);
  CHECK(image->size > 0);
  // Among others: the same image may have other names (other cases, other runtimes).
  CHECK(std::find(image->repo_tags.begin(), image->repo_tags.end(), name) !=
        image->repo_tags.end());
  return image->id;
}

// The create body of a container of `image` running `cmd` with petrel's test label,
// no network and Docker's restarts off.
std::string Config(const std::string& image, const std::string& cmd, const std::string& label) {
  return R"({"Image":")" + image + R"(","Cmd":["sh","-c",")" + cmd +
         R"("],"Labels":{"petrel.test":")" + label +
         R"("},"HostConfig":{"NetworkMode":"none","RestartPolicy":{"Name":"no"}}})";
}

// Removes container `name` at the end of a case, whatever became of it.
struct Removed {
  DockerEngine* engine;
  std::string name;
  ~Removed() { (void)DockerRemoveContainer(engine, name, true); }
};

TEST_CASE("engine: Open negotiates API 1.41 with Debian's dockerd") {
  std::unique_ptr<DockerEngine> engine = Engine();
  CHECK(engine->api_version() == "1.41");
  CHECK(engine->server().api_version == "1.41");
  CHECK(engine->server().version.rfind("20.10.", 0) == 0);
  CHECK(engine->server().os == "linux");
}

TEST_CASE("engine: no dockerd on the socket is Unavailable, naming it") {
  testing::TempDir dir;
  DockerEngine::Options o;
  o.socket_path = dir.path() + "/none.sock";
  Result<std::unique_ptr<DockerEngine>> engine = DockerEngine::Open(o);
  CHECK(engine.status().code() == Status::Code::kUnavailable);
  CHECK(engine.status().message().find("dockerd at unix:" + o.socket_path) != std::string::npos);
}

TEST_CASE("engine: load, create, start, inspect, kill, wait, list and remove a container") {
  std::unique_ptr<DockerEngine> engine = Engine();
  const std::string image = "petrel-test/busybox:engine";
  const std::string image_id = LoadBusybox(engine.get(), image);
  const std::string name = "petrel-engine-test";
  Removed removed{engine.get(), name};
  (void)DockerRemoveContainer(engine.get(), name, true);  // left by an earlier run

  Result<std::string> id =
      DockerCreateContainer(engine.get(), name, Config(image, "sleep 100", "a"));
  REQUIRE_MESSAGE(id.ok(), id.status().ToString());
  CHECK(id->size() == 64);
  Result<std::string> again = DockerCreateContainer(engine.get(), name, Config(image, "true", "a"));
  CHECK(again.status().code() == Status::Code::kFailedPrecondition);
  CHECK(again.status().message().find("is already in use") != std::string::npos);

  Result<DockerContainer> created = DockerInspectContainer(engine.get(), name);
  REQUIRE(created.ok());
  CHECK(created->status == "created");
  CHECK(created->started_at.time_since_epoch().count() == 0);

  const auto before = std::chrono::system_clock::now();
  REQUIRE(DockerStartContainer(engine.get(), *id).ok());
  CHECK(DockerStartContainer(engine.get(), *id).ok());  // 304: already running
  Result<DockerContainer> running = DockerInspectContainer(engine.get(), *id);
  REQUIRE_MESSAGE(running.ok(), running.status().ToString());
  CHECK(running->id == *id);
  CHECK(running->name == name);
  CHECK(running->status == "running");
  CHECK(running->running);
  CHECK(running->pid > 0);
  CHECK(running->labels.at("petrel.test") == "a");
  CHECK(running->image == image);
  CHECK(running->started_at >= before - std::chrono::seconds(5));
  CHECK(running->finished_at.time_since_epoch().count() == 0);

  Result<std::vector<DockerContainer>> listed =
      DockerListContainers(engine.get(), {"petrel.test=a"});
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  CHECK((*listed)[0].id == *id);
  CHECK((*listed)[0].name == name);
  CHECK((*listed)[0].running);
  CHECK(DockerListContainers(engine.get(), {"petrel.test=b"})->empty());
  CHECK(DockerListContainers(engine.get(), {"petrel.test"})->size() >= 1);

  CHECK(DockerRemoveContainer(engine.get(), *id, false).code() ==
        Status::Code::kFailedPrecondition);
  REQUIRE(DockerKillContainer(engine.get(), *id, SIGKILL).ok());
  Result<int> code = DockerWaitContainer(engine.get(), *id);
  REQUIRE_MESSAGE(code.ok(), code.status().ToString());
  CHECK(*code == 137);
  Result<DockerContainer> exited = DockerInspectContainer(engine.get(), *id);
  REQUIRE(exited.ok());
  CHECK(exited->status == "exited");
  CHECK_FALSE(exited->running);
  CHECK(exited->exit_code == 137);
  CHECK_FALSE(exited->oom_killed);
  CHECK(exited->finished_at >= exited->started_at);
  Status dead = DockerKillContainer(engine.get(), *id, SIGKILL);
  CHECK(dead.code() == Status::Code::kFailedPrecondition);
  CHECK(dead.message().find("is not running") != std::string::npos);

  REQUIRE(DockerRemoveContainer(engine.get(), *id, false).ok());
  Result<DockerContainer> gone = DockerInspectContainer(engine.get(), *id);
  CHECK(gone.status().code() == Status::Code::kNotFound);
  CHECK(gone.status().message().find("No such container") != std::string::npos);
  CHECK(DockerRemoveContainer(engine.get(), *id, true).code() == Status::Code::kNotFound);
  CHECK(DockerInspectImage(engine.get(), "petrel-test/none:x").status().code() ==
        Status::Code::kNotFound);
  CHECK(DockerCreateContainer(engine.get(), name, Config("petrel-test/none:x", "true", "a"))
            .status()
            .code() == Status::Code::kNotFound);
}

TEST_CASE("engine: an archive dockerd refuses is InvalidArgument with its words") {
  std::unique_ptr<DockerEngine> engine = Engine();
  const std::string junk(10000, 'x');
  size_t at = 0;
  DockerEngine::Upload u;
  u.read = [&](char* buf, size_t size) -> Result<size_t> {
    const size_t n = std::min(size, junk.size() - at);
    std::memcpy(buf, junk.data() + at, n);
    at += n;
    return n;
  };
  Result<std::vector<std::string>> names = DockerLoadImage(engine.get(), u);
  CHECK(names.status().code() == Status::Code::kInvalidArgument);
  CHECK(names.status().message().rfind("POST /images/load: ", 0) == 0);
  CHECK(names.status().message().find("tar") != std::string::npos);
  // An upload that fails ends the call with its error.
  DockerEngine::Upload failing;
  failing.read = [](char*, size_t) -> Result<size_t> { return Status::IOError("disk gone"); };
  CHECK(DockerLoadImage(engine.get(), failing).status().message().find("disk gone") !=
        std::string::npos);
  // The engine is fine after both.
  CHECK(DockerListContainers(engine.get(), {"petrel.test=none"}).ok());
}

TEST_CASE("engine: a command that cannot start is InvalidArgument with runc's words") {
  std::unique_ptr<DockerEngine> engine = Engine();
  const std::string image = "petrel-test/busybox:engine";
  LoadBusybox(engine.get(), image);
  const std::string name = "petrel-engine-nocmd";
  Removed removed{engine.get(), name};
  (void)DockerRemoveContainer(engine.get(), name, true);
  const std::string config =
      R"({"Image":")" + image + R"(","Cmd":["/no/such/cmd"],"HostConfig":{"NetworkMode":"none"}})";
  Result<std::string> id = DockerCreateContainer(engine.get(), name, config);
  REQUIRE(id.ok());
  Status started = DockerStartContainer(engine.get(), *id);
  CHECK(started.code() == Status::Code::kInvalidArgument);
  CHECK(started.message().find("/no/such/cmd") != std::string::npos);
  CHECK(started.message().find('\n') == std::string::npos);
  Result<DockerContainer> c = DockerInspectContainer(engine.get(), *id);
  REQUIRE(c.ok());
  CHECK_FALSE(c->running);
  CHECK(c->exit_code == 127);
  CHECK(c->error.find("/no/such/cmd") != std::string::npos);
}

TEST_CASE("engine: events of petrel's containers, their exits, and a stop on request") {
  std::unique_ptr<DockerEngine> engine = Engine();
  const std::string image = "petrel-test/busybox:engine";
  LoadBusybox(engine.get(), image);
  const std::string name = "petrel-engine-events";
  Removed removed{engine.get(), name};
  (void)DockerRemoveContainer(engine.get(), name, true);

  std::mutex mu;
  std::vector<DockerEvent> events;
  std::atomic<bool> stop{false};
  Status ended;
  const auto since = std::chrono::system_clock::now() - std::chrono::seconds(1);
  std::thread watcher([&] {
    std::unique_ptr<DockerEngine> stream = Engine();
    ended = DockerEvents(
        stream.get(), {"petrel.test=events"}, since,
        [&](DockerEvent e) {
          std::lock_guard<std::mutex> lock(mu);
          events.push_back(std::move(e));
          return Status::OK();
        },
        [&] { return stop.load(); });
  });
  auto seen = [&](const std::string& action) {
    std::lock_guard<std::mutex> lock(mu);
    for (const DockerEvent& e : events) {
      if (e.action == action) return true;
    }
    return false;
  };
  // Another container's (no label) are not heard.
  Result<std::string> other = DockerCreateContainer(
      engine.get(), name + "-other", R"({"Image":")" + image + R"(","Cmd":["true"]})");
  REQUIRE(other.ok());
  REQUIRE(DockerRemoveContainer(engine.get(), *other, true).ok());
  Result<std::string> id =
      DockerCreateContainer(engine.get(), name, Config(image, "exit 3", "events"));
  REQUIRE(id.ok());
  REQUIRE(DockerStartContainer(engine.get(), *id).ok());
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!seen("die") && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto asked = Clock::now();
  stop = true;
  watcher.join();
  const auto took = Clock::now() - asked;
  CHECK_MESSAGE(ended.ok(), ended.ToString());
  CHECK(took < std::chrono::seconds(5));
  std::lock_guard<std::mutex> lock(mu);
  bool died = false;
  for (const DockerEvent& e : events) {
    CAPTURE(e.action);
    CHECK(e.type == "container");
    CHECK(e.id == *id);
    CHECK(e.attributes.at("petrel.test") == "events");
    CHECK(e.time >= since);
    if (e.action == "die") {
      died = true;
      CHECK(e.attributes.at("exitCode") == "3");
    }
  }
  CHECK(died);
}

TEST_CASE("engine: Cut ends an idle stream at once, and every later one, and the engine says so") {
  std::unique_ptr<DockerEngine> stream = Engine();
  CHECK_FALSE(stream->was_cut());
  Status ended = Status::Internal("not ended");
  std::atomic<int> asked{0};  // how often the stream asked its `stop`
  std::thread watcher([&] {
    ended = DockerEvents(
        stream.get(), {"petrel.test=nothing-ever"}, {}, [&](DockerEvent) { return Status::OK(); },
        [&] {
          asked++;  // at the start, then about once a second while idle
          return false;
        });
  });
  // Cut just after an idle stream asked: its `stop` alone would end it a second later.
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  const int before = 2;
  while (asked < before && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const auto cut_at = Clock::now();
  stream->Cut();
  watcher.join();
  const auto took = Clock::now() - cut_at;
  MESSAGE("ended " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                   << " ms after the cut");
  CHECK_MESSAGE(ended.ok(), ended.ToString());
  CHECK(stream->stopped());
  CHECK(stream->was_cut());
  CHECK(took < std::chrono::milliseconds(500));  // at once, with room for a busy machine
  // A later stream ends as soon as it starts.
  Status again = DockerEvents(
      stream.get(), {"petrel.test=nothing-ever"}, {}, [](DockerEvent) { return Status::OK(); },
      [] { return false; });
  CHECK(again.ok());
  CHECK(stream->stopped());
}

TEST_CASE("engine: logs tell stdout from stderr, and follow ends when the container does") {
  std::unique_ptr<DockerEngine> engine = Engine();
  const std::string image = "petrel-test/busybox:engine";
  LoadBusybox(engine.get(), image);
  const std::string name = "petrel-engine-logs";
  Removed removed{engine.get(), name};
  (void)DockerRemoveContainer(engine.get(), name, true);
  Result<std::string> id = DockerCreateContainer(
      engine.get(), name, Config(image, "echo out1; echo err1 >&2; sleep 1; echo out2", "logs"));
  REQUIRE(id.ok());
  REQUIRE(DockerStartContainer(engine.get(), *id).ok());
  std::string out, err;
  Status s = DockerLogs(
      engine.get(), *id, true, false, {},
      [&](DockerLogChunk c) {
        (c.stream == 2 ? err : out) += c.data;
        return Status::OK();
      },
      nullptr);
  CHECK_MESSAGE(s.ok(), s.ToString());
  CHECK(out == "out1\nout2\n");
  CHECK(err == "err1\n");
  // With timestamps, each line starts with dockerd's time.
  std::string stamped;
  REQUIRE(DockerLogs(
              engine.get(), *id, false, true, {},
              [&](DockerLogChunk c) {
                if (c.stream == 1) stamped += c.data;
                return Status::OK();
              },
              nullptr)
              .ok());
  const size_t space = stamped.find(' ');
  REQUIRE(space != std::string::npos);
  CHECK(DockerParseTime(stamped.substr(0, space)).ok());
  CHECK(stamped.substr(space + 1, 5) == "out1\n");
  CHECK(DockerLogs(
            engine.get(), "petrel-none", false, false, {},
            [](DockerLogChunk) { return Status::OK(); }, nullptr)
            .code() == Status::Code::kNotFound);
}

}  // namespace
}  // namespace petrel::internal

int main(int argc, char** argv) {
  const std::string flag = "--docker-socket=";
  for (int i = 1; i < argc; i++) {
    if (std::strncmp(argv[i], flag.c_str(), flag.size()) == 0) {
      petrel::internal::g_socket = argv[i] + flag.size();
    }
  }
  return petrel::testing::RunDoctest(argc, argv);
}
