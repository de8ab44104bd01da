// OpenSSL's SHA-256 for the image store's digests, when OpenSSL's libcrypto is already
// in the process: Debian's libcurl brings it for a registry pull (lib/image/curl_lib.h),
// and it hashes about 5 times as fast as mbedTLS 2.28 here (SHA-NI, AVX2: 128 MiB in
// 80 ms against 370-440 ms). Never loaded for this: on a node that only imports
// archives, libcrypto stays out of petreld's memory and mbedTLS hashes.
//
// Thread-safety: may be called from any thread.
#ifndef PETREL_LIB_IMAGE_LIBCRYPTO_SHA256_H_
#define PETREL_LIB_IMAGE_LIBCRYPTO_SHA256_H_

#include "lib/util/sha256.h"

namespace petrel::internal {

// libcrypto's SHA-256 when libcrypto.so.3 is loaded (dlopen with RTLD_NOLOAD), else null
// (for Sha256's constructor: mbedTLS then). Once found it is kept loaded (the handle is
// never closed; Debian links it -z nodelete anyway), so a Sha256 made with it can never
// outlive it. Cheap after the first success; before it, one dlopen lookup a call, so
// not for the loop thread (the loader's lock may be held by a worker loading libcurl).
const Sha256Engine* LoadedLibcryptoSha256();

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_LIBCRYPTO_SHA256_H_
