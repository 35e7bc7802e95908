// The S3 store inside a StoreDeadline scope, against a server that accepts
// connections and never answers (as radosgw does when stopped with SIGSTOP):
// the request ends at the deadline instead of the stall timeout.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "stowage/store_deadline.h"
#include "stowage/store_s3.h"

namespace stowage {
namespace {

// A TCP socket on 127.0.0.1 that listens and never accepts: connections
// complete in the kernel's backlog and get no answer.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "silent server: " << std::strerror(errno);
    }
    port_ = ntohs(a.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(S3Store, RequestsEndAtTheThreadsDeadlineWhenTheServerStalls) {
  SilentServer server;
  S3Config c;
  c.endpoint = server.endpoint();
  c.bucket = "bkt";
  c.access_key = "key";
  c.secret_key = "secret";
  c.low_speed_time = std::chrono::seconds(60);  // what would otherwise end the request
  auto store = open_s3_store(c);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();

  const auto start = std::chrono::steady_clock::now();
  {
    StoreDeadline deadline(std::chrono::milliseconds(300));
    auto r = (*store)->head("config");
    EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded) << r.status().to_string();
    // Out of time already: no request is sent.
    std::this_thread::sleep_for(std::chrono::milliseconds(310));
    EXPECT_EQ((*store)->head("config").status().code(), Code::kDeadlineExceeded);
  }
  // Far below the 60 s stall timeout: the deadline ended the request.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

}  // namespace
}  // namespace stowage
