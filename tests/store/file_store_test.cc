// File-store specifics the conformance suite cannot see: what lands on disk.
#include <gtest/gtest.h>

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
