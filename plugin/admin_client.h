// Client side of the admin API, for stowctl: one HTTP request over the admin
// unix socket (libcurl with CURLOPT_UNIX_SOCKET_PATH).
#pragma once

#include <string>

#include "stowage/status.h"

namespace stowage {

struct AdminReply {
  long status = 0;
  std::string body;
};

// Sends `method path` with `body` to the daemon. A daemon that is not running
// gives kUnavailable with a message saying which socket was tried.
[[nodiscard]] Result<AdminReply> admin_call(const std::string& socket_path, const std::string& method,
                                            const std::string& path, const std::string& body = "");

}  // namespace stowage
