// Fuzzes image layer unpacking (lib/image/layer.h), the largest untrusted input petrel
// reads: the bytes as a layer blob (tar, maybe gzip, zstd, xz or bzip2, with whiteouts,
// links and every entry type) applied to a fresh directory on a tmpfs when there is
// one. The promises:
//   - nothing crashes, leaks or runs away on any input, and a layer that decompresses
//     to more than the limit stops there;
//   - an error is one line;
//   - nothing is written outside the root: the directory around it stays as it was.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lib/image/archive_lib.h"
#include "lib/image/layer.h"
#include "lib/util/fs.h"

namespace {

void Require(bool ok) {
  if (!ok) std::abort();
}

// The input as a layer blob, handed out in pieces of at most 4 KiB.
class MemorySource : public petrel::internal::ByteSource {
 public:
  MemorySource(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  petrel::Result<size_t> Read(void* buf, size_t size) override {
    size_t n = std::min({size, size_ - offset_, size_t{4096}});
    std::memcpy(buf, data_ + offset_, n);
    offset_ += n;
    return n;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t offset_ = 0;
};

std::string Base() {
  static const std::string base = [] {
    std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = dir + "/petrel-layer-fuzz-XXXXXX";
    Require(mkdtemp(tmpl.data()) != nullptr);
    return tmpl;
  }();
  return base;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const petrel::internal::ArchiveUse archive;  // libarchive, when loaded at run time
  Require(archive.status().ok());
  const std::string root = Base() + "/root";
  Require(mkdir(root.c_str(), 0755) == 0);
  int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  Require(fd >= 0);
  MemorySource source(data, size);
  petrel::internal::LayerDigests digests;
  petrel::Status s = petrel::internal::ApplyLayer(&source, fd, 8 << 20, &digests);
  close(fd);
  Require(s.ok() || s.message().find('\n') == std::string::npos);
  // The root is the only thing in the base directory.
  petrel::Result<std::vector<petrel::internal::DirEntry>> around =
      petrel::internal::ListDir(Base());
  Require(around.ok() && around->size() == 1 && (*around)[0].name == "root");
  Require(petrel::internal::RemoveTree(root).ok());
  return 0;
}
