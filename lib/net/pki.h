// The cluster's certificates: a CA per cluster, a key and certificate per node, all
// ECDSA P-256 (mbedTLS 2.28: TLS 1.2 peers, X.509 and CSR writing).
//
// Everything is PEM text; keys are never written anywhere by this module (the caller
// stores them, mode 0600). Errors say which step failed ("sign csr: ..."). Cluster ids
// and node names are 1 to 64 of A-Z a-z 0-9 _ - . (IsPlainName): InvalidArgument
// otherwise.
#ifndef PETREL_LIB_NET_PKI_H_
#define PETREL_LIB_NET_PKI_H_

#include <cstdint>
#include <string>

#include "petrel/clock.h"
#include "petrel/status.h"

namespace petrel::internal {

struct CertAndKey {
  std::string cert_pem;
  std::string key_pem;
};

struct KeyAndCsr {
  std::string key_pem;
  std::string csr_pem;
};

// A self-signed CA certificate, CN "petrel cluster <cluster_id>", valid from `now` for
// `days`, and its key.
Result<CertAndKey> CreateCa(const std::string& cluster_id, TimeMs now, int days = 3650);

// A new node key and a CSR whose subject CN is `node_name`.
Result<KeyAndCsr> CreateKeyAndCsr(const std::string& node_name);

// The node certificate for `csr_pem`, signed by `ca`: CN `node_name` (the CSR's CN must
// equal it: InvalidArgument otherwise), a random serial, valid from `now` for `days`,
// usable both as TLS client and server (peers are both).
Result<std::string> SignCsr(const CertAndKey& ca, const std::string& csr_pem,
                            const std::string& node_name, TimeMs now, int days = 3650);

// SHA-256 of the certificate's DER encoding, 64 lower-case hex digits: a CA's hash in
// join tokens, a node certificate's fingerprint in the member table.
Result<std::string> CertFingerprint(const std::string& cert_pem);

// The subject's CN.
Result<std::string> CertCommonName(const std::string& cert_pem);

}  // namespace petrel::internal

#endif  // PETREL_LIB_NET_PKI_H_
