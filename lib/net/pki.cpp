// The cluster's certificates with mbedTLS 2.28's X.509 writer.
//
// Node certificates carry keyUsage digitalSignature (ECDHE-ECDSA signs the key
// exchange) and extendedKeyUsage serverAuth + clientAuth: peers are both. mbedTLS 2.28
// has no writer for extendedKeyUsage, so its DER is built here with the ASN.1 writer and
// added as a raw extension; mbedTLS's TLS checks it on both ends.
#include "lib/net/pki.h"

#include <mbedtls/asn1write.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>

#include <ctime>
#include <string_view>

#include "lib/net/mbed.h"
#include "lib/util/strings.h"

namespace petrel::internal {
namespace {

constexpr size_t kPemBytes = 4096;    // a P-256 key, CSR or certificate is well under 1 KiB
constexpr size_t kMaxNameBytes = 64;  // the CN's upper bound in X.509 (ub-common-name)

// "YYYYMMDDhhmmss" in UTC, as mbedtls_x509write_crt_set_validity takes it.
std::string X509Time(TimeMs ms) {
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char out[32];
  strftime(out, sizeof(out), "%Y%m%d%H%M%S", &tm);
  return out;
}

Status CheckName(std::string_view what, const std::string& name) {
  // Plain names need no escaping in "CN=..." and stay one printable line in logs.
  if (!IsPlainName(name, kMaxNameBytes)) {
    return Status::InvalidArgument(std::string(what) + " " + Quote(name) +
                                   ": not 1 to 64 of A-Z a-z 0-9 _ - .");
  }
  return Status::OK();
}

Result<std::string> GenerateKey(MbedRng* rng, mbedtls_pk_context* key) {
  int ret = mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
  if (ret != 0) return Status::Internal(MbedError("generate key", ret));
  ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key), MbedRng::Random,
                            rng->state());
  if (ret != 0) return Status::Internal(MbedError("generate key", ret));
  unsigned char pem[kPemBytes];
  ret = mbedtls_pk_write_key_pem(key, pem, sizeof(pem));
  if (ret != 0) return Status::Internal(MbedError("write key", ret));
  return std::string(reinterpret_cast<char*>(pem));
}

Status ParseKey(const std::string& pem, std::string_view what, mbedtls_pk_context* key) {
  int ret = mbedtls_pk_parse_key(key, reinterpret_cast<const unsigned char*>(pem.c_str()),
                                 pem.size() + 1, nullptr, 0);
  if (ret != 0)
    return Status::InvalidArgument(MbedError(std::string("parse ") + std::string(what), ret));
  return Status::OK();
}

// extendedKeyUsage ::= SEQUENCE OF KeyPurposeId: serverAuth, clientAuth.
Status AddServerAndClientAuth(mbedtls_x509write_cert* crt) {
  unsigned char buf[64];
  unsigned char* p = buf + sizeof(buf);
  int len = 0;
  int ret;
  for (std::string_view oid :
       {std::string_view(MBEDTLS_OID_CLIENT_AUTH), std::string_view(MBEDTLS_OID_SERVER_AUTH)}) {
    ret = mbedtls_asn1_write_oid(&p, buf, oid.data(), oid.size());
    if (ret < 0) return Status::Internal(MbedError("write extendedKeyUsage", ret));
    len += ret;
  }
  ret = mbedtls_asn1_write_len(&p, buf, len);
  if (ret < 0) return Status::Internal(MbedError("write extendedKeyUsage", ret));
  len += ret;
  ret = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
  if (ret < 0) return Status::Internal(MbedError("write extendedKeyUsage", ret));
  len += ret;
  ret = mbedtls_x509write_crt_set_extension(crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                            MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0, p,
                                            len);
  if (ret != 0) return Status::Internal(MbedError("write extendedKeyUsage", ret));
  return Status::OK();
}

// The parts every certificate shares: version 3, SHA-256, a random positive 128-bit
// serial, the validity, the subject and its key, the issuer and its key.
Status PrepareCertificate(MbedRng* rng, mbedtls_x509write_cert* crt,
                          mbedtls_pk_context* subject_key, const std::string& subject,
                          mbedtls_pk_context* issuer_key, const std::string& issuer, TimeMs now,
                          int days) {
  if (days <= 0) return Status::InvalidArgument("validity: days must be positive");
  mbedtls_x509write_crt_set_version(crt, MBEDTLS_X509_CRT_VERSION_3);
  mbedtls_x509write_crt_set_md_alg(crt, MBEDTLS_MD_SHA256);
  mbedtls_x509write_crt_set_subject_key(crt, subject_key);
  mbedtls_x509write_crt_set_issuer_key(crt, issuer_key);
  unsigned char serial_bytes[16];
  int ret = MbedRng::Random(rng->state(), serial_bytes, sizeof(serial_bytes));
  if (ret != 0) return Status::Internal(MbedError("serial", ret));
  serial_bytes[0] &= 0x7f;  // DER INTEGERs are signed: keep the serial positive
  serial_bytes[0] |= 0x40;  // and 16 bytes long
  MbedMpi serial;
  ret = mbedtls_mpi_read_binary(serial.get(), serial_bytes, sizeof(serial_bytes));
  if (ret == 0) ret = mbedtls_x509write_crt_set_serial(crt, serial.get());
  if (ret != 0) return Status::Internal(MbedError("serial", ret));
  std::string not_before = X509Time(now);
  std::string not_after = X509Time(now + static_cast<TimeMs>(days) * 86400 * 1000);
  ret = mbedtls_x509write_crt_set_validity(crt, not_before.c_str(), not_after.c_str());
  if (ret != 0) return Status::InvalidArgument(MbedError("validity", ret));
  ret = mbedtls_x509write_crt_set_subject_name(crt, subject.c_str());
  if (ret != 0) return Status::InvalidArgument(MbedError("subject " + subject, ret));
  ret = mbedtls_x509write_crt_set_issuer_name(crt, issuer.c_str());
  if (ret != 0) return Status::InvalidArgument(MbedError("issuer " + issuer, ret));
  ret = mbedtls_x509write_crt_set_subject_key_identifier(crt);
  if (ret == 0) ret = mbedtls_x509write_crt_set_authority_key_identifier(crt);
  if (ret != 0) return Status::Internal(MbedError("key identifiers", ret));
  return Status::OK();
}

Result<std::string> WriteCertificate(MbedRng* rng, mbedtls_x509write_cert* crt) {
  unsigned char pem[kPemBytes];
  int ret = mbedtls_x509write_crt_pem(crt, pem, sizeof(pem), MbedRng::Random, rng->state());
  if (ret != 0) return Status::Internal(MbedError("write certificate", ret));
  return std::string(reinterpret_cast<char*>(pem));
}

}  // namespace

Result<CertAndKey> CreateCa(const std::string& cluster_id, TimeMs now, int days) {
  PETREL_RETURN_IF_ERROR(CheckName("cluster id", cluster_id).WithContext("create ca"));
  MbedRng rng;
  PETREL_RETURN_IF_ERROR(rng.Seed("petrel ca").WithContext("create ca"));
  MbedPk key;
  Result<std::string> key_pem = GenerateKey(&rng, key.get());
  if (!key_pem.ok()) return key_pem.status().WithContext("create ca");
  std::string name = "CN=petrel cluster " + cluster_id;
  MbedCrtWriter crt;
  PETREL_RETURN_IF_ERROR(
      PrepareCertificate(&rng, crt.get(), key.get(), name, key.get(), name, now, days)
          .WithContext("create ca"));
  int ret = mbedtls_x509write_crt_set_basic_constraints(crt.get(), 1, 0);
  if (ret == 0) {
    ret = mbedtls_x509write_crt_set_key_usage(
        crt.get(), MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN);
  }
  if (ret != 0) return Status::Internal(MbedError("create ca: extensions", ret));
  Result<std::string> cert_pem = WriteCertificate(&rng, crt.get());
  if (!cert_pem.ok()) return cert_pem.status().WithContext("create ca");
  return CertAndKey{std::move(cert_pem).value(), std::move(key_pem).value()};
}

Result<KeyAndCsr> CreateKeyAndCsr(const std::string& node_name) {
  PETREL_RETURN_IF_ERROR(CheckName("node name", node_name).WithContext("create csr"));
  MbedRng rng;
  PETREL_RETURN_IF_ERROR(rng.Seed("petrel csr").WithContext("create csr"));
  MbedPk key;
  Result<std::string> key_pem = GenerateKey(&rng, key.get());
  if (!key_pem.ok()) return key_pem.status().WithContext("create csr");
  MbedCsrWriter csr;
  mbedtls_x509write_csr_set_md_alg(csr.get(), MBEDTLS_MD_SHA256);
  mbedtls_x509write_csr_set_key(csr.get(), key.get());
  int ret = mbedtls_x509write_csr_set_subject_name(csr.get(), ("CN=" + node_name).c_str());
  if (ret != 0) return Status::InvalidArgument(MbedError("create csr: subject", ret));
  unsigned char pem[kPemBytes];
  ret = mbedtls_x509write_csr_pem(csr.get(), pem, sizeof(pem), MbedRng::Random, rng.state());
  if (ret != 0) return Status::Internal(MbedError("create csr: write", ret));
  return KeyAndCsr{std::move(key_pem).value(), std::string(reinterpret_cast<char*>(pem))};
}

Result<std::string> SignCsr(const CertAndKey& ca, const std::string& csr_pem,
                            const std::string& node_name, TimeMs now, int days) {
  PETREL_RETURN_IF_ERROR(CheckName("node name", node_name).WithContext("sign csr"));
  MbedCrt ca_crt;
  PETREL_RETURN_IF_ERROR(
      ParseCertificates(ca.cert_pem, "ca certificate", ca_crt.get()).WithContext("sign csr"));
  MbedPk ca_key;
  PETREL_RETURN_IF_ERROR(ParseKey(ca.key_pem, "ca key", ca_key.get()).WithContext("sign csr"));
  int ret = mbedtls_pk_check_pair(&ca_crt.get()->pk, ca_key.get());
  if (ret != 0)
    return Status::InvalidArgument(
        MbedError("sign csr: ca key does not match ca certificate", ret));

  MbedCsr csr;
  ret = mbedtls_x509_csr_parse(csr.get(), reinterpret_cast<const unsigned char*>(csr_pem.c_str()),
                               csr_pem.size() + 1);
  if (ret != 0) return Status::InvalidArgument(MbedError("sign csr: parse csr", ret));
  // The CSR's signature proves its sender holds the key being certified.
  const mbedtls_md_info_t* md = mbedtls_md_info_from_type(csr.get()->sig_md);
  if (md == nullptr) return Status::InvalidArgument("sign csr: csr: unknown signature hash");
  unsigned char hash[MBEDTLS_MD_MAX_SIZE];
  ret = mbedtls_md(md, csr.get()->cri.p, csr.get()->cri.len, hash);
  if (ret == 0) {
    ret = mbedtls_pk_verify_ext(csr.get()->sig_pk, csr.get()->sig_opts, &csr.get()->pk,
                                csr.get()->sig_md, hash, mbedtls_md_get_size(md), csr.get()->sig.p,
                                csr.get()->sig.len);
  }
  if (ret != 0) return Status::InvalidArgument(MbedError("sign csr: csr signature", ret));
  if (!mbedtls_pk_can_do(&csr.get()->pk, MBEDTLS_PK_ECKEY)) {
    return Status::InvalidArgument("sign csr: csr key is not an EC key");
  }
  std::string cn = CommonName(csr.get()->subject);
  if (cn != node_name) {
    return Status::InvalidArgument("sign csr: csr names " + Quote(cn) + ", not node " +
                                   Quote(node_name));
  }

  char issuer[512];
  ret = mbedtls_x509_dn_gets(issuer, sizeof(issuer), &ca_crt.get()->subject);
  if (ret < 0) return Status::Internal(MbedError("sign csr: ca subject", ret));

  MbedRng rng;
  PETREL_RETURN_IF_ERROR(rng.Seed("petrel sign").WithContext("sign csr"));
  MbedCrtWriter crt;
  PETREL_RETURN_IF_ERROR(PrepareCertificate(&rng, crt.get(), &csr.get()->pk, "CN=" + node_name,
                                            ca_key.get(), issuer, now, days)
                             .WithContext("sign csr"));
  ret = mbedtls_x509write_crt_set_basic_constraints(crt.get(), 0, -1);
  if (ret == 0)
    ret = mbedtls_x509write_crt_set_key_usage(crt.get(), MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
  if (ret != 0) return Status::Internal(MbedError("sign csr: extensions", ret));
  PETREL_RETURN_IF_ERROR(AddServerAndClientAuth(crt.get()).WithContext("sign csr"));
  Result<std::string> pem = WriteCertificate(&rng, crt.get());
  if (!pem.ok()) return pem.status().WithContext("sign csr");
  return pem;
}

Result<std::string> CertFingerprint(const std::string& cert_pem) {
  MbedCrt crt;
  PETREL_RETURN_IF_ERROR(ParseCertificates(cert_pem, "certificate", crt.get()));
  return Fingerprint(*crt.get());
}

Result<std::string> CertCommonName(const std::string& cert_pem) {
  MbedCrt crt;
  PETREL_RETURN_IF_ERROR(ParseCertificates(cert_pem, "certificate", crt.get()));
  return CommonName(crt.get()->subject);
}

}  // namespace petrel::internal
