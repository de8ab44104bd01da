// Tests of lib/util's text, number and hashing helpers, and PETREL_ASSIGN_OR_RETURN.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lib/util/json.h"
#include "lib/util/process.h"
#include "lib/util/sha256.h"
#include "lib/util/strings.h"
#include "lib/util/workers.h"
#include "petrel/status.h"

namespace petrel::internal {
namespace {

Result<int> Half(int n) {
  if (n % 2 != 0) return Status::InvalidArgument(std::to_string(n) + " is odd");
  return n / 2;
}

// n / 4 through two Halfs; the first failure comes back as it was.
Result<int> Quarter(int n) {
  PETREL_ASSIGN_OR_RETURN(int half, Half(n));
  PETREL_ASSIGN_OR_RETURN(const int quarter, Half(half));
  return quarter;
}

Status QuarterInto(int n, int* out) {
  PETREL_ASSIGN_OR_RETURN(*out, Quarter(n));
  return Status::OK();
}

TEST_SUITE("util") {
  TEST_CASE("Sha256 gives the standard digests, streamed or at once") {
    CHECK(Sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(Sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    Sha256 streamed;
    streamed.Update("a", 1);
    streamed.Update(std::string_view("bc"));
    CHECK(streamed.HexDigest() == Sha256Hex("abc"));
  }

  TEST_CASE("JSON from outside is refused past 64 levels, saying where") {
    CHECK(JsonNestingError("[[[]]]", 3).empty());
    CHECK(JsonNestingError("[[[[]]]]", 3) == "nested deeper than 3 levels at line 1, column 4");
    // Brackets in strings, escaped quotes included, do not count.
    CHECK(JsonNestingError("{\"a\":\n {\"b\":[\"[[[[\\\"[[[\", [1]]}}", 3) ==
          "nested deeper than 3 levels at line 2, column 21");
    CHECK(JsonNestingError(std::string(64, '[')).empty());  // unbalanced: for the parser
    Result<nlohmann::json> j = ParseJson(std::string(65, '[') + std::string(65, ']'), "body");
    CHECK(j.status().message() == "body: JSON nested deeper than 64 levels at line 1, column 65");
    j = ParseJson("{\"a\": [1, {\"b\": null}]}", "body");
    REQUIRE(j.ok());
    CHECK((*j)["a"][1].contains("b"));
    CHECK(ParseJson("{", "x").status().message().rfind("x: invalid JSON: [json.exception", 0) == 0);
  }

  TEST_CASE("Quote and Escape keep any value on one short line") {
    CHECK(Quote("a\"b\\c\nd\te\x01\x7f") == "\"a\\\"b\\\\c\\nd\\te\\u0001\\u007f\"");
    CHECK(Escape(std::string(70, 'x')) == std::string(64, 'x') + "...");
    // Cut at a character boundary: the 2-byte ü does not fit in 64 bytes.
    CHECK(Quote(std::string(63, 'x') + "\xc3\xbc") == "\"" + std::string(63, 'x') + "...\"");
    CHECK(Quote(std::string(70, 'x'), std::string_view::npos) ==
          "\"" + std::string(70, 'x') + "\"");
    CHECK(Quote("") == "\"\"");
  }

  TEST_CASE("FormatDecimal writes digits, zero-padded to a width, NUL-terminated") {
    char buf[32];
    CHECK(FormatDecimal(0, buf) == 1);
    CHECK(std::string(buf) == "0");
    CHECK(FormatDecimal(18446744073709551615ULL, buf) == 20);
    CHECK(std::string(buf) == "18446744073709551615");
    CHECK(FormatDecimal(123, buf, 20) == 20);
    CHECK(std::string(buf) == "00000000000000000123");
    CHECK(FormatDecimal(12345, buf, 3) == 5);
    CHECK(std::string(buf) == "12345");
  }

  TEST_CASE("UrlEscape keeps RFC 3986's unreserved characters and IsPrintableToken wants ASCII") {
    CHECK(UrlEscape("aZ09-._~") == "aZ09-._~");
    CHECK(UrlEscape("a b/c?d=e&f+%") == "a%20b%2Fc%3Fd%3De%26f%2B%25");
    CHECK(UrlEscape(std::string("\0\xff\n", 3)) == "%00%FF%0A");
    CHECK(UrlEscape("") == "");
    CHECK(IsPrintableToken("eyJh.b-c_d~e/f+g="));
    for (const std::string& bad : {std::string(), std::string("a b"), std::string("a\nb"),
                                   std::string("\x7f"), std::string("caf\xc3\xa9")}) {
      CAPTURE(bad);
      CHECK_FALSE(IsPrintableToken(bad));
    }
  }

  TEST_CASE("PETREL_ASSIGN_OR_RETURN assigns the value or returns the status") {
    CHECK(*Quarter(12) == 3);
    CHECK(Quarter(6).status().message() == "3 is odd");
    CHECK(Quarter(5).status().message() == "5 is odd");
    int out = 0;
    CHECK(QuarterInto(8, &out).ok());
    CHECK(out == 2);
    CHECK(QuarterInto(2, &out).IsInvalidArgument());
    CHECK(out == 2);
  }
}

}  // namespace
}  // namespace petrel::internal

TEST_CASE("Semaphore: never more holders than places, and every waiter gets one") {
  petrel::internal::Semaphore slots(2);
  std::atomic<int> now{0}, most{0}, done{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; i++) {
    threads.emplace_back([&] {
      petrel::internal::Semaphore::Hold hold(&slots);
      int n = ++now;
      int seen = most.load();
      while (n > seen && !most.compare_exchange_weak(seen, n)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      --now;
      ++done;
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(done.load() == 8);
  CHECK(most.load() <= 2);
  CHECK(most.load() >= 1);
  // A null semaphore is no limit: Hold does nothing.
  petrel::internal::Semaphore::Hold none(nullptr);
}

TEST_CASE("RunProcess: input in, stdout and stderr apart or merged, exit status, a deadline") {
  using petrel::internal::ProcessOptions;
  using petrel::internal::ProcessResult;
  using petrel::internal::RunProcess;
  ProcessOptions o;
  o.input = "hello\n";
  ProcessResult r;
  REQUIRE(RunProcess({"/bin/sh", "-c", "cat; echo oops >&2; exit 4"}, o, &r).ok());
  CHECK(r.out == "hello\n");
  CHECK(r.err == "oops\n");
  CHECK((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 4));
  o.merge_stderr = true;
  REQUIRE(RunProcess({"/bin/sh", "-c", "cat; echo oops >&2"}, o, &r).ok());
  CHECK(r.out == "hello\noops\n");
  CHECK(r.err.empty());
  ProcessOptions bounded;
  bounded.max_output = 10;
  REQUIRE(RunProcess({"/bin/sh", "-c", "head -c 100000 /dev/zero"}, bounded, &r).ok());
  CHECK(r.out.size() == 10);
  ProcessOptions slow;
  slow.timeout_ms = 200;
  const auto start = std::chrono::steady_clock::now();
  petrel::Status s = RunProcess({"/bin/sleep", "30"}, slow, &r);
  CHECK(s.code() == petrel::Status::Code::kDeadlineExceeded);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  // A program that closes its output and goes on is stopped at the deadline too.
  s = RunProcess({"/bin/sh", "-c", "exec >/dev/null 2>&1; sleep 30"}, slow, &r);
  CHECK(s.code() == petrel::Status::Code::kDeadlineExceeded);
  // A program that ends without reading its input: no SIGPIPE here (this process does not
  // ignore it), whatever the timing; many times, so that some writes come after the end.
  ProcessOptions unread;
  unread.input = std::string(256 << 10, 'x');
  for (int i = 0; i < 20; i++) {
    REQUIRE(RunProcess({"/bin/true"}, unread, &r).ok());
    CHECK((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0));
  }
  CHECK(RunProcess({"/nonexistent/program"}, ProcessOptions(), &r).code() ==
        petrel::Status::Code::kNotFound);
  ProcessOptions path;
  path.search_path = true;
  REQUIRE(RunProcess({"true"}, path, &r).ok());
  CHECK((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0));
}
