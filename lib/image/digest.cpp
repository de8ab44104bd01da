#include "lib/image/digest.h"

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

namespace petrel::internal {

struct Sha256::Context {
  mbedtls_sha256_context ctx;
};

// Software SHA-256 cannot fail; only hardware-accelerated builds have error paths.
Sha256::Sha256() : ctx_(new Context) {
  mbedtls_sha256_init(&ctx_->ctx);
#if MBEDTLS_VERSION_MAJOR >= 3
  (void)mbedtls_sha256_starts(&ctx_->ctx, 0);
#else
  (void)mbedtls_sha256_starts_ret(&ctx_->ctx, 0);
#endif
}

Sha256::~Sha256() { mbedtls_sha256_free(&ctx_->ctx); }

void Sha256::Update(const void* data, size_t size) {
  if (size == 0) return;
  const auto* bytes = static_cast<const unsigned char*>(data);
#if MBEDTLS_VERSION_MAJOR >= 3
  (void)mbedtls_sha256_update(&ctx_->ctx, bytes, size);
#else
  (void)mbedtls_sha256_update_ret(&ctx_->ctx, bytes, size);
#endif
}

std::string Sha256::Finish() {
  unsigned char sum[32];
#if MBEDTLS_VERSION_MAJOR >= 3
  (void)mbedtls_sha256_finish(&ctx_->ctx, sum);
#else
  (void)mbedtls_sha256_finish_ret(&ctx_->ctx, sum);
#endif
  static const char kHex[] = "0123456789abcdef";
  std::string digest = "sha256:";
  for (unsigned char c : sum) {
    digest += kHex[c >> 4];
    digest += kHex[c & 0xf];
  }
  return digest;
}

std::string Sha256Digest(std::string_view data) {
  Sha256 hash;
  hash.Update(data.data(), data.size());
  return hash.Finish();
}

bool IsSha256Digest(std::string_view digest) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.size() != kPrefix.size() + 64 || digest.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  for (char c : digest.substr(kPrefix.size())) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace petrel::internal
