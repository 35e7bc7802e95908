// Structured logging for the daemon: one line per event, logfmt
// (`ts=… level=info msg="…" key=value`) or JSON, written to a sink. A Logger is
// passed to whoever logs; there is no global logger. Never log secrets: callers
// pass only names, ids and sizes.
#pragma once

#include <functional>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stowage {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
enum class LogFormat { kLogfmt, kJson };

class Logger {
 public:
  using Field = std::pair<std::string_view, std::string>;
  using Sink = std::function<void(std::string_view line)>;

  // Writes to stderr by default.
  explicit Logger(LogFormat format = LogFormat::kLogfmt, LogLevel min_level = LogLevel::kInfo,
                  Sink sink = nullptr);

  void log(LogLevel level, std::string_view msg, std::initializer_list<Field> fields = {});
  void debug(std::string_view msg, std::initializer_list<Field> f = {}) { log(LogLevel::kDebug, msg, f); }
  void info(std::string_view msg, std::initializer_list<Field> f = {}) { log(LogLevel::kInfo, msg, f); }
  void warn(std::string_view msg, std::initializer_list<Field> f = {}) { log(LogLevel::kWarn, msg, f); }
  void error(std::string_view msg, std::initializer_list<Field> f = {}) { log(LogLevel::kError, msg, f); }

  // Replaces every occurrence of `secret` in later lines with "<redacted>": a
  // second line of defence for credentials that reach a message by accident
  // (an error echoing a request). Empty strings are ignored.
  void add_redaction(std::string secret);

 private:
  std::vector<std::string> redactions_;  // fixed before the daemon's threads start
  LogFormat format_;
  LogLevel min_level_;
  Sink sink_;
  std::mutex mu_;  // one line at a time
};

// Adds `key=value` to every line the current thread logs while the scope
// lives, after the caller's own fields (unless the caller gave `key` itself):
// this is how a Docker call's request ID reaches every line about that call,
// down to the volume manager, without passing it through every signature.
// Scopes nest; handlers run synchronously on one thread, so a thread-local
// context follows the request.
class LogScope {
 public:
  LogScope(std::string_view key, std::string value);
  ~LogScope();
  LogScope(const LogScope&) = delete;
  LogScope& operator=(const LogScope&) = delete;
};

}  // namespace stowage
