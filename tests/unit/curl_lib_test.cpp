// Tests of lib/image/curl_lib.h's HeaderValue: the header lines libcurl hands to the
// registry client and the containerd adapter.
#include "lib/image/curl_lib.h"

#include <doctest/doctest.h>

#include <string>

namespace petrel::internal {
namespace {

TEST_CASE("curl_lib HeaderValue: the name in any case, the value without blanks or line end") {
  std::string value;
  CHECK(HeaderValue("Content-Type: application/json\r\n", "content-type:", &value));
  CHECK(value == "application/json");
  CHECK(HeaderValue("WWW-AUTHENTICATE:\tBearer realm=\"x\" \r\n", "www-authenticate:", &value));
  CHECK(value == "Bearer realm=\"x\"");
  CHECK(HeaderValue("grpc-status: 0\n", "grpc-status:", &value));
  CHECK(value == "0");
}

TEST_CASE("curl_lib HeaderValue: a value of blanks alone is empty, not the line's end") {
  std::string value = "kept";
  CHECK(HeaderValue("grpc-message:  \r\n", "grpc-message:", &value));
  CHECK(value.empty());
  CHECK(HeaderValue("grpc-message:\r\n", "grpc-message:", &value));
  CHECK(value.empty());
}

TEST_CASE("curl_lib HeaderValue: another header, a longer name or a bare name is not it") {
  std::string value = "kept";
  CHECK_FALSE(HeaderValue("content-length: 3\r\n", "content-type:", &value));
  CHECK_FALSE(HeaderValue("grpc-status-details-bin: x\r\n", "grpc-status:", &value));
  CHECK_FALSE(HeaderValue("content-type:", "content-type:", &value));
  CHECK_FALSE(HeaderValue("content", "content-type:", &value));
  CHECK_FALSE(HeaderValue("", "content-type:", &value));
  CHECK(value == "kept");
}

}  // namespace
}  // namespace petrel::internal
