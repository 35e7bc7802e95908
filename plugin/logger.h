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

 private:
  LogFormat format_;
  LogLevel min_level_;
  Sink sink_;
  std::mutex mu_;  // one line at a time
};

}  // namespace stowage
