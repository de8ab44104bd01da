// HTTP/1.1 framing for the control API: the request side of one connection (bytes in,
// complete requests out, over http_parser) and the response side (bytes to write).
// No sockets here, so the unit tests and the fuzzer drive it byte by byte.
#ifndef PETREL_LIB_API_HTTP_H_
#define PETREL_LIB_API_HTTP_H_

#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "petrel/api.h"

namespace petrel::internal {

// Limits of one request. Past them the connection answers 414, 431 or 413 and closes.
inline constexpr size_t kMaxUrlBytes = 8 << 10;
inline constexpr size_t kMaxHeaderBytes = 64 << 10;  // request target + header names and values
inline constexpr size_t kMaxBodyBytes = 4 << 20;
// Pipelining: complete requests not yet taken with Next(), at most this many and at
// most about kMaxBodyBytes of bodies. Past that the connection parses nothing more
// (full()) until some are taken: the bytes fed meanwhile wait unparsed.
inline constexpr size_t kMaxQueuedRequests = 16;

// A complete request and what the connection must do after answering it.
struct HttpRequest {
  ApiRequest request;
  bool keep_alive = true;  // false: answer, then close
  bool http10 = false;     // an HTTP/1.0 client: no chunked encoding
};

// The request side of one connection. Feed it bytes as they arrive, in pieces of any
// size; take complete requests with Next(), in order (pipelining). After a malformed
// or oversized request it parses nothing more: answer the requests taken so far,
// then error(), then close. Never throws.
class HttpConnection {
 public:
  HttpConnection();
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  void Feed(std::string_view data);
  // Moves the oldest complete request into *out; false when there is none.
  bool Next(HttpRequest* out);
  // True while requests wait to be taken as many as it queues (see kMaxQueuedRequests):
  // the caller stops reading until Next() has taken some.
  bool full() const { return paused_; }
  // True while a request is partly received: its first byte came, its last not yet.
  bool partial() const { return in_message_; }

  // The connection must close after the requests already taken are answered: it
  // failed (see error()), or the client asked for an upgrade petrel does not speak.
  bool done() const { return failed_ || upgraded_; }
  bool failed() const { return failed_; }
  // REQUIRES: failed(). The answer to send before closing: 400, 411, 413, 414 or 431.
  const ApiResponse& error() const { return error_; }

  // True once for a request that sent "Expect: 100-continue" and whose body has not
  // started to arrive: the caller writes "HTTP/1.1 100 Continue".
  bool TakeContinue();

 private:
  struct Parser;
  friend struct Parser;

  void Fail(int status, const std::string& message);
  int OnHeadersComplete();
  void CommitHeader();

  std::unique_ptr<Parser> parser_;
  std::deque<HttpRequest> ready_;
  size_t ready_bytes_ = 0;  // bodies in ready_
  bool paused_ = false;     // full(): the parser stopped after a request
  std::string unparsed_;    // bytes fed while paused
  bool in_message_ = false;
  bool failed_ = false;
  bool upgraded_ = false;
  ApiResponse error_;

  // The request being parsed.
  HttpRequest current_;
  std::string url_;
  std::string field_;
  std::string value_;
  bool in_value_ = false;
  size_t header_bytes_ = 0;
  bool continue_pending_ = false;
};

// The bytes of an ordinary response.
std::string SerializeResponse(const ApiResponse& response, bool keep_alive, bool http10);
// The head of a streamed response: chunked for HTTP/1.1, else the body runs until the
// connection closes. The response's body is not included: send it as the first part.
std::string SerializeStreamHead(const ApiResponse& response, bool chunked);
// One chunk of a chunked body ("" for empty data: an empty chunk would end the body).
std::string Chunk(std::string_view data);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";
inline constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace petrel::internal

#endif  // PETREL_LIB_API_HTTP_H_
