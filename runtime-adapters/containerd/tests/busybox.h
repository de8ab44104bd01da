// A root filesystem for the containerd adapter's tests against a real containerd.
#ifndef PETREL_RUNTIME_ADAPTERS_CONTAINERD_TESTS_BUSYBOX_H_
#define PETREL_RUNTIME_ADAPTERS_CONTAINERD_TESTS_BUSYBOX_H_

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace petrel::testing {

// A root filesystem of Debian's busybox-static (/bin/busybox) alone, with the
// directories runc mounts on, so that it serves read-only too.
inline void MakeBusyboxRootfs(const std::string& rootfs) {
  namespace fs = std::filesystem;
  for (const char* d : {"bin", "proc", "dev", "sys", "tmp", "etc"}) {
    fs::create_directories(rootfs + "/" + d);
  }
  std::error_code ec;
  fs::copy_file("/bin/busybox", rootfs + "/bin/busybox", ec);
  REQUIRE_MESSAGE(!ec, "cannot copy /bin/busybox (apt-get install busybox-static): ", ec.message());
  fs::create_symlink("busybox", rootfs + "/bin/sh");
}

}  // namespace petrel::testing

#endif  // PETREL_RUNTIME_ADAPTERS_CONTAINERD_TESTS_BUSYBOX_H_
