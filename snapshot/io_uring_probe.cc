#include "stowage/io_uring_probe.h"

#include <liburing.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace stowage {

LogSink stderr_log_sink() {
  return [](std::string_view line) {
    std::string s(line);
    s += '\n';
    // One write so concurrent lines do not interleave; a failed log write has
    // nowhere better to go.
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, s.data(), s.size());
  };
}

int probe_io_uring() {
  io_uring ring;
  int rc = io_uring_queue_init(4, &ring, 0);
  if (rc < 0) return -rc;
  int result = 0;
  io_uring_probe* p = io_uring_get_probe_ring(&ring);
  if (p == nullptr) {
    result = ENOSYS;
  } else {
    for (int op : {IORING_OP_OPENAT, IORING_OP_STATX, IORING_OP_CLOSE, IORING_OP_READ,
                   IORING_OP_WRITE, IORING_OP_READ_FIXED, IORING_OP_WRITE_FIXED}) {
      if (!io_uring_opcode_supported(p, op)) result = EOPNOTSUPP;
    }
    io_uring_free_probe(p);
  }
  io_uring_queue_exit(&ring);
  return result;
}

std::string errno_name(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case ENOMEM: return "ENOMEM";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    default: return "errno=" + std::to_string(err);
  }
}

IoUringAvailability decide_io_uring(const IoUringProbe& probe, const LogSink& log,
                                    std::string_view component) {
  int err = probe ? probe() : probe_io_uring();
  if (err == 0) return {true, 0};
  std::string line = "level=warn msg=\"io_uring unavailable, using portable I/O\" component=";
  line += component;
  line += " err=";
  line += errno_name(err);
  if (log) {
    log(line);
  } else {
    stderr_log_sink()(line);
  }
  return {false, err};
}

}  // namespace stowage
