// The main() of the unit test binaries; every other file in tests/unit holds test cases.
#include "tests/lib/doctest_main.h"

int main(int argc, char** argv) { return petrel::testing::RunDoctest(argc, argv); }
