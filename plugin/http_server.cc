#include "http_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <optional>
#include <random>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace stowage {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = asio::local::stream_protocol;
// Unix and TCP sockets behind one type, so one Session serves both.
using generic = asio::generic::stream_protocol;
using Stream = beast::basic_stream<generic, asio::any_io_executor, beast::unlimited_rate_policy>;

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(asio::io_context& ioc, Options o, HttpHandler h, HttpErrorFormatter f, Logger& l)
      : ioc(ioc),
        acceptor(asio::make_strand(ioc)),
        opts(std::move(o)),
        handler(std::move(h)),
        on_error(std::move(f)),
        log(l) {}

  void accept();
  // Starts a session on `s`, or closes it when max_connections are open.
  void admit(generic::socket s);

  static constexpr int kAcceptBatch = 64;

  asio::io_context& ioc;
  // On a strand: accept handlers and stop()'s close never run at once.
  asio::basic_socket_acceptor<generic> acceptor;
  Options opts;
  std::string id_prefix;  // "<name>-<random>-": request IDs unique across restarts
  HttpHandler handler;
  HttpErrorFormatter on_error;
  Logger& log;
  std::atomic<size_t> connections{0};
  std::atomic<uint64_t> next_request{1};
  std::atomic<bool> stopped{false};
  // The socket file this server bound (0/0 for TCP): stop() removes the path
  // only while it is still that file, never a socket another process bound there.
  dev_t socket_dev = 0;
  ino_t socket_ino = 0;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(generic::socket socket, std::shared_ptr<HttpServer::Impl> server)
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
    in.request_id = server_->id_prefix + std::to_string(server_->next_request++);
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    const auto& o = server_->opts;
    if (asio::thread_pool* pool = o.pool_for ? o.pool_for(in) : nullptr) {
      // No read is pending meanwhile: the session waits for this response.
      asio::post(*pool, [self = shared_from_this(), in = std::move(in), keep_alive, version]() mutable {
        HttpResponse out = self->handle(in);
        asio::post(self->stream_.get_executor(), [self, out = std::move(out), keep_alive, version]() mutable {
          self->write(std::move(out), keep_alive, version);
        });
      });
      return;
    }
    write(handle(in), keep_alive, version);
  }

  HttpResponse handle(const HttpRequest& in) {
    HttpResponse out;
    try {
      LogScope scope("req", in.request_id);
      out = server_->handler(in);
    } catch (const std::exception& e) {
      server_->log.error("handler threw", {{"req", in.request_id}, {"error", e.what()}});
      out = server_->on_error(500, std::string("internal error: ") + e.what());
    }
    out.request_id = in.request_id;
    return out;
  }

  // Answers a request the parser gave up on, then drains (see drain()).
  void refuse(int status, const std::string& message) {
    server_->log.warn("request refused", {{"server", server_->opts.name}, {"status", std::to_string(status)},
                                          {"error", message}});
    drain_after_write_ = true;
    write(server_->on_error(status, message), /*keep_alive=*/false, 11);
  }

  // After refusing a request, the client may still be writing its body (a
  // 413 is sent as soon as the headers announce too much). Closing at once
  // would make the client's next write fail with EPIPE or ECONNRESET, and
  // most clients then report that send error instead of reading the answer
  // already waiting for them. So: end our side, read and discard what the
  // client still sends, and close on its EOF, after opts.drain_limit bytes,
  // or after kDrainTime, whichever comes first.
  void drain() {
    beast::error_code ignored;
    stream_.socket().shutdown(generic::socket::shutdown_send, ignored);
    stream_.expires_after(kDrainTime);
    drain_some();
  }

  void drain_some() {
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(64 * 1024), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ >= self->server_->opts.drain_limit) return self->close();
      self->drain_some();
    });
  }

  void write(HttpResponse out, bool keep_alive, unsigned version) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(out.status), version);
    res->set(http::field::server, "stowaged");
    res->set(http::field::content_type, out.content_type);
    if (!out.request_id.empty()) res->set("X-Request-Id", out.request_id);
    res->keep_alive(keep_alive);
    res->body() = std::move(out.body);
    res->prepare_payload();
    stream_.expires_after(server_->opts.idle_timeout);
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
      if (!ec && self->drain_after_write_) return self->drain();
      if (ec || !res->keep_alive()) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(generic::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  static constexpr std::chrono::seconds kDrainTime{5};

  Stream stream_;
  std::shared_ptr<HttpServer::Impl> server_;
  bool drain_after_write_ = false;
  size_t drained_ = 0;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

}  // namespace

void HttpServer::Impl::admit(generic::socket s) {
  if (connections.load() >= opts.max_connections) {
    log.warn("too many connections; refusing one", {{"server", opts.name}});
    beast::error_code ignored;
    s.close(ignored);
    return;
  }
  connections++;
  std::make_shared<Session>(std::move(s), shared_from_this())->start();
}

void HttpServer::Impl::accept() {
  acceptor.async_accept(asio::make_strand(ioc), [self = shared_from_this()](beast::error_code ec, generic::socket s) {
    if (self->stopped) return;
    if (ec) {
      self->log.warn("accept failed", {{"server", self->opts.name}, {"error", ec.message()}});
      // EMFILE and friends: back off briefly instead of spinning.
      // On the acceptor's strand, like every other use of it.
      auto timer = std::make_shared<asio::steady_timer>(self->acceptor.get_executor(), std::chrono::milliseconds(50));
      timer->async_wait([self, timer](beast::error_code) { self->accept(); });
      return;
    }
    self->admit(std::move(s));
    // Take the other connections already waiting now: each trip back through
    // the io_context queues behind every ready request, so when a burst of
    // clients connects at once (dockerd starting many containers), accepting
    // them one per trip would add seconds to their first calls under load.
    // The acceptor is non-blocking; the count bounds one turn.
    for (int more = 0; more < kAcceptBatch && !self->stopped; ++more) {
      beast::error_code again;
      generic::socket next = self->acceptor.accept(asio::make_strand(self->ioc), again);
      if (again) break;  // would_block: none waiting (other errors surface in async_accept)
      self->admit(std::move(next));
    }
    self->accept();
  });
}

namespace {

// kAlreadyExists if a process accepts connections on the unix socket `path`;
// ok if nobody listens there (ECONNREFUSED: a socket its server left behind).
Status refuse_live_socket(const std::string& path) {
  // Non-blocking: a blocking connect to a live server whose backlog is full
  // (a hung or stopped daemon) would wait forever instead of failing EAGAIN.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return errno_status(errno, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (rc == 0 || err == EAGAIN) {  // EAGAIN: a live server with a full backlog (e.g. stopped)
    return Status::already_exists("socket " + path +
                                  " is in use: another process accepts connections on it (another stowaged?); "
                                  "stop it or choose another socket path");
  }
  if (err == ECONNREFUSED) return Status::ok();
  return errno_status(err, "probe existing socket " + path);
}

std::string random_id_part() {
  std::random_device rd;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06x", rd() & 0xffffff);
  return buf;
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(asio::io_context& ioc, Options options, HttpHandler handler,
                                                      HttpErrorFormatter on_error, Logger& log,
                                                      const generic::endpoint& endpoint, std::string_view where) {
  auto impl = std::make_shared<Impl>(ioc, std::move(options), std::move(handler), std::move(on_error), log);
  impl->id_prefix = impl->opts.name + "-" + random_id_part() + "-";
  beast::error_code ec;
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec && endpoint.protocol().family() != AF_UNIX) {
    impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (ec) return Status::io_error("bind " + std::string(where) + ": " + ec.message());
  if (endpoint.protocol().family() == AF_UNIX) {
    struct stat st {};
    if (::chmod(impl->opts.socket_path.c_str(), impl->opts.socket_mode) != 0 ||
        ::lstat(impl->opts.socket_path.c_str(), &st) != 0) {
      return errno_status(errno, "chmod " + impl->opts.socket_path);
    }
    impl->socket_dev = st.st_dev;
    impl->socket_ino = st.st_ino;
  }
  impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) impl->acceptor.non_blocking(true, ec);  // for accept()'s batch
  if (ec) return Status::io_error("listen " + std::string(where) + ": " + ec.message());
  impl->accept();
  std::string_view key = endpoint.protocol().family() == AF_UNIX ? "socket" : "address";
  log.info("listening", {{"server", impl->opts.name}, {key, std::string(where)}});
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
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
    // The state-root lock does not cover sockets: another daemon, with another
    // state root, may be serving this one. Replace it only if nobody answers.
    STOWAGE_RETURN_IF_ERROR(refuse_live_socket(path));
    if (::unlink(path.c_str()) != 0) return errno_status(errno, "remove stale socket " + path);
  }
  return start(ioc, std::move(options), std::move(handler), std::move(on_error), log,
               generic::endpoint(local::endpoint(path)), path);
}

Result<std::unique_ptr<HttpServer>> HttpServer::listen_tcp(asio::io_context& ioc, Options options,
                                                           const std::string& address, HttpHandler handler,
                                                           HttpErrorFormatter on_error, Logger& log) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return Status::invalid_argument("listen address '" + address + "' is not HOST:PORT");
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  beast::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (ec) return Status::invalid_argument("listen address '" + address + "': '" + host + "' is not an IP address");
  char* end = nullptr;
  unsigned long port = std::strtoul(address.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port > 65535) return Status::invalid_argument("listen address '" + address + "': bad port");
  options.socket_path.clear();
  return start(ioc, std::move(options), std::move(handler), std::move(on_error), log,
               generic::endpoint(asio::ip::tcp::endpoint(ip, static_cast<unsigned short>(port))), address);
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() {
  if (!impl_ || impl_->stopped.exchange(true)) return;
  asio::post(impl_->acceptor.get_executor(), [impl = impl_] {
    beast::error_code ec;
    impl->acceptor.close(ec);
  });
  struct stat st {};
  if (!impl_->opts.socket_path.empty() && ::lstat(impl_->opts.socket_path.c_str(), &st) == 0 &&
      st.st_dev == impl_->socket_dev && st.st_ino == impl_->socket_ino) {
    ::unlink(impl_->opts.socket_path.c_str());
  }
}

uint16_t HttpServer::local_port() const {
  beast::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  if (ec || ep.protocol().family() == AF_UNIX) return 0;
  const auto* sa = reinterpret_cast<const sockaddr*>(ep.data());
  if (sa->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  if (sa->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
  return 0;
}

}  // namespace stowage
