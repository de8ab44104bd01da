// Fuzzes what the runtime daemons' answers meet first in petrel (issues 15 and 16): the
// Docker adapter's readers of dockerd's streamed answers (runtime-adapters/docker/engine.h),
// its error and time parsing, and the containerd adapter's gRPC frame reader
// (runtime-adapters/containerd/grpc.h). The promises:
//   - nothing crashes, leaks or runs away on any input;
//   - a stream reads the same whole or fed one byte at a time (chunks, lines, frames),
//     nothing over its limit comes out, and a refused stream is refused either way;
//   - an error answer becomes one line, a time parses or is refused without reading
//     past its text.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#ifdef PETREL_FUZZ_DOCKER
#include "runtime-adapters/docker/engine.h"
#endif
#ifdef PETREL_FUZZ_CONTAINERD
#include "runtime-adapters/containerd/grpc.h"
#endif

namespace {

void Require(bool ok) {
  if (!ok) std::abort();
}

constexpr size_t kLimit = 256;

#ifdef PETREL_FUZZ_DOCKER
using petrel::internal::DockerLineReader;
using petrel::internal::DockerLogChunk;
using petrel::internal::DockerLogReader;

// The chunks of `data` fed `step` bytes at a time, "!" last when refused.
std::vector<std::string> Chunks(std::string_view data, size_t step) {
  DockerLogReader reader(kLimit);
  std::vector<std::string> out;
  for (size_t at = 0; at < data.size(); at += step) {
    std::vector<DockerLogChunk> chunks;
    const bool ok = reader.Feed(data.substr(at, step), &chunks).ok();
    for (DockerLogChunk& c : chunks) {
      Require(c.data.size() <= kLimit && c.stream >= 0 && c.stream <= 2);
      out.push_back(std::to_string(c.stream) + c.data);
    }
    if (!ok) {
      out.push_back("!");
      return out;
    }
  }
  if (!reader.Finish().ok()) out.push_back("!cut");
  return out;
}

std::vector<std::string> Lines(std::string_view data, size_t step) {
  DockerLineReader reader(kLimit);
  std::vector<std::string> out;
  for (size_t at = 0; at < data.size(); at += step) {
    const bool ok = reader.Feed(data.substr(at, step), &out).ok();
    if (!ok) {
      out.push_back("!");
      return out;
    }
  }
  for (const std::string& line : out)
    Require(line.size() <= kLimit && line.find('\n') == std::string::npos);
  out.push_back("rest:" + reader.TakeRest());
  return out;
}

void Docker(std::string_view data) {
  Require(Chunks(data, data.size() + 1) == Chunks(data, 1));
  // A line over the limit is refused after the lines before it, fed whole or bytewise.
  Require(Lines(data, data.size() + 1) == Lines(data, 1));
  petrel::Status s = petrel::internal::DockerStatus("GET /x", 500, data);
  Require(!s.ok() && s.message().find('\n') == std::string::npos && s.message().size() < 1024);
  (void)petrel::internal::DockerParseTime(data);
  const size_t half = data.size() / 2;
  (void)petrel::internal::DockerNegotiate(data.substr(0, half), data.substr(half));
}
#endif

#ifdef PETREL_FUZZ_CONTAINERD
std::vector<std::string> Frames(std::string_view data, size_t step) {
  petrel::internal::GrpcFrameReader reader(kLimit);
  std::vector<std::string> out;
  for (size_t at = 0; at < data.size(); at += step) {
    const bool ok = reader.Feed(data.substr(at, step), &out).ok();
    if (!ok) {
      out.push_back("!");
      return out;
    }
  }
  for (const std::string& m : out) Require(m.size() < kLimit);
  if (!reader.Finish().ok()) out.push_back("!cut");
  return out;
}

void Containerd(std::string_view data) {
  std::vector<std::string> whole = Frames(data, data.size() + 1);
  std::vector<std::string> bytewise = Frames(data, 1);
  Require(whole == bytewise);
  (void)petrel::internal::GrpcMessageDecode(data);
}
#endif

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const std::string_view data(reinterpret_cast<const char*>(bytes), size);
#ifdef PETREL_FUZZ_DOCKER
  Docker(data);
#endif
#ifdef PETREL_FUZZ_CONTAINERD
  Containerd(data);
#endif
  return 0;
}
