// Plugin call latency and idle memory of a real stowaged.
//
// Starts stowaged in a scratch directory, then for 1, 50 and 200 concurrent
// clients runs Create → Mount → Unmount → Remove cycles over the plugin socket
// (each client its own connection and volume, as Docker does per container)
// and prints p50/p99/max per call, throughput, the daemon's CPU time per call
// (user + system, which includes the kernel's work for fsync), and its RSS
// when idle.
//
// Two load shapes:
//  - paced: each client waits `think` ms between calls, like dockerd starting
//    and stopping containers. This is where the latency target applies.
//  - saturated: no think time. Latency is then queueing by Little's law
//    (clients / throughput), so this mode reports the throughput ceiling.
// Targets (DESIGN §8): p99 < 5 ms at 200 clients, idle RSS < 20 MB. Build with
// -DCMAKE_BUILD_TYPE=Release (not the sanitizer build) for meaningful numbers.
// Usage: plugin_bench [cycles=20] [think_ms=50]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "daemon_harness.h"

using namespace stowage::test;
using Clock = std::chrono::steady_clock;

namespace {

long rss_kib(pid_t pid) {
  std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
  auto pos = status.find("VmRSS:");
  return pos == std::string::npos ? -1 : std::stol(status.substr(pos + 6));
}

// User + system CPU time the process has used, in microseconds.
double cpu_us(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
  std::istringstream in(stat.substr(stat.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 1; i <= 13 && in >> field; ++i) {
    if (i >= 12) ticks += std::stod(field);
  }
  return ticks * 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// The target applies only to a run where every call succeeded.
const char* verdict(size_t calls, int errors, double p99) {
  if (calls == 0 || errors > 0) return "  [target p99 < 5 ms: not measured, calls failed]";
  return p99 < 5.0 ? "  [target p99 < 5 ms: met]" : "  [target p99 < 5 ms: MISSED]";
}

// Parses a positive integer argument; anything else is a usage error.
bool parse_count(const char* text, int& out) {
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v <= 0 || v > 100000) return false;
  out = static_cast<int>(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int cycles = 20;
  int think_ms = 50;
  if (argc > 3 || (argc > 1 && !parse_count(argv[1], cycles)) || (argc > 2 && !parse_count(argv[2], think_ms))) {
    std::fprintf(stderr,
                 "usage: plugin_bench [cycles=20] [think_ms=50]\n"
                 "  cycles    Create/Mount/Unmount/Remove rounds per client (positive integer)\n"
                 "  think_ms  pause between calls in the paced mode (positive integer)\n"
                 "  STOWAGED_THREADS=N in the environment sets the daemon's --threads\n");
    return 2;
  }
  TempDir dir("stowage-bench");
  Daemon daemon(dir.path());
  std::vector<std::string> extra;
  if (const char* t = std::getenv("STOWAGED_THREADS")) extra = {"--threads", t};
  if (!daemon.start(extra)) return 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::printf("stowaged idle RSS at start: %.1f MiB (target < 20 MiB)\n", rss_kib(daemon.pid()) / 1024.0);

  std::printf("%-10s %-8s %-8s %10s %10s %10s %8s\n", "mode", "clients", "call", "p50 ms", "p99 ms", "max ms",
              "calls");
  for (auto [mode, clients] : std::vector<std::pair<std::string, int>>{
           {"paced", 1}, {"paced", 50}, {"paced", 200}, {"saturated", 1}, {"saturated", 50}, {"saturated", 200}}) {
    int think = mode == "paced" ? think_ms : 0;
    auto started = Clock::now();
    double cpu_before = cpu_us(daemon.pid());
    std::map<std::string, std::vector<double>> lat;
    std::mutex mu;
    int errors = 0;
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        PluginClient pc(daemon.plugin_socket());
        std::map<std::string, std::vector<double>> mine;
        int my_errors = 0;
        std::string name = "bench" + std::to_string(c);
        for (int i = 0; i < cycles; ++i) {
          for (const char* call : {"Create", "Mount", "Unmount", "Remove"}) {
            nlohmann::json body = {{"Name", name}};
            if (call[0] == 'M' || call[0] == 'U') body["ID"] = "id" + std::to_string(i);
            auto t0 = Clock::now();
            auto r = pc.call(call, body);
            double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            if (r.status != 200) ++my_errors;
            mine[call].push_back(ms);
            if (think > 0) std::this_thread::sleep_for(std::chrono::milliseconds(think));
          }
        }
        std::lock_guard l(mu);
        errors += my_errors;
        for (auto& [k, v] : mine) lat[k].insert(lat[k].end(), v.begin(), v.end());
      });
    }
    for (auto& t : threads) t.join();
    double secs = std::chrono::duration<double>(Clock::now() - started).count();
    double daemon_cpu = cpu_us(daemon.pid()) - cpu_before;
    std::vector<double> all;
    for (auto& [call, v] : lat) {
      all.insert(all.end(), v.begin(), v.end());
      size_t n = v.size();
      double p50 = pct(v, 0.50), p99 = pct(v, 0.99), mx = pct(v, 1.0);
      std::printf("%-10s %-8d %-8s %10.2f %10.2f %10.2f %8zu\n", mode.c_str(), clients, call.c_str(), p50, p99, mx, n);
    }
    size_t n = all.size();
    double p50 = pct(all, 0.50), p99 = pct(all, 0.99);
    std::printf("%-10s %-8d %-8s %10.2f %10.2f %10s %8zu  errors=%d  %.0f calls/s  daemon CPU %.0f us/call%s\n",
                mode.c_str(), clients, "all", p50, p99, "", n, errors, static_cast<double>(n) / secs,
                n ? daemon_cpu / static_cast<double>(n) : 0.0,
                mode == "paced" && clients == 200 ? verdict(n, errors, p99) : "");
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::printf("stowaged idle RSS after load: %.1f MiB (target < 20 MiB)\n", rss_kib(daemon.pid()) / 1024.0);
  return 0;
}
