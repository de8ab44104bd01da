// The fake's program language both ways: every step's word parses back to the step,
// and what the parser refuses.
#include "petrel/testing/fake_program.h"

#include <doctest/doctest.h>

namespace petrel::testing {
namespace {

using namespace steps;  // NOLINT: programs are written in steps

TEST_SUITE("fake-program") {
  TEST_CASE("the word of every step parses back to that step") {
    const Program program = {Print("two  spaces 'q' \"dq\" $HOME"),
                             Print(""),
                             PrintErr("err"),
                             Env("FOO"),
                             Cwd(),
                             Uid(),
                             Hostname(),
                             Cat("/data/in"),
                             Write("/data/out", "from the container"),
                             Write("/empty", ""),
                             Count(kFakeMaxCount),
                             Alloc(64),
                             TrapTerm(42, "bye now"),
                             TrapTerm(0),
                             IgnoreTerm(),
                             Run(),
                             Exit(255),
                             Sleep(kFakeMaxSleepMs)};
    const std::vector<std::string> words = FakeProgramWords(program);
    REQUIRE(words.size() == program.size());
    CHECK(words[0] == "print two  spaces 'q' \"dq\" $HOME");
    CHECK(words[12] == "trap-term 42 bye now");
    CHECK(words[13] == "trap-term 0");
    for (size_t i = 0; i < program.size(); i++) {
      CAPTURE(words[i]);
      Result<Step> parsed = ParseFakeStep(words[i]);
      REQUIRE_MESSAGE(parsed.ok(), parsed.status().ToString());
      CHECK(*parsed == program[i]);
      CHECK(FakeStepWord(*parsed) == words[i]);
    }
  }

  TEST_CASE("a word out of the language or its limits is refused, naming it") {
    const std::vector<std::string> bad = {"",
                                          "frobnicate",
                                          "exit",
                                          "exit 256",
                                          "exit -1",
                                          "count x",
                                          "count " + std::to_string(kFakeMaxCount + 1),
                                          "run now",
                                          "cat",
                                          "cat a b",
                                          "env A B",
                                          "trap-term",
                                          "trap-term x bye",
                                          "write",
                                          "alloc 1.5",
                                          "sleep",
                                          "sleep 0.5",
                                          "sleep " + std::to_string(kFakeMaxSleepMs + 1)};
    for (const std::string& word : bad) {
      CAPTURE(word);
      Result<Step> parsed = ParseFakeStep(word);
      REQUIRE_FALSE(parsed.ok());
      CHECK(parsed.status().IsInvalidArgument());
      CHECK(parsed.status().message() ==
            "step \"" + word + "\": not a step of the fake's language");
    }
    // A path with a space does not survive the words: the parser names what it got.
    CHECK_FALSE(ParseFakeStep(FakeStepWord(Cat("/a b"))).ok());
  }
}

}  // namespace
}  // namespace petrel::testing
