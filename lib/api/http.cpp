#include "lib/api/http.h"

#include <http_parser.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <string>
#include <utility>

#include "lib/util/strings.h"

namespace petrel::internal {

struct HttpConnection::Parser {
  http_parser parser;
  http_parser_settings settings;
  HttpConnection* conn = nullptr;

  static HttpConnection* Of(http_parser* p) { return static_cast<Parser*>(p->data)->conn; }
};

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Splits "a=1&b=2" into the map; false on a malformed escape.
bool ParseQuery(std::string_view query, std::map<std::string, std::string>* out) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key, value;
    if (!PercentDecode(pair.substr(0, eq), true, &key)) return false;
    if (eq != std::string_view::npos && !PercentDecode(pair.substr(eq + 1), true, &value)) {
      return false;
    }
    (*out)[key] = std::move(value);
  }
  return true;
}

const char* StatusText(int status) {
  const char* text = http_status_str(static_cast<enum http_status>(status));
  return text != nullptr ? text : "Unknown";
}

}  // namespace

HttpConnection::HttpConnection() : parser_(std::make_unique<Parser>()) {
  parser_->conn = this;
  http_parser_init(&parser_->parser, HTTP_REQUEST);
  parser_->parser.data = parser_.get();
  http_parser_settings& s = parser_->settings;
  http_parser_settings_init(&s);
  s.on_message_begin = [](http_parser* p) {
    HttpConnection* c = Parser::Of(p);
    c->in_message_ = true;
    c->current_ = HttpRequest();
    c->url_.clear();
    c->field_.clear();
    c->value_.clear();
    c->in_value_ = false;
    c->header_bytes_ = 0;
    c->continue_pending_ = false;
    return 0;
  };
  s.on_url = [](http_parser* p, const char* at, size_t n) {
    HttpConnection* c = Parser::Of(p);
    c->header_bytes_ += n;
    if (c->url_.size() + n > kMaxUrlBytes) {
      c->Fail(414, "request target longer than " + std::to_string(kMaxUrlBytes) + " bytes");
      return -1;
    }
    c->url_.append(at, n);
    return 0;
  };
  s.on_header_field = [](http_parser* p, const char* at, size_t n) {
    HttpConnection* c = Parser::Of(p);
    if (c->in_value_) c->CommitHeader();
    c->header_bytes_ += n;
    if (c->header_bytes_ > kMaxHeaderBytes) {
      c->Fail(431, "headers larger than " + std::to_string(kMaxHeaderBytes) + " bytes");
      return -1;
    }
    c->field_.append(at, n);
    return 0;
  };
  s.on_header_value = [](http_parser* p, const char* at, size_t n) {
    HttpConnection* c = Parser::Of(p);
    c->in_value_ = true;
    c->header_bytes_ += n;
    if (c->header_bytes_ > kMaxHeaderBytes) {
      c->Fail(431, "headers larger than " + std::to_string(kMaxHeaderBytes) + " bytes");
      return -1;
    }
    c->value_.append(at, n);
    return 0;
  };
  s.on_headers_complete = [](http_parser* p) { return Parser::Of(p)->OnHeadersComplete(); };
  s.on_body = [](http_parser* p, const char* at, size_t n) {
    HttpConnection* c = Parser::Of(p);
    c->continue_pending_ = false;
    if (c->current_.request.body.size() + n > kMaxBodyBytes) {
      c->Fail(413, "body larger than " + std::to_string(kMaxBodyBytes) + " bytes");
      return -1;
    }
    c->current_.request.body.append(at, n);
    return 0;
  };
  s.on_message_complete = [](http_parser* p) {
    HttpConnection* c = Parser::Of(p);
    c->continue_pending_ = false;
    c->in_message_ = false;
    c->ready_bytes_ += c->current_.request.body.size();
    c->ready_.push_back(std::move(c->current_));
    c->current_ = HttpRequest();
    if (c->ready_.size() >= kMaxQueuedRequests || c->ready_bytes_ >= kMaxBodyBytes) {
      c->paused_ = true;
      http_parser_pause(p, 1);
    }
    return 0;
  };
}

HttpConnection::~HttpConnection() = default;

void HttpConnection::Fail(int status, const std::string& message) {
  if (failed_) return;
  failed_ = true;
  continue_pending_ = false;
  error_ = ApiHandler::Error(status, message);
}

void HttpConnection::CommitHeader() {
  std::string name = Lower(std::move(field_));
  auto [it, inserted] = current_.request.headers.emplace(name, value_);
  if (!inserted) it->second += ", " + value_;
  field_.clear();
  value_.clear();
  in_value_ = false;
}

int HttpConnection::OnHeadersComplete() {
  if (in_value_ || !field_.empty()) CommitHeader();
  http_parser* p = &parser_->parser;
  ApiRequest& r = current_.request;
  r.method = http_method_str(static_cast<enum http_method>(p->method));
  current_.keep_alive = http_should_keep_alive(p) != 0;
  current_.http10 = p->http_major == 1 && p->http_minor == 0;
  if (p->upgrade) current_.keep_alive = false;

  http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(url_.data(), url_.size(), p->method == HTTP_CONNECT, &u) != 0) {
    Fail(400, "malformed request target");
    return -1;
  }
  std::string_view url(url_);
  if (u.field_set & (1 << UF_PATH)) {
    std::string_view raw = url.substr(u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    if (!PercentDecode(raw, false, &r.path)) {
      Fail(400, "malformed percent-encoding in the path");
      return -1;
    }
  }
  if (u.field_set & (1 << UF_QUERY)) {
    std::string_view raw = url.substr(u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    if (!ParseQuery(raw, &r.query)) {
      Fail(400, "malformed percent-encoding in the query");
      return -1;
    }
  }

  const bool chunked = (p->flags & F_CHUNKED) != 0;
  const bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
  if (has_length && p->content_length > kMaxBodyBytes) {
    Fail(413, "body larger than " + std::to_string(kMaxBodyBytes) + " bytes");
    return -1;
  }
  if ((p->method == HTTP_PUT || p->method == HTTP_POST) && !chunked && !has_length) {
    Fail(411, "a " + r.method + " needs Content-Length or chunked Transfer-Encoding");
    return -1;
  }
  auto expect = r.headers.find("expect");
  if (expect != r.headers.end() && Lower(expect->second) == "100-continue" &&
      (chunked || p->content_length > 0)) {
    continue_pending_ = true;
  }
  return 0;
}

void HttpConnection::Feed(std::string_view data) {
  if (done() || data.empty()) return;
  if (paused_) {
    unparsed_.append(data);
    return;
  }
  size_t parsed =
      http_parser_execute(&parser_->parser, &parser_->settings, data.data(), data.size());
  enum http_errno err = HTTP_PARSER_ERRNO(&parser_->parser);
  if (err == HPE_PAUSED) {
    unparsed_.assign(data.substr(parsed));
    return;
  }
  if (err != HPE_OK) {
    if (err == HPE_HEADER_OVERFLOW) {
      Fail(431, "headers larger than " + std::to_string(kMaxHeaderBytes) + " bytes");
    } else {
      Fail(400, std::string("malformed request: ") + http_errno_description(err));
    }
    return;
  }
  if (parser_->parser.upgrade || parsed != data.size()) upgraded_ = true;
}

bool HttpConnection::Next(HttpRequest* out) {
  if (ready_.empty()) return false;
  *out = std::move(ready_.front());
  ready_.pop_front();
  ready_bytes_ -= out->request.body.size();
  if (paused_ && ready_.size() < kMaxQueuedRequests && ready_bytes_ < kMaxBodyBytes) {
    paused_ = false;
    http_parser_pause(&parser_->parser, 0);
    std::string rest = std::move(unparsed_);
    unparsed_.clear();
    Feed(rest);
  }
  return true;
}

bool HttpConnection::TakeContinue() {
  bool pending = continue_pending_;
  continue_pending_ = false;
  return pending;
}

std::string SerializeResponse(const ApiResponse& response, bool keep_alive, bool http10) {
  std::string out =
      "HTTP/1.1 " + std::to_string(response.status) + " " + StatusText(response.status) + "\r\n";
  out += "Content-Type: " + response.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  for (const auto& [name, value] : response.headers) out += name + ": " + value + "\r\n";
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  out += response.body;
  return out;
}

std::string SerializeStreamHead(const ApiResponse& response, bool chunked) {
  std::string out =
      "HTTP/1.1 " + std::to_string(response.status) + " " + StatusText(response.status) + "\r\n";
  out += "Content-Type: " + response.content_type + "\r\n";
  out += chunked ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n";
  for (const auto& [name, value] : response.headers) out += name + ": " + value + "\r\n";
  out += "\r\n";
  return out;
}

std::string Chunk(std::string_view data) {
  if (data.empty()) return std::string();
  char size[32];
  int n = std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string out(size, static_cast<size_t>(n));
  out.append(data);
  out += "\r\n";
  return out;
}

}  // namespace petrel::internal
