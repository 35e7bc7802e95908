// Plugin call latency and idle memory of a real stowaged.
//
// Starts stowaged in a scratch directory, then for 1, 50 and 200 concurrent
// clients runs Create → Mount → Unmount → Remove cycles over the plugin socket
// (each client its own connection and volume, as Docker does per container)
// and prints p50/p99/max per call, throughput, the daemon's CPU time per call
// (user + system, which includes the kernel's work for fsync), and its RSS
// when idle.
//
// The clients are connections driven by one event-loop thread (epoll, raw
// HTTP/1.1 with keep-alive, like Docker's Go client that multiplexes its
// requests over a few threads), not one thread each: 200 client threads
// would compete with the daemon for the CPU and measure the scheduler. A
// call's latency is counted from the moment it was due to be sent, so a late
// event loop makes the numbers worse, never better.
//
// Load shapes:
//  - paced: each client waits on average `think` ms between calls, like
//    dockerd starting and stopping containers. This is where the latency
//    target applies. Clients start at random moments within the first think
//    period and draw each pause uniformly from [0, 2 * think], so arrivals are
//    independent, as those of separate containers are.
//  - burst: the same think time, but all clients start together and pause
//    exactly `think` ms, so they stay in lockstep and every call meets a burst
//    of the others' calls (the worst case for the same average load).
//  - saturated: no think time. Latency is then queueing by Little's law
//    (clients / throughput), so this mode reports the throughput ceiling.
// Targets (DESIGN §8): p99 < 5 ms at 200 clients, idle RSS < 20 MB. Build with
// -DCMAKE_BUILD_TYPE=Release (not the sanitizer build) for meaningful numbers.
// Usage: plugin_bench [cycles=20] [think_ms=50]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>
#include <queue>
#include <random>
#include <sstream>
#include <thread>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
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


enum class Shape { kPaced, kBurst, kSaturated };

struct LoadResult {
  std::map<std::string, std::vector<double>> latency_ms;  // per call name
  int errors = 0;
  std::string first_error;
};

// One client: a keep-alive connection and the volume it cycles.
struct Client {
  int fd = -1;
  std::string name;
  int cycle = 0;
  int step = 0;  // index into kCalls
  Clock::time_point due;
  bool in_flight = false;
  std::string in;
  std::mt19937 rng;
};

constexpr const char* kCalls[] = {"Create", "Mount", "Unmount", "Remove"};

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string request(const Client& c) {
  nlohmann::json body = {{"Name", c.name}};
  if (c.step == 1 || c.step == 2) body["ID"] = "id" + std::to_string(c.cycle);
  std::string b = body.dump();
  return std::string("POST /VolumeDriver.") + kCalls[c.step] +
         " HTTP/1.1\r\nHost: plugin\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: " +
         std::to_string(b.size()) + "\r\n\r\n" + b;
}

// If `in` holds a whole HTTP response, removes it and returns true with its
// status and body.
bool take_response(std::string& in, int& status, std::string& body) {
  size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string::npos) return false;
  std::string head = in.substr(0, head_end);
  for (char& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  size_t length = 0;
  if (size_t p = head.find("\r\ncontent-length:"); p != std::string::npos) {
    length = std::strtoul(head.c_str() + p + 17, nullptr, 10);
  }
  if (in.size() < head_end + 4 + length) return false;
  status = head.size() > 12 ? std::atoi(head.c_str() + 9) : 0;
  body = in.substr(head_end + 4, length);
  in.erase(0, head_end + 4 + length);
  return true;
}

// Runs `cycles` Create/Mount/Unmount/Remove rounds on each of `clients`
// connections from this one thread.
LoadResult run_load(const std::string& socket, int clients, int cycles, Shape shape, int think_ms) {
  LoadResult r;
  auto fail = [&r](const std::string& why) {
    if (r.errors++ == 0) r.first_error = why;
  };
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<Client> cs(static_cast<size_t>(clients));
  using Due = std::pair<Clock::time_point, int>;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> timers;
  auto start = Clock::now();
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  auto after = [](Clock::time_point t, double ms) {
    return t + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(ms));
  };
  int active = 0;
  for (int i = 0; i < clients; ++i) {
    Client& c = cs[static_cast<size_t>(i)];
    c.name = "bench" + std::to_string(i);
    c.rng.seed(static_cast<unsigned>(i) + 1);
    c.fd = connect_unix(socket);
    if (c.fd < 0) {
      fail(std::string("connect: ") + std::strerror(errno));
      continue;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    c.due = shape == Shape::kPaced ? after(start, think_ms * unit(c.rng)) : start;
    timers.push({c.due, i});
    ++active;
  }
  auto finish = [&](Client& c) {
    ::close(c.fd);
    c.fd = -1;
    --active;
  };
  std::vector<epoll_event> events(static_cast<size_t>(std::max(clients, 1)));
  while (active > 0) {
    // Send every call that is due.
    auto now = Clock::now();
    while (!timers.empty() && timers.top().first <= now) {
      Client& c = cs[static_cast<size_t>(timers.top().second)];
      timers.pop();
      std::string req = request(c);
      // Requests are a few hundred bytes: a blocking send never waits long.
      if (::send(c.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
        fail(std::string("send: ") + std::strerror(errno));
        finish(c);
        continue;
      }
      c.in_flight = true;
    }
    int timeout_ms = -1;
    if (!timers.empty()) {
      auto wait = timers.top().first - Clock::now();
      timeout_ms = static_cast<int>(std::max<int64_t>(
          0, std::chrono::ceil<std::chrono::milliseconds>(wait).count()));
    }
    int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    now = Clock::now();
    for (int k = 0; k < n; ++k) {
      Client& c = cs[events[static_cast<size_t>(k)].data.u32];
      if (c.fd < 0) continue;
      char buf[4096];
      ssize_t got = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got <= 0) {
        fail(got == 0 ? "daemon closed a connection" : std::string("recv: ") + std::strerror(errno));
        finish(c);
        continue;
      }
      c.in.append(buf, static_cast<size_t>(got));
      int status = 0;
      std::string body;
      if (!c.in_flight || !take_response(c.in, status, body)) continue;
      c.in_flight = false;
      r.latency_ms[kCalls[c.step]].push_back(std::chrono::duration<double, std::milli>(now - c.due).count());
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (status != 200 || !j.is_object() || !j.value("Err", "").empty()) {
        fail(std::string(kCalls[c.step]) + " " + c.name + ": HTTP " + std::to_string(status) + " " + body);
      }
      if (++c.step == 4) {
        c.step = 0;
        if (++c.cycle == cycles) {
          finish(c);
          continue;
        }
      }
      double pause = shape == Shape::kSaturated ? 0.0
                     : shape == Shape::kBurst   ? think_ms
                                                : 2.0 * think_ms * unit(c.rng);
      c.due = after(now, pause);
      timers.push({c.due, static_cast<int>(&c - cs.data())});
    }
  }
  ::close(ep);
  return r;
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
  for (auto [mode, shape, clients] : std::vector<std::tuple<const char*, Shape, int>>{
           {"paced", Shape::kPaced, 1},
           {"paced", Shape::kPaced, 50},
           {"paced", Shape::kPaced, 200},
           {"burst", Shape::kBurst, 200},
           {"saturated", Shape::kSaturated, 1},
           {"saturated", Shape::kSaturated, 50},
           {"saturated", Shape::kSaturated, 200}}) {
    auto started = Clock::now();
    double cpu_before = cpu_us(daemon.pid());
    LoadResult load = run_load(daemon.plugin_socket(), clients, cycles, shape, think_ms);
    double secs = std::chrono::duration<double>(Clock::now() - started).count();
    double daemon_cpu = cpu_us(daemon.pid()) - cpu_before;
    std::vector<double> all;
    for (auto& [call, v] : load.latency_ms) {
      all.insert(all.end(), v.begin(), v.end());
      std::printf("%-10s %-8d %-8s %10.2f %10.2f %10.2f %8zu\n", mode, clients, call.c_str(), pct(v, 0.50),
                  pct(v, 0.99), pct(v, 1.0), v.size());
    }
    size_t n = all.size();
    double p50 = pct(all, 0.50), p99 = pct(all, 0.99);
    std::printf("%-10s %-8d %-8s %10.2f %10.2f %10s %8zu  errors=%d  %.0f calls/s  daemon CPU %.0f us/call%s\n", mode,
                clients, "all", p50, p99, "", n, load.errors, static_cast<double>(n) / secs,
                n ? daemon_cpu / static_cast<double>(n) : 0.0,
                shape == Shape::kPaced && clients == 200 ? verdict(n, load.errors, p99) : "");
    if (load.errors > 0) std::printf("  first error: %s\n", load.first_error.c_str());
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::printf("stowaged idle RSS after load: %.1f MiB (target < 20 MiB)\n", rss_kib(daemon.pid()) / 1024.0);
  return 0;
}
