#include "state_journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "fs_util.h"
#include "stowage/hash.h"

namespace stowage {

namespace {

constexpr size_t kHeader = 4 + 8;
constexpr uint32_t kMaxPayload = 16 << 20;

std::string frame(std::string_view payload) {
  std::string out(kHeader, '\0');
  uint32_t n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  Hash256 h = sha256(payload);
  std::memcpy(out.data() + 4, h.bytes.data(), 8);
  out.append(payload);
  return out;
}

}  // namespace

std::string journal_path(const std::string& dir, uint64_t number) {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.log", static_cast<unsigned long long>(number));
  return dir + "/" + name;
}

Result<std::vector<StateJournal::Generation>> StateJournal::list(const std::string& dir) {
  std::vector<Generation> gens;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT) return gens;
    return errno_status(errno, "open " + dir);
  }
  while (dirent* de = ::readdir(d)) {
    std::string_view n = de->d_name;
    if (n.size() != 20 || !n.ends_with(".log")) continue;
    char* end = nullptr;
    std::string digits(n.substr(0, 16));
    unsigned long long num = std::strtoull(digits.c_str(), &end, 16);
    if (end != digits.c_str() + 16) continue;
    gens.push_back({num, dir + "/" + std::string(n), {}, false, {}});
  }
  ::closedir(d);
  std::sort(gens.begin(), gens.end(), [](const Generation& a, const Generation& b) { return a.number < b.number; });
  return gens;
}

namespace {

// Where the frame at `pos` of `data` ends by its length field, if that stays
// inside `data`; whether the frame checks out or not.
std::optional<size_t> claimed_end(std::string_view data, size_t pos) {
  if (pos > data.size() || data.size() - pos < kHeader) return std::nullopt;
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<uint32_t>(static_cast<unsigned char>(data[pos + i])) << (8 * i);
  if (n > kMaxPayload || data.size() - pos - kHeader < n) return std::nullopt;
  return pos + kHeader + n;
}

// The payload of the frame at `pos` of `data`, if the frame checks out.
std::optional<std::string_view> frame_at(std::string_view data, size_t pos) {
  auto end = claimed_end(data, pos);
  if (!end) return std::nullopt;
  std::string_view payload = data.substr(pos + kHeader, *end - pos - kHeader);
  Hash256 h = sha256(payload);
  if (std::memcmp(h.bytes.data(), data.data() + pos + 4, 8) != 0) return std::nullopt;
  return payload;
}

// The first offset after `pos` where a frame checks out. Frames are found
// whatever the bad frame's own length field says (it may be the damaged
// part); the 64-bit checksum makes a false match negligible.
std::optional<size_t> next_frame_after(std::string_view data, size_t pos) {
  static const Hash256 kEmpty = sha256("");
  for (size_t q = pos + 1; q + kHeader <= data.size(); ++q) {
    auto end = claimed_end(data, q);
    if (!end) continue;
    if (*end == q + kHeader) {  // an empty payload: skip the hashing (the preallocated zeros are all this)
      if (std::memcmp(kEmpty.bytes.data(), data.data() + q + 4, 8) == 0) return q;
      continue;
    }
    if (frame_at(data, q)) return q;
  }
  return std::nullopt;
}

}  // namespace

Result<std::vector<StateJournal::Generation>> StateJournal::read_all(const std::string& dir) {
  STOWAGE_ASSIGN_OR_RETURN(std::vector<Generation> gens, list(dir));
  for (auto& g : gens) {
    STOWAGE_ASSIGN_OR_RETURN(std::string data, read_small_file(g.path, 1ull << 32));
    std::string_view all = data;
    size_t pos = 0;
    while (pos < all.size()) {
      if (auto payload = frame_at(all, pos)) {
        g.payloads.emplace_back(*payload);
        pos += kHeader + payload->size();
        continue;
      }
      // A frame that does not check out, followed by one that does: damage
      // in the middle, not a torn tail. Where its length field says first;
      // else anywhere later (the length field itself may be damaged).
      auto next = claimed_end(all, pos);
      if (!next || !frame_at(all, *next)) next = next_frame_after(all, pos);
      if (!next) break;
      g.damaged.push_back(pos);
      pos = *next;
    }
    // Zeros after the last frame are preallocated space, not a torn frame.
    g.torn_tail = data.find_first_not_of('\0', pos) != std::string::npos;
  }
  return gens;
}

namespace {

// Writes `bytes` zeros at the start of `fd` and flushes them with the file's size.
Status fill_with_zeros(int fd, uint64_t bytes, const std::string& path, const StateJournal::SyncFn& sync) {
  static const std::string kZeros(64 << 10, '\0');
  uint64_t off = 0;
  while (off < bytes) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kZeros.size(), bytes - off));
    ssize_t w = ::pwrite(fd, kZeros.data(), n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno_status(errno, "preallocate journal " + path);
    off += static_cast<uint64_t>(w);
  }
  if (sync(fd) != 0) return errno_status(errno, "flush preallocated journal " + path);
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<StateJournal>> StateJournal::create(const std::string& dir, uint64_t number,
                                                           uint64_t preallocate_bytes, SyncFn sync) {
  if (!sync) sync = ::fdatasync;
  std::string path = journal_path(dir, number);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno_status(errno, "create journal " + path);
  Status st = preallocate_bytes > 0 ? fill_with_zeros(fd, preallocate_bytes, path, sync) : Status::ok();
  if (st.is_ok()) st = fsync_dir(dir);
  if (!st.is_ok()) {
    ::close(fd);
    ::unlink(path.c_str());
    return st;
  }
  return std::unique_ptr<StateJournal>(
      new StateJournal(fd, number, std::move(path), preallocate_bytes, std::move(sync)));
}

StateJournal::~StateJournal() { ::close(fd_); }

uint64_t StateJournal::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

uint64_t StateJournal::flushes() const {
  std::lock_guard lock(mu_);
  return flushes_;
}

Status StateJournal::commit(std::string_view payload, Durability durability, bool* appended) {
  if (appended) *appended = false;
  if (payload.size() > kMaxPayload) return Status::invalid_argument("journal record too large");
  std::string f = frame(payload);
  std::unique_lock lock(mu_);
  if (!failed_.is_ok()) return failed_;
  // Appends happen under the lock so frames never interleave; each one is
  // written right after the previous frame (over preallocated zeros, if any).
  const uint64_t start = bytes_;
  std::string_view rest = f;
  while (!rest.empty()) {
    ssize_t n = ::pwrite(fd_, rest.data(), rest.size(), static_cast<off_t>(bytes_));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      // A write that fails (disk full, quota) changed no earlier frame, so the
      // journal stays usable: the next frame goes where this one started. Its
      // partial bytes past the preallocated size are cut off (best effort) so
      // they hold no space; any left read as a torn tail until overwritten.
      Status st = errno_status(errno, "append to journal " + path_);
      if (bytes_ > preallocated_) (void)::ftruncate(fd_, static_cast<off_t>(std::max(start, preallocated_)));
      bytes_ = start;
      return st;
    }
    rest.remove_prefix(static_cast<size_t>(n));
    bytes_ += static_cast<uint64_t>(n);
  }
  uint64_t mine = ++appended_;
  if (appended) *appended = true;
  if (durability == Durability::kProcess) return Status::ok();
  while (durable_ < mine) {
    if (!failed_.is_ok()) return failed_;
    if (flushing_) {
      flushed_.wait(lock);
      continue;
    }
    // Become the leader: flush everything appended so far, outside the lock so
    // that the next batch can gather meanwhile.
    flushing_ = true;
    uint64_t target = appended_;
    lock.unlock();
    int rc = sync_(fd_);
    int err = errno;
    lock.lock();
    flushing_ = false;
    ++flushes_;
    if (rc != 0) {
      failed_ = errno_status(err, "flush journal " + path_);
    } else {
      durable_ = std::max(durable_, target);
    }
    flushed_.notify_all();
  }
  return failed_;
}

}  // namespace stowage
