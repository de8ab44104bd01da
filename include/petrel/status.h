// Status and Result<T>: how every fallible petrel call reports failure.
//
// A Status is free on success (a null pointer) and carries a code and a message
// otherwise. Messages carry context, outermost first:
//   "workload mqtt: create container: image oci-archive:/x.tar: no such file"
// No exception ever crosses the public API; failures come back as a Status.
//
// Thread-safety: a Status or Result is a value; distinct objects may be used from
// distinct threads without synchronisation.
#ifndef PETREL_STATUS_H_
#define PETREL_STATUS_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace petrel {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,
    kInvalidArgument,
    kAlreadyExists,
    kFailedPrecondition,  // the state does not allow it (e.g. newer schema)
    kIOError,
    kCorruption,
    kUnavailable,  // a dependency (runtime, disk) cannot serve now; retry may help
    kNotSupported,
    kInternal,
    kPermissionDenied,  // the caller or peer is not allowed (bad token, refused certificate)
    kDeadlineExceeded,  // no answer in time
  };

  Status() noexcept = default;
  Status(const Status& other) : state_(other.state_ ? new State(*other.state_) : nullptr) {}
  Status& operator=(const Status& other) {
    if (this != &other) state_.reset(other.state_ ? new State(*other.state_) : nullptr);
    return *this;
  }
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, msg); }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, msg);
  }
  static Status AlreadyExists(std::string_view msg) { return Status(Code::kAlreadyExists, msg); }
  static Status FailedPrecondition(std::string_view msg) {
    return Status(Code::kFailedPrecondition, msg);
  }
  static Status IOError(std::string_view msg) { return Status(Code::kIOError, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, msg); }
  static Status Unavailable(std::string_view msg) { return Status(Code::kUnavailable, msg); }
  static Status NotSupported(std::string_view msg) { return Status(Code::kNotSupported, msg); }
  static Status Internal(std::string_view msg) { return Status(Code::kInternal, msg); }
  static Status PermissionDenied(std::string_view msg) {
    return Status(Code::kPermissionDenied, msg);
  }
  static Status DeadlineExceeded(std::string_view msg) {
    return Status(Code::kDeadlineExceeded, msg);
  }

  bool ok() const { return state_ == nullptr; }
  Code code() const { return state_ ? state_->code : Code::kOk; }
  bool IsNotFound() const { return code() == Code::kNotFound; }
  bool IsInvalidArgument() const { return code() == Code::kInvalidArgument; }

  // The message alone ("" when ok).
  const std::string& message() const;
  // "OK", or "<code name>: <message>".
  std::string ToString() const;

  // Returns this status with "context: " put in front of the message; OK stays OK.
  Status WithContext(std::string_view context) const;

 private:
  struct State {
    Code code;
    std::string message;
  };
  Status(Code code, std::string_view msg) : state_(new State{code, std::string(msg)}) {}
  std::unique_ptr<State> state_;
};

const char* CodeName(Status::Code code);

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    if (std::get<Status>(v_).ok()) v_ = Status::Internal("Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  // OK when a value is held.
  Status status() const { return ok() ? Status::OK() : std::get<Status>(v_); }

  // REQUIRES: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace petrel

// Returns early from the enclosing function when `expr` is a non-OK Status.
#define PETREL_RETURN_IF_ERROR(expr)       \
  do {                                     \
    ::petrel::Status _petrel_s = (expr);   \
    if (!_petrel_s.ok()) return _petrel_s; \
  } while (0)

// Evaluates `expr`, a Result<T>: on failure returns its status from the enclosing
// function (which returns a Status or a Result), else moves the value into `lhs`,
// which may declare a variable:
//   PETREL_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxSize));
// Expands to several statements: not for the body of an unbraced if or loop.
#define PETREL_ASSIGN_OR_RETURN(lhs, expr) \
  PETREL_ASSIGN_OR_RETURN_IMPL_(PETREL_CONCAT_(_petrel_result_, __LINE__), lhs, expr)

#define PETREL_ASSIGN_OR_RETURN_IMPL_(result, lhs, expr) \
  auto result = (expr);                                  \
  if (!result.ok()) return result.status();              \
  lhs = std::move(result).value()

#define PETREL_CONCAT_(a, b) PETREL_CONCAT_INNER_(a, b)
#define PETREL_CONCAT_INNER_(a, b) a##b

#endif  // PETREL_STATUS_H_
