// HttpServer: connections that arrive together are all served (or, past the
// connection limit, closed without an answer), on a real unix socket.
#include "http_server.h"

#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace stowage {
namespace {

using test::TempDir;

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  return addr;
}

int connect_to(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un addr = unix_address(path);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Returns everything the server sent on `fd` until it closed the connection
// (or reset it) or a whole response with `body` arrived.
std::string read_response(int fd, const std::string& body) {
  std::string in;
  char buf[4096];
  while (in.find(body) == std::string::npos || in.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  return in;
}

void send_request(int fd, const std::string& body) {
  std::string req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                    body;
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
}

struct Fixture {
  TempDir dir{"stowage-http"};
  std::mutex mu;
  std::vector<std::string> log_lines;
  Logger log{LogFormat::kLogfmt, LogLevel::kInfo, [this](std::string_view l) {
               std::lock_guard lock(mu);
               log_lines.emplace_back(l);
             }};
  boost::asio::io_context ioc;
  std::unique_ptr<HttpServer> server;

  std::vector<int> clients;  // closed by the destructor

  ~Fixture() {
    for (int fd : clients) ::close(fd);
  }

  std::string socket() const { return dir.path() + "/s.sock"; }

  // What client i sends first.
  static std::string body(int i) { return "client-" + std::to_string(i) + ";"; }

  // Connects `n` clients, each sending body(i) at once; into `clients`.
  void connect_clients(int n) {
    for (int i = 0; i < n; ++i) {
      int fd = connect_to(socket());
      ASSERT_GE(fd, 0) << "connect " << i << ": " << std::strerror(errno);
      clients.push_back(fd);
      send_request(fd, body(i));
    }
  }

  static HttpResponse echo(const HttpRequest& r) {
    HttpResponse out;
    out.body = r.body;
    return out;
  }

  void listen(size_t max_connections) {
    HttpServer::Options o;
    o.max_connections = max_connections;
    listen_with(std::move(o), echo);
  }

  void listen_with(HttpServer::Options o, HttpHandler handler) {
    o.socket_path = socket();
    auto s = HttpServer::listen(
        ioc, std::move(o), std::move(handler),
        [](int status, std::string_view msg) {
          HttpResponse out;
          out.status = status;
          out.body = std::string(msg);
          return out;
        },
        log);
    ASSERT_TRUE(s.is_ok()) << s.status().message();
    server = std::move(s).value();
  }

  // Runs the io_context on two threads until stop().
  std::vector<std::thread> run() {
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ioc.run(); });
    return threads;
  }
  void stop(std::vector<std::thread>& threads) {
    server->stop();
    ioc.stop();
    for (auto& t : threads) t.join();
  }
};

TEST(HttpServer, ConnectionsThatArriveTogetherAreAllServed) {
  Fixture f;
  f.listen(4096);
  // All of them wait in the listen backlog before the server runs at all.
  constexpr int kClients = 300;
  ASSERT_NO_FATAL_FAILURE(f.connect_clients(kClients));
  auto threads = f.run();
  int served = 0;
  for (int i = 0; i < kClients; ++i) {
    const int fd = f.clients[static_cast<size_t>(i)];
    const std::string body = Fixture::body(i);
    std::string got = read_response(fd, body);
    EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << "client " << i << " got: " << got;
    if (got.find(body) != std::string::npos) ++served;
    // The connection stays usable (keep-alive) for a second request.
    send_request(fd, body + "again");
    EXPECT_NE(read_response(fd, body + "again").find(body + "again"), std::string::npos);
  }
  EXPECT_EQ(served, kClients);
  f.stop(threads);
}

TEST(HttpServer, ConnectionsPastTheLimitAreClosedUnansweredAndLogged) {
  Fixture f;
  f.listen(5);
  constexpr int kClients = 12;
  ASSERT_NO_FATAL_FAILURE(f.connect_clients(kClients));
  auto threads = f.run();
  int answered = 0, closed = 0;
  for (int i = 0; i < kClients; ++i) {
    std::string got = read_response(f.clients[static_cast<size_t>(i)], Fixture::body(i));
    if (got.empty()) {
      ++closed;
    } else {
      EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
      ++answered;
    }
  }
  // The five that were admitted keep their connections open, so no more fit.
  EXPECT_EQ(answered, 5);
  EXPECT_EQ(closed, kClients - 5);
  f.stop(threads);
  std::lock_guard lock(f.mu);
  int refusals = 0;
  for (const auto& l : f.log_lines) refusals += l.find("too many connections") != std::string::npos;
  EXPECT_EQ(refusals, kClients - 5);
}

// Sends the headers of a POST announcing `length` body bytes, then waits
// until the server's answer is there to read.
void announce_body_and_await_answer(int fd, size_t length) {
  std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
  ASSERT_EQ(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 60'000), 1) << "no answer to the headers within 60 s";
}

// A body over the limit is refused as soon as the headers announce it, while
// the client may still be writing it. The client must be able to finish and
// then read the refusal: a server that closed at once would make its writes
// fail (EPIPE) before it got to the answer, which is what curl reports.
TEST(HttpServer, AClientStillSendingARefusedBodyGetsToReadTheRefusal) {
  Fixture f;
  HttpServer::Options o;
  o.body_limit = 1024;
  f.listen_with(std::move(o), Fixture::echo);
  auto threads = f.run();
  int fd = connect_to(f.socket());
  ASSERT_GE(fd, 0);
  f.clients.push_back(fd);
  const std::string body(512 * 1024, 'b');  // more than the socket buffers hold
  ASSERT_NO_FATAL_FAILURE(announce_body_and_await_answer(fd, body.size()));
  ASSERT_EQ(::send(fd, body.data(), body.size(), MSG_NOSIGNAL), static_cast<ssize_t>(body.size()))
      << std::strerror(errno);
  const std::string got = read_response(fd, "exceeds the limit of 1024 bytes");
  EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
  // Our EOF ends the server's draining; it has nothing more to say.
  ::shutdown(fd, SHUT_WR);
  char c;
  EXPECT_EQ(::recv(fd, &c, 1, 0), 0);
  f.stop(threads);
}

// The draining is bounded: a client that goes on sending is cut off after
// drain_limit bytes (and still finds the refusal in its receive queue).
TEST(HttpServer, DrainingARefusedBodyStopsAtTheDrainLimit) {
  Fixture f;
  HttpServer::Options o;
  o.body_limit = 1024;
  o.drain_limit = 64 * 1024;
  f.listen_with(std::move(o), Fixture::echo);
  auto threads = f.run();
  int fd = connect_to(f.socket());
  ASSERT_GE(fd, 0);
  f.clients.push_back(fd);
  // A server that never stops reading would make send time out (EAGAIN).
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  constexpr size_t kMax = 64 << 20;
  ASSERT_NO_FATAL_FAILURE(announce_body_and_await_answer(fd, size_t{1} << 30));
  const std::string chunk(64 * 1024, 'c');
  size_t sent = 0;
  int err = 0;
  while (sent < kMax) {
    ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n < 0) {
      err = errno;
      break;
    }
    sent += static_cast<size_t>(n);
  }
  EXPECT_TRUE(err == EPIPE || err == ECONNRESET) << "sent " << sent << " bytes, then: " << std::strerror(err);
  EXPECT_LT(sent, kMax);
  const std::string got = read_response(fd, "exceeds the limit of 1024 bytes");
  EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
  f.stop(threads);
}

// Requests that may wait (Options::pool_for) run on their own pool: with
// more of them blocked than there are I/O threads, another request is still
// answered. Without the pool, the two I/O threads would both be blocked and
// the slow handlers would never all start (the wait below gives up after
// 60 s, a bound on liveness, not a speed goal).
TEST(HttpServer, RequestsThatMayWaitDoNotHoldUpTheOthers) {
  Fixture f;
  boost::asio::thread_pool wait_pool(8);
  std::mutex mu;
  std::condition_variable cv;
  int waiting = 0;
  bool open = false;
  HttpServer::Options o;
  o.pool_for = [&](const HttpRequest& r) { return r.body.rfind("slow", 0) == 0 ? &wait_pool : nullptr; };
  f.listen_with(std::move(o), [&](const HttpRequest& r) {
    if (r.body.rfind("slow", 0) == 0) {
      std::unique_lock lock(mu);
      ++waiting;
      cv.notify_all();
      cv.wait(lock, [&] { return open; });
    }
    return Fixture::echo(r);
  });
  auto threads = f.run();  // two I/O threads
  constexpr int kSlow = 6;
  std::vector<int> slow;
  for (int i = 0; i < kSlow; ++i) {
    const int fd = connect_to(f.socket());
    ASSERT_GE(fd, 0);
    f.clients.push_back(fd);
    slow.push_back(fd);
    send_request(fd, "slow-" + std::to_string(i));
  }
  bool all_started = false;
  {
    std::unique_lock lock(mu);
    all_started = cv.wait_for(lock, std::chrono::seconds(60), [&] { return waiting == kSlow; });
    EXPECT_TRUE(all_started) << waiting << " of " << kSlow << " slow handlers started";
  }
  if (all_started) {
    const int fast = connect_to(f.socket());
    ASSERT_GE(fast, 0);
    f.clients.push_back(fast);
    send_request(fast, "fast");
    EXPECT_NE(read_response(fast, "fast").find("fast"), std::string::npos);
  }
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(waiting, kSlow);  // all still blocked when the fast one was answered
    open = true;
  }
  cv.notify_all();
  for (int i = 0; i < kSlow; ++i) {
    const std::string body = "slow-" + std::to_string(i);
    const std::string got = read_response(slow[static_cast<size_t>(i)], body);
    EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
    EXPECT_NE(got.find(body), std::string::npos);
  }
  f.stop(threads);
  wait_pool.join();
}

TEST(HttpServer, StopEndsAcceptingAndRemovesTheSocket) {
  Fixture f;
  f.listen(4096);
  auto threads = f.run();
  int fd = connect_to(f.socket());
  ASSERT_GE(fd, 0);
  send_request(fd, "before-stop");
  EXPECT_NE(read_response(fd, "before-stop").find("before-stop"), std::string::npos);
  ::close(fd);
  f.server->stop();
  EXPECT_NE(::access(f.socket().c_str(), F_OK), 0) << "socket file still there";
  EXPECT_LT(connect_to(f.socket()), 0);
  f.ioc.stop();
  for (auto& t : threads) t.join();
}


Result<std::unique_ptr<HttpServer>> listen_at(boost::asio::io_context& ioc, const std::string& path, Logger& log) {
  HttpServer::Options o;
  o.socket_path = path;
  return HttpServer::listen(ioc, std::move(o), Fixture::echo, [](int, std::string_view) { return HttpResponse{}; },
                            log);
}

// Leaves a socket file at `path` that nobody listens on, as a killed server does.
void leave_stale_socket(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un addr = unix_address(path);
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ::close(fd);
}

// A second daemon with another state root does not contend for the first
// one's state-root lock: the socket itself must tell that it is in use.
TEST(HttpServer, RefusesASocketAnotherServerListensOn) {
  Fixture f;
  f.listen(4096);
  auto threads = f.run();
  Fixture other;
  auto second = listen_at(other.ioc, f.socket(), other.log);
  ASSERT_FALSE(second.is_ok()) << "took over a socket in use";
  EXPECT_EQ(second.status().code(), Code::kAlreadyExists);
  EXPECT_NE(second.status().message().find("is in use"), std::string::npos) << second.status().message();
  int fd = connect_to(f.socket());
  ASSERT_GE(fd, 0) << "the first server lost its socket";
  send_request(fd, "still-served");
  EXPECT_NE(read_response(fd, "still-served").find("still-served"), std::string::npos);
  ::close(fd);
  f.stop(threads);
}

// A live server that accepts nothing (hung, or stopped with SIGSTOP) with a
// full backlog: the probe must not wait for it forever.
TEST(HttpServer, RefusesASocketWhoseServerIsStuckWithAFullBacklog) {
  Fixture f;
  const int stuck = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un addr = unix_address(f.socket());
  ASSERT_EQ(::bind(stuck, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ASSERT_EQ(::listen(stuck, 1), 0);
  std::vector<int> queued;
  for (int i = 0; i < 64; ++i) {
    const int c = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const bool in = ::connect(c, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    queued.push_back(c);
    if (!in) break;  // EAGAIN: the backlog is full
  }
  auto second = listen_at(f.ioc, f.socket(), f.log);
  EXPECT_EQ(second.status().code(), Code::kAlreadyExists) << second.status().to_string();
  for (int c : queued) ::close(c);
  ::close(stuck);
}

TEST(HttpServer, ReplacesASocketNobodyListensOn) {
  Fixture f;
  leave_stale_socket(f.socket());
  f.listen(4096);
  auto threads = f.run();
  int fd = connect_to(f.socket());
  ASSERT_GE(fd, 0);
  send_request(fd, "new-server");
  EXPECT_NE(read_response(fd, "new-server").find("new-server"), std::string::npos);
  ::close(fd);
  f.stop(threads);
}

// stop() removes its own socket file only: one that replaced it at the same
// path (a newer daemon's) stays.
TEST(HttpServer, StopLeavesASocketFileThatIsNotItsOwn) {
  Fixture f;
  f.listen(4096);
  auto threads = f.run();
  ASSERT_EQ(::unlink(f.socket().c_str()), 0);
  leave_stale_socket(f.socket());
  f.stop(threads);
  EXPECT_EQ(::access(f.socket().c_str(), F_OK), 0) << "stop() removed another server's socket";
}

}  // namespace
}  // namespace stowage
