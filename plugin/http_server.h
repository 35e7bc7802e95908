// A small HTTP/1.1 server on a unix socket (Boost.Beast), used for both the
// Docker plugin socket and the admin socket, or on a TCP address (the
// optional loopback metrics endpoint). Requests are read with a body
// limit and an idle timeout, passed to one handler, and answered; keep-alive is
// honoured. Handlers run on the server's I/O threads and may block briefly;
// run the io_context on several threads. Requests that may wait for the disk
// can be sent to a pool of their own (Options::pool_for).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "logger.h"
#include "stowage/status.h"

namespace stowage {

struct HttpRequest {
  std::string method;  // "POST", "GET", ...
  std::string target;  // "/VolumeDriver.Create", "/v1/volumes?x=y"
  std::string body;
  // Unique per request, also across daemon restarts ("docker-3fa91c-17");
  // every line logged while the handler runs carries it as req=… (LogScope).
  std::string request_id;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string request_id;  // set by the server; sent as X-Request-Id
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// Builds the response for a request the server itself refuses (too large,
// malformed, timed out): lets each API keep its own error shape.
using HttpErrorFormatter = std::function<HttpResponse(int status, std::string_view message)>;

class HttpServer {
 public:
  struct Options {
    std::string socket_path;
    unsigned socket_mode = 0600;
    size_t body_limit = 1 << 20;
    // After refusing a request (too big, malformed), at most this much more
    // input is read and discarded before the connection closes, so a client
    // still sending its body reads the refusal instead of a reset.
    size_t drain_limit = 16 << 20;
    std::chrono::seconds idle_timeout{120};  // per request, header to last body byte
    size_t max_connections = 4096;
    std::string name = "http";  // for logs and request IDs
    // The pool a request's handler runs on; nullptr (or no function): the
    // I/O thread that read it. Requests that may wait (for a journal flush,
    // a lease, a usage walk, a network probe) go to a pool, so that what
    // stalls cannot occupy every I/O thread and hold up the requests that
    // never wait (Docker's Get and Path). Pools must outlive the server and
    // its connections' work.
    std::function<boost::asio::thread_pool*(const HttpRequest&)> pool_for;
  };

  // Binds and listens on options.socket_path (a stale socket file there is
  // replaced; any other file is an error) and starts accepting on `ioc`. The
  // caller runs `ioc`.
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> listen(boost::asio::io_context& ioc, Options options,
                                                                 HttpHandler handler, HttpErrorFormatter on_error,
                                                                 Logger& log);
  // The same on a TCP address "IP:PORT" ("[::1]:9723", "localhost:9723"; port
  // 0 picks a free one, see local_port()). The caller decides which addresses
  // are acceptable (config.h refuses non-loopback by default).
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> listen_tcp(boost::asio::io_context& ioc, Options options,
                                                                     const std::string& address, HttpHandler handler,
                                                                     HttpErrorFormatter on_error, Logger& log);
  ~HttpServer();

  // The bound TCP port (0 for unix sockets).
  uint16_t local_port() const;

  // Stops accepting and removes the socket file. In-flight requests finish.
  void stop();

  struct Impl;

 private:
  explicit HttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  static Result<std::unique_ptr<HttpServer>> start(boost::asio::io_context& ioc, Options options, HttpHandler handler,
                                                   HttpErrorFormatter on_error, Logger& log,
                                                   const boost::asio::generic::stream_protocol::endpoint& endpoint,
                                                   std::string_view where);
  std::shared_ptr<Impl> impl_;
};

}  // namespace stowage
