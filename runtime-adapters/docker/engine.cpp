#include "runtime-adapters/docker/engine.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>
#include <utility>

#include "lib/image/curl_lib.h"
#include "lib/util/json.h"
#include "lib/util/strings.h"

namespace petrel::internal {
namespace {

// How much of dockerd's message goes into a Status: one line, still readable.
constexpr size_t kMaxShownMessage = 512;
// A log chunk's head (DockerLogReader).
constexpr size_t kLogHeadBytes = 8;

// "<major>.<minor>" as two numbers; false for anything else.
bool ParseApiVersion(std::string_view text, int* major, int* minor) {
  const size_t dot = text.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == text.size()) return false;
  int parts[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    std::string_view digits = i == 0 ? text.substr(0, dot) : text.substr(dot + 1);
    if (digits.size() > 4) return false;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      parts[i] = parts[i] * 10 + (c - '0');
    }
  }
  *major = parts[0];
  *minor = parts[1];
  return true;
}

// Orders two parsed versions: <0, 0, >0.
int CompareApi(int major_a, int minor_a, int major_b, int minor_b) {
  return major_a != major_b ? major_a - major_b : minor_a - minor_b;
}

// Parses exactly `n` decimal digits of `text` at `*at`.
bool Digits(std::string_view text, size_t* at, size_t n, int* value) {
  if (*at + n > text.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    const char c = text[*at + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *at += n;
  *value = v;
  return true;
}

bool Expect(std::string_view text, size_t* at, char c) {
  if (*at >= text.size() || text[*at] != c) return false;
  ++*at;
  return true;
}

}  // namespace

Result<std::string> DockerNegotiate(std::string_view server_api, std::string_view server_min) {
  int want_major = 0, want_minor = 0, api_major = 0, api_minor = 0;
  (void)ParseApiVersion(kDockerApiVersion, &want_major, &want_minor);
  if (!ParseApiVersion(server_api, &api_major, &api_minor)) {
    return Status::InvalidArgument("dockerd's API version " + Quote(server_api) +
                                   " is not <major>.<minor>");
  }
  int min_major = 0, min_minor = 0;
  if (!server_min.empty() && !ParseApiVersion(server_min, &min_major, &min_minor)) {
    return Status::InvalidArgument("dockerd's minimum API version " + Quote(server_min) +
                                   " is not <major>.<minor>");
  }
  const std::string offered =
      "dockerd speaks API " + std::string(server_api) +
      (server_min.empty() ? "" : " (and down to " + std::string(server_min) + ")");
  if (CompareApi(api_major, api_minor, want_major, want_minor) < 0) {
    return Status::NotSupported(offered + "; petrel needs " + kDockerApiVersion +
                                " (Docker 20.10) or later");
  }
  if (!server_min.empty() && CompareApi(min_major, min_minor, want_major, want_minor) > 0) {
    return Status::NotSupported(offered + "; petrel speaks " + kDockerApiVersion);
  }
  return std::string(kDockerApiVersion);
}

Status DockerStatus(std::string_view call, long http, std::string_view body) {
  if (http >= 100 && http < 400) return Status::OK();
  std::string message;
  if (Result<nlohmann::json> json = ParseJson(body, "answer"); json.ok() && json->is_object()) {
    auto it = json->find("message");
    if (it != json->end() && it->is_string())
      message = Escape(it->get<std::string>(), kMaxShownMessage);
  }
  if (message.empty()) message = body.empty() ? "(no message)" : Quote(body, kMaxShownMessage);
  const std::string msg = std::string(call) + ": " + std::to_string(http) + ": " + message;
  switch (http) {
    case 400: return Status::InvalidArgument(msg);
    case 401:
    case 403: return Status::PermissionDenied(msg);
    case 404: return Status::NotFound(msg);
    case 409: return Status::FailedPrecondition(msg);
    case 501: return Status::NotSupported(msg);
    case 503: return Status::Unavailable(msg);
    default: return Status::Internal(msg);
  }
}

Result<std::chrono::system_clock::time_point> DockerParseTime(std::string_view text) {
  std::tm tm{};
  size_t at = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  const bool ok =
      Digits(text, &at, 4, &year) && Expect(text, &at, '-') && Digits(text, &at, 2, &month) &&
      Expect(text, &at, '-') && Digits(text, &at, 2, &day) && Expect(text, &at, 'T') &&
      Digits(text, &at, 2, &hour) && Expect(text, &at, ':') && Digits(text, &at, 2, &minute) &&
      Expect(text, &at, ':') && Digits(text, &at, 2, &second);
  int64_t nanos = 0;
  bool valid = ok && month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour < 24 &&
               minute < 60 && second < 61;
  if (valid && at < text.size() && text[at] == '.') {
    at++;
    size_t digits = 0;
    for (; at < text.size() && text[at] >= '0' && text[at] <= '9'; at++, digits++) {
      if (digits < 9) nanos = nanos * 10 + (text[at] - '0');
    }
    for (size_t d = digits; d < 9; d++) nanos *= 10;
    valid = digits > 0;
  }
  if (!valid || at + 1 != text.size() || text[at] != 'Z') {
    return Status::InvalidArgument("time " + Quote(text) + " is not RFC 3339 in UTC");
  }
  if (year == 1) return std::chrono::system_clock::time_point();  // Go's zero time
  // A time_point counts nanoseconds in 64 bits: it reaches from 1677 to 2262.
  if (year < 1970 || year > 2261) {
    return Status::InvalidArgument("time " + Quote(text) + " is out of range (1970 to 2261)");
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const time_t secs = timegm(&tm);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(secs) + std::chrono::nanoseconds(nanos)));
}

Status DockerLineReader::Feed(std::string_view data, std::vector<std::string>* lines) {
  while (!data.empty()) {
    const size_t nl = data.find('\n');
    const std::string_view piece = data.substr(0, nl);
    if (partial_.size() + piece.size() > max_line_) {
      return Status::Corruption("a line of over " + std::to_string(max_line_) + " bytes");
    }
    partial_.append(piece);
    if (nl == std::string_view::npos) break;
    if (!partial_.empty()) lines->push_back(std::move(partial_));
    partial_.clear();
    data.remove_prefix(nl + 1);
  }
  return Status::OK();
}

Status DockerLogReader::Feed(std::string_view data, std::vector<DockerLogChunk>* chunks) {
  partial_.append(data);
  size_t at = 0;
  while (partial_.size() - at >= kLogHeadBytes) {
    const auto* head = reinterpret_cast<const unsigned char*>(partial_.data() + at);
    if (head[0] > 2 || head[1] != 0 || head[2] != 0 || head[3] != 0) {
      return Status::Corruption("a log chunk's head is not stream, 3 zero bytes, length");
    }
    const size_t len = (size_t{head[4]} << 24) | (size_t{head[5]} << 16) | (size_t{head[6]} << 8) |
                       size_t{head[7]};
    if (len > max_chunk_) {
      return Status::Corruption("a log chunk of " + std::to_string(len) +
                                " bytes, over the limit of " + std::to_string(max_chunk_));
    }
    if (partial_.size() - at - kLogHeadBytes < len) break;
    chunks->push_back(DockerLogChunk{head[0], partial_.substr(at + kLogHeadBytes, len)});
    at += kLogHeadBytes + len;
  }
  partial_.erase(0, at);
  return Status::OK();
}

Status DockerLogReader::Finish() const {
  if (partial_.empty()) return Status::OK();
  return Status::Corruption("the log ends in a chunk cut short, after " +
                            std::to_string(partial_.size()) + " bytes of it");
}

namespace {

// What one call collects from libcurl's callbacks.
struct Answer {
  long http = 0;  // of the last status line (a 100 Continue comes before the real one)
  size_t max_bytes = 0;
  std::string body;  // a Call's, or a Stream's error answer
  bool too_large = false;
  const std::function<Status(std::string_view)>* on_data = nullptr;  // a Stream's
  const std::function<bool()>* stop = nullptr;
  const DockerEngine::Upload* upload = nullptr;
  const std::atomic<bool>* cut = nullptr;  // a Stream's: DockerEngine::Cut was called
  Status failed;                           // from on_data or the upload
  bool stopped = false;
};

bool Stopped(Answer* a) {
  if (!a->stopped && a->cut != nullptr && a->cut->load()) a->stopped = true;
  if (!a->stopped && a->stop != nullptr && *a->stop && (*a->stop)()) a->stopped = true;
  return a->stopped;
}

// The engine's connection to dockerd, as libcurl opens and closes it, for Cut.
struct Connection {
  std::mutex mu;
  curl_socket_t fd = CURL_SOCKET_BAD;  // while open
  std::atomic<bool> cut{false};
};

curl_socket_t OnOpenSocket(void* user, curlsocktype, curl_sockaddr* addr) {
  auto* conn = static_cast<Connection*>(user);
  const int fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
  if (fd < 0) return CURL_SOCKET_BAD;
  std::lock_guard<std::mutex> lock(conn->mu);
  conn->fd = fd;
  if (conn->cut) shutdown(fd, SHUT_RDWR);  // cut before it was there
  return fd;
}

int OnCloseSocket(void* user, curl_socket_t fd) {
  auto* conn = static_cast<Connection*>(user);
  std::lock_guard<std::mutex> lock(conn->mu);
  if (conn->fd == fd) conn->fd = CURL_SOCKET_BAD;
  return close(fd);
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Answer*>(user);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    const size_t space = line.find(' ');
    if (space != std::string_view::npos)
      a->http = std::strtol(line.data() + space + 1, nullptr, 10);
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Answer*>(user);
  const size_t len = size * n;
  const bool error_answer = a->http >= 400;
  if (a->on_data != nullptr && !error_answer) {
    if (Stopped(a)) return 0;
    a->failed = (*a->on_data)(std::string_view(data, len));
    return a->failed.ok() ? len : 0;
  }
  if (len > a->max_bytes - a->body.size()) {
    a->too_large = true;
    return 0;  // ends the transfer with CURLE_WRITE_ERROR
  }
  a->body.append(data, len);
  return len;
}

size_t OnRead(char* buf, size_t size, size_t n, void* user) {
  auto* a = static_cast<Answer*>(user);
  if (Stopped(a)) return CURL_READFUNC_ABORT;
  Result<size_t> got = a->upload->read(buf, size * n);
  if (!got.ok()) {
    a->failed = got.status();
    return CURL_READFUNC_ABORT;
  }
  return *got;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return Stopped(static_cast<Answer*>(user)) ? 1 : 0;
}

}  // namespace

struct DockerEngine::Impl {
  Options options;
  DockerVersion server;
  std::string api_version;
  CurlUse use;            // before the handle, which must go first
  Connection connection;  // before the handle too: it closes the socket through it
  std::unique_ptr<CURL, CurlFree> curl;
  bool stopped = false;

  // Sends `method` to `url_path` (the version included) and collects the answer into
  // `a`; the Status says why there is none, naming `call`.
  Status Perform(const char* method, const std::string& url_path, const std::string& body,
                 const std::string& call, Answer* a);
};

Status DockerEngine::Impl::Perform(const char* method, const std::string& url_path,
                                   const std::string& body, const std::string& call, Answer* a) {
  CURL* c = curl.get();
  auto set = PETREL_CURL(curl_easy_setopt);
  const std::string url = "http://docker" + url_path;
  set(c, CURLOPT_URL, url.c_str());
  set(c, CURLOPT_CUSTOMREQUEST, method);
  std::unique_ptr<curl_slist, SlistFree> headers;
  auto add_header = [&headers](const std::string& line) {
    curl_slist* list = PETREL_CURL(curl_slist_append)(headers.get(), line.c_str());
    if (list == nullptr) return false;
    (void)headers.release();  // the same list, longer, unless it was empty
    headers.reset(list);
    return true;
  };
  bool headers_ok = add_header("Expect:");  // no 100-continue round trip
  // A body read through a callback cannot be sent twice, so libcurl cannot retry it on
  // a kept connection that dockerd closed meanwhile ("Recv failure: Connection reset by
  // peer", seen on exec starts): such a request gets a connection of its own.
  set(c, CURLOPT_FRESH_CONNECT, a->upload != nullptr ? 1L : 0L);
  if (a->upload != nullptr) {
    set(c, CURLOPT_UPLOAD, 1L);
    set(c, CURLOPT_READFUNCTION, OnRead);
    set(c, CURLOPT_READDATA, a);
    set(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(-1));  // chunked
    headers_ok = headers_ok && add_header("Content-Type: " + a->upload->content_type);
    for (const std::string& line : a->upload->headers) headers_ok = headers_ok && add_header(line);
  } else {
    set(c, CURLOPT_UPLOAD, 0L);
    if (!body.empty()) {
      set(c, CURLOPT_POSTFIELDS, body.data());
      set(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      headers_ok = headers_ok && add_header("Content-Type: application/json");
    } else if (std::strcmp(method, "POST") == 0) {
      set(c, CURLOPT_POSTFIELDS, "");
      set(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
    } else {
      set(c, CURLOPT_HTTPGET, 1L);
      set(c, CURLOPT_CUSTOMREQUEST, method);
    }
  }
  if (!headers_ok) return Status::IOError(call + ": curl_slist_append failed");
  set(c, CURLOPT_HTTPHEADER, headers.get());
  set(c, CURLOPT_WRITEDATA, a);
  set(c, CURLOPT_HEADERDATA, a);
  set(c, CURLOPT_XFERINFODATA, a);
  char buffer[CURL_ERROR_SIZE];
  buffer[0] = '\0';
  set(c, CURLOPT_ERRORBUFFER, buffer);
  const CURLcode rc = PETREL_CURL(curl_easy_perform)(c);
  set(c, CURLOPT_ERRORBUFFER, static_cast<char*>(nullptr));  // `buffer` ends here
  set(c, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
  set(c, CURLOPT_POSTFIELDS, static_cast<char*>(nullptr));
  if (a->too_large) {
    return Status::IOError(call + ": answer over " + std::to_string(a->max_bytes) + " bytes");
  }
  if (a->cut != nullptr && *a->cut) a->stopped = true;  // the connection's end was Cut's
  if (a->stopped) return Status::OK();
  if (!a->failed.ok()) return a->failed.WithContext(call);
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return Status::DeadlineExceeded(call + ": no answer within " +
                                    std::to_string(options.timeout.count()) + " ms");
  }
  if (rc != CURLE_OK) {
    const std::string error = buffer[0] != '\0' ? buffer : PETREL_CURL(curl_easy_strerror)(rc);
    return Status::Unavailable(call + ": dockerd at unix:" + options.socket_path + ": " + error);
  }
  return DockerStatus(call, a->http, a->body);
}

DockerEngine::DockerEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DockerEngine::~DockerEngine() = default;

Result<std::unique_ptr<DockerEngine>> DockerEngine::Open(Options options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  const std::string where = "dockerd at unix:" + impl->options.socket_path;
  if (!impl->use.status().ok()) return impl->use.status().WithContext(where);
  impl->curl.reset(PETREL_CURL(curl_easy_init)());
  if (!impl->curl) return Status::IOError(where + ": curl_easy_init failed");
  CURL* c = impl->curl.get();
  auto set = PETREL_CURL(curl_easy_setopt);
  set(c, CURLOPT_UNIX_SOCKET_PATH, impl->options.socket_path.c_str());
  set(c, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  set(c, CURLOPT_PROTOCOLS_STR, "http");
  set(c, CURLOPT_NOSIGNAL, 1L);
  set(c, CURLOPT_USERAGENT, "petrel");
  set(c, CURLOPT_HEADERFUNCTION, OnHeader);
  set(c, CURLOPT_WRITEFUNCTION, OnBody);
  set(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
  set(c, CURLOPT_OPENSOCKETFUNCTION, OnOpenSocket);
  set(c, CURLOPT_OPENSOCKETDATA, &impl->connection);
  set(c, CURLOPT_CLOSESOCKETFUNCTION, OnCloseSocket);
  set(c, CURLOPT_CLOSESOCKETDATA, &impl->connection);
  std::unique_ptr<DockerEngine> engine(new DockerEngine(std::move(impl)));
  // Unversioned: the one call every version answers alike.
  std::string body;
  Answer a;
  a.max_bytes = engine->impl_->options.max_response;
  engine->impl_->stopped = false;
  PETREL_CURL(curl_easy_setopt)
  (c, CURLOPT_TIMEOUT_MS, static_cast<long>(engine->impl_->options.timeout.count()));
  PETREL_CURL(curl_easy_setopt)(c, CURLOPT_NOPROGRESS, 1L);
  PETREL_RETURN_IF_ERROR(engine->impl_->Perform("GET", "/version", "", "GET /version", &a));
  PETREL_ASSIGN_OR_RETURN(nlohmann::json version, ParseJson(a.body, "GET /version: answer"));
  DockerVersion& v = engine->impl_->server;
  auto text = [&version](const char* key) {
    auto it = version.find(key);
    return it != version.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (!version.is_object()) return Status::Internal(where + ": GET /version: not an object");
  v.version = text("Version");
  v.api_version = text("ApiVersion");
  v.min_api_version = text("MinAPIVersion");
  v.os = text("Os");
  v.arch = text("Arch");
  Result<std::string> api = DockerNegotiate(v.api_version, v.min_api_version);
  if (!api.ok()) return api.status().WithContext(where);
  engine->impl_->api_version = std::move(*api);
  return engine;
}

const DockerVersion& DockerEngine::server() const { return impl_->server; }
const std::string& DockerEngine::api_version() const { return impl_->api_version; }
const std::string& DockerEngine::socket_path() const { return impl_->options.socket_path; }
bool DockerEngine::stopped() const { return impl_->stopped; }

void DockerEngine::Cut() {
  Connection& conn = impl_->connection;
  std::lock_guard<std::mutex> lock(conn.mu);
  conn.cut = true;
  if (conn.fd != CURL_SOCKET_BAD) shutdown(conn.fd, SHUT_RDWR);
}

bool DockerEngine::was_cut() const { return impl_->connection.cut; }

Status DockerEngine::Call(const char* method, const std::string& path, const std::string& body,
                          std::string* answer, long* http) {
  const std::string call = std::string(method) + " " + path.substr(0, path.find('?'));
  CURL* c = impl_->curl.get();
  PETREL_CURL(curl_easy_setopt)
  (c, CURLOPT_TIMEOUT_MS, static_cast<long>(impl_->options.timeout.count()));
  PETREL_CURL(curl_easy_setopt)(c, CURLOPT_CONNECTTIMEOUT_MS, 0L);
  PETREL_CURL(curl_easy_setopt)(c, CURLOPT_NOPROGRESS, 1L);
  Answer a;
  a.max_bytes = impl_->options.max_response;
  Status s = impl_->Perform(method, "/v" + impl_->api_version + path, body, call, &a);
  if (http != nullptr) *http = a.http;
  if (s.ok()) *answer = std::move(a.body);
  return s;
}

Status DockerEngine::Stream(const char* method, const std::string& path, const Upload* upload,
                            const std::function<Status(std::string_view data)>& on_data,
                            const std::function<bool()>& stop) {
  const std::string call = std::string(method) + " " + path.substr(0, path.find('?'));
  CURL* c = impl_->curl.get();
  PETREL_CURL(curl_easy_setopt)(c, CURLOPT_TIMEOUT_MS, 0L);
  PETREL_CURL(curl_easy_setopt)
  (c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(impl_->options.timeout.count()));
  PETREL_CURL(curl_easy_setopt)(c, CURLOPT_NOPROGRESS, 0L);
  Answer a;
  a.max_bytes = impl_->options.max_response;
  a.on_data = &on_data;
  a.stop = &stop;
  a.upload = upload;
  a.cut = &impl_->connection.cut;
  Status s = impl_->Perform(method, "/v" + impl_->api_version + path, "", call, &a);
  impl_->stopped = a.stopped;
  return s;
}

}  // namespace petrel::internal
