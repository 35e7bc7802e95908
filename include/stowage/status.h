// Status and Result<T>: how every Stowage function reports failure.
//
// A Status carries a code, a human-readable message with context, and whether a
// retry of the same operation can help. Errors are classified where they arise
// (errno_status(), the S3 response parser), so callers read flags instead of
// guessing. Both types are [[nodiscard]]: an ignored failure is a compile error.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace stowage {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // the caller's input is wrong; retrying cannot help
  kNotFound,            // the named thing does not exist
  kAlreadyExists,       // create-only target exists / condition failed (S3 412)
  kPermissionDenied,    // EACCES, EPERM, S3 403
  kFailedPrecondition,  // state forbids it now: volume in use, lease held
  kUnavailable,         // transient: 5xx, throttling, connection reset
  kDeadlineExceeded,    // timed out
  kResourceExhausted,   // ENOSPC, quota, too large
  kCorruption,          // data does not match its hash or format
  kIOError,             // other I/O failure
  kUnimplemented,
  kInternal,            // a bug: an invariant did not hold
};

inline std::string_view code_name(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message, bool retryable = false)
      : code_(code), message_(std::move(message)), retryable_(retryable) {}

  static Status ok() { return {}; }
  static Status invalid_argument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status not_found(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status already_exists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status permission_denied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status failed_precondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
  static Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m), true}; }
  static Status deadline_exceeded(std::string m) { return {Code::kDeadlineExceeded, std::move(m), true}; }
  static Status resource_exhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
  static Status corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status io_error(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status unimplemented(std::string m) { return {Code::kUnimplemented, std::move(m)}; }
  static Status internal(std::string m) { return {Code::kInternal, std::move(m)}; }

  bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // True when the same call may succeed if repeated later (transient failure).
  bool retryable() const { return retryable_; }

  // "context: message", same code and retryability. OK stays OK.
  Status with_context(std::string_view context) const {
    if (is_ok()) return *this;
    std::string m(context);
    m += ": ";
    m += message_;
    return {code_, std::move(m), retryable_};
  }

  // "NotFound: message" — for logs and CLI output.
  std::string to_string() const {
    if (is_ok()) return "OK";
    std::string s(code_name(code_));
    s += ": ";
    s += message_;
    return s;
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
  bool retryable_ = false;
};

// Holds either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    if (std::get<Status>(v_).is_ok()) v_ = Status::internal("Result constructed from OK status");
  }

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
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

// The status of a Status or of a Result<T>, for code generic over both (store
// decorators that wrap every call the same way).
inline const Status& status_of(const Status& s) { return s; }
template <typename T>
const Status& status_of(const Result<T>& r) {
  return r.status();
}

// Maps an errno value to a Status. The one place errno is interpreted.
inline Status errno_status(int err, std::string_view context) {
  std::string m(context);
  m += ": ";
  m += std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return {Code::kNotFound, std::move(m)};
    case EEXIST:
    case ENOTEMPTY:
      return {Code::kAlreadyExists, std::move(m)};
    case EACCES:
    case EPERM:
    case EROFS:
      return {Code::kPermissionDenied, std::move(m)};
    case EINVAL:
    case ENAMETOOLONG:
    case ELOOP:
    case EISDIR:
      return {Code::kInvalidArgument, std::move(m)};
    case EBUSY:
      return {Code::kFailedPrecondition, std::move(m)};
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EFBIG:
      return {Code::kResourceExhausted, std::move(m)};
    case EINTR:
    case EAGAIN:
    case ECONNRESET:
    case ECONNREFUSED:
    case EPIPE:
      return {Code::kUnavailable, std::move(m), true};
    case ETIMEDOUT:
      return {Code::kDeadlineExceeded, std::move(m), true};
    case ENOSYS:
    case EOPNOTSUPP:
      return {Code::kUnimplemented, std::move(m)};
    default:
      return {Code::kIOError, std::move(m)};
  }
}

inline std::string_view code_name(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "InvalidArgument";
    case Code::kNotFound: return "NotFound";
    case Code::kAlreadyExists: return "AlreadyExists";
    case Code::kPermissionDenied: return "PermissionDenied";
    case Code::kFailedPrecondition: return "FailedPrecondition";
    case Code::kUnavailable: return "Unavailable";
    case Code::kDeadlineExceeded: return "DeadlineExceeded";
    case Code::kResourceExhausted: return "ResourceExhausted";
    case Code::kCorruption: return "Corruption";
    case Code::kIOError: return "IOError";
    case Code::kUnimplemented: return "Unimplemented";
    case Code::kInternal: return "Internal";
  }
  return "Unknown";
}

}  // namespace stowage

#define STOWAGE_CONCAT_INNER_(a, b) a##b
#define STOWAGE_CONCAT_(a, b) STOWAGE_CONCAT_INNER_(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define STOWAGE_RETURN_IF_ERROR(expr)                   \
  do {                                                  \
    ::stowage::Status stowage_status_ = (expr);         \
    if (!stowage_status_.is_ok()) return stowage_status_; \
  } while (0)

// `lhs = value of expr` or return its Status. `lhs` may declare a variable.
#define STOWAGE_ASSIGN_OR_RETURN(lhs, expr) \
  STOWAGE_ASSIGN_OR_RETURN_IMPL_(STOWAGE_CONCAT_(stowage_result_, __LINE__), lhs, expr)
#define STOWAGE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.is_ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
