#include "snapshot/tree_util.h"

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>
#include <stdexcept>

namespace stowage::test {

namespace {

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

std::string shell_quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

LoopFs::LoopFs(const std::string& type, uint64_t size_mb, const LoopFsOptions& more)
    : dir_("stowage-loopfs"), type_(type) {
  const std::string img = (more.image_dir.empty() ? dir_.path() : more.image_dir) + "/image";
  mnt_ = dir_ / "mnt";
  std::filesystem::create_directory(mnt_);
  std::string mkfs = type == "xfs"     ? "mkfs.xfs -q -f"
                     : type == "btrfs" ? "mkfs.btrfs -q -f"
                                       : "mkfs.ext4 -q -F -b 4096";  // small images default to 1 KiB blocks
  std::string out;
  const std::string steps = "truncate -s " + std::to_string(size_mb) + "M " + shell_quote(img) + " && " +
                            mkfs + " " + more.mkfs_args + " " + shell_quote(img) + " && mount -o loop" +
                            (more.mount_options.empty() ? "" : "," + more.mount_options) + " " + shell_quote(img) +
                            " " + shell_quote(mnt_);
  if (run_shell(steps + " 2>&1", &out) != 0) {
    error_ = "making a " + type + " loop filesystem failed: " + steps + "\n" + out;
    return;
  }
  mounted_ = true;
}

ThinFs::ThinFs(uint64_t pool_mb, uint64_t size_mb)
    : pool_(pool_mb << 20),
      fs_("ext4", size_mb,
          {.image_dir = pool_.path(),
           .mkfs_args = "-O ^has_journal -E lazy_itable_init=0",
           .mount_options = "errors=continue"}) {}

void ThinFs::fill_pool() const {
  // The loop device passes the trim on as a hole punched in the image.
  const std::string cmd = "sync -f " + shell_quote(mount_point()) + " && fstrim " + shell_quote(mount_point());
  std::string out;
  if (run_shell(cmd + " 2>&1", &out) != 0) throw std::runtime_error("fill_pool: " + cmd + ": " + out);
  pool_.fill(pool_.path() + "/filler");
}

void ThinFs::free_pool() const { std::filesystem::remove(pool_.path() + "/filler"); }

LoopFs::~LoopFs() {
  if (!mounted_) return;
  // A lazy unmount as the last resort keeps a busy mount from pinning the
  // TempDir; autoclear frees the loop device once the mount is gone.
  if (run_shell("umount " + shell_quote(mnt_) + " 2>/dev/null") != 0) {
    (void)run_shell("umount -l " + shell_quote(mnt_));
  }
}

namespace {

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  for (; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

void write_at(const std::string& path, const std::vector<std::pair<uint64_t, std::string>>& parts,
              uint64_t size, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  check(fd >= 0, "create " + path);
  for (const auto& [off, data] : parts) {
    check(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off)) == static_cast<ssize_t>(data.size()),
          "write " + path);
  }
  check(::ftruncate(fd, static_cast<off_t>(size)) == 0, "truncate " + path);
  check(::fchmod(fd, mode) == 0, "chmod " + path);
  ::close(fd);
}

}  // namespace

TreeCounts build_random_tree(const std::string& root, const TreeShape& shape) {
  std::mt19937_64 rng(shape.seed);
  TreeCounts c;
  auto pick = [&](auto const& v) { return v[rng() % v.size()]; };
  const std::vector<mode_t> dir_modes = {0755, 0700, 0555, 0750, 02775, 01777};
  const std::vector<mode_t> file_modes = {0644, 0600, 0444, 04755, 02750, 0640, 0000};
  const std::vector<uint64_t> sizes = {0, 1, 100, 4095, 4096, 65535, 65536, 65537, 200000, 1500000};
  const std::vector<std::string> odd = {"with space", "new\nline", std::string("\xff\xfe bytes"),
                                        "-dash", "\xc3\xbc" "n\xc3\xaf" "code", "tab\there", ".hidden"};

  std::vector<std::string> dirs = {root};
  std::vector<std::string> files;
  check(::mkdir(root.c_str(), 0755) == 0, "mkdir " + root);
  c.dirs = 1;
  for (int d = 0; d < 6; ++d) {
    std::string parent = pick(dirs);
    std::string name = d < 3 ? odd[static_cast<size_t>(d)] + "_d" + std::to_string(d) : "dir" + std::to_string(d);
    std::string p = parent + "/" + name;
    check(::mkdir(p.c_str(), 0755) == 0, "mkdir " + p);
    dirs.push_back(p);
    c.dirs++;
  }
  for (int f = 0; f < 40; ++f) {
    std::string dir = pick(dirs);
    std::string name = (f < static_cast<int>(odd.size()) ? odd[static_cast<size_t>(f)] : "file") + std::to_string(f);
    std::string p = dir + "/" + name;
    uint64_t size = sizes[static_cast<size_t>(f) % sizes.size()];
    write_at(p, {{0, random_bytes(rng, size)}}, size, pick(file_modes));
    files.push_back(p);
    c.files++;
    c.bytes += size;
    if (size == 0) c.empty_files++;
  }
  // Sparse files: interior holes, a leading hole, a trailing hole, a small one.
  struct Sparse {
    std::vector<std::pair<uint64_t, uint64_t>> data;  // offset, length
    uint64_t size;
  };
  const std::vector<Sparse> sparse = {
      {{{1 << 20, 512 << 10}, {6 << 20, 4096}}, 8 << 20},
      {{{3 << 20, 1 << 20}}, 4 << 20},
      {{{0, 8192}}, 2 << 20},
      {{{0, 4096}}, 64 << 10},
  };
  for (size_t i = 0; i < sparse.size(); ++i) {
    std::vector<std::pair<uint64_t, std::string>> parts;
    for (auto [off, len] : sparse[i].data) parts.emplace_back(off, random_bytes(rng, len));
    std::string p = dirs[i % dirs.size()] + "/sparse" + std::to_string(i);
    write_at(p, parts, sparse[i].size, 0644);
    files.push_back(p);
    c.files++;
    c.bytes += sparse[i].size;
  }
  if (shape.large_file_mb > 0) {
    std::string p = root + "/large.bin";
    const uint64_t size = shape.large_file_mb << 20;
    write_at(p, {{0, random_bytes(rng, size)}}, size, 0640);
    files.push_back(p);
    c.files++;
    c.bytes += size;
  }
  // Hardlinks: in the same directory, across directories, and two to one inode.
  for (int h = 0; h < 3; ++h) {
    const std::string& target = files[static_cast<size_t>(h) * 5];
    std::string p = (h == 0 ? target.substr(0, target.rfind('/')) : dirs[dirs.size() - 1 - static_cast<size_t>(h)]) +
                    "/hardlink " + std::to_string(h);
    check(::link(target.c_str(), p.c_str()) == 0, "link " + p);
    c.hardlinks++;
  }
  {
    std::string p = root + "/second link to file0";
    check(::link(files[0].c_str(), p.c_str()) == 0, "link " + p);
    c.hardlinks++;
  }
  // Symlinks: relative, absolute, dangling, to a directory, with an odd target.
  const std::vector<std::pair<std::string, std::string>> links = {
      {"rel link", "file10"}, {"abs_link", "/etc/hostname"}, {"dangling", "does/not/exist"},
      {"dirlink", "dir3"}, {"oddlink", "new\nline target \xff"}};
  for (const auto& [name, target] : links) {
    std::string p = root + "/" + name;
    check(::symlink(target.c_str(), p.c_str()) == 0, "symlink " + p);
    c.symlinks++;
  }
  {
    std::string p = dirs[1] + "/fifo";
    check(::mkfifo(p.c_str(), 0620) == 0, "mkfifo " + p);
    c.specials++;
  }
  // xattrs on files and directories, one needing a large buffer.
  for (size_t i = 0; i < files.size(); i += 3) {
    std::string v = "value-" + std::to_string(i);
    check(::lsetxattr(files[i].c_str(), "user.stowage", v.data(), v.size(), 0) == 0, "setxattr " + files[i]);
  }
  {
    std::string big = random_bytes(rng, 2000);
    check(::lsetxattr(files[1].c_str(), "user.big", big.data(), big.size(), 0) == 0, "setxattr big");
    check(::lsetxattr(dirs[2].c_str(), "user.dir", "d", 1, 0) == 0, "setxattr dir");
    check(::lsetxattr(files[2].c_str(), "user.empty", "", 0, 0) == 0, "setxattr empty");
  }
  if (shape.with_owners) {
    for (size_t i = 0; i < files.size(); i += 4) {
      check(::lchown(files[i].c_str(), 1000 + static_cast<uid_t>(i), 2000 + static_cast<gid_t>(i)) == 0, "chown");
    }
    check(::lchown((root + "/dangling").c_str(), 4242, 4343) == 0, "lchown symlink");
    check(::lchown(dirs[3].c_str(), 777, 888) == 0, "chown dir");
  }
  // chown clears setuid/setgid: set the modes again afterwards.
  for (size_t i = 0; i < files.size(); i += 4) {
    mode_t m = i % 8 == 0 ? 04755 : 02711;
    check(::chmod(files[i].c_str(), m) == 0, "chmod");
  }
  // Times last, deepest first, so creating entries does not move them.
  std::vector<std::string> all;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) all.push_back(e.path().string());
  all.push_back(root);
  std::sort(all.begin(), all.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  int64_t t = 1'500'000'000;
  for (const auto& p : all) {
    timespec ts[2] = {{t, 111}, {t + 7, static_cast<long>(rng() % 1'000'000'000)}};
    check(::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0, "utimensat " + p);
    t += 3600;
  }
  // Directory modes after their contents exist (0555 forbids adding entries).
  for (size_t i = 1; i < dirs.size(); ++i) {
    struct stat st;
    check(::stat(dirs[i].c_str(), &st) == 0, "stat");
    check(::chmod(dirs[i].c_str(), dir_modes[i % dir_modes.size()]) == 0, "chmod dir");
    timespec ts[2] = {st.st_atim, st.st_mtim};
    check(::utimensat(AT_FDCWD, dirs[i].c_str(), ts, 0) == 0, "utimensat dir");
  }
  return c;
}

namespace {

std::string digest_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "unreadable";
  uint64_t h = 1469598103934665603ULL;
  std::vector<unsigned char> buf(1 << 20);
  ssize_t n;
  uint64_t total = 0;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0) {
    for (ssize_t i = 0; i < n; ++i) h = (h ^ buf[static_cast<size_t>(i)]) * 1099511628211ULL;
    total += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return std::to_string(h) + "/" + std::to_string(total);
}

std::vector<std::pair<uint64_t, uint64_t>> data_map(const std::string& path, uint64_t size) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {{~0ULL, 0}};
  off_t pos = 0;
  while (pos < static_cast<off_t>(size)) {
    off_t d = ::lseek(fd, pos, SEEK_DATA);
    if (d < 0) break;
    off_t h = ::lseek(fd, d, SEEK_HOLE);
    out.emplace_back(d, h - d);
    pos = h;
  }
  ::close(fd);
  return out;
}

}  // namespace

std::map<std::string, EntryInfo> describe_tree(const std::string& root) {
  std::map<std::string, EntryInfo> out;
  std::map<std::pair<dev_t, ino_t>, std::vector<std::string>> inodes;
  std::vector<std::string> rels = {""};
  if (std::filesystem::is_directory(std::filesystem::symlink_status(root))) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
      rels.push_back(e.path().string().substr(root.size() + 1));
    }
  }
  for (const auto& rel : rels) {
    const std::string p = rel.empty() ? root : root + "/" + rel;
    struct stat st;
    check(::lstat(p.c_str(), &st) == 0, "lstat " + p);
    EntryInfo info;
    info.mode = st.st_mode;
    info.uid = st.st_uid;
    info.gid = st.st_gid;
    info.mtime_sec = st.st_mtim.tv_sec;
    info.mtime_nsec = st.st_mtim.tv_nsec;
    if (!S_ISDIR(st.st_mode)) info.size = static_cast<uint64_t>(st.st_size);
    if (S_ISLNK(st.st_mode)) {
      std::string t(4096, '\0');
      ssize_t n = ::readlink(p.c_str(), t.data(), t.size());
      check(n >= 0, "readlink");
      t.resize(static_cast<size_t>(n));
      info.link_target = t;
    } else {
      char names[8192];
      ssize_t n = ::llistxattr(p.c_str(), names, sizeof names);
      for (ssize_t off = 0; n > 0 && off < n;) {
        std::string key = names + off;
        off += static_cast<ssize_t>(key.size()) + 1;
        std::string v(65536, '\0');
        ssize_t vn = ::lgetxattr(p.c_str(), key.c_str(), v.data(), v.size());
        v.resize(vn < 0 ? 0 : static_cast<size_t>(vn));
        info.xattrs[key] = v;
      }
    }
    if (S_ISREG(st.st_mode)) {
      info.content_digest = digest_file(p);
      info.has_holes = static_cast<uint64_t>(st.st_blocks) * 512 < info.size;
      if (info.size > (64 << 10) || info.has_holes) info.data_map = data_map(p, info.size);
    }
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) inodes[{st.st_dev, st.st_ino}].push_back(rel);
    out[rel] = info;
  }
  for (auto& [ino, names] : inodes) {
    std::sort(names.begin(), names.end());
    for (const auto& n : names) out[n].link_group = names.front();
  }
  return out;
}

std::string diff_trees(const std::map<std::string, EntryInfo>& want,
                       const std::map<std::string, EntryInfo>& got) {
  std::ostringstream o;
  for (const auto& [rel, w] : want) {
    auto it = got.find(rel);
    if (it == got.end()) {
      o << "missing: '" << rel << "'\n";
      continue;
    }
    const EntryInfo& g = it->second;
    // Holes: every hole of the source must be a hole in the copy. The copy may
    // have more (a filesystem can allocate zeroed blocks around a write, e.g.
    // XFS's 64 KiB granules, which read back as data in the source).
    bool holes_kept = true;
    for (auto [off, len] : g.data_map) {
      bool covered = false;
      for (auto [woff, wlen] : w.data_map) covered = covered || (off >= woff && off + len <= woff + wlen);
      holes_kept = holes_kept && covered;
    }
    EntryInfo w2 = w;
    w2.data_map = g.data_map;
    if (w2 == g && holes_kept) continue;
    o << "differs: '" << rel << "':";
    if (w.mode != g.mode) o << " mode " << std::oct << w.mode << "!=" << g.mode << std::dec;
    if (w.uid != g.uid || w.gid != g.gid) o << " owner " << w.uid << ":" << w.gid << "!=" << g.uid << ":" << g.gid;
    if (w.size != g.size) o << " size " << w.size << "!=" << g.size;
    if (w.mtime_sec != g.mtime_sec || w.mtime_nsec != g.mtime_nsec) {
      o << " mtime " << w.mtime_sec << "." << w.mtime_nsec << "!=" << g.mtime_sec << "." << g.mtime_nsec;
    }
    if (w.link_target != g.link_target) o << " symlink target";
    if (w.content_digest != g.content_digest) o << " content";
    if (!holes_kept) {
      o << " data/hole map";
      for (auto [off, len] : w.data_map) o << " " << off << "+" << len;
      o << " vs";
      for (auto [off, len] : g.data_map) o << " " << off << "+" << len;
    }
    if (w.has_holes != g.has_holes) o << " holes " << w.has_holes << "!=" << g.has_holes;
    if (w.xattrs != g.xattrs) o << " xattrs (" << w.xattrs.size() << " vs " << g.xattrs.size() << ")";
    if (w.link_group != g.link_group) o << " hardlink group '" << w.link_group << "' vs '" << g.link_group << "'";
    o << "\n";
  }
  for (const auto& [rel, g] : got) {
    if (want.count(rel) == 0) o << "unexpected: '" << rel << "'\n";
  }
  return o.str();
}

bool all_extents_shared(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ::fsync(fd);  // delalloc extents are not reported as shared until allocated
  constexpr unsigned kMax = 512;
  std::vector<char> buf(sizeof(fiemap) + kMax * sizeof(fiemap_extent));
  auto* fm = reinterpret_cast<fiemap*>(buf.data());
  fm->fm_start = 0;
  fm->fm_length = FIEMAP_MAX_OFFSET;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = kMax;
  bool ok = ::ioctl(fd, FS_IOC_FIEMAP, fm) == 0 && fm->fm_mapped_extents > 0;
  for (unsigned i = 0; ok && i < fm->fm_mapped_extents; ++i) {
    ok = (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED) != 0;
  }
  ::close(fd);
  return ok;
}

}  // namespace stowage::test
