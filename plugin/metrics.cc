#include "metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace stowage {

namespace {

bool valid_name(std::string_view n, bool allow_colon) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':') ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

void check_names(const std::string& name, const std::vector<std::string>& labels) {
  if (!valid_name(name, true)) throw std::invalid_argument("invalid metric name '" + name + "'");
  for (const auto& l : labels) {
    if (!valid_name(l, false) || l.starts_with("__") || l == "le") {
      throw std::invalid_argument("invalid label name '" + l + "' for metric '" + name + "'");
    }
  }
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    // The shortest form that reads back as the same double.
    for (int prec = 15; prec <= 17; ++prec) {
      std::snprintf(buf, sizeof buf, "%.*g", prec, v);
      if (std::strtod(buf, nullptr) == v) break;
    }
  }
  return buf;
}

std::string escape_help(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}` (with an extra label appended when `extra` is non-empty), or
// "" for no labels.
std::string label_set(const std::vector<std::string>& names, const LabelValues& values,
                      std::string_view extra_name = {}, std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
  return out;
}

void atomic_add(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

template <typename T>
void header(std::string& out, const Family<T>& f, std::string_view type) {
  out += "# HELP " + f.name() + " " + escape_help(f.help()) + "\n";
  out += "# TYPE " + f.name() + " ";
  out += type;
  out += '\n';
}

// Counters and gauges: one `name{labels} value` line per series.
template <typename T>
void render_values(std::string& out, const Family<T>& f, std::string_view type) {
  header(out, f, type);
  f.for_each([&](const LabelValues& v, const T& series) {
    out += f.name() + label_set(f.label_names(), v) + " " + format_value(series.value()) + "\n";
  });
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<double> latency_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

void Counter::inc(double v) {
  if (!(v >= 0)) return;
  atomic_add(v_, v);
}

void Gauge::add(double v) { atomic_add(v_, v); }

void Histogram::observe(double v) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < bounds_->size(); ++i) {
    if (v <= (*bounds_)[i]) {
      ++counts_[i];
      break;
    }
  }
  ++count_;
  sum_ += v;
}

Histogram::Snapshot Histogram::snapshot() const {
  std::lock_guard lock(mu_);
  Snapshot s;
  uint64_t acc = 0;
  for (uint64_t c : counts_) {
    acc += c;
    s.cumulative.push_back(acc);
  }
  s.count = count_;
  s.sum = sum_;
  return s;
}

template <typename T>
T& Family<T>::with(const LabelValues& values) {
  if (values.size() != labels_.size()) {
    throw std::invalid_argument("metric '" + name_ + "' takes " + std::to_string(labels_.size()) +
                                " label values, got " + std::to_string(values.size()));
  }
  std::lock_guard lock(mu_);
  auto& slot = series_[values];
  if (!slot) {
    if constexpr (std::is_same_v<T, Histogram>) {
      slot = std::make_unique<Histogram>(&bounds_);
    } else {
      slot = std::make_unique<T>();
    }
  }
  return *slot;
}

template <typename T>
void Family<T>::remove(const LabelValues& values) {
  std::lock_guard lock(mu_);
  auto it = series_.find(values);
  if (it == series_.end()) return;
  removed_.push_back(std::move(it->second));
  series_.erase(it);
}

template <typename T>
void Family<T>::clear() {
  std::lock_guard lock(mu_);
  for (auto& [values, series] : series_) removed_.push_back(std::move(series));
  series_.clear();
}

template <typename T>
void Family<T>::for_each(const std::function<void(const LabelValues&, const T&)>& fn) const {
  std::lock_guard lock(mu_);
  for (const auto& [values, series] : series_) fn(values, *series);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

MetricsRegistry::Entry* MetricsRegistry::find_or_check(const std::string& name, Kind kind,
                                                       const std::vector<std::string>& labels) {
  check_names(name, labels);
  for (auto& e : entries_) {
    const std::string& existing = e->counter ? e->counter->name() : e->gauge ? e->gauge->name() : e->histogram->name();
    if (existing != name) continue;
    const auto& existing_labels = e->counter ? e->counter->label_names()
                                  : e->gauge ? e->gauge->label_names()
                                             : e->histogram->label_names();
    if (e->kind != kind || existing_labels != labels) {
      throw std::invalid_argument("metric '" + name + "' already registered with another type or labels");
    }
    return e.get();
  }
  return nullptr;
}

Family<Counter>& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                          std::vector<std::string> labels) {
  std::lock_guard lock(mu_);
  if (Entry* e = find_or_check(name, Kind::kCounter, labels)) return *e->counter;
  auto e = std::make_unique<Entry>();
  e->kind = Kind::kCounter;
  e->counter = std::make_unique<Family<Counter>>(name, help, std::move(labels));
  if (e->counter->label_names().empty()) e->counter->with();
  entries_.push_back(std::move(e));
  return *entries_.back()->counter;
}

Family<Gauge>& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                                      std::vector<std::string> labels) {
  std::lock_guard lock(mu_);
  if (Entry* e = find_or_check(name, Kind::kGauge, labels)) return *e->gauge;
  auto e = std::make_unique<Entry>();
  e->kind = Kind::kGauge;
  e->gauge = std::make_unique<Family<Gauge>>(name, help, std::move(labels));
  if (e->gauge->label_names().empty()) e->gauge->with();
  entries_.push_back(std::move(e));
  return *entries_.back()->gauge;
}

Family<Histogram>& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                              std::vector<std::string> labels, std::vector<double> bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      throw std::invalid_argument("histogram '" + name + "': bucket bounds must be finite and increasing");
    }
  }
  std::lock_guard lock(mu_);
  if (Entry* e = find_or_check(name, Kind::kHistogram, labels)) return *e->histogram;
  auto e = std::make_unique<Entry>();
  e->kind = Kind::kHistogram;
  e->histogram = std::make_unique<Family<Histogram>>(name, help, std::move(labels), std::move(bounds));
  if (e->histogram->label_names().empty()) e->histogram->with();
  entries_.push_back(std::move(e));
  return *entries_.back()->histogram;
}

void MetricsRegistry::add_collector(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(fn));
}

std::string MetricsRegistry::render() const {
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard lock(mu_);
    collectors = collectors_;
  }
  for (const auto& c : collectors) c();
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& e : entries_) {
    switch (e->kind) {
      case Kind::kCounter: render_values(out, *e->counter, "counter"); break;
      case Kind::kGauge: render_values(out, *e->gauge, "gauge"); break;
      case Kind::kHistogram: {
        const auto& f = *e->histogram;
        header(out, f, "histogram");
        f.for_each([&](const LabelValues& v, const Histogram& h) {
          auto s = h.snapshot();
          for (size_t i = 0; i < f.bounds().size(); ++i) {
            out += f.name() + "_bucket" + label_set(f.label_names(), v, "le", format_value(f.bounds()[i])) + " " +
                   std::to_string(s.cumulative[i]) + "\n";
          }
          out += f.name() + "_bucket" + label_set(f.label_names(), v, "le", "+Inf") + " " +
                 std::to_string(s.count) + "\n";
          out += f.name() + "_sum" + label_set(f.label_names(), v) + " " + format_value(s.sum) + "\n";
          out += f.name() + "_count" + label_set(f.label_names(), v) + " " + std::to_string(s.count) + "\n";
        });
        break;
      }
    }
  }
  return out;
}

}  // namespace stowage
