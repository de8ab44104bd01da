// Content digests of image blobs: "sha256:<64 lowercase hex digits>", the form OCI
// descriptors and docker configs use.
//
// Thread-safety: a Sha256 belongs to one owner.
#ifndef PETREL_LIB_IMAGE_DIGEST_H_
#define PETREL_LIB_IMAGE_DIGEST_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace petrel::internal {

// A streaming SHA-256 (an mbedTLS context, owned).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  // "sha256:<hex>" of everything passed to Update. REQUIRES: called once.
  std::string Finish();

 private:
  struct Context;
  std::unique_ptr<Context> ctx_;
};

// "sha256:<hex>" of `data`.
std::string Sha256Digest(std::string_view data);

// True for "sha256:" followed by exactly 64 lowercase hex digits, the only digests
// petrel accepts (so a digest is always safe to use as a file name).
bool IsSha256Digest(std::string_view digest);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_DIGEST_H_
