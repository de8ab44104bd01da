// Credentials for registries, read from a Docker config.json, and the HTTP
// authentication challenges (WWW-Authenticate) registries answer a 401 with.
//
// A config.json as `docker login` writes it:
//   {"auths": {"registry.local:5000": {"auth": "<base64 of user:password>"},
//              "https://index.docker.io/v1/": {"username": "u", "password": "p"}}}
// A key may carry a scheme and a path ("https://ghcr.io/v2/"); Docker Hub's keys
// ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io",
// "docker.io") all mean docker.io. Credential helpers as Docker runs them: "credHelpers"
// ({"ghcr.io": "NAME"}) names the helper of a registry, "credsStore" ("NAME") the one of
// every other; `docker login` with a store leaves `{}` entries in "auths", which are
// then fine. An entry's "identitytoken" (and a helper's answer with the Username
// "<token>") is an OAuth2 refresh token: a Bearer challenge's realm is asked for a token
// with it (a POST, grant_type=refresh_token, as Docker does), never with a password.
// Other top-level fields are ignored.
//
// Nothing here puts a password into a message: errors name the file and the entry's
// key, at most the user name.
//
// Thread-safety: pure functions.
#ifndef PETREL_LIB_IMAGE_REGISTRY_AUTH_H_
#define PETREL_LIB_IMAGE_REGISTRY_AUTH_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "petrel/status.h"

namespace petrel::internal {

// A larger file is refused (a config.json holds a few entries).
constexpr size_t kMaxRegistryAuthFile = 1 << 20;

struct RegistryCredential {
  std::string user;      // never empty, unless identity_token is set
  std::string password;  // unused when identity_token is set
  std::string identity_token;
};

// Keyed by the registry as a reference names it: ImageReference::domain, host[:port]
// in lowercase ("docker.io", "registry.local:5000").
using RegistryCredentials = std::map<std::string, RegistryCredential>;

// What a config.json says of registries' credentials.
struct RegistryAuth {
  RegistryCredentials auths;                   // inline credentials, by registry
  std::map<std::string, std::string> helpers;  // "credHelpers": registry -> helper NAME
  std::string store;                           // "credsStore": helper NAME for others, or ""
  std::string path;                            // the file, for messages
};

// How long a credential helper may take.
constexpr int64_t kCredentialHelperTimeoutMs = 10000;

// The registry a config.json key names, as ImageReference::domain spells it:
// "https://index.docker.io/v1/" -> "docker.io", "http://Reg.local:5000/x" ->
// "reg.local:5000". "" when there is no host.
std::string RegistryAuthKey(std::string_view key);

// Parses the text of Docker config.json `path` (named in errors). InvalidArgument,
// one line naming the file and the entry: `/etc/petrel/auth.json: auths["ghcr.io"]:
// "auth" is not base64 of USER:PASSWORD`, `/etc/petrel/auth.json: invalid JSON at
// byte 17`. Two keys naming the same registry with different credentials are an error,
// and so is an entry without credentials for a registry no helper serves. A helper
// NAME is letters, digits, '.', '-' and '_'.
Result<RegistryAuth> ParseRegistryAuth(std::string_view text, const std::string& path);

// Reads and parses `path` (at most kMaxRegistryAuthFile bytes, a symbolic link is
// followed). Errors name the file.
Result<RegistryAuth> ReadRegistryAuth(const std::string& path);

// The credential for `registry` (as RegistryAuthKey spells it): from its credHelpers
// helper, else inline from auths, else from the credsStore helper; nullopt: none
// (anonymous). A helper is `docker-credential-NAME get`, found on $PATH, given the
// registry's server on stdin ("https://index.docker.io/v1/" for docker.io, else
// host[:port], as Docker stores them) and answering {"ServerURL","Username","Secret"}
// within kCredentialHelperTimeoutMs; "credentials not found" (any exit status) is none.
// Errors (PermissionDenied: a helper missing, failing, too slow, answering garbage or an
// identity token) name the helper and the file, never the secret. Runs a process:
// not for the loop thread.
Result<std::optional<RegistryCredential>> CredentialFor(const RegistryAuth& auth,
                                                        const std::string& registry);

// A CA bundle (kMaxCaBundle bytes at most) is refused.
constexpr size_t kMaxCaBundle = 4 << 20;

// OK when `path` is a readable file of at most kMaxCaBundle bytes holding a PEM
// certificate; else InvalidArgument or the read error, naming the file.
Status CheckPemBundle(const std::string& path);

// One challenge of a WWW-Authenticate header: `Bearer realm="https://auth.io/token",
// service="registry",scope="repository:app:pull"` or `Basic realm="Registry"`.
struct AuthChallenge {
  std::string scheme;                         // lowercase: "bearer", "basic"; "" if none
  std::map<std::string, std::string> params;  // keys lowercase, values unquoted
};

// The first challenge of header value `value` (a registry sends one).
AuthChallenge ParseAuthChallenge(std::string_view value);

// The URL a Bearer challenge's token is asked at: its realm with scope (the
// challenge's, else "repository:<repository>:pull") and service as query parameters.
// InvalidArgument when the realm is not an http(s) URL.
Result<std::string> TokenUrl(const AuthChallenge& challenge, const std::string& repository);

// The form an identity token is posted with to a Bearer challenge's realm (OAuth2's
// refresh grant, as Docker sends it): grant_type, refresh_token, client_id, scope and
// service, each escaped.
std::string TokenForm(const AuthChallenge& challenge, const std::string& repository,
                      const std::string& identity_token);

// The host of http(s) URL `url`, lowercase, without port or brackets; "" when not one.
std::string UrlHost(std::string_view url);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_REGISTRY_AUTH_H_
