#include "runtime-adapters/containerd/grpc.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <utility>

#include "lib/image/curl_lib.h"
#include "lib/util/strings.h"

namespace petrel::internal {
namespace {

// How often a call whose request never wholly left is sent (GrpcChannel::Call).
constexpr int kMaxAttempts = 32;

// How much of a server's grpc-message goes into a Status: one line, still readable.
constexpr size_t kMaxShownMessage = 512;

constexpr const char* kCodeNames[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};
constexpr int kCodeCount = sizeof(kCodeNames) / sizeof(kCodeNames[0]);

// `msg` with petrel's code closest to gRPC's `code` (1..16): what a caller would do
// about it.
Status FromGrpcCode(int code, const std::string& msg) {
  switch (code) {
    case 3:   // INVALID_ARGUMENT
    case 11:  // OUT_OF_RANGE
      return Status::InvalidArgument(msg);
    case 4: return Status::DeadlineExceeded(msg);
    case 5: return Status::NotFound(msg);
    case 6: return Status::AlreadyExists(msg);
    case 7:   // PERMISSION_DENIED
    case 16:  // UNAUTHENTICATED
      return Status::PermissionDenied(msg);
    case 9: return Status::FailedPrecondition(msg);
    case 12: return Status::NotSupported(msg);
    case 1:   // CANCELLED
    case 8:   // RESOURCE_EXHAUSTED
    case 10:  // ABORTED
    case 14:  // UNAVAILABLE
      return Status::Unavailable(msg);
    case 15: return Status::Corruption(msg);
    default: return Status::Internal(msg);  // UNKNOWN, INTERNAL, and codes past 16
  }
}

// What one call or stream collects from libcurl's callbacks.
struct Answer {
  // A call's: the whole body.
  size_t max_bytes = 0;
  std::string body;
  bool too_large = false;
  // A stream's: its messages as they come.
  GrpcFrameReader reader{0};
  const std::function<Status(std::string)>* on_message = nullptr;
  const std::function<bool()>* stop = nullptr;
  Status failed;  // from the reader or on_message
  bool stopped = false;
  bool delivered = false;  // a message went to on_message
  // An upload's: the messages to send, and the frame being sent.
  const std::function<Result<bool>(std::string*)>* next = nullptr;
  std::string frame;
  size_t frame_at = 0;
  // All's.
  bool has_status = false;
  std::string grpc_status;
  std::string grpc_message;
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Answer*>(user);
  const size_t len = size * n;
  if (len > a->max_bytes - a->body.size()) {
    a->too_large = true;
    return 0;  // ends the transfer with CURLE_WRITE_ERROR
  }
  a->body.append(data, len);
  return len;
}

// Hands libcurl an upload's frames, each made when the one before has gone.
size_t OnRead(char* buf, size_t size, size_t n, void* user) {
  auto* a = static_cast<Answer*>(user);
  if (a->frame_at == a->frame.size()) {
    std::string message;
    Result<bool> more = (*a->next)(&message);
    if (!more.ok()) {
      a->failed = more.status();
      return CURL_READFUNC_ABORT;
    }
    if (!*more) return 0;
    a->frame = GrpcFrame(message);
    a->frame_at = 0;
  }
  const size_t len = std::min(size * n, a->frame.size() - a->frame_at);
  std::memcpy(buf, a->frame.data() + a->frame_at, len);
  a->frame_at += len;
  return len;
}

// Whether a stream's caller wants it cut: asks `stop` until it says so, then holds.
bool Stopped(Answer* a) {
  if (!a->stopped && a->stop != nullptr && *a->stop && (*a->stop)()) a->stopped = true;
  return a->stopped;
}

// Hands a stream's messages on as their frames complete; 0 (CURLE_WRITE_ERROR) cuts it.
size_t OnStreamBody(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Answer*>(user);
  const size_t len = size * n;
  if (Stopped(a)) return 0;
  std::vector<std::string> messages;
  Status fed = a->reader.Feed(std::string_view(data, len), &messages);
  for (std::string& m : messages) {
    a->delivered = true;
    a->failed = (*a->on_message)(std::move(m));
    if (!a->failed.ok()) return 0;
  }
  a->failed = std::move(fed);
  return a->failed.ok() ? len : 0;
}

// libcurl's progress callback, about once a second while a stream is idle: nonzero
// cuts the transfer (CURLE_ABORTED_BY_CALLBACK).
int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return Stopped(static_cast<Answer*>(user)) ? 1 : 0;
}

// Headers and, after the body, the trailers: libcurl hands both to this callback.
size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Answer*>(user);
  std::string_view line(data, size * n);
  std::string value;
  if (HeaderValue(line, "grpc-status:", &value)) {
    a->has_status = true;
    a->grpc_status = value;
  } else if (HeaderValue(line, "grpc-message:", &value)) {
    a->grpc_message = value;
  }
  return size * n;
}

// The message length in a frame's head.
uint32_t FrameLength(const unsigned char* head) {
  return (uint32_t{head[1]} << 24) | (uint32_t{head[2]} << 16) | (uint32_t{head[3]} << 8) |
         uint32_t{head[4]};
}

// The status code of a grpc-status value, -1 unless it is a plain decimal number.
int ParseCode(const std::string& value) {
  if (value.empty() || value.size() > 4) return -1;
  int code = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return -1;
    code = code * 10 + (c - '0');
  }
  return code;
}

}  // namespace

std::string GrpcFrame(std::string_view message) {
  const auto len = static_cast<uint32_t>(message.size());
  std::string out;
  out.reserve(kGrpcFrameHeadBytes + message.size());
  out += '\0';  // not compressed
  out += static_cast<char>(len >> 24);
  out += static_cast<char>(len >> 16);
  out += static_cast<char>(len >> 8);
  out += static_cast<char>(len);
  out.append(message);
  return out;
}

Status GrpcFrameReader::Feed(std::string_view data, std::vector<std::string>* messages) {
  partial_.append(data);
  size_t at = 0;
  for (; partial_.size() - at >= kGrpcFrameHeadBytes; frame_++) {
    const auto* head = reinterpret_cast<const unsigned char*>(partial_.data() + at);
    const uint32_t len = FrameLength(head);
    if (head[0] != 0)
      return Status::NotSupported("frame " + std::to_string(frame_) + " is compressed");
    if (len >= max_message_) {
      return Status::Corruption("frame " + std::to_string(frame_) + " holds " +
                                std::to_string(len) + " bytes, over the limit of " +
                                std::to_string(max_message_));
    }
    if (partial_.size() - at - kGrpcFrameHeadBytes < len) break;
    messages->emplace_back(partial_, at + kGrpcFrameHeadBytes, len);
    at += kGrpcFrameHeadBytes + len;
  }
  partial_.erase(0, at);
  return Status::OK();
}

Status GrpcFrameReader::Finish() const {
  if (partial_.empty()) return Status::OK();
  const std::string name = "frame " + std::to_string(frame_);
  if (partial_.size() < kGrpcFrameHeadBytes) {
    return Status::Corruption(name + " ends in its 5-byte head, after " +
                              std::to_string(partial_.size()) + " bytes");
  }
  const auto* head = reinterpret_cast<const unsigned char*>(partial_.data());
  const uint32_t len = FrameLength(head);
  return Status::Corruption(name + " ends after " +
                            std::to_string(partial_.size() - kGrpcFrameHeadBytes) + " of " +
                            std::to_string(len) + " bytes");
}

Status GrpcUnframe(std::string_view body, size_t max_message, std::vector<std::string>* messages) {
  GrpcFrameReader reader(max_message);
  PETREL_RETURN_IF_ERROR(reader.Feed(body, messages));
  return reader.Finish();
}

std::string GrpcCodeName(int code) {
  if (code >= 0 && code < kCodeCount) return kCodeNames[code];
  return "CODE_" + std::to_string(code);
}

std::string GrpcMessageDecode(std::string_view encoded) {
  std::string decoded;
  if (!PercentDecode(encoded, false, &decoded)) return std::string(encoded);
  return decoded;
}

Status GrpcStatus(std::string_view method, int code, std::string_view message) {
  if (code == 0) return Status::OK();
  std::string msg = std::string(method) + ": " + GrpcCodeName(code);
  if (!message.empty()) msg += ": " + Escape(message, kMaxShownMessage);
  return FromGrpcCode(code, msg);
}

struct GrpcChannel::Impl {
  Options options;
  CurlUse use;  // before the handles, which must go first
  std::unique_ptr<CURL, CurlFree> curl;
  std::unique_ptr<curl_slist, SlistFree> headers;

  CURLcode Perform(const std::string& name, const std::string* body, Answer* a, std::string* error);
  Status Outcome(const std::string& name, CURLcode rc, const std::string& error, const Answer& a);
};

// Sends `body` (null: the frames of a->next, an upload's) to `name` and collects the
// answer into `a`, which comes set up for the call or stream and is set up so again for
// each attempt; `error` gets libcurl's words.
CURLcode GrpcChannel::Impl::Perform(const std::string& name, const std::string* body, Answer* a,
                                    std::string* error) {
  const std::string url = "http://containerd/" + name;
  CURL* c = curl.get();
  auto set = PETREL_CURL(curl_easy_setopt);
  set(c, CURLOPT_URL, url.c_str());
  if (body != nullptr) {
    set(c, CURLOPT_POSTFIELDS, body->data());
    set(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  } else {
    set(c, CURLOPT_POSTFIELDS, static_cast<char*>(nullptr));  // the read callback's, then
    set(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(-1));
    set(c, CURLOPT_READFUNCTION, OnRead);
    set(c, CURLOPT_READDATA, a);
  }
  const Answer fresh = *a;
  char buffer[CURL_ERROR_SIZE];
  CURLcode rc = CURLE_OK;
  for (int attempt = 1;; attempt++) {
    *a = fresh;
    buffer[0] = '\0';
    set(c, CURLOPT_WRITEDATA, a);
    set(c, CURLOPT_HEADERDATA, a);
    set(c, CURLOPT_XFERINFODATA, a);
    if (body == nullptr) set(c, CURLOPT_READDATA, a);
    set(c, CURLOPT_ERRORBUFFER, buffer);
    rc = PETREL_CURL(curl_easy_perform)(c);
    set(c, CURLOPT_ERRORBUFFER, static_cast<char*>(nullptr));  // `buffer` ends with the loop
    // containerd answers a call it refuses before reading it (an unknown method or
    // service) at once and closes the stream; when that answer comes before libcurl
    // 7.88 has sent the request's body, libcurl fails the call (CURLE_HTTP2_STREAM,
    // "stream 1 closed") and drops the answer. A request that never wholly left cannot
    // have been served, so it is sent again. Of 5000 calls of an unknown method here,
    // 220 needed a second attempt and the unluckiest 14: the race's outcome persists.
    curl_off_t sent = 0;
    PETREL_CURL(curl_easy_getinfo)(c, CURLINFO_SIZE_UPLOAD_T, &sent);
    const bool unsent = body != nullptr && rc == CURLE_HTTP2_STREAM && !a->has_status &&
                        !a->delivered && static_cast<size_t>(sent) < body->size();
    if (!unsent || attempt == kMaxAttempts) break;
  }
  *error = buffer[0] != '\0' ? buffer : PETREL_CURL(curl_easy_strerror)(rc);
  return rc;
}

// The Status of a call or stream that libcurl ended with `rc`: the grpc-status, or why
// there is none. Its messages are the caller's to check.
Status GrpcChannel::Impl::Outcome(const std::string& name, CURLcode rc, const std::string& error,
                                  const Answer& a) {
  // grpc-status comes last (in the trailers, or in the headers of an answer that is
  // only headers), so once it has come the answer is whole, whatever libcurl says of
  // the stream's end.
  if (rc == CURLE_OPERATION_TIMEDOUT && !a.has_status) {
    return Status::DeadlineExceeded(name + ": no answer within " +
                                    std::to_string(options.timeout.count()) + " ms");
  }
  if (rc != CURLE_OK && !a.has_status) {
    return Status::Unavailable(name + ": containerd at unix:" + options.socket_path + ": " + error);
  }
  long http = 0;
  PETREL_CURL(curl_easy_getinfo)(curl.get(), CURLINFO_RESPONSE_CODE, &http);
  if (!a.has_status) {
    return Status::Internal(name + ": " +
                            (http != 200 ? "HTTP " + std::to_string(http)
                                         : std::string("no grpc-status in the answer")));
  }
  const int code = ParseCode(a.grpc_status);
  if (code < 0) return Status::Internal(name + ": grpc-status " + Quote(a.grpc_status));
  return GrpcStatus(name, code, GrpcMessageDecode(a.grpc_message));
}

GrpcChannel::GrpcChannel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GrpcChannel::~GrpcChannel() = default;

const std::string& GrpcChannel::lease() const { return impl_->options.lease; }

Result<std::unique_ptr<GrpcChannel>> GrpcChannel::Open(Options options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  const std::string where = "containerd at unix:" + impl->options.socket_path;
  if (!impl->use.status().ok()) return impl->use.status().WithContext(where);
  impl->curl.reset(PETREL_CURL(curl_easy_init)());
  if (!impl->curl) return Status::IOError(where + ": curl_easy_init failed");
  std::vector<std::string> lines = {"content-type: application/grpc", "te: trailers"};
  if (!impl->options.ns.empty()) lines.push_back("containerd-namespace: " + impl->options.ns);
  if (!impl->options.lease.empty()) lines.push_back("containerd-lease: " + impl->options.lease);
  for (const std::string& line : lines) {
    curl_slist* list = PETREL_CURL(curl_slist_append)(impl->headers.get(), line.c_str());
    if (list == nullptr) return Status::IOError(where + ": curl_slist_append failed");
    (void)impl->headers.release();  // the same list, longer, unless it was empty
    impl->headers.reset(list);
  }
  CURL* c = impl->curl.get();
  auto set = PETREL_CURL(curl_easy_setopt);
  set(c, CURLOPT_UNIX_SOCKET_PATH, impl->options.socket_path.c_str());
  set(c, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE));
  set(c, CURLOPT_PROTOCOLS_STR, "http");
  set(c, CURLOPT_HTTPHEADER, impl->headers.get());
  set(c, CURLOPT_POST, 1L);
  // A fresh connection per call: Debian 12's libcurl (7.88.1) fails the second stream
  // on a reused prior-knowledge HTTP/2 connection with CURLE_HTTP2 ("Error in the HTTP2
  // framing layer"; curl's own CLI does too, with --next): curl issue 10634, fixed in
  // 8.0. A Unix socket's connect is cheap next to containerd's work.
  set(c, CURLOPT_FRESH_CONNECT, 1L);
  set(c, CURLOPT_FORBID_REUSE, 1L);
  set(c, CURLOPT_NOSIGNAL, 1L);
  set(c, CURLOPT_USERAGENT, "petrel");
  set(c, CURLOPT_HEADERFUNCTION, OnHeader);
  set(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
  return std::unique_ptr<GrpcChannel>(new GrpcChannel(std::move(impl)));
}

namespace {

// `method` without its leading '/', if any.
std::string MethodName(std::string_view method) {
  return std::string(method.substr(method.rfind('/', 0) == 0 ? 1 : 0));
}

}  // namespace

Status GrpcChannel::Call(std::string_view method, std::string_view request, std::string* response) {
  const Options& o = impl_->options;
  const std::string name = MethodName(method);
  CURL* c = impl_->curl.get();
  auto set = PETREL_CURL(curl_easy_setopt);
  set(c, CURLOPT_TIMEOUT_MS, static_cast<long>(o.timeout.count()));
  set(c, CURLOPT_CONNECTTIMEOUT_MS, 0L);
  set(c, CURLOPT_WRITEFUNCTION, OnBody);
  set(c, CURLOPT_NOPROGRESS, 1L);
  Answer a;
  a.max_bytes = o.max_response;
  std::string error;
  const std::string body = GrpcFrame(request);
  const CURLcode rc = impl_->Perform(name, &body, &a, &error);
  if (a.too_large) {
    return Status::IOError(name + ": answer over " + std::to_string(o.max_response) + " bytes");
  }
  PETREL_RETURN_IF_ERROR(impl_->Outcome(name, rc, error, a));
  std::vector<std::string> messages;
  PETREL_RETURN_IF_ERROR(GrpcUnframe(a.body, o.max_response, &messages).WithContext(name));
  if (messages.size() != 1) {
    return Status::Internal(name + ": " + std::to_string(messages.size()) +
                            " messages in a unary answer");
  }
  *response = std::move(messages[0]);
  return Status::OK();
}

Result<GrpcStreamEnd> GrpcChannel::Stream(
    std::string_view method, std::string_view request,
    const std::function<Status(std::string message)>& on_message,
    const std::function<bool()>& stop) {
  const Options& o = impl_->options;
  const std::string name = MethodName(method);
  CURL* c = impl_->curl.get();
  auto set = PETREL_CURL(curl_easy_setopt);
  set(c, CURLOPT_TIMEOUT_MS, 0L);
  set(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.timeout.count()));
  set(c, CURLOPT_WRITEFUNCTION, OnStreamBody);
  set(c, CURLOPT_NOPROGRESS, 0L);
  Answer a;
  a.reader = GrpcFrameReader(o.max_response);
  a.on_message = &on_message;
  a.stop = &stop;
  std::string error;
  const std::string body = GrpcFrame(request);
  const CURLcode rc = impl_->Perform(name, &body, &a, &error);
  if (a.stopped) return GrpcStreamEnd::kStopped;
  if (!a.failed.ok()) return a.failed.WithContext(name);
  PETREL_RETURN_IF_ERROR(impl_->Outcome(name, rc, error, a));
  PETREL_RETURN_IF_ERROR(a.reader.Finish().WithContext(name));
  return GrpcStreamEnd::kEnded;
}

Status GrpcChannel::Upload(std::string_view method,
                           const std::function<Result<bool>(std::string* message)>& next,
                           std::vector<std::string>* responses) {
  const Options& o = impl_->options;
  const std::string name = MethodName(method);
  CURL* c = impl_->curl.get();
  auto set = PETREL_CURL(curl_easy_setopt);
  const long idle_s = std::max<long>(1, static_cast<long>(o.timeout.count() / 1000));
  set(c, CURLOPT_TIMEOUT_MS, 0L);
  set(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.timeout.count()));
  set(c, CURLOPT_LOW_SPEED_LIMIT, 1L);  // a byte in idle_s seconds, or cut
  set(c, CURLOPT_LOW_SPEED_TIME, idle_s);
  set(c, CURLOPT_WRITEFUNCTION, OnBody);
  set(c, CURLOPT_NOPROGRESS, 1L);
  Answer a;
  a.max_bytes = o.max_response;
  a.next = &next;
  std::string error;
  const CURLcode rc = impl_->Perform(name, nullptr, &a, &error);
  set(c, CURLOPT_LOW_SPEED_LIMIT, 0L);
  set(c, CURLOPT_LOW_SPEED_TIME, 0L);
  if (!a.failed.ok()) return a.failed.WithContext(name);
  if (a.too_large) {
    return Status::IOError(name + ": answer over " + std::to_string(o.max_response) + " bytes");
  }
  PETREL_RETURN_IF_ERROR(impl_->Outcome(name, rc, error, a));
  return GrpcUnframe(a.body, o.max_response, responses).WithContext(name);
}

}  // namespace petrel::internal
