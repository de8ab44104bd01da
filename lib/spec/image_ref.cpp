#include "lib/spec/image_ref.h"

#include "lib/spec/check.h"
#include "lib/util/strings.h"

namespace petrel::internal {

namespace {

constexpr size_t kMaxNameLength = 255;  // domain/repository, as Docker's reference grammar
constexpr size_t kMaxTagLength = 128;
constexpr std::string_view kDockerHub = "docker.io";

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnumChar(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

// host[:port]: DNS labels (letters, digits, '-' inside) joined by '.', port 1-65535.
bool IsDomain(std::string_view d) {
  size_t colon = d.find(':');
  std::string_view host = d.substr(0, colon);
  if (colon != std::string_view::npos) {
    std::string_view port = d.substr(colon + 1);
    if (port.empty() || port.size() > 5) return false;
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return false;
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return false;
  }
  if (host.empty()) return false;
  size_t start = 0;
  while (start <= host.size()) {
    size_t dot = host.find('.', start);
    if (dot == std::string_view::npos) dot = host.size();
    std::string_view label = host.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!IsAlnumChar(c) && c != '-') return false;
    }
    start = dot + 1;
  }
  return true;
}

// One path component: [a-z0-9]+ joined by '.', '_', "__" or runs of '-'.
bool IsPathComponent(std::string_view p) {
  if (p.empty() || !IsLowerAlnum(p.front()) || !IsLowerAlnum(p.back())) return false;
  for (size_t i = 0; i < p.size();) {
    if (IsLowerAlnum(p[i])) {
      i++;
      continue;
    }
    size_t j = i;
    while (j < p.size() && !IsLowerAlnum(p[j])) j++;
    std::string_view sep = p.substr(i, j - i);
    bool dashes = sep.find_first_not_of('-') == std::string_view::npos;
    if (sep != "." && sep != "_" && sep != "__" && !dashes) return false;
    i = j;
  }
  return true;
}

bool IsTag(std::string_view t) {
  if (t.empty() || t.size() > kMaxTagLength || t.front() == '.' || t.front() == '-') {
    return false;
  }
  for (char c : t) {
    if (!IsAlnumChar(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

bool IsSha256Hex(std::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string ImageReference::Registry() const {
  return domain == kDockerHub ? "registry-1.docker.io" : domain;
}

std::string ImageReference::Host() const { return domain.substr(0, domain.find(':')); }

std::string ImageReference::Canonical() const {
  std::string out = domain + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

bool HasPathTransport(std::string_view image) {
  for (std::string_view transport : kPathTransports) {
    if (image.substr(0, transport.size()) == transport) return true;
  }
  return false;
}

Result<ImageReference> ParseImageReference(std::string_view ref) {
  if (ref.empty()) return Status::InvalidArgument("empty image reference");
  if (ref.size() > kMaxNameLength + 1 + kMaxTagLength + 1 + 71) {
    return Status::InvalidArgument("image reference is too long");
  }
  if (ref.find("://") != std::string_view::npos) {
    return Status::InvalidArgument(
        "has a URL scheme (write a registry image without one, as docker does: "
        "host[:port]/repository[:tag][@sha256:digest])");
  }
  ImageReference out;
  std::string_view name = ref;
  size_t at = ref.find('@');
  if (at != std::string_view::npos) {
    std::string_view digest = ref.substr(at + 1);
    name = ref.substr(0, at);
    if (digest.substr(0, 7) != "sha256:") {
      return Status::InvalidArgument("digest " + Quote(digest) +
                                     " is not supported (only sha256:<64 hex digits>)");
    }
    if (!IsSha256Hex(digest.substr(7))) {
      return Status::InvalidArgument("digest " + Quote(digest) +
                                     " is not sha256: and 64 lowercase hex digits");
    }
    out.digest = std::string(digest);
  }
  size_t colon = name.rfind(':');
  size_t last_slash = name.rfind('/');
  if (colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || colon > last_slash)) {
    std::string_view tag = name.substr(colon + 1);
    if (!IsTag(tag)) {
      return Status::InvalidArgument("tag " + Quote(tag) +
                                     " is not a tag (letters, digits, '_', '.', '-', not "
                                     "starting with '.' or '-', at most 128)");
    }
    out.tag = std::string(tag);
    name = name.substr(0, colon);
  }
  if (out.tag.empty() && out.digest.empty()) out.tag = "latest";
  if (name.empty()) return Status::InvalidArgument("no repository name");
  if (name.size() > kMaxNameLength) {
    return Status::InvalidArgument("name is longer than " + std::to_string(kMaxNameLength));
  }

  // The first component is a registry when it looks like a host: a '.', a port or
  // "localhost"; else the image is on Docker Hub.
  std::string_view path = name;
  size_t slash = name.find('/');
  if (slash != std::string_view::npos) {
    std::string_view first = name.substr(0, slash);
    if (first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
        first == "localhost") {
      if (!IsDomain(first)) {
        return Status::InvalidArgument("registry " + Quote(first) +
                                       " is not a host name or address with an optional port");
      }
      out.domain = std::string(first);
      path = name.substr(slash + 1);
    }
  }
  if (out.domain.empty() || out.domain == "index.docker.io") out.domain = std::string(kDockerHub);
  std::string repository(path);
  if (out.domain == kDockerHub && repository.find('/') == std::string::npos) {
    repository = "library/" + repository;
  }
  size_t start = 0;
  while (start <= repository.size()) {
    size_t end = repository.find('/', start);
    if (end == std::string::npos) end = repository.size();
    std::string_view part = std::string_view(repository).substr(start, end - start);
    if (!IsPathComponent(part)) {
      bool upper = false;
      for (char c : part) upper = upper || (c >= 'A' && c <= 'Z');
      return Status::InvalidArgument(
          "repository " + Quote(path) +
          (upper ? " must be lowercase"
                 : " has a bad component " + Quote(part) +
                       " (lowercase letters and digits, joined by '.', '_', '__' or '-')"));
    }
    start = end + 1;
  }
  out.repository = std::move(repository);
  return out;
}

}  // namespace petrel::internal
