#include "lib/probe/net_check.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <string>
#include <utility>

namespace petrel::internal {
namespace {

// Only the status line is read; a longer first line is no HTTP response.
constexpr size_t kMaxStatusLine = 4096;

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

struct NetChecker::Check {
  NetChecker* owner = nullptr;
  Done done;
  ProbeSpec probe;
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_connect_t connect{};
  uv_write_t write{};
  std::string request;
  std::string response;
  char buffer[512];
  bool finished = false;
  int open = 0;  // handles not yet closed

  std::string Where() const { return "127.0.0.1:" + std::to_string(probe.port); }

  void Finish(const ProbeResult& result) {
    if (finished) return;
    finished = true;
    if (owner != nullptr) owner->checks_.erase(this);
    owner = nullptr;
    Done cb = std::move(done);
    done = nullptr;
    uv_timer_stop(&timer);
    // Closed with a reset, not the FIN handshake, as the kubelet closes its probes: no
    // socket left in TIME_WAIT per check (a probe every 100 ms would keep ~600 of them),
    // and fewer packets for both ends.
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp), &fd) == 0) {
      struct linger reset = {1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    for (uv_handle_t* h :
         {reinterpret_cast<uv_handle_t*>(&tcp), reinterpret_cast<uv_handle_t*>(&timer)}) {
      uv_close(h, [](uv_handle_t* closed) {
        auto* self = static_cast<Check*>(closed->data);
        if (--self->open == 0) delete self;
      });
    }
    if (cb) cb(result);
  }

  void OnConnect(int status) {
    if (finished) return;
    if (status < 0) {
      Finish(ProbeResult::Failure("connect " + Where() + ": " + uv_strerror(status)));
      return;
    }
    if (probe.kind == ProbeSpec::Kind::kTcpSocket) {
      Finish(ProbeResult::Success());
      return;
    }
    request = Request(probe);
    uv_buf_t buf = uv_buf_init(request.data(), static_cast<unsigned>(request.size()));
    int rc =
        uv_write(&write, reinterpret_cast<uv_stream_t*>(&tcp), &buf, 1, [](uv_write_t* w, int s) {
          auto* self = static_cast<Check*>(w->data);
          if (s < 0 && !self->finished) {
            self->Finish(ProbeResult::Failure("send to " + self->Where() + ": " + uv_strerror(s)));
          }
        });
    if (rc == 0) {
      rc = uv_read_start(
          reinterpret_cast<uv_stream_t*>(&tcp),
          [](uv_handle_t* h, size_t, uv_buf_t* out) {
            auto* self = static_cast<Check*>(h->data);
            *out = uv_buf_init(self->buffer, sizeof(self->buffer));
          },
          [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
            static_cast<Check*>(s->data)->OnRead(n);
          });
    }
    if (rc != 0) Finish(ProbeResult::Failure("send to " + Where() + ": " + uv_strerror(rc)));
  }

  void OnRead(ssize_t n) {
    if (finished) return;
    if (n < 0) {
      Finish(ProbeResult::Failure(
          n == UV_EOF ? "connection closed by " + Where() + " before an HTTP status line"
                      : "read from " + Where() + ": " + uv_strerror(static_cast<int>(n))));
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
};

void NetChecker::Start(uv_loop_s* loop, int fd, const ProbeSpec& probe, Done done) {
  auto* c = new Check();
  c->owner = this;
  c->done = std::move(done);
  c->probe = probe;
  c->tcp.data = c;
  c->timer.data = c;
  c->connect.data = c;
  c->write.data = c;
  uv_tcp_init(loop, &c->tcp);
  uv_timer_init(loop, &c->timer);
  c->open = 2;
  checks_.insert(c);
  // Handles exist from here on: every way out goes through Finish, which closes them.
  // A failure found now is reported from the timer, so `done` never runs inside Start.
  std::string error;
  int rc = uv_tcp_open(&c->tcp, fd);
  if (rc != 0) {
    close(fd);
    error = "probe socket: " + std::string(uv_strerror(rc));
  } else {
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", probe.port, &addr);
    rc = uv_tcp_connect(
        &c->connect, &c->tcp, reinterpret_cast<const sockaddr*>(&addr),
        [](uv_connect_t* req, int status) { static_cast<Check*>(req->data)->OnConnect(status); });
    if (rc != 0) error = "connect " + c->Where() + ": " + uv_strerror(rc);
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
        self->Finish(
            ProbeResult::Failure("timed out after " + FormatDurationMs(self->probe.timeout_ms)));
      },
      static_cast<uint64_t>(probe.timeout_ms), 0);
}

void NetChecker::CancelAll() {
  std::set<Check*> checks;
  checks.swap(checks_);
  for (Check* c : checks) {
    c->owner = nullptr;
    c->done = nullptr;
    c->Finish(ProbeResult::Gone());
  }
}

}  // namespace petrel::internal
