// Tests of lib/spec/image_ref.h: registry references as Docker writes them.
#include "lib/spec/image_ref.h"

#include <doctest/doctest.h>

#include <string>

namespace petrel::internal {
namespace {

const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST_CASE("image_ref: good references and their defaults") {
  struct Case {
    std::string ref, domain, repository, tag, digest, registry;
  };
  const Case cases[] = {
      {"busybox", "docker.io", "library/busybox", "latest", "", "registry-1.docker.io"},
      {"busybox:1.36", "docker.io", "library/busybox", "1.36", "", "registry-1.docker.io"},
      {"index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", "",
       "registry-1.docker.io"},
      {"eclipse-mosquitto:2", "docker.io", "library/eclipse-mosquitto", "2", "",
       "registry-1.docker.io"},
      {"org/app", "docker.io", "org/app", "latest", "", "registry-1.docker.io"},
      {"ghcr.io/org/app:1.2", "ghcr.io", "org/app", "1.2", "", "ghcr.io"},
      {"registry.local:5000/app@sha256:" + kHex, "registry.local:5000", "app", "", "sha256:" + kHex,
       "registry.local:5000"},
      {"127.0.0.1:5000/app:tag", "127.0.0.1:5000", "app", "tag", "", "127.0.0.1:5000"},
      {"localhost/a/b/c_d__e.f--g:v1_2.3-x", "localhost", "a/b/c_d__e.f--g", "v1_2.3-x", "",
       "localhost"},
      {"host:5000/app:1@sha256:" + kHex, "host:5000", "app", "1", "sha256:" + kHex, "host:5000"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.ref);
    Result<ImageReference> r = ParseImageReference(c.ref);
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    CHECK(r->domain == c.domain);
    CHECK(r->repository == c.repository);
    CHECK(r->tag == c.tag);
    CHECK(r->digest == c.digest);
    CHECK(r->Registry() == c.registry);
    CHECK(r->ManifestRef() == (c.digest.empty() ? c.tag : c.digest));
  }
  Result<ImageReference> r = ParseImageReference("127.0.0.1:5000/app");
  REQUIRE(r.ok());
  CHECK(r->Host() == "127.0.0.1");
  CHECK(r->Canonical() == "127.0.0.1:5000/app:latest");
}

TEST_CASE("image_ref: bad references say what is wrong") {
  struct Case {
    std::string ref, message;
  };
  const Case cases[] = {
      {"", "empty image reference"},
      {"Busybox", "repository \"Busybox\" must be lowercase"},
      {"ghcr.io/Org/app", "repository \"Org/app\" must be lowercase"},
      {"busy box",
       "repository \"busy box\" has a bad component \"busy box\" (lowercase letters and "
       "digits, joined by '.', '_', '__' or '-')"},
      {"app/",
       "repository \"app/\" has a bad component \"\" (lowercase letters and digits, "
       "joined by '.', '_', '__' or '-')"},
      {"a//b",
       "repository \"a//b\" has a bad component \"\" (lowercase letters and digits, "
       "joined by '.', '_', '__' or '-')"},
      {"-app",
       "repository \"-app\" has a bad component \"-app\" (lowercase letters and "
       "digits, joined by '.', '_', '__' or '-')"},
      {"app:",
       "tag \"\" is not a tag (letters, digits, '_', '.', '-', not starting with '.' or "
       "'-', at most 128)"},
      {"app:-x",
       "tag \"-x\" is not a tag (letters, digits, '_', '.', '-', not starting with "
       "'.' or '-', at most 128)"},
      {"app:" + std::string(129, 'v'),
       "tag \"" + std::string(64, 'v') +
           "...\" is not a tag "
           "(letters, digits, '_', '.', '-', not starting with '.' or '-', at most 128)"},
      {"app@sha256:0123", "digest \"sha256:0123\" is not sha256: and 64 lowercase hex digits"},
      {"app@sha512:" + kHex + kHex,
       "digest \"sha512:0123456789abcdef0123456789abcdef0123456789abcdef012345678...\" is not "
       "supported (only sha256:<64 hex digits>)"},
      {"host:99999/app",
       "registry \"host:99999\" is not a host name or address with an optional "
       "port"},
      {"[::1]:5000/app",
       "registry \"[::1]:5000\" is not a host name or address with an optional "
       "port"},
      {"bad_host.io/app",
       "registry \"bad_host.io\" is not a host name or address with an "
       "optional port"},
      {"docker://busybox",
       "has a URL scheme (write a registry image without one, as docker does: "
       "host[:port]/repository[:tag][@sha256:digest])"},
      {std::string(300, 'a'), "name is longer than 255"},
      {std::string(600, 'a'), "image reference is too long"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.ref);
    Result<ImageReference> r = ParseImageReference(c.ref);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
    CHECK(r.status().message() == c.message);
  }
}

TEST_CASE("image_ref: transports are told apart from registry references") {
  CHECK(HasPathTransport("oci:/x"));
  CHECK(HasPathTransport("oci-archive:/x.tar"));
  CHECK(HasPathTransport("docker-archive:/x.tar"));
  CHECK_FALSE(HasPathTransport("busybox"));
  CHECK_FALSE(HasPathTransport("oci.example.com/app"));
}

}  // namespace
}  // namespace petrel::internal
