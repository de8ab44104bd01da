#include "lib/image/digest.h"

namespace petrel::internal {
namespace {

constexpr std::string_view kPrefix = "sha256:";

}  // namespace

std::string Sha256Digest(std::string_view data) { return std::string(kPrefix) + Sha256Hex(data); }

std::string FinishDigest(Sha256* hash) { return std::string(kPrefix) + hash->HexDigest(); }

bool IsSha256Digest(std::string_view digest) {
  if (digest.size() != kPrefix.size() + 64 || digest.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  for (char c : digest.substr(kPrefix.size())) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace petrel::internal
