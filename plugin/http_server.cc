#include "http_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <optional>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace stowage {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = asio::local::stream_protocol;
using Stream = beast::basic_stream<local, asio::any_io_executor, beast::unlimited_rate_policy>;

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(asio::io_context& ioc, Options o, HttpHandler h, HttpErrorFormatter f, Logger& l)
      : ioc(ioc), acceptor(ioc), opts(std::move(o)), handler(std::move(h)), on_error(std::move(f)), log(l) {}

  void accept();

  asio::io_context& ioc;
  local::acceptor acceptor;
  Options opts;
  HttpHandler handler;
  HttpErrorFormatter on_error;
  Logger& log;
  std::atomic<size_t> connections{0};
  std::atomic<uint64_t> next_request{1};
  std::atomic<bool> stopped{false};
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(local::socket socket, std::shared_ptr<HttpServer::Impl> server)
      : stream_(std::move(socket)), server_(std::move(server)) {}
  ~Session() { server_->connections--; }

  void start() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(server_->opts.body_limit);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(server_->opts.idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
        ec == asio::error::operation_aborted) {
      return close();
    }
    if (ec == beast::error::timeout) {
      server_->log.debug("connection idle too long; closed", {{"server", server_->opts.name}});
      return close();
    }
    if (ec == http::error::body_limit) {
      return refuse(413, "request body exceeds the limit of " + std::to_string(server_->opts.body_limit) + " bytes");
    }
    if (ec == http::error::header_limit) return refuse(431, "request headers exceed 16 KiB");
    if (ec) return refuse(400, "malformed HTTP request: " + ec.message());

    auto& req = parser_->get();
    HttpRequest in;
    in.method = std::string(req.method_string());
    in.target = std::string(req.target());
    in.body = std::move(req.body());
    in.request_id = server_->opts.name + "-" + std::to_string(server_->next_request++);
    HttpResponse out;
    try {
      out = server_->handler(in);
    } catch (const std::exception& e) {
      server_->log.error("handler threw", {{"req", in.request_id}, {"error", e.what()}});
      out = server_->on_error(500, std::string("internal error: ") + e.what());
    }
    write(std::move(out), req.keep_alive(), req.version());
  }

  void refuse(int status, const std::string& message) {
    server_->log.warn("request refused", {{"server", server_->opts.name}, {"status", std::to_string(status)},
                                          {"error", message}});
    write(server_->on_error(status, message), /*keep_alive=*/false, 11);
  }

  void write(HttpResponse out, bool keep_alive, unsigned version) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(out.status), version);
    res->set(http::field::server, "stowaged");
    res->set(http::field::content_type, out.content_type);
    res->keep_alive(keep_alive);
    res->body() = std::move(out.body);
    res->prepare_payload();
    stream_.expires_after(server_->opts.idle_timeout);
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
      if (ec || !res->keep_alive()) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(local::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  Stream stream_;
  std::shared_ptr<HttpServer::Impl> server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept(asio::make_strand(ioc), [self = shared_from_this()](beast::error_code ec, local::socket s) {
    if (self->stopped) return;
    if (ec) {
      self->log.warn("accept failed", {{"server", self->opts.name}, {"error", ec.message()}});
      // EMFILE and friends: back off briefly instead of spinning.
      auto timer = std::make_shared<asio::steady_timer>(self->ioc, std::chrono::milliseconds(50));
      timer->async_wait([self, timer](beast::error_code) { self->accept(); });
      return;
    }
    if (self->connections.load() >= self->opts.max_connections) {
      self->log.warn("too many connections; refusing one", {{"server", self->opts.name}});
      beast::error_code ignored;
      s.close(ignored);
    } else {
      self->connections++;
      std::make_shared<Session>(std::move(s), self)->start();
    }
    self->accept();
  });
}

Result<std::unique_ptr<HttpServer>> HttpServer::listen(asio::io_context& ioc, Options options, HttpHandler handler,
                                                       HttpErrorFormatter on_error, Logger& log) {
  const std::string path = options.socket_path;
  if (path.empty()) return Status::invalid_argument("socket path is empty");
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Status::invalid_argument("socket path '" + path + "' is longer than the kernel's limit of " +
                                    std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status::already_exists(path + " exists and is not a socket; refusing to replace it");
    // The daemon lock is held, so no live daemon of ours owns this socket.
    if (::unlink(path.c_str()) != 0) return errno_status(errno, "remove stale socket " + path);
  }
  auto impl = std::make_shared<Impl>(ioc, std::move(options), std::move(handler), std::move(on_error), log);
  beast::error_code ec;
  impl->acceptor.open(local(), ec);
  if (!ec) impl->acceptor.bind(local::endpoint(path), ec);
  if (ec) return Status::io_error("bind " + path + ": " + ec.message());
  if (::chmod(path.c_str(), impl->opts.socket_mode) != 0) return errno_status(errno, "chmod " + path);
  impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::io_error("listen " + path + ": " + ec.message());
  impl->accept();
  log.info("listening", {{"server", impl->opts.name}, {"socket", path}});
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() {
  if (!impl_ || impl_->stopped.exchange(true)) return;
  asio::post(impl_->acceptor.get_executor(), [impl = impl_] {
    beast::error_code ec;
    impl->acceptor.close(ec);
  });
  ::unlink(impl_->opts.socket_path.c_str());
}

}  // namespace stowage
