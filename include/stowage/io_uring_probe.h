// Whether io_uring may be used in this process, decided once by a probe, and the
// log sink through which the copy engine and the file reader report falling back.
//
// io_uring can be refused at run time: Docker >= 25's default seccomp profile
// blocks io_uring_setup (EPERM), kernel.io_uring_disabled=2 gives EPERM, old or
// stripped kernels give ENOSYS, and a tight RLIMIT_MEMLOCK can give ENOMEM. The
// probe is injectable so tests can simulate each refusal without root tricks.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace stowage {

// Receives one complete structured log line (no trailing newline), e.g.
// `level=warn msg="io_uring unavailable, using portable I/O" component=copy_engine err=EPERM`.
using LogSink = std::function<void(std::string_view line)>;

// A sink that writes each line plus '\n' to stderr with a single write(2).
LogSink stderr_log_sink();

// Returns 0 when io_uring can be used for what Stowage needs (ring setup and the
// opcodes openat, statx, close, read, write and their fixed-buffer forms), else
// a positive errno explaining the refusal (EPERM, ENOSYS, ENOMEM, EOPNOTSUPP...).
// Must be safe to call from any thread; it is called once per engine/reader.
using IoUringProbe = std::function<int()>;

// The real probe: sets up a small ring, checks the opcodes, tears it down.
int probe_io_uring();

// The io_uring decision an engine or reader holds for its lifetime.
struct IoUringAvailability {
  bool usable = false;
  int refusal_errno = 0;  // 0 when usable
};

// Runs `probe` (probe_io_uring when empty) once. When io_uring is refused,
// writes exactly one warn line to `log` (stderr_log_sink() when empty) naming
// `component` and the errno, so an operator sees why I/O is slower.
IoUringAvailability decide_io_uring(const IoUringProbe& probe, const LogSink& log,
                                    std::string_view component);

// "EPERM", "ENOSYS", ... ; "errno=N" for values without a known name.
std::string errno_name(int err);

}  // namespace stowage
