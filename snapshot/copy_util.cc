#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <linux/fs.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <memory>
#include <set>

#include "copy_internal.h"

namespace stowage::copy_internal {

FileMeta meta_from_stat(const struct stat& st) {
  FileMeta m;
  m.mode = st.st_mode;
  m.uid = st.st_uid;
  m.gid = st.st_gid;
  m.size = static_cast<uint64_t>(st.st_size);
  m.blocks = static_cast<uint64_t>(st.st_blocks);
  m.nlink = st.st_nlink;
  m.dev = st.st_dev;
  m.ino = st.st_ino;
  m.rdev = st.st_rdev;
  m.atime = st.st_atim;
  m.mtime = st.st_mtim;
  return m;
}

FileMeta meta_from_statx(const struct statx& stx) {
  FileMeta m;
  m.mode = stx.stx_mode;
  m.uid = stx.stx_uid;
  m.gid = stx.stx_gid;
  m.size = stx.stx_size;
  m.blocks = stx.stx_blocks;
  m.nlink = stx.stx_nlink;
  m.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  m.ino = stx.stx_ino;
  m.rdev = makedev(stx.stx_rdev_major, stx.stx_rdev_minor);
  m.atime = {static_cast<time_t>(stx.stx_atime.tv_sec), static_cast<long>(stx.stx_atime.tv_nsec)};
  m.mtime = {static_cast<time_t>(stx.stx_mtime.tv_sec), static_cast<long>(stx.stx_mtime.tv_nsec)};
  return m;
}

std::string quoted(std::string_view context, std::string_view name) {
  std::string s(context);
  s += " '";
  s += name;
  s += "'";
  return s;
}

Result<FileMeta> stat_at(int dir, const std::string& name) {
  struct stat st;
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno_status(errno, quoted("stat", name));
  }
  return meta_from_stat(st);
}

Result<std::vector<FileMeta>> FileCopier::stat_all(int dir, const std::vector<std::string>& names) {
  std::vector<FileMeta> out;
  out.reserve(names.size());
  for (const auto& n : names) {
    STOWAGE_ASSIGN_OR_RETURN(FileMeta m, stat_at(dir, n));
    out.push_back(m);
  }
  return out;
}

mode_t current_umask() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Umask:", 0) == 0) {
      return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8)) & 0777;
    }
  }
  return 022;
}

namespace {

// Copies every xattr of src_fd onto dst_fd.
Status copy_xattrs(int src_fd, int dst_fd, const std::string& name) {
  std::array<char, 4096> small;
  std::vector<char> big;
  char* list = small.data();
  ssize_t len = ::flistxattr(src_fd, list, small.size());
  if (len < 0 && errno == ERANGE) {
    ssize_t need = ::flistxattr(src_fd, nullptr, 0);
    if (need < 0) return errno_status(errno, quoted("list xattrs of", name));
    big.resize(static_cast<size_t>(need));
    list = big.data();
    len = ::flistxattr(src_fd, list, big.size());
  }
  if (len < 0) {
    if (errno == ENOTSUP) return Status::ok();  // source fs has none
    return errno_status(errno, quoted("list xattrs of", name));
  }
  std::vector<char> value(256);
  for (ssize_t off = 0; off < len;) {
    const char* key = list + off;
    off += static_cast<ssize_t>(std::strlen(key)) + 1;
    ssize_t vlen;
    while ((vlen = ::fgetxattr(src_fd, key, value.data(), value.size())) < 0 && errno == ERANGE) {
      ssize_t need = ::fgetxattr(src_fd, key, nullptr, 0);
      if (need < 0) break;
      value.resize(static_cast<size_t>(need) + 1);
    }
    if (vlen < 0) {
      if (errno == ENODATA) continue;  // removed since listed
      return errno_status(errno, quoted("get xattr " + std::string(key) + " of", name));
    }
    if (::fsetxattr(dst_fd, key, value.data(), static_cast<size_t>(vlen), 0) != 0) {
      return errno_status(errno, quoted("set xattr " + std::string(key) + " on", name));
    }
  }
  return Status::ok();
}

}  // namespace

Status apply_meta_fd(int dst_fd, int src_fd, const FileMeta& m, const CopyOptions& opts,
                     const MetaPlan& plan, const std::string& name) {
  bool chowned = false;
  if (opts.preserve_owner &&
      (plan.always_chown || m.uid != ::geteuid() || m.gid != ::getegid())) {
    if (::fchown(dst_fd, m.uid, m.gid) != 0) return errno_status(errno, quoted("chown", name));
    chowned = true;
  }
  // After chown: chown drops security.capability, so it must come later.
  if (opts.preserve_xattrs) STOWAGE_RETURN_IF_ERROR(copy_xattrs(src_fd, dst_fd, name));
  const mode_t perm = m.mode & 07777;
  const bool need_chmod = !plan.mode_set_at_create || (perm & plan.umask_bits) != 0 ||
                          ((perm & 06000) != 0 && chowned);
  if (need_chmod && ::fchmod(dst_fd, perm) != 0) return errno_status(errno, quoted("chmod", name));
  const timespec times[2] = {m.atime, m.mtime};
  if (::futimens(dst_fd, times) != 0) return errno_status(errno, quoted("set times of", name));
  return Status::ok();
}

Status apply_meta_at(int dst_dir, const std::string& name, const FileMeta& m,
                     const CopyOptions& opts) {
  if (opts.preserve_owner &&
      ::fchownat(dst_dir, name.c_str(), m.uid, m.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno_status(errno, quoted("chown", name));
  }
  if (!S_ISLNK(m.mode) && ::fchmodat(dst_dir, name.c_str(), m.mode & 07777, 0) != 0) {
    return errno_status(errno, quoted("chmod", name));
  }
  const timespec times[2] = {m.atime, m.mtime};
  if (::utimensat(dst_dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno_status(errno, quoted("set times of", name));
  }
  return Status::ok();
}

Result<std::vector<Extent>> data_extents(int fd, uint64_t size) {
  std::vector<Extent> out;
  off_t pos = 0;
  const off_t end = static_cast<off_t>(size);
  while (pos < end) {
    off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      return errno_status(errno, "seek data");
    }
    if (data >= end) break;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return errno_status(errno, "seek hole");
    hole = std::min(hole, end);
    out.push_back({static_cast<uint64_t>(data), static_cast<uint64_t>(hole - data)});
    pos = hole;
  }
  return out;
}

namespace {

constexpr size_t kPortableBuffer = 256 << 10;

Status pread_pwrite(int src_fd, int dst_fd, uint64_t off, uint64_t len, std::vector<char>& buf,
                    uint64_t* copied, const std::string& name) {
  if (buf.empty()) buf.resize(std::min<uint64_t>(kPortableBuffer, std::max<uint64_t>(len, 4096)));
  while (len > 0) {
    ssize_t n = ::pread(src_fd, buf.data(), std::min<uint64_t>(len, buf.size()), static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(errno, quoted("read", name));
    }
    if (n == 0) return Status::ok();  // file shrank under us
    for (ssize_t w = 0; w < n;) {
      ssize_t k = ::pwrite(dst_fd, buf.data() + w, static_cast<size_t>(n - w), static_cast<off_t>(off) + w);
      if (k < 0) {
        if (errno == EINTR) continue;
        return errno_status(errno, quoted("write", name));
      }
      w += k;
    }
    off += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
    *copied += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

}  // namespace

Status copy_data_portable(int src_fd, int dst_fd, const FileMeta& m, uint64_t* bytes_copied,
                          const std::string& name) {
  const uint64_t size = m.size;
  if (size == 0) return Status::ok();
  std::vector<Extent> extents;
  if (!may_have_holes(m)) {
    extents.push_back({0, size});  // fully allocated: skip the lseeks
  } else {
    auto r = data_extents(src_fd, size);
    if (!r.is_ok()) return r.status().with_context(name);
    extents = std::move(r).value();
  }
  bool use_cfr = true;
  std::vector<char> buf;
  for (const Extent& e : extents) {
    loff_t in = static_cast<loff_t>(e.offset);
    loff_t out = in;
    uint64_t left = e.length;
    while (use_cfr && left > 0) {
      ssize_t n = ::copy_file_range(src_fd, &in, dst_fd, &out, left, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS ||
            errno == EBADF) {
          use_cfr = false;  // e.g. cross-filesystem on older kernels
          break;
        }
        return errno_status(errno, quoted("copy_file_range", name));
      }
      if (n == 0) {
        left = 0;  // source shrank
        break;
      }
      left -= static_cast<uint64_t>(n);
      *bytes_copied += static_cast<uint64_t>(n);
    }
    if (left > 0) {
      STOWAGE_RETURN_IF_ERROR(pread_pwrite(src_fd, dst_fd, static_cast<uint64_t>(in), left, buf,
                                           bytes_copied, name));
    }
  }
  const uint64_t data_end = extents.empty() ? 0 : extents.back().offset + extents.back().length;
  if (data_end < size && ::ftruncate(dst_fd, static_cast<off_t>(size)) != 0) {
    return errno_status(errno, quoted("truncate", name));
  }
  return Status::ok();
}

Result<OpenPair> open_pair(const FileJob& job) {
  OpenPair p;
  p.src.reset(::openat(job.src_dir, job.src_name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!p.src.valid()) return errno_status(errno, quoted("open", job.name));
  p.dst.reset(::openat(job.dst_dir, job.name.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, job.meta.mode & 07777));
  if (!p.dst.valid()) return errno_status(errno, quoted("create", job.name));
  return p;
}

namespace {

// Tries FICLONE dst_fd <- src_fd (dst empty). Returns true when cloned, false
// when this file cannot be cloned here; then, if the whole source device
// cannot clone into the destination (no support, another filesystem), `dev`
// joins *no_clone_devs so later files skip the attempt. Other errors (ENOSPC,
// EIO) are returned.
Result<bool> try_clone(int src_fd, int dst_fd, dev_t dev, std::set<dev_t>* no_clone_devs,
                       const std::string& name) {
  if (no_clone_devs->count(dev) > 0) return false;
  if (::ioctl(dst_fd, FICLONE, src_fd) == 0) return true;
  const int err = errno;
  // Whole-device refusals (no support; another filesystem) versus EINVAL,
  // which can be specific to one file.
  if (err == EOPNOTSUPP || err == ENOTTY || err == ENOSYS || err == EXDEV) {
    no_clone_devs->insert(dev);
    return false;
  }
  if (err == EINVAL) return false;
  return errno_status(err, quoted("reflink", name));
}

class PortableCopier final : public FileCopier {
 public:
  PortableCopier(const CopyOptions& opts, mode_t umask_bits) : opts_(opts), umask_(umask_bits) {}

  Status copy(const FileJob& job, CopyStats* stats) override {
    STOWAGE_ASSIGN_OR_RETURN(OpenPair p, open_pair(job));
    STOWAGE_RETURN_IF_ERROR(
        copy_data_portable(p.src.get(), p.dst.get(), job.meta, &stats->bytes_copied, job.name));
    STOWAGE_RETURN_IF_ERROR(apply_meta_fd(p.dst.get(), p.src.get(), job.meta, opts_,
                                          {umask_, true, job.is_root}, job.name));
    stats->portable_files++;
    return Status::ok();
  }
  Status flush(CopyStats*) override { return Status::ok(); }

 private:
  CopyOptions opts_;
  mode_t umask_;
};

class ReflinkCopier final : public FileCopier {
 public:
  ReflinkCopier(const CopyOptions& opts, mode_t umask_bits, std::unique_ptr<FileCopier> fallback)
      : opts_(opts), umask_(umask_bits), fallback_(std::move(fallback)) {}

  Status copy(const FileJob& job, CopyStats* stats) override {
    // Empty files have nothing to clone; with a fallback they go there so the
    // counts say which strategy really did the work.
    if (fallback_ && (job.meta.size == 0 || no_clone_devs_.count(job.meta.dev) > 0)) {
      return fallback_->copy(job, stats);
    }
    STOWAGE_ASSIGN_OR_RETURN(OpenPair p, open_pair(job));
    if (job.meta.size > 0) {
      STOWAGE_ASSIGN_OR_RETURN(bool cloned,
                               try_clone(p.src.get(), p.dst.get(), job.meta.dev, &no_clone_devs_, job.name));
      if (!cloned) {
        if (!fallback_) {
          return Status::unimplemented(quoted("reflink", job.name) +
                                       ": this filesystem pair cannot clone (EOPNOTSUPP/EXDEV/EINVAL)");
        }
        p.dst.reset();
        if (::unlinkat(job.dst_dir, job.name.c_str(), 0) != 0) {
          return errno_status(errno, quoted("remove failed clone", job.name));
        }
        return fallback_->copy(job, stats);
      }
    }
    STOWAGE_RETURN_IF_ERROR(apply_meta_fd(p.dst.get(), p.src.get(), job.meta, opts_,
                                          {umask_, true, job.is_root}, job.name));
    stats->reflinked_files++;
    return Status::ok();
  }

  Status flush(CopyStats* stats) override {
    return fallback_ ? fallback_->flush(stats) : Status::ok();
  }

  Result<std::vector<FileMeta>> stat_all(int dir, const std::vector<std::string>& names) override {
    return fallback_ ? fallback_->stat_all(dir, names) : FileCopier::stat_all(dir, names);
  }

 private:
  CopyOptions opts_;
  mode_t umask_;
  std::unique_ptr<FileCopier> fallback_;
  // Source devices FICLONE refused: their files go straight to the fallback,
  // so a tree on ext4 pays for one failed clone, not one per file.
  std::set<dev_t> no_clone_devs_;
};

}  // namespace

std::unique_ptr<FileCopier> make_portable_copier(const CopyOptions& opts, mode_t umask_bits) {
  return std::make_unique<PortableCopier>(opts, umask_bits);
}

std::unique_ptr<FileCopier> make_reflink_copier(const CopyOptions& opts, mode_t umask_bits,
                                                std::unique_ptr<FileCopier> fallback) {
  return std::make_unique<ReflinkCopier>(opts, umask_bits, std::move(fallback));
}

}  // namespace stowage::copy_internal
