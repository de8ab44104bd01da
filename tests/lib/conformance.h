// The runtime conformance suite: one behavioural test of the ContainerRuntime contract
// (include/petrel/runtime.h) that every runtime passes: the fake, crun and runc today,
// Docker and containerd when their adapters come. Its cases (conformance_suite.cpp)
// cover exit codes and output, signals, env/args/user/working dir/hostname, mounts and a
// read-only root, memory limits, logs (offsets, following, the cap), adoption by a new
// runtime object, leases (enforced while petrel is gone), removal leaving nothing, bad images and
// commands, calls that overlap, Exec (exit code and output, its limit, the timeout and what is left
// after it, a missing binary, containers not running, the container's user and environment, Execs
// at once and beside a Kill), images (pull policies, list, removal refused while in
// use, prune), and the Orchestrator on top. Every target runs every
// case; none is skipped.
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
// The suite describes what a container does as a Program of steps (the fake runtime's,
// petrel/testing/fake_program.h); each target says how its runtime runs one
// (ShellCommand for runtimes with a busybox image, FakeCommand for the fake).
#ifndef PETREL_TESTS_LIB_CONFORMANCE_H_
#define PETREL_TESTS_LIB_CONFORMANCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "petrel/runtime.h"
#include "petrel/status.h"
#include "petrel/testing/fake_program.h"

namespace petrel::testing {

// The command and args of a ContainerSpec.
struct ContainerCommand {
  std::vector<std::string> command;
  std::vector<std::string> args;
};

// A program as a busybox shell script: {"/bin/sh", "-c"} and the script as the one arg.
ContainerCommand ShellCommand(const Program& program);
// A program in the fake runtime's words (petrel/testing/fake_program.h):
// {kFakeProgram} and one arg per step.
ContainerCommand FakeCommand(const Program& program);
// The busybox image (tests/lib/images.h), for the `image` of targets that run real
// containers: a failed build fails the case that asked.
std::string BusyboxImageOrFail();

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
  // Whether a container's output keeps the order in which it wrote to stdout and to
  // stderr (one pipe for both: crun's shim, containerd's logger). false for a runtime
  // that copies the two streams apart (dockerd): the suite then checks each stream's
  // own order, as it does for Exec everywhere.
  bool streams_in_order = true;
  // For a runtime with no process of its own that enforces a lease while petrel is
  // gone (the fake): does what such a process would have done by now. Unset for the
  // others: their own processes are what the lease case tests.
  std::function<void(ContainerRuntime* runtime)> check_leases;
  // Whether every OOM kill is told as one (exit_reason "OOMKilled"). false for a
  // runtime that only passes on what its daemon knows (dockerd): dockerd hears of an OOM
  // kill from containerd 1.6's shim, which watches a container's memory cgroup only
  // once the container has started and so misses a kill that comes before
  // (containerd#8180). The suite then takes "OOMKilled" or no reason, never another.
  bool oom_kills_always_told = true;
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

// What the suite's cases, and an adapter's own cases beside them, do to a container,
// failing the test case (REQUIRE) when a call that must work does not.

// Creates a container from `spec`: its id.
std::string Create(ContainerRuntime* rt, const ContainerSpec& spec);
// Creates and starts a container from `spec`: its id.
std::string CreateAndStart(ContainerRuntime* rt, const ContainerSpec& spec);
// True when Inspect says container `id` exited.
bool HasExited(ContainerRuntime* rt, const std::string& id);
// Waits (real time, 20 s) for container `id` to end: its exit code.
int WaitExit(ContainerRuntime* rt, const std::string& id);
// The whole output of container `id` that the runtime keeps (up to 1 MiB).
std::string LogOf(ContainerRuntime* rt, const std::string& id);
// Checks that container `id` is gone: from the runtime's answers (Inspect, Logs, List)
// and, through CurrentTarget().leftovers, from the host and `state_dir`.
void CheckGone(ContainerRuntime* rt, const std::string& state_dir, const std::string& id);
// Removes container `id`, then CheckGone.
void RemoveAndCheck(ContainerRuntime* rt, const std::string& state_dir, const std::string& id);

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_CONFORMANCE_H_
