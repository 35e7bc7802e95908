#include "uring_ring.h"

#include <sys/uio.h>

#include <cstdlib>

namespace stowage::uring {

Result<std::unique_ptr<Ring>> Ring::create(unsigned entries, unsigned buffers, size_t buffer_size) {
  std::unique_ptr<Ring> r(new Ring());
  int rc = io_uring_queue_init(entries, &r->ring_, 0);
  if (rc < 0) return errno_status(-rc, "io_uring setup");
  r->inited_ = true;
  r->buffers_ = buffers;
  r->buffer_size_ = buffer_size;
  if (buffers > 0) {
    // 4 KiB alignment keeps the door open for O_DIRECT and is what the
    // kernel pins page by page anyway.
    r->arena_ = static_cast<std::byte*>(std::aligned_alloc(4096, buffers * buffer_size));
    if (r->arena_ == nullptr) return Status::resource_exhausted("io_uring buffers");
    // One registration for the whole arena: a fixed I/O must lie inside one
    // registered buffer, and callers may span consecutive logical buffers.
    // Fails with ENOMEM under a small RLIMIT_MEMLOCK without CAP_IPC_LOCK;
    // plain reads/writes on the same memory still work.
    iovec iov{r->arena_, buffers * buffer_size};
    r->fixed_ = io_uring_register_buffers(&r->ring_, &iov, 1) == 0;
  }
  return r;
}

Ring::~Ring() {
  if (inited_) io_uring_queue_exit(&ring_);
  std::free(arena_);
}

io_uring_sqe* Ring::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  if (s == nullptr && io_uring_submit(&ring_) >= 0) s = io_uring_get_sqe(&ring_);
  return s;
}

void Ring::prep_read(io_uring_sqe* s, int fd, unsigned i, size_t skip, unsigned len, uint64_t off) {
  if (fixed_) {
    io_uring_prep_read_fixed(s, fd, buffer(i) + skip, len, off, 0);
  } else {
    io_uring_prep_read(s, fd, buffer(i) + skip, len, off);
  }
}

void Ring::prep_write(io_uring_sqe* s, int fd, unsigned i, size_t skip, unsigned len, uint64_t off) {
  if (fixed_) {
    io_uring_prep_write_fixed(s, fd, buffer(i) + skip, len, off, 0);
  } else {
    io_uring_prep_write(s, fd, buffer(i) + skip, len, off);
  }
}

Status Ring::submit() {
  int rc;
  do {
    rc = io_uring_submit(&ring_);
  } while (rc == -EINTR);
  return rc < 0 ? errno_status(-rc, "io_uring submit") : Status::ok();
}

Result<Ring::Completion> Ring::next() {
  io_uring_cqe* cqe = nullptr;
  int rc = io_uring_peek_cqe(&ring_, &cqe);
  if (rc != 0 || cqe == nullptr) {
    do {
      rc = io_uring_submit_and_wait(&ring_, 1);
    } while (rc == -EINTR);
    if (rc < 0) return errno_status(-rc, "io_uring wait");
    do {
      rc = io_uring_wait_cqe(&ring_, &cqe);
    } while (rc == -EINTR);
    if (rc < 0) return errno_status(-rc, "io_uring wait");
  }
  Completion c{cqe->user_data, cqe->res};
  io_uring_cqe_seen(&ring_, cqe);
  return c;
}

}  // namespace stowage::uring
