// The fake runtime's program language: what a container's process does, as steps,
// and the words a ContainerSpec's command says them in. A container whose command
// starts with kFakeProgram runs one on FakeRuntime (petrel/testing/fake_runtime.h);
// the shared conformance suite (tests/lib/conformance.h) writes its programs with
// these steps, for the fake in these words and for real runtimes as busybox sh.
//
// Each element of the command after kFakeProgram, then each of the args, is one step's
// word: the verb, then what it takes, split at single spaces.
//
// Thread-safety: value types and pure functions.
#ifndef PETREL_TESTING_FAKE_PROGRAM_H_
#define PETREL_TESTING_FAKE_PROGRAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "petrel/status.h"

namespace petrel::testing {

// command[0] of a container that runs a program.
inline constexpr char kFakeProgram[] = "petrel-fake";

// The most lines one count step writes: 2 MB of output.
inline constexpr int64_t kFakeMaxCount = 100'000;

// The longest one sleep step waits: an hour.
inline constexpr int64_t kFakeMaxSleepMs = 3'600'000;

// One thing a container's process does. Output ends with a newline; the program's exit
// code is that of `exit`, else the status of its last step (0, or 1 after a failed cat
// or write), as sh gives.
struct Step {
  enum class Verb {  // its word, and what it does
    kPrint,          // print TEXT: TEXT on stdout
    kPrintErr,       // print-err TEXT: TEXT on stderr
    kEnv,            // env NAME: "NAME=value" of variable `path` ("" when unset)
    kCwd,            // cwd: the working directory
    kUid,            // id: the user id, a number
    kHostname,       // hostname: the host name
    kCat,            // cat PATH: the file `path`; a missing one fails (status 1,
                     //   a message on stderr)
    kWrite,          // write PATH TEXT: `text` into the file `path`, replacing it;
                     //   a read-only one fails likewise
    kCount,          // count N: `number` lines (at most kFakeMaxCount): 0 to N-1 as
                     //   19 digits with leading zeros
    kAlloc,          // alloc MIB: uses `number` MiB of memory at once; past a memory
                     //   limit the process is OOM-killed: it ends with 137
    kTrapTerm,       // trap-term CODE [TEXT]: from now on SIGTERM prints `text`
                     //   (unless empty) and ends the process with CODE (`number`)
    kIgnoreTerm,     // ignore-term: from now on SIGTERM does nothing
    kRun,            // run: waits until a signal ends the process; later steps never run
    kExit,           // exit CODE: ends the process with `number` (0 to 255)
    kSleep,          // sleep MS: waits `number` milliseconds (at most kFakeMaxSleepMs)
  };
  Verb verb = Verb::kExit;
  std::string path;    // cat, write: the file; env: the variable's name. No spaces.
  std::string text;    // print, print-err, write, trap-term
  int64_t number = 0;  // count, alloc, trap-term, exit, sleep

  bool operator==(const Step& other) const {
    return verb == other.verb && path == other.path && text == other.text && number == other.number;
  }
  bool operator!=(const Step& other) const { return !(*this == other); }
};
using Program = std::vector<Step>;

// The steps, by name: Program{Print("up"), TrapTerm(0), Run()}.
namespace steps {
Step Print(std::string text);
Step PrintErr(std::string text);
Step Env(std::string name);
Step Cwd();
Step Uid();
Step Hostname();
Step Cat(std::string path);
Step Write(std::string path, std::string text);
Step Count(int64_t lines);
Step Alloc(int64_t mib);
Step TrapTerm(int code, std::string text = "");
Step IgnoreTerm();
Step Run();
Step Exit(int code);
Step Sleep(int64_t ms);
}  // namespace steps

// The word of `step`: "print hello", "trap-term 3 bye". ParseFakeStep gives `step`
// back for every step that keeps the limits above (a path without spaces, numbers in
// range); for one that does not, it names the word (Start fails so).
std::string FakeStepWord(const Step& step);

// The words of `program`, one per step: a container runs it with the command
// {kFakeProgram} and these as its args (or all of them as its command).
std::vector<std::string> FakeProgramWords(const Program& program);

// The step `word` says. InvalidArgument "step \"WORD\": not a step of the fake's
// language" when it is unknown or malformed.
Result<Step> ParseFakeStep(const std::string& word);

}  // namespace petrel::testing

#endif  // PETREL_TESTING_FAKE_PROGRAM_H_
