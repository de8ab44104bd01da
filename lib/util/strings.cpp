#include "lib/util/strings.h"

#include <cstdio>

namespace petrel::internal {

std::string Escape(std::string_view value, size_t max_bytes) {
  size_t shown = value.size() < max_bytes ? value.size() : max_bytes;
  while (shown > 0 && shown < value.size() && (value[shown] & 0xc0) == 0x80) shown--;
  std::string out;
  out.reserve(shown + 3);
  for (size_t i = 0; i < shown; i++) {
    unsigned char c = static_cast<unsigned char>(value[i]);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  if (shown < value.size()) out += "...";
  return out;
}

std::string Quote(std::string_view value, size_t max_bytes) {
  return "\"" + Escape(value, max_bytes) + "\"";
}

size_t FormatDecimal(uint64_t v, char* out, size_t width) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  const size_t pad = width > n ? width - n : 0;
  for (size_t i = 0; i < pad; i++) out[i] = '0';
  for (size_t i = 0; i < n; i++) out[pad + i] = tmp[n - 1 - i];
  out[pad + n] = '\0';
  return pad + n;
}

size_t FirstNotPlain(std::string_view name) {
  for (size_t i = 0; i < name.size(); i++) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return i;
  }
  return std::string_view::npos;
}

bool IsPlainName(std::string_view name, size_t max_bytes) {
  return !name.empty() && name.size() <= max_bytes && name[0] != '.' &&
         FirstNotPlain(name) == std::string_view::npos;
}

bool IsPrintableToken(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (c <= ' ' || c >= 127) return false;  // char may be signed: 128..255 are below ' '
  }
  return true;
}

std::string UrlEscape(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    const bool unreserved = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
                            (u >= '0' && u <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); i++) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = HexValue(in[i + 1]);
      int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

}  // namespace petrel::internal
