// The local control API: HTTP/1.1 with JSON bodies over a Unix socket, as petreld
// serves it. The contract (paths, keys, status codes) is examples/petreld/API.md.
//
//   petrel::ApiServer server(orch.get(), options);
//   petrel::Status s = server.Listen(loop, "/run/petrel/petrel.sock");
//   ... uv_run(loop) ...
//   server.Close();   // then run the loop until its handles are closed
//
// Two layers, so the first can be tested and fuzzed without sockets:
//  - ApiHandler maps one parsed request to one response (or to the start of a stream)
//    over an Orchestrator, its only way in;
//  - ApiServer owns the socket and the connections on a libuv loop and runs the
//    streams (events and logs with follow=1).
//
// Threading: the server's loop only parses, routes and writes. A request that may wait
// (an apply or delete commits to disk; events and logs read the database and the
// runtime; every cluster call waits for the peers) is handled on one of the server's
// own worker threads, and its answer comes back to the loop; the connection's next
// pipelined request waits for it, so answers keep their order. Streams read their
// next page or chunk the same way. Event streams need the Orchestrator's events on the
// server's loop thread: Attach() the Orchestrator to the same loop (or Step() it from
// that thread). The embedder must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)): a client
// hanging up must not kill the process.
#ifndef PETREL_API_H_
#define PETREL_API_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "petrel/log.h"
#include "petrel/orchestrator.h"
#include "petrel/runtime.h"
#include "petrel/status.h"

struct uv_loop_s;

namespace petrel {

class Cluster;

// One HTTP request, as the connection parser hands it over.
struct ApiRequest {
  std::string method;  // "GET", "PUT", ...
  std::string path;    // percent-decoded, without the query: "/v1/workloads/web"
  std::map<std::string, std::string> query;    // decoded; a repeated key keeps the last
  std::map<std::string, std::string> headers;  // names lower-cased; repeats joined by ", "
  std::string body;                            // de-chunked
};

// What a stream (a request with follow=1) goes on with after the first part.
struct ApiStream {
  enum class Kind { kNone, kEvents, kLogs, kPull };
  Kind kind = Kind::kNone;
  std::string workload;      // kEvents: only this workload's events when not empty
  int64_t after_seq = 0;     // kEvents: events after this one
  int replica = 0;           // kLogs
  std::string container_id;  // kLogs: "" until the replica has a container
  int64_t log_offset = 0;    // kLogs: where the first part ended in that container's log
  std::string image;         // kPull: the reference to pull
  PullPolicy pull_policy = PullPolicy::kIfNotPresent;  // kPull
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  // The whole body; for a stream, its first part.
  std::string body;
  // Extra headers, e.g. {"Allow", "GET, PUT"} with a 405.
  std::vector<std::pair<std::string, std::string>> headers;
  ApiStream stream;  // kind kNone: an ordinary response
};

struct ApiOptions {
  // In GET /v1/version. The Orchestrator's node name (Options::node_name).
  std::string node_name;
  // In GET /v1/version: the runtime's Name().
  std::string runtime_name;
  // Connections that send requests, at most this many. One more takes the slot of the
  // oldest connection that is idle or still sending its request (which is closed);
  // when every one is being answered, it gets a 503 and is closed.
  int max_connections = 64;
  // Follow streams (events and logs with follow=1), counted apart from
  // max_connections: one more gets a 503.
  int max_streams = 32;
  // A connection that sends nothing for this long between requests is closed (streams
  // excepted).
  int64_t idle_timeout_ms = 60 * 1000;
  // A request must arrive whole, headers and body, within this long of its first byte:
  // else a 408 and the connection is closed. Bytes that trickle in do not extend it.
  int64_t request_timeout_ms = 30 * 1000;
  // How often a log stream asks the runtime for new output.
  int64_t log_poll_ms = 250;
  // A stream whose client reads slower than it is written to is closed once this
  // many bytes wait to be written; a connection whose answers wait so, pipelined
  // faster than they are read, is not read from until half of them are.
  size_t max_stream_backlog_bytes = 1 << 20;
  // The group the socket (0660) belongs to; its members may drive the API, which is
  // root on the host. Empty: the process's group. A socket directory the server
  // creates (0750) gets this group too; one that exists keeps its own.
  std::string socket_group;
  // Where the server says what it refused or dropped (503s, slow readers), and, at
  // debug level, each client's uid, gid and pid (SO_PEERCRED). Optional.
  LogSink log_sink;
  // Requests that may wait (see Threading) run on this many threads of the server's.
  int worker_threads = 2;
  // > 0: a timer every this many milliseconds measures how late the loop runs it, so
  // GET /v1/debug/loop can say how long the loop's longest stall was. 0: off (an idle
  // daemon then never wakes for it).
  int64_t loop_probe_ms = 0;
  // The cluster this node belongs to (petreld --peer-listen), which /v1/cluster and
  // /v1/nodes answer from; null when the node is not cluster-capable (those paths are
  // then a 404 saying so). It is an Orchestrator too: give the same object as the
  // handler's or server's Orchestrator. REQUIRES: outlives the handler and server.
  Cluster* cluster = nullptr;
};

// The request handler: no sockets, no loop. Handle() never throws.
class ApiHandler {
 public:
  // REQUIRES: orch outlives the handler.
  ApiHandler(Orchestrator* orch, ApiOptions options);

  // Thread-safe: the Orchestrator's calls are.
  ApiResponse Handle(const ApiRequest& request);

  // True when handling `request` may wait for the disk or the runtime: the server
  // then handles it off its loop thread.
  static bool MayBlock(const ApiRequest& request);

  // What GET /v1/debug/loop answers (the body; `reset` starts a new period). Without
  // it that path is a 404: the loop probe is off. The server sets it.
  void SetLoopStats(std::function<Result<std::string>(bool reset)> stats);

  // {"error": message} with `status`.
  static ApiResponse Error(int status, const std::string& message);

 private:
  ApiResponse Route(const ApiRequest& request);
  ApiResponse ListWorkloads();
  ApiResponse GetWorkload(const std::string& name);
  ApiResponse ApplyMany(const ApiRequest& request);
  ApiResponse ApplyOne(const ApiRequest& request, const std::string& name);
  ApiResponse DeleteWorkload(const std::string& name);
  ApiResponse Logs(const ApiRequest& request, const std::string& name);
  ApiResponse Events(const ApiRequest& request);
  ApiResponse RouteImages(const ApiRequest& request);
  ApiResponse PullImage(const ApiRequest& request);
  ApiResponse RouteCluster(const ApiRequest& request);
  ApiResponse InitCluster(const ApiRequest& request);
  ApiResponse SetClusterSettings(const ApiRequest& request);
  ApiResponse ClusterToken(bool rotate);
  ApiResponse GetClusterStatus();
  ApiResponse ListNodes();
  ApiResponse GetNode(const std::string& name);
  ApiResponse RemoveNode(const std::string& name);

  Orchestrator* orch_;
  ApiOptions options_;
  std::function<Result<std::string>(bool reset)> loop_stats_;
};

// The server: a Unix socket on a libuv loop, HTTP/1.1 with keep-alive and pipelining.
// Not thread-safe: every call on the loop's thread.
class ApiServer {
 public:
  // REQUIRES: orch outlives the server.
  ApiServer(Orchestrator* orch, ApiOptions options);
  // Closes what is still open (as Close()); the loop must still run afterwards so the
  // handles' close callbacks free them.
  ~ApiServer();

  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Creates the socket's directory (0750) if missing, replaces a stale socket file
  // (one nobody answers on), and listens with mode 0660 and ApiOptions::socket_group;
  // the socket is made in a private directory beside it and renamed into place, so it
  // is never reachable with another mode or group. Fails if another process answers on
  // `socket_path`, the path exists and is not a socket, or the group does not exist.
  Status Listen(uv_loop_s* loop, const std::string& socket_path);

  // Stops accepting connections and removes the socket file; served connections go on.
  void StopAccepting();

  // Stops accepting and closes every connection (streams end mid-way). Memory is
  // freed by libuv's close callbacks: run the loop until uv_run returns.
  void Close();

  // Open connections, for tests and logs.
  size_t connections() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace petrel

#endif  // PETREL_API_H_
