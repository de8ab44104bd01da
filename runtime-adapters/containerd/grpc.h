// Unary and server-streaming gRPC calls to containerd over HTTP/2 cleartext on its Unix socket,
// with libcurl (loaded through lib/image/curl_lib.h), without a gRPC library: containerd's API is
// protobuf messages in gRPC's length-prefixed frames, and its outcome is the
// `grpc-status` and `grpc-message` of the trailers (or of the headers, when the answer
// is trailers only).
//
// The framing and the status mapping are plain functions over bytes, for tests and
// fuzzing; GrpcChannel does the I/O.
#ifndef PETREL_RUNTIME_ADAPTERS_CONTAINERD_GRPC_H_
#define PETREL_RUNTIME_ADAPTERS_CONTAINERD_GRPC_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "petrel/status.h"

namespace petrel::internal {

// The largest answer a call accepts, frames included, unless told otherwise.
inline constexpr size_t kGrpcMaxResponseBytes = 16 << 20;
// A frame's head: the compressed flag (1 byte) and the message's length (4, big-endian).
inline constexpr size_t kGrpcFrameHeadBytes = 5;

// `message` as one uncompressed gRPC frame.
std::string GrpcFrame(std::string_view message);

// The messages of `body`, a sequence of whole frames, appended to `messages`.
// Errors: Corruption for a frame cut short ("frame 2 ends after 3 of 10 bytes"), or of
// `max_message` bytes or more; NotSupported for a compressed frame (petrel asks for
// none, so none should come).
Status GrpcUnframe(std::string_view body, size_t max_message, std::vector<std::string>* messages);

// The messages of a body that comes in pieces (a server stream's), each as soon as its
// frame is whole, however the pieces cut or pack the frames. Holds at most one frame.
class GrpcFrameReader {
 public:
  explicit GrpcFrameReader(size_t max_message) : max_message_(max_message) {}

  // Appends to `messages` those whose frames `data` completes. Errors as GrpcUnframe's,
  // as soon as a frame's head shows them (its message is never buffered); messages of
  // frames before it have been appended. After an error the reader must not be fed.
  Status Feed(std::string_view data, std::vector<std::string>* messages);

  // OK when all bytes fed were whole frames; else GrpcUnframe's Corruption for the frame
  // cut short.
  Status Finish() const;

 private:
  size_t max_message_;
  std::string partial_;  // the start of the frame being read
  int frame_ = 1;        // its number, from 1, for messages
};

// The name of a gRPC status code ("UNIMPLEMENTED"), "CODE_<n>" for one out of range.
std::string GrpcCodeName(int code);

// A `grpc-message` as sent: percent-encoded UTF-8. A malformed escape is kept as it
// came, so a message is never lost.
std::string GrpcMessageDecode(std::string_view encoded);

// The Status of a call of `method` ("containerd.services.version.v1.Version/Version")
// that ended with gRPC status `code` and the decoded `message`: OK for 0, else a
// one-line message "<method>: <CODE NAME>: <message>" with the closest code
// (UNIMPLEMENTED: NotSupported, NOT_FOUND: NotFound, UNAVAILABLE: Unavailable, ...).
Status GrpcStatus(std::string_view method, int code, std::string_view message);

// How a server stream ended without error (GrpcChannel::Stream).
enum class GrpcStreamEnd {
  kStopped,  // `stop` said so: the caller's doing, nothing to report
  kEnded,    // the server ended it with grpc-status OK
};

// Calls to a gRPC server on a Unix socket through one libcurl easy handle, a connection
// per call (grpc.cpp says why).
//
// Thread-safety: one call at a time (a worker owns a channel); distinct channels may be
// used from distinct threads.
class GrpcChannel {
 public:
  struct Options {
    std::string socket_path;  // containerd's: /run/containerd/containerd.sock
    std::string ns;           // containerd-namespace, "" for none (non-namespaced calls)
    // containerd-lease: what the calls make is held by this lease (Leases service) from
    // containerd's garbage collection; "" for none.
    std::string lease;
    // Per call, connection included; for a stream, the connection's only.
    std::chrono::milliseconds timeout{10000};
    size_t max_response = kGrpcMaxResponseBytes;
  };

  // IOError when libcurl cannot be loaded. Connects lazily, on the first call.
  static Result<std::unique_ptr<GrpcChannel>> Open(Options options);
  // Options::lease: "" for none.
  const std::string& lease() const;
  ~GrpcChannel();
  GrpcChannel(const GrpcChannel&) = delete;
  GrpcChannel& operator=(const GrpcChannel&) = delete;

  // Calls `method` ("package.Service/Method", a leading '/' allowed) with the
  // serialized `request` and puts the one serialized message of the answer into
  // `response`. Errors, each naming the method: the server's gRPC status mapped by
  // GrpcStatus; Unavailable when the socket cannot be reached or the answer breaks off;
  // DeadlineExceeded after the timeout; IOError for an answer over max_response bytes;
  // Internal for an HTTP error or an answer without grpc-status or without exactly one
  // message. A request libcurl could not send because containerd had already answered
  // and closed the stream is sent again, up to 32 times (grpc.cpp says why); any other
  // request is sent once.
  Status Call(std::string_view method, std::string_view request, std::string* response);

  // Calls the server-streaming `method` with the serialized `request` and hands each
  // serialized message of the answer to `on_message` as soon as its frame is whole, on
  // the calling thread; a non-OK Status from it ends the stream with that Status. A stream
  // has no overall deadline, only the connection's (`timeout`). `stop` is polled about once
  // a second while the stream is idle, and before each piece of the answer; once it says
  // true the stream is cut and kStopped returned, within about a second (`stop` may read
  // what another thread sets: an atomic). kEnded when the server ends it with OK. Errors
  // as Call's, but no deadline after the connection; Corruption or NotSupported (named
  // by GrpcFrameReader) for a frame of max_response bytes or more, cut short or compressed.
  Result<GrpcStreamEnd> Stream(std::string_view method, std::string_view request,
                               const std::function<Status(std::string message)>& on_message,
                               const std::function<bool()>& stop);

  // Calls the client-streaming (or bidirectional) `method` with the serialized messages
  // `next` makes, one at a time, each sent as it is made: `next` sets *message and
  // returns true, or returns false after the last, or an error, which ends the call with
  // it. The serialized messages of the answer go into `responses` (a bidirectional
  // method's come as the server reads, and are collected: each must be small). No
  // overall deadline: a transfer that moves nothing for the timeout is cut
  // (DeadlineExceeded). Errors as Call's, and `next`'s; the request is sent once.
  Status Upload(std::string_view method,
                const std::function<Result<bool>(std::string* message)>& next,
                std::vector<std::string>* responses);

 private:
  struct Impl;
  explicit GrpcChannel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CONTAINERD_GRPC_H_
