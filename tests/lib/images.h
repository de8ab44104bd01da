// The busybox image that tests and benchmarks run real containers from: the one
// examples/images/make-busybox-image builds (examples/run's). Header-only and without
// doctest, for the benchmarks too. REQUIRES: PETREL_SOURCE_DIR defined (the project's
// source directory) where it is included.
#ifndef PETREL_TESTS_LIB_IMAGES_H_
#define PETREL_TESTS_LIB_IMAGES_H_

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "petrel/status.h"

namespace petrel::testing {

// Builds the busybox image as `path` (an OCI archive): its reference,
// "oci-archive:<path>". IOError naming the command when the script fails.
inline Result<std::string> MakeBusyboxImage(const std::string& path) {
  const std::string cmd = std::string(PETREL_SOURCE_DIR) + "/examples/images/make-busybox-image '" +
                          path + "' >/dev/null";
  if (std::system(cmd.c_str()) != 0) return Status::IOError("failed: " + cmd);
  return "oci-archive:" + path;
}

// The reference of the busybox image: $PETREL_TEST_IMAGE when set (CTest's fixture
// test images.busybox builds it once per run, tests/CMakeLists.txt), else an image
// built on the first call into a directory of its own, removed when the process ends.
inline Result<std::string> BusyboxImage() {
  if (const char* given = std::getenv("PETREL_TEST_IMAGE"); given != nullptr && *given) {
    return std::string(given);
  }
  struct Built {
    std::string dir;
    Result<std::string> image = Status::Internal("not built");
    Built() {
      const char* base = std::getenv("TMPDIR");
      std::string tmpl = std::string(base && *base ? base : "/tmp") + "/petrel-image-XXXXXX";
      if (mkdtemp(tmpl.data()) == nullptr) {
        image = Status::IOError("mkdtemp " + tmpl + " failed");
        return;
      }
      dir = tmpl;
      image = MakeBusyboxImage(dir + "/busybox.tar");
    }
    ~Built() {
      std::error_code ec;
      if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    }
  };
  static const Built built;
  return built.image;
}

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_IMAGES_H_
