#include "stowage/copy_engine.h"

#include <dirent.h>

#include <filesystem>
#include <map>

#include "copy_internal.h"

namespace stowage {

using copy_internal::FileCopier;
using copy_internal::FileJob;
using copy_internal::FileMeta;
using copy_internal::quoted;
using copy_internal::UniqueFd;

std::string_view strategy_name(CopyStrategy s) {
  switch (s) {
    case CopyStrategy::kAuto: return "auto";
    case CopyStrategy::kReflink: return "reflink";
    case CopyStrategy::kIoUring: return "io_uring";
    case CopyStrategy::kPortable: return "portable";
  }
  return "unknown";
}

std::unique_ptr<CopyEngine> CopyEngine::create(CopyEngineOptions opts) {
  if (!opts.log) opts.log = stderr_log_sink();
  IoUringAvailability uring = decide_io_uring(opts.io_uring_probe, opts.log, "copy_engine");
  return std::unique_ptr<CopyEngine>(new CopyEngine(std::move(opts), uring));
}

namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

Result<std::vector<std::string>> list_dir(int dir_fd, const std::string& name) {
  int fd = ::dup(dir_fd);
  if (fd < 0) return errno_status(errno, quoted("dup dir fd of", name));
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return errno_status(errno, quoted("open dir", name));
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    const char* n = e->d_name;
    if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
    names.emplace_back(n);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return errno_status(err, quoted("read dir", name));
  return names;
}

Result<std::string> read_link_at(int dir, const std::string& name, uint64_t size_hint) {
  std::string target(std::max<uint64_t>(size_hint, 64) + 1, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(dir, name.c_str(), target.data(), target.size());
    if (n < 0) return errno_status(errno, quoted("read link", name));
    if (static_cast<size_t>(n) < target.size()) {
      target.resize(static_cast<size_t>(n));
      return target;
    }
    target.resize(target.size() * 2);  // grew since lstat
  }
}

// Walks one source tree, creating the copy entry by entry. Directories get
// their metadata after their contents, so writing into them never disturbs
// the restored mtime and read-only directories can still be filled.
class TreeCopier {
 public:
  TreeCopier(const CopyOptions& opts, FileCopier& files, CopyStats& stats, mode_t umask_bits)
      : opts_(opts), files_(files), stats_(stats), umask_(umask_bits) {}

  // Copies src_dir/name (described by m) to dst_dir/dst_name; dst_path is the
  // full path of the new entry, remembered for later hardlinks.
  Status copy_entry(int src_dir, const std::string& name, int dst_dir, const std::string& dst_name,
                    const std::string& dst_path, const FileMeta& m, bool is_root) {
    if (!S_ISDIR(m.mode) && m.nlink > 1) {
      auto [it, fresh] = links_.try_emplace({m.dev, m.ino}, dst_path);
      if (!fresh) {
        // The first name may still sit in a batch; it must exist to be linked.
        STOWAGE_RETURN_IF_ERROR(files_.flush(&stats_));
        if (::linkat(AT_FDCWD, it->second.c_str(), dst_dir, dst_name.c_str(), 0) != 0) {
          return errno_status(errno, quoted("hardlink", dst_name));
        }
        stats_.hardlinks++;
        return Status::ok();
      }
    }
    if (S_ISREG(m.mode)) {
      stats_.files++;
      stats_.bytes += m.size;
      return files_.copy(FileJob{src_dir, name, dst_dir, dst_name, m, is_root}, &stats_);
    }
    if (S_ISDIR(m.mode)) return copy_dir(src_dir, name, dst_dir, dst_name, dst_path, m, is_root);
    if (S_ISLNK(m.mode)) {
      STOWAGE_ASSIGN_OR_RETURN(std::string target, read_link_at(src_dir, name, m.size));
      if (::symlinkat(target.c_str(), dst_dir, dst_name.c_str()) != 0) {
        return errno_status(errno, quoted("symlink", dst_name));
      }
      stats_.symlinks++;
      return copy_internal::apply_meta_at(dst_dir, dst_name, m, opts_);
    }
    // fifo, socket, character or block device
    if (::mknodat(dst_dir, dst_name.c_str(), (m.mode & S_IFMT) | 0600, m.rdev) != 0) {
      return errno_status(errno, quoted("mknod", dst_name));
    }
    stats_.specials++;
    return copy_internal::apply_meta_at(dst_dir, dst_name, m, opts_);
  }

 private:
  Status copy_dir(int src_dir, const std::string& name, int dst_dir, const std::string& dst_name,
                  const std::string& dst_path, const FileMeta& m, bool is_root) {
    UniqueFd src(::openat(src_dir, name.c_str(), kDirFlags));
    if (!src.valid()) return errno_status(errno, quoted("open dir", name));
    // 0700 until the contents are in: writable even if the source is 0555.
    if (::mkdirat(dst_dir, dst_name.c_str(), 0700) != 0) {
      return errno_status(errno, quoted("mkdir", dst_name));
    }
    UniqueFd dst(::openat(dst_dir, dst_name.c_str(), kDirFlags));
    if (!dst.valid()) return errno_status(errno, quoted("open dir", dst_name));
    stats_.directories++;
    STOWAGE_ASSIGN_OR_RETURN(std::vector<std::string> names, list_dir(src.get(), name));
    STOWAGE_ASSIGN_OR_RETURN(std::vector<FileMeta> metas, files_.stat_all(src.get(), names));
    for (size_t i = 0; i < names.size(); ++i) {
      STOWAGE_RETURN_IF_ERROR(copy_entry(src.get(), names[i], dst.get(), names[i],
                                         dst_path + "/" + names[i], metas[i], false));
    }
    // Deferred files hold these dir fds and must land before the mtime is set.
    STOWAGE_RETURN_IF_ERROR(files_.flush(&stats_));
    return copy_internal::apply_meta_fd(dst.get(), src.get(), m, opts_,
                                        {umask_, false, is_root}, dst_name);
  }

  const CopyOptions& opts_;
  FileCopier& files_;
  CopyStats& stats_;
  mode_t umask_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;  // first copy of a multiply-linked inode
};

// Splits "a/b/c" into "a/b" and "c"; "c" into "." and "c". Trailing slashes are ignored.
std::pair<std::string, std::string> split_path(const std::string& p) {
  std::string s = p;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  const auto slash = s.rfind('/');
  if (slash == std::string::npos) return {".", s};
  if (slash == 0) return {"/", s.substr(1)};
  return {s.substr(0, slash), s.substr(slash + 1)};
}

}  // namespace

Result<CopyStats> CopyEngine::copy_tree(const std::string& src, const std::string& dst,
                                        const CopyOptions& opts) const {
  const std::string ctx = "copy '" + src + "' to '" + dst + "'";
  const auto [src_parent, src_name] = split_path(src);
  const auto [dst_parent, dst_name] = split_path(dst);
  if (src_name.empty() || src_name == "." || src_name == ".." || dst_name.empty() ||
      dst_name == "." || dst_name == "..") {
    return Status::invalid_argument(ctx + ": source and destination must name an entry");
  }
  UniqueFd src_dir(::open(src_parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!src_dir.valid()) return errno_status(errno, ctx + ": open source parent");
  STOWAGE_ASSIGN_OR_RETURN(FileMeta root, copy_internal::stat_at(src_dir.get(), src_name));
  UniqueFd dst_dir(::open(dst_parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dst_dir.valid()) return errno_status(errno, ctx + ": open destination parent");
  struct stat st;
  if (::fstatat(dst_dir.get(), dst_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return Status::already_exists(ctx + ": destination exists");
  }
  if (errno != ENOENT) return errno_status(errno, ctx + ": stat destination");

  if (S_ISDIR(root.mode)) {
    // Copying a tree into itself would chase its own growing copy.
    std::error_code ec1, ec2;
    const std::string s = std::filesystem::canonical(src, ec1).string();
    const std::string d = std::filesystem::canonical(dst_parent, ec2).string();
    if (!ec1 && !ec2 && (d == s || d.rfind(s + "/", 0) == 0)) {
      return Status::invalid_argument(ctx + ": destination is inside the source");
    }
  }

  const mode_t umask_bits = copy_internal::current_umask();
  std::unique_ptr<FileCopier> data;
  CopyStrategy data_strategy = CopyStrategy::kPortable;
  if (opts.strategy == CopyStrategy::kIoUring || opts.strategy == CopyStrategy::kAuto) {
    if (!uring_.usable) {
      if (opts.strategy == CopyStrategy::kIoUring) {
        return Status::unimplemented(ctx + ": io_uring refused (" + errno_name(uring_.refusal_errno) + ")");
      }
    } else {
      // kAuto hands large files to copy_file_range (see make_uring_copier);
      // forced kIoUring keeps every byte on the ring.
      auto u = copy_internal::make_uring_copier(opts, umask_bits, opts.strategy == CopyStrategy::kAuto);
      if (u.is_ok()) {
        data = std::move(u).value();
        data_strategy = CopyStrategy::kIoUring;
      } else if (opts.strategy == CopyStrategy::kIoUring) {
        return u.status().with_context(ctx);
      } else {
        // The probe passed but this ring did not (e.g. memlock): say so, go on.
        opts_.log("level=warn msg=\"io_uring ring setup failed, using portable I/O\" "
                  "component=copy_engine err=\"" + u.status().message() + "\"");
      }
    }
  }
  if (!data && opts.strategy != CopyStrategy::kReflink) {
    data = copy_internal::make_portable_copier(opts, umask_bits);
  }
  std::unique_ptr<FileCopier> files;
  // Measured on XFS (docs/COPY_ENGINE.md): cloning file by file beats cloning
  // inside io_uring batches, whose concurrent creates contend on the directory.
  if (opts.strategy == CopyStrategy::kAuto || opts.strategy == CopyStrategy::kReflink) {
    files = copy_internal::make_reflink_copier(opts, umask_bits, std::move(data));
  } else {
    files = std::move(data);
  }

  CopyStats stats;
  Status st_copy;
  {
    TreeCopier tree(opts, *files, stats, umask_bits);
    st_copy = tree.copy_entry(src_dir.get(), src_name, dst_dir.get(), dst_name, dst, root, true);
    if (st_copy.is_ok()) st_copy = files->flush(&stats);
  }
  files.reset();  // closes every fd before the cleanup below
  if (!st_copy.is_ok()) {
    // Leave nothing that could pass for a finished copy.
    std::error_code ec;
    std::filesystem::remove_all(dst, ec);
    return st_copy.with_context(ctx);
  }
  stats.strategy = stats.reflinked_files > 0 ? CopyStrategy::kReflink
                   : stats.uring_files > 0    ? CopyStrategy::kIoUring
                   : stats.portable_files > 0 ? CopyStrategy::kPortable
                                              : data_strategy;
  return stats;
}

Result<CopyStats> CopyEngine::copy_file(const std::string& src, const std::string& dst,
                                        const CopyOptions& opts) const {
  struct stat st;
  if (::lstat(src.c_str(), &st) != 0) return errno_status(errno, "copy file '" + src + "'");
  if (!S_ISREG(st.st_mode)) {
    return Status::invalid_argument("copy file '" + src + "': not a regular file");
  }
  return copy_tree(src, dst, opts);
}

}  // namespace stowage
