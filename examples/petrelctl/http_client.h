// Client: HTTP/1.1 to petreld over its Unix socket (examples/petreld/API.md), with
// libcurl. One easy handle per Client, so consecutive calls reuse the connection.
//
// Every failure comes back as a Status whose message is one line fit to print after
// "petrelctl: ": the server's own {"error"} text for a 4xx/5xx, else what failed and
// where ("cannot connect to /run/petrel/petrel.sock: No such file or directory
// (is petreld running? ...)").
//
// Thread-safety: none; one Client per thread.
#ifndef PETREL_EXAMPLES_PETRELCTL_HTTP_CLIENT_H_
#define PETREL_EXAMPLES_PETRELCTL_HTTP_CLIENT_H_

#include <curl/curl.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "petrel/status.h"

namespace petrelctl {

// `text` with all but RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~)
// %-escaped, by libcurl: for a name put into a request's path or query.
std::string UrlEscape(std::string_view text);

// curl_global_init for the life of the object; REQUIRES: made once, in main, before
// any other thread exists.
class CurlGlobal {
 public:
  CurlGlobal();
  ~CurlGlobal();
  CurlGlobal(const CurlGlobal&) = delete;
  CurlGlobal& operator=(const CurlGlobal&) = delete;
};

class Client {
 public:
  explicit Client(std::string socket_path);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& socket_path() const { return socket_path_; }

  // Sends one request ("GET", "PUT", "DELETE"; `target` is the path and query, as
  // "/v1/workloads") and returns the body of a 2xx answer. A `body` is sent as JSON.
  petrel::Result<std::string> Call(const std::string& method, const std::string& target,
                                   const std::string& body = "");

  // GETs `target` and hands each piece of a 2xx body to `sink` as it arrives, until
  // the server ends the answer (OK) or `sink` fails (its Status is returned).
  using Sink = std::function<petrel::Status(std::string_view)>;
  petrel::Status Stream(const std::string& target, const Sink& sink);
  // The same for a `method` request with a JSON `body` (POST /v1/images/pull).
  petrel::Status Stream(const std::string& method, const std::string& target,
                        const std::string& body, const Sink& sink);

 private:
  struct Transfer;
  static size_t OnData(char* data, size_t size, size_t count, void* transfer);
  petrel::Status Perform(const std::string& method, const std::string& target,
                         const std::string& body, Transfer* transfer);

  struct CurlDeleter {
    void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
  };
  std::string socket_path_;
  std::unique_ptr<CURL, CurlDeleter> curl_;
};

}  // namespace petrelctl

#endif  // PETREL_EXAMPLES_PETRELCTL_HTTP_CLIENT_H_
