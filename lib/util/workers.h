// Workers: threads petrel owns for work that may block (runtime calls, image imports,
// commits that wait for fsync), so the loop thread only decides.
//
// Not libuv's thread pool: an embedder's loop and libraft's disk writes share that
// one, and a runtime call that waits two minutes there would starve them.
//
// A job runs on a worker; what it found goes back to the loop thread through a
// Mailbox: the job posts a closure, which makes the Mailbox's eventfd readable; the
// loop polls that descriptor (uv_poll_t) and runs the closures in the order they were
// posted (Drain).
//
// Not uv_async_send: libuv 1.44's loop, woken, spins (sched_yield) until every thread
// in the middle of a uv_async_send on it has finished that call. A worker runs at a
// lower priority; descheduled there on a busy machine it held petreld's loop for
// 8-12 ms at a time (perf sched, tests/bench/loop_stall_bench.sh). A write to an
// eventfd is one system call, and the loop never waits for the writer.
//
// A WorkerPool of zero threads runs each job on the caller's thread before Submit
// returns. Tests and Orchestrator::Step use it: the same code, deterministic, no
// thread and no sleep.
//
// Thread-safety: Submit, WaitIdle and Mailbox::Post may be called from any thread;
// Mailbox::Drain from the owner's (loop) thread only.
#ifndef PETREL_LIB_UTIL_WORKERS_H_
#define PETREL_LIB_UTIL_WORKERS_H_

#include <semaphore.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "petrel/status.h"

namespace petrel::internal {

class Mailbox {
 public:
  using Letter = std::function<void()>;

  // Makes the eventfd; fd() is -1 when the system gave none (too many open files).
  Mailbox();
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // Readable while letters or a Wake wait: what the owner's loop polls, then calls
  // Drain. Nonblocking, close-on-exec; the Mailbox closes it. -1 when the system gave
  // none: the owner must then fail to start (CheckFd says so).
  int fd() const { return fd_; }
  // OK, or the error that left the Mailbox without its eventfd.
  Status CheckFd() const;
  // Queues `letter` for the owner's thread and makes fd() readable. After Close,
  // letters are dropped.
  void Post(Letter letter);
  // Makes fd() readable without a letter: the owner has something else to look at.
  // Any thread; never blocks.
  void Wake();
  // Makes fd() unreadable again, then runs every letter posted so far (and those they
  // post), oldest first. Returns how many ran. Owner's thread only.
  size_t Drain();
  // Drops what is queued and every later letter: the owner is going away.
  void Close();

 private:
  int fd_ = -1;
  int fd_errno_ = 0;  // eventfd's errno when fd_ is -1
  std::mutex mu_;
  std::deque<Letter> letters_;
  bool closed_ = false;
};

// The calling thread's nice value (on Linux each thread has its own: PRIO_PROCESS with
// its tid), none when it cannot be read.
std::optional<int> ThreadNice();
// Sets the calling thread's nice value; false when refused (lowering it needs
// CAP_SYS_NICE).
bool SetThreadNice(int nice);

class WorkerPool {
 public:
  // `threads` == 0: jobs run inline, on Submit's caller. `name` names the threads
  // (pthread_setname_np, at most 15 characters) for top and gdb. `nice` > 0 lowers the
  // threads' scheduling priority by that much (what they start inherits it), so on a
  // busy machine the loop thread runs before them.
  WorkerPool(size_t threads, std::string name, int nice = 0);
  // Waits for the jobs that are running; drops those not started yet.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs `job` on a worker, jobs in the order submitted as workers come free (so a
  // pool of one thread runs them one at a time, in order).
  void Submit(std::function<void()> job);
  // Blocks until every job submitted before the call has finished.
  void WaitIdle();
  bool inline_jobs() const { return threads_.empty(); }

 private:
  void Work();

  std::mutex mu_;
  // One post per job submitted (and one per thread to stop). A semaphore, not a
  // condition variable: glibc's pthread_cond_signal can wait for a woken waiter that
  // has not run yet, and Submit runs on the loop thread, which must never wait on a
  // worker (on a busy machine that worker may wait tens of ms for a CPU). sem_post
  // never waits.
  sem_t work_sem_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> queue_;
  size_t running_ = 0;
  bool stopping_ = false;
  const std::string name_;
  const int nice_;
  std::vector<std::thread> threads_;
};

// At most `count` holders at once; the others wait (in no set order) until one lets go.
// For bulk work that threads of several pools share, e.g. blob downloads on a slow
// uplink. Thread-safe.
class Semaphore {
 public:
  explicit Semaphore(int count) : free_(count) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  // Holds one place from construction to destruction. A null semaphore: no limit.
  class Hold {
   public:
    explicit Hold(Semaphore* s) : s_(s) {
      if (s_ != nullptr) s_->Acquire();
    }
    ~Hold() {
      if (s_ != nullptr) s_->Release();
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    Semaphore* s_;
  };

  void Acquire();
  void Release();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_WORKERS_H_
