// RunDoctest: what the main() of each of petrel's doctest binaries calls.
#ifndef PETREL_TESTS_LIB_DOCTEST_MAIN_H_
#define PETREL_TESTS_LIB_DOCTEST_MAIN_H_

namespace petrel::testing {

// Runs the test cases linked into the binary as doctest's command line says. CTest runs
// each test case on its own (--test-case=NAME); a name that matches nothing (CTest cuts
// names at ';') fails, instead of passing with no case run.
int RunDoctest(int argc, char** argv);

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_DOCTEST_MAIN_H_
