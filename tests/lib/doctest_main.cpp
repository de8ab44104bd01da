// doctest's implementation, once for every test binary, and RunDoctest.
#define DOCTEST_CONFIG_IMPLEMENT
#include "tests/lib/doctest_main.h"

#include <doctest/doctest.h>

#include <cstdio>

// clang 14's LeakSanitizer, on glibc 2.36, can take a thread's dynamic TLS block of a
// dlopen'd library (libcurl's dependencies, loaded while an adapter talks to its daemon)
// for a range at a wild address, and crashes at exit after every case has passed
// ("Tracer caught signal 11" in ScanRangeForPointers; seen in the Docker conformance
// cases). Not intercepting __tls_get_addr leaves those blocks unscanned: leaks are
// still found everywhere else. ASAN_OPTIONS set by the caller come on top.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
extern "C" const char* __asan_default_options() { return "intercept_tls_get_addr=0"; }
#endif
#endif

namespace petrel::testing {
namespace {

unsigned g_matched = 0;

// Counts the test cases that passed the filters.
struct MatchCounter : doctest::IReporter {
  explicit MatchCounter(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& stats) override {
    g_matched = stats.numTestCasesPassingFilters;
  }
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
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
