// The runtime conformance suite: one behavioural test of the ContainerRuntime contract
// (include/petrel/runtime.h) that every runtime passes: the fake, crun and runc today,
// Docker and containerd when their adapters come. Its cases (conformance_suite.cpp)
// cover exit codes and output, signals, env/args/user/working dir/hostname, mounts and a
// read-only root, memory limits, logs (offsets, following, the cap), adoption by a new
// runtime object, removal leaving nothing, bad images and commands, calls that overlap,
// and the Orchestrator on top. Every target runs every case; none is skipped.
//
// An adapter's test binary has a main of its own that describes its runtime and hands
// over:
//
//   int main(int argc, char** argv) {
//     petrel::testing::ConformanceTarget t;
//     t.name = "crun";
//     t.factory = ...;  // and the other fields
//     return petrel::testing::RunRuntimeConformance(argc, argv, t);
//   }
//
// The suite describes what a container does as a Program of abstract steps; each
// target says how its runtime runs one (ShellCommand for runtimes with a busybox
// image, FakeCommand for the fake's own language).
#ifndef PETREL_TESTS_LIB_CONFORMANCE_H_
#define PETREL_TESTS_LIB_CONFORMANCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "petrel/runtime.h"
#include "petrel/status.h"

namespace petrel::testing {

// One thing a container's process does. Output ends with a newline; the program's
// exit code is that of `exit`, else the status of its last step (0, or 1 after a
// failed cat or write), as sh gives.
struct Step {
  enum class Verb {
    kPrint,       // text on stdout
    kPrintErr,    // text on stderr
    kEnv,         // "NAME=value" of variable `path`
    kCwd,         // the working directory
    kUid,         // the user id, a number
    kHostname,    // the host name
    kCat,         // the file `path`; a missing one fails (status 1, a message on stderr)
    kWrite,       // `text` into the file `path`; a read-only one fails likewise
    kCount,       // `number` lines: 0 to number-1 as 19 digits with leading zeros
    kAlloc,       // uses `number` MiB of memory at once; past a limit: OOM-killed, 137
    kTrapTerm,    // from now on SIGTERM prints `text` (unless empty) and exits `number`
    kIgnoreTerm,  // from now on SIGTERM does nothing
    kRun,         // waits until a signal ends the process; later steps never run
    kExit,        // exits with `number`
  };
  Verb verb;
  std::string path;
  std::string text;
  int64_t number = 0;
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
}  // namespace steps

// The command and args of a ContainerSpec.
struct ContainerCommand {
  std::vector<std::string> command;
  std::vector<std::string> args;
};

// A program as a busybox shell script: {"/bin/sh", "-c"} and the script as the one arg.
ContainerCommand ShellCommand(const Program& program);
// A program in the fake runtime's language (petrel/testing/fake_runtime.h):
// {"petrel-fake"} and one arg per step.
ContainerCommand FakeCommand(const Program& program);

// The binary the suite's bad command names; no target's image holds it.
inline constexpr char kMissingBinary[] = "/no/such/binary";

// A runtime as the suite sees it.
struct ConformanceTarget {
  // What the runtime's Name() says. It also starts the names of the suite's containers,
  // so suites of different runtimes can run at the same time on one host.
  std::string name;
  // Makes a runtime object that keeps its state in `state_dir` (a fresh directory per
  // case). A second object made over the same dir after the first is gone must adopt
  // the first one's containers, as a restarted petrel does.
  std::function<Result<std::shared_ptr<ContainerRuntime>>(const std::string& state_dir)> factory;
  // The reference of the image the suite's containers run from; called when a case
  // first needs it (a target may build the image then). The suite pulls it first.
  std::function<std::string()> image;
  // A reference to an image that does not exist for this runtime.
  std::string missing_image;
  // How the runtime runs a program: ShellCommand, FakeCommand, or the target's own.
  std::function<ContainerCommand(const Program&)> command;
  // The most bytes of a container's output the runtimes from `factory` keep; the suite
  // writes several times as much to see the oldest dropped.
  int64_t log_cap_bytes = 0;
  // What is left of container `id` (a container Remove removed, or whose Create
  // failed: then `id` is the name it was given) in `runtime` and `state_dir`, said in
  // a few words per thing ("mount /x"); empty when nothing is.
  std::function<std::vector<std::string>(ContainerRuntime* runtime, const std::string& state_dir,
                                         const std::string& id)>
      leftovers;
};

// Runs the suite (and any other test cases linked in) on `target` as doctest's command
// line `argc`/`argv` says; returns the process's exit code.
int RunRuntimeConformance(int argc, char** argv, const ConformanceTarget& target);

// The target being run. REQUIRES: inside RunRuntimeConformance.
const ConformanceTarget& CurrentTarget();

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_CONFORMANCE_H_
