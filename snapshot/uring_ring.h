// An io_uring instance with a set of equally sized buffers registered as fixed
// buffers when the kernel and RLIMIT_MEMLOCK allow it (plain buffers otherwise,
// same behaviour, a little more per-I/O work). Shared by the copy engine and the
// file reader. Not thread-safe.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "stowage/status.h"

namespace stowage::uring {

class Ring {
 public:
  // kUnimplemented/kPermissionDenied/kResourceExhausted (from the setup errno)
  // when the kernel refuses the ring.
  [[nodiscard]] static Result<std::unique_ptr<Ring>> create(unsigned entries, unsigned buffers,
                                                            size_t buffer_size);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  std::byte* buffer(unsigned i) const { return arena_ + static_cast<size_t>(i) * buffer_size_; }
  size_t buffer_size() const { return buffer_size_; }
  unsigned buffers() const { return buffers_; }
  bool fixed_buffers() const { return fixed_; }

  // A free SQE; submits what is queued first when the ring is full. Null only
  // if even that fails (then the caller reports the ring as broken).
  io_uring_sqe* sqe();
  // Reads/writes `len` bytes at `off` using buffer i from byte `skip` on.
  void prep_read(io_uring_sqe* s, int fd, unsigned i, size_t skip, unsigned len, uint64_t off);
  void prep_write(io_uring_sqe* s, int fd, unsigned i, size_t skip, unsigned len, uint64_t off);

  // Submits everything queued. Returns the errno-based status on failure.
  [[nodiscard]] Status submit();
  // Submits and blocks until one completion is available; returns {user_data, res}.
  struct Completion {
    uint64_t user_data;
    int res;
  };
  [[nodiscard]] Result<Completion> next();

 private:
  Ring() = default;
  io_uring ring_{};
  bool inited_ = false;
  std::byte* arena_ = nullptr;
  unsigned buffers_ = 0;
  size_t buffer_size_ = 0;
  bool fixed_ = false;
};

}  // namespace stowage::uring
