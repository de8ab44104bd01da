// RunDoctest: what the main() of each of petrel's doctest binaries calls.
#ifndef PETREL_TESTS_LIB_DOCTEST_MAIN_H_
#define PETREL_TESTS_LIB_DOCTEST_MAIN_H_

namespace petrel::testing {

// Runs the test cases linked into the binary as doctest's command line says. A run
// that matches no test case fails, whatever filtered them out (--test-case, whose
// names CTest cuts at ';', --test-suite, --source-file, ...), instead of passing with
// none run; a listing run (--list-test-cases) is no run and passes.
int RunDoctest(int argc, char** argv);

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_DOCTEST_MAIN_H_
