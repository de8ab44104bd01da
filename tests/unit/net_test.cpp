// Tests of lib/net: the cluster's certificates, and the mutual-TLS peer transport over
// real sockets on 127.0.0.1 and a real libuv loop (the one place the unit tests touch
// the network: what is tested is the sockets, TLS and raft's own transport).
#include <doctest/doctest.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/sha256.h>

extern "C" {  // raft 0.15's headers declare C functions without saying so
#include <raft.h>
#include <raft/uv.h>
}
#include <uv.h>

#include <csignal>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/net/mbed.h"
#include "lib/net/peer_transport.h"
#include "lib/net/peer_wire.h"
#include "lib/net/pki.h"
#include "petrel/status.h"
#include "tests/lib/files.h"

namespace petrel::internal {
namespace {

constexpr TimeMs kNow = 1764547200000;  // 2025-12-01

CertAndKey MustCa(const std::string& cluster) {
  Result<CertAndKey> ca = CreateCa(cluster, kNow);
  REQUIRE_MESSAGE(ca.ok(), ca.status().ToString());
  return std::move(ca).value();
}

// A node's identity signed by `ca`.
CertAndKey MustNode(const CertAndKey& ca, const std::string& name) {
  Result<KeyAndCsr> csr = CreateKeyAndCsr(name);
  REQUIRE_MESSAGE(csr.ok(), csr.status().ToString());
  Result<std::string> cert = SignCsr(ca, csr->csr_pem, name, kNow);
  REQUIRE_MESSAGE(cert.ok(), cert.status().ToString());
  return CertAndKey{std::move(cert).value(), csr->key_pem};
}

// The request of `csr_pem` (its subject and public key) signed with `key_pem`, another
// key than the one it certifies: what a CSR forged for a stolen name looks like.
std::string SignedByOtherKey(const std::string& csr_pem, const std::string& key_pem) {
  MbedCsr csr;
  REQUIRE(mbedtls_x509_csr_parse(csr.get(), reinterpret_cast<const unsigned char*>(csr_pem.c_str()),
                                 csr_pem.size() + 1) == 0);
  MbedPk key;
  REQUIRE(mbedtls_pk_parse_key(key.get(), reinterpret_cast<const unsigned char*>(key_pem.c_str()),
                               key_pem.size() + 1, nullptr, 0) == 0);
  MbedRng rng;
  REQUIRE(rng.Seed("test").ok());
  unsigned char hash[32];
  REQUIRE(mbedtls_sha256_ret(csr.get()->cri.p, csr.get()->cri.len, hash, 0) == 0);
  unsigned char sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
  size_t sig_len = 0;
  REQUIRE(mbedtls_pk_sign(key.get(), MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, &sig_len,
                          MbedRng::Random, rng.state()) == 0);
  // CertificationRequest ::= SEQUENCE { info, signatureAlgorithm, signature BIT STRING },
  // written backwards as mbedTLS's ASN.1 writer does.
  unsigned char der[2048];
  unsigned char* p = der + sizeof(der);
  size_t len = 0;
  len += mbedtls_asn1_write_bitstring(&p, der, sig, sig_len * 8);
  len += mbedtls_asn1_write_algorithm_identifier(&p, der, MBEDTLS_OID_ECDSA_SHA256,
                                                 MBEDTLS_OID_SIZE(MBEDTLS_OID_ECDSA_SHA256), 0);
  len += mbedtls_asn1_write_raw_buffer(&p, der, csr.get()->cri.p, csr.get()->cri.len);
  len += mbedtls_asn1_write_len(&p, der, len);
  len += mbedtls_asn1_write_tag(&p, der, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
  unsigned char pem[4096];
  size_t pem_len = 0;
  REQUIRE(mbedtls_pem_write_buffer("-----BEGIN CERTIFICATE REQUEST-----\n",
                                   "-----END CERTIFICATE REQUEST-----\n", p, len, pem, sizeof(pem),
                                   &pem_len) == 0);
  return std::string(reinterpret_cast<char*>(pem));
}

// A libuv loop for one test: it must end with every handle closed.
class TestLoop {
 public:
  TestLoop() {
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop_);
  }
  ~TestLoop() {
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK_MESSAGE(uv_loop_close(&loop_) == 0, "a handle was left open");
  }
  uv_loop_t* get() { return &loop_; }

  // Runs the loop until `done()` holds; false when `max_ms` of real time passed first
  // (a bound on a failing test, not a wait: passing tests never reach it).
  bool RunUntil(const std::function<bool()>& done, int64_t max_ms = 20000) {
    struct State {
      const std::function<bool()>* done;
      bool expired = false;
    } state{&done};
    uv_timer_t guard;
    uv_timer_init(&loop_, &guard);
    guard.data = &state;
    uv_timer_start(
        &guard, [](uv_timer_t* t) { static_cast<State*>(t->data)->expired = true; },
        static_cast<uint64_t>(max_ms), 0);
    // A timer's callback may be what makes `done` hold: the check before the loop
    // polls keeps it from waiting for the next event.
    uv_prepare_t check;
    uv_prepare_init(&loop_, &check);
    check.data = &state;
    uv_prepare_start(&check, [](uv_prepare_t* p) {
      if ((*static_cast<State*>(p->data)->done)()) uv_stop(p->loop);
    });
    while (!done() && !state.expired) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&check), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return !state.expired || done();
  }

  // Runs the loop for `ms` of real time: only to show that something does NOT happen.
  void RunFor(int64_t ms) {
    bool expired = false;
    RunUntil([&] { return expired; }, ms);
  }

 private:
  uv_loop_t loop_;
};

// Log lines, for checking that refusals are told and why.
struct Logs {
  std::vector<std::string> lines;
  LogSink Sink() {
    return [this](LogLevel, std::string_view line) { lines.emplace_back(line); };
  }
  bool Has(const std::string& a, const std::string& b = "") const {
    for (const std::string& line : lines) {
      if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) return true;
    }
    return false;
  }
  std::string All() const {
    std::string all;
    for (const std::string& line : lines) all += line + "\n";
    return all;
  }
};

struct Peer {
  Logs logs;
  std::unique_ptr<PeerTransport> transport;
  PeerTransport* operator->() { return transport.get(); }
  TestLoop* loop = nullptr;  // set by OpenPeer
  // A test that failed before ClosePeers still closes its transport before freeing it:
  // a transport destroyed with its connections open would turn the failure into a
  // use-after-free from the loop. One that does not close in time is left (leaked).
  ~Peer() {
    if (transport == nullptr || loop == nullptr) return;
    bool closed = false;
    transport->Close([&closed] { closed = true; });
    if (!loop->RunUntil([&] { return closed; })) (void)transport.release();
  }
};

PeerIdentity IdentityOf(const CertAndKey& ca, const CertAndKey& node) {
  return PeerIdentity{ca.cert_pem, node.cert_pem, node.key_pem};
}

// Opens a transport on an ephemeral port of 127.0.0.1.
void OpenPeer(TestLoop* loop, PeerIdentity identity, Peer* peer,
              std::function<Status(const PeerInfo&)> authorize = nullptr,
              size_t max_message_bytes = 1 << 20, int64_t handshake_timeout_ms = 5000) {
  PeerTransportOptions options;
  options.loop = loop->get();
  options.listen = "127.0.0.1:0";
  options.identity = std::move(identity);
  options.authorize = std::move(authorize);
  options.log = peer->logs.Sink();
  options.max_message_bytes = max_message_bytes;
  options.handshake_timeout_ms = handshake_timeout_ms;
  peer->loop = loop;
  Status s = PeerTransport::Open(std::move(options), &peer->transport);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  REQUIRE(peer->transport->address().rfind("127.0.0.1:", 0) == 0);
}

void ClosePeers(TestLoop* loop, std::vector<Peer*> peers) {
  size_t closed = 0;
  for (Peer* peer : peers) peer->transport->Close([&closed] { ++closed; });
  REQUIRE(loop->RunUntil([&] { return closed == peers.size(); }));
  for (Peer* peer : peers) peer->transport.reset();
}

// Binds `tcp` to an ephemeral port of 127.0.0.1 and returns "127.0.0.1:PORT".
std::string BindLocal(uv_loop_t* loop, uv_tcp_t* tcp) {
  uv_tcp_init(loop, tcp);
  sockaddr_storage addr;
  REQUIRE(ParseAddress("127.0.0.1:0", &addr).ok());
  REQUIRE(uv_tcp_bind(tcp, reinterpret_cast<sockaddr*>(&addr), 0) == 0);
  int len = sizeof(addr);
  uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&addr), &len);
  return FormatAddress(reinterpret_cast<sockaddr*>(&addr));
}

struct CallResult {
  bool done = false;
  Status status;
  std::string response;
};

PeerTransport::CallDone Into(CallResult* result) {
  return [result](Status status, std::string response) {
    CHECK_FALSE(result->done);
    result->done = true;
    result->status = std::move(status);
    result->response = std::move(response);
  };
}

// Calls and waits for the answer.
CallResult CallAndWait(TestLoop* loop, Peer* from, const std::string& address, std::string request,
                       int64_t timeout_ms = 10000) {
  CallResult result;
  (*from)->Call(address, std::move(request), timeout_ms, Into(&result));
  CHECK(loop->RunUntil([&] { return result.done; }));
  return result;
}

struct JoinResult {
  bool done = false;
  Status status;
  std::string response;
  std::string ca_pem;
};

std::function<void(Status, std::string, std::string)> Into(JoinResult* result) {
  return [result](Status status, std::string response, std::string ca_pem) {
    result->done = true;
    result->status = std::move(status);
    result->response = std::move(response);
    result->ca_pem = std::move(ca_pem);
  };
}

TEST_SUITE("net") {
  TEST_CASE("net pki: a CA signs a node's CSR and fingerprints and names read back") {
    CertAndKey ca = MustCa("c1");
    CHECK(ca.cert_pem.find("BEGIN CERTIFICATE") != std::string::npos);
    CHECK(ca.key_pem.find("PRIVATE KEY") != std::string::npos);
    CHECK(CertCommonName(ca.cert_pem).value() == "petrel cluster c1");

    CertAndKey node = MustNode(ca, "node-a");
    CHECK(CertCommonName(node.cert_pem).value() == "node-a");
    Result<std::string> fp = CertFingerprint(node.cert_pem);
    REQUIRE(fp.ok());
    CHECK(fp->size() == 64);
    CHECK(fp->find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(*fp == CertFingerprint(node.cert_pem).value());
    CHECK(*fp != CertFingerprint(ca.cert_pem).value());
    // Two certificates for the same name differ (fresh key, random serial).
    CHECK(*fp != CertFingerprint(MustNode(ca, "node-a").cert_pem).value());
  }

  TEST_CASE("net pki: a CSR for another name or signed by another key is refused") {
    CertAndKey ca = MustCa("c1");
    Result<KeyAndCsr> csr = CreateKeyAndCsr("node-a");
    REQUIRE(csr.ok());
    Result<std::string> wrong_name = SignCsr(ca, csr->csr_pem, "node-b", kNow);
    CHECK(wrong_name.status().IsInvalidArgument());
    CHECK(wrong_name.status().message().find("node-b") != std::string::npos);

    // Signed with its own key the rebuilt request passes: the forgery below fails for
    // its signature alone.
    CHECK(SignCsr(ca, SignedByOtherKey(csr->csr_pem, csr->key_pem), "node-a", kNow).ok());
    Result<KeyAndCsr> other = CreateKeyAndCsr("node-a");
    REQUIRE(other.ok());
    std::string forged = SignedByOtherKey(csr->csr_pem, other->key_pem);
    Result<std::string> bad_sig = SignCsr(ca, forged, "node-a", kNow);
    CHECK(bad_sig.status().IsInvalidArgument());
    CHECK(bad_sig.status().message().find("csr signature") != std::string::npos);

    CHECK(CreateKeyAndCsr("bad,name").status().IsInvalidArgument());
    CHECK(CertFingerprint("not a certificate").status().IsInvalidArgument());
    // A CA key that does not belong to the CA certificate cannot sign.
    CertAndKey mixed{ca.cert_pem, MustCa("c2").key_pem};
    CHECK(SignCsr(mixed, csr->csr_pem, "node-a", kNow).status().IsInvalidArgument());
  }

  TEST_CASE("net wire: preambles and frames round-trip and bad ones are refused with a reason") {
    Preamble raft{Channel::kRaft, 7, "10.0.0.5:7400"};
    std::string bytes = EncodePreamble(raft);
    Preamble back;
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      Result<size_t> part = DecodePreamble(std::string_view(bytes).substr(0, cut), &back);
      REQUIRE(part.ok());
      CHECK(*part == 0);
    }
    REQUIRE(DecodePreamble(bytes + "rest", &back).value() == bytes.size());
    CHECK(back.channel == Channel::kRaft);
    CHECK(back.raft_id == 7);
    CHECK(back.raft_address == "10.0.0.5:7400");
    CHECK(DecodePreamble(EncodePreamble(Preamble{Channel::kJoin, 0, ""}), &back).value() == 6);
    CHECK_FALSE(DecodePreamble("GET / HTTP/1.1", &back).ok());
    CHECK_FALSE(DecodePreamble(std::string("PTRL\x01\x09", 6), &back).ok());
    CHECK_FALSE(DecodePreamble(std::string("PTRL\x02\x01", 6), &back).ok());

    FrameReader reader(10);
    std::string stream;
    AppendFrame(FrameKind::kRequest, 1, "0123456789", &stream);
    AppendFrame(FrameKind::kResponse, 2, "", &stream);
    Frame frame;
    for (char c : stream) {  // byte by byte
      reader.Append(std::string_view(&c, 1));
      Result<bool> got = reader.Next(&frame);
      REQUIRE(got.ok());
      if (*got) CHECK((frame.id == 1 ? frame.body == "0123456789" : frame.body.empty()));
    }
    CHECK(reader.buffered() == 0);
    std::string big;
    AppendFrame(FrameKind::kRequest, 3, "01234567890", &big);
    reader.Append(std::string_view(big).substr(0, kFrameHeaderBytes));  // the header is enough
    Result<bool> over = reader.Next(&frame);
    REQUIRE_FALSE(over.ok());
    CHECK(over.status().message() == "message of 11 bytes is over the limit of 10");

    sockaddr_storage addr;
    CHECK(ParseAddress("127.0.0.1:7400", &addr).ok());
    CHECK(FormatAddress(reinterpret_cast<sockaddr*>(&addr)) == "127.0.0.1:7400");
    CHECK(ParseAddress("[::1]:7400", &addr).ok());
    CHECK(FormatAddress(reinterpret_cast<sockaddr*>(&addr)) == "[::1]:7400");
    CHECK_FALSE(ParseAddress("node-a:7400", &addr).ok());
    CHECK_FALSE(ParseAddress("127.0.0.1", &addr).ok());
    CHECK_FALSE(ParseAddress("127.0.0.1:70000", &addr).ok());
  }

  TEST_CASE(
      "net transport: requests and replies between members with several in flight and a size "
      "bound") {
    TestLoop loop;
    CertAndKey ca = MustCa("c1");
    CertAndKey a_cert = MustNode(ca, "node-a");
    Peer a, b;
    OpenPeer(&loop, IdentityOf(ca, a_cert), &a);
    int b_connections = 0;
    constexpr size_t kLimit = 64 * 1024;
    OpenPeer(
        &loop, IdentityOf(ca, MustNode(ca, "node-b")), &b,
        [&](const PeerInfo& peer) {
          ++b_connections;
          CHECK(peer.name == "node-a");
          CHECK(peer.fingerprint == CertFingerprint(a_cert.cert_pem).value());
          CHECK(peer.raft_id == 0);
          return Status::OK();
        },
        kLimit);
    // B answers the first three only once all three are in, last first: the replies
    // find their calls by id.
    std::vector<std::pair<std::string, PeerTransport::Reply>> held;
    b->OnRequest([&](const PeerInfo& from, std::string request, PeerTransport::Reply reply) {
      CHECK(from.name == "node-a");
      if (request.size() > 100) {
        reply(std::to_string(request.size()));
        return;
      }
      held.emplace_back(request, std::move(reply));
      if (held.size() < 3) return;
      for (auto it = held.rbegin(); it != held.rend(); ++it) it->second("re:" + it->first);
      held.clear();
    });

    CallResult r[3];
    for (int i = 0; i < 3; ++i) a->Call(b->address(), "q" + std::to_string(i), 10000, Into(&r[i]));
    REQUIRE(loop.RunUntil([&] { return r[0].done && r[1].done && r[2].done; }));
    for (int i = 0; i < 3; ++i) {
      CHECK_MESSAGE(r[i].status.ok(), r[i].status.ToString());
      CHECK(r[i].response == "re:q" + std::to_string(i));
    }
    CHECK(b_connections == 1);  // one connection, reused

    CallResult at_limit = CallAndWait(&loop, &a, b->address(), std::string(kLimit, 'x'));
    CHECK_MESSAGE(at_limit.status.ok(), at_limit.status.ToString());
    CHECK(at_limit.response == std::to_string(kLimit));
    CHECK(b_connections == 1);

    CallResult over = CallAndWait(&loop, &a, b->address(), std::string(kLimit + 1, 'x'));
    CHECK(over.status.code() == Status::Code::kUnavailable);
    CHECK_MESSAGE(b.logs.Has("refused request connection: message of 65537 bytes is over the "
                             "limit of 65536"),
                  b.logs.All());

    // The broken connection is replaced by the next call.
    CallResult again = CallAndWait(&loop, &a, b->address(), std::string(200, 'y'));
    CHECK_MESSAGE(again.status.ok(), again.status.ToString());
    CHECK(again.response == "200");
    CHECK(b_connections == 2);

    // Over the caller's own limit: refused before anything is sent.
    CallResult too_big = CallAndWait(&loop, &a, b->address(), std::string((1 << 20) + 1, 'z'));
    CHECK(too_big.status.IsInvalidArgument());

    ClosePeers(&loop, {&a, &b});
  }

  TEST_CASE("net transport: a peer whose certificate another CA signed is refused both ways") {
    TestLoop loop;
    CertAndKey ca = MustCa("c1");
    CertAndKey other_ca = MustCa("c2");
    CertAndKey x_cert = MustNode(other_ca, "node-x");
    Peer b, x;
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-b")), &b);
    b->OnRequest([](const PeerInfo&, std::string, PeerTransport::Reply reply) { reply("hi"); });
    // X trusts both CAs, so it goes through with B's certificate: what is tested is
    // B refusing X's.
    OpenPeer(&loop, PeerIdentity{ca.cert_pem + other_ca.cert_pem, x_cert.cert_pem, x_cert.key_pem},
             &x);
    x->OnRequest([](const PeerInfo&, std::string, PeerTransport::Reply reply) { reply("hi"); });

    CallResult as_client = CallAndWait(&loop, &x, b->address(), "hello");
    CHECK(as_client.status.code() == Status::Code::kUnavailable);
    CHECK_MESSAGE(b.logs.Has("refused connection: its certificate:"), b.logs.All());

    CallResult as_server = CallAndWait(&loop, &b, x->address(), "hello");
    CHECK(as_server.status.code() == Status::Code::kUnavailable);
    CHECK_MESSAGE(b.logs.Has("peer " + x->address() +
                             ": refused request connection: its "
                             "certificate:"),
                  b.logs.All());

    // An identity whose certificate its own CA did not sign does not open.
    std::unique_ptr<PeerTransport> mixed;
    PeerTransportOptions options;
    options.loop = loop.get();
    options.listen = "127.0.0.1:0";
    options.identity = IdentityOf(ca, x_cert);
    Status s = PeerTransport::Open(std::move(options), &mixed);
    CHECK(s.IsInvalidArgument());
    CHECK(s.message().rfind("identity: certificate not signed by the CA", 0) == 0);

    ClosePeers(&loop, {&b, &x});
  }

  TEST_CASE("net transport: authorize refusing a removed node closes the connection and says why") {
    TestLoop loop;
    CertAndKey ca = MustCa("c1");
    auto refuse_removed = [](const PeerInfo& peer) {
      return peer.name == "node-c" ? Status::PermissionDenied("removed from the cluster")
                                   : Status::OK();
    };
    Peer b, c;
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-b")), &b, refuse_removed);
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-c")), &c, [](const PeerInfo& peer) {
      return peer.name == "node-b" ? Status::PermissionDenied("not my leader") : Status::OK();
    });
    int handled = 0;
    auto handler = [&](const PeerInfo&, std::string, PeerTransport::Reply reply) {
      ++handled;
      reply("hi");
    };
    b->OnRequest(handler);
    c->OnRequest(handler);

    CallResult removed = CallAndWait(&loop, &c, b->address(), "hello");
    CHECK(removed.status.code() == Status::Code::kUnavailable);
    // The client refused first here: C's authorize sees B's certificate before B sees
    // C's preamble.
    CHECK_MESSAGE(c.logs.Has("refused request connection: node node-b", "not my leader"),
                  c.logs.All());

    CallResult to_removed = CallAndWait(&loop, &b, c->address(), "hello");
    CHECK(to_removed.status.code() == Status::Code::kUnavailable);
    CHECK_MESSAGE(c.logs.Has("refused request connection: node node-b", "not my leader"),
                  c.logs.All());
    CHECK(handled == 0);
    ClosePeers(&loop, {&b, &c});

    // The server's refusal alone: C accepts B, B refuses C.
    Peer b2, c2;
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-b")), &b2, refuse_removed);
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-c")), &c2);
    b2->OnRequest(handler);
    CallResult refused = CallAndWait(&loop, &c2, b2->address(), "hello");
    CHECK(refused.status.code() == Status::Code::kUnavailable);
    CHECK_MESSAGE(
        b2.logs.Has("refused request connection: node node-c", "removed from the cluster"),
        b2.logs.All());
    CHECK(handled == 0);
    ClosePeers(&loop, {&b2, &c2});
  }

  TEST_CASE(
      "net transport: a newcomer joins with the CA hash but not with a wrong hash or a request") {
    TestLoop loop;
    CertAndKey ca = MustCa("c1");
    Peer b;
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-b")), &b);
    int requests = 0;
    b->OnRequest([&](const PeerInfo&, std::string, PeerTransport::Reply reply) {
      ++requests;
      reply("no");
    });
    b->OnJoin([](const std::string& remote, std::string request, PeerTransport::Reply reply) {
      CHECK(remote.rfind("127.0.0.1:", 0) == 0);
      reply("welcome " + request);
    });
    std::string ca_hash = CertFingerprint(ca.cert_pem).value();

    Logs logs;
    JoinResult joined;
    JoinCall(loop.get(), b->address(), ca_hash, "node-n", 10000, Into(&joined), logs.Sink());
    REQUIRE(loop.RunUntil([&] { return joined.done; }));
    CHECK_MESSAGE(joined.status.ok(), joined.status.ToString());
    CHECK(joined.response == "welcome node-n");
    CHECK(CertFingerprint(joined.ca_pem).value() == ca_hash);

    JoinResult wrong;
    JoinCall(loop.get(), b->address(), CertFingerprint(MustCa("c2").cert_pem).value(), "node-n",
             10000, Into(&wrong), logs.Sink());
    REQUIRE(loop.RunUntil([&] { return wrong.done; }));
    CHECK(wrong.status.code() == Status::Code::kPermissionDenied);
    CHECK_MESSAGE(wrong.status.message().find("is not the token's") != std::string::npos,
                  wrong.status.ToString());
    CHECK(wrong.ca_pem.empty());
    CHECK(logs.Has("refused join connection: its CA sha256:"));

    // Without a certificate only join requests go through.
    JoinResult ordinary;
    CertlessCall(loop.get(), b->address(), ca_hash, Channel::kJoin, FrameKind::kRequest, "x", 10000,
                 Into(&ordinary), logs.Sink());
    REQUIRE(loop.RunUntil([&] { return ordinary.done; }));
    CHECK(ordinary.status.code() == Status::Code::kUnavailable);
    CHECK_MESSAGE(b.logs.Has("refused join connection: an ordinary request on a join connection"),
                  b.logs.All());

    JoinResult request_channel;
    CertlessCall(loop.get(), b->address(), ca_hash, Channel::kRequest, FrameKind::kRequest, "x",
                 10000, Into(&request_channel), logs.Sink());
    REQUIRE(loop.RunUntil([&] { return request_channel.done; }));
    CHECK_FALSE(request_channel.status.ok());
    CHECK_MESSAGE(
        b.logs.Has("refused request connection: a request channel without a client certificate"),
        b.logs.All());
    CHECK(requests == 0);
    ClosePeers(&loop, {&b});
  }

  TEST_CASE("net transport: a silent client is dropped after the handshake timeout") {
    TestLoop loop;
    CertAndKey ca = MustCa("c1");
    Peer b;
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-b")), &b, nullptr, 1 << 20, 200);
    sockaddr_storage addr;
    REQUIRE(ParseAddress(b->address(), &addr).ok());

    struct Silent {
      uv_tcp_t tcp;
      uv_connect_t connect;
      bool connected = false;
      bool dropped = false;
    } silent;
    uv_tcp_init(loop.get(), &silent.tcp);
    silent.tcp.data = &silent;
    silent.connect.data = &silent;
    uv_update_time(loop.get());
    uint64_t start = uv_now(loop.get());
    REQUIRE(uv_tcp_connect(&silent.connect, &silent.tcp, reinterpret_cast<sockaddr*>(&addr),
                           [](uv_connect_t* req, int status) {
                             auto* s = static_cast<Silent*>(req->data);
                             REQUIRE(status == 0);
                             s->connected = true;
                             uv_read_start(
                                 reinterpret_cast<uv_stream_t*>(&s->tcp),
                                 [](uv_handle_t*, size_t, uv_buf_t* buf) {
                                   static char mem[4096];
                                   *buf = uv_buf_init(mem, sizeof(mem));
                                 },
                                 [](uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
                                   if (nread < 0)
                                     static_cast<Silent*>(stream->data)->dropped = true;
                                 });
                           }) == 0);
    REQUIRE(loop.RunUntil([&] { return silent.dropped; }));
    uv_update_time(loop.get());
    CHECK(uv_now(loop.get()) - start >= 190);
    CHECK_MESSAGE(b.logs.Has("refused connection: no handshake and preamble within 200 ms"),
                  b.logs.All());
    uv_close(reinterpret_cast<uv_handle_t*>(&silent.tcp), nullptr);
    ClosePeers(&loop, {&b});
  }

  TEST_CASE("net transport: a closed port fails Unavailable and no reply fails DeadlineExceeded") {
    TestLoop loop;
    CertAndKey ca = MustCa("c1");
    Peer a, b;
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-a")), &a);
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-b")), &b);
    std::vector<PeerTransport::Reply> never;
    b->OnRequest([&](const PeerInfo&, std::string, PeerTransport::Reply reply) {
      never.push_back(std::move(reply));
    });

    // A bound socket that does not listen: connections to its port are refused.
    uv_tcp_t closed;
    std::string closed_address = BindLocal(loop.get(), &closed);
    CallResult refused = CallAndWait(&loop, &a, closed_address, "hello");
    CHECK(refused.status.code() == Status::Code::kUnavailable);
    CHECK(refused.status.message() == "peer " + closed_address + ": connection refused");
    uv_close(reinterpret_cast<uv_handle_t*>(&closed), nullptr);

    CallResult late = CallAndWait(&loop, &a, b->address(), "hello", 200);
    CHECK(late.status.code() == Status::Code::kDeadlineExceeded);
    CHECK(late.status.message() == "peer " + b->address() + ": no reply within 200 ms");
    // On a loaded machine the request may reach b only after a's deadline: it was sent.
    REQUIRE(loop.RunUntil([&] { return never.size() == 1; }));
    // A reply after the deadline is dropped; after Close it does nothing at all.
    never[0]("too late");
    CallResult next = CallAndWait(&loop, &a, b->address(), "again", 200);
    CHECK(next.status.code() == Status::Code::kDeadlineExceeded);
    ClosePeers(&loop, {&a, &b});
    for (auto& reply : never) reply("after close");
  }

  TEST_CASE("net transport: raft's connect and accept give streams carrying bytes both ways") {
    TestLoop loop;
    CertAndKey ca = MustCa("c1");
    Peer a, b;
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-a")), &a);
    OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-b")), &b, [](const PeerInfo& peer) {
      // A raft connection says which raft server it is.
      return peer.raft_id == 0 || peer.raft_id == 1 ? Status::OK()
                                                    : Status::PermissionDenied("unknown id");
    });
    raft_uv_transport* ta = a->raft();
    raft_uv_transport* tb = b->raft();
    REQUIRE(ta->init(ta, 1, a->address().c_str()) == 0);
    REQUIRE(tb->init(tb, 2, b->address().c_str()) == 0);

    struct Accepted {
      raft_id id = 0;
      std::string address;
      uv_stream_t* stream = nullptr;
    } accepted;
    tb->data = &accepted;
    REQUIRE(tb->listen(
                tb, [](raft_uv_transport* t, raft_id id, const char* address, uv_stream_t* stream) {
                  auto* got = static_cast<Accepted*>(t->data);
                  got->id = id;
                  got->address = address;
                  got->stream = stream;
                }) == 0);
    struct Connected {
      bool done = false;
      int status = -1;
      uv_stream_t* stream = nullptr;
    } connected;
    auto on_connect = [](raft_uv_connect* r, uv_stream_t* stream, int status) {
      auto* c = static_cast<Connected*>(r->data);
      c->done = true;
      c->status = status;
      c->stream = stream;
    };
    raft_uv_connect req;
    req.data = &connected;
    REQUIRE(ta->connect(ta, &req, 2, b->address().c_str(), on_connect) == 0);
    REQUIRE(loop.RunUntil([&] { return connected.done && accepted.stream != nullptr; }));
    REQUIRE(connected.status == 0);
    CHECK(accepted.id == 1);
    CHECK(accepted.address == a->address());

    // More than every buffer on the way holds: while B's raft reads nothing, A's write
    // cannot complete (nothing buffers without bound); once it reads, every byte
    // arrives in order.
    constexpr size_t kBytes = 24 << 20;
    std::string sent(kBytes, '\0');
    for (size_t i = 0; i < kBytes; ++i) sent[i] = static_cast<char>((i * 7 + i / 4096) & 0xff);
    struct Write {
      uv_write_t req;
      bool done = false;
      int status = -1;
    } write;
    write.req.data = &write;
    auto on_written = [](uv_write_t* w, int status) {
      auto* self = static_cast<Write*>(w->data);
      self->done = true;
      self->status = status;
    };
    uv_buf_t buf = uv_buf_init(sent.data(), static_cast<unsigned>(sent.size()));
    REQUIRE(uv_write(&write.req, connected.stream, &buf, 1, on_written) == 0);
    // Long enough for the whole write to pass through memory if anything buffered it
    // without bound (a fraction of that even in the sanitizer build).
    loop.RunFor(1500);
    CHECK_FALSE(write.done);

    struct Reader {
      std::string got;
      bool eof = false;
    } reader;
    auto alloc = [](uv_handle_t*, size_t size, uv_buf_t* b) {
      *b = uv_buf_init(new char[size], static_cast<unsigned>(size));
    };
    auto on_read = [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* b) {
      auto* r = static_cast<Reader*>(stream->data);
      if (nread > 0) r->got.append(b->base, static_cast<size_t>(nread));
      if (nread < 0) r->eof = true;
      delete[] b->base;
    };
    accepted.stream->data = &reader;
    uv_read_start(accepted.stream, alloc, on_read);
    REQUIRE(loop.RunUntil([&] { return write.done && reader.got.size() >= kBytes; }, 60000));
    CHECK(write.status == 0);
    CHECK(reader.got.size() == kBytes);
    CHECK(reader.got == sent);

    // And back.
    Reader back;
    connected.stream->data = &back;
    uv_read_start(connected.stream, alloc, on_read);
    write.done = false;
    std::string pong = "pong";
    buf = uv_buf_init(pong.data(), 4);
    REQUIRE(uv_write(&write.req, accepted.stream, &buf, 1, on_written) == 0);
    REQUIRE(loop.RunUntil([&] { return back.got == "pong"; }));

    // Raft closing its end closes the other raft's end.
    uv_close(reinterpret_cast<uv_handle_t*>(connected.stream),
             [](uv_handle_t* h) { raft_free(h); });
    REQUIRE(loop.RunUntil([&] { return reader.eof; }));
    uv_close(reinterpret_cast<uv_handle_t*>(accepted.stream), [](uv_handle_t* h) { raft_free(h); });

    // A connect that cannot finish (a server that never speaks TLS) is cancelled by
    // close, which completes only after.
    uv_tcp_t mute;
    std::string mute_address = BindLocal(loop.get(), &mute);
    REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(&mute), 8, [](uv_stream_t*, int) {}) == 0);
    Connected pending;
    req.data = &pending;
    REQUIRE(ta->connect(ta, &req, 3, mute_address.c_str(), on_connect) == 0);
    loop.RunFor(50);
    CHECK_FALSE(pending.done);
    struct Closed {
      bool done = false;
      bool connect_done_first = false;
      Connected* pending;
    } closed_a{false, false, &pending}, closed_b{false, false, &pending};
    ta->data = &closed_a;
    tb->data = &closed_b;
    auto on_closed = [](raft_uv_transport* t) {
      auto* c = static_cast<Closed*>(t->data);
      c->done = true;
      c->connect_done_first = c->pending->done;
    };
    ta->close(ta, on_closed);
    tb->close(tb, on_closed);
    CHECK_FALSE(closed_b.done);  // never from inside close, even with nothing pending
    REQUIRE(loop.RunUntil([&] { return closed_a.done && closed_b.done; }));
    CHECK(pending.done);
    CHECK(pending.status == RAFT_CANCELED);
    CHECK(pending.stream == nullptr);
    CHECK(closed_a.connect_done_first);
    uv_close(reinterpret_cast<uv_handle_t*>(&mute), nullptr);
    ClosePeers(&loop, {&a, &b});
  }

  TEST_CASE("net transport: three raft servers elect a leader and commit an entry over it") {
    TestLoop loop;
    CertAndKey ca = MustCa("c1");
    struct Server {
      testing::TempDir dir;
      Peer peer;
      raft_io io{};
      raft_fsm fsm{};
      struct raft raft {};
      int applied = 0;
      bool closed = false;
    };
    Server servers[3];
    for (int i = 0; i < 3; ++i) {
      OpenPeer(&loop, IdentityOf(ca, MustNode(ca, "node-" + std::to_string(i + 1))),
               &servers[i].peer);
    }
    raft_configuration conf;
    raft_configuration_init(&conf);
    for (int i = 0; i < 3; ++i) {
      REQUIRE(raft_configuration_add(&conf, i + 1, servers[i].peer->address().c_str(),
                                     RAFT_VOTER) == 0);
    }
    for (int i = 0; i < 3; ++i) {
      Server& s = servers[i];
      REQUIRE(raft_uv_init(&s.io, loop.get(), s.dir.path().c_str(), s.peer->raft()) == 0);
      raft_uv_set_segment_size(&s.io, 8192);
      raft_uv_set_connect_retry_delay(&s.io, 50);
      s.fsm.version = 1;
      s.fsm.data = &s.applied;
      s.fsm.apply = [](raft_fsm* fsm, const raft_buffer*, void** result) {
        ++*static_cast<int*>(fsm->data);
        *result = nullptr;
        return 0;
      };
      s.fsm.snapshot = [](raft_fsm*, raft_buffer**, unsigned*) { return RAFT_NOTFOUND; };
      s.fsm.restore = [](raft_fsm*, raft_buffer*) { return RAFT_NOTFOUND; };
      REQUIRE(raft_init(&s.raft, &s.io, &s.fsm, i + 1, s.peer->address().c_str()) == 0);
      s.raft.data = &s.closed;
      REQUIRE(raft_bootstrap(&s.raft, &conf) == 0);
      raft_set_election_timeout(&s.raft, 300);
      raft_set_heartbeat_timeout(&s.raft, 50);
      raft_set_pre_vote(&s.raft, true);
      REQUIRE(raft_start(&s.raft) == 0);
    }
    raft_configuration_close(&conf);

    struct raft* leader = nullptr;
    REQUIRE(loop.RunUntil([&] {
      for (Server& s : servers) {
        if (raft_state(&s.raft) == RAFT_LEADER) leader = &s.raft;
      }
      return leader != nullptr;
    }));

    struct Applied {
      bool done = false;
      int status = -1;
    } applied;
    struct raft_apply apply;
    apply.data = &applied;
    raft_buffer entry;
    entry.len = 8;
    entry.base = raft_malloc(entry.len);
    std::memcpy(entry.base, "petrel!!", 8);
    REQUIRE(raft_apply(leader, &apply, &entry, 1, [](struct raft_apply* req, int status, void*) {
              auto* a = static_cast<Applied*>(req->data);
              a->done = true;
              a->status = status;
            }) == 0);
    REQUIRE(loop.RunUntil([&] { return applied.done; }));
    CHECK(applied.status == 0);
    // The followers learn the commit with the next heartbeat.
    REQUIRE(loop.RunUntil([&] {
      return servers[0].applied == 1 && servers[1].applied == 1 && servers[2].applied == 1;
    }));

    for (Server& s : servers) {
      raft_close(&s.raft, [](struct raft* r) { *static_cast<bool*>(r->data) = true; });
    }
    REQUIRE(
        loop.RunUntil([&] { return servers[0].closed && servers[1].closed && servers[2].closed; }));
    for (Server& s : servers) raft_uv_close(&s.io);
    ClosePeers(&loop, {&servers[0].peer, &servers[1].peer, &servers[2].peer});
  }
}

}  // namespace
}  // namespace petrel::internal
