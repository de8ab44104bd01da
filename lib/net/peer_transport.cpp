// PeerTransport over libuv TCP handles and mbedTLS sessions fed through memory buffers:
// uv_read appends ciphertext to a connection's input, mbedTLS's BIO callbacks read it
// from there and append what they send to an output buffer that goes out with uv_write.
//
// A connection (Conn) is one heap object owning a uv_tcp_t and, on raft channels, the
// uv_pipe_t of its end of a socketpair. It is freed by its owner (the transport, or a
// join client) once the last of their close callbacks has run; replies and timers
// reach it by its serial number, never by a pointer that might dangle.
//
// Peers are identified by their certificate (its CN and fingerprint), never by host
// name: the client sets no expected host name, so mbedTLS checks the chain to the
// cluster CA but no name, and `authorize` decides on the CN and fingerprint.
//
// Writes on a socket that the other end closed raise SIGPIPE on a Unix socket pair: the
// process must ignore it (signal(SIGPIPE, SIG_IGN)), as libuv programs do.
#include "lib/net/peer_transport.h"

#include <mbedtls/pem.h>
extern "C" {  // raft 0.15's headers declare C functions without saying so
#include <raft.h>
#include <raft/uv.h>
}
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lib/net/mbed.h"
#include "lib/net/peer_wire.h"

namespace petrel::internal {
namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;
constexpr size_t kTlsChunkBytes = 16 * 1024;  // one TLS record's plaintext
// Raft channels: once this many bytes wait to be written on one side, the other side
// is not read until they are down to kLowWaterBytes.
constexpr size_t kHighWaterBytes = 256 * 1024;
constexpr size_t kLowWaterBytes = 64 * 1024;

// ECDHE-ECDSA only (every peer has a P-256 key), AEAD only.
const int kCipherSuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    0,
};

template <typename Handle>
uv_handle_t* AsHandle(Handle* h) {
  return reinterpret_cast<uv_handle_t*>(h);
}

// Many deadlines on one uv_timer_t.
class Deadlines {
 public:
  explicit Deadlines(uv_loop_t* loop) : loop_(loop), timer_(new uv_timer_t) {
    uv_timer_init(loop, timer_);
    timer_->data = this;
  }
  Deadlines(const Deadlines&) = delete;
  Deadlines& operator=(const Deadlines&) = delete;
  // REQUIRES: Close() was called.
  ~Deadlines() = default;

  // Calls `fire` `ms` milliseconds from now (of the loop's clock) unless cancelled;
  // returns the id to cancel it with (never 0).
  uint64_t Add(int64_t ms, std::function<void()> fire) {
    uint64_t when = uv_now(loop_) + static_cast<uint64_t>(ms < 0 ? 0 : ms);
    uint64_t id = next_id_++;
    due_.emplace(std::make_pair(when, id), std::move(fire));
    when_[id] = when;
    Arm();
    return id;
  }

  // Cancels the deadline `id`, if it has not fired; 0 is ignored.
  void Cancel(uint64_t id) {
    auto it = when_.find(id);
    if (it == when_.end()) return;
    due_.erase(std::make_pair(it->second, id));
    when_.erase(it);
    Arm();
  }

  // Stops the timer for good; `done` runs once its handle is closed. Pending
  // deadlines never fire.
  void Close(std::function<void()> done) {
    due_.clear();
    when_.clear();
    timer_->data = new std::function<void()>(std::move(done));
    uv_close(AsHandle(timer_), [](uv_handle_t* h) {
      auto* then = static_cast<std::function<void()>*>(h->data);
      delete reinterpret_cast<uv_timer_t*>(h);
      (*then)();
      delete then;
    });
    timer_ = nullptr;
  }

 private:
  void Arm() {
    if (timer_ == nullptr) return;
    if (due_.empty()) {
      uv_timer_stop(timer_);
      return;
    }
    uint64_t when = due_.begin()->first.first;
    uint64_t now = uv_now(loop_);
    uv_timer_start(timer_, OnTimer, when > now ? when - now : 0, 0);
  }

  static void OnTimer(uv_timer_t* timer) {
    auto* self = static_cast<Deadlines*>(timer->data);
    uint64_t now = uv_now(self->loop_);
    // One at a time: a deadline's callback may add or cancel others.
    while (self->timer_ != nullptr && !self->due_.empty() &&
           self->due_.begin()->first.first <= now) {
      auto first = self->due_.begin();
      std::function<void()> fire = std::move(first->second);
      self->when_.erase(first->first.second);
      self->due_.erase(first);
      fire();
    }
    self->Arm();
  }

  uv_loop_t* loop_;
  uv_timer_t* timer_;
  uint64_t next_id_ = 1;
  std::map<std::pair<uint64_t, uint64_t>, std::function<void()>> due_;  // (when, id)
  std::unordered_map<uint64_t, uint64_t> when_;                         // id -> when
};

Status SetupTlsConfig(mbedtls_ssl_config* conf, int endpoint, int authmode, MbedRng* rng) {
  int ret = mbedtls_ssl_config_defaults(conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT);
  if (ret != 0) return Status::Internal(MbedError("tls config", ret));
  mbedtls_ssl_conf_rng(conf, MbedRng::Random, rng->state());
  mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(conf, kCipherSuites);
  mbedtls_ssl_conf_authmode(conf, authmode);
  return Status::OK();
}

// The PEM of one DER certificate.
std::string CertPem(const mbedtls_x509_crt& crt) {
  std::vector<unsigned char> pem(crt.raw.len * 2 + 128);
  size_t len = 0;
  if (mbedtls_pem_write_buffer("-----BEGIN CERTIFICATE-----\n", "-----END CERTIFICATE-----\n",
                               crt.raw.p, crt.raw.len, pem.data(), pem.size(), &len) != 0) {
    return "";
  }
  return std::string(reinterpret_cast<char*>(pem.data()));
}

class Conn;

// What a connection reports to whoever owns it. Every call is on the loop thread, from
// one of the connection's callbacks.
class ConnOwner {
 public:
  virtual ~ConnOwner() = default;
  // The TLS handshake is done: vet the peer. Not OK: the connection is refused with
  // the status's message as the reason.
  virtual Status OnHandshake(Conn* conn) = 0;
  // Server side: the preamble arrived. Not OK: refused.
  virtual Status OnPreamble(Conn* conn, Preamble preamble) = 0;
  // Client side: the preamble is sent; queued frames go out now.
  virtual void OnOpen(Conn* conn) = 0;
  virtual void OnFrame(Conn* conn, Frame frame) = 0;
  // Every handle of `conn` is closed; the owner frees it now. `why` is the first reason
  // it was closed for.
  virtual void OnClosed(Conn* conn, const Status& why) = 0;
  virtual void Log(LogLevel level, const std::string& message) = 0;
  // How many refusals like `key` were not logged since the last one that was, or -1
  // when this one must not be logged either (a refused peer that keeps retrying would
  // fill the log otherwise).
  virtual int64_t RefusalsUnlogged(const std::string& key) {
    (void)key;
    return 0;
  }
};

class Conn {
 public:
  struct Env {
    uv_loop_t* loop;
    Deadlines* deadlines;
    size_t max_message_bytes;
    int64_t handshake_timeout_ms;
  };

  Conn(ConnOwner* owner, const Env& env, uint64_t serial, Channel channel)
      : owner_(owner),
        env_(env),
        serial_(serial),
        channel_(channel),
        frames_(env.max_message_bytes) {
    uv_tcp_init(env_.loop, &tcp_);
    tcp_.data = this;
    handles_ = 1;
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  uint64_t serial() const { return serial_; }
  Channel channel() const { return channel_; }
  bool is_client() const { return client_; }
  bool open() const { return state_ == State::kOpen && !closing_; }
  bool closing() const { return closing_; }
  const std::string& remote() const { return peer_.remote; }
  PeerInfo& peer() { return peer_; }
  mbedtls_ssl_context* ssl() { return ssl_.get(); }
  // The peer's certificate, once the handshake is done (null when it sent none).
  const mbedtls_x509_crt* peer_cert() { return mbedtls_ssl_get_peer_cert(ssl_.get()); }

  // Server side: takes the next connection of `listener`.
  Status Accept(uv_stream_t* listener, const mbedtls_ssl_config* conf) {
    client_ = false;
    int rc = uv_accept(listener, reinterpret_cast<uv_stream_t*>(&tcp_));
    if (rc != 0) return Status::Unavailable(std::string("accept: ") + uv_strerror(rc));
    sockaddr_storage addr{};
    int len = sizeof(addr);
    if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      peer_.remote = FormatAddress(reinterpret_cast<sockaddr*>(&addr));
    } else {
      peer_.remote = "?";
    }
    PETREL_RETURN_IF_ERROR(StartTls(conf));
    rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), OnAlloc, OnTcpRead);
    if (rc != 0) return Status::Unavailable(std::string("read: ") + uv_strerror(rc));
    Drive();
    return Status::OK();
  }

  // Client side: connects to `address` and, once the handshake is done and the owner
  // agreed, sends `preamble`.
  Status Connect(const std::string& address, const mbedtls_ssl_config* conf, Preamble preamble) {
    client_ = true;
    peer_.remote = address;
    preamble_ = std::move(preamble);
    sockaddr_storage addr{};
    PETREL_RETURN_IF_ERROR(ParseAddress(address, &addr));
    PETREL_RETURN_IF_ERROR(StartTls(conf));
    connect_.data = this;
    int rc = uv_tcp_connect(&connect_, &tcp_, reinterpret_cast<sockaddr*>(&addr), OnConnect);
    if (rc != 0) return Status::Unavailable(std::string("connect: ") + uv_strerror(rc));
    return Status::OK();
  }

  // Sends a frame; before the connection is open it waits in order.
  void SendFrame(FrameKind kind, uint64_t id, std::string_view body) {
    if (closing_) return;
    std::string bytes;
    AppendFrame(kind, id, body, &bytes);
    if (state_ != State::kOpen) {
      pending_ += bytes;
      return;
    }
    WritePlain(bytes);
  }

  // Raft channels: pumps `fd`, one end of a socket pair, through the TLS session both
  // ways. Takes `fd` whatever happens.
  Status AttachPipe(int fd) {
    int rc = uv_pipe_init(env_.loop, &pipe_, 0);
    if (rc != 0) {
      close(fd);
      return Status::Internal(std::string("pipe: ") + uv_strerror(rc));
    }
    pipe_.data = this;
    has_pipe_ = true;
    ++handles_;
    rc = uv_pipe_open(&pipe_, fd);
    if (rc != 0) {
      close(fd);
      return Status::Internal(std::string("pipe: ") + uv_strerror(rc));
    }
    rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&pipe_), OnAlloc, OnPipeRead);
    if (rc != 0) return Status::Internal(std::string("pipe: ") + uv_strerror(rc));
    return Status::OK();
  }

  // Refuses the peer: logs "peer ADDR: refused: REASON" once and closes.
  void Refuse(const std::string& reason) {
    if (closing_) return;
    // A server learns the channel from the preamble.
    std::string what = client_ || state_ == State::kOpen
                           ? std::string(ChannelName(channel_)) + " connection"
                           : std::string("connection");
    const int64_t unlogged = owner_->RefusalsUnlogged(what + ": " + reason);
    if (unlogged >= 0) {
      owner_->Log(LogLevel::kWarn,
                  "peer " + peer_.remote + ": refused " + what + ": " + reason +
                      (unlogged > 0 ? " (and " + std::to_string(unlogged) +
                                          " times more like it, not logged)"
                                    : std::string()));
    }
    Close(Status::PermissionDenied(reason));
  }

  // Closes the connection (idempotent); the owner's OnClosed follows from the loop.
  void Close(Status why) {
    if (closing_) return;
    closing_ = true;
    why_ = std::move(why);
    env_.deadlines->Cancel(deadline_);
    deadline_ = 0;
    if (handshake_done_ && !tcp_eof_) {
      // Best effort: libuv writes what the socket takes at once; uv_close cancels the rest.
      mbedtls_ssl_close_notify(ssl_.get());
      Flush();
    }
    uv_close(AsHandle(&tcp_), OnHandleClosed);
    if (has_pipe_) uv_close(AsHandle(&pipe_), OnHandleClosed);
  }

 private:
  enum class State { kHandshake, kPreamble, kOpen };

  // A write of a copy of some bytes; it knows its connection and size.
  struct WriteReq {
    uv_write_t req;
    Conn* conn;
    std::string data;
  };

  Status StartTls(const mbedtls_ssl_config* conf) {
    int ret = mbedtls_ssl_setup(ssl_.get(), conf);
    if (ret != 0) return Status::Internal(MbedError("tls setup", ret));
    mbedtls_ssl_set_bio(ssl_.get(), this, BioSend, BioRecv, nullptr);
    deadline_ = env_.deadlines->Add(env_.handshake_timeout_ms, [this] {
      deadline_ = 0;
      Refuse("no handshake and preamble within " + std::to_string(env_.handshake_timeout_ms) +
             " ms");
    });
    return Status::OK();
  }

  static int BioSend(void* ctx, const unsigned char* buf, size_t len) {
    static_cast<Conn*>(ctx)->out_.append(reinterpret_cast<const char*>(buf), len);
    return static_cast<int>(len);
  }

  static int BioRecv(void* ctx, unsigned char* buf, size_t len) {
    auto* self = static_cast<Conn*>(ctx);
    size_t have = self->in_.size() - self->in_start_;
    if (have == 0) return MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = std::min(have, len);
    std::memcpy(buf, self->in_.data() + self->in_start_, n);
    self->in_start_ += n;
    if (self->in_start_ == self->in_.size()) {
      self->in_.clear();
      self->in_start_ = 0;
    }
    return static_cast<int>(n);
  }

  static void OnAlloc(uv_handle_t*, size_t, uv_buf_t* buf) {
    buf->base = new char[kReadChunkBytes];
    buf->len = kReadChunkBytes;
  }

  static void OnConnect(uv_connect_t* req, int status) {
    auto* self = static_cast<Conn*>(req->data);
    if (self->closing_) return;
    if (status != 0) {
      self->Close(Status::Unavailable(uv_strerror(status)));
      return;
    }
    int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&self->tcp_), OnAlloc, OnTcpRead);
    if (rc != 0) {
      self->Close(Status::Unavailable(std::string("read: ") + uv_strerror(rc)));
      return;
    }
    self->Drive();
  }

  static void OnTcpRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* self = static_cast<Conn*>(stream->data);
    std::unique_ptr<char[]> owned(buf->base);
    if (self->closing_) return;
    if (nread > 0) {
      self->in_.append(buf->base, static_cast<size_t>(nread));
    } else if (nread < 0) {
      self->tcp_eof_ = true;
      uv_read_stop(stream);
      if (nread != UV_EOF) {
        self->Close(
            Status::Unavailable(std::string("read: ") + uv_strerror(static_cast<int>(nread))));
        return;
      }
    }
    self->Drive();
  }

  // Runs the TLS session on what has arrived: the handshake, then the plaintext.
  void Drive() {
    if (closing_) return;
    if (state_ == State::kHandshake) {
      int ret = mbedtls_ssl_handshake(ssl_.get());
      Flush();
      if (closing_) return;
      if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        if (tcp_eof_) Close(Status::Unavailable("closed by the peer during the handshake"));
        return;
      }
      if (ret != 0) {
        std::string reason = MbedError("tls handshake", ret);
        uint32_t flags = mbedtls_ssl_get_verify_result(ssl_.get());
        if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0) {
          reason = "its certificate: " + VerifyFlagsText(flags);
        }
        Refuse(reason);
        return;
      }
      handshake_done_ = true;
      state_ = State::kPreamble;
      FillPeer();
      Status vetted = owner_->OnHandshake(this);
      if (closing_) return;
      if (!vetted.ok()) {
        Refuse(vetted.message());
        return;
      }
      if (client_) {
        state_ = State::kOpen;
        env_.deadlines->Cancel(deadline_);
        deadline_ = 0;
        std::string first = EncodePreamble(preamble_);
        first += pending_;
        pending_.clear();
        WritePlain(first);
        if (closing_) return;
        owner_->OnOpen(this);
        if (closing_) return;
      }
    }
    ReadPlain();
  }

  // The peer's name and fingerprint from its certificate (when it sent one).
  void FillPeer() {
    const mbedtls_x509_crt* cert = peer_cert();
    if (cert == nullptr) return;
    peer_.name = CommonName(cert->subject);
    peer_.fingerprint = Fingerprint(*cert);
  }

  void ReadPlain() {
    unsigned char buf[kTlsChunkBytes];
    while (!closing_) {
      if (has_pipe_ && pipe_queued_ >= kHighWaterBytes) {
        // Raft is not keeping up: stop reading the socket until it has.
        if (!tcp_paused_ && !tcp_eof_) {
          uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
          tcp_paused_ = true;
        }
        return;
      }
      int n = mbedtls_ssl_read(ssl_.get(), buf, sizeof(buf));
      if (n > 0) {
        OnPlain(std::string_view(reinterpret_cast<char*>(buf), static_cast<size_t>(n)));
        continue;
      }
      if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE) break;
      if (n == 0 || n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        Close(Status::Unavailable("closed by the peer"));
        return;
      }
      Refuse(MbedError("tls read", n));
      return;
    }
    if (!closing_ && tcp_eof_) Close(Status::Unavailable("closed by the peer"));
  }

  void OnPlain(std::string_view data) {
    if (state_ == State::kPreamble) {
      // Only a server reads a preamble; a client is open before it reads anything.
      preamble_bytes_.append(data.data(), data.size());
      Preamble preamble;
      Result<size_t> used = DecodePreamble(preamble_bytes_, &preamble);
      if (!used.ok()) {
        Refuse(used.status().message());
        return;
      }
      if (*used == 0) return;
      std::string rest = preamble_bytes_.substr(*used);
      preamble_bytes_.clear();
      channel_ = preamble.channel;
      state_ = State::kOpen;
      peer_.raft_id = preamble.raft_id;
      Status accepted = owner_->OnPreamble(this, std::move(preamble));
      if (closing_) return;
      if (!accepted.ok()) {
        Refuse(accepted.message());
        return;
      }
      env_.deadlines->Cancel(deadline_);
      deadline_ = 0;
      if (!pending_.empty()) {
        WritePlain(pending_);
        pending_.clear();
      }
      if (!rest.empty()) OnPlain(rest);
      return;
    }
    if (has_pipe_) {
      WritePipe(data);
      return;
    }
    if (channel_ == Channel::kRaft) return;  // the pipe is being set up or failed
    frames_.Append(data);
    Frame frame;
    while (!closing_) {
      Result<bool> got = frames_.Next(&frame);
      if (!got.ok()) {
        Refuse(got.status().message());
        return;
      }
      if (!*got) return;
      owner_->OnFrame(this, std::move(frame));
    }
  }

  void WritePlain(std::string_view data) {
    while (!data.empty() && !closing_) {
      int n = mbedtls_ssl_write(ssl_.get(), reinterpret_cast<const unsigned char*>(data.data()),
                                std::min(data.size(), kTlsChunkBytes));
      if (n < 0) {
        Close(Status::Unavailable(MbedError("tls write", n)));
        return;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    Flush();
  }

  // Sends what mbedTLS produced.
  void Flush() {
    if (out_.empty() || write_failed_) return;
    std::string data = std::move(out_);
    out_.clear();
    if (!Write(&tcp_, std::move(data))) {
      write_failed_ = true;
      return;
    }
    // A request channel whose peer does not read would grow without bound.
    if (!has_pipe_ && tcp_queued_ > 2 * (env_.max_message_bytes + kHighWaterBytes)) {
      Refuse("it reads nothing: " + std::to_string(tcp_queued_) + " bytes wait to be sent");
    }
  }

  void WritePipe(std::string_view data) { Write(&pipe_, std::string(data)); }

  // Writes `data` on the socket or the raft pipe and counts it queued there; false
  // (and closed) when libuv refused it.
  template <typename Handle>
  bool Write(Handle* handle, std::string data) {
    auto* stream = reinterpret_cast<uv_stream_t*>(handle);
    auto* w = new WriteReq{{}, this, std::move(data)};
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, stream, &buf, 1, OnWritten);
    if (rc != 0) {
      delete w;
      Close(Status::Unavailable(WhatFails(stream) + uv_strerror(rc)));
      return false;
    }
    (IsTcp(stream) ? tcp_queued_ : pipe_queued_) += buf.len;
    return true;
  }

  bool IsTcp(const uv_stream_t* stream) const {
    return stream == reinterpret_cast<const uv_stream_t*>(&tcp_);
  }
  std::string WhatFails(const uv_stream_t* stream) const {
    return IsTcp(stream) ? "write: " : "raft stream: ";
  }

  // A write is done: once its side drained, the other side is read again.
  static void OnWritten(uv_write_t* req, int status) {
    std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));
    Conn* self = w->conn;
    bool tcp = self->IsTcp(req->handle);
    (tcp ? self->tcp_queued_ : self->pipe_queued_) -= w->data.size();
    if (self->closing_) return;
    if (status != 0) {
      self->Close(Status::Unavailable(self->WhatFails(req->handle) + uv_strerror(status)));
      return;
    }
    if (tcp && self->pipe_paused_ && self->tcp_queued_ <= kLowWaterBytes) {
      self->pipe_paused_ = false;
      uv_read_start(reinterpret_cast<uv_stream_t*>(&self->pipe_), OnAlloc, OnPipeRead);
    }
    if (!tcp && self->tcp_paused_ && self->pipe_queued_ <= kLowWaterBytes) {
      self->tcp_paused_ = false;
      uv_read_start(reinterpret_cast<uv_stream_t*>(&self->tcp_), OnAlloc, OnTcpRead);
      self->Drive();  // what mbedTLS and the input buffer still hold
    }
  }

  static void OnPipeRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* self = static_cast<Conn*>(stream->data);
    std::unique_ptr<char[]> owned(buf->base);
    if (self->closing_) return;
    if (nread < 0) {
      self->Close(Status::Unavailable(nread == UV_EOF ? "raft closed its stream"
                                                      : std::string("raft stream: ") +
                                                            uv_strerror(static_cast<int>(nread))));
      return;
    }
    if (nread == 0) return;
    self->WritePlain(std::string_view(buf->base, static_cast<size_t>(nread)));
    if (!self->closing_ && self->tcp_queued_ >= kHighWaterBytes) {
      // The peer is not keeping up: stop reading raft until the socket drains.
      uv_read_stop(stream);
      self->pipe_paused_ = true;
    }
  }

  static void OnHandleClosed(uv_handle_t* handle) {
    auto* self = static_cast<Conn*>(handle->data);
    if (--self->handles_ == 0) self->owner_->OnClosed(self, self->why_);
  }

  ConnOwner* owner_;
  Env env_;
  uint64_t serial_;
  Channel channel_;
  bool client_ = false;
  State state_ = State::kHandshake;
  bool handshake_done_ = false;
  bool closing_ = false;
  Status why_;
  PeerInfo peer_;
  Preamble preamble_;           // client: what it sends
  std::string preamble_bytes_;  // server: what has come of it
  uint64_t deadline_ = 0;       // the handshake and preamble's

  uv_tcp_t tcp_;
  uv_connect_t connect_;
  bool tcp_eof_ = false;
  bool write_failed_ = false;
  bool tcp_paused_ = false;
  size_t tcp_queued_ = 0;
  int handles_ = 0;

  MbedSsl ssl_;
  std::string in_;  // ciphertext received, from in_start_ on not yet read by mbedTLS
  size_t in_start_ = 0;
  std::string out_;      // ciphertext to send
  std::string pending_;  // plaintext frames waiting for the connection to open
  FrameReader frames_;

  uv_pipe_t pipe_;
  bool has_pipe_ = false;
  bool pipe_paused_ = false;
  size_t pipe_queued_ = 0;
};

// The TLS side of an identity: the certificates and key parsed once, and the
// configurations of the server and client ends.
struct MemberTls {
  MbedRng rng;
  MbedCrt ca;
  MbedCrt own_chain;  // the node's certificate, then the CA's: servers send both
  MbedPk key;
  MbedSslConfig server;
  MbedSslConfig client;

  Status Init(const PeerIdentity& id) {
    PETREL_RETURN_IF_ERROR(rng.Seed("petrel peer transport"));
    PETREL_RETURN_IF_ERROR(ParseCertificates(id.ca_cert_pem, "ca certificate", ca.get()));
    PETREL_RETURN_IF_ERROR(ParseCertificates(id.cert_pem, "certificate", own_chain.get()));
    PETREL_RETURN_IF_ERROR(ParseCertificates(id.ca_cert_pem, "ca certificate", own_chain.get()));
    int ret =
        mbedtls_pk_parse_key(key.get(), reinterpret_cast<const unsigned char*>(id.key_pem.c_str()),
                             id.key_pem.size() + 1, nullptr, 0);
    if (ret != 0) return Status::InvalidArgument(MbedError("parse key", ret));
    ret = mbedtls_pk_check_pair(&own_chain.get()->pk, key.get());
    if (ret != 0)
      return Status::InvalidArgument(MbedError("key does not match the certificate", ret));
    uint32_t flags = 0;
    ret = mbedtls_x509_crt_verify(own_chain.get(), ca.get(), nullptr, nullptr, &flags, nullptr,
                                  nullptr);
    if (ret != 0) {
      return Status::InvalidArgument("certificate not signed by the CA: " + VerifyFlagsText(flags));
    }
    // The server asks every client for a certificate but takes one without: join
    // channels need none, and the preamble decides (Transport::OnPreamble).
    PETREL_RETURN_IF_ERROR(
        SetupTlsConfig(server.get(), MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_VERIFY_OPTIONAL, &rng));
    PETREL_RETURN_IF_ERROR(
        SetupTlsConfig(client.get(), MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_VERIFY_REQUIRED, &rng));
    for (mbedtls_ssl_config* conf : {server.get(), client.get()}) {
      mbedtls_ssl_conf_ca_chain(conf, ca.get(), nullptr);
      ret = mbedtls_ssl_conf_own_cert(conf, own_chain.get(), key.get());
      if (ret != 0) return Status::Internal(MbedError("tls config", ret));
    }
    return Status::OK();
  }
};

class Transport : public PeerTransport, public ConnOwner {
 public:
  explicit Transport(PeerTransportOptions options)
      : options_(std::move(options)), deadlines_(options_.loop), alive_(std::make_shared<char>()) {
    std::memset(&raft_, 0, sizeof(raft_));
    raft_.impl = this;
    raft_.init = RaftInit;
    raft_.listen = RaftListen;
    raft_.connect = RaftConnect;
    raft_.close = RaftClose;
  }

  Status Start() {
    PETREL_RETURN_IF_ERROR(tls_.Init(options_.identity).WithContext("identity"));
    std::string where = "listen " + options_.listen;
    sockaddr_storage addr{};
    PETREL_RETURN_IF_ERROR(ParseAddress(options_.listen, &addr).WithContext(where));
    listener_ = new uv_tcp_t;
    uv_tcp_init(options_.loop, listener_);
    listener_->data = this;
    int rc = uv_tcp_bind(listener_, reinterpret_cast<sockaddr*>(&addr), 0);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 128, OnConnection);
    if (rc != 0) return Status::Unavailable(where + ": " + uv_strerror(rc));
    sockaddr_storage bound{};
    int len = sizeof(bound);
    uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&bound), &len);
    address_ = FormatAddress(reinterpret_cast<sockaddr*>(&bound));
    return Status::OK();
  }

  // After Start failed: closes what it opened and frees `t` from the loop.
  static void Abandon(std::unique_ptr<Transport> t) {
    Transport* raw = t.release();
    raw->Close([raw] { delete raw; });
  }

  const std::string& address() const override { return address_; }
  raft_uv_transport* raft() override { return &raft_; }
  void OnRequest(RequestHandler handler) override { on_request_ = std::move(handler); }
  void OnJoin(JoinHandler handler) override { on_join_ = std::move(handler); }

  void Call(const std::string& address, std::string request, int64_t timeout_ms,
            CallDone done) override {
    if (closed_) {
      done(Status::Unavailable("peer " + address + ": transport closed"), "");
      return;
    }
    if (request.size() > options_.max_message_bytes) {
      Later(std::move(done), Status::InvalidArgument("peer " + address + ": request of " +
                                                     std::to_string(request.size()) +
                                                     " bytes is over the limit of " +
                                                     std::to_string(options_.max_message_bytes)));
      return;
    }
    Conn* conn = nullptr;
    auto found = outgoing_.find(address);
    if (found != outgoing_.end()) conn = Find(found->second);
    if (conn == nullptr || conn->closing()) {
      conn = NewConn(Channel::kRequest);
      Status s = conn->Connect(address, tls_.client.get(), Preamble{Channel::kRequest, 0, ""});
      if (!s.ok()) {
        conn->Close(s);
        Later(std::move(done), Status::Unavailable("peer " + address + ": " + s.message()));
        return;
      }
      outgoing_[address] = conn->serial();
    }
    uint64_t id = next_call_id_++;
    PendingCall& call = calls_[id];
    call.conn = conn->serial();
    call.done = std::move(done);
    call.deadline = deadlines_.Add(timeout_ms, [this, id, address, timeout_ms] {
      Finish(id,
             Status::DeadlineExceeded("peer " + address + ": no reply within " +
                                      std::to_string(timeout_ms) + " ms"),
             "", /*cancel_deadline=*/false);
    });
    conn->SendFrame(FrameKind::kRequest, id, request);
  }

  void Close(std::function<void()> done) override {
    closing_ = true;
    closed_ = true;
    close_done_ = std::move(done);
    if (listener_ != nullptr) {
      ++closing_handles_;
      uv_close(AsHandle(listener_), [](uv_handle_t* h) {
        auto* self = static_cast<Transport*>(h->data);
        delete reinterpret_cast<uv_tcp_t*>(h);
        self->listener_ = nullptr;
        self->HandleGone();
      });
    }
    accept_cb_ = nullptr;
    std::vector<Conn*> open;
    for (auto& [serial, conn] : conns_) open.push_back(conn.get());
    for (Conn* conn : open) conn->Close(Status::Unavailable("transport closed"));
    if (raft_close_cb_ != nullptr && raft_connecting_.empty()) FireRaftClose();
    MaybeFinishClose();
  }

  // ConnOwner.
  Status OnHandshake(Conn* conn) override {
    if (conn->is_client()) {
      // VERIFY_REQUIRED: the handshake failed unless the server's chain reached the CA.
      return Authorize(conn->peer());
    }
    const mbedtls_x509_crt* cert = conn->peer_cert();
    if (cert == nullptr) return Status::OK();  // a newcomer: join only (OnPreamble)
    uint32_t flags = mbedtls_ssl_get_verify_result(conn->ssl());
    if (flags != 0) {
      return Status::PermissionDenied("its certificate: " + VerifyFlagsText(flags));
    }
    return Status::OK();
  }

  Status OnPreamble(Conn* conn, Preamble preamble) override {
    if (preamble.channel == Channel::kJoin) return Status::OK();
    if (conn->peer_cert() == nullptr) {
      return Status::PermissionDenied(std::string("a ") + ChannelName(preamble.channel) +
                                      " channel without a client certificate (only join "
                                      "requests are accepted without one)");
    }
    PETREL_RETURN_IF_ERROR(Authorize(conn->peer()));
    if (preamble.channel == Channel::kRequest) return Status::OK();
    if (accept_cb_ == nullptr) return Status::Unavailable("raft is not listening");
    uv_stream_t* stream = nullptr;
    PETREL_RETURN_IF_ERROR(PipeToRaft(conn, &stream));
    accept_cb_(&raft_, preamble.raft_id, preamble.raft_address.c_str(), stream);
    return Status::OK();
  }

  void OnOpen(Conn* conn) override {
    if (conn->channel() != Channel::kRaft) return;
    auto it = raft_connecting_.find(conn->serial());
    if (it == raft_connecting_.end()) return;
    raft_uv_connect* req = it->second;
    uv_stream_t* stream = nullptr;
    Status s = PipeToRaft(conn, &stream);
    if (!s.ok()) {
      conn->Close(s);  // OnClosed answers raft
      return;
    }
    raft_connecting_.erase(it);
    req->cb(req, stream, 0);
  }

  void OnFrame(Conn* conn, Frame frame) override {
    if (conn->is_client()) {
      if (frame.kind != FrameKind::kResponse) {
        conn->Refuse("it sent a " + std::to_string(static_cast<int>(frame.kind)) +
                     " frame where responses come");
        return;
      }
      auto it = calls_.find(frame.id);
      if (it == calls_.end() || it->second.conn != conn->serial()) {
        Log(LogLevel::kDebug, "peer " + conn->remote() + ": late reply to request " +
                                  std::to_string(frame.id) + " dropped");
        return;
      }
      Finish(frame.id, Status::OK(), std::move(frame.body), /*cancel_deadline=*/true);
      return;
    }
    bool join = conn->channel() == Channel::kJoin;
    FrameKind expected = join ? FrameKind::kJoin : FrameKind::kRequest;
    if (frame.kind != expected) {
      conn->Refuse(join ? "an ordinary request on a join connection"
                        : "a frame of kind " + std::to_string(static_cast<int>(frame.kind)) +
                              " on a request connection");
      return;
    }
    Reply reply = MakeReply(conn->serial(), frame.id);
    if (join) {
      if (!on_join_) {
        conn->Refuse("no join handler");
        return;
      }
      on_join_(conn->remote(), std::move(frame.body), std::move(reply));
    } else {
      if (!on_request_) {
        conn->Refuse("no request handler");
        return;
      }
      on_request_(conn->peer(), std::move(frame.body), std::move(reply));
    }
  }

  void OnClosed(Conn* conn, const Status& why) override {
    uint64_t serial = conn->serial();
    std::string remote = conn->remote();
    auto out = outgoing_.find(remote);
    if (out != outgoing_.end() && out->second == serial) outgoing_.erase(out);
    // Callers learn after the connection is gone, so that they may call again.
    std::vector<std::pair<CallDone, Status>> failed;
    for (auto it = calls_.begin(); it != calls_.end();) {
      if (it->second.conn != serial) {
        ++it;
        continue;
      }
      deadlines_.Cancel(it->second.deadline);
      failed.emplace_back(std::move(it->second.done),
                          Status::Unavailable("peer " + remote + ": " + why.message()));
      it = calls_.erase(it);
    }
    raft_uv_connect* raft_req = nullptr;
    auto connecting = raft_connecting_.find(serial);
    if (connecting != raft_connecting_.end()) {
      raft_req = connecting->second;
      raft_connecting_.erase(connecting);
    }
    conns_.erase(serial);
    if (raft_req != nullptr) {
      raft_req->cb(raft_req, nullptr, raft_closing_ ? RAFT_CANCELED : RAFT_NOCONNECTION);
      if (raft_closing_ && raft_connecting_.empty() && raft_close_cb_ != nullptr) FireRaftClose();
    }
    for (auto& [done, status] : failed) done(status, "");
    MaybeFinishClose();
  }

  void Log(LogLevel level, const std::string& message) override {
    if (options_.log) options_.log(level, message);
  }

  // The same refusal is logged at most once a minute.
  int64_t RefusalsUnlogged(const std::string& key) override {
    constexpr uint64_t kQuietMs = 60000;
    const uint64_t now = uv_now(options_.loop);
    auto [it, fresh] = refusals_.try_emplace(key, Refusals{now, 0});
    if (fresh) {
      if (refusals_.size() > 256) refusals_.clear();  // bounded: a peer can vary the key
      return 0;
    }
    if (now - it->second.logged_at < kQuietMs) {
      it->second.unlogged++;
      return -1;
    }
    const int64_t unlogged = it->second.unlogged;
    it->second = Refusals{now, 0};
    return unlogged;
  }

 private:
  struct Refusals {
    uint64_t logged_at = 0;
    int64_t unlogged = 0;
  };
  std::map<std::string, Refusals> refusals_;

  struct PendingCall {
    uint64_t conn = 0;
    CallDone done;
    uint64_t deadline = 0;
  };

  Conn* NewConn(Channel channel) {
    uint64_t serial = next_serial_++;
    Conn::Env env{options_.loop, &deadlines_, options_.max_message_bytes,
                  options_.handshake_timeout_ms};
    auto conn = std::make_unique<Conn>(this, env, serial, channel);
    Conn* raw = conn.get();
    conns_[serial] = std::move(conn);
    return raw;
  }

  Conn* Find(uint64_t serial) {
    auto it = conns_.find(serial);
    return it == conns_.end() ? nullptr : it->second.get();
  }

  Status Authorize(const PeerInfo& peer) {
    if (!options_.authorize) return Status::OK();
    Status s = options_.authorize(peer);
    if (s.ok()) return s;
    return Status::PermissionDenied("node " + peer.name + " (" + peer.fingerprint.substr(0, 16) +
                                    "...): " + s.message());
  }

  // Completes call `id` once.
  void Finish(uint64_t id, Status status, std::string response, bool cancel_deadline) {
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    CallDone done = std::move(it->second.done);
    if (cancel_deadline) deadlines_.Cancel(it->second.deadline);
    calls_.erase(it);
    done(std::move(status), std::move(response));
  }

  // Calls `done` with `status` from the loop, not from inside Call.
  void Later(CallDone done, Status status) {
    auto shared = std::make_shared<std::pair<CallDone, Status>>(std::move(done), std::move(status));
    deadlines_.Add(0, [shared] { shared->first(std::move(shared->second), ""); });
  }

  Reply MakeReply(uint64_t serial, uint64_t id) {
    std::weak_ptr<char> alive = alive_;
    return [this, alive, serial, id](std::string response) {
      if (alive.expired()) return;
      Conn* conn = Find(serial);
      if (conn == nullptr || conn->closing()) return;
      if (response.size() > options_.max_message_bytes) {
        conn->Refuse("our reply of " + std::to_string(response.size()) +
                     " bytes is over the limit of " + std::to_string(options_.max_message_bytes));
        return;
      }
      conn->SendFrame(FrameKind::kResponse, id, response);
    };
  }

  // Gives raft one end of a new socket pair and `conn` the other.
  Status PipeToRaft(Conn* conn, uv_stream_t** stream) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      return Status::Unavailable(std::string("socketpair: ") + std::strerror(errno));
    }
    // raft uv_close()s the stream it gets and frees it with raft_free.
    auto* pipe = static_cast<uv_pipe_t*>(raft_malloc(sizeof(uv_pipe_t)));
    if (pipe == nullptr) {
      close(fds[0]);
      close(fds[1]);
      return Status::Unavailable("out of memory");
    }
    uv_pipe_init(options_.loop, pipe, 0);
    int rc = uv_pipe_open(pipe, fds[1]);
    if (rc != 0) {
      close(fds[0]);
      close(fds[1]);
      uv_close(AsHandle(pipe), [](uv_handle_t* h) { raft_free(h); });
      return Status::Unavailable(std::string("raft stream: ") + uv_strerror(rc));
    }
    Status s = conn->AttachPipe(fds[0]);
    if (!s.ok()) {
      uv_close(AsHandle(pipe), [](uv_handle_t* h) { raft_free(h); });
      return s;
    }
    *stream = reinterpret_cast<uv_stream_t*>(pipe);
    return Status::OK();
  }

  static void OnConnection(uv_stream_t* listener, int status) {
    auto* self = static_cast<Transport*>(listener->data);
    if (self->closing_) return;
    if (status != 0) {
      self->Log(LogLevel::kWarn, "listen " + self->address_ + ": " + uv_strerror(status));
      return;
    }
    Conn* conn = self->NewConn(Channel::kRequest);  // the preamble says which
    Status s = conn->Accept(listener, self->tls_.server.get());
    if (!s.ok()) {
      self->Log(LogLevel::kWarn, "peer " + conn->remote() + ": " + s.message());
      conn->Close(s);
    }
  }

  // Tells raft its transport is released, from the loop (never inside its close call).
  // REQUIRES: no raft connect is pending.
  void FireRaftClose() {
    auto fire = [this] {
      raft_uv_transport_close_cb cb = raft_close_cb_;
      raft_close_cb_ = nullptr;
      if (cb != nullptr) cb(&raft_);
    };
    if (closed_) {
      fire();  // the deadlines are closed
    } else {
      deadlines_.Add(0, fire);
    }
  }

  void HandleGone() {
    --closing_handles_;
    MaybeFinishClose();
  }

  // Once every connection is gone the deadlines' timer closes; once it and the
  // listener are closed, Close's callback runs.
  void MaybeFinishClose() {
    if (!closed_ || !conns_.empty()) return;
    if (deadlines_closing_) {
      FinishClose();
      return;
    }
    deadlines_closing_ = true;
    ++closing_handles_;
    deadlines_.Close([this] {
      --closing_handles_;
      FinishClose();
    });
    FinishClose();
  }

  void FinishClose() {
    if (closing_handles_ != 0 || !close_done_) return;
    alive_.reset();
    std::function<void()> done = std::move(close_done_);
    close_done_ = nullptr;
    done();
  }

  // raft_uv_transport.
  static Transport* Of(raft_uv_transport* t) { return static_cast<Transport*>(t->impl); }

  static int RaftInit(raft_uv_transport* t, raft_id id, const char* address) {
    Transport* self = Of(t);
    size_t len = std::strlen(address);
    if (id == 0 || len == 0 || len > kMaxRaftAddressBytes) {
      std::snprintf(t->errmsg, sizeof(t->errmsg), "raft id 0 or address of %zu bytes", len);
      return RAFT_INVALID;
    }
    self->raft_id_ = id;
    self->raft_address_ = address;
    return 0;
  }

  static int RaftListen(raft_uv_transport* t, raft_uv_accept_cb cb) {
    Of(t)->accept_cb_ = cb;
    return 0;
  }

  static int RaftConnect(raft_uv_transport* t, raft_uv_connect* req, raft_id, const char* address,
                         raft_uv_connect_cb cb) {
    Transport* self = Of(t);
    if (self->closed_ || self->raft_closing_) return RAFT_CANCELED;
    req->cb = cb;
    Conn* conn = self->NewConn(Channel::kRaft);
    Status s = conn->Connect(address, self->tls_.client.get(),
                             Preamble{Channel::kRaft, self->raft_id_, self->raft_address_});
    if (!s.ok()) {
      std::snprintf(t->errmsg, sizeof(t->errmsg), "%s", s.message().c_str());
      conn->Close(s);  // not in raft_connecting_: raft hears of it from the return value
      return RAFT_NOCONNECTION;
    }
    self->raft_connecting_[conn->serial()] = req;
    return 0;
  }

  static void RaftClose(raft_uv_transport* t, raft_uv_transport_close_cb cb) {
    Transport* self = Of(t);
    self->raft_closing_ = true;
    self->accept_cb_ = nullptr;
    self->raft_close_cb_ = cb;
    if (self->raft_connecting_.empty()) {
      self->FireRaftClose();
      return;
    }
    std::vector<Conn*> pending;
    for (auto& [serial, req] : self->raft_connecting_) pending.push_back(self->Find(serial));
    for (Conn* conn : pending) {
      if (conn != nullptr) conn->Close(Status::Unavailable("raft transport closed"));
    }
  }

  PeerTransportOptions options_;
  MemberTls tls_;
  Deadlines deadlines_;
  std::shared_ptr<char> alive_;  // replies hold a weak_ptr: after Close they do nothing
  std::string address_;
  uv_tcp_t* listener_ = nullptr;
  bool closing_ = false;
  bool closed_ = false;
  bool deadlines_closing_ = false;
  int closing_handles_ = 0;
  std::function<void()> close_done_;

  uint64_t next_serial_ = 1;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::map<std::string, uint64_t> outgoing_;  // request channels by the address called
  uint64_t next_call_id_ = 1;
  std::map<uint64_t, PendingCall> calls_;
  RequestHandler on_request_;
  JoinHandler on_join_;

  raft_uv_transport raft_;
  raft_id raft_id_ = 0;
  std::string raft_address_;
  raft_uv_accept_cb accept_cb_ = nullptr;
  bool raft_closing_ = false;
  raft_uv_transport_close_cb raft_close_cb_ = nullptr;
  std::map<uint64_t, raft_uv_connect*> raft_connecting_;  // by connection serial
};

// A newcomer's one call: a client without a certificate that trusts the CA whose hash
// it was given, found in the chain the server sends.
class CertlessClient : public ConnOwner {
 public:
  using Done = std::function<void(Status status, std::string response, std::string ca_cert_pem)>;

  CertlessClient(uv_loop_t* loop, std::string ca_hash, LogSink log, Done done)
      : loop_(loop),
        ca_hash_(std::move(ca_hash)),
        log_(std::move(log)),
        done_(std::move(done)),
        deadlines_(loop) {}

  void Start(const std::string& address, Channel channel, FrameKind kind, std::string request,
             int64_t timeout_ms) {
    address_ = address;
    Status s = rng_.Seed("petrel join");
    // The server's chain is checked by hand (OnHandshake): mbedTLS knows no CA here.
    if (s.ok()) {
      s = SetupTlsConfig(conf_.get(), MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_VERIFY_OPTIONAL, &rng_);
    }
    Conn::Env env{loop_, &deadlines_, std::max<size_t>(request.size(), 4 << 20), timeout_ms};
    conn_ = std::make_unique<Conn>(this, env, 1, channel);
    if (s.ok()) s = conn_->Connect(address, conf_.get(), Preamble{channel, 0, ""});
    if (!s.ok()) {
      result_ = Status::Unavailable("peer " + address + ": " + s.message());
      conn_->Close(s);
      return;
    }
    deadlines_.Add(timeout_ms, [this, timeout_ms] {
      if (result_.ok() && !answered_) {
        result_ = Status::DeadlineExceeded("peer " + address_ + ": no reply within " +
                                           std::to_string(timeout_ms) + " ms");
      }
      conn_->Close(result_);
    });
    conn_->SendFrame(kind, 1, request);
  }

  Status OnHandshake(Conn* conn) override {
    const mbedtls_x509_crt* chain = conn->peer_cert();
    if (chain == nullptr) return Fail(Status::PermissionDenied("it sent no certificate"));
    const mbedtls_x509_crt* ca = nullptr;
    const mbedtls_x509_crt* last = chain;
    for (const mbedtls_x509_crt* c = chain; c != nullptr && c->raw.len != 0; c = c->next) {
      last = c;
      if (c->ca_istrue && Fingerprint(*c) == ca_hash_) ca = c;
    }
    if (ca == nullptr) {
      return Fail(Status::PermissionDenied("its CA sha256:" + Fingerprint(*last).substr(0, 16) +
                                           "... is not the token's"));
    }
    MbedCrt trusted;
    int ret = mbedtls_x509_crt_parse_der(trusted.get(), ca->raw.p, ca->raw.len);
    if (ret != 0) return Fail(Status::PermissionDenied(MbedError("its CA", ret)));
    uint32_t flags = 0;
    ret = mbedtls_x509_crt_verify(const_cast<mbedtls_x509_crt*>(chain), trusted.get(), nullptr,
                                  nullptr, &flags, nullptr, nullptr);
    if (ret != 0) {
      return Fail(Status::PermissionDenied("its certificate: " + VerifyFlagsText(flags)));
    }
    ca_pem_ = CertPem(*ca);
    return Status::OK();
  }

  Status OnPreamble(Conn*, Preamble) override { return Status::Internal("client got a preamble"); }
  void OnOpen(Conn*) override {}

  void OnFrame(Conn* conn, Frame frame) override {
    if (frame.kind != FrameKind::kResponse || frame.id != 1) {
      conn->Refuse("it sent a frame that is not the reply");
      return;
    }
    answered_ = true;
    response_ = std::move(frame.body);
    conn->Close(Status::OK());
  }

  void OnClosed(Conn*, const Status& why) override {
    if (result_.ok() && !answered_) {
      result_ = why.ok() ? Status::Unavailable("peer " + address_ + ": closed")
                : why.code() == Status::Code::kPermissionDenied
                    ? Status::PermissionDenied("peer " + address_ + ": " + why.message())
                    : Status::Unavailable("peer " + address_ + ": " + why.message());
    }
    deadlines_.Close([this] {
      Done done = std::move(done_);
      Status status = std::move(result_);
      std::string response = std::move(response_);
      std::string ca = status.ok() ? std::move(ca_pem_) : "";
      delete this;
      done(std::move(status), std::move(response), std::move(ca));
    });
  }

  void Log(LogLevel level, const std::string& message) override {
    if (log_) log_(level, message);
  }

 private:
  Status Fail(Status status) {
    result_ = Status::PermissionDenied("peer " + address_ + ": " + status.message());
    return status;
  }

  uv_loop_t* loop_;
  std::string ca_hash_;
  LogSink log_;
  Done done_;
  std::string address_;
  MbedRng rng_;
  MbedSslConfig conf_;
  Deadlines deadlines_;
  std::unique_ptr<Conn> conn_;
  Status result_;
  bool answered_ = false;
  std::string response_;
  std::string ca_pem_;
};

}  // namespace

Status PeerTransport::Open(PeerTransportOptions options, std::unique_ptr<PeerTransport>* result) {
  if (options.loop == nullptr) return Status::InvalidArgument("peer transport: no loop");
  auto transport = std::make_unique<Transport>(std::move(options));
  Status s = transport->Start();
  if (!s.ok()) {
    Transport::Abandon(std::move(transport));
    return s;
  }
  *result = std::move(transport);
  return Status::OK();
}

void CertlessCall(
    uv_loop_s* loop, const std::string& address, const std::string& ca_hash, Channel channel,
    FrameKind kind, std::string request, int64_t timeout_ms,
    std::function<void(Status status, std::string response, std::string ca_cert_pem)> done,
    LogSink log) {
  auto* client = new CertlessClient(loop, ca_hash, std::move(log), std::move(done));
  client->Start(address, channel, kind, std::move(request), timeout_ms);
}

void JoinCall(
    uv_loop_s* loop, const std::string& address, const std::string& ca_hash, std::string request,
    int64_t timeout_ms,
    std::function<void(Status status, std::string response, std::string ca_cert_pem)> done,
    LogSink log) {
  CertlessCall(loop, address, ca_hash, Channel::kJoin, FrameKind::kJoin, std::move(request),
               timeout_ms, std::move(done), std::move(log));
}

}  // namespace petrel::internal
