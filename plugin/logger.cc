#include "logger.h"

#include <chrono>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

namespace stowage {
namespace {

std::string_view level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

std::string timestamp() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

// logfmt: bare when the value has no space, quote or '=', quoted otherwise.
void append_logfmt_value(std::string& out, std::string_view v) {
  bool bare = !v.empty();
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      bare = false;
      break;
    }
  }
  if (bare) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\x%02x", static_cast<unsigned char>(c));
          out += esc;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

thread_local std::vector<std::pair<std::string, std::string>> t_scope;

bool given(std::initializer_list<Logger::Field> fields, std::string_view key) {
  for (const auto& f : fields) {
    if (f.first == key) return true;
  }
  return false;
}

}  // namespace

LogScope::LogScope(std::string_view key, std::string value) {
  t_scope.emplace_back(std::string(key), std::move(value));
}

LogScope::~LogScope() { t_scope.pop_back(); }

void Logger::add_redaction(std::string secret) {
  if (!secret.empty()) redactions_.push_back(std::move(secret));
}

Logger::Logger(LogFormat format, LogLevel min_level, Sink sink)
    : format_(format), min_level_(min_level), sink_(std::move(sink)) {
  if (!sink_) {
    sink_ = [](std::string_view line) {
      std::fwrite(line.data(), 1, line.size(), stderr);
      std::fflush(stderr);
    };
  }
}

void Logger::log(LogLevel level, std::string_view msg, std::initializer_list<Field> fields) {
  if (level < min_level_) return;
  std::string line;
  if (format_ == LogFormat::kJson) {
    nlohmann::ordered_json j;
    j["ts"] = timestamp();
    j["level"] = level_name(level);
    j["msg"] = msg;
    for (const auto& [k, v] : fields) j[std::string(k)] = v;
    for (const auto& [k, v] : t_scope) {
      if (!given(fields, k)) j[k] = v;
    }
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = "ts=" + timestamp() + " level=" + std::string(level_name(level)) + " msg=";
    append_logfmt_value(line, msg);
    for (const auto& [k, v] : fields) {
      line += ' ';
      line += k;
      line += '=';
      append_logfmt_value(line, v);
    }
    for (const auto& [k, v] : t_scope) {
      if (given(fields, k)) continue;
      line += ' ';
      line += k;
      line += '=';
      append_logfmt_value(line, v);
    }
  }
  constexpr std::string_view kRedacted = "<redacted>";
  for (const auto& secret : redactions_) {
    for (size_t at = line.find(secret); at != std::string::npos; at = line.find(secret, at + kRedacted.size())) {
      line.replace(at, secret.size(), kRedacted);
    }
  }
  line += '\n';
  std::lock_guard lock(mu_);
  sink_(line);
}

}  // namespace stowage
