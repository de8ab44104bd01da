// Registry image references as Docker writes them: "busybox",
// "ghcr.io/org/app:1.2", "registry.local:5000/app@sha256:<hex>", "127.0.0.1:5000/app:tag".
// One parser for the check at apply (lib/spec) and for the puller (lib/image), so that
// what Apply accepts is exactly what a pull can fetch.
//
// Thread-safety: pure functions.
#ifndef PETREL_LIB_SPEC_IMAGE_REF_H_
#define PETREL_LIB_SPEC_IMAGE_REF_H_

#include <string>
#include <string_view>

#include "petrel/status.h"

namespace petrel::internal {

struct ImageReference {
  std::string domain;      // "docker.io", "ghcr.io", "127.0.0.1:5000" (host[:port])
  std::string repository;  // "library/busybox", "org/app"
  std::string tag;         // "latest" when neither a tag nor a digest was given
  std::string digest;      // "sha256:<64 hex>" or ""

  // The host[:port] to connect to: registry-1.docker.io for docker.io.
  std::string Registry() const;
  // The host alone, without port (for the loopback check).
  std::string Host() const;
  // What the manifest is fetched by: the digest when there is one, else the tag.
  const std::string& ManifestRef() const { return digest.empty() ? tag : digest; }
  // "domain/repository[:tag][@digest]", every default spelled out.
  std::string Canonical() const;
};

// True when `image` names a local file with a transport prefix (oci:, oci-archive:,
// docker-archive:) rather than a registry image.
bool HasPathTransport(std::string_view image);

// Parses a registry reference. InvalidArgument with one line saying what is wrong,
// without the reference itself (the caller names it), e.g.
// "repository \"Org/App\" must be lowercase".
Result<ImageReference> ParseImageReference(std::string_view ref);

}  // namespace petrel::internal

#endif  // PETREL_LIB_SPEC_IMAGE_REF_H_
