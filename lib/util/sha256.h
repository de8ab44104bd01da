// SHA-256, written once for every module that hashes: image digests (lib/image) and
// workload template hashes (lib/spec).
//
// Thread-safety: a Sha256 belongs to one owner; Sha256Hex may be called from any thread.
#ifndef PETREL_LIB_UTIL_SHA256_H_
#define PETREL_LIB_UTIL_SHA256_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace petrel::internal {

// Another implementation of SHA-256 a Sha256 may run on, as functions of a library that
// stays loaded while any Sha256 uses them (OpenSSL's: lib/image/libcrypto_sha256.h).
struct Sha256Engine {
  void* (*start)();  // a new context, started; null when it cannot be made
  void (*update)(void* ctx, const void* data, size_t size);
  void (*finish)(void* ctx, unsigned char sum[32]);
  void (*free)(void* ctx);
};

// A streaming SHA-256: an mbedTLS context, owned, or one of `engine`'s.
class Sha256 {
 public:
  Sha256();
  // `engine` null, or unable to start a context: mbedTLS.
  explicit Sha256(const Sha256Engine* engine);
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(std::string_view data) { Update(data.data(), data.size()); }
  // The 64 lowercase hex digits of the hash of everything passed to Update.
  // REQUIRES: called once.
  std::string HexDigest();

 private:
  struct Context;
  std::unique_ptr<Context> ctx_;
};

// The 64 lowercase hex digits of the SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_SHA256_H_
