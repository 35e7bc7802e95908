// A small HTTP/1.1 server on a unix socket (Boost.Beast), used for both the
// Docker plugin socket and the admin socket. Requests are read with a body
// limit and an idle timeout, passed to one handler, and answered; keep-alive is
// honoured. Handlers run on the server's I/O threads and may block briefly
// (fsync); run the io_context on several threads.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "logger.h"
#include "stowage/status.h"

namespace stowage {

struct HttpRequest {
  std::string method;  // "POST", "GET", ...
  std::string target;  // "/VolumeDriver.Create", "/v1/volumes?x=y"
  std::string body;
  std::string request_id;  // unique per request, for logs
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
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
    std::chrono::seconds idle_timeout{120};  // per request, header to last body byte
    size_t max_connections = 4096;
    std::string name = "http";  // for logs and request IDs
  };

  // Binds and listens on options.socket_path (a stale socket file there is
  // replaced; any other file is an error) and starts accepting on `ioc`. The
  // caller runs `ioc`.
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> listen(boost::asio::io_context& ioc, Options options,
                                                                 HttpHandler handler, HttpErrorFormatter on_error,
                                                                 Logger& log);
  ~HttpServer();

  // Stops accepting and removes the socket file. In-flight requests finish.
  void stop();

  struct Impl;

 private:
  explicit HttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace stowage
