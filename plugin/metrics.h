// A small, thread-safe metrics registry rendered in the Prometheus text
// exposition format (version 0.0.4): counters, gauges and histograms, each a
// family of series told apart by label values. The daemon owns one registry
// and passes it to whoever records; there is no global registry.
//
// Names and label names are fixed by the code, so a bad one is a programming
// error (std::invalid_argument at registration), not a runtime Status. Label
// values are arbitrary bytes and are escaped on output.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace stowage {

using LabelValues = std::vector<std::string>;

// A value that only goes up (resets only when the daemon restarts).
class Counter {
 public:
  // `v` must be >= 0; negative increments are ignored.
  void inc(double v = 1);
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  void add(double v);
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

// Observations counted into fixed buckets (upper bounds, inclusive), plus
// their sum and count.
class Histogram {
 public:
  explicit Histogram(const std::vector<double>* bounds) : bounds_(bounds), counts_(bounds->size(), 0) {}
  void observe(double v);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, cumulative
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double>* bounds_;  // owned by the family
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

// The series of one metric. with() creates a series on first use; the
// reference stays valid for the family's lifetime, even across remove() (a
// removed series is only hidden from the output), so hot paths can keep it
// and a recorder racing a remove() never touches freed memory.
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> labels, std::vector<double> bounds = {})
      : name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)), bounds_(std::move(bounds)) {}

  // std::invalid_argument if values.size() differs from the label names.
  T& with(const LabelValues& values = {});
  // Hides one series from the output (e.g. the gauge of a removed volume); a
  // later with() of the same values starts a fresh one. Missing is OK.
  void remove(const LabelValues& values);
  // Hides every series.
  void clear();

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return labels_; }
  const std::vector<double>& bounds() const { return bounds_; }
  // Calls fn(values, series) for each series, sorted by label values, under
  // the family's lock.
  void for_each(const std::function<void(const LabelValues&, const T&)>& fn) const;

 private:
  std::string name_, help_;
  std::vector<std::string> labels_;
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<LabelValues, std::unique_ptr<T>> series_;
  std::vector<std::unique_ptr<T>> removed_;  // kept alive for holders of references
};

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registers a family (or returns the one registered under `name` if it has
  // the same type and label names; std::invalid_argument otherwise, and for
  // invalid metric or label names). Unlabelled families start with one series
  // at 0, so they appear in the output before the first event.
  Family<Counter>& counter(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  Family<Gauge>& gauge(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  // `bounds`: strictly increasing, finite bucket upper bounds (+Inf is implied).
  Family<Histogram>& histogram(const std::string& name, const std::string& help, std::vector<std::string> labels,
                               std::vector<double> bounds);

  // Runs at the start of every render(), before anything is read: for gauges
  // whose value is computed from current state (number of volumes).
  void add_collector(std::function<void()> fn);

  // The whole registry in the text exposition format: "# HELP" and "# TYPE"
  // per family in registration order, then its samples.
  std::string render() const;

  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Entry {
    Kind kind;
    std::unique_ptr<Family<Counter>> counter;
    std::unique_ptr<Family<Gauge>> gauge;
    std::unique_ptr<Family<Histogram>> histogram;
  };
  Entry* find_or_check(const std::string& name, Kind kind, const std::vector<std::string>& labels);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::vector<std::function<void()>> collectors_;
};

// Bucket bounds for request latencies in seconds: 0.5 ms .. 60 s.
std::vector<double> latency_buckets();

// Escapes a label value for the text format (\\, \" and \n).
std::string escape_label_value(std::string_view v);

}  // namespace stowage
