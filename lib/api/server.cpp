// ApiServer: the control API's Unix socket on a libuv loop.
//
// Each connection is one heap object owning a uv_pipe_t and a uv_timer_t (the idle
// timeout while it serves requests, the poll of a log stream). It is freed by the
// last of their close callbacks; after Close() nothing reaches back into the server.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lib/api/http.h"
#include "lib/api/json.h"
#include "lib/util/fs.h"
#include "petrel/api.h"

namespace petrel {
namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;
constexpr int64_t kEventPage = 500;
constexpr size_t kLogReadBytes = 64 * 1024;

// A socket file nobody answers on is left by a process that died; one that answers
// belongs to a running server, which must not lose its socket to a second one.
Status ClearStaleSocket(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::OK();
    return internal::ErrnoError(path, "", errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Status::FailedPrecondition(path + " exists and is not a socket; not replacing it");
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return internal::ErrnoError("socket", "", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  close(fd);
  if (rc == 0) {
    return Status::FailedPrecondition("socket " + path +
                                      " is in use: another server (petreld?) answers on it");
  }
  if (err != ECONNREFUSED) {
    return internal::ErrnoError("probe socket " + path, "", err);
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return internal::ErrnoError("remove stale socket " + path, "", errno);
  }
  return Status::OK();
}

void FreeListener(uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); }

}  // namespace

class ApiServer::Impl {
 public:
  Impl(Orchestrator* orch, ContainerRuntime* runtime, ApiOptions options)
      : orch_(orch), runtime_(runtime), options_(options), handler_(orch, runtime, options) {}

  ~Impl() { Close(); }

  Status Listen(uv_loop_t* loop, const std::string& path);
  void StopAccepting();
  void Close();
  size_t connections() const { return conns_.size(); }

 private:
  enum class Mode { kRequests, kEvents, kLogs };

  struct Conn {
    Impl* server = nullptr;
    uv_pipe_t pipe;
    uv_timer_t timer;
    int open_handles = 0;
    bool closing = false;
    bool close_after_write = false;
    bool reading_paused = false;
    int pending_writes = 0;
    internal::HttpConnection http;
    std::vector<char> buffer = std::vector<char>(kReadBufferBytes);
    Mode mode = Mode::kRequests;
    bool chunked = true;
    // Streams.
    std::string workload;
    SubscriptionId subscription = 0;
    bool subscribed = false;
    int64_t last_seq = 0;
    bool backlog_done = false;
    int replica = 0;
    std::string container_id;
    int64_t log_offset = 0;
  };

  struct WriteReq {
    uv_write_t req;
    std::string data;
    Conn* conn;
  };

  void Log(LogLevel level, const std::string& msg) {
    if (options_.log_sink) options_.log_sink(level, "api: " + msg);
  }

  static size_t Queued(Conn* c) {
    return uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&c->pipe));
  }

  void Accept();
  void OnRead(Conn* c, ssize_t nread);
  void Serve(Conn* c);
  void Write(Conn* c, std::string data);
  void WriteBody(Conn* c, const std::string& data);
  void OnWritten(Conn* c, int status);
  void FinishAfterWrites(Conn* c);
  void CloseConn(Conn* c);
  void StartReading(Conn* c);
  void ArmIdleTimer(Conn* c);
  void StartStream(Conn* c, const internal::HttpRequest& req, ApiResponse& resp);
  void EndStream(Conn* c);
  void PumpEvents(Conn* c);
  void OnEvent(Conn* c, const Event& e);
  void PollLogs(Conn* c);

  Orchestrator* orch_;
  ContainerRuntime* runtime_;
  ApiOptions options_;
  ApiHandler handler_;
  uv_loop_t* loop_ = nullptr;
  uv_pipe_t* listener_ = nullptr;  // freed by its close callback
  std::set<Conn*> conns_;
};

Status ApiServer::Impl::Listen(uv_loop_t* loop, const std::string& path) {
  if (listener_ != nullptr) return Status::FailedPrecondition("api: already listening");
  if (path.empty()) return Status::InvalidArgument("api: socket path is empty");
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::InvalidArgument("socket path " + path + " is longer than " +
                                   std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes");
  }
  size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    PETREL_RETURN_IF_ERROR(
        internal::MakeDirs(path.substr(0, slash), 0750).WithContext("socket " + path));
  }
  PETREL_RETURN_IF_ERROR(ClearStaleSocket(path));

  auto* listener = new uv_pipe_t;
  int rc = uv_pipe_init(loop, listener, 0);
  if (rc != 0) {
    delete listener;
    return Status::Internal(std::string("uv_pipe_init: ") + uv_strerror(rc));
  }
  listener->data = this;
  auto fail = [&](const std::string& what, int code) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener), FreeListener);
    return Status::IOError(what + " " + path + ": " + uv_strerror(code));
  };
  if ((rc = uv_pipe_bind(listener, path.c_str())) != 0) return fail("bind", rc);
  // The socket's directory is 0750 and the socket 0660: the owner's group may talk to
  // petrel, nobody else.
  if (chmod(path.c_str(), 0660) != 0) return fail("chmod", uv_translate_sys_error(errno));
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener), 128, [](uv_stream_t* s, int status) {
    if (status == 0) static_cast<Impl*>(s->data)->Accept();
  });
  if (rc != 0) return fail("listen on", rc);
  loop_ = loop;
  listener_ = listener;
  return Status::OK();
}

void ApiServer::Impl::StopAccepting() {
  if (listener_ == nullptr) return;
  // libuv unlinks the socket file when it closes a bound pipe.
  uv_close(reinterpret_cast<uv_handle_t*>(listener_), FreeListener);
  listener_ = nullptr;
}

void ApiServer::Impl::Close() {
  StopAccepting();
  std::vector<Conn*> open(conns_.begin(), conns_.end());
  for (Conn* c : open) CloseConn(c);
}

void ApiServer::Impl::Accept() {
  auto* c = new Conn;
  c->server = this;
  uv_pipe_init(loop_, &c->pipe, 0);
  uv_timer_init(loop_, &c->timer);
  c->pipe.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  conns_.insert(c);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_),
                reinterpret_cast<uv_stream_t*>(&c->pipe)) != 0) {
    CloseConn(c);
    return;
  }
  if (conns_.size() > static_cast<size_t>(options_.max_connections)) {
    Log(LogLevel::kWarn,
        "refused a connection: " + std::to_string(options_.max_connections) + " are open");
    Write(c, internal::SerializeResponse(
                 ApiHandler::Error(503, "too many connections (at most " +
                                            std::to_string(options_.max_connections) + ")"),
                 false, false));
    FinishAfterWrites(c);
    return;
  }
  ArmIdleTimer(c);
  StartReading(c);
}

void ApiServer::Impl::StartReading(Conn* c) {
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c->pipe),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* conn = static_cast<Conn*>(h->data);
        *buf = uv_buf_init(conn->buffer.data(), static_cast<unsigned>(conn->buffer.size()));
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
        auto* conn = static_cast<Conn*>(s->data);
        if (!conn->closing) conn->server->OnRead(conn, nread);
      });
}

void ApiServer::Impl::ArmIdleTimer(Conn* c) {
  if (c->closing || c->mode != Mode::kRequests) return;
  uv_timer_start(
      &c->timer,
      [](uv_timer_t* t) {
        auto* conn = static_cast<Conn*>(t->data);
        if (!conn->closing) conn->server->CloseConn(conn);
      },
      static_cast<uint64_t>(options_.idle_timeout_ms), 0);
}

void ApiServer::Impl::OnRead(Conn* c, ssize_t nread) {
  if (nread < 0) {
    // The client hung up, or half-closed after its requests: the answers already
    // queued still go out.
    if (nread == UV_EOF && c->mode == Mode::kRequests) {
      FinishAfterWrites(c);
    } else {
      CloseConn(c);
    }
    return;
  }
  if (nread == 0 || c->mode != Mode::kRequests || c->close_after_write) return;
  ArmIdleTimer(c);
  c->http.Feed(std::string_view(c->buffer.data(), static_cast<size_t>(nread)));
  Serve(c);
}

void ApiServer::Impl::Serve(Conn* c) {
  internal::HttpRequest req;
  while (!c->closing && c->mode == Mode::kRequests && !c->close_after_write && c->http.Next(&req)) {
    ApiResponse resp = handler_.Handle(req.request);
    if (resp.stream.kind != ApiStream::Kind::kNone && resp.status == 200) {
      StartStream(c, req, resp);
      return;
    }
    Write(c, internal::SerializeResponse(resp, req.keep_alive, req.http10));
    if (!req.keep_alive) FinishAfterWrites(c);
  }
  if (c->closing || c->mode != Mode::kRequests || c->close_after_write) return;
  if (c->http.failed()) {
    Write(c, internal::SerializeResponse(c->http.error(), false, false));
    FinishAfterWrites(c);
    return;
  }
  if (c->http.done()) {
    FinishAfterWrites(c);
    return;
  }
  if (c->http.TakeContinue()) Write(c, std::string(internal::kContinue));
  // A client that pipelines faster than it reads its answers waits for them.
  if (!c->closing && Queued(c) > options_.max_stream_backlog_bytes) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->pipe));
    c->reading_paused = true;
  }
}

void ApiServer::Impl::Write(Conn* c, std::string data) {
  if (c->closing || data.empty()) return;
  auto* w = new WriteReq;
  w->data = std::move(data);
  w->conn = c;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  c->pending_writes++;
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c->pipe), &buf, 1,
                    [](uv_write_t* req, int status) {
                      auto* wr = reinterpret_cast<WriteReq*>(req);
                      Conn* conn = wr->conn;
                      delete wr;
                      conn->pending_writes--;
                      if (!conn->closing) conn->server->OnWritten(conn, status);
                    });
  if (rc != 0) {
    c->pending_writes--;
    delete w;
    CloseConn(c);
  }
}

void ApiServer::Impl::WriteBody(Conn* c, const std::string& data) {
  if (data.empty()) return;
  Write(c, c->chunked ? internal::Chunk(data) : data);
}

void ApiServer::Impl::OnWritten(Conn* c, int status) {
  if (status != 0) {
    CloseConn(c);
    return;
  }
  if (c->close_after_write) {
    if (c->pending_writes == 0) CloseConn(c);
    return;
  }
  switch (c->mode) {
    case Mode::kRequests:
      ArmIdleTimer(c);
      if (c->reading_paused && Queued(c) <= options_.max_stream_backlog_bytes / 2) {
        c->reading_paused = false;
        Serve(c);  // requests parsed before the pause
        if (!c->closing && !c->reading_paused && !c->close_after_write) {
          StartReading(c);
        }
      }
      break;
    case Mode::kEvents:
      if (!c->backlog_done) PumpEvents(c);
      break;
    case Mode::kLogs: break;
  }
}

void ApiServer::Impl::FinishAfterWrites(Conn* c) {
  if (c->closing) return;
  c->close_after_write = true;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->pipe));
  uv_timer_stop(&c->timer);
  if (c->pending_writes == 0) CloseConn(c);
}

void ApiServer::Impl::CloseConn(Conn* c) {
  if (c->closing) return;
  c->closing = true;
  if (c->subscribed) orch_->Unsubscribe(c->subscription);
  c->subscribed = false;
  conns_.erase(c);
  uv_timer_stop(&c->timer);
  auto on_closed = [](uv_handle_t* h) {
    auto* conn = static_cast<Conn*>(h->data);
    if (--conn->open_handles == 0) delete conn;
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), on_closed);
}

void ApiServer::Impl::StartStream(Conn* c, const internal::HttpRequest& req, ApiResponse& resp) {
  c->chunked = !req.http10;
  c->mode = resp.stream.kind == ApiStream::Kind::kEvents ? Mode::kEvents : Mode::kLogs;
  uv_timer_stop(&c->timer);
  Write(c, internal::SerializeStreamHead(resp, c->chunked));
  WriteBody(c, resp.body);
  c->workload = resp.stream.workload;
  if (c->mode == Mode::kEvents) {
    c->last_seq = resp.stream.after_seq;
    c->backlog_done = false;
    c->subscription = orch_->Subscribe([this, c](const Event& e) { OnEvent(c, e); });
    c->subscribed = true;
    PumpEvents(c);
  } else {
    c->replica = resp.stream.replica;
    c->container_id = resp.stream.container_id;
    c->log_offset = resp.stream.log_offset;
    uv_timer_start(
        &c->timer,
        [](uv_timer_t* t) {
          auto* conn = static_cast<Conn*>(t->data);
          if (!conn->closing) conn->server->PollLogs(conn);
        },
        static_cast<uint64_t>(options_.log_poll_ms), static_cast<uint64_t>(options_.log_poll_ms));
  }
}

void ApiServer::Impl::EndStream(Conn* c) {
  if (c->chunked) Write(c, std::string(internal::kLastChunk));
  FinishAfterWrites(c);
}

// Sends stored events after last_seq while the client keeps up; the write callback
// calls again for the rest. Events delivered live meanwhile are in the store too, so
// they come with a later page.
void ApiServer::Impl::PumpEvents(Conn* c) {
  while (!c->closing && !c->backlog_done && Queued(c) < options_.max_stream_backlog_bytes / 4) {
    Result<std::vector<Event>> page = orch_->Events(c->last_seq, kEventPage);
    if (!page.ok()) {
      Log(LogLevel::kError, "event stream: " + page.status().message());
      EndStream(c);
      return;
    }
    std::string out;
    for (const Event& e : *page) {
      c->last_seq = e.seq;
      if (c->workload.empty() || e.workload == c->workload) {
        out += internal::DumpLine(internal::EventJson(e));
      }
    }
    if (page->size() < static_cast<size_t>(kEventPage)) c->backlog_done = true;
    WriteBody(c, out);
  }
}

void ApiServer::Impl::OnEvent(Conn* c, const Event& e) {
  if (c->closing || !c->backlog_done || e.seq <= c->last_seq) return;
  c->last_seq = e.seq;
  if (!c->workload.empty() && e.workload != c->workload) return;
  WriteBody(c, internal::DumpLine(internal::EventJson(e)));
  if (!c->closing && Queued(c) > options_.max_stream_backlog_bytes) {
    Log(LogLevel::kWarn,
        "closed an event stream: its reader is " + std::to_string(Queued(c)) + " bytes behind");
    CloseConn(c);
  }
}

// Reads what the replica's container wrote since the last poll. When the replica
// gets a new container (a restart, a replacement), the stream says so in one line
// and goes on with the new container's output from its start. The stream ends when
// the workload is deleted or scaled below the replica.
void ApiServer::Impl::PollLogs(Conn* c) {
  // A slow reader makes the stream wait, not the loop: nothing is read meanwhile.
  if (Queued(c) > options_.max_stream_backlog_bytes / 4) return;
  Result<WorkloadState> w = orch_->Get(c->workload);
  if (!w.ok()) {
    if (w.status().IsNotFound()) EndStream(c);
    return;
  }
  const ReplicaStatus* r = nullptr;
  for (const ReplicaStatus& rs : w->replicas) {
    if (rs.index == c->replica) r = &rs;
  }
  if (r == nullptr) {
    if (c->replica >= w->spec.replicas) EndStream(c);
    return;
  }
  if (r->container_id.empty()) return;
  if (r->container_id != c->container_id) {
    if (!c->container_id.empty()) {
      WriteBody(c, "--- petrel: replica " + std::to_string(c->replica) + " now runs container " +
                       r->container_id + " ---\n");
    }
    c->container_id = r->container_id;
    c->log_offset = 0;
  }
  while (!c->closing && Queued(c) <= options_.max_stream_backlog_bytes / 4) {
    LogOptions options;
    options.since_offset = c->log_offset;
    options.limit_bytes = kLogReadBytes;
    Result<LogChunk> chunk = runtime_->Logs(c->container_id, options);
    if (!chunk.ok() || chunk->data.empty()) return;  // gone or quiet: look again later
    c->log_offset = chunk->end_offset;
    WriteBody(c, chunk->data);
    if (chunk->data.size() < kLogReadBytes) return;
  }
}

ApiServer::ApiServer(Orchestrator* orch, ContainerRuntime* runtime, ApiOptions options)
    : impl_(std::make_unique<Impl>(orch, runtime, std::move(options))) {}
ApiServer::~ApiServer() = default;
Status ApiServer::Listen(uv_loop_s* loop, const std::string& socket_path) {
  return impl_->Listen(loop, socket_path);
}
void ApiServer::StopAccepting() { impl_->StopAccepting(); }
void ApiServer::Close() { impl_->Close(); }
size_t ApiServer::connections() const { return impl_->connections(); }

}  // namespace petrel
