// Tests of lib/image/registry_auth.h: credentials from a Docker config.json and the
// WWW-Authenticate challenges of registries. The flows against a real registry are in
// tests/integration/registry_auth_test.sh.
#include "lib/image/registry_auth.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace petrel::internal {
namespace {

const std::string kPath = "/etc/petrel/auth.json";

// The message of a ParseRegistryAuth that must fail.
std::string ParseError(const std::string& text) {
  Result<RegistryAuth> r = ParseRegistryAuth(text, kPath);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kInvalidArgument);
  return r.status().message();
}

TEST_CASE("registry_auth: config.json keys name registries as references do") {
  CHECK(RegistryAuthKey("https://index.docker.io/v1/") == "docker.io");
  CHECK(RegistryAuthKey("index.docker.io") == "docker.io");
  CHECK(RegistryAuthKey("registry-1.docker.io") == "docker.io");
  CHECK(RegistryAuthKey("docker.io") == "docker.io");
  CHECK(RegistryAuthKey("HTTPS://Ghcr.IO/v2/") == "ghcr.io");
  CHECK(RegistryAuthKey("http://reg.local:5000/path") == "reg.local:5000");
  CHECK(RegistryAuthKey("127.0.0.1:5000") == "127.0.0.1:5000");
  CHECK(RegistryAuthKey("https://") == "");
}

TEST_CASE("registry_auth: auth in base64, username and password, and Docker Hub's keys") {
  // "alice:pa:ss" and "bob:" in base64: the password is all after the first colon.
  Result<RegistryAuth> r = ParseRegistryAuth(R"({
    "auths": {
      "127.0.0.1:5000": {"auth": "YWxpY2U6cGE6c3M="},
      "https://index.docker.io/v1/": {"username": "hub", "password": "secret"},
      "ghcr.io": {"auth": "Ym9iOg=="}
    },
    "credsStore": "ignored", "HttpHeaders": {"X": "y"}
  })",
                                             kPath);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  REQUIRE(r->auths.size() == 3);
  CHECK(r->auths.at("127.0.0.1:5000").user == "alice");
  CHECK(r->auths.at("127.0.0.1:5000").password == "pa:ss");
  CHECK(r->auths.at("docker.io").user == "hub");
  CHECK(r->auths.at("docker.io").password == "secret");
  CHECK(r->auths.at("ghcr.io").user == "bob");
  CHECK(r->auths.at("ghcr.io").password == "");
}

TEST_CASE("registry_auth: no auths, or an empty one, is no credentials") {
  for (const char* text : {"{}", R"({"auths": {}})", R"({"credHelpers": {"x": "y"}})"}) {
    CAPTURE(text);
    Result<RegistryAuth> r = ParseRegistryAuth(text, kPath);
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    CHECK(r->auths.empty());
  }
}

TEST_CASE("registry_auth: the same registry twice with the same credentials is fine") {
  Result<RegistryAuth> r = ParseRegistryAuth(
      R"({"auths": {"docker.io": {"auth": "YTpi"}, "https://index.docker.io/v1/": {"auth": "YTpi"}}})",
      kPath);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CHECK(r->auths.size() == 1);
}

TEST_CASE("registry_auth: a bad file or entry names the file and the entry, never the password") {
  CHECK(ParseError("{\"auths\": {\"a\": {\"auth\": \"c2VjcmV0\"") ==
        kPath + ": invalid JSON at byte 36");
  CHECK(ParseError("{\"auths\": {\"x\": {\"password\": \"hunter2\" oops}}}").find("hunter2") ==
        std::string::npos);
  CHECK(ParseError("[]") == kPath + ": not a JSON object");
  CHECK(ParseError(R"({"auths": []})") == kPath + ": \"auths\" must be an object");
  CHECK(ParseError(R"({"auths": {"ghcr.io": {"auth": "not base64!"}}})") ==
        kPath + ": auths[\"ghcr.io\"]: \"auth\" is not base64 of USER:PASSWORD");
  // "hunter2" in base64: no colon, so no user.
  CHECK(ParseError(R"({"auths": {"ghcr.io": {"auth": "aHVudGVyMg=="}}})") ==
        kPath + ": auths[\"ghcr.io\"]: \"auth\" is not base64 of USER:PASSWORD");
  CHECK(ParseError(R"({"auths": {"ghcr.io": {"auth": 5}}})") ==
        kPath + ": auths[\"ghcr.io\"]: \"auth\" must be a string");
  CHECK(ParseError(R"({"auths": {"ghcr.io": {"password": "hunter2"}}})") ==
        kPath + ": auths[\"ghcr.io\"]: \"username\" must be a non-empty string");
  CHECK(ParseError(R"({"auths": {"ghcr.io": {"username": "u"}}})") ==
        kPath + ": auths[\"ghcr.io\"]: \"password\" must be a string");
  CHECK(ParseError(R"({"auths": {"ghcr.io": "x"}})") ==
        kPath + ": auths[\"ghcr.io\"]: must be an object");
  CHECK(ParseError(R"({"auths": {"ghcr.io": {}}})") ==
        kPath +
            ": auths[\"ghcr.io\"]: no \"auth\" nor \"username\" and \"password\", and no "
            "credential helper for it (credsStore, credHelpers)");
  CHECK(ParseError(R"({"auths": {"ghcr.io": {}}, "credHelpers": {"quay.io": "x"}})")
            .find("no credential helper for it") != std::string::npos);
  CHECK(ParseError(R"({"credsStore": "../evil"})") ==
        kPath +
            ": \"credsStore\" must be a helper's name (letters, digits, '.', '-', '_'), as in "
            "docker-credential-NAME");
  CHECK(
      ParseError(R"({"credHelpers": {"ghcr.io": 5}})").find("credHelpers[\"ghcr.io\"]: must be") !=
      std::string::npos);
  CHECK(ParseError(R"({"credHelpers": []})") == kPath + ": \"credHelpers\" must be an object");
  CHECK(ParseError(R"({"auths": {"ghcr.io": {"identitytoken": 5}}})") ==
        kPath + ": auths[\"ghcr.io\"]: \"identitytoken\" must be a string of printable characters");
  CHECK(ParseError(R"({"auths": {"ghcr.io": {"identitytoken": "a b"}}})").find("printable") !=
        std::string::npos);
  CHECK(ParseError(R"({"auths": {"https://": {"auth": "YTpi"}}})") ==
        kPath + ": auths[\"https://\"]: not a registry (HOST[:PORT], e.g. ghcr.io)");
  CHECK(ParseError(R"({"auths": {"a b": {"auth": "YTpi"}}})") ==
        kPath + ": auths[\"a b\"]: not a registry (HOST[:PORT], e.g. ghcr.io)");
  const std::string twice = ParseError(
      R"({"auths": {"docker.io": {"auth": "YTpi"}, "index.docker.io": {"auth": "YTpj"}}})");
  CHECK(twice == kPath +
                     ": auths[\"index.docker.io\"]: registry docker.io again "
                     "(auths[\"docker.io\"]), with other credentials");
  CHECK(ParseError(std::string(100, '[') + std::string(100, ']')).find("nested deeper") !=
        std::string::npos);
}

// Writes an executable docker-credential-NAME script into `dir`.
void WriteHelper(const std::string& dir, const std::string& name, const std::string& body) {
  const std::string path = dir + "/docker-credential-" + name;
  FILE* f = fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  fputs(("#!/bin/sh\n" + body + "\n").c_str(), f);
  fclose(f);
  REQUIRE(chmod(path.c_str(), 0755) == 0);
}

TEST_CASE("registry_auth: credential helpers, by registry and as the store, as Docker runs them") {
  char dir[] = "/tmp/petrel-helper-test-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  // Each answers with the server it was given on stdin, and says which helper it is.
  WriteHelper(
      dir, "per",
      R"([ "$1" = get ] || exit 9; read -r s; echo "{\"ServerURL\":\"$s\",\"Username\":\"per-$s\",\"Secret\":\"p\"}")");
  WriteHelper(
      dir, "store",
      R"(read -r s; case "$s" in none.io) echo "credentials not found in native keychain"; exit 1;; esac; echo "{\"Username\":\"store-$s\",\"Secret\":\"s\"}")");
  WriteHelper(dir, "broken", "echo 'boom: the keyring is locked' >&2; exit 3");
  WriteHelper(dir, "garbage", "echo not json");
  WriteHelper(dir, "token", R"(echo '{"Username":"<token>","Secret":"t"}')");
  const char* old_path = getenv("PATH");
  const std::string saved = old_path != nullptr ? old_path : "";
  setenv("PATH", (std::string(dir) + ":" + saved).c_str(), 1);

  Result<RegistryAuth> auth = ParseRegistryAuth(R"({
    "auths": {"ghcr.io": {}, "inline.io": {"auth": "YTpi"}, "docker.io": {}},
    "credsStore": "store",
    "credHelpers": {"ghcr.io": "per", "bad.io": "broken", "junk.io": "garbage",
                    "tok.io": "token", "gone.io": "nonexistent"}
  })",
                                                kPath);
  REQUIRE_MESSAGE(auth.ok(), auth.status().message());
  auto user_of = [&](const std::string& registry) {
    Result<std::optional<RegistryCredential>> c = CredentialFor(*auth, registry);
    REQUIRE_MESSAGE(c.ok(), c.status().message());
    return c->has_value() ? (*c)->user + ":" + (*c)->password : std::string("none");
  };
  CHECK(user_of("ghcr.io") == "per-ghcr.io:p");                          // credHelpers first
  CHECK(user_of("inline.io") == "a:b");                                  // then auths
  CHECK(user_of("quay.io") == "store-quay.io:s");                        // then credsStore
  CHECK(user_of("docker.io") == "store-https://index.docker.io/v1/:s");  // Docker Hub's key
  CHECK(user_of("none.io") == "none");                                   // not found: anonymous
  auto error_of = [&](const std::string& registry) {
    Result<std::optional<RegistryCredential>> c = CredentialFor(*auth, registry);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Status::Code::kPermissionDenied);
    return c.status().message();
  };
  CHECK(error_of("bad.io") == "credential helper docker-credential-broken (" + kPath +
                                  ") for bad.io: failed: boom: the keyring is locked");
  CHECK(error_of("junk.io").find("its answer is not {\"Username\",\"Secret\"}") !=
        std::string::npos);
  // "<token>": the Secret is an identity token, and there is no user.
  Result<std::optional<RegistryCredential>> token = CredentialFor(*auth, "tok.io");
  REQUIRE_MESSAGE(token.ok(), token.status().message());
  REQUIRE(token->has_value());
  CHECK((*token)->identity_token == "t");
  CHECK((*token)->user.empty());
  CHECK((*token)->password.empty());
  CHECK(error_of("gone.io").find("docker-credential-nonexistent") != std::string::npos);
  // Without helpers, nothing runs: no credential.
  Result<RegistryAuth> plain = ParseRegistryAuth(R"({"auths": {}})", kPath);
  REQUIRE(plain.ok());
  Result<std::optional<RegistryCredential>> none = CredentialFor(*plain, "ghcr.io");
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());

  setenv("PATH", saved.c_str(), 1);
  for (const char* name : {"per", "store", "broken", "garbage", "token"}) {
    unlink((std::string(dir) + "/docker-credential-" + name).c_str());
  }
  rmdir(dir);
}

TEST_CASE("registry_auth: files are bounded, followed through links, and named in errors") {
  char dir[] = "/tmp/petrel-auth-test-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  const std::string file = std::string(dir) + "/config.json";
  const std::string link = std::string(dir) + "/link.json";
  FILE* f = fopen(file.c_str(), "w");
  REQUIRE(f != nullptr);
  fputs(R"({"auths": {"ghcr.io": {"auth": "YTpi"}}})", f);
  fclose(f);
  REQUIRE(symlink(file.c_str(), link.c_str()) == 0);
  Result<RegistryAuth> r = ReadRegistryAuth(link);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CHECK(r->auths.at("ghcr.io").user == "a");

  Result<RegistryAuth> missing = ReadRegistryAuth(std::string(dir) + "/none.json");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("/none.json") != std::string::npos);

  REQUIRE(truncate(file.c_str(), kMaxRegistryAuthFile + 1) == 0);
  Result<RegistryAuth> big = ReadRegistryAuth(file);
  REQUIRE_FALSE(big.ok());
  CHECK(big.status().message().find(file) != std::string::npos);

  Status not_pem = CheckPemBundle(file);
  CHECK_FALSE(not_pem.ok());
  f = fopen(file.c_str(), "w");
  REQUIRE(f != nullptr);
  fputs("junk\n", f);
  fclose(f);
  CHECK(CheckPemBundle(file).message() ==
        file + ": no PEM certificate in it (-----BEGIN CERTIFICATE-----)");
  f = fopen(file.c_str(), "w");
  REQUIRE(f != nullptr);
  fputs("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", f);
  fclose(f);
  CHECK(CheckPemBundle(file).ok());
  unlink(link.c_str());
  unlink(file.c_str());
  rmdir(dir);
}

TEST_CASE("registry_auth: challenges of Bearer and Basic") {
  AuthChallenge b = ParseAuthChallenge(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  CHECK(b.scheme == "bearer");
  CHECK(b.params.size() == 3);
  CHECK(b.params["realm"] == "https://auth.docker.io/token");
  CHECK(b.params["service"] == "registry.docker.io");
  CHECK(b.params["scope"] == "repository:library/busybox:pull");

  AuthChallenge basic = ParseAuthChallenge(R"(Basic realm="Registry Realm")");
  CHECK(basic.scheme == "basic");
  CHECK(basic.params["realm"] == "Registry Realm");

  AuthChallenge spaced = ParseAuthChallenge(R"(  BEARER Realm = "http://a/t" , service=reg)");
  CHECK(spaced.scheme == "bearer");
  CHECK(spaced.params["realm"] == "http://a/t");
  CHECK(spaced.params["service"] == "reg");

  // A second challenge in the same header is not taken for parameters of the first.
  AuthChallenge two = ParseAuthChallenge(R"(Bearer realm="https://a/t", Basic realm="x")");
  CHECK(two.params.size() == 1);
  CHECK(two.params["realm"] == "https://a/t");

  CHECK(ParseAuthChallenge("").scheme.empty());
  CHECK(ParseAuthChallenge("Basic").scheme == "basic");
  CHECK(ParseAuthChallenge(R"(Bearer realm="unterminated)").params.empty());
}

TEST_CASE("registry_auth: an identity token, alone or beside the user docker login writes") {
  // Docker writes "auth" as base64 of "USER:" beside the token; the token is what counts.
  Result<RegistryAuth> auth = ParseRegistryAuth(R"({"auths": {
    "ghcr.io": {"auth": "dXNlcjo=", "identitytoken": "refresh-1"},
    "quay.io": {"identitytoken": "refresh-2"}}})",
                                                kPath);
  REQUIRE_MESSAGE(auth.ok(), auth.status().message());
  CHECK(auth->auths.at("ghcr.io").user == "user");
  CHECK(auth->auths.at("ghcr.io").identity_token == "refresh-1");
  CHECK(auth->auths.at("quay.io").user.empty());
  CHECK(auth->auths.at("quay.io").identity_token == "refresh-2");
  // The same registry twice with another token is two credentials, as for passwords.
  CHECK(ParseError(R"({"auths": {"docker.io": {"identitytoken": "a"},
                                 "index.docker.io": {"identitytoken": "b"}}})")
            .find("with other credentials") != std::string::npos);

  // The form posted to the realm: OAuth2's refresh grant, escaped, with scope and service.
  AuthChallenge c =
      ParseAuthChallenge(R"(Bearer realm="https://auth.io/token",service="reg istry")");
  CHECK(TokenForm(c, "org/app", "r+t/=") ==
        "grant_type=refresh_token&client_id=petrel&refresh_token=r%2Bt%2F%3D"
        "&scope=repository%3Aorg%2Fapp%3Apull&service=reg%20istry");
}

TEST_CASE("registry_auth: the token URL carries scope and service") {
  AuthChallenge c = ParseAuthChallenge(
      R"(Bearer realm="https://auth.io/token",service="reg istry",scope="repository:a/b:pull")");
  Result<std::string> url = TokenUrl(c, "ignored");
  REQUIRE(url.ok());
  CHECK(*url == "https://auth.io/token?scope=repository%3Aa%2Fb%3Apull&service=reg%20istry");

  // No scope in the challenge: a pull of the repository; a realm with a query keeps it.
  url = TokenUrl(ParseAuthChallenge(R"(Bearer realm="http://127.0.0.1:9/t?x=1")"), "org/app");
  REQUIRE(url.ok());
  CHECK(*url == "http://127.0.0.1:9/t?x=1&scope=repository%3Aorg%2Fapp%3Apull");

  for (const char* bad :
       {R"(Bearer service="x")", R"(Bearer realm="ftp://a/t")", R"(Bearer realm="/token")"}) {
    CAPTURE(bad);
    Result<std::string> r = TokenUrl(ParseAuthChallenge(bad), "app");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("is not an http(s) URL") != std::string::npos);
  }
}

TEST_CASE("registry_auth: the host of a URL") {
  CHECK(UrlHost("https://Auth.Docker.io/token?x") == "auth.docker.io");
  CHECK(UrlHost("http://127.0.0.1:5000/v2/") == "127.0.0.1");
  CHECK(UrlHost("http://user:pw@10.0.0.1:80/") == "10.0.0.1");
  CHECK(UrlHost("https://[::1]:5000/") == "::1");
  CHECK(UrlHost("https://[::1") == "");
  CHECK(UrlHost("ftp://host/") == "");
  CHECK(UrlHost("host/x") == "");
}

}  // namespace
}  // namespace petrel::internal
