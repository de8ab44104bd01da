#include "lib/image/registry_auth.h"

#include <mbedtls/base64.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <memory>
#include <nlohmann/json.hpp>

#include "lib/util/fs.h"
#include "lib/util/json.h"
#include "lib/util/process.h"
#include "lib/util/strings.h"

namespace petrel::internal {

namespace {

using nlohmann::json;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// `s` without a leading "http://" or "https://" (any case).
std::string_view WithoutScheme(std::string_view s) {
  for (std::string_view scheme : {"https://", "http://"}) {
    if (s.size() >= scheme.size() && Lower(s.substr(0, scheme.size())) == scheme) {
      return s.substr(scheme.size());
    }
  }
  return s;
}

// Host[:port] characters, IPv6 brackets included.
bool IsHostPort(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_';
  });
}

// The credential of one "auths" entry `e`; an error message (without secrets) when
// it has none.
std::string EntryCredential(const json& e, RegistryCredential* out) {
  if (!e.is_object()) return "must be an object";
  auto auth = e.find("auth");
  if (auth != e.end() && !(auth->is_string() && auth->get_ref<const std::string&>().empty())) {
    if (!auth->is_string()) return "\"auth\" must be a string";
    const std::string& text = auth->get_ref<const std::string&>();
    size_t n = 0;
    std::string decoded(text.size(), '\0');
    const auto* in = reinterpret_cast<const unsigned char*>(text.data());
    auto* buf = reinterpret_cast<unsigned char*>(decoded.data());
    if (mbedtls_base64_decode(buf, decoded.size(), &n, in, text.size()) != 0) {
      return "\"auth\" is not base64 of USER:PASSWORD";
    }
    decoded.resize(n);
    size_t colon = decoded.find(':');
    if (colon == std::string::npos || colon == 0) {
      return "\"auth\" is not base64 of USER:PASSWORD";
    }
    out->user = decoded.substr(0, colon);
    out->password = decoded.substr(colon + 1);
  }
  auto user = e.find("username");
  auto password = e.find("password");
  if (out->user.empty() && (user != e.end() || password != e.end())) {
    if (user == e.end() || !user->is_string() || user->get_ref<const std::string&>().empty()) {
      return "\"username\" must be a non-empty string";
    }
    if (password == e.end() || !password->is_string()) return "\"password\" must be a string";
    out->user = user->get<std::string>();
    out->password = password->get<std::string>();
  }
  if (auto token = e.find("identitytoken"); token != e.end()) {
    if (!token->is_string() || !IsPrintableToken(token->get_ref<const std::string&>())) {
      return "\"identitytoken\" must be a string of printable characters";
    }
    out->identity_token = token->get<std::string>();
  }
  return "";  // no credentials: fine only for a registry a helper serves
}

// A credential helper's NAME: docker-credential-NAME on $PATH.
bool IsHelperName(const std::string& name) {
  return !name.empty() && name.size() <= 64 &&
         std::all_of(name.begin(), name.end(), [](unsigned char c) {
           return std::isalnum(c) || c == '.' || c == '-' || c == '_';
         });
}

}  // namespace

std::string RegistryAuthKey(std::string_view key) {
  std::string_view rest = WithoutScheme(key);
  std::string host = Lower(rest.substr(0, rest.find('/')));
  if (host == "index.docker.io" || host == "registry-1.docker.io") return "docker.io";
  return host;
}

Result<RegistryAuth> ParseRegistryAuth(std::string_view text, const std::string& path) {
  if (std::string deep = JsonNestingError(text); !deep.empty()) {
    return Status::InvalidArgument(path + ": JSON " + deep);
  }
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    // Not e.what(): it quotes the text around the error, which may be a password.
    return Status::InvalidArgument(path + ": invalid JSON at byte " + std::to_string(e.byte));
  }
  if (!j.is_object()) return Status::InvalidArgument(path + ": not a JSON object");
  RegistryAuth auth;
  auth.path = path;
  if (auto store = j.find("credsStore"); store != j.end()) {
    if (!store->is_string() || !IsHelperName(store->get<std::string>())) {
      return Status::InvalidArgument(path +
                                     ": \"credsStore\" must be a helper's name (letters, digits, "
                                     "'.', '-', '_'), as in docker-credential-NAME");
    }
    auth.store = store->get<std::string>();
  }
  if (auto helpers = j.find("credHelpers"); helpers != j.end()) {
    if (!helpers->is_object()) {
      return Status::InvalidArgument(path + ": \"credHelpers\" must be an object");
    }
    for (const auto& [key, name] : helpers->items()) {
      const std::string where = path + ": credHelpers[" + Quote(key) + "]: ";
      const std::string registry = RegistryAuthKey(key);
      if (!IsHostPort(registry)) {
        return Status::InvalidArgument(where + "not a registry (HOST[:PORT], e.g. ghcr.io)");
      }
      if (!name.is_string() || !IsHelperName(name.get<std::string>())) {
        return Status::InvalidArgument(where +
                                       "must be a helper's name (letters, digits, '.', '-', "
                                       "'_'), as in docker-credential-NAME");
      }
      auth.helpers[registry] = name.get<std::string>();
    }
  }
  RegistryCredentials& out = auth.auths;
  std::map<std::string, std::string> key_of;  // registry -> the entry that named it
  auto auths = j.find("auths");
  if (auths == j.end()) return auth;
  if (!auths->is_object()) return Status::InvalidArgument(path + ": \"auths\" must be an object");
  for (const auto& [key, entry] : auths->items()) {
    const std::string where = path + ": auths[" + Quote(key) + "]: ";
    const std::string registry = RegistryAuthKey(key);
    if (!IsHostPort(registry)) {
      return Status::InvalidArgument(where + "not a registry (HOST[:PORT], e.g. ghcr.io)");
    }
    RegistryCredential c;
    if (std::string bad = EntryCredential(entry, &c); !bad.empty()) {
      return Status::InvalidArgument(where + bad);
    }
    if (c.user.empty() && c.identity_token.empty()) {
      if (auth.store.empty() && auth.helpers.count(registry) == 0) {
        return Status::InvalidArgument(
            where +
            "no \"auth\" nor \"username\" and \"password\", and no credential helper for it "
            "(credsStore, credHelpers)");
      }
      continue;  // a mark `docker login` leaves: the helper has the credentials
    }
    auto [it, added] = out.emplace(registry, c);
    if (!added && (it->second.user != c.user || it->second.password != c.password ||
                   it->second.identity_token != c.identity_token)) {
      return Status::InvalidArgument(where + "registry " + registry + " again (auths[" +
                                     Quote(key_of[registry]) + "]), with other credentials");
    }
    key_of.emplace(registry, key);
  }
  return auth;
}

Result<RegistryAuth> ReadRegistryAuth(const std::string& path) {
  std::unique_ptr<char, decltype(&free)> real(realpath(path.c_str(), nullptr), &free);
  if (!real) return ErrnoError(path, "realpath", errno);
  Result<std::string> text = ReadSmallFile(real.get(), kMaxRegistryAuthFile);
  if (!text.ok()) return text.status();
  return ParseRegistryAuth(*text, path);
}

Result<std::optional<RegistryCredential>> CredentialFor(const RegistryAuth& auth,
                                                        const std::string& registry) {
  std::string helper;
  if (auto h = auth.helpers.find(registry); h != auth.helpers.end()) {
    helper = h->second;
  } else if (auto a = auth.auths.find(registry); a != auth.auths.end()) {
    return std::optional<RegistryCredential>(a->second);
  } else {
    helper = auth.store;
  }
  if (helper.empty()) return std::optional<RegistryCredential>();
  const std::string program = "docker-credential-" + helper;
  const std::string what = "credential helper " + program + " (" + auth.path + ") for " + registry;
  ProcessOptions options;
  options.input = registry == "docker.io" ? "https://index.docker.io/v1/" : registry;
  options.timeout_ms = kCredentialHelperTimeoutMs;
  options.search_path = true;
  options.merge_stderr = false;
  ProcessResult result;
  if (Status s = RunProcess({program, "get"}, options, &result); !s.ok()) {
    return Status::PermissionDenied(what + ": " + s.message());
  }
  // Docker's helpers say so on stdout, with exit status 1.
  if (Lower(result.out + result.err).find("credentials not found") != std::string::npos) {
    return std::optional<RegistryCredential>();
  }
  if (!WIFEXITED(result.status) || WEXITSTATUS(result.status) != 0) {
    std::string said = result.err.empty() ? result.out : result.err;
    said = said.substr(0, said.find('\n'));
    if (said.size() > 200) said = said.substr(0, 200) + "...";
    return Status::PermissionDenied(what + ": failed" + (said.empty() ? "" : ": " + said));
  }
  json j = json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("Username") || !j["Username"].is_string() ||
      !j.contains("Secret") || !j["Secret"].is_string()) {
    return Status::PermissionDenied(what + ": its answer is not {\"Username\",\"Secret\"} as JSON");
  }
  RegistryCredential c;
  c.user = j["Username"].get<std::string>();
  c.password = j["Secret"].get<std::string>();
  if (c.user == "<token>") {  // Docker's mark: Secret is an identity token
    if (!IsPrintableToken(c.password)) {
      return Status::PermissionDenied(what + ": it gives an identity token that is empty or " +
                                      "not printable");
    }
    c.identity_token = c.password;
    c.user.clear();
    c.password.clear();
    return std::optional<RegistryCredential>(c);
  }
  if (c.user.empty()) return Status::PermissionDenied(what + ": it gives an empty Username");
  return std::optional<RegistryCredential>(c);
}

Status CheckPemBundle(const std::string& path) {
  std::unique_ptr<char, decltype(&free)> real(realpath(path.c_str(), nullptr), &free);
  if (!real) return ErrnoError(path, "realpath", errno);
  Result<std::string> text = ReadSmallFile(real.get(), kMaxCaBundle);
  if (!text.ok()) return text.status();
  if (text->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return Status::InvalidArgument(path +
                                   ": no PEM certificate in it (-----BEGIN CERTIFICATE-----)");
  }
  return Status::OK();
}

AuthChallenge ParseAuthChallenge(std::string_view value) {
  AuthChallenge out;
  size_t b = value.find_first_not_of(" \t");
  if (b == std::string_view::npos) return out;
  size_t i = value.find(' ', b);
  out.scheme = Lower(value.substr(b, i == std::string_view::npos ? i : i - b));
  while (i != std::string_view::npos && i < value.size()) {
    size_t eq = value.find('=', i);
    if (eq == std::string_view::npos) break;
    std::string key = Lower(value.substr(i, eq - i));
    key.erase(0, key.find_first_not_of(" \t,"));
    key.erase(key.find_last_not_of(" \t") + 1);
    std::string param;
    size_t j = value.find_first_not_of(" \t", eq + 1);
    if (j == std::string_view::npos) j = value.size();
    if (j < value.size() && value[j] == '"') {
      size_t close = value.find('"', j + 1);
      if (close == std::string_view::npos) break;
      param = std::string(value.substr(j + 1, close - j - 1));
      i = close + 1;
    } else {
      size_t comma = value.find(',', j);
      param = std::string(value.substr(j, comma == std::string_view::npos ? comma : comma - j));
      i = comma;
    }
    if (key.find(' ') != std::string::npos) break;  // a second challenge: "..., Basic x=y"
    out.params[key] = param;
  }
  return out;
}

namespace {

// "scope=..&service=..": the challenge's scope, else "repository:<repository>:pull",
// and its service when it has one.
std::string TokenScope(const AuthChallenge& challenge, const std::string& repository) {
  auto scope = challenge.params.find("scope");
  auto service = challenge.params.find("service");
  std::string out = "scope=" + UrlEscape(scope != challenge.params.end() && !scope->second.empty()
                                             ? scope->second
                                             : "repository:" + repository + ":pull");
  if (service != challenge.params.end() && !service->second.empty()) {
    out += "&service=" + UrlEscape(service->second);
  }
  return out;
}

}  // namespace

Result<std::string> TokenUrl(const AuthChallenge& challenge, const std::string& repository) {
  auto realm_it = challenge.params.find("realm");
  const std::string realm = realm_it == challenge.params.end() ? "" : realm_it->second;
  if (UrlHost(realm).empty()) {
    return Status::InvalidArgument("a Bearer challenge whose realm " + Quote(realm) +
                                   " is not an http(s) URL");
  }
  return realm + (realm.find('?') == std::string::npos ? "?" : "&") +
         TokenScope(challenge, repository);
}

std::string TokenForm(const AuthChallenge& challenge, const std::string& repository,
                      const std::string& identity_token) {
  return "grant_type=refresh_token&client_id=petrel&refresh_token=" + UrlEscape(identity_token) +
         "&" + TokenScope(challenge, repository);
}

std::string UrlHost(std::string_view url) {
  std::string_view rest = WithoutScheme(url);
  if (rest.size() == url.size()) return "";
  rest = rest.substr(0, rest.find_first_of("/?#"));
  size_t at = rest.rfind('@');
  if (at != std::string_view::npos) rest = rest.substr(at + 1);
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    return close == std::string_view::npos ? "" : Lower(rest.substr(1, close - 1));
  }
  return Lower(rest.substr(0, rest.find(':')));
}

}  // namespace petrel::internal
