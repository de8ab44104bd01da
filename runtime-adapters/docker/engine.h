// Calls of the Docker Engine API (issue 15) over dockerd's Unix socket: HTTP/1.1 with
// libcurl, loaded through lib/image/curl_lib.h as the registry puller loads it, on
// petrel's workers (never the loop: every call blocks until dockerd answers).
//
// The version is negotiated once, at Open: petrel is written against API 1.41 (Docker
// 20.10, Debian 12's docker.io) and speaks the lower of that and what dockerd offers;
// a dockerd below 1.41 is refused. Every path is then sent as "/v<version><path>".
//
// An error answer (4xx, 5xx) is dockerd's {"message": "..."}; it becomes a one-line
// Status that names the call: "POST /containers/create: 409: Conflict. The container
// name ..." (DockerStatus).
//
// The framing of the answers that stream (logs, events, image loads) is plain functions
// over bytes, for tests and fuzzing; DockerEngine does the I/O.
#ifndef PETREL_RUNTIME_ADAPTERS_DOCKER_ENGINE_H_
#define PETREL_RUNTIME_ADAPTERS_DOCKER_ENGINE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "petrel/status.h"

namespace petrel::internal {

// The API version petrel is written against, and the lowest it accepts.
inline constexpr char kDockerApiVersion[] = "1.41";

// The version petrel speaks with a dockerd whose /version says ApiVersion `server_api`
// and MinAPIVersion `server_min`: the lower of kDockerApiVersion and `server_api`.
// NotSupported when dockerd speaks less than kDockerApiVersion, or no longer speaks it
// ("dockerd speaks API 1.40 (and down to 1.12); petrel needs 1.41"); InvalidArgument for
// a version that is not "<major>.<minor>".
Result<std::string> DockerNegotiate(std::string_view server_api, std::string_view server_min);

// The Status of call `call` ("POST /containers/create") answered with HTTP status
// `http` and `body`: OK for 1xx-3xx (304: already started, already stopped), else
// "<call>: <http>: <message>" with the body's "message" (the body itself, quoted and
// cut, when it has none) and the code closest to `http`: 400 InvalidArgument, 401 and 403
// PermissionDenied, 404 NotFound, 409 FailedPrecondition (a conflict: a name in use, a
// container not running or running), 501 NotSupported, 503 Unavailable, else Internal.
Status DockerStatus(std::string_view call, long http, std::string_view body);

// A time as dockerd writes it (RFC 3339 in UTC, nanoseconds: "2026-12-03T07:09:08.920690182Z").
// Go's zero time ("0001-01-01T00:00:00Z", never) gives the epoch (a default time_point).
// InvalidArgument for anything else, and for a year before 1970 or after 2261 (past
// what a time_point holds).
Result<std::chrono::system_clock::time_point> DockerParseTime(std::string_view text);

// The lines of a body that comes in pieces (/events, /images/load: one JSON document a
// line), each as soon as its '\n' has come, however the pieces cut them. Holds at most
// one line.
class DockerLineReader {
 public:
  explicit DockerLineReader(size_t max_line) : max_line_(max_line) {}
  // Appends to `lines` the lines `data` completes, without their '\n' (empty ones
  // skipped). Corruption for a line of more than max_line bytes (lines before it have
  // been appended); after an error the reader must not be fed.
  Status Feed(std::string_view data, std::vector<std::string>* lines);
  // The last line, when the body did not end with '\n' ("" for none).
  std::string TakeRest() { return std::move(partial_); }

 private:
  size_t max_line_;
  std::string partial_;
};

// One piece of a container's output as /containers/{id}/logs sends it when the
// container has no terminal: an 8-byte head (the stream: 1 stdout, 2 stderr; 3 zero
// bytes; the length, 4 bytes big-endian), then the bytes.
struct DockerLogChunk {
  int stream = 0;  // 1 stdout, 2 stderr
  std::string data;
};

// The chunks of a log body that comes in pieces. Holds at most one chunk.
class DockerLogReader {
 public:
  explicit DockerLogReader(size_t max_chunk) : max_chunk_(max_chunk) {}
  // Appends to `chunks` those `data` completes. Corruption for a head with a stream
  // other than 0-2 or nonzero padding, or a chunk over max_chunk bytes; after an error
  // the reader must not be fed.
  Status Feed(std::string_view data, std::vector<DockerLogChunk>* chunks);
  // OK when all bytes fed were whole chunks, else Corruption for the one cut short.
  Status Finish() const;

 private:
  size_t max_chunk_;
  std::string partial_;
};

// What dockerd says of itself (GET /version).
struct DockerVersion {
  std::string version;          // "20.10.24+dfsg1"
  std::string api_version;      // "1.41": the highest it speaks
  std::string min_api_version;  // "1.12"
  std::string os;               // "linux"
  std::string arch;             // "amd64"
};

// A connection to one dockerd, a call at a time, through one libcurl easy handle (its
// connection kept between calls).
//
// Thread-safety: one call at a time; distinct engines may be used from distinct threads.
class DockerEngine {
 public:
  struct Options {
    std::string socket_path = "/var/run/docker.sock";
    // Per call, connection included; a Stream's has the connection's only.
    std::chrono::milliseconds timeout{30000};
    // The largest answer Call accepts; the largest line or log chunk of a Stream.
    size_t max_response = 16 << 20;
  };

  // Loads libcurl, asks dockerd its version and negotiates the API's (DockerNegotiate).
  // Unavailable when dockerd cannot be reached ("dockerd at unix:/x.sock: Couldn't
  // connect to server"); IOError when libcurl cannot be loaded; NotSupported for a
  // dockerd too old.
  static Result<std::unique_ptr<DockerEngine>> Open(Options options);
  ~DockerEngine();
  DockerEngine(const DockerEngine&) = delete;
  DockerEngine& operator=(const DockerEngine&) = delete;

  const DockerVersion& server() const;
  const std::string& api_version() const;  // negotiated: "1.41"
  const std::string& socket_path() const;

  // Sends `method` ("GET", "POST", "DELETE") to `path` ("/containers/json?all=1", below
  // the version) with the JSON `body` ("" for none) and puts the answer's body into
  // *answer. Errors, each naming the call: DockerStatus's for 4xx and 5xx; Unavailable
  // when dockerd cannot be reached or the answer breaks off; DeadlineExceeded after the
  // timeout; IOError for an answer over max_response bytes. `http`, when given, gets the
  // status (304 for a container already started or stopped).
  Status Call(const char* method, const std::string& path, const std::string& body,
              std::string* answer, long* http = nullptr);

  // What a Stream sends: `read` fills the buffer it is given and returns how much it put
  // there, 0 at the end (an error ends the call with it); `content_type` names it.
  struct Upload {
    std::function<Result<size_t>(char* buf, size_t size)> read;
    std::string content_type = "application/x-tar";
    std::vector<std::string> headers;  // more header lines: "X-Registry-Auth: ..."
  };

  // Sends `method` to `path` with `upload` (null: no body) and hands the answer's body
  // to `on_data` as it comes, on the calling thread; a non-OK Status from it ends the
  // call with that Status. No overall deadline, only the connection's; `stop` (may be
  // empty) is polled about once a second and before each piece: once it says true the
  // call is cut within about a second and OK returned, with stopped() true. An error
  // answer (4xx, 5xx) is not handed on: it is collected whole and returned as Call's.
  // OK also when dockerd ends the answer (a stream of events ends when dockerd stops).
  Status Stream(const char* method, const std::string& path, const Upload* upload,
                const std::function<Status(std::string_view data)>& on_data,
                const std::function<bool()>& stop);

  // Whether the last Stream ended because `stop` said so (or Cut).
  bool stopped() const;

  // Ends the Stream under way on another thread at once, its connection shut down, as
  // `stop` would within a second: it returns OK, with stopped() true. Every later Stream
  // of this engine ends so too: a cut engine is for dropping (was_cut). Safe to call
  // from any thread, while a call runs or not.
  void Cut();
  bool was_cut() const;

 private:
  struct Impl;
  explicit DockerEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_DOCKER_ENGINE_H_
