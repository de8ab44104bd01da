// Kubernetes quantities ("64Mi", "500m", "129e6") and Go-style durations ("1m30s").
//
// Arithmetic is exact on 64-bit integers (no floating point, no 128-bit types, so it
// behaves the same on 32-bit targets). A value that is not a whole number of the base
// unit (bytes, millicores, milliseconds) is rounded up, as Kubernetes' Value() and
// MilliValue() do: ParseBytes("0.5") = 1, ParseCpuMillis("0.1m") = 1.
#include <cstdint>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>

#include "lib/spec/check.h"
#include "lib/util/strings.h"
#include "petrel/spec.h"

namespace petrel {
namespace {

constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// *v *= m; false when the product would exceed kMax.
bool MulChecked(uint64_t* v, uint64_t m) {
  if (m != 0 && *v > kMax / m) return false;
  *v *= m;
  return true;
}

// *v = ceil(*v / d) for d > 0.
void DivCeil(uint64_t* v, uint64_t d) { *v = *v / d + (*v % d != 0 ? 1 : 0); }

// A decimal number "12", "1.5", ".5" or "5." read off the front of *s: its digits as
// an integer `digits`, scaled by 10^exp10 (negative for fraction digits).
struct Decimal {
  uint64_t digits = 0;
  int exp10 = 0;
};

// Returns false when no digit is there. Sets *too_precise when more significant
// digits are given than fit in 63 bits.
bool TakeDecimal(std::string_view* s, Decimal* out, bool* too_precise) {
  Decimal d;
  int pending_zeros = 0;  // zeros seen but not yet multiplied in: trailing ones are free
  bool any_digit = false;
  bool in_fraction = false;
  size_t i = 0;
  for (; i < s->size(); i++) {
    char c = (*s)[i];
    if (c == '.' && !in_fraction) {
      in_fraction = true;
      continue;
    }
    if (!IsDigit(c)) break;
    any_digit = true;
    if (in_fraction) d.exp10--;
    if (c == '0') {
      pending_zeros++;
      continue;
    }
    uint64_t v = d.digits;
    for (; pending_zeros > 0; pending_zeros--) {
      if (!MulChecked(&v, 10)) *too_precise = true;
    }
    if (!MulChecked(&v, 10) || v > kMax - static_cast<uint64_t>(c - '0')) *too_precise = true;
    d.digits = v + static_cast<uint64_t>(c - '0');
  }
  if (!any_digit) return false;
  d.exp10 += pending_zeros;
  if (d.digits == 0) d.exp10 = 0;
  *s = s->substr(i);
  *out = d;
  return true;
}

// ceil(d.digits * 2^pow2 * 10^d.exp10), or false when it exceeds kMax.
bool Scale(Decimal d, int pow2, uint64_t* out) {
  uint64_t v = d.digits;
  if (v == 0) {
    *out = 0;
    return true;
  }
  if (d.exp10 >= 0) {
    for (int k = 0; k < d.exp10; k++) {
      if (!MulChecked(&v, 10)) return false;
    }
    for (int k = 0; k < pow2; k++) {
      if (!MulChecked(&v, 2)) return false;
    }
  } else {
    // Cancel the 2s of 10^-k against 2^pow2 first, so "0.9Ei" does not overflow.
    int fives = -d.exp10;
    int twos = fives;
    int cancel = pow2 < twos ? pow2 : twos;
    pow2 -= cancel;
    twos -= cancel;
    for (int k = 0; k < pow2; k++) {
      if (!MulChecked(&v, 2)) return false;
    }
    // Nested ceilings equal the ceiling of the whole quotient.
    for (int k = 0; k < twos && v > 1; k++) DivCeil(&v, 2);
    for (int k = 0; k < fives && v > 1; k++) DivCeil(&v, 5);
  }
  *out = v;
  return true;
}

enum class Outcome { kOk, kGarbage, kRange };

// Parses an unsigned Kubernetes quantity and returns it times 10^scale10, rounded up.
Outcome ParseQuantity(std::string_view s, int scale10, uint64_t* out) {
  Decimal d;
  bool too_precise = false;
  if (!TakeDecimal(&s, &d, &too_precise)) return Outcome::kGarbage;
  int pow2 = 0;
  int exp10 = 0;
  if (s.size() >= 2 && (s[0] == 'e' || s[0] == 'E') &&
      (IsDigit(s[1]) || ((s[1] == '+' || s[1] == '-') && s.size() >= 3))) {
    bool negative = s[1] == '-';
    std::string_view e = s.substr(IsDigit(s[1]) ? 1 : 2);
    if (e.empty()) return Outcome::kGarbage;
    for (char c : e) {
      if (!IsDigit(c)) return Outcome::kGarbage;
    }
    // Keep the exponent small enough that the digit loops in Scale stay short.
    if (e.size() > 4) return Outcome::kRange;
    for (char c : e) exp10 = exp10 * 10 + (c - '0');
    if (negative) exp10 = -exp10;
  } else if (!s.empty()) {
    static constexpr struct {
      std::string_view suffix;
      int pow2, exp10;
    } kSuffixes[] = {
        {"Ki", 10, 0}, {"Mi", 20, 0}, {"Gi", 30, 0}, {"Ti", 40, 0}, {"Pi", 50, 0},
        {"Ei", 60, 0}, {"n", 0, -9},  {"u", 0, -6},  {"m", 0, -3},  {"k", 0, 3},
        {"M", 0, 6},   {"G", 0, 9},   {"T", 0, 12},  {"P", 0, 15},  {"E", 0, 18},
    };
    bool found = false;
    for (const auto& x : kSuffixes) {
      if (s == x.suffix) {
        pow2 = x.pow2;
        exp10 = x.exp10;
        found = true;
        break;
      }
    }
    if (!found) return Outcome::kGarbage;
  }
  if (too_precise) return Outcome::kRange;
  d.exp10 += exp10 + scale10;
  return Scale(d, pow2, out) ? Outcome::kOk : Outcome::kRange;
}

// Parses an unsigned Go-style duration ("1m30s", "1.5h", "0") into milliseconds,
// rounded up.
Outcome ParseDuration(std::string_view s, uint64_t* out) {
  if (s == "0") {
    *out = 0;
    return Outcome::kOk;
  }
  if (s.empty()) return Outcome::kGarbage;
  static constexpr struct {
    std::string_view unit;
    uint64_t ms;
  } kUnits[] = {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}};
  uint64_t total = 0;
  bool range = false;
  while (!s.empty()) {
    Decimal d;
    if (!TakeDecimal(&s, &d, &range)) return Outcome::kGarbage;
    const auto* unit = std::end(kUnits);
    for (const auto& u : kUnits) {
      if (s.substr(0, u.unit.size()) == u.unit) {
        unit = &u;
        break;
      }
    }
    if (unit == std::end(kUnits)) return Outcome::kGarbage;
    s.remove_prefix(unit->unit.size());
    uint64_t v = 0;
    if (!MulChecked(&d.digits, unit->ms) || !Scale(d, 0, &v) || v > kMax - total) {
      range = true;
    } else {
      total += v;
    }
  }
  if (range) return Outcome::kRange;
  *out = total;
  return Outcome::kOk;
}

// Parses `text` (an optional '-' then what `parse` reads) into a non-negative value;
// `what` names the kind of text expected, for the error.
template <typename ParseFn>
Result<int64_t> NonNegative(const std::string& text, const char* what, ParseFn&& parse) {
  std::string_view s = text;
  bool negative = !s.empty() && s[0] == '-';
  if (negative) s.remove_prefix(1);
  uint64_t v = 0;
  switch (parse(s, &v)) {
    case Outcome::kGarbage:
      return Status::InvalidArgument(internal::Quote(text) + " is not " + what);
    case Outcome::kRange:
      return Status::InvalidArgument(internal::Quote(text) + " is out of range");
    case Outcome::kOk: break;
  }
  if (negative && v != 0) {
    return Status::InvalidArgument(internal::Quote(text) + " must not be negative");
  }
  return static_cast<int64_t>(v);
}

Result<int64_t> QuantityResult(const std::string& text, int scale10) {
  return NonNegative(text, "a quantity", [scale10](std::string_view s, uint64_t* v) {
    return ParseQuantity(s, scale10, v);
  });
}

}  // namespace

Result<int64_t> ParseBytes(const std::string& text) { return QuantityResult(text, 0); }

Result<int64_t> ParseCpuMillis(const std::string& text) { return QuantityResult(text, 3); }

Result<int64_t> ParseDurationMs(const std::string& text) {
  return NonNegative(text, "a duration (e.g. 500ms, 10s, 1m30s)", ParseDuration);
}

std::string FormatDurationMs(int64_t ms) {
  if (ms == 0) return "0s";
  std::string out;
  uint64_t v = static_cast<uint64_t>(ms);
  if (ms < 0) {
    out = "-";
    v = ~v + 1;  // |ms|, also for INT64_MIN
  }
  static constexpr struct {
    const char* unit;
    uint64_t ms;
  } kUnits[] = {{"h", 3600 * 1000}, {"m", 60 * 1000}, {"s", 1000}, {"ms", 1}};
  for (const auto& u : kUnits) {
    if (v >= u.ms) {
      out += std::to_string(v / u.ms) + u.unit;
      v %= u.ms;
    }
  }
  return out;
}

}  // namespace petrel
