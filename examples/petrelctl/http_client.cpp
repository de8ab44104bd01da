#include "http_client.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <nlohmann/json.hpp>
#include <utility>

namespace petrelctl {
namespace {

// Answers bigger than this are refused rather than held in memory (the event log
// at its default capacity is about 2 MiB).
constexpr size_t kMaxBody = 64 << 20;

struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

// A 4xx/5xx: the server's {"error"} message as it wrote it, else the status line.
petrel::Status HttpError(long status, const std::string& method, const std::string& target,
                         const std::string& body) {
  std::string msg;
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  auto error = j.is_object() ? j.find("error") : j.end();
  if (j.is_object() && error != j.end() && error->is_string() && !error->empty()) {
    msg = error->get<std::string>();
  } else {
    msg = "petreld answered HTTP " + std::to_string(status) + " to " + method + " " + target;
    std::string first_line = body.substr(0, std::min(body.find('\n'), size_t{200}));
    if (!first_line.empty()) msg += ": " + first_line;
  }
  if (status == 404) return petrel::Status::NotFound(msg);
  if (status >= 400 && status < 500) return petrel::Status::InvalidArgument(msg);
  return petrel::Status::Unavailable(msg);
}

}  // namespace

struct Client::Transfer {
  CURL* curl = nullptr;
  const Sink* sink = nullptr;  // null: keep the body in `body`
  std::string body;            // the whole body, or an error body while streaming
  long status = 0;
  petrel::Status sink_error;
  bool too_large = false;
};

std::string UrlEscape(std::string_view text) {
  if (text.empty()) return "";  // a length of 0 would have libcurl call strlen()
  // The handle is unused since libcurl 7.82.
  char* escaped = curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size()));
  if (escaped == nullptr) throw std::bad_alloc();
  std::string out(escaped);
  curl_free(escaped);
  return out;
}

CurlGlobal::CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
CurlGlobal::~CurlGlobal() { curl_global_cleanup(); }

Client::Client(std::string socket_path)
    : socket_path_(std::move(socket_path)), curl_(curl_easy_init()) {}

Client::~Client() = default;

size_t Client::OnData(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * count;
  if (t->status == 0) curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &t->status);
  if (t->sink != nullptr && t->status >= 200 && t->status < 300) {
    t->sink_error = (*t->sink)(std::string_view(data, len));
    return t->sink_error.ok() ? len : 0;
  }
  if (t->body.size() + len > kMaxBody) {
    t->too_large = true;
    return 0;
  }
  t->body.append(data, len);
  return len;
}

petrel::Status Client::Perform(const std::string& method, const std::string& target,
                               const std::string& body, Transfer* t) {
  CURL* curl = curl_.get();
  if (curl == nullptr) return petrel::Status::Internal("curl_easy_init failed");
  curl_easy_reset(curl);
  t->curl = curl;
  char errbuf[CURL_ERROR_SIZE] = "";
  std::string url = "http://petrel" + target;
  std::string agent = "petrelctl/" PETRELCTL_VERSION;
  curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket_path_.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, agent.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  // A plain call has a minute; a stream goes on for as long as the server sends.
  if (t->sink == nullptr) curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 60000L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Client::OnData);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, t);

  // No "Expect: 100-continue" round trip before a big body.
  std::unique_ptr<curl_slist, SlistDeleter> headers(curl_slist_append(nullptr, "Expect:"));
  if (method != "GET") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (!body.empty()) {
    headers.reset(curl_slist_append(headers.release(), "Content-Type: application/json"));
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  } else if (method == "POST" || method == "PUT") {
    // An empty body, said so: petreld answers 411 to a POST without a length.
    headers.reset(curl_slist_append(headers.release(), "Content-Length: 0"));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());

  CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &t->status);
  if (rc == CURLE_WRITE_ERROR && !t->sink_error.ok()) return t->sink_error;
  if (rc == CURLE_WRITE_ERROR && t->too_large) {
    return petrel::Status::Unavailable("the answer to " + method + " " + target +
                                       " is larger than 64 MiB");
  }
  if (rc == CURLE_COULDNT_CONNECT) {
    long err = 0;
    curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &err);
    std::string why = err != 0 ? std::strerror(static_cast<int>(err)) : errbuf;
    std::string hint = err == EACCES
                           ? "(the socket needs read and write permission: run as root or as "
                             "a member of its group)"
                           : "(is petreld running? set --socket or PETREL_SOCKET)";
    return petrel::Status::Unavailable("cannot connect to " + socket_path_ + ": " + why + " " +
                                       hint);
  }
  if ((rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR) && t->status >= 200 && t->status < 300) {
    return petrel::Status::Unavailable("petreld closed the connection in the middle of " + method +
                                       " " + target + " (did it stop?)");
  }
  if (rc != CURLE_OK) {
    return petrel::Status::Unavailable(socket_path_ + ": " + method + " " + target + ": " +
                                       (errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc)));
  }
  if (t->status < 200 || t->status >= 300) return HttpError(t->status, method, target, t->body);
  return petrel::Status::OK();
}

petrel::Result<std::string> Client::Call(const std::string& method, const std::string& target,
                                         const std::string& body) {
  Transfer t;
  PETREL_RETURN_IF_ERROR(Perform(method, target, body, &t));
  return std::move(t.body);
}

petrel::Status Client::Stream(const std::string& target, const Sink& sink) {
  return Stream("GET", target, "", sink);
}

petrel::Status Client::Stream(const std::string& method, const std::string& target,
                              const std::string& body, const Sink& sink) {
  Transfer t;
  t.sink = &sink;
  return Perform(method, target, body, &t);
}

}  // namespace petrelctl
