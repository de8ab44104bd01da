// doctest's implementation, once for every test binary, and RunDoctest.
#define DOCTEST_CONFIG_IMPLEMENT
#include "tests/lib/doctest_main.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>

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
  int rc = context.run();
  if (context.shouldExit()) return rc;
  bool filtered = false;
  for (int i = 1; i < argc; i++) {
    filtered = filtered || std::strncmp(argv[i], "--test-case=", 12) == 0 ||
               std::strncmp(argv[i], "-tc=", 4) == 0;
  }
  if (rc == 0 && filtered && g_matched == 0) {
    std::fprintf(stderr, "no test case matches the filter\n");
    return 1;
  }
  return rc;
}

}  // namespace petrel::testing
