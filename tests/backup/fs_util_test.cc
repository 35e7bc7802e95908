// fs_util: what the backup records of a sparse file that changes while its
// data ranges are read.
#include "fs_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "backup/test_data.h"
#include "backup/tree_fixture.h"
#include "support/test_support.h"

namespace stowage {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// A file cut short while its ranges are read is recorded as what was read,
// as a dense file is: the size where it ended (or where it ends now, if that
// lies in a hole past what was read), the holes cut to that size, the data
// below it. Never kFailedPrecondition.
TEST(ReadRanges, SparseFileTruncatedWhileReadEndsWhereItEnded) {
  test::TempDir dir("stowage-fs-util");
  const std::string path = dir / "sp";
  // 1 MiB of data every 8 MiB: ranges [8k, 8k + 1) MiB for k = 0..9.
  std::string data;
  {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    for (uint64_t k = 0; k < 10; ++k) {
      const std::string extent = test::random_bytes(kMiB, k);
      ASSERT_EQ(::pwrite(fd, extent.data(), extent.size(), static_cast<off_t>(8 * k * kMiB)), static_cast<ssize_t>(kMiB));
      data += extent;
    }
    ::close(fd);
  }
  ASSERT_LT(test::allocated_bytes(path), 20 * kMiB) << "the test directory's file system must keep holes";
  struct Case {
    uint64_t truncate_to;
    uint64_t size;       // recorded
    uint64_t data_read;  // bytes of data below it
  };
  for (const Case c : {Case{24 * kMiB + kMiB / 2, 24 * kMiB + kMiB / 2, 3 * kMiB + kMiB / 2},  // in a data range
                       Case{39 * kMiB, 39 * kMiB, 5 * kMiB}}) {                                 // in a hole
    SCOPED_TRACE(c.truncate_to);
    ASSERT_EQ(::truncate(path.c_str(), 73 * kMiB), 0);  // the size the map sees
    auto map = fs_util::map_data(AT_FDCWD, path);
    ASSERT_TRUE(map.is_ok()) << map.status().to_string();
    ASSERT_FALSE(map->holes.empty());
    std::string got;
    auto size = fs_util::read_ranges(*map, kMiB, [&](std::string_view piece) {
      if (got.empty() && ::truncate(path.c_str(), static_cast<off_t>(c.truncate_to)) != 0) {
        return errno_status(errno, "truncate");
      }
      got.append(piece);
      return Status::ok();
    });
    ASSERT_TRUE(size.is_ok()) << size.status().to_string();
    EXPECT_EQ(*size, c.size);
    EXPECT_TRUE(got == data.substr(0, c.data_read)) << got.size() << " bytes read";
    // Size, holes and data agree: the data ranges within the size hold exactly what was read.
    const auto holes = fs_util::holes_within(map->holes, *size);
    uint64_t in_ranges = 0;
    for (const auto& r : fs_util::data_ranges(*size, holes)) {
      EXPECT_LE(r.offset + r.length, *size);
      in_ranges += r.length;
    }
    for (const auto& h : holes) EXPECT_LE(h.offset + h.length, *size);
    EXPECT_EQ(in_ranges, got.size());
    // Rewrite the data the truncation cut off for the next case.
    const int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    for (uint64_t k = 0; k < 10; ++k) {
      ASSERT_EQ(::pwrite(fd, data.data() + k * kMiB, kMiB, static_cast<off_t>(8 * k * kMiB)), static_cast<ssize_t>(kMiB));
    }
    ::close(fd);
  }
}

// Holes cut to a size: those past it go, the one across it is shortened.
TEST(HolesWithin, CutsHolesToTheSize) {
  const std::vector<Hole> holes = {{0, 10}, {20, 10}, {40, 10}};
  EXPECT_EQ(fs_util::holes_within(holes, 50), holes);
  EXPECT_EQ(fs_util::holes_within(holes, 25), (std::vector<Hole>{{0, 10}, {20, 5}}));
  EXPECT_EQ(fs_util::holes_within(holes, 20), (std::vector<Hole>{{0, 10}}));
  EXPECT_EQ(fs_util::holes_within(holes, 0), std::vector<Hole>{});
}

}  // namespace
}  // namespace stowage
