// Runs a short-lived program and collects what it says: runtime CLIs (`crun state`),
// credential helpers (`docker-credential-NAME get`).
//
// Thread-safety: RunProcess may be called from any thread, at the same time. Not for
// the loop thread: it waits for the program.
#ifndef PETREL_LIB_UTIL_PROCESS_H_
#define PETREL_LIB_UTIL_PROCESS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "petrel/status.h"

namespace petrel::internal {

struct ProcessOptions {
  std::string input;             // written to its stdin, which is then closed
  int64_t timeout_ms = 0;        // above 0: killed (SIGKILL) past it, with DeadlineExceeded
  size_t max_output = 64 << 10;  // of stdout and of stderr each; the rest is read and dropped
  bool merge_stderr = false;     // stderr into `out` too, in the order written
  bool search_path = false;      // argv[0] without a '/' is looked up in $PATH
  // "NAME=value" entries put into the program's environment, over the caller's.
  std::vector<std::string> env;
};

struct ProcessResult {
  int status = 0;   // as waitpid gives it
  std::string out;  // stdout (and stderr with merge_stderr)
  std::string err;  // stderr
};

// Starts argv (signals unblocked and at their defaults in the child), feeds it
// `options.input`, reads its output until it ends and reaps it. A program that cannot
// be started: the errno of the spawn, naming argv[0] (NotFound for ENOENT).
Status RunProcess(const std::vector<std::string>& argv, const ProcessOptions& options,
                  ProcessResult* result);

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_PROCESS_H_
