// The containerd logger as an embedder's main() runs it (petrel/containerd.h): the
// binary logger_test.cpp starts as containerd's shim would, without building petreld.
#include <cstdio>

#include "petrel/containerd.h"

int main(int argc, char** argv) {
  if (petrel::IsContainerdLoggerCall(argc, argv)) return petrel::RunContainerdLogger(argc, argv);
  std::fprintf(stderr, "usage: %s petrel-log-dir <dir> petrel-log-max <bytes>\n", argv[0]);
  return 2;
}
