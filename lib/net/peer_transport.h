// PeerTransport: every byte between peers, over TCP with mutual TLS (mbedTLS), on one
// libuv loop. One listening port carries three kinds of connection, told apart by a
// preamble the client sends once its handshake is done:
//  - raft: canonical/raft's own stream (raft() is the raft_uv_transport to hand
//    raft_uv_init). raft gets a uv_stream_t: one end of a socketpair whose other end
//    the transport pumps through the TLS session. The preamble carries the connecting
//    server's raft id and address, which raft's accept callback needs.
//  - requests: length-prefixed request/response messages between members (forwarded
//    writes, joins passed on to the leader, ...), several in flight per connection;
//    one connection per peer address is kept and reused.
//  - join: a newcomer without a certificate asks to join. Only join requests are
//    accepted on such a connection. The newcomer checks the server's certificate
//    against the CA hash its token carries (JoinCall).
// Both ends of raft and request connections present a certificate signed by the
// cluster CA; then `authorize` decides (a removed node's certificate is refused). A
// refused or failed handshake is logged with the peer's address and the reason.
//
// Every input is bounded: messages by max_message_bytes, the handshake and the
// preamble by handshake_timeout_ms. The preamble and the frames are specified in
// lib/net/peer_wire.h. Peers are told apart by their certificate's CN and fingerprint,
// never by host name; addresses are numeric ("ADDR:PORT"), so nothing waits on a name
// lookup.
//
// TLS 1.2 with ECDHE-ECDSA and AEAD ciphers (ChaCha20-Poly1305, AES-GCM); the server
// sends its certificate and the CA's, which is how a newcomer finds the CA.
//
// The process must ignore SIGPIPE (libuv writes to raft's socket pairs with write()).
//
// Thread-safety: none; every call on the loop's thread, callbacks too.
#ifndef PETREL_LIB_NET_PEER_TRANSPORT_H_
#define PETREL_LIB_NET_PEER_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "petrel/log.h"
#include "petrel/status.h"

struct uv_loop_s;
struct raft_uv_transport;

namespace petrel::internal {

struct PeerIdentity {
  std::string ca_cert_pem;  // the cluster CA: peers' certificates must chain to it
  std::string cert_pem;     // this node's certificate, signed by the CA
  std::string key_pem;
};

// Who is on the other end of an authenticated connection.
struct PeerInfo {
  std::string name;         // the certificate's CN: the node name
  std::string fingerprint;  // CertFingerprint() of its certificate
  std::string remote;       // "ADDR:PORT" the connection comes from
  uint64_t raft_id = 0;     // raft connections: the id the preamble claims; else 0
};

struct PeerTransportOptions {
  uv_loop_s* loop = nullptr;
  // ADDR:PORT to listen on: "10.0.0.5:7400", "0.0.0.0:7400", "[::1]:7400".
  std::string listen;
  PeerIdentity identity;
  // Decides, after the handshake and preamble, whether an authenticated peer may talk
  // (both directions: outgoing connections are checked too). Not OK: the connection is
  // closed and the reason logged. Unset: every CA-signed certificate is accepted.
  std::function<Status(const PeerInfo& peer)> authorize;
  LogSink log;
  size_t max_message_bytes = 4 << 20;
  int64_t handshake_timeout_ms = 5000;
};

class PeerTransport {
 public:
  using Reply = std::function<void(std::string response)>;
  // Handles one request; `reply` must be called exactly once, on the loop thread, at
  // any later time (not at all when the transport closes first: it then does nothing,
  // even after the transport is destroyed). A reply over max_message_bytes is not sent:
  // the connection is closed and that logged.
  using RequestHandler =
      std::function<void(const PeerInfo& from, std::string request, Reply reply)>;
  using JoinHandler =
      std::function<void(const std::string& remote, std::string request, Reply reply)>;
  using CallDone = std::function<void(Status status, std::string response)>;

  // Binds and listens. Errors name the address ("listen 10.0.0.5:7400: address
  // already in use") or the bad identity ("identity: certificate not signed by the
  // CA: ..."). After an error nothing needs closing: what was opened is released on
  // the loop's next turn.
  static Status Open(PeerTransportOptions options, std::unique_ptr<PeerTransport>* result);
  // REQUIRES: Close() has completed (its callback ran) or was never needed.
  virtual ~PeerTransport() = default;

  // The address it listens on, with the port the system chose when `listen` asked for
  // port 0 ("127.0.0.1:41234").
  virtual const std::string& address() const = 0;

  // The transport to hand raft_uv_init: one raft server per PeerTransport. Valid until
  // Close; raft must have closed it (raft_close's callback ran) before Close is called.
  virtual raft_uv_transport* raft() = 0;

  virtual void OnRequest(RequestHandler handler) = 0;
  virtual void OnJoin(JoinHandler handler) = 0;

  // Sends `request` to the member at `address` and calls `done` once with its reply,
  // or with Unavailable ("peer 10.0.0.6:7400: connection refused"; also when the peer
  // or this side refused the connection, the reason being logged), DeadlineExceeded
  // after `timeout_ms`, or InvalidArgument when `request` is over max_message_bytes.
  // `done` runs from the loop, never inside Call (except after Close). Requests to one
  // address share one connection, opened again on the next Call once it broke.
  virtual void Call(const std::string& address, std::string request, int64_t timeout_ms,
                    CallDone done) = 0;

  // Stops listening, drops every connection (pending Calls end with Unavailable),
  // and calls `done` once every handle is closed.
  virtual void Close(std::function<void()> done) = 0;

 protected:
  PeerTransport() = default;
};

// A newcomer's join request, sent without a client certificate to the member at
// `address`, whose certificate must chain to a CA whose CertFingerprint is `ca_hash`
// (from the token), found in the chain the member sends: otherwise PermissionDenied
// ("peer 10.0.0.5:7400: its CA sha256:ab12... is not the token's"). `done` gets the
// reply and the CA's PEM; or Unavailable, or DeadlineExceeded after `timeout_ms`
// (which bounds the handshake too). `done` runs from the loop.
void JoinCall(
    uv_loop_s* loop, const std::string& address, const std::string& ca_hash, std::string request,
    int64_t timeout_ms,
    std::function<void(Status status, std::string response, std::string ca_cert_pem)> done,
    LogSink log = nullptr);

}  // namespace petrel::internal

#endif  // PETREL_LIB_NET_PEER_TRANSPORT_H_
