// File-store specifics the conformance suite cannot see: what lands on disk.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "stowage/object_store.h"
#include "stowage/store_file.h"
#include "support/test_support.h"

namespace stowage {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> tree(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::recursive_directory_iterator(dir)) out.push_back(fs::relative(e.path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(FileStore, RootMustBeAbsolute) {
  EXPECT_EQ(open_file_store("relative/dir").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(open_object_store("file://relative").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(open_object_store("ftp://x/y").status().code(), Code::kInvalidArgument);
}

TEST(FileStore, WritesStayUnderRootAndLeaveNoTempFiles) {
  test::TempDir dir;
  auto s = open_file_store(dir / "root/");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  ASSERT_TRUE((*s)->put("a/b c", "1").is_ok());
  ASSERT_TRUE((*s)->put("x", "2", {.create_only = true}).is_ok());
  EXPECT_EQ((*s)->put("x", "3", {.create_only = true}).code(), Code::kAlreadyExists);
  for (const char* evil : {"../evil", "a/../../evil", "/etc/evil", "a/./b"}) {
    EXPECT_EQ((*s)->put(evil, "e").code(), Code::kInvalidArgument) << evil;
  }
  EXPECT_EQ(tree(dir.path()), (std::vector<std::string>{"root", "root/.stowage-tmp", "root/a", "root/a/b c",
                                                         "root/x"}));
  EXPECT_EQ(test::read_file(dir / "root/a/b c"), "1");
  EXPECT_EQ((*s)->describe(), "file://" + dir.path() + "/root");
}

// A repository holds copies of every volume's files, unencrypted: nobody but
// its owner may read it, whatever the modes of the files it copied were.
TEST(FileStore, ObjectsAndDirectoriesAreTheOwnersAlone) {
  test::TempDir dir;
  const mode_t old_umask = ::umask(022);
  auto s = open_file_store(dir / "srv/backups/root");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  ASSERT_TRUE((*s)->put("data/ab/small", "1").is_ok());
  ASSERT_TRUE((*s)->put("data/ab/large", std::string(4u << 20, 'x')).is_ok());  // the O_DIRECT path
  ::umask(old_umask);
  const std::string r = "srv/backups/root";
  for (const std::string& path : {r, r + "/data", r + "/data/ab", r + "/data/ab/small", r + "/data/ab/large"}) {
    struct stat st{};
    ASSERT_EQ(::stat((dir / path).c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 077, 0u) << path << " has mode " << std::oct << (st.st_mode & 0777);
  }
  // Directories above the repository that it had to make are ordinary ones.
  for (const char* path : {"srv", "srv/backups"}) {
    struct stat st{};
    ASSERT_EQ(::stat((dir / path).c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 0777, 0755u) << path << " has mode " << std::oct << (st.st_mode & 0777);
  }
}

TEST(FileStore, ObjectAndDirectoryConflictIsPermanent) {
  test::TempDir dir;
  auto s = open_file_store(dir.path());
  ASSERT_TRUE(s.is_ok());
  ASSERT_TRUE((*s)->put("a", "file").is_ok());
  Status under = (*s)->put("a/b", "x");
  EXPECT_EQ(under.code(), Code::kFailedPrecondition) << under.to_string();
  EXPECT_FALSE(under.retryable());
  ASSERT_TRUE((*s)->put("d/e", "x").is_ok());
  Status over = (*s)->put("d", "x");
  EXPECT_EQ(over.code(), Code::kFailedPrecondition) << over.to_string();
  EXPECT_EQ((*s)->get("d").status().code(), Code::kNotFound);
  EXPECT_EQ((*s)->head("d").status().code(), Code::kNotFound);
  EXPECT_TRUE((*s)->remove("d").is_ok()) << "not an object, so already absent";
  EXPECT_EQ(test::read_file(dir / "d/e"), "x");
}

TEST(FileStore, OpenObjectStoreWrapsFileUrls) {
  test::TempDir dir;
  auto s = open_object_store("file://" + dir.path() + "/repo");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  ASSERT_TRUE((*s)->put("k", "v").is_ok());
  EXPECT_EQ(test::read_file(dir / "repo/k"), "v");
  EXPECT_TRUE((*s)->caps().conditional_create);
}

// Residency of the file's pages in the page cache (mincore), one flag per page.
std::vector<bool> cached_pages(const std::string& path) {
  std::vector<bool> out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  struct stat st {};
  ::fstat(fd, &st);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return out;
  std::vector<unsigned char> vec((static_cast<size_t>(st.st_size) + page - 1) / page);
  if (::mincore(map, static_cast<size_t>(st.st_size), vec.data()) == 0) {
    for (unsigned char v : vec) out.push_back(v & 1);
  }
  ::munmap(map, static_cast<size_t>(st.st_size));
  return out;
}

// Objects of 1 MiB and more go through the O_DIRECT path (aligned bounce
// buffer, buffered last partial block): every size around those boundaries
// must come back byte for byte, replaced and create-only alike.
TEST(FileStore, LargeObjectsRoundTripAtEveryAlignment) {
  test::TempDir dir;
  auto s = open_file_store(dir / "root");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  const size_t mib = size_t{1} << 20;
  for (size_t size : {mib - 1, mib, mib + 1, mib + 4095, mib + 4096, 2 * mib, 2 * mib + 4097, 5 * mib + 17}) {
    std::string data(size, '\0');
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>((i * 131 + size) >> 3);
    const std::string key = "big/" + std::to_string(size);
    ASSERT_TRUE((*s)->put(key, data, {.create_only = true}).is_ok()) << size;
    EXPECT_EQ((*s)->put(key, "x", {.create_only = true}).code(), Code::kAlreadyExists) << size;
    auto back = (*s)->get(key);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_TRUE(*back == data) << "create-only put of " << size << " bytes";
    std::reverse(data.begin(), data.end());
    ASSERT_TRUE((*s)->put(key, data).is_ok()) << size;
    back = (*s)->get(key);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_TRUE(*back == data) << "replacing put of " << size << " bytes";
  }
  EXPECT_EQ(tree(dir / "root/.stowage-tmp"), std::vector<std::string>{}) << "no temp files left";
}

// On file systems whose O_DIRECT bypasses the page cache (ext4, xfs; not
// tmpfs), a large object's full blocks are not left in the page cache: the
// kernel did not copy them there.
TEST(FileStore, LargeObjectsBypassThePageCache) {
  test::TempDir dir;
  struct statfs sfs {};
  ASSERT_EQ(::statfs(dir.path().c_str(), &sfs), 0);
  constexpr long kExt4 = 0xEF53, kXfs = 0x58465342;
  if (sfs.f_type != kExt4 && sfs.f_type != kXfs) {
    GTEST_SKIP() << "temp dir is on file system type 0x" << std::hex << sfs.f_type << ", not ext4 or xfs";
  }
  auto s = open_file_store(dir / "root");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  const size_t size = (size_t{3} << 20) + 100;
  ASSERT_TRUE((*s)->put("big", std::string(size, 'p')).is_ok());
  const std::vector<bool> cached = cached_pages(dir / "root/big");
  ASSERT_EQ(cached.size(), size / 4096 + 1);
  size_t resident = 0;
  for (size_t i = 0; i + 1 < cached.size(); ++i) resident += cached[i];
  EXPECT_EQ(resident, 0u) << "full blocks written through the page cache";
  // A small object is written buffered (one write, no bounce copy).
  ASSERT_TRUE((*s)->put("small", std::string(8192, 's')).is_ok());
  EXPECT_EQ(cached_pages(dir / "root/small"), (std::vector<bool>{true, true}));
}

TEST(ObjectKey, Validation) {
  for (const char* ok : {"a", "a/b", "...", "a/.b", "x..", "sp ace", "ü/日", "~", "a+b=c%d"}) {
    EXPECT_TRUE(validate_object_key(ok).is_ok()) << ok;
  }
  for (std::string bad : {std::string(""), std::string("/a"), std::string("a/"), std::string("a//b"),
                          std::string("."), std::string("a/.."), std::string("tab\t"), std::string("\x7f"),
                          std::string(".stowage-tmp"), std::string(1025, 'x')}) {
    EXPECT_EQ(validate_object_key(bad).code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(validate_object_key("x/.stowage-tmp").is_ok());
  EXPECT_TRUE(validate_object_key(std::string(1024, 'x')).is_ok());
}

}  // namespace
}  // namespace stowage
