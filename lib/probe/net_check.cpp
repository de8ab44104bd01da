#include "lib/probe/net_check.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <memory>
#include <string>
#include <utility>

#include "lib/util/fs.h"

namespace petrel::internal {
namespace {

// Only the status line is read; a longer first line is no HTTP response.
constexpr size_t kMaxStatusLine = 4096;
constexpr int kEventsPerWait = 64;

bool SameHeaderName(const std::string& a, const char* b) {
  size_t i = 0;
  for (; i < a.size() && b[i] != '\0'; i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return i == a.size() && b[i] == '\0';
}

std::string Request(const ProbeSpec& probe) {
  bool host = false, agent = false;
  std::string headers;
  for (const auto& [name, value] : probe.http_headers) {
    host = host || SameHeaderName(name, "host");
    agent = agent || SameHeaderName(name, "user-agent");
    headers += name + ": " + value + "\r\n";
  }
  std::string r = "GET " + probe.path + " HTTP/1.1\r\n";
  if (!host) r += "Host: 127.0.0.1:" + std::to_string(probe.port) + "\r\n";
  if (!agent) r += "User-Agent: petrel-probe\r\n";
  r += "Accept: */*\r\nConnection: close\r\n" + headers + "\r\n";
  return r;
}

// errno's text as libuv words it ("connection refused").
const char* ErrnoText(int err) { return uv_strerror(uv_translate_sys_error(err)); }

}  // namespace

ProbeResult JudgeStatusLine(const std::string& line) {
  // "HTTP/1.1 200 OK": a version, one space, three digits.
  if (line.size() < 12 || line.compare(0, 5, "HTTP/") != 0 || line[8] != ' ') {
    return ProbeResult::Failure("not an HTTP response");
  }
  int code = 0;
  for (size_t i = 9; i < 12; i++) {
    if (line[i] < '0' || line[i] > '9') return ProbeResult::Failure("not an HTTP response");
    code = code * 10 + (line[i] - '0');
  }
  if (code >= 200 && code < 400) return ProbeResult::Success();
  return ProbeResult::Failure("HTTP " + std::to_string(code));
}

// The epoll set of the checks' sockets, watched by the loop as one file descriptor.
struct NetChecker::Epoll {
  uv_poll_t poll{};
  int fd = -1;
};

struct NetChecker::Check {
  NetChecker* owner = nullptr;
  uint64_t id = 0;
  Done done;
  ProbeSpec::Kind kind = ProbeSpec::Kind::kTcpSocket;
  int port = 0;
  int64_t timeout_ms = 0;
  int fd = -1;
  uv_timer_t timer{};
  bool connected = false;
  std::string request;  // httpGet: what is still to be sent
  std::string response;
  bool finished = false;

  std::string Where() const { return "127.0.0.1:" + std::to_string(port); }

  void Finish(const ProbeResult& result) {
    if (finished) return;
    finished = true;
    if (owner != nullptr) owner->Forget(id);
    owner = nullptr;
    Done cb = std::move(done);
    done = nullptr;
    uv_timer_stop(&timer);
    if (fd >= 0) {
      // Closed with a reset, not the FIN handshake, as the kubelet closes its probes: no
      // socket left in TIME_WAIT per check (a probe every 100 ms would keep ~600 of
      // them), and fewer packets for both ends. The close also takes the socket out of
      // the epoll set.
      struct linger reset = {1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      close(fd);
      fd = -1;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&timer),
             [](uv_handle_t* closed) { delete static_cast<Check*>(closed->data); });
    if (cb) cb(result);
  }

  // What epoll said of the socket (edge-triggered: each readiness once).
  void OnEvents(uint32_t events) {
    if (!connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
      int err = 0;
      if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err == 0) err = ECONNRESET;
      }
      if (err != 0) {
        Finish(ProbeResult::Failure("connect " + Where() + ": " + ErrnoText(err)));
        return;
      }
      connected = true;
      if (kind == ProbeSpec::Kind::kTcpSocket) {
        Finish(ProbeResult::Success());
        return;
      }
    }
    if (!connected) return;
    if (!request.empty() && (events & EPOLLOUT) != 0 && !Send()) return;
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) != 0) Receive();
  }

  // Sends what it can of the request; false when the check ended.
  bool Send() {
    while (!request.empty()) {
      ssize_t n = send(fd, request.data(), request.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;  // on EPOLLOUT
      if (n < 0) {
        Finish(ProbeResult::Failure("send to " + Where() + ": " + ErrnoText(errno)));
        return false;
      }
      request.erase(0, static_cast<size_t>(n));
    }
    return true;
  }

  // Reads until the status line is whole, the socket is drained, or it ends.
  void Receive() {
    char buffer[512];
    while (!finished) {
      ssize_t n = read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {
        Finish(ProbeResult::Failure(n == 0 ? "connection closed by " + Where() +
                                                 " before an HTTP status line"
                                           : "read from " + Where() + ": " + ErrnoText(errno)));
        return;
      }
      response.append(buffer, static_cast<size_t>(n));
      size_t end = response.find("\r\n");
      if (end != std::string::npos) {
        Finish(JudgeStatusLine(response.substr(0, end)));
      } else if (response.size() > kMaxStatusLine) {
        Finish(ProbeResult::Failure("not an HTTP response"));
      }
    }
  }
};

NetChecker::~NetChecker() { CancelAll(); }

void NetChecker::Forget(uint64_t id) {
  checks_.erase(id);
  // Nothing to watch: the loop may end, or sleep without this handle.
  if (checks_.empty() && epoll_ != nullptr) uv_poll_stop(&epoll_->poll);
}

Status NetChecker::Watch(uv_loop_s* loop) {
  if (epoll_ == nullptr) {
    auto e = std::make_unique<Epoll>();
    e->fd = epoll_create1(EPOLL_CLOEXEC);
    if (e->fd < 0) return ErrnoError("probe sockets", "epoll_create1", errno);
    int rc = uv_poll_init(loop, &e->poll, e->fd);
    if (rc != 0) {
      close(e->fd);
      return Status::IOError(std::string("probe sockets: poll: ") + uv_strerror(rc));
    }
    e->poll.data = this;
    epoll_ = e.release();
  }
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(&epoll_->poll))) return Status::OK();
  int rc = uv_poll_start(&epoll_->poll, UV_READABLE, [](uv_poll_t* p, int, int) {
    static_cast<NetChecker*>(p->data)->OnReady();
  });
  if (rc != 0) return Status::IOError(std::string("probe sockets: poll: ") + uv_strerror(rc));
  return Status::OK();
}

void NetChecker::OnReady() {
  epoll_event events[kEventsPerWait];
  int n;
  do {
    n = epoll_wait(epoll_->fd, events, kEventsPerWait, 0);
    for (int i = 0; i < n; i++) {
      // By id, not by pointer: a socket a forked child still holds stays in the set
      // after the check closed it and ended.
      const uint64_t id = events[i].data.u64;  // a copy: epoll_event is packed
      const uint32_t what = events[i].events;
      auto it = checks_.find(id);
      if (it != checks_.end()) it->second->OnEvents(what);
      if (epoll_ == nullptr) return;  // a callback cancelled them all
    }
  } while (n == kEventsPerWait);
}

void NetChecker::Start(uv_loop_s* loop, int fd, const ProbeSpec& probe, Done done) {
  auto* c = new Check();
  c->owner = this;
  c->id = ++last_id_;
  c->done = std::move(done);
  c->kind = probe.kind;
  c->port = probe.port;
  c->timeout_ms = probe.timeout_ms;
  c->fd = fd;
  c->timer.data = c;
  if (probe.kind == ProbeSpec::Kind::kHttpGet) c->request = Request(probe);
  uv_timer_init(loop, &c->timer);
  checks_.emplace(c->id, c);
  // The timer exists from here on: every way out goes through Finish, which closes it.
  // A failure found now is reported from the timer, so `done` never runs inside Start.
  std::string error;
  Status watched = Watch(loop);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(probe.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = c->id;
  if (!watched.ok()) {
    error = watched.message();
  } else if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 &&
             errno != EINPROGRESS) {
    error = "connect " + c->Where() + ": " + ErrnoText(errno);
  } else if (epoll_ctl(epoll_->fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    error = "probe socket: " + std::string(ErrnoText(errno));
  }
  if (!error.empty()) {
    c->response = error;
    uv_timer_start(
        &c->timer,
        [](uv_timer_t* t) {
          auto* self = static_cast<Check*>(t->data);
          self->Finish(ProbeResult::Failure(self->response));
        },
        0, 0);
    return;
  }
  uv_timer_start(
      &c->timer,
      [](uv_timer_t* t) {
        auto* self = static_cast<Check*>(t->data);
        self->Finish(ProbeResult::Failure("timed out after " + FormatDurationMs(self->timeout_ms)));
      },
      static_cast<uint64_t>(probe.timeout_ms), 0);
}

void NetChecker::CancelAll() {
  std::map<uint64_t, Check*> checks;
  checks.swap(checks_);
  for (auto& [id, c] : checks) {
    c->owner = nullptr;
    c->done = nullptr;
    c->Finish(ProbeResult::Gone());
  }
  if (epoll_ != nullptr) {
    epoll_->poll.data = epoll_;
    uv_close(reinterpret_cast<uv_handle_t*>(&epoll_->poll), [](uv_handle_t* closed) {
      auto* e = static_cast<Epoll*>(closed->data);
      close(e->fd);
      delete e;
    });
    epoll_ = nullptr;
  }
}

}  // namespace petrel::internal
