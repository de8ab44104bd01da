// doctest's implementation, once for every test binary, and RunDoctest.
#define DOCTEST_CONFIG_IMPLEMENT
#include "tests/lib/doctest_main.h"

#include <doctest/doctest.h>

#include <cstdio>

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
