// The lease file (lib/util/lease.h): what the cluster writes and a runtime's watcher
// reads, and where each node's goes.
#include "lib/util/lease.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "lib/util/fork.h"
#include "lib/util/fs.h"
#include "tests/lib/files.h"
#include "tests/lib/wait.h"

namespace petrel::internal {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WaitFor;
using testing::WriteFile;

TEST_SUITE("lease") {
  TEST_CASE("a renewal reads back, and anything else counts as run out") {
    TempDir dir;
    const std::string path = dir.Sub("n1.lease");
    CHECK(ReadLease(path.c_str()) == -1);  // missing
    WriteFile(path, LeaseText(86400123));
    CHECK(ReadLease(path.c_str()) == 86400123);
    for (const char* bad :
         {"", "\n", "12", "12x\n", "-5\n", "1 2\n", "99999999999999999999999999999\n"}) {
      WriteFile(path, bad);
      CHECK_MESSAGE(ReadLease(path.c_str()) == -1, bad);
    }
  }

  TEST_CASE("a lease runs out duration_ms after its renewal, and at once when unknown") {
    CHECK_FALSE(LeaseExpired(1000, 500, 1499));
    CHECK(LeaseExpired(1000, 500, 1500));
    CHECK(LeaseExpired(-1, 500, 0));
  }

  TEST_CASE("an enforcer looks again after kLeaseCheckMs, or when the lease would run out") {
    CHECK(NextLeaseLook(1000, 500, 1000) == 1000 + kLeaseCheckMs);
    CHECK(NextLeaseLook(1000, 500, 1450) == 1500);  // runs out before the next check
    CHECK(NextLeaseLook(1000, 500, 1400) == 1500);  // the two at once
  }

  TEST_CASE("a dir in memory is told from one on disk") {
    CHECK_FALSE(InMemory("/proc"));
    CHECK_FALSE(InMemory("/no/such/dir"));
  }

  TEST_CASE("one lease file per node and state dir, however the dir is spelt") {
    TempDir a, b;
    const std::string la = LeaseFileOf("/run/petrel", "n1", a.path());
    CHECK(la.rfind("/run/petrel/n1-", 0) == 0);
    CHECK(la.size() == std::string("/run/petrel/n1-").size() + 16 + std::string(".lease").size());
    CHECK(LeaseFileOf("/run/petrel", "n1", a.path() + "/.") == la);
    CHECK(LeaseFileOf("/run/petrel", "n1", b.path()) != la);
    CHECK(LeaseFileOf("/run/petrel", "n2", a.path()) != la);
  }

  // WatchLease's process, on real processes: a child of this test stands for a
  // container's init, so that how it ended can be read with waitpid.
  struct Child {
    pid_t pid = fork();
    Child() {
      if (pid == 0) {
        ResetSignals();  // not doctest's handlers
        for (;;) pause();
      }
      REQUIRE(pid > 0);
    }
    ~Child() {
      if (pid > 0) End();
    }
    // How it ended (waitpid's status), killing it first unless `wait_ms` passes.
    int End(int wait_ms = 0) {
      int st = 0;
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
      while (waitpid(pid, &st, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() >= until) kill(pid, SIGKILL);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      pid = -1;
      return st;
    }
  };

  // Whether someone (a watcher) holds the flock on `path`.
  bool Held(const std::string& path) {
    UniqueFd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
    return fd.valid() && flock(fd.get(), LOCK_EX | LOCK_NB) != 0;
  }

  TEST_CASE("a lease watcher kills its process once the lease is no longer renewed") {
    TempDir dir;
    const std::string lease = dir.Sub("n1.lease");
    WriteFile(lease, LeaseText(LeaseClockNow()));
    Child init;
    const LeaseWatchPlan plan{{lease, 400}, init.pid, dir.Sub("lock"), dir.Sub("said")};
    int confirmed = 0;
    const auto confirm = [&] {
      confirmed++;
      return Status::OK();
    };
    REQUIRE(WatchLease(plan, confirm).ok());
    CHECK(confirmed == 1);
    CHECK(Held(plan.lock_file));
    // A second call finds the watcher there and starts none (nor asks).
    REQUIRE(WatchLease(plan, confirm).ok());
    CHECK(confirmed == 1);
    // Renewed for a second: the process lives on.
    for (int i = 0; i < 10; i++) {
      WriteFile(lease, LeaseText(LeaseClockNow()));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(kill(init.pid, 0) == 0);
    // No longer renewed: killed within the lease (and a generous margin), said once.
    const auto t0 = std::chrono::steady_clock::now();
    const int st = init.End(10000);
    const auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE(WIFSIGNALED(st));
    CHECK(WTERMSIG(st) == SIGKILL);
    CHECK(took < std::chrono::seconds(5));
    CHECK(WaitFor([&] { return !Held(plan.lock_file); }, 5));  // and the watcher has ended
    CHECK(ReadFile(plan.said_file) ==
          "petrel-lease: lease " + lease + " ran out: killed the container\n");
  }

  TEST_CASE("a lease watcher ends with its process, and watches only what is confirmed") {
    TempDir dir;
    const std::string lease = dir.Sub("n1.lease");
    WriteFile(lease, LeaseText(LeaseClockNow()));
    const auto ok = [] { return Status::OK(); };
    {
      Child init;
      const LeaseWatchPlan plan{{lease, 60000}, init.pid, dir.Sub("lock1"), dir.Sub("said1")};
      REQUIRE(WatchLease(plan, ok).ok());
      CHECK(Held(plan.lock_file));
      kill(init.pid, SIGTERM);
      CHECK(WIFSIGNALED(init.End(5000)));
      CHECK(WaitFor([&] { return !Held(plan.lock_file); }, 5));
      CHECK(ReadFile(plan.said_file).empty());
    }
    {
      // The pid no longer the one meant: no watcher, and the process is left alone.
      Child init;
      const LeaseWatchPlan plan{{lease, 100}, init.pid, dir.Sub("lock2"), dir.Sub("said2")};
      const Status s = WatchLease(plan, [] { return Status::NotFound("ended"); });
      CHECK(s.IsNotFound());
      CHECK_FALSE(Held(plan.lock_file));
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      CHECK(kill(init.pid, 0) == 0);
    }
    {
      // A process gone already.
      Child init;
      const pid_t gone = init.pid;
      init.End();
      const Status s = WatchLease({{lease, 100}, gone, dir.Sub("lock3"), dir.Sub("said3")}, ok);
      CHECK_MESSAGE(s.IsNotFound(), s.ToString());
    }
  }
}

}  // namespace
}  // namespace petrel::internal
