#include "petrel/port.h"

#include <arpa/inet.h>

#include <cstdint>
#include <string>

#include "lib/util/strings.h"

namespace petrel {

const char* CgroupLayoutName(CgroupLayout layout) {
  switch (layout) {
    case CgroupLayout::kV1: return "v1";
    case CgroupLayout::kV2: return "v2";
    case CgroupLayout::kHybrid: return "hybrid";
  }
  return "?";
}

Status CheckCgroupParent(std::string_view parent) {
  const std::string quoted = "cgroup parent " + internal::Quote(parent) + ": ";
  if (parent.empty()) return Status::InvalidArgument(quoted + "must not be empty");
  if (parent.front() == '/') {
    return Status::InvalidArgument(quoted + "must be relative to the cgroup root (e.g. petrel)");
  }
  size_t start = 0;
  while (start <= parent.size()) {
    size_t end = parent.find('/', start);
    if (end == std::string_view::npos) end = parent.size();
    const std::string_view name = parent.substr(start, end - start);
    if (name.empty()) return Status::InvalidArgument(quoted + "has an empty name between '/'s");
    if (name == "." || name == "..") {
      return Status::InvalidArgument(quoted + "\"" + std::string(name) + "\" is not a name");
    }
    if (name.size() > 255) return Status::InvalidArgument(quoted + "a name is over 255 bytes");
    for (char c : name) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '@' || c == '-';
      if (!ok) {
        return Status::InvalidArgument(quoted + "'" + internal::Escape(std::string_view(&c, 1)) +
                                       "' is not allowed (names are of A-Z a-z 0-9 _ . @ -)");
      }
    }
    start = end + 1;
  }
  return Status::OK();
}

Status CheckBridgeNetwork(const BridgeNetwork& bridge) {
  const std::string name = "bridge name " + internal::Quote(bridge.name) + ": ";
  if (bridge.name.empty() || bridge.name.size() > 15) {
    return Status::InvalidArgument(name + "must be 1 to 15 characters (an interface name)");
  }
  if (bridge.name.front() == '.' || bridge.name.front() == '-') {
    return Status::InvalidArgument(name + "must not start with '.' or '-'");
  }
  if (const size_t bad = internal::FirstNotPlain(bridge.name); bad != std::string::npos) {
    return Status::InvalidArgument(name + "'" + internal::Escape(bridge.name.substr(bad, 1)) +
                                   "' is not allowed (names are of A-Z a-z 0-9 _ . -)");
  }
  const std::string subnet = "bridge subnet " + internal::Quote(bridge.subnet) + ": ";
  const size_t slash = bridge.subnet.find('/');
  const std::string address = bridge.subnet.substr(0, slash);
  in_addr a;
  if (slash == std::string::npos || inet_pton(AF_INET, address.c_str(), &a) != 1) {
    return Status::InvalidArgument(subnet +
                                   "want an IPv4 network as ADDRESS/PREFIX (10.47.0.0/16)");
  }
  const std::string digits = bridge.subnet.substr(slash + 1);
  if (digits.empty() || digits.size() > 2 ||
      digits.find_first_not_of("0123456789") != std::string::npos || std::stoi(digits) < 8 ||
      std::stoi(digits) > 28) {
    return Status::InvalidArgument(subnet + "the prefix must be 8 to 28");
  }
  const int prefix = std::stoi(digits);
  const uint32_t host = ntohl(a.s_addr);
  const uint32_t mask = ~uint32_t{0} << (32 - prefix);
  if ((host & ~mask) != 0) {
    in_addr net;
    net.s_addr = htonl(host & mask);
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &net, text, sizeof(text));
    return Status::InvalidArgument(subnet + "host bits are set (the network is " + text + "/" +
                                   digits + ")");
  }
  return Status::OK();
}

}  // namespace petrel
