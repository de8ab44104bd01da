// The gRPC transport, calls and streams, against a real containerd (issue 16), run by
// tests/integration/containerd_grpc_test.sh, which starts Debian's containerd with a
// root, state and socket of its own: $PETREL_TEST_CONTAINERD_SOCKET is that socket, and
// the script has created the namespace petrel-test (label petrel=test) with ctr. A
// missing variable is a failure, never a skip.
#include "runtime-adapters/containerd/grpc.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "petrel/status.h"
#include "runtime-adapters/containerd/services.h"
#include "tests/lib/doctest_main.h"

namespace petrel::internal {
namespace {

std::unique_ptr<GrpcChannel> Channel(GrpcChannel::Options o = {}) {
  const char* socket = std::getenv("PETREL_TEST_CONTAINERD_SOCKET");
  REQUIRE_MESSAGE((socket != nullptr && *socket != '\0'),
                  "PETREL_TEST_CONTAINERD_SOCKET is not set (run containerd_grpc_test.sh)");
  if (o.socket_path.empty()) o.socket_path = socket;
  Result<std::unique_ptr<GrpcChannel>> channel = GrpcChannel::Open(o);
  REQUIRE_MESSAGE(channel.ok(), channel.status().ToString());
  return std::move(*channel);
}

TEST_SUITE("containerd") {
  TEST_CASE("Version: containerd 1.x, twice on one channel") {
    std::unique_ptr<GrpcChannel> channel = Channel();
    for (int i = 0; i < 2; i++) {
      Result<ContainerdVersion> v = ContainerdGetVersion(channel.get());
      REQUIRE_MESSAGE(v.ok(), v.status().ToString());
      MESSAGE("containerd ", v->version, " revision ", v->revision);
      CHECK(v->version.rfind("1.", 0) == 0);
    }
  }

  TEST_CASE("Namespaces/List: the namespace the script made, in a namespaced call") {
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    Result<std::vector<std::string>> names = ContainerdListNamespaces(channel.get());
    REQUIRE_MESSAGE(names.ok(), names.status().ToString());
    CHECK(std::count(names->begin(), names->end(), "petrel-test") == 1);
  }

  TEST_CASE("a method or service containerd does not have: NotSupported, UNIMPLEMENTED") {
    std::unique_ptr<GrpcChannel> channel = Channel();
    std::string answer;
    Status s = channel->Call("/containerd.services.version.v1.Version/Nope", "", &answer);
    CHECK(s.code() == Status::Code::kNotSupported);
    CHECK(s.message() ==
          "containerd.services.version.v1.Version/Nope: UNIMPLEMENTED: unknown method Nope "
          "for service containerd.services.version.v1.Version");
    s = channel->Call("petrel.NoSuch/Thing", "", &answer);
    CHECK(s.code() == Status::Code::kNotSupported);
    CHECK(s.message().rfind("petrel.NoSuch/Thing: UNIMPLEMENTED: unknown service", 0) == 0);
    // The connection still serves after errors.
    CHECK(ContainerdGetVersion(channel.get()).ok());
  }

  TEST_CASE("an answer over the limit is an IOError, not a truncated message") {
    GrpcChannel::Options o;
    o.max_response = 8;  // Version's answer is about 40 bytes
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    Result<ContainerdVersion> v = ContainerdGetVersion(channel.get());
    CHECK(v.status().code() == Status::Code::kIOError);
    CHECK(v.status().message() ==
          "containerd.services.version.v1.Version/Version: answer over 8 bytes");
  }

  TEST_CASE("Events/Subscribe: a namespace's creation arrives, and stop ends the stream at once") {
    using Clock = std::chrono::steady_clock;
    std::unique_ptr<GrpcChannel> events = Channel();
    std::mutex mu;
    std::condition_variable changed;
    std::vector<ContainerdEnvelope> seen;
    std::atomic<bool> stop{false};
    Result<GrpcStreamEnd> end = Status::Internal("the stream has not ended");
    std::thread subscriber([&] {
      end = ContainerdSubscribe(
          events.get(), {R"(topic~="/namespaces/")"},
          [&](ContainerdEnvelope e) {
            std::lock_guard<std::mutex> lock(mu);
            seen.push_back(std::move(e));
            changed.notify_all();
            return Status::OK();
          },
          [&] { return stop.load(); });
    });
    // A failed REQUIRE leaves the test through here too.
    struct Join {
      std::atomic<bool>* stop;
      std::thread* thread;
      ~Join() {
        *stop = true;
        if (thread->joinable()) thread->join();
      }
    } join{&stop, &subscriber};

    // The subscription may not be in place when the first namespace is made: one more
    // a second until an event names one, for up to 10 s.
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    std::unique_ptr<GrpcChannel> calls = Channel(o);
    const auto give_up = Clock::now() + std::chrono::seconds(10);
    std::vector<std::string> made;
    bool arrived = false;
    while (!arrived && Clock::now() < give_up) {
      made.push_back("petrel-events-" + std::to_string(made.size()));
      Status s = ContainerdCreateNamespace(calls.get(), made.back());
      REQUIRE_MESSAGE(s.ok(), s.ToString());
      std::unique_lock<std::mutex> lock(mu);
      arrived = changed.wait_for(lock, std::chrono::seconds(1), [&] { return !seen.empty(); });
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      REQUIRE_MESSAGE(!seen.empty(), "no event within 10 s of ", made.size(), " namespaces");
      const ContainerdEnvelope& e = seen.front();
      MESSAGE("after ", made.size(), " namespace(s): ", e.topic, " in ", e.ns, ", ", e.type_url,
              ", ", e.value.size(), " bytes");
      CHECK(e.topic == "/namespaces/create");
      CHECK(e.ns == "petrel-test");
      CHECK(e.type_url == "containerd.events.NamespaceCreate");
      // NamespaceCreate's name: field 1, a string of fewer than 128 bytes.
      REQUIRE(e.value.size() > 2);
      CHECK(e.value[0] == '\x0a');
      CHECK(std::count(made.begin(), made.end(), e.value.substr(2)) == 1);
      const auto age = std::chrono::system_clock::now() - e.timestamp;
      CHECK(age < std::chrono::minutes(1));
      CHECK(age > -std::chrono::minutes(1));
    }
    // Idle now: stop is only seen by libcurl's progress callback.
    const auto asked = Clock::now();
    stop = true;
    subscriber.join();
    const auto took = Clock::now() - asked;
    MESSAGE("stopped after ", std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
            " ms");
    CHECK(took < std::chrono::seconds(3));
    REQUIRE_MESSAGE(end.ok(), end.status().ToString());
    CHECK(*end == GrpcStreamEnd::kStopped);
    // The channel serves calls after a stopped stream.
    CHECK(ContainerdGetVersion(events.get()).ok());
  }

  TEST_CASE("Containers: create two, list by label, get, delete, get again is NotFound") {
    GrpcChannel::Options o;
    o.ns = "petrel-test";
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    ContainerdContainer c;
    c.image = "docker.io/library/busybox:latest";
    c.runtime = "io.containerd.runc.v2";
    c.spec = R"({"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/"},)"
             R"("root":{"path":"rootfs"}})";
    c.id = "petrel-a";
    c.labels = {{"petrel.node", "a"}, {"petrel.workload", "web"}};
    Result<ContainerdContainer> a = ContainerdCreateContainer(channel.get(), c);
    REQUIRE_MESSAGE(a.ok(), a.status().ToString());
    CHECK(a->id == "petrel-a");
    CHECK(a->labels == c.labels);
    c.id = "petrel-b";
    c.labels = {{"petrel.node", "b"}};
    REQUIRE(ContainerdCreateContainer(channel.get(), c).ok());
    Result<ContainerdContainer> again = ContainerdCreateContainer(channel.get(), c);
    CHECK(again.status().code() == Status::Code::kAlreadyExists);

    Result<std::vector<ContainerdContainer>> listed =
        ContainerdListContainers(channel.get(), {R"(labels."petrel.node"==a)"});
    REQUIRE_MESSAGE(listed.ok(), listed.status().ToString());
    REQUIRE(listed->size() == 1);
    CHECK(listed->front().id == "petrel-a");
    listed = ContainerdListContainers(channel.get(), {});
    REQUIRE(listed.ok());
    CHECK(listed->size() == 2);

    Result<ContainerdContainer> b = ContainerdGetContainer(channel.get(), "petrel-b");
    REQUIRE_MESSAGE(b.ok(), b.status().ToString());
    CHECK(b->labels == c.labels);
    CHECK(b->image == c.image);
    CHECK(b->runtime == "io.containerd.runc.v2");
    CHECK(b->spec == c.spec);
    CHECK(b->spec_type == kContainerdSpecType);
    const auto age = std::chrono::system_clock::now() - b->created_at;
    CHECK(age < std::chrono::minutes(1));
    CHECK(age > -std::chrono::minutes(1));
    CHECK(b->updated_at >= b->created_at);

    for (const char* id : {"petrel-a", "petrel-b"}) {
      Status s = ContainerdDeleteContainer(channel.get(), id);
      CHECK_MESSAGE(s.ok(), s.ToString());
    }
    b = ContainerdGetContainer(channel.get(), "petrel-b");
    CHECK(b.status().code() == Status::Code::kNotFound);
    MESSAGE(b.status().ToString());
    CHECK(b.status().message().rfind(
              "containerd.services.containers.v1.Containers/Get: NOT_FOUND: ", 0) == 0);
    CHECK(ContainerdDeleteContainer(channel.get(), "petrel-b").code() == Status::Code::kNotFound);
    // No runtime: containerd's InvalidArgument, in its words.
    c.runtime = "";
    Status s = ContainerdCreateContainer(channel.get(), c).status();
    CHECK(s.code() == Status::Code::kInvalidArgument);
    MESSAGE(s.ToString());
  }

  TEST_CASE("a stream of a method containerd does not have: NotSupported, UNIMPLEMENTED") {
    std::unique_ptr<GrpcChannel> channel = Channel();
    Result<GrpcStreamEnd> end = channel->Stream(
        "containerd.services.events.v1.Events/Nope", "", [](std::string) { return Status::OK(); },
        [] { return false; });
    CHECK(end.status().code() == Status::Code::kNotSupported);
  }

  TEST_CASE("no containerd on the socket: Unavailable, naming method and socket") {
    GrpcChannel::Options o;
    o.socket_path = "/nonexistent/petrel-test/containerd.sock";
    std::unique_ptr<GrpcChannel> channel = Channel(o);
    Result<ContainerdVersion> v = ContainerdGetVersion(channel.get());
    CHECK(v.status().code() == Status::Code::kUnavailable);
    CHECK(v.status().message().rfind("containerd.services.version.v1.Version/Version: "
                                     "containerd at unix:/nonexistent/petrel-test/",
                                     0) == 0);
  }
}

}  // namespace
}  // namespace petrel::internal

int main(int argc, char** argv) { return petrel::testing::RunDoctest(argc, argv); }
