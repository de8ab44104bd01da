// mbedTLS contexts as owned C++ values, written once for lib/net (keys, certificates,
// CSRs, TLS sessions and their configurations), and the one-line error text of a
// failed mbedTLS call.
//
// Thread-safety: a context belongs to one owner; MbedError may be called from any
// thread.
#ifndef PETREL_LIB_NET_MBED_H_
#define PETREL_LIB_NET_MBED_H_

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>

#include <string>
#include <string_view>

#include "petrel/status.h"

namespace petrel::internal {

// An mbedTLS context initialised on construction and freed on destruction; neither
// copied nor moved (mbedTLS contexts point into themselves and at each other).
template <typename T, void (*Init)(T*), void (*Free)(T*)>
class Mbed {
 public:
  Mbed() { Init(&ctx_); }
  ~Mbed() { Free(&ctx_); }
  Mbed(const Mbed&) = delete;
  Mbed& operator=(const Mbed&) = delete;

  T* get() { return &ctx_; }
  const T* get() const { return &ctx_; }

 private:
  T ctx_;
};

using MbedPk = Mbed<mbedtls_pk_context, mbedtls_pk_init, mbedtls_pk_free>;
using MbedCrt = Mbed<mbedtls_x509_crt, mbedtls_x509_crt_init, mbedtls_x509_crt_free>;
using MbedCsr = Mbed<mbedtls_x509_csr, mbedtls_x509_csr_init, mbedtls_x509_csr_free>;
using MbedCrtWriter =
    Mbed<mbedtls_x509write_cert, mbedtls_x509write_crt_init, mbedtls_x509write_crt_free>;
using MbedCsrWriter =
    Mbed<mbedtls_x509write_csr, mbedtls_x509write_csr_init, mbedtls_x509write_csr_free>;
using MbedMpi = Mbed<mbedtls_mpi, mbedtls_mpi_init, mbedtls_mpi_free>;
using MbedSsl = Mbed<mbedtls_ssl_context, mbedtls_ssl_init, mbedtls_ssl_free>;
using MbedSslConfig = Mbed<mbedtls_ssl_config, mbedtls_ssl_config_init, mbedtls_ssl_config_free>;

// A CTR-DRBG seeded from the system's entropy: the randomness of keys, serials and TLS
// sessions (secrets: never the Clock's Random()).
class MbedRng {
 public:
  MbedRng();
  ~MbedRng();
  MbedRng(const MbedRng&) = delete;
  MbedRng& operator=(const MbedRng&) = delete;

  // Seeds the generator. REQUIRES: called once, before any use.
  Status Seed(std::string_view personalization);
  // The generator, for the f_rng/p_rng pairs of mbedTLS's API.
  static int Random(void* rng, unsigned char* out, size_t size);
  void* state() { return &drbg_; }

 private:
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
};

// "<step>: <mbedtls_strerror's text>" ("sign csr: X509 - Certificate verification
// failed ..."), for a failed mbedTLS call that returned `ret`.
std::string MbedError(std::string_view step, int ret);

// Parses the PEM certificate(s) of `pem` into `crt` (appending to its chain).
Status ParseCertificates(const std::string& pem, std::string_view what, mbedtls_x509_crt* crt);

// The CN of a subject (a certificate's or a CSR's), "" when it has none.
std::string CommonName(const mbedtls_x509_name& subject);

// SHA-256 of `crt`'s DER encoding, lower-case hex.
std::string Fingerprint(const mbedtls_x509_crt& crt);

// mbedtls_x509_crt_verify_info's text for verification `flags`, on one line.
std::string VerifyFlagsText(uint32_t flags);

}  // namespace petrel::internal

#endif  // PETREL_LIB_NET_MBED_H_
