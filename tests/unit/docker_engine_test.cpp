// Tests of the Docker adapter's plain functions (runtime-adapters/docker/engine.h): the
// version negotiation, the error answers, dockerd's times and the framing of the answers
// that stream, the credential a pull hands dockerd. The calls themselves are tested against a real
// dockerd by runtime-adapters/docker/tests/engine_test.cpp.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "petrel/status.h"
#include "runtime-adapters/docker/calls.h"
#include "runtime-adapters/docker/engine.h"

namespace petrel::internal {
namespace {

using namespace std::string_literals;

TEST_SUITE("docker") {
  TEST_CASE("docker DockerNegotiate: 1.41 with Debian's dockerd and newer ones, refused below") {
    CHECK(DockerNegotiate("1.41", "1.12").value() == "1.41");
    CHECK(DockerNegotiate("1.45", "1.24").value() == "1.41");
    CHECK(DockerNegotiate("1.41", "").value() == "1.41");
    Result<std::string> old = DockerNegotiate("1.40", "1.12");
    CHECK(old.status().code() == Status::Code::kNotSupported);
    CHECK(old.status().message() ==
          "dockerd speaks API 1.40 (and down to 1.12); petrel needs 1.41 (Docker 20.10) or later");
    Result<std::string> dropped = DockerNegotiate("1.50", "1.42");
    CHECK(dropped.status().code() == Status::Code::kNotSupported);
    CHECK(dropped.status().message() ==
          "dockerd speaks API 1.50 (and down to 1.42); petrel speaks 1.41");
    // 1.100 is newer than 1.41: numbers, not text.
    CHECK(DockerNegotiate("1.100", "1.12").value() == "1.41");
    for (const char* bad : {"", "1", "1.", ".4", "a.b", "1.4x", "12345.1"}) {
      CAPTURE(bad);
      CHECK(DockerNegotiate(bad, "1.12").status().code() == Status::Code::kInvalidArgument);
    }
    CHECK(DockerNegotiate("1.41", "x").status().code() == Status::Code::kInvalidArgument);
  }

  TEST_CASE("docker DockerStatus: dockerd's message, the call and the closest code") {
    CHECK(DockerStatus("POST /containers/x/start", 204, "").ok());
    CHECK(DockerStatus("POST /containers/x/start", 304, "").ok());
    Status conflict =
        DockerStatus("POST /containers/create", 409,
                     R"({"message":"Conflict. The container name \"/t1\" is already in use"})");
    CHECK(conflict.code() == Status::Code::kFailedPrecondition);
    CHECK(
        conflict.message() ==
        R"(POST /containers/create: 409: Conflict. The container name \"/t1\" is already in use)");
    CHECK(DockerStatus("GET /containers/nope/json", 404, R"({"message":"No such container: nope"})")
              .message() == "GET /containers/nope/json: 404: No such container: nope");
    CHECK(DockerStatus("c", 404, "{}").code() == Status::Code::kNotFound);
    CHECK(DockerStatus("c", 400, "{}").code() == Status::Code::kInvalidArgument);
    CHECK(DockerStatus("c", 401, "{}").code() == Status::Code::kPermissionDenied);
    CHECK(DockerStatus("c", 403, "{}").code() == Status::Code::kPermissionDenied);
    CHECK(DockerStatus("c", 500, "{}").code() == Status::Code::kInternal);
    CHECK(DockerStatus("c", 501, "{}").code() == Status::Code::kNotSupported);
    CHECK(DockerStatus("c", 503, "{}").code() == Status::Code::kUnavailable);
    // No JSON, or no message in it: the body itself, quoted, on one line.
    CHECK(DockerStatus("c", 500, "page not found\n").message() == "c: 500: \"page not found\\n\"");
    CHECK(DockerStatus("c", 500, "").message() == "c: 500: (no message)");
    // A message of many lines or a huge one stays one readable line.
    Status huge = DockerStatus("c", 500, R"({"message":")" + std::string(5000, 'x') + "\\nline\"}");
    CHECK(huge.message().find('\n') == std::string::npos);
    CHECK(huge.message().size() < 700);
  }

  TEST_CASE("docker DockerParseTime: RFC 3339 with nanoseconds, Go's zero time the epoch") {
    using std::chrono::nanoseconds;
    auto nanos = [](const char* text) {
      return std::chrono::duration_cast<nanoseconds>(
                 DockerParseTime(text).value().time_since_epoch())
          .count();
    };
    CHECK(nanos("2026-12-03T07:09:08.920690182Z") == 1796281748920690182);
    CHECK(nanos("2026-12-03T07:09:08.5Z") == 1796281748500000000);
    CHECK(nanos("2026-12-03T07:09:08Z") == 1796281748000000000);
    CHECK(nanos("1970-01-01T00:00:00Z") == 0);
    CHECK(nanos("0001-01-01T00:00:00Z") == 0);
    for (const char* bad :
         {"", "2026-12-03", "2026-12-03T07:09:08", "2026-12-03T07:09:08+01:00",
          "2026-13-03T07:09:08Z", "2026-12-03T07:09:08.Z", "2026-12-03T07:09:08Zx",
          // found by daemon_answer_fuzz: past a time_point's nanoseconds
          "2309-12-03T07:09:08.920690182Z", "1600-01-01T00:00:00Z"}) {
      CAPTURE(bad);
      CHECK(DockerParseTime(bad).status().code() == Status::Code::kInvalidArgument);
    }
  }

  TEST_CASE("docker DockerLineReader: lines however the pieces cut them, bounded") {
    const std::string body = "{\"a\":1}\n{\"b\":2}\n\n{\"c\":3}";
    for (size_t cut = 1; cut <= body.size(); cut++) {
      CAPTURE(cut);
      DockerLineReader reader(64);
      std::vector<std::string> lines;
      for (size_t at = 0; at < body.size(); at += cut) {
        REQUIRE(reader.Feed(body.substr(at, cut), &lines).ok());
      }
      CHECK(lines == std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"});
      CHECK(reader.TakeRest() == "{\"c\":3}");
    }
    DockerLineReader small(4);
    std::vector<std::string> lines;
    CHECK(small.Feed("abcd\nab", &lines).ok());
    CHECK(small.Feed("cde", &lines).code() == Status::Code::kCorruption);
    CHECK(lines == std::vector<std::string>{"abcd"});
  }

  TEST_CASE("docker DockerLogReader: stdout and stderr chunks however the pieces cut them") {
    const std::string body =
        "\1\0\0\0\0\0\0\3hi\n"s + "\2\0\0\0\0\0\0\4err\n"s + "\1\0\0\0\0\0\0\0"s;
    for (size_t cut = 1; cut <= body.size(); cut++) {
      CAPTURE(cut);
      DockerLogReader reader(1024);
      std::vector<DockerLogChunk> chunks;
      for (size_t at = 0; at < body.size(); at += cut) {
        REQUIRE(reader.Feed(body.substr(at, cut), &chunks).ok());
      }
      CHECK(reader.Finish().ok());
      REQUIRE(chunks.size() == 3);
      CHECK(chunks[0].stream == 1);
      CHECK(chunks[0].data == "hi\n");
      CHECK(chunks[1].stream == 2);
      CHECK(chunks[1].data == "err\n");
      CHECK(chunks[2].data.empty());
    }
    DockerLogReader cut(1024);
    std::vector<DockerLogChunk> chunks;
    CHECK(cut.Feed("\1\0\0\0\0\0\0\5ab"s, &chunks).ok());
    CHECK(cut.Finish().code() == Status::Code::kCorruption);
    DockerLogReader bad(1024);
    CHECK(bad.Feed("\3\0\0\0\0\0\0\1x"s, &chunks).code() == Status::Code::kCorruption);
    DockerLogReader padded(1024);
    CHECK(padded.Feed("\1\1\0\0\0\0\0\1x"s, &chunks).code() == Status::Code::kCorruption);
    DockerLogReader bounded(4);
    Status over = bounded.Feed("\1\0\0\0\0\0\0\5"s, &chunks);
    CHECK(over.code() == Status::Code::kCorruption);
    CHECK(over.message() == "a log chunk of 5 bytes, over the limit of 4");
  }

  TEST_CASE("docker DockerRegistryAuth: base64url of the credential, Docker Hub by its key") {
    // {"password":"p?>","serveraddress":"127.0.0.1:5000","username":"u"}: '?>' makes a
    // '/' in standard base64, which base64url writes '_'.
    CHECK(
        DockerRegistryAuth("u", "p?>", "", "127.0.0.1:5000") ==
        "eyJwYXNzd29yZCI6InA_PiIsInNlcnZlcmFkZHJlc3MiOiIxMjcuMC4wLjE6NTAwMCIsInVzZXJuYW1lIjoidSJ9");
    // {"identitytoken":"tok","serveraddress":"https://index.docker.io/v1/"}: no password.
    CHECK(DockerRegistryAuth("", "", "tok", "docker.io") ==
          "eyJpZGVudGl0eXRva2VuIjoidG9rIiwic2VydmVyYWRkcmVzcyI6Imh0dHBzOi8vaW5kZXguZG9ja2VyLmlvL3Yx"
          "LyJ9");
  }
}

}  // namespace
}  // namespace petrel::internal
