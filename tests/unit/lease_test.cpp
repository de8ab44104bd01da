// The lease file (lib/util/lease.h): what the cluster writes and a runtime's watcher
// reads, and where each node's goes.
#include "lib/util/lease.h"

#include <doctest/doctest.h>

#include "tests/lib/files.h"

namespace petrel::internal {
namespace {

using testing::TempDir;
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
}

}  // namespace
}  // namespace petrel::internal
