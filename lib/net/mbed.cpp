#include "lib/net/mbed.h"

#include <mbedtls/error.h>
#include <mbedtls/oid.h>

#include <cstring>

#include "lib/util/sha256.h"

namespace petrel::internal {

MbedRng::MbedRng() {
  mbedtls_entropy_init(&entropy_);
  mbedtls_ctr_drbg_init(&drbg_);
}

MbedRng::~MbedRng() {
  mbedtls_ctr_drbg_free(&drbg_);
  mbedtls_entropy_free(&entropy_);
}

Status MbedRng::Seed(std::string_view personalization) {
  int ret = mbedtls_ctr_drbg_seed(&drbg_, mbedtls_entropy_func, &entropy_,
                                  reinterpret_cast<const unsigned char*>(personalization.data()),
                                  personalization.size());
  if (ret != 0) return Status::Internal(MbedError("seed random generator", ret));
  return Status::OK();
}

int MbedRng::Random(void* rng, unsigned char* out, size_t size) {
  return mbedtls_ctr_drbg_random(rng, out, size);
}

std::string MbedError(std::string_view step, int ret) {
  char text[256];
  mbedtls_strerror(ret, text, sizeof(text));
  std::string out(step);
  out += ": ";
  out += text;
  return out;
}

Status ParseCertificates(const std::string& pem, std::string_view what, mbedtls_x509_crt* crt) {
  // PEM input must include its terminating NUL in the length.
  int ret = mbedtls_x509_crt_parse(crt, reinterpret_cast<const unsigned char*>(pem.c_str()),
                                   pem.size() + 1);
  if (ret != 0) {
    return Status::InvalidArgument(MbedError(std::string("parse ") + std::string(what), ret));
  }
  return Status::OK();
}

std::string CommonName(const mbedtls_x509_name& subject) {
  for (const mbedtls_x509_name* n = &subject; n != nullptr; n = n->next) {
    if (n->oid.p != nullptr && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
      return std::string(reinterpret_cast<const char*>(n->val.p), n->val.len);
    }
  }
  return "";
}

std::string Fingerprint(const mbedtls_x509_crt& crt) {
  return Sha256Hex(std::string_view(reinterpret_cast<const char*>(crt.raw.p), crt.raw.len));
}

std::string VerifyFlagsText(uint32_t flags) {
  char text[512];
  int n = mbedtls_x509_crt_verify_info(text, sizeof(text), "", flags);
  std::string out;
  for (int i = 0; i < n && text[i] != '\0'; ++i) out += text[i] == '\n' ? ';' : text[i];
  while (!out.empty() && (out.back() == ';' || out.back() == ' ')) out.pop_back();
  for (size_t i = 0; (i = out.find(';', i)) != std::string::npos; i += 2) out.insert(i + 1, " ");
  return out.empty() ? "certificate verification failed" : out;
}

}  // namespace petrel::internal
