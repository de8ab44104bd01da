// Tests of lib/net: the cluster's certificates, and the mutual-TLS peer transport over
// real sockets on 127.0.0.1 and a real libuv loop (the one place the unit tests touch
// the network: what is tested is the sockets, TLS and raft's own transport).
#include <doctest/doctest.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/sha256.h>

#include <string>

#include "lib/net/mbed.h"
#include "lib/net/pki.h"
#include "petrel/status.h"

namespace petrel::internal {
namespace {

constexpr TimeMs kNow = 1764547200000;  // 2025-12-01

CertAndKey MustCa(const std::string& cluster) {
  Result<CertAndKey> ca = CreateCa(cluster, kNow);
  REQUIRE_MESSAGE(ca.ok(), ca.status().ToString());
  return std::move(ca).value();
}

// A node's identity signed by `ca`.
CertAndKey MustNode(const CertAndKey& ca, const std::string& name) {
  Result<KeyAndCsr> csr = CreateKeyAndCsr(name);
  REQUIRE_MESSAGE(csr.ok(), csr.status().ToString());
  Result<std::string> cert = SignCsr(ca, csr->csr_pem, name, kNow);
  REQUIRE_MESSAGE(cert.ok(), cert.status().ToString());
  return CertAndKey{std::move(cert).value(), csr->key_pem};
}

// The request of `csr_pem` (its subject and public key) signed with `key_pem`, another
// key than the one it certifies: what a CSR forged for a stolen name looks like.
std::string SignedByOtherKey(const std::string& csr_pem, const std::string& key_pem) {
  MbedCsr csr;
  REQUIRE(mbedtls_x509_csr_parse(csr.get(), reinterpret_cast<const unsigned char*>(csr_pem.c_str()),
                                 csr_pem.size() + 1) == 0);
  MbedPk key;
  REQUIRE(mbedtls_pk_parse_key(key.get(), reinterpret_cast<const unsigned char*>(key_pem.c_str()),
                               key_pem.size() + 1, nullptr, 0) == 0);
  MbedRng rng;
  REQUIRE(rng.Seed("test").ok());
  unsigned char hash[32];
  REQUIRE(mbedtls_sha256_ret(csr.get()->cri.p, csr.get()->cri.len, hash, 0) == 0);
  unsigned char sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
  size_t sig_len = 0;
  REQUIRE(mbedtls_pk_sign(key.get(), MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, &sig_len,
                          MbedRng::Random, rng.state()) == 0);
  // CertificationRequest ::= SEQUENCE { info, signatureAlgorithm, signature BIT STRING },
  // written backwards as mbedTLS's ASN.1 writer does.
  unsigned char der[2048];
  unsigned char* p = der + sizeof(der);
  size_t len = 0;
  len += mbedtls_asn1_write_bitstring(&p, der, sig, sig_len * 8);
  len += mbedtls_asn1_write_algorithm_identifier(&p, der, MBEDTLS_OID_ECDSA_SHA256,
                                                 MBEDTLS_OID_SIZE(MBEDTLS_OID_ECDSA_SHA256), 0);
  len += mbedtls_asn1_write_raw_buffer(&p, der, csr.get()->cri.p, csr.get()->cri.len);
  len += mbedtls_asn1_write_len(&p, der, len);
  len += mbedtls_asn1_write_tag(&p, der, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
  unsigned char pem[4096];
  size_t pem_len = 0;
  REQUIRE(mbedtls_pem_write_buffer("-----BEGIN CERTIFICATE REQUEST-----\n",
                                   "-----END CERTIFICATE REQUEST-----\n", p, len, pem, sizeof(pem),
                                   &pem_len) == 0);
  return std::string(reinterpret_cast<char*>(pem));
}

TEST_SUITE("net") {
  TEST_CASE("pki: a CA signs a node's CSR; fingerprints and names read back") {
    CertAndKey ca = MustCa("c1");
    CHECK(ca.cert_pem.find("BEGIN CERTIFICATE") != std::string::npos);
    CHECK(ca.key_pem.find("PRIVATE KEY") != std::string::npos);
    CHECK(CertCommonName(ca.cert_pem).value() == "petrel cluster c1");

    CertAndKey node = MustNode(ca, "node-a");
    CHECK(CertCommonName(node.cert_pem).value() == "node-a");
    Result<std::string> fp = CertFingerprint(node.cert_pem);
    REQUIRE(fp.ok());
    CHECK(fp->size() == 64);
    CHECK(fp->find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(*fp == CertFingerprint(node.cert_pem).value());
    CHECK(*fp != CertFingerprint(ca.cert_pem).value());
    // Two certificates for the same name differ (fresh key, random serial).
    CHECK(*fp != CertFingerprint(MustNode(ca, "node-a").cert_pem).value());
  }

  TEST_CASE("pki: a CSR for another name, or signed by another key, is refused") {
    CertAndKey ca = MustCa("c1");
    Result<KeyAndCsr> csr = CreateKeyAndCsr("node-a");
    REQUIRE(csr.ok());
    Result<std::string> wrong_name = SignCsr(ca, csr->csr_pem, "node-b", kNow);
    CHECK(wrong_name.status().IsInvalidArgument());
    CHECK(wrong_name.status().message().find("node-b") != std::string::npos);

    // Signed with its own key the rebuilt request passes: the forgery below fails for
    // its signature alone.
    CHECK(SignCsr(ca, SignedByOtherKey(csr->csr_pem, csr->key_pem), "node-a", kNow).ok());
    Result<KeyAndCsr> other = CreateKeyAndCsr("node-a");
    REQUIRE(other.ok());
    std::string forged = SignedByOtherKey(csr->csr_pem, other->key_pem);
    Result<std::string> bad_sig = SignCsr(ca, forged, "node-a", kNow);
    CHECK(bad_sig.status().IsInvalidArgument());
    CHECK(bad_sig.status().message().find("csr signature") != std::string::npos);

    CHECK(CreateKeyAndCsr("bad,name").status().IsInvalidArgument());
    CHECK(CertFingerprint("not a certificate").status().IsInvalidArgument());
    // A CA key that does not belong to the CA certificate cannot sign.
    CertAndKey mixed{ca.cert_pem, MustCa("c2").key_pem};
    CHECK(SignCsr(mixed, csr->csr_pem, "node-a", kNow).status().IsInvalidArgument());
  }
}

}  // namespace
}  // namespace petrel::internal
