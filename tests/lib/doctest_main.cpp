// doctest's implementation, once for every test binary, and RunDoctest.
#define DOCTEST_CONFIG_IMPLEMENT
#include "tests/lib/doctest_main.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

namespace petrel::testing {
namespace {

unsigned g_matched = 0;

// A test case that hangs is killed by CTest's timeout with nothing said of where it
// hung. The watchdog says it first: once a test case has run PETREL_TEST_HANG_SECONDS
// (default 240, under the suites' CTest timeouts of 300 s) it prints the case's name,
// the processes of the machine that a hang of petrel may involve, and every thread's
// stack (with gdb, where installed), then aborts.
class Watchdog {
 public:
  static Watchdog& Get() {
    static Watchdog* w = new Watchdog();  // never destroyed: its thread outlives main
    return *w;
  }
  void Arm(const char* name) {
    std::lock_guard<std::mutex> lock(mu_);
    name_ = name;
    deadline_ = std::chrono::steady_clock::now() + limit_;
    armed_ = true;
    cv_.notify_all();
  }
  void Disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
  }

 private:
  Watchdog() {
    const char* env = std::getenv("PETREL_TEST_HANG_SECONDS");
    const long seconds = env != nullptr ? std::atol(env) : 240;
    limit_ = std::chrono::seconds(seconds > 0 ? seconds : 240);
    std::thread([this] { Run(); }).detach();
  }
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (!armed_) {
        cv_.wait(lock);
        continue;
      }
      if (cv_.wait_until(lock, deadline_) == std::cv_status::timeout && armed_ &&
          std::chrono::steady_clock::now() >= deadline_) {
        Report();
        std::abort();
      }
    }
  }
  void Report() {
    std::fprintf(stderr, "\nHANG: test case \"%s\" has run %lld s; what runs now:\n", name_.c_str(),
                 static_cast<long long>(limit_.count()));
    std::fflush(stderr);
    const std::string pid = std::to_string(getpid());
    const std::string ps =
        "ps -eo pid,ppid,pgid,stat,etimes,wchan:24,args | "
        "grep -E 'PID|petrel|crun|runc|conmon|containerd|docker|" +
        pid + "' | grep -v grep 1>&2";
    (void)std::system(ps.c_str());
    const std::string gdb = "command -v gdb >/dev/null && gdb -p " + pid +
                            " -batch -nx -ex 'thread apply all bt 12' >&2 2>/dev/null";
    (void)std::system(gdb.c_str());
    std::fflush(stderr);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::string name_;
  bool armed_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::seconds limit_{240};
};

// Counts the test cases that passed the filters, and arms the watchdog for each.
struct MatchCounter : doctest::IReporter {
  explicit MatchCounter(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& stats) override {
    g_matched = stats.numTestCasesPassingFilters;
  }
  void test_case_start(const doctest::TestCaseData& data) override {
    Watchdog::Get().Arm(data.m_name);
  }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override { Watchdog::Get().Disarm(); }
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("match-counter", 1, MatchCounter);

}  // namespace

int RunDoctest(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;  // --help, --list-test-cases, ...: no run
  if (rc == 0 && g_matched == 0) {
    std::fprintf(stderr, "no test case matches the filters: 0 test cases run\n");
    return 1;
  }
  return rc;
}

}  // namespace petrel::testing
