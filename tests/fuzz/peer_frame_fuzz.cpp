// Fuzzes what a peer's bytes meet first once TLS is done (lib/net/peer_wire.h): the
// preamble decoder and the frame reader. The promises:
//   - nothing crashes, leaks or runs away on any input;
//   - a preamble decodes the same whole or fed one byte longer at a time, and what
//     decodes encodes back to the same bytes;
//   - frames come out the same whole or fed one byte at a time, none over the limit,
//     and the reader never holds more than one frame's bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "lib/net/peer_wire.h"

namespace {

using petrel::internal::Frame;
using petrel::internal::FrameReader;
using petrel::internal::kFrameHeaderBytes;
using petrel::internal::Preamble;

void Require(bool ok) {
  if (!ok) std::abort();
}

constexpr size_t kLimit = 256;

// Every frame of `data` fed in pieces of `step` bytes; "!" plus the error when the
// stream is refused.
std::vector<std::string> Frames(std::string_view data, size_t step) {
  FrameReader reader(kLimit);
  std::vector<std::string> out;
  Frame frame;
  for (size_t at = 0; at < data.size(); at += step) {
    reader.Append(data.substr(at, step));
    Require(reader.buffered() <= kFrameHeaderBytes + kLimit + step);
    while (true) {
      auto got = reader.Next(&frame);
      if (!got.ok()) {
        out.push_back("!" + got.status().message());
        return out;
      }
      if (!*got) break;
      Require(frame.body.size() <= kLimit);
      out.push_back(std::to_string(static_cast<int>(frame.kind)) + "/" + std::to_string(frame.id) +
                    "/" + frame.body);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  std::string_view data(reinterpret_cast<const char*>(bytes), size);

  Preamble whole;
  auto used = petrel::internal::DecodePreamble(data, &whole);
  if (used.ok() && *used > 0) {
    Require(*used <= petrel::internal::kMaxPreambleBytes);
    Require(petrel::internal::EncodePreamble(whole) == data.substr(0, *used));
    for (size_t cut = 0; cut < *used; ++cut) {
      Preamble part;
      auto shorter = petrel::internal::DecodePreamble(data.substr(0, cut), &part);
      Require(shorter.ok() && *shorter == 0);
    }
  }

  std::vector<std::string> at_once = Frames(data, data.size() + 1);
  Require(Frames(data, 1) == at_once);
  return 0;
}
