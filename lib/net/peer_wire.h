// The bytes PeerTransport puts inside its TLS sessions, and the addresses it takes:
// pure functions, apart from the socket code, so they can be read, tested and fuzzed
// alone (tests/fuzz/peer_frame_fuzz.cpp).
//
// Preamble: the client's first plaintext bytes once its handshake is done, all
// integers big-endian:
//   "PTRL"        4 bytes, magic
//   version       1 byte, kWireVersion
//   channel       1 byte, Channel
//   raft only:
//     raft id     8 bytes, not 0
//     length      2 bytes, 1 to kMaxRaftAddressBytes
//     address     that many printable ASCII bytes: the connecting server's raft address
// The server answers nothing: it either carries on or closes the connection (and logs
// why). A preamble is at most kMaxPreambleBytes.
//
// Frames (request and join channels), after the preamble, both ways:
//   length        4 bytes: the body's length, at most the receiver's max_message_bytes
//   request id    8 bytes: chosen by the caller, echoed by the response
//   kind          1 byte, FrameKind
//   body          `length` bytes
// Raft channels carry raft's own stream after the preamble, untouched.
//
// Thread-safety: pure functions; a FrameReader belongs to one owner.
#ifndef PETREL_LIB_NET_PEER_WIRE_H_
#define PETREL_LIB_NET_PEER_WIRE_H_

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "petrel/log.h"
#include "petrel/status.h"

struct uv_loop_s;

namespace petrel::internal {

inline constexpr uint8_t kWireVersion = 1;
inline constexpr size_t kMaxRaftAddressBytes = 255;
inline constexpr size_t kMaxPreambleBytes = 4 + 1 + 1 + 8 + 2 + kMaxRaftAddressBytes;
inline constexpr size_t kFrameHeaderBytes = 4 + 8 + 1;

enum class Channel : uint8_t { kRaft = 1, kRequest = 2, kJoin = 3 };
enum class FrameKind : uint8_t { kRequest = 1, kResponse = 2, kJoin = 3 };

const char* ChannelName(Channel channel);

struct Preamble {
  Channel channel = Channel::kRequest;
  uint64_t raft_id = 0;      // raft only
  std::string raft_address;  // raft only
};

// REQUIRES: a raft preamble has an id and an address DecodePreamble accepts.
std::string EncodePreamble(const Preamble& preamble);

// Decodes the preamble at the start of `data` into `out`: the number of bytes it took,
// 0 when `data` is a valid beginning of one but too short, or InvalidArgument ("bad
// preamble: unknown channel 9").
Result<size_t> DecodePreamble(std::string_view data, Preamble* out);

struct Frame {
  FrameKind kind = FrameKind::kRequest;
  uint64_t id = 0;
  std::string body;
};

// Appends the frame of `body` to `out`.
void AppendFrame(FrameKind kind, uint64_t id, std::string_view body, std::string* out);

// Cuts a byte stream into frames, holding at most one frame's bytes.
class FrameReader {
 public:
  explicit FrameReader(size_t max_body_bytes) : max_body_bytes_(max_body_bytes) {}

  void Append(std::string_view data) { buffer_.append(data.data(), data.size()); }
  // The next whole frame into `frame` and true; false when more bytes are needed; or
  // InvalidArgument when the stream is bad ("message of 5000 bytes is over the limit
  // of 4096", "unknown frame kind 7"): the connection must then be dropped.
  Result<bool> Next(Frame* frame);
  // Bytes appended but not yet returned in a frame.
  size_t buffered() const { return buffer_.size() - start_; }

 private:
  size_t max_body_bytes_;
  std::string buffer_;
  size_t start_ = 0;
};

// Parses "ADDR:PORT" ("10.0.0.5:7400", "[::1]:7400"): numeric addresses only, so no
// name lookup ever waits on the loop.
Status ParseAddress(const std::string& address, sockaddr_storage* out);

// "ADDR:PORT" of an IPv4 or IPv6 socket address ("[::1]:7400").
std::string FormatAddress(const sockaddr* addr);

// JoinCall with the channel and the frame kind chosen: JoinCall is (kJoin, kJoin). For
// tests, which play a newcomer that misbehaves (asks for a request channel, or sends an
// ordinary request on a join channel) and must be refused.
void CertlessCall(
    uv_loop_s* loop, const std::string& address, const std::string& ca_hash, Channel channel,
    FrameKind kind, std::string request, int64_t timeout_ms,
    std::function<void(Status status, std::string response, std::string ca_cert_pem)> done,
    LogSink log);

}  // namespace petrel::internal

#endif  // PETREL_LIB_NET_PEER_WIRE_H_
