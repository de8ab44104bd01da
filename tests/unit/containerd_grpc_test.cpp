// Tests of the containerd adapter's gRPC framing and status mapping
// (runtime-adapters/containerd/grpc.h) and of its event decoding (services.h); the calls
// themselves are tested against a real containerd by
// tests/integration/containerd_grpc_test.sh.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "petrel/containerd.h"
#include "petrel/status.h"
#include "runtime-adapters/containerd/grpc.h"
#include "runtime-adapters/containerd/services.h"

namespace petrel::internal {
namespace {

using namespace std::string_literals;

TEST_SUITE("containerd") {
  TEST_CASE("containerd GrpcFrame: a zero flag, the length big-endian, then the message") {
    CHECK(GrpcFrame("") == "\0\0\0\0\0"s);
    CHECK(GrpcFrame("abc") == "\0\0\0\0\3abc"s);
    const std::string big(0x010203, 'x');
    const std::string framed = GrpcFrame(big);
    CHECK(framed.substr(0, 5) == "\0\0\x01\x02\x03"s);
    CHECK(framed.size() == 5 + big.size());
  }

  TEST_CASE("containerd GrpcUnframe: one frame, several frames, an empty message, no frames") {
    std::vector<std::string> messages;
    REQUIRE(GrpcUnframe(GrpcFrame("hello"), 100, &messages).ok());
    CHECK(messages == std::vector<std::string>{"hello"});

    messages.clear();
    const std::string body = GrpcFrame("a") + GrpcFrame("") + GrpcFrame("\0\xff"s);
    REQUIRE(GrpcUnframe(body, 100, &messages).ok());
    CHECK(messages == std::vector<std::string>{"a", "", "\0\xff"s});

    messages.clear();
    REQUIRE(GrpcUnframe("", 100, &messages).ok());
    CHECK(messages.empty());
  }

  TEST_CASE(
      "containerd GrpcUnframe: a frame cut short, in its head or its message, is Corruption") {
    std::vector<std::string> messages;
    const std::string two = GrpcFrame("first") + GrpcFrame("0123456789");
    Status s = GrpcUnframe(two.substr(0, two.size() - 7), 100, &messages);
    CHECK(s.code() == Status::Code::kCorruption);
    CHECK(s.message() == "frame 2 ends after 3 of 10 bytes");

    s = GrpcUnframe(GrpcFrame("x").substr(0, 3), 100, &messages);
    CHECK(s.code() == Status::Code::kCorruption);
    CHECK(s.message() == "frame 1 ends in its 5-byte head, after 3 bytes");
  }

  TEST_CASE("containerd GrpcUnframe: a length at or over the limit is refused before it is read") {
    std::vector<std::string> messages;
    // 4 GiB - 1 announced, 3 bytes there: the limit speaks first.
    Status s = GrpcUnframe(
        "\0\xff\xff\xff\xff"
        "abc"s,
        kGrpcMaxResponseBytes, &messages);
    CHECK(s.code() == Status::Code::kCorruption);
    CHECK(s.message() == "frame 1 holds 4294967295 bytes, over the limit of 16777216");
    s = GrpcUnframe(GrpcFrame("0123456789"), 10, &messages);
    CHECK(s.code() == Status::Code::kCorruption);
    CHECK(GrpcUnframe(GrpcFrame("012345678"), 10, &messages).ok());
  }

  TEST_CASE("containerd GrpcUnframe: a compressed frame is NotSupported") {
    std::vector<std::string> messages;
    Status s = GrpcUnframe("\1\0\0\0\1x"s, 100, &messages);
    CHECK(s.code() == Status::Code::kNotSupported);
    CHECK(s.message() == "frame 1 is compressed");
  }

  TEST_CASE("containerd GrpcFrameReader: a frame split over many pieces comes out once whole") {
    const std::string message = "an envelope of 23 bytes";
    const std::string framed = GrpcFrame(message);
    GrpcFrameReader reader(100);
    std::vector<std::string> messages;
    for (size_t i = 0; i + 1 < framed.size(); i++) {
      REQUIRE(reader.Feed(framed.substr(i, 1), &messages).ok());
      CHECK(messages.empty());
      CHECK(reader.Finish().code() == Status::Code::kCorruption);
    }
    REQUIRE(reader.Feed(framed.substr(framed.size() - 1), &messages).ok());
    CHECK(messages == std::vector<std::string>{message});
    CHECK(reader.Finish().ok());
    // An empty piece changes nothing.
    REQUIRE(reader.Feed("", &messages).ok());
    CHECK(messages.size() == 1);
  }

  TEST_CASE("containerd GrpcFrameReader: many frames in one piece, and one cut across pieces") {
    const std::string body =
        GrpcFrame("one") + GrpcFrame("") + GrpcFrame("three") + GrpcFrame("fourth, cut");
    GrpcFrameReader reader(100);
    std::vector<std::string> messages;
    REQUIRE(reader.Feed(body.substr(0, body.size() - 4), &messages).ok());
    CHECK(messages == std::vector<std::string>{"one", "", "three"});
    Status s = reader.Finish();
    CHECK(s.message() == "frame 4 ends after 7 of 11 bytes");
    REQUIRE(
        reader.Feed(body.substr(body.size() - 4) + GrpcFrame("5").substr(0, 2), &messages).ok());
    CHECK(messages == std::vector<std::string>{"one", "", "three", "fourth, cut"});
    CHECK(reader.Finish().message() == "frame 5 ends in its 5-byte head, after 2 bytes");
    REQUIRE(reader.Feed(GrpcFrame("5").substr(2), &messages).ok());
    CHECK(messages.back() == "5");
    CHECK(reader.Finish().ok());
  }

  TEST_CASE("containerd GrpcFrameReader: a frame over the bound fails at its head, unbuffered") {
    GrpcFrameReader reader(10);
    std::vector<std::string> messages;
    // The frame before it is still handed out; the long one fails once its head is whole.
    REQUIRE(reader.Feed(GrpcFrame("ok") + GrpcFrame("0123456789").substr(0, 3), &messages).ok());
    CHECK(messages == std::vector<std::string>{"ok"});
    Status s = reader.Feed(GrpcFrame("0123456789").substr(3, 2), &messages);
    CHECK(s.code() == Status::Code::kCorruption);
    CHECK(s.message() == "frame 2 holds 10 bytes, over the limit of 10");
    CHECK(messages.size() == 1);

    GrpcFrameReader compressed(10);
    s = compressed.Feed("\1\0\0\0\1x"s, &messages);
    CHECK(s.code() == Status::Code::kNotSupported);
    CHECK(s.message() == "frame 1 is compressed");
  }

  TEST_CASE("containerd GrpcMessageDecode: percent-decoding, malformed escapes kept as they came") {
    CHECK(GrpcMessageDecode("unknown service foo") == "unknown service foo");
    CHECK(GrpcMessageDecode("a%20b%25c%0A") == "a b%c\n");
    CHECK(GrpcMessageDecode("caf%C3%A9") == "caf\xc3\xa9");
    CHECK(GrpcMessageDecode("a+b") == "a+b");  // not a form: '+' stays
    CHECK(GrpcMessageDecode("100%") == "100%");
    CHECK(GrpcMessageDecode("%zz") == "%zz");
  }

  TEST_CASE("containerd GrpcCodeName: gRPC's names, CODE_n past them") {
    const std::pair<int, const char*> names[] = {
        {0, "OK"},           {5, "NOT_FOUND"},        {12, "UNIMPLEMENTED"},
        {14, "UNAVAILABLE"}, {16, "UNAUTHENTICATED"}, {17, "CODE_17"},
        {-1, "CODE_-1"}};
    for (const auto& [code, name] : names) CHECK(GrpcCodeName(code) == name);
  }

  TEST_CASE("containerd GrpcStatus: one line naming the method, the code's name and the message") {
    CHECK(GrpcStatus("v.Version/Version", 0, "ignored").ok());
    Status s = GrpcStatus("v.Version/Nope", 12, "unknown method Nope");
    CHECK(s.code() == Status::Code::kNotSupported);
    CHECK(s.message() == "v.Version/Nope: UNIMPLEMENTED: unknown method Nope");
    s = GrpcStatus("n.Namespaces/Get", 5, "namespace x: not found\nsecond line");
    CHECK(s.code() == Status::Code::kNotFound);
    CHECK(s.message() == "n.Namespaces/Get: NOT_FOUND: namespace x: not found\\nsecond line");
    CHECK(GrpcStatus("m", 14, "").message() == "m: UNAVAILABLE");
    CHECK(GrpcStatus("m", 14, "").code() == Status::Code::kUnavailable);
    CHECK(GrpcStatus("m", 6, "x").code() == Status::Code::kAlreadyExists);
    CHECK(GrpcStatus("m", 9, "x").code() == Status::Code::kFailedPrecondition);
    CHECK(GrpcStatus("m", 4, "x").code() == Status::Code::kDeadlineExceeded);
    CHECK(GrpcStatus("m", 13, "x").code() == Status::Code::kInternal);
    CHECK(GrpcStatus("m", 99, "x").message() == "m: CODE_99: x");
  }

  // TaskExit's value as containerd 1.6 sends it: container_id, id, pid 42, exit_status
  // 137 and `exited_at`, a Timestamp's bytes.
  std::string TaskExitValue(const std::string& exited_at) {
    return "\x0a\x02"
           "c1"
           "\x12\x02"
           "c1"
           "\x18\x2a"
           "\x20\x89\x01"
           "\x2a"s +
           static_cast<char>(exited_at.size()) + exited_at;
  }

  TEST_CASE("containerd DecodeTaskExit: every field of a TaskExit event") {
    ContainerdEnvelope e;
    e.topic = "/tasks/exit";
    e.type_url = kContainerdTaskExitType;
    e.value = TaskExitValue("\x08\x80\xe2\xcf\xaa\x06\x10\x05"s);  // 1700000000 s, 5 ns
    Result<ContainerdExit> exit = ContainerdDecodeTaskExit(e);
    REQUIRE_MESSAGE(exit.ok(), exit.status().ToString());
    CHECK(exit->container_id == "c1");
    CHECK(exit->id == "c1");
    CHECK(exit->pid == 42);
    CHECK(exit->exit_status == 137);
    CHECK(exit->exited_at.time_since_epoch() ==
          std::chrono::seconds(1700000000) + std::chrono::nanoseconds(5));
  }

  TEST_CASE("containerd DecodeTaskExit: Go's zero time, containerd's none, is the epoch") {
    ContainerdEnvelope e;
    e.type_url = kContainerdTaskExitType;
    // seconds -62135596800: 0001-01-01, which nanoseconds since 1970 cannot hold.
    e.value = TaskExitValue("\x08\x80\x92\xb8\xc3\x98\xfe\xff\xff\xff\x01"s);
    Result<ContainerdExit> exit = ContainerdDecodeTaskExit(e);
    REQUIRE_MESSAGE(exit.ok(), exit.status().ToString());
    CHECK(exit->exited_at.time_since_epoch().count() == 0);
    e.value = "";  // every field absent: proto3's zero values
    exit = ContainerdDecodeTaskExit(e);
    REQUIRE_MESSAGE(exit.ok(), exit.status().ToString());
    CHECK(exit->container_id.empty());
    CHECK(exit->exit_status == 0);
  }

  TEST_CASE("containerd DecodeTaskExit: another event is InvalidArgument, garbage Corruption") {
    ContainerdEnvelope e;
    e.topic = "/tasks/start";
    e.type_url = "containerd.events.TaskStart";
    e.value =
        "\x0a\x02"
        "c1"s;
    Status s = ContainerdDecodeTaskExit(e).status();
    CHECK(s.code() == Status::Code::kInvalidArgument);
    CHECK(s.message() ==
          "containerd's event /tasks/start is a containerd.events.TaskStart, not a "
          "containerd.events.TaskExit");
    e.type_url = kContainerdTaskExitType;
    e.value =
        "\x0a\x09"
        "c1"s;  // a string cut short
    s = ContainerdDecodeTaskExit(e).status();
    CHECK(s.code() == Status::Code::kCorruption);
    CHECK(s.message() ==
          "containerd's event: its value is no containerd.events.TaskExit (4 bytes)");
  }

  TEST_CASE("containerd TaskStatusName: containerd's names") {
    CHECK(ContainerdTaskStatusName(ContainerdTaskStatus::kUnknown) == "UNKNOWN"s);
    CHECK(ContainerdTaskStatusName(ContainerdTaskStatus::kRunning) == "RUNNING"s);
    CHECK(ContainerdTaskStatusName(ContainerdTaskStatus::kPausing) == "PAUSING"s);
  }

  // The only test in this binary that asks IsContainerdLoggerCall: the question is
  // remembered for the process. log_max_bytes 0 fails the check after the logger's, so
  // that nothing is made and no containerd is needed.
  TEST_CASE("containerd NewContainerdRuntime takes its own binary as logger once main() asks") {
    ContainerdOptions o;
    o.state_dir = "/nonexistent/petrel";
    o.log_max_bytes = 0;
    Status s = NewContainerdRuntime(o).status();
    CHECK(s.code() == Status::Code::kFailedPrecondition);
    CHECK(s.message().find("never asks petrel::IsContainerdLoggerCall") != std::string::npos);
    o.logger = "/bin/true";  // a logger named: no hand-over needed
    s = NewContainerdRuntime(o).status();
    CHECK(s.message() == "runtime containerd: log_max_bytes must be above 0");
    std::string arg0 = "petreld", arg1 = "--state-dir";
    char* argv[] = {arg0.data(), arg1.data(), nullptr};
    CHECK_FALSE(IsContainerdLoggerCall(2, argv));
    o.logger.clear();  // main() asked: its own binary is the logger
    s = NewContainerdRuntime(o).status();
    CHECK(s.message() == "runtime containerd: log_max_bytes must be above 0");
  }
}

}  // namespace
}  // namespace petrel::internal
