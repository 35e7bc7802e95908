// MetricsRegistry: the text exposition output is parsed back (HELP/TYPE lines,
// label escaping, histogram series) and checked against what was recorded,
// including under concurrent updates.
#include "metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "daemon_metrics.h"

namespace stowage {
namespace {

struct Parsed {
  std::map<std::string, std::string> help;  // metric → unescaped help
  std::map<std::string, std::string> type;  // metric → type
  // "name{a=\"x\",b=\"y\"}" with label values unescaped, labels in output order → value
  std::map<std::string, double> samples;
  std::vector<std::string> errors;
};

// A strict parser for the subset of the text format the registry writes.
Parsed parse(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line;
  std::string current;  // family whose samples may follow
  while (std::getline(in, line)) {
    if (line.starts_with("# HELP ")) {
      std::string rest = line.substr(7);
      std::string name = rest.substr(0, rest.find(' '));
      std::string help;
      std::string raw = rest.substr(name.size() + 1);
      for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '\\' && i + 1 < raw.size()) {
          help += raw[i + 1] == 'n' ? '\n' : raw[i + 1];
          ++i;
        } else {
          help += raw[i];
        }
      }
      if (p.help.contains(name)) p.errors.push_back("second HELP for " + name);
      p.help[name] = help;
      current = name;
      continue;
    }
    if (line.starts_with("# TYPE ")) {
      std::string rest = line.substr(7);
      std::string name = rest.substr(0, rest.find(' '));
      if (name != current) p.errors.push_back("TYPE without HELP first: " + name);
      p.type[name] = rest.substr(name.size() + 1);
      continue;
    }
    if (line.empty() || line[0] == '#') {
      p.errors.push_back("unexpected line: " + line);
      continue;
    }
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    std::string name = line.substr(0, i);
    if (!name.starts_with(current)) p.errors.push_back("sample " + name + " outside its family " + current);
    std::string key = name;
    if (i < line.size() && line[i] == '{') {
      key += '{';
      ++i;
      bool first = true;
      while (i < line.size() && line[i] != '}') {
        if (!first) {
          if (line[i] != ',') p.errors.push_back("expected , in " + line);
          ++i;
        }
        first = false;
        size_t eq = line.find('=', i);
        std::string lname = line.substr(i, eq - i);
        i = eq + 1;
        if (line[i] != '"') p.errors.push_back("unquoted label value in " + line);
        ++i;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            char e = line[i + 1];
            if (e == 'n') {
              value += '\n';
            } else if (e == '\\' || e == '"') {
              value += e;
            } else {
              p.errors.push_back("bad escape in " + line);
            }
            i += 2;
          } else {
            if (line[i] == '\n') p.errors.push_back("raw newline");
            value += line[i++];
          }
        }
        ++i;  // closing quote
        key += (key.back() == '{' ? "" : ",") + lname + "=\"" + value + "\"";
      }
      key += '}';
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') {
      p.errors.push_back("no value in " + line);
      continue;
    }
    std::string v = line.substr(i + 1);
    p.samples[key] = v == "+Inf" ? INFINITY : std::stod(v);
  }
  return p;
}

TEST(Metrics, CountersGaugesAndHelpLines) {
  MetricsRegistry r;
  auto& calls = r.counter("test_calls_total", "Calls by endpoint", {"endpoint", "outcome"});
  auto& plain = r.counter("test_plain_total", "An unlabelled counter");
  auto& temp = r.gauge("test_temperature", "A gauge");
  calls.with({"Mount", "ok"}).inc();
  calls.with({"Mount", "ok"}).inc(2);
  calls.with({"Mount", "NotFound"}).inc();
  calls.with({"Mount", "ok"}).inc(-5);  // ignored: counters never go down
  temp.with().set(21.5);
  temp.with().add(-1.25);

  Parsed p = parse(r.render());
  EXPECT_TRUE(p.errors.empty()) << testing::PrintToString(p.errors);
  EXPECT_EQ(p.type["test_calls_total"], "counter");
  EXPECT_EQ(p.type["test_temperature"], "gauge");
  EXPECT_EQ(p.help["test_calls_total"], "Calls by endpoint");
  EXPECT_EQ(p.samples["test_calls_total{endpoint=\"Mount\",outcome=\"ok\"}"], 3);
  EXPECT_EQ(p.samples["test_calls_total{endpoint=\"Mount\",outcome=\"NotFound\"}"], 1);
  ASSERT_TRUE(p.samples.contains("test_plain_total")) << "unlabelled families appear before their first event";
  EXPECT_EQ(p.samples["test_plain_total"], 0);
  EXPECT_EQ(p.samples["test_temperature"], 20.25);
  EXPECT_EQ(plain.with().value(), 0);
}

TEST(Metrics, LabelValuesAndHelpAreEscaped) {
  MetricsRegistry r;
  auto& g = r.gauge("test_escape", "Help with a backslash \\ and\na newline", {"volume"});
  const std::string nasty = "a\"b\\c\nd}e,f=g";
  g.with({nasty}).set(7);
  std::string text = r.render();
  EXPECT_NE(text.find("# HELP test_escape Help with a backslash \\\\ and\\na newline\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_escape{volume=\"a\\\"b\\\\c\\nd}e,f=g\"} 7\n"), std::string::npos) << text;
  Parsed p = parse(text);
  EXPECT_TRUE(p.errors.empty()) << testing::PrintToString(p.errors);
  EXPECT_EQ(p.samples["test_escape{volume=\"" + nasty + "\"}"], 7);
  EXPECT_EQ(p.help["test_escape"], "Help with a backslash \\ and\na newline");
}

TEST(Metrics, HistogramBucketsAreCumulativeWithSumAndCount) {
  MetricsRegistry r;
  auto& h = r.histogram("test_seconds", "Latency", {"op"}, {0.1, 1, 10});
  for (double v : {0.05, 0.1, 0.5, 2.0, 50.0}) h.with({"get"}).observe(v);
  Parsed p = parse(r.render());
  EXPECT_TRUE(p.errors.empty()) << testing::PrintToString(p.errors);
  EXPECT_EQ(p.type["test_seconds"], "histogram");
  EXPECT_EQ(p.samples["test_seconds_bucket{op=\"get\",le=\"0.1\"}"], 2) << "upper bounds are inclusive";
  EXPECT_EQ(p.samples["test_seconds_bucket{op=\"get\",le=\"1\"}"], 3);
  EXPECT_EQ(p.samples["test_seconds_bucket{op=\"get\",le=\"10\"}"], 4);
  EXPECT_EQ(p.samples["test_seconds_bucket{op=\"get\",le=\"+Inf\"}"], 5);
  EXPECT_EQ(p.samples["test_seconds_count{op=\"get\"}"], 5);
  EXPECT_DOUBLE_EQ(p.samples["test_seconds_sum{op=\"get\"}"], 52.65);
}

TEST(Metrics, ConcurrentUpdatesAreAllCounted) {
  MetricsRegistry r;
  auto& c = r.counter("test_total", "c", {"worker"});
  auto& shared = r.counter("test_shared_total", "c");
  auto& h = r.histogram("test_h", "h", {}, latency_buckets());
  constexpr int kThreads = 8, kEach = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        c.with({std::to_string(t % 3)}).inc();
        shared.with().inc(0.5);
        h.with().observe(0.001);
        if (i % 1000 == 0) (void)r.render();  // readers race writers
      }
    });
  }
  for (auto& t : threads) t.join();
  Parsed p = parse(r.render());
  EXPECT_TRUE(p.errors.empty());
  double sum = 0;
  for (int w = 0; w < 3; ++w) sum += p.samples["test_total{worker=\"" + std::to_string(w) + "\"}"];
  EXPECT_EQ(sum, kThreads * kEach);
  EXPECT_EQ(p.samples["test_shared_total"], kThreads * kEach * 0.5);
  EXPECT_EQ(p.samples["test_h_count"], kThreads * kEach);
  EXPECT_EQ(p.samples["test_h_bucket{le=\"0.001\"}"], kThreads * kEach);
  EXPECT_EQ(p.samples["test_h_bucket{le=\"0.0005\"}"], 0);
}

TEST(Metrics, CollectorsRunAtEveryRenderAndSeriesCanBeRemoved) {
  MetricsRegistry r;
  auto& g = r.gauge("test_volumes", "v");
  auto& per = r.gauge("test_last", "per volume", {"volume"});
  int n = 0;
  r.add_collector([&] { g.with().set(++n); });
  per.with({"a"}).set(1);
  per.with({"b"}).set(2);
  Gauge& held = per.with({"a"});
  per.remove({"a"});
  held.set(99);  // a recorder that kept the reference: harmless, hidden
  Parsed p1 = parse(r.render());
  Parsed p2 = parse(r.render());
  EXPECT_EQ(p1.samples["test_volumes"], 1);
  EXPECT_EQ(p2.samples["test_volumes"], 2);
  EXPECT_FALSE(p2.samples.contains("test_last{volume=\"a\"}"));
  EXPECT_EQ(p2.samples["test_last{volume=\"b\"}"], 2);
  EXPECT_EQ(per.with({"a"}).value(), 0) << "a removed series starts afresh";
  per.clear();
  EXPECT_FALSE(parse(r.render()).samples.contains("test_last{volume=\"b\"}"));
}

TEST(Metrics, RegistrationMistakesThrow) {
  MetricsRegistry r;
  EXPECT_THROW(r.counter("bad name", "x"), std::invalid_argument);
  EXPECT_THROW(r.counter("0starts_with_digit", "x"), std::invalid_argument);
  EXPECT_THROW(r.counter("ok_total", "x", {"bad-label"}), std::invalid_argument);
  EXPECT_THROW(r.counter("ok_total", "x", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(r.histogram("h", "x", {"le"}, {1}), std::invalid_argument);
  EXPECT_THROW(r.histogram("h", "x", {}, {1, 1}), std::invalid_argument);
  auto& c = r.counter("same_total", "x", {"a"});
  EXPECT_EQ(&r.counter("same_total", "x", {"a"}), &c) << "registering twice returns the same family";
  EXPECT_THROW(r.gauge("same_total", "x", {"a"}), std::invalid_argument);
  EXPECT_THROW(r.counter("same_total", "x", {"b"}), std::invalid_argument);
  EXPECT_THROW(c.with({}), std::invalid_argument);
  EXPECT_THROW(c.with({"x", "y"}), std::invalid_argument);
}

TEST(DaemonMetrics, RecordsBackupsStoreRequestsAndDockerCalls) {
  MetricsRegistry r;
  DaemonMetrics m(r, "9.9.9");
  m.docker_call("/VolumeDriver.Mount", "ok", std::chrono::milliseconds(3));
  m.docker_call("/no/such/endpoint", "NotFound", std::chrono::milliseconds(1));
  m.backup_succeeded("db", std::chrono::seconds(12), 1000, 100, 1764200000);
  m.backup_succeeded("db", std::chrono::seconds(3), 500, 0, 1764200100);
  m.backup_failed("db", std::chrono::seconds(1));
  m.store_request("get", Status::ok(), std::chrono::milliseconds(2));
  m.store_request("get", Status::not_found("x"), std::chrono::milliseconds(2));
  m.store_retry();
  Parsed p = parse(r.render());
  EXPECT_TRUE(p.errors.empty()) << testing::PrintToString(p.errors);
  EXPECT_EQ(p.samples["stowage_build_info{version=\"9.9.9\"}"], 1);
  EXPECT_EQ(p.samples["stowage_docker_calls_total{endpoint=\"Mount\",outcome=\"ok\"}"], 1);
  EXPECT_EQ(p.samples["stowage_docker_calls_total{endpoint=\"other\",outcome=\"NotFound\"}"], 1);
  EXPECT_EQ(p.samples["stowage_docker_call_duration_seconds_count{endpoint=\"Mount\"}"], 1);
  EXPECT_EQ(p.samples["stowage_backup_read_bytes_total{volume=\"db\"}"], 1500);
  EXPECT_EQ(p.samples["stowage_backup_added_bytes_total{volume=\"db\"}"], 100);
  EXPECT_EQ(p.samples["stowage_backup_failures_total{volume=\"db\"}"], 1);
  EXPECT_EQ(p.samples["stowage_backup_last_success_timestamp_seconds{volume=\"db\"}"], 1764200100);
  EXPECT_EQ(p.samples["stowage_backup_duration_seconds_count{outcome=\"ok\"}"], 2);
  EXPECT_EQ(p.samples["stowage_backup_duration_seconds_count{outcome=\"failed\"}"], 1);
  EXPECT_EQ(p.samples["stowage_store_requests_total{operation=\"get\",outcome=\"ok\"}"], 1);
  EXPECT_EQ(p.samples["stowage_store_requests_total{operation=\"get\",outcome=\"NotFound\"}"], 1);
  EXPECT_EQ(p.samples["stowage_store_retries_total"], 1);
  m.forget_volume("db");
  Parsed q = parse(r.render());
  EXPECT_FALSE(q.samples.contains("stowage_backup_last_success_timestamp_seconds{volume=\"db\"}"));
}

}  // namespace
}  // namespace stowage
