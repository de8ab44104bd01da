// Files for tests: TempDir, a fresh directory removed with everything in it when the
// object goes away, and whole files read and written in one call.
#ifndef PETREL_TESTS_LIB_FILES_H_
#define PETREL_TESTS_LIB_FILES_H_

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

namespace petrel::testing {

// A fresh directory under $TMPDIR (or /tmp).
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/petrel-test-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The bytes of the file at `path`; "" when it cannot be read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Replaces the file at `path` with `data`, making the directories above it; fails the
// test case when it cannot.
inline void WriteFile(const std::string& path, const std::string& data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  REQUIRE_MESSAGE(out.good(), "cannot write " << path);
}

// Replaces the file at `path` with `data` in one step, as the cluster renews a lease:
// written beside it, then renamed over it, without fsync (a lease lives in memory; an
// fsync on a busy disk can take longer than a lease lasts). Whether it could; asserts
// nothing, so a thread of the test's may call it.
inline bool ReplaceFile(const std::string& path, const std::string& data) {
  {
    std::ofstream out(path + ".tmp", std::ios::binary | std::ios::trunc);
    out << data;
    if (!out.good()) return false;
  }
  std::error_code ec;
  std::filesystem::rename(path + ".tmp", path, ec);
  return !ec;
}

// What a power cut or a bad flash cell may leave of a file that held `good`: its first
// half ("truncated"), nothing ("empty"), or bytes that were never JSON ("garbage").
inline const char* const kDamages[] = {"truncated", "empty", "garbage"};
inline std::string Damaged(const std::string& kind, const std::string& good) {
  if (kind == "truncated") return good.substr(0, good.size() / 2);
  if (kind == "empty") return "";
  return std::string("\0\xff{\"name\": [garbage", 20);
}

}  // namespace petrel::testing

#endif  // PETREL_TESTS_LIB_FILES_H_
