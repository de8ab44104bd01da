#include "lib/util/sha256.h"

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

namespace petrel::internal {

struct Sha256::Context {
  mbedtls_sha256_context ctx;
  const Sha256Engine* engine = nullptr;  // non-null: `other` is its context, not `ctx`
  void* other = nullptr;
};

Sha256::Sha256() : Sha256(nullptr) {}

// Software SHA-256 cannot fail; only hardware-accelerated builds have error paths.
Sha256::Sha256(const Sha256Engine* engine) : ctx_(new Context) {
  if (engine != nullptr && (ctx_->other = engine->start()) != nullptr) {
    ctx_->engine = engine;
    return;
  }
  mbedtls_sha256_init(&ctx_->ctx);
#if MBEDTLS_VERSION_MAJOR >= 3
  (void)mbedtls_sha256_starts(&ctx_->ctx, 0);
#else
  (void)mbedtls_sha256_starts_ret(&ctx_->ctx, 0);
#endif
}

Sha256::~Sha256() {
  if (ctx_->engine != nullptr) {
    ctx_->engine->free(ctx_->other);
  } else {
    mbedtls_sha256_free(&ctx_->ctx);
  }
}

void Sha256::Update(const void* data, size_t size) {
  if (size == 0) return;
  if (ctx_->engine != nullptr) return ctx_->engine->update(ctx_->other, data, size);
  const auto* bytes = static_cast<const unsigned char*>(data);
#if MBEDTLS_VERSION_MAJOR >= 3
  (void)mbedtls_sha256_update(&ctx_->ctx, bytes, size);
#else
  (void)mbedtls_sha256_update_ret(&ctx_->ctx, bytes, size);
#endif
}

std::string Sha256::HexDigest() {
  unsigned char sum[32];
  if (ctx_->engine != nullptr) {
    ctx_->engine->finish(ctx_->other, sum);
  } else {
#if MBEDTLS_VERSION_MAJOR >= 3
    (void)mbedtls_sha256_finish(&ctx_->ctx, sum);
#else
    (void)mbedtls_sha256_finish_ret(&ctx_->ctx, sum);
#endif
  }
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * sizeof(sum));
  for (unsigned char c : sum) {
    hex += kHex[c >> 4];
    hex += kHex[c & 0xf];
  }
  return hex;
}

std::string Sha256Hex(std::string_view data) {
  Sha256 hash;
  hash.Update(data);
  return hash.HexDigest();
}

}  // namespace petrel::internal
