// ApiServer: the control API's Unix socket on a libuv loop.
//
// Each connection is one heap object owning a uv_pipe_t and a uv_timer_t (the idle
// timeout or the request's deadline while it serves requests, the poll of a log
// stream). It is freed once the
// last of their close callbacks has run and no job of the server's workers still
// holds it; after Close() nothing reaches back into the server.
//
// Work that may wait (ApiHandler::MayBlock requests, event pages, log chunks) runs on
// the server's workers; their answers come back through a Mailbox drained on the
// loop. While a connection waits for one, it parses no further request, so answers
// leave in the order the requests came.
//
// A client cannot make the server hold more than a bounded amount for it: reading
// stops while its parsed requests wait (http.h's kMaxQueuedRequests) or its answers
// wait to be written (max_stream_backlog_bytes); each request has a deadline; and
// follow streams have slots of their own, so they never crowd out requests.
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lib/api/http.h"
#include "lib/api/json.h"
#include "lib/util/fs.h"
#include "lib/util/workers.h"
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

// The id of group `name`, or NotFound.
Result<gid_t> GroupId(const std::string& name) {
  std::vector<char> buf(16384);
  group grp;
  group* found = nullptr;
  int rc = getgrnam_r(name.c_str(), &grp, buf.data(), buf.size(), &found);
  if (rc != 0) return internal::ErrnoError("socket group " + name, "getgrnam", rc);
  if (found == nullptr) return Status::NotFound("socket group " + name + ": no such group");
  return found->gr_gid;
}

void FreeListener(uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); }

}  // namespace

// How late the loop runs a timer that should fire every `period_ms`: the loop's stalls,
// as anything else sharing the loop (peers' heartbeats, probes) would feel them. It
// reads uv_hrtime, not petrel's Clock: it measures the real loop, which no fake clock
// drives.
//
// A late tick is split by the kernel's account of the loop thread
// (/proc/thread-self/schedstat: CPU time, time runnable but waiting for a CPU): the wait
// is the machine's (other processes had the CPUs), the rest is the loop's own (work in
// its callbacks, or a call that blocked). Where schedstat cannot be read, all of it
// counts as the loop's own.
struct LoopProbe {
  uv_timer_t timer;
  int64_t period_ms = 0;
  uint64_t due_ns = 0;  // when the timer should run next (uv_hrtime)
  uint64_t samples = 0;
  uint64_t max_late_ns = 0;
  uint64_t max_late_wait_ns = 0;  // runnable, not running, in the interval of max_late_ns
  uint64_t max_late_cpu_ns = 0;   // running, in that interval
  uint64_t max_own_late_ns = 0;   // the most a tick was late beyond its run-queue wait
  uint64_t late_over_20ms = 0;
  uint64_t since_ns = 0;
  internal::UniqueFd schedstat;  // the loop thread's; opened by the first tick
  bool schedstat_tried = false;
  uint64_t last_cpu_ns = 0, last_wait_ns = 0;

  void Reset() {
    samples = max_late_ns = max_late_wait_ns = max_late_cpu_ns = max_own_late_ns = 0;
    late_over_20ms = 0;
    since_ns = uv_hrtime();
  }
  // The loop thread's CPU and run-queue wait so far, in ns; false when unknown.
  bool ReadSchedstat(uint64_t* cpu, uint64_t* wait) {
    if (!schedstat_tried) {
      schedstat_tried = true;
      schedstat.reset(open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC));
    }
    if (!schedstat.valid()) return false;
    char buf[96];
    const ssize_t n = pread(schedstat.get(), buf, sizeof(buf) - 1, 0);
    if (n <= 0) return false;
    buf[n] = '\0';
    unsigned long long c = 0, w = 0;
    if (std::sscanf(buf, "%llu %llu", &c, &w) != 2) return false;
    *cpu = c;
    *wait = w;
    return true;
  }
  void Tick() {
    const uint64_t now = uv_hrtime();
    const uint64_t late = now > due_ns ? now - due_ns : 0;
    uint64_t cpu = 0, wait = 0, d_cpu = 0, d_wait = 0;
    if (ReadSchedstat(&cpu, &wait)) {
      // The first reading has no interval before it.
      if (last_cpu_ns != 0 || last_wait_ns != 0) {
        d_cpu = cpu - last_cpu_ns;
        d_wait = wait - last_wait_ns;
      }
      last_cpu_ns = cpu;
      last_wait_ns = wait;
    }
    samples++;
    if (late >= max_late_ns) {
      max_late_ns = late;
      max_late_wait_ns = d_wait;
      max_late_cpu_ns = d_cpu;
    }
    max_own_late_ns = std::max(max_own_late_ns, late > d_wait ? late - d_wait : 0);
    if (late > 20'000'000) late_over_20ms++;
    due_ns = now + static_cast<uint64_t>(period_ms) * 1'000'000;
  }
};

class ApiServer::Impl {
 public:
  Impl(Orchestrator* orch, ApiOptions options)
      : orch_(orch),
        options_(options),
        handler_(orch, options),
        pool_(std::make_unique<internal::WorkerPool>(
            static_cast<size_t>(std::max(1, options.worker_threads)), "petrel-api")),
        pulls_(std::make_unique<internal::WorkerPool>(kPullThreads, "petrel-api-pull")) {}

  ~Impl() {
    Close();
    // Jobs still running finish; what they report releases their connections.
    pulls_.reset();
    pool_.reset();
    mailbox_.Drain();
  }

  Status Listen(uv_loop_t* loop, const std::string& path);
  void StopAccepting();
  void Close();
  size_t connections() const { return conns_.size(); }

 private:
  enum class Mode { kRequests, kEvents, kLogs, kPull };

  // Where a pull stream's pull stands: written by the pull's listener on a worker,
  // read by the connection's timer on the loop.
  struct PullWatch {
    std::mutex mu;
    PullProgress latest;
    bool changed = false;
  };

  struct Conn {
    Impl* server = nullptr;
    uv_pipe_t pipe;
    uv_timer_t timer;
    int open_handles = 0;
    int jobs = 0;  // worker jobs that will report about this connection
    bool closing = false;
    bool close_after_write = false;
    bool reading_paused = false;
    bool waiting = false;      // a request is being handled on a worker
    bool peer_done = false;    // the client half-closed: no more requests will come
    bool stream_slot = false;  // counted in streams_, not in the request slots
    uint64_t deadline = 0;     // uv_now() by which the partial request must be whole
    uint64_t since = 0;        // uv_now() when it last took a request (or was accepted)
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
    bool reading_page = false;  // an event page or a log chunk is being read
    std::string stream_head;    // an event stream's head, sent with its first page
    int replica = 0;
    std::string container_id;
    int64_t log_offset = 0;
    std::shared_ptr<PullWatch> pull;
  };

  struct WriteReq {
    uv_write_t req;
    std::string data;
    Conn* conn;
  };

  // What a log stream's poll found, read on a worker.
  struct LogPoll {
    bool end = false;          // the workload is gone, or scaled below the replica
    std::string container_id;  // the container read ("" when the replica has none)
    bool switched = false;     // the replica runs a new container since the last poll
    std::string data;
    int64_t offset = 0;  // where the next read starts
  };

  void Log(LogLevel level, const std::string& msg) {
    if (options_.log_sink) options_.log_sink(level, "api: " + msg);
  }

  static size_t Queued(Conn* c) {
    return uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&c->pipe));
  }

  // Runs `work` on a worker, then `done` on the loop; the connection stays allocated
  // until then, even if it closes meanwhile (`done` then does not run).
  template <typename T>
  // On `pool` (the request workers when null).
  void RunBeside(Conn* c, std::function<T()> work, std::function<void(Conn*, T)> done,
                 internal::WorkerPool* pool = nullptr);
  void Release(Conn* c);

  void Accept();
  void LogPeer(Conn* c);
  void OnRead(Conn* c, ssize_t nread);
  void Serve(Conn* c);
  void Answer(Conn* c, const internal::HttpRequest& req, ApiResponse resp);
  void Write(Conn* c, std::string data);
  void WriteBody(Conn* c, const std::string& data);
  void OnWritten(Conn* c, int status);
  void FinishAfterWrites(Conn* c);
  void CloseConn(Conn* c);
  void StartReading(Conn* c);
  void UpdateReading(Conn* c);
  void ArmTimer(Conn* c);
  bool EvictOne(Conn* except);
  void StartStream(Conn* c, const internal::HttpRequest& req, ApiResponse& resp);
  void EndStream(Conn* c);
  void PumpEvents(Conn* c);
  void OnEvent(Conn* c, const Event& e);
  void PollLogs(Conn* c);
  void StartPull(Conn* c, const ApiStream& stream);
  void WritePullProgress(Conn* c);
  LogPoll ReadLogs(const std::string& workload, int replica, const std::string& container,
                   int64_t offset);
  Result<std::string> LoopStats(bool reset);

  Orchestrator* orch_;
  ApiOptions options_;
  ApiHandler handler_;
  uv_loop_t* loop_ = nullptr;
  uv_pipe_t* listener_ = nullptr;  // freed by its close callback
  std::string path_;               // where listener_ listens
  uv_poll_t* wakeup_ = nullptr;    // polls mailbox_.fd(); freed by its close callback
  LoopProbe* probe_ = nullptr;     // freed by its close callback
  std::set<Conn*> conns_;
  size_t streams_ = 0;  // conns_ that are follow streams
  internal::Mailbox mailbox_;
  std::unique_ptr<internal::WorkerPool> pool_;
  // Pulls take minutes: they run on threads of their own (more wait in turn), so that
  // they never hold the request workers.
  static constexpr size_t kPullThreads = 2;
  std::unique_ptr<internal::WorkerPool> pulls_;
};

template <typename T>
void ApiServer::Impl::RunBeside(Conn* c, std::function<T()> work,
                                std::function<void(Conn*, T)> done, internal::WorkerPool* pool) {
  c->jobs++;
  internal::Mailbox* mailbox = &mailbox_;
  (pool != nullptr ? pool : pool_.get())
      ->Submit([this, c, mailbox, work = std::move(work), done = std::move(done)] {
        auto result = std::make_shared<T>(work());
        mailbox->Post([this, c, done, result] {
          if (!c->closing) done(c, std::move(*result));
          Release(c);
        });
      });
}

void ApiServer::Impl::Release(Conn* c) {
  if (--c->jobs == 0 && c->open_handles == 0) delete c;
}

Status ApiServer::Impl::Listen(uv_loop_t* loop, const std::string& path) {
  if (listener_ != nullptr) return Status::FailedPrecondition("api: already listening");
  if (path.empty()) return Status::InvalidArgument("api: socket path is empty");
  PETREL_RETURN_IF_ERROR(mailbox_.CheckFd().WithContext("api"));
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::InvalidArgument("socket path " + path + " is longer than " +
                                   std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes");
  }
  gid_t gid = static_cast<gid_t>(-1);
  if (!options_.socket_group.empty()) {
    PETREL_ASSIGN_OR_RETURN(gid, GroupId(options_.socket_group));
  }
  const std::string dir = internal::Dirname(path);
  struct stat st;
  const bool new_dir = stat(dir.c_str(), &st) != 0;
  PETREL_RETURN_IF_ERROR(internal::MakeDirs(dir, 0750).WithContext("socket " + path));
  // The group reaches the socket through the directory petrel made; one that was
  // there already keeps its owner and mode.
  if (new_dir && gid != static_cast<gid_t>(-1) && chown(dir.c_str(), -1, gid) != 0) {
    return internal::ErrnoError("socket directory " + dir, "chown", errno);
  }
  PETREL_RETURN_IF_ERROR(ClearStaleSocket(path));

  // Bound in a private directory (0700) and renamed into place once its mode and
  // group are set, so that it never exists at `path` open to more than it should be.
  std::string private_dir = dir + "/.petrel-XXXXXX";
  if (private_dir.size() + 2 >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::InvalidArgument("socket path " + path +
                                   ": its directory's path is longer than " +
                                   std::to_string(sizeof(sockaddr_un{}.sun_path) - 18) + " bytes");
  }
  if (mkdtemp(private_dir.data()) == nullptr) {
    return internal::ErrnoError("socket directory " + dir, "mkdtemp", errno);
  }
  const std::string tmp = private_dir + "/s";
  auto* listener = new uv_pipe_t;
  int rc = uv_pipe_init(loop, listener, 0);
  if (rc != 0) {
    delete listener;
    rmdir(private_dir.c_str());
    return Status::Internal(std::string("uv_pipe_init: ") + uv_strerror(rc));
  }
  listener->data = this;
  bool placed = false;
  auto fail = [&](const std::string& what, int code) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener), FreeListener);
    unlink((placed ? path : tmp).c_str());
    rmdir(private_dir.c_str());
    return Status::IOError(what + " " + path + ": " + uv_strerror(code));
  };
  if ((rc = uv_pipe_bind(listener, tmp.c_str())) != 0) return fail("bind", rc);
  // 0660 in a 0750 directory: the owner and the socket's group may talk to petrel,
  // nobody else.
  if (chmod(tmp.c_str(), 0660) != 0) return fail("chmod", uv_translate_sys_error(errno));
  if (gid != static_cast<gid_t>(-1) && chown(tmp.c_str(), -1, gid) != 0) {
    return fail("chown", uv_translate_sys_error(errno));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail("rename", uv_translate_sys_error(errno));
  placed = true;
  rmdir(private_dir.c_str());
  path_ = path;
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener), 128, [](uv_stream_t* s, int status) {
    if (status == 0) static_cast<Impl*>(s->data)->Accept();
  });
  if (rc != 0) return fail("listen on", rc);
  loop_ = loop;
  listener_ = listener;
  // The Mailbox's eventfd, not a uv_async_t: workers.h says why.
  wakeup_ = new uv_poll_t;
  if ((rc = uv_poll_init(loop, wakeup_, mailbox_.fd())) != 0) {
    delete wakeup_;
    wakeup_ = nullptr;
    StopAccepting();
    return Status::IOError(std::string("api: uv_poll_init: ") + uv_strerror(rc));
  }
  wakeup_->data = this;
  uv_poll_start(wakeup_, UV_READABLE,
                [](uv_poll_t* h, int, int) { static_cast<Impl*>(h->data)->mailbox_.Drain(); });
  if (options_.loop_probe_ms > 0) {
    probe_ = new LoopProbe;
    probe_->period_ms = options_.loop_probe_ms;
    uv_timer_init(loop, &probe_->timer);
    probe_->timer.data = probe_;
    probe_->Reset();
    probe_->due_ns = uv_hrtime() + static_cast<uint64_t>(options_.loop_probe_ms) * 1'000'000;
    uv_timer_start(
        &probe_->timer, [](uv_timer_t* t) { static_cast<LoopProbe*>(t->data)->Tick(); },
        static_cast<uint64_t>(options_.loop_probe_ms),
        static_cast<uint64_t>(options_.loop_probe_ms));
    handler_.SetLoopStats([this](bool reset) { return LoopStats(reset); });
  }
  return Status::OK();
}

void ApiServer::Impl::StopAccepting() {
  if (listener_ == nullptr) return;
  // libuv unlinks the path it bound (gone since the rename); the socket's is ours.
  uv_close(reinterpret_cast<uv_handle_t*>(listener_), FreeListener);
  listener_ = nullptr;
  unlink(path_.c_str());
}

void ApiServer::Impl::Close() {
  StopAccepting();
  std::vector<Conn*> open(conns_.begin(), conns_.end());
  for (Conn* c : open) CloseConn(c);
  if (wakeup_ != nullptr) {
    // Stops polling at once; the descriptor stays the Mailbox's.
    uv_close(reinterpret_cast<uv_handle_t*>(wakeup_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    wakeup_ = nullptr;
  }
  if (probe_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(&probe_->timer),
             [](uv_handle_t* h) { delete static_cast<LoopProbe*>(h->data); });
    probe_ = nullptr;
  }
}

// Who connected, as the kernel says (SO_PEERCRED): once per connection, at debug
// level, since a busy client opens one per request.
void ApiServer::Impl::LogPeer(Conn* c) {
  if (!options_.log_sink) return;
  uv_os_fd_t fd;
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&c->pipe), &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    Log(LogLevel::kWarn,
        std::string("connection from an unknown peer: SO_PEERCRED: ") + std::strerror(errno));
    return;
  }
  Log(LogLevel::kDebug, "connection from uid " + std::to_string(cred.uid) + " gid " +
                            std::to_string(cred.gid) + " pid " + std::to_string(cred.pid));
}

void ApiServer::Impl::Accept() {
  auto* c = new Conn;
  c->server = this;
  uv_pipe_init(loop_, &c->pipe, 0);
  uv_timer_init(loop_, &c->timer);
  c->pipe.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  c->since = uv_now(loop_);
  conns_.insert(c);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_),
                reinterpret_cast<uv_stream_t*>(&c->pipe)) != 0) {
    CloseConn(c);
    return;
  }
  LogPeer(c);
  if (conns_.size() - streams_ > static_cast<size_t>(options_.max_connections) && !EvictOne(c)) {
    Log(LogLevel::kWarn,
        "refused a connection: " + std::to_string(options_.max_connections) + " are open");
    Write(c, internal::SerializeResponse(
                 ApiHandler::Error(503, "too many connections (at most " +
                                            std::to_string(options_.max_connections) + ")"),
                 false, false));
    FinishAfterWrites(c);
    return;
  }
  ArmTimer(c);
  StartReading(c);
}

// Closes the connection that has held a request slot longest without being answered
// anything: idle between requests, or still sending one (closed without an answer).
// False when every connection is being answered.
bool ApiServer::Impl::EvictOne(Conn* except) {
  Conn* oldest = nullptr;
  for (Conn* c : conns_) {  // in no order: compare their start
    if (c == except || c->closing || c->close_after_write || c->mode != Mode::kRequests ||
        c->waiting || c->pending_writes > 0 || c->http.full()) {
      continue;
    }
    if (oldest == nullptr || c->since < oldest->since) oldest = c;
  }
  if (oldest == nullptr) return false;
  Log(LogLevel::kWarn, std::string("all ") + std::to_string(options_.max_connections) +
                           " request slots taken: closed the oldest idle or slow connection");
  CloseConn(oldest);
  return true;
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

// Reading stops while the client is ahead of its answers: requests parsed and waiting
// (the parser is full) or answers waiting to be written past the backlog limit; it
// goes on once the parser has room and half of those answers are out.
void ApiServer::Impl::UpdateReading(Conn* c) {
  if (c->closing || c->mode != Mode::kRequests || c->close_after_write || c->peer_done) return;
  const size_t queued = Queued(c);
  if (!c->reading_paused && (c->http.full() || queued > options_.max_stream_backlog_bytes)) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->pipe));
    c->reading_paused = true;
  } else if (c->reading_paused && !c->http.full() &&
             queued <= options_.max_stream_backlog_bytes / 2) {
    c->reading_paused = false;
    StartReading(c);
  }
}

// While a request is partly received, its deadline (set by its first byte, never
// extended); between requests, the idle timeout. Neither runs while a worker answers.
void ApiServer::Impl::ArmTimer(Conn* c) {
  if (c->closing || c->mode != Mode::kRequests || c->waiting) return;
  const uint64_t now = uv_now(loop_);
  if (!c->http.partial()) {
    c->deadline = 0;
    uv_timer_start(
        &c->timer,
        [](uv_timer_t* t) {
          auto* conn = static_cast<Conn*>(t->data);
          if (!conn->closing) conn->server->CloseConn(conn);
        },
        static_cast<uint64_t>(options_.idle_timeout_ms), 0);
    return;
  }
  if (c->deadline == 0) c->deadline = now + static_cast<uint64_t>(options_.request_timeout_ms);
  uv_timer_start(
      &c->timer,
      [](uv_timer_t* t) {
        auto* conn = static_cast<Conn*>(t->data);
        if (conn->closing || conn->close_after_write) return;
        Impl* server = conn->server;
        server->Log(LogLevel::kWarn, "closed a connection whose request was not whole after " +
                                         std::to_string(server->options_.request_timeout_ms) +
                                         " ms");
        server->Write(conn, internal::SerializeResponse(
                                ApiHandler::Error(
                                    408, "request not complete within " +
                                             std::to_string(server->options_.request_timeout_ms) +
                                             " ms (headers and body)"),
                                false, false));
        server->FinishAfterWrites(conn);
      },
      c->deadline > now ? c->deadline - now : 0, 0);
}

void ApiServer::Impl::OnRead(Conn* c, ssize_t nread) {
  if (nread < 0) {
    // The client hung up, or half-closed after its requests: the answers to them
    // still go out, also those a worker is still preparing.
    if (nread == UV_EOF && c->mode == Mode::kRequests) {
      c->peer_done = true;
      uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->pipe));
      if (!c->waiting) FinishAfterWrites(c);
    } else {
      CloseConn(c);
    }
    return;
  }
  if (nread == 0 || c->mode != Mode::kRequests || c->close_after_write) return;
  c->http.Feed(std::string_view(c->buffer.data(), static_cast<size_t>(nread)));
  Serve(c);
  ArmTimer(c);
}

void ApiServer::Impl::Serve(Conn* c) {
  internal::HttpRequest req;
  while (!c->closing && c->mode == Mode::kRequests && !c->close_after_write && !c->waiting &&
         Queued(c) <= options_.max_stream_backlog_bytes && c->http.Next(&req)) {
    c->since = uv_now(loop_);
    if (ApiHandler::MayBlock(req.request)) {
      // The answer comes from a worker; this connection's next request waits for it.
      c->waiting = true;
      uv_timer_stop(&c->timer);
      auto shared = std::make_shared<internal::HttpRequest>(std::move(req));
      RunBeside<ApiResponse>(
          c, [this, shared] { return handler_.Handle(shared->request); },
          [this, shared](Conn* conn, ApiResponse resp) {
            conn->waiting = false;
            Answer(conn, *shared, std::move(resp));
            if (!conn->closing && conn->mode == Mode::kRequests) {
              Serve(conn);
              ArmTimer(conn);
              if (conn->peer_done && !conn->waiting) FinishAfterWrites(conn);
            }
          });
      return;
    }
    Answer(c, req, handler_.Handle(req.request));
  }
  if (c->closing || c->mode != Mode::kRequests || c->close_after_write) return;
  if (c->waiting || Queued(c) > options_.max_stream_backlog_bytes) {
    UpdateReading(c);  // the requests parsed meanwhile wait for their turn
    return;
  }
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
  UpdateReading(c);
}

void ApiServer::Impl::Answer(Conn* c, const internal::HttpRequest& req, ApiResponse resp) {
  if (c->closing) return;
  if (resp.stream.kind != ApiStream::Kind::kNone && resp.status == 200) {
    if (streams_ < static_cast<size_t>(options_.max_streams)) {
      StartStream(c, req, resp);
      return;
    }
    Log(LogLevel::kWarn, "refused a follow stream: " + std::to_string(streams_) + " are open");
    resp = ApiHandler::Error(
        503, "too many follow streams (at most " + std::to_string(options_.max_streams) + ")");
  }
  Write(c, internal::SerializeResponse(resp, req.keep_alive, req.http10));
  if (!req.keep_alive) FinishAfterWrites(c);
}

// How late the loop probe's timer ran since the last reset: the loop's longest stall.
// For GET /v1/debug/loop (the handler, on the loop thread).
Result<std::string> ApiServer::Impl::LoopStats(bool reset) {
  std::string body =
      internal::DumpLine(nlohmann::json{{"probeMs", probe_->period_ms},
                                        {"samples", probe_->samples},
                                        {"maxLateUs", probe_->max_late_ns / 1000},
                                        {"maxLateRunqueueUs", probe_->max_late_wait_ns / 1000},
                                        {"maxLateCpuUs", probe_->max_late_cpu_ns / 1000},
                                        {"maxOwnLateUs", probe_->max_own_late_ns / 1000},
                                        {"lateOver20ms", probe_->late_over_20ms},
                                        {"sinceMs", (uv_hrtime() - probe_->since_ns) / 1'000'000}});
  if (reset) probe_->Reset();
  return body;
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
      Serve(c);  // requests parsed while answers waited to be written
      ArmTimer(c);
      break;
    case Mode::kEvents:
      if (!c->backlog_done) PumpEvents(c);
      break;
    case Mode::kLogs:
    case Mode::kPull: break;
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
  if (c->stream_slot) streams_--;
  uv_timer_stop(&c->timer);
  auto on_closed = [](uv_handle_t* h) {
    auto* conn = static_cast<Conn*>(h->data);
    if (--conn->open_handles == 0 && conn->jobs == 0) delete conn;
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), on_closed);
}

void ApiServer::Impl::StartStream(Conn* c, const internal::HttpRequest& req, ApiResponse& resp) {
  c->chunked = !req.http10;
  c->mode = resp.stream.kind == ApiStream::Kind::kEvents ? Mode::kEvents
            : resp.stream.kind == ApiStream::Kind::kPull ? Mode::kPull
                                                         : Mode::kLogs;
  c->stream_slot = true;
  streams_++;
  uv_timer_stop(&c->timer);
  c->workload = resp.stream.workload;
  if (c->mode == Mode::kEvents) {
    // Subscribed before the first page is read, so no event falls between the two;
    // the head goes out with that page, so a client that has the head has the
    // backlog's first page too.
    c->stream_head = internal::SerializeStreamHead(resp, c->chunked);
    c->last_seq = resp.stream.after_seq;
    c->backlog_done = false;
    c->subscription = orch_->Subscribe([this, c](const Event& e) { OnEvent(c, e); });
    c->subscribed = true;
    PumpEvents(c);
  } else if (c->mode == Mode::kPull) {
    Write(c, internal::SerializeStreamHead(resp, c->chunked));
    StartPull(c, resp.stream);
  } else {
    Write(c, internal::SerializeStreamHead(resp, c->chunked));
    WriteBody(c, resp.body);
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

// Sends stored events after last_seq while the client keeps up, a page at a time read
// on a worker; the write callback asks for the next. Events delivered live meanwhile
// are in the store (or its queue) too, so they come with a later page.
void ApiServer::Impl::PumpEvents(Conn* c) {
  if (c->closing || c->backlog_done || c->reading_page ||
      Queued(c) >= options_.max_stream_backlog_bytes / 4) {
    return;
  }
  c->reading_page = true;
  const int64_t after = c->last_seq;
  RunBeside<Result<std::vector<Event>>>(
      c, [this, after] { return orch_->Events(after, kEventPage); },
      [this](Conn* conn, Result<std::vector<Event>> page) {
        conn->reading_page = false;
        if (!conn->stream_head.empty()) Write(conn, std::move(conn->stream_head));
        conn->stream_head.clear();
        if (!page.ok()) {
          Log(LogLevel::kError, "event stream: " + page.status().message());
          EndStream(conn);
          return;
        }
        std::string out;
        for (const Event& e : *page) {
          if (e.seq <= conn->last_seq) continue;
          conn->last_seq = e.seq;
          if (conn->workload.empty() || e.workload == conn->workload) {
            out += internal::DumpLine(internal::EventJson(e));
          }
        }
        if (page->size() < static_cast<size_t>(kEventPage)) conn->backlog_done = true;
        WriteBody(conn, out);
        PumpEvents(conn);
      });
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

// Reads what the replica's container wrote since the last poll, on a worker. When the
// replica gets a new container (a restart, a replacement), the stream says so in one
// line and goes on with the new container's output from its start. The stream ends
// when the workload is gone (a Terminating workload's last words are still read) or
// scaled below the replica.
void ApiServer::Impl::PollLogs(Conn* c) {
  // A slow reader makes the stream wait, not the loop: nothing is read meanwhile.
  if (c->reading_page || Queued(c) > options_.max_stream_backlog_bytes / 4) return;
  c->reading_page = true;
  const std::string workload = c->workload, container = c->container_id;
  const int replica = c->replica;
  const int64_t offset = c->log_offset;
  RunBeside<LogPoll>(
      c, [=] { return ReadLogs(workload, replica, container, offset); },
      [this](Conn* conn, LogPoll poll) {
        conn->reading_page = false;
        if (poll.end) {
          EndStream(conn);
          return;
        }
        if (poll.switched) {
          if (!conn->container_id.empty()) {
            WriteBody(conn, "--- petrel: replica " + std::to_string(conn->replica) +
                                " now runs container " + poll.container_id + " ---\n");
          }
          conn->container_id = poll.container_id;
        }
        conn->log_offset = poll.offset;
        WriteBody(conn, poll.data);
      });
}

// Runs the pull on a pull thread; its progress goes out as one line per log_poll_ms at
// most (the listener only notes the latest), then the result line ends the stream.
void ApiServer::Impl::StartPull(Conn* c, const ApiStream& stream) {
  c->pull = std::make_shared<PullWatch>();
  PullOptions options;
  options.policy = stream.pull_policy;
  options.progress = [watch = c->pull](const PullProgress& p) {
    std::lock_guard<std::mutex> lock(watch->mu);
    watch->latest = p;
    watch->changed = true;
  };
  const std::string image = stream.image;
  RunBeside<Status>(
      c, [this, image, options] { return orch_->PullImage(image, options); },
      [this, image](Conn* conn, Status status) {
        uv_timer_stop(&conn->timer);
        WritePullProgress(conn);
        nlohmann::json result = {{"image", image}};
        if (status.ok()) {
          result["pulled"] = true;
        } else {
          result["error"] = status.message();
          result["status"] = internal::HttpStatusOf(status);
        }
        WriteBody(conn, internal::DumpLine(result));
        EndStream(conn);
      },
      pulls_.get());
  uv_timer_start(
      &c->timer,
      [](uv_timer_t* t) {
        auto* conn = static_cast<Conn*>(t->data);
        if (!conn->closing) conn->server->WritePullProgress(conn);
      },
      static_cast<uint64_t>(options_.log_poll_ms), static_cast<uint64_t>(options_.log_poll_ms));
}

void ApiServer::Impl::WritePullProgress(Conn* c) {
  PullProgress p;
  {
    std::lock_guard<std::mutex> lock(c->pull->mu);
    if (!c->pull->changed) return;
    c->pull->changed = false;
    p = c->pull->latest;
  }
  // A reader that falls behind misses lines, never the result.
  if (Queued(c) > options_.max_stream_backlog_bytes / 4) return;
  WriteBody(c, internal::DumpLine(nlohmann::json{{"progress", internal::PullProgressJson(p)}}));
}

ApiServer::Impl::LogPoll ApiServer::Impl::ReadLogs(const std::string& workload, int replica,
                                                   const std::string& container, int64_t offset) {
  LogPoll poll;
  poll.container_id = container;
  poll.offset = offset;
  Result<WorkloadState> w = orch_->Get(workload);
  if (!w.ok()) {
    poll.end = w.status().IsNotFound();
    return poll;
  }
  const ReplicaStatus* r = nullptr;
  for (const ReplicaStatus& rs : w->replicas) {
    if (rs.index == replica) r = &rs;
  }
  if (r == nullptr) {
    poll.end = replica >= w->spec.replicas || w->terminating();
    return poll;
  }
  if (r->container_id.empty()) return poll;
  if (r->container_id != container) {
    poll.switched = true;
    poll.container_id = r->container_id;
    poll.offset = 0;
  }
  while (poll.data.size() < options_.max_stream_backlog_bytes / 4) {
    LogOptions options;
    options.since_offset = poll.offset;
    options.limit_bytes = kLogReadBytes;
    Result<ReplicaLog> log = orch_->Logs(workload, replica, options, poll.container_id);
    if (!log.ok() || log->chunk.data.empty()) break;  // gone or quiet: look again later
    poll.offset = log->chunk.end_offset;
    poll.data += log->chunk.data;
    if (log->chunk.data.size() < kLogReadBytes) break;
  }
  return poll;
}

ApiServer::ApiServer(Orchestrator* orch, ApiOptions options)
    : impl_(std::make_unique<Impl>(orch, std::move(options))) {}
ApiServer::~ApiServer() = default;
Status ApiServer::Listen(uv_loop_s* loop, const std::string& socket_path) {
  return impl_->Listen(loop, socket_path);
}
void ApiServer::StopAccepting() { impl_->StopAccepting(); }
void ApiServer::Close() { impl_->Close(); }
size_t ApiServer::connections() const { return impl_->connections(); }

}  // namespace petrel
