// The gRPC transport against a real containerd (issue 16), run by
// tests/integration/containerd_grpc_test.sh, which starts Debian's containerd with a
// root, state and socket of its own: $PETREL_TEST_CONTAINERD_SOCKET is that socket, and
// the script has created the namespace petrel-test (label petrel=test) with ctr. A
// missing variable is a failure, never a skip.
#include "runtime-adapters/containerd/grpc.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
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
