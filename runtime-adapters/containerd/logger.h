// The logger process of containerd's `binary://` log URIs (petrel/containerd.h), seen
// from the adapter that starts containers with it, and from its tests.
//
// What containerd 1.6 does with such a URI, read in its source (tags v1.6.20, Debian
// 12's, and v1.6.39: the same but for how errors are joined):
//  - cmd/containerd-shim-runc-v2 → pkg/process/io.go createIO: a stdout URI of scheme
//    "binary" makes NewBinaryIO start the logger from the shim (not from containerd).
//  - pkg/process/io_util.go NewBinaryCmd: the program is the URI's path (url.Parse
//    decoded); the arguments are, for each key of URL.Query() (a Go map: ANY order),
//    the key and then its first value ("" for "key=" or a bare "key"). The environment
//    is exactly CONTAINER_ID=<id> and CONTAINER_NAMESPACE=<namespace>, nothing else (no
//    PATH); stdin, stdout and stderr are /dev/null.
//  - pkg/process/io.go NewBinaryIO: ExtraFiles are fd 3 = the read end of the
//    container's stdout pipe, fd 4 = of its stderr pipe (two pipes), fd 5 = the write
//    end of a pipe the shim then reads one byte from: a byte or EOF (the logger closing
//    it, or exiting) means ready, and only then does the container start.
//  - binaryIO.Close (task delete): closes the shim's ends of both pipes, then SIGTERM,
//    then waits up to 12 s (binaryIOProcTermTimeout) before SIGKILL.
//  - runtime/v2/logging/logging_unix.go (Go loggers' helper) confirms fds 3, 4, 5 and
//    the two variables, and treats SIGTERM as "cancel".
// Go's query parser (net/url) decodes %XX and '+' as a space, and drops a pair holding
// ';': ContainerdLogUri %-escapes all but RFC 3986's unreserved characters (and the
// path's '/').
#ifndef PETREL_RUNTIME_ADAPTERS_CONTAINERD_LOGGER_H_
#define PETREL_RUNTIME_ADAPTERS_CONTAINERD_LOGGER_H_

#include <cstdint>
#include <string>

#include "petrel/runtime.h"
#include "petrel/status.h"

namespace petrel::internal {

// The URI's keys, and so the logger's argument names. Every key starts with
// "petrel-log-": IsContainerdLoggerCall knows a call by its first argument, which may
// be any of them.
inline constexpr char kLoggerKeyPrefix[] = "petrel-log-";
inline constexpr char kLoggerDirKey[] = "petrel-log-dir";
inline constexpr char kLoggerMaxKey[] = "petrel-log-max";
inline constexpr char kLoggerLeaseKey[] = "petrel-log-lease";
inline constexpr char kLoggerLeaseMsKey[] = "petrel-log-lease-ms";

// The file in the log directory (the container's) where the driver writes the task's
// pid, "<pid>\n", between creating and starting the task: the init process the logger
// holds by a pidfd (looking for the file every kLoggerPidLookMs until it is there), so
// a pid reused later is never signalled nor waited for.
inline constexpr char kLoggerTaskPidFile[] = "task.pid";
inline constexpr int64_t kLoggerPidLookMs = 10;

// The file the logger creates (empty) in the log directory once the task's init process
// has ended and it has written all the output the pipes held: the end of a PID
// namespace's init is the end of every process in it, so nothing can write to the pipes
// any more, and what they hold is the rest of the output. The driver tells an exit once
// it is there: the container's output is whole. (The pipes themselves give no end of
// file: the shim keeps them open until the task is deleted.)
inline constexpr char kLoggerDrainedFile[] = "drained";

// Both pipes go into the same files. A line one stream has begun is finished before
// the other stream is read (its rest waited for up to 8 times 10 ms): a program that
// writes a line in pieces (busybox sh's error messages) would otherwise have the other
// stream's output land inside it.
//
// With a lease (ContainerSpec::lease) the logger enforces it as the crun shim does, and
// so also while petreld is down: it reads the lease file every kLeaseCheckMs and at the
// moment it would run out, and once it has run out kills the task's init process (and
// so its PID namespace, the whole container) with SIGKILL by its pidfd, saying so once
// in the container's log.
struct LoggerArgs {
  std::string dir;        // absolute
  int64_t max_bytes = 0;  // per file, > 0
  ContainerLease lease;   // none when its path is empty; else duration_ms > 0
};

// "binary://<binary>?petrel-log-dir=<dir>&petrel-log-max=<max_bytes>", percent-encoded,
// and "&petrel-log-lease=<path>&petrel-log-lease-ms=<ms>" with a lease.
// REQUIRES: `binary` and `dir` absolute, max_bytes > 0; a lease's path absolute and its
// duration above 0.
std::string ContainerdLogUri(const std::string& binary, const std::string& dir, int64_t max_bytes,
                             const ContainerLease& lease = {});

// Whether this process has asked IsContainerdLoggerCall (its main() hands over to the
// logger): NewContainerdRuntime refuses to make its own binary the logger otherwise.
bool ContainerdLoggerHandOverAsked();

// The logger's arguments (argv[1..argc) as key-value pairs, in any order).
// InvalidArgument naming what is wrong: "petrel-log-max: not a positive number: 12x".
Result<LoggerArgs> ParseLoggerArgs(int argc, char** argv);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CONTAINERD_LOGGER_H_
