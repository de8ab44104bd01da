// Forking from petreld, a threaded process, for the processes of petrel's own that
// outlive it (the crun shim, the Docker adapter's lease watcher): everything a child
// does after the fork is async-signal-safe, so these helpers are too.
//
// Thread-safety: any thread; the child of a fork calls them before it execs or exits.
#ifndef PETREL_LIB_UTIL_FORK_H_
#define PETREL_LIB_UTIL_FORK_H_

#include <sys/types.h>

#include <optional>

// ThreadSanitizer builds (clang's -fsanitize=thread) start children in ways it follows.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PETREL_TSAN 1
#endif
#endif
#ifndef PETREL_TSAN
#define PETREL_TSAN 0
#endif

namespace petrel::internal {

// fork() as the system call alone. glibc's fork() holds malloc's and stdio's locks for
// as long as the kernel copies petreld's page tables: petreld's loop, allocating
// meanwhile, waited on them for up to 300 ms while workers started shims (a worker
// descheduled in the middle of its fork on a busy machine). The children need none of
// glibc's care after the fork: they make raw system calls only, as after any fork of a
// threaded process. (ThreadSanitizer builds call fork(), which it follows.)
pid_t RawFork();

// Raises the calling thread to the main thread's priority when it runs below it (a
// WorkerPool's niced thread) and petrel may (CAP_SYS_NICE): the nice value to restore
// afterwards, none when nothing changed. For fork(): the kernel holds the parent's
// mmap lock while it copies the page tables, and every page fault of petreld's loop
// thread waits for it. A niced worker descheduled in the middle of that copy on a busy
// machine held the loop for 24 ms (perf sched, tests/bench/loop_stall_bench.sh).
std::optional<int> RaiseToMainThreadPriority();

// Closes every fd from `first` up. ASYNC-SIGNAL-SAFE.
void CloseFrom(int first);

// Every signal's handling at its default, none blocked. ASYNC-SIGNAL-SAFE.
void ResetSignals();

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_FORK_H_
