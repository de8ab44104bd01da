// Content digests of image blobs: "sha256:<64 lowercase hex digits>", the form OCI
// descriptors and docker configs use. The hashing itself is lib/util/sha256.h.
#ifndef PETREL_LIB_IMAGE_DIGEST_H_
#define PETREL_LIB_IMAGE_DIGEST_H_

#include <string>
#include <string_view>

#include "lib/util/sha256.h"

namespace petrel::internal {

// "sha256:<hex>" of `data`.
std::string Sha256Digest(std::string_view data);

// "sha256:<hex>" of everything passed to `hash`. REQUIRES: `hash` not finished before.
std::string FinishDigest(Sha256* hash);

// True for "sha256:" followed by exactly 64 lowercase hex digits, the only digests
// petrel accepts (so a digest is always safe to use as a file name).
bool IsSha256Digest(std::string_view digest);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_DIGEST_H_
