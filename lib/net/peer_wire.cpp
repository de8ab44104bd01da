#include "lib/net/peer_wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace petrel::internal {
namespace {

constexpr char kMagic[4] = {'P', 'T', 'R', 'L'};

void PutBig(uint64_t v, int bytes, std::string* out) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetBig(std::string_view data, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(data[at + i]);
  return v;
}

}  // namespace

const char* ChannelName(Channel channel) {
  switch (channel) {
    case Channel::kRaft: return "raft";
    case Channel::kRequest: return "request";
    case Channel::kJoin: return "join";
  }
  return "unknown";
}

std::string EncodePreamble(const Preamble& preamble) {
  std::string out(kMagic, sizeof(kMagic));
  out.push_back(static_cast<char>(kWireVersion));
  out.push_back(static_cast<char>(preamble.channel));
  if (preamble.channel == Channel::kRaft) {
    PutBig(preamble.raft_id, 8, &out);
    PutBig(preamble.raft_address.size(), 2, &out);
    out += preamble.raft_address;
  }
  return out;
}

Result<size_t> DecodePreamble(std::string_view data, Preamble* out) {
  size_t have = data.size();
  if (std::memcmp(data.data(), kMagic, std::min(have, sizeof(kMagic))) != 0) {
    return Status::InvalidArgument("bad preamble: not a petrel peer");
  }
  if (have < 6) return size_t{0};
  if (static_cast<uint8_t>(data[4]) != kWireVersion) {
    return Status::InvalidArgument("bad preamble: version " +
                                   std::to_string(static_cast<uint8_t>(data[4])) + ", not " +
                                   std::to_string(kWireVersion));
  }
  auto channel = static_cast<uint8_t>(data[5]);
  if (channel < 1 || channel > 3) {
    return Status::InvalidArgument("bad preamble: unknown channel " + std::to_string(channel));
  }
  out->channel = static_cast<Channel>(channel);
  out->raft_id = 0;
  out->raft_address.clear();
  if (out->channel != Channel::kRaft) return size_t{6};
  if (have < 16) return size_t{0};
  out->raft_id = GetBig(data, 6, 8);
  size_t length = GetBig(data, 14, 2);
  if (out->raft_id == 0) return Status::InvalidArgument("bad preamble: raft id 0");
  if (length == 0 || length > kMaxRaftAddressBytes) {
    return Status::InvalidArgument("bad preamble: raft address of " + std::to_string(length) +
                                   " bytes");
  }
  if (have < 16 + length) return size_t{0};
  std::string_view address = data.substr(16, length);
  for (char c : address) {
    if (c <= ' ' || c > '~') {
      return Status::InvalidArgument("bad preamble: raft address not printable");
    }
  }
  out->raft_address.assign(address);
  return 16 + length;
}

void AppendFrame(FrameKind kind, uint64_t id, std::string_view body, std::string* out) {
  PutBig(body.size(), 4, out);
  PutBig(id, 8, out);
  out->push_back(static_cast<char>(kind));
  out->append(body.data(), body.size());
}

Result<bool> FrameReader::Next(Frame* frame) {
  std::string_view data(buffer_);
  data.remove_prefix(start_);
  if (data.size() < kFrameHeaderBytes) return false;
  uint64_t length = GetBig(data, 0, 4);
  auto kind = static_cast<uint8_t>(data[12]);
  if (length > max_body_bytes_) {
    return Status::InvalidArgument("message of " + std::to_string(length) +
                                   " bytes is over the limit of " +
                                   std::to_string(max_body_bytes_));
  }
  if (kind < 1 || kind > 3) {
    return Status::InvalidArgument("unknown frame kind " + std::to_string(kind));
  }
  if (data.size() < kFrameHeaderBytes + length) return false;
  frame->kind = static_cast<FrameKind>(kind);
  frame->id = GetBig(data, 4, 8);
  frame->body.assign(data.substr(kFrameHeaderBytes, length));
  start_ += kFrameHeaderBytes + length;
  if (start_ == buffer_.size()) {
    buffer_.clear();
    start_ = 0;
  } else if (start_ > buffer_.size() / 2) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  return true;
}

Status ParseAddress(const std::string& address, sockaddr_storage* out) {
  auto bad = [&](const char* why) {
    return Status::InvalidArgument("address \"" + address.substr(0, 64) + "\": " + why);
  };
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) return bad("no :PORT");
  std::string host = address.substr(0, colon);
  std::string port_text = address.substr(colon + 1);
  if (port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos) {
    return bad("bad port");
  }
  unsigned long port = std::stoul(port_text);
  if (port > 65535) return bad("bad port");
  std::memset(out, 0, sizeof(*out));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(out);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &in6->sin6_addr) != 1) {
      return bad("not an IPv6 address");
    }
    return Status::OK();
  }
  auto* in4 = reinterpret_cast<sockaddr_in*>(out);
  in4->sin_family = AF_INET;
  in4->sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) != 1) {
    return bad("not an IPv4 address or [IPv6] address");
  }
  return Status::OK();
}

std::string FormatAddress(const sockaddr* addr) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    return std::string("[") + text + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  if (addr->sa_family == AF_INET) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(in4->sin_port));
  }
  return "?";
}

}  // namespace petrel::internal
