// NetChecker: a probe's tcpSocket and httpGet checks, on a libuv loop, no thread per
// check.
//
// A check gets a socket that the caller made in the container's network namespace
// (Port::SocketInNetns) and connects it to 127.0.0.1:port there: a container with a
// network of its own is reached on its loopback, one on the host's network on the
// host's. tcpSocket succeeds once connected. httpGet sends one GET (Host
// 127.0.0.1:port, Connection: close, the probe's headers) and reads no more than the
// status line: 200-399 succeeds (a redirect is not followed), anything else fails with
// the status ("HTTP 503"). Whatever does not finish within the probe's timeout fails
// ("timed out after 1s").
//
// Thread-safety: the loop's thread only.
#ifndef PETREL_LIB_PROBE_NET_CHECK_H_
#define PETREL_LIB_PROBE_NET_CHECK_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "lib/probe/prober.h"
#include "petrel/spec.h"
#include "petrel/status.h"

struct uv_loop_s;

namespace petrel::internal {

class NetChecker {
 public:
  using Done = std::function<void(const ProbeResult&)>;

  NetChecker() = default;
  ~NetChecker();
  NetChecker(const NetChecker&) = delete;
  NetChecker& operator=(const NetChecker&) = delete;

  // Starts a check of `probe` (kTcpSocket or kHttpGet) from `fd`, a non-blocking TCP
  // socket that the check owns from now on. `done` runs once, on the loop's thread,
  // after Start has returned. Every Start until CancelAll is given the same loop.
  void Start(uv_loop_s* loop, int fd, const ProbeSpec& probe, Done done);
  // Ends every check in flight without calling its `done`; their handles, and the one
  // that watched their sockets, close on the loop, which must run once more to free them.
  void CancelAll();
  size_t in_flight() const { return checks_.size(); }

  struct Check;  // one check in flight (net_check.cpp)

 private:
  friend struct Check;
  struct Epoll;

  // Watches the checks' sockets on `loop`: one epoll set, itself one handle of the loop,
  // so that a check costs no system calls of libuv's own (a handle per socket cost four
  // more: its epoll_ctl calls, the ioctl and the getsockopt).
  Status Watch(uv_loop_s* loop);
  void OnReady();
  void Forget(uint64_t id);

  std::map<uint64_t, Check*> checks_;  // by id, the sockets' epoll data
  uint64_t last_id_ = 0;
  Epoll* epoll_ = nullptr;  // made by the first Start, closed by CancelAll
};

// The outcome of the status line of an HTTP response ("HTTP/1.1 200 OK"), as an
// httpGet probe judges it. Exposed for tests.
ProbeResult JudgeStatusLine(const std::string& line);

}  // namespace petrel::internal

#endif  // PETREL_LIB_PROBE_NET_CHECK_H_
