// Logger: request-ID scopes reach every line a thread logs, and configured
// secrets never reach the sink, in both formats.
#include "logger.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

namespace stowage {
namespace {

struct Captured {
  std::vector<std::string> lines;
  Logger::Sink sink() {
    return [this](std::string_view l) { lines.emplace_back(l); };
  }
};

TEST(Logger, ScopeFieldsReachEveryLineOfTheThreadAndNest) {
  Captured out;
  Logger log(LogFormat::kLogfmt, LogLevel::kDebug, out.sink());
  log.info("before");
  {
    LogScope req("req", "docker-abc123-7");
    log.info("inside", {{"volume", "v1"}});
    {
      LogScope inner("step", "copy");
      log.debug("nested");
    }
    log.warn("caller wins", {{"req", "explicit"}});
  }
  log.info("after");
  ASSERT_EQ(out.lines.size(), 5u);
  EXPECT_EQ(out.lines[0].find("req="), std::string::npos);
  EXPECT_NE(out.lines[1].find("msg=inside volume=v1 req=docker-abc123-7\n"), std::string::npos) << out.lines[1];
  EXPECT_NE(out.lines[2].find("msg=nested req=docker-abc123-7 step=copy\n"), std::string::npos) << out.lines[2];
  EXPECT_NE(out.lines[3].find("req=explicit\n"), std::string::npos) << out.lines[3];
  EXPECT_EQ(out.lines[3].find("docker-abc123-7"), std::string::npos) << "one req field per line";
  EXPECT_EQ(out.lines[4].find("req="), std::string::npos) << "the scope ended";
}

TEST(Logger, ScopesAreThreadLocal) {
  Captured out;
  Logger log(LogFormat::kJson, LogLevel::kInfo, out.sink());
  LogScope mine("req", "main-thread");
  std::thread([&] { log.info("other thread"); }).join();
  log.info("this thread");
  ASSERT_EQ(out.lines.size(), 2u);
  auto other = nlohmann::json::parse(out.lines[0]);
  auto self = nlohmann::json::parse(out.lines[1]);
  EXPECT_FALSE(other.contains("req")) << out.lines[0];
  EXPECT_EQ(self["req"], "main-thread");
}

TEST(Logger, RedactionsReplaceSecretsInBothFormats) {
  for (LogFormat f : {LogFormat::kLogfmt, LogFormat::kJson}) {
    Captured out;
    Logger log(f, LogLevel::kInfo, out.sink());
    log.add_redaction("s3cr3t-KEY");
    log.add_redaction("");  // ignored
    log.info("request failed", {{"error", "signature for s3cr3t-KEY and s3cr3t-KEY mismatched"}});
    ASSERT_EQ(out.lines.size(), 1u);
    const std::string& l = out.lines[0];
    EXPECT_EQ(l.find("s3cr3t-KEY"), std::string::npos) << l;
    EXPECT_NE(l.find("signature for <redacted> and <redacted> mismatched"), std::string::npos) << l;
  }
}

TEST(Logger, ASecretInsideTheMarkerDoesNotLoop) {
  Captured out;
  Logger log(LogFormat::kLogfmt, LogLevel::kInfo, out.sink());
  log.add_redaction("red");  // occurs in "<redacted>" itself
  log.info("m", {{"c", "reddish red"}});
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_NE(out.lines[0].find("c=\"<redacted>dish <redacted>\""), std::string::npos) << out.lines[0];
}

}  // namespace
}  // namespace stowage
