// FileReader: chunks arrive in order, contiguous, each chunk_size except the
// last, identical for the io_uring and pread implementations.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <string>
#include <vector>

#include "support/test_support.h"
#include "stowage/file_reader.h"

namespace stowage {
namespace {

constexpr size_t kChunk = 64 << 10;

class FileReaderTest : public testing::TestWithParam<bool /*io_uring*/> {
 protected:
  std::unique_ptr<FileReader> make(unsigned depth = 4) {
    auto r = FileReader::create({.chunk_size = kChunk, .queue_depth = depth, .force_portable = !GetParam()});
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ((*r)->uses_io_uring(), GetParam());
    return std::move(r).value();
  }
  test::TempDir dir_{"stowage-reader"};
};

std::string random_data(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

TEST_P(FileReaderTest, DeliversEveryByteInOrder) {
  auto reader = make();
  for (size_t size : {size_t{0}, size_t{1}, kChunk - 1, kChunk, kChunk + 1, 4 * kChunk, 10 * kChunk + 123}) {
    SCOPED_TRACE(size);
    const std::string data = random_data(size, static_cast<uint32_t>(size));
    test::write_file(dir_ / "f", data);
    std::string got;
    std::vector<uint64_t> offsets;
    std::vector<size_t> lengths;
    auto n = reader->read_file(dir_ / "f", [&](uint64_t off, std::span<const std::byte> d) {
      offsets.push_back(off);
      lengths.push_back(d.size());
      got.append(reinterpret_cast<const char*>(d.data()), d.size());
      return Status::ok();
    });
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    EXPECT_EQ(*n, size);
    EXPECT_EQ(got, data);
    ASSERT_EQ(offsets.size(), (size + kChunk - 1) / kChunk);
    for (size_t i = 0; i < offsets.size(); ++i) {
      EXPECT_EQ(offsets[i], i * kChunk);
      if (i + 1 < offsets.size()) {
        EXPECT_EQ(lengths[i], kChunk);
      }
    }
  }
}

TEST_P(FileReaderTest, QueueDepthOneAndSixtyFourWork) {
  const std::string data = random_data(20 * kChunk + 5, 9);
  test::write_file(dir_ / "f", data);
  for (unsigned depth : {1u, 64u}) {
    auto reader = make(depth);
    std::string got;
    auto n = reader->read_file(dir_ / "f", [&](uint64_t, std::span<const std::byte> d) {
      got.append(reinterpret_cast<const char*>(d.data()), d.size());
      return Status::ok();
    });
    ASSERT_TRUE(n.is_ok());
    EXPECT_EQ(got, data) << "depth " << depth;
  }
}

TEST_P(FileReaderTest, CallbackErrorStopsTheRead) {
  test::write_file(dir_ / "f", random_data(10 * kChunk, 3));
  auto reader = make();
  int calls = 0;
  auto n = reader->read_file(dir_ / "f", [&](uint64_t, std::span<const std::byte>) {
    return ++calls == 3 ? Status::corruption("stop here") : Status::ok();
  });
  EXPECT_EQ(n.status().code(), Code::kCorruption);
  EXPECT_EQ(n.status().message(), "stop here");
  EXPECT_EQ(calls, 3);
  // The reader is reusable after a stopped read.
  auto again = reader->read_file(dir_ / "f", [](uint64_t, std::span<const std::byte>) { return Status::ok(); });
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(*again, 10 * kChunk);
}

TEST_P(FileReaderTest, ErrorsAreClassified) {
  auto reader = make();
  auto ok = [](uint64_t, std::span<const std::byte>) { return Status::ok(); };
  EXPECT_EQ(reader->read_file(dir_ / "missing", ok).status().code(), Code::kNotFound);
  EXPECT_EQ(reader->read_file(dir_.path(), ok).status().code(), Code::kInvalidArgument);
}

// O_DIRECT for large files: the same bytes as buffered reads (also right after
// a write, with the data still dirty in the page cache), including unaligned
// sizes whose tail is read buffered; small files are not read directly.
TEST_P(FileReaderTest, DirectReadsDeliverTheSameBytes) {
  auto r = FileReader::create({.chunk_size = kChunk,
                               .queue_depth = 4,
                               .force_portable = !GetParam(),
                               .direct_min_size = 4096});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  FileReader& reader = **r;
  test::write_file(dir_ / "probe", std::string(4096, 'p'));
  const int probe = ::open((dir_ / "probe").c_str(), O_RDONLY | O_DIRECT);
  const bool fs_takes_direct = probe >= 0;
  if (probe >= 0) ::close(probe);
  for (size_t size : {size_t{1}, size_t{4095}, size_t{4096}, size_t{4097}, kChunk - 1, kChunk, kChunk + 1,
                      10 * kChunk + 123}) {
    SCOPED_TRACE(size);
    const std::string data = random_data(size, static_cast<uint32_t>(size) + 77);
    test::write_file(dir_ / "f", data);  // not synced: dirty pages
    const uint64_t before = reader.direct_bytes();
    std::string got;
    auto n = reader.read_file(dir_ / "f", [&](uint64_t off, std::span<const std::byte> d) {
      EXPECT_EQ(off, got.size());
      got.append(reinterpret_cast<const char*>(d.data()), d.size());
      return Status::ok();
    });
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    EXPECT_EQ(*n, size);
    EXPECT_EQ(got, data);
    const uint64_t direct = reader.direct_bytes() - before;
    EXPECT_LE(direct, size);
    if (GetParam() && fs_takes_direct && size >= 4096) {
      EXPECT_GE(direct, size / 4096 * 4096) << "aligned part read with O_DIRECT";
    } else {
      EXPECT_EQ(direct, 0u);
    }
  }
}

std::unique_ptr<FileReader> make_lending(bool io_uring, unsigned depth, unsigned lend) {
  auto r = FileReader::create(
      {.chunk_size = kChunk, .queue_depth = depth, .force_portable = !io_uring, .lend_buffers = lend});
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return std::move(r).value();
}

std::string_view text(std::span<const std::byte> d) { return {reinterpret_cast<const char*>(d.data()), d.size()}; }

// A chunk a lending callback kept.
struct Kept {
  uint64_t off;
  std::span<const std::byte> bytes;
  BufferHold hold;
};

// The callback keeps as many buffers as there are spare ones, and each kept
// buffer must still hold its bytes after the reader went on reading into the
// others (a buffer reused while held would show other bytes here).
TEST_P(FileReaderTest, LentBuffersKeepTheirBytesUntilDropped) {
  constexpr unsigned kLend = 3;
  auto reader = make_lending(GetParam(), 2, kLend);
  const std::string data = random_data(20 * kChunk + 123, 5);
  test::write_file(dir_ / "f", data);
  std::deque<Kept> kept;
  size_t checked = 0;
  auto check = [&](const Kept& k) {
    EXPECT_TRUE(text(k.bytes) == std::string_view(data).substr(k.off, k.bytes.size())) << "at " << k.off;
    checked += k.bytes.size();
  };
  auto n = reader->read_file_lending(dir_ / "f", [&](uint64_t off, std::span<const std::byte> d, const BufferHold& h) {
    kept.push_back({off, d, h});
    if (kept.size() > kLend) {
      check(kept.front());
      kept.pop_front();
    }
    return Status::ok();
  });
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(*n, data.size());
  // A plain read of another file while buffers are held must not use them.
  test::write_file(dir_ / "g", random_data(5 * kChunk, 6));
  ASSERT_TRUE(reader->read_file(dir_ / "g", [](uint64_t, std::span<const std::byte>) { return Status::ok(); }).is_ok());
  for (const Kept& k : kept) check(k);
  EXPECT_EQ(checked, data.size());
}

// Holds dropped on another thread, later than the reader wants to read on: the
// reader waits for a buffer instead of reusing a held one, and every byte
// arrives intact and in order.
TEST_P(FileReaderTest, HoldsDroppedOnAnotherThread) {
  auto reader = make_lending(GetParam(), 2, 1);
  const std::string data = random_data(40 * kChunk + 7, 9);
  test::write_file(dir_ / "f", data);
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Kept> queue;
  bool finished = false;
  std::string got;
  std::thread consumer([&] {
    std::unique_lock lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return finished || !queue.empty(); });
      if (queue.empty()) return;
      Kept k = std::move(queue.front());
      queue.pop_front();
      lk.unlock();
      EXPECT_EQ(k.off, got.size());
      got.append(text(k.bytes));
      k.hold.reset();
      lk.lock();
    }
  });
  auto n = reader->read_file_lending(dir_ / "f", [&](uint64_t off, std::span<const std::byte> d, const BufferHold& h) {
    {
      std::lock_guard lk(mu);
      queue.push_back({off, d, h});
    }
    cv.notify_one();
    return Status::ok();
  });
  {
    std::lock_guard lk(mu);
    finished = true;
  }
  cv.notify_one();
  consumer.join();
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(*n, data.size());
  EXPECT_TRUE(got == data);
}

TEST_P(FileReaderTest, LendingCallbackErrorStopsTheRead) {
  auto reader = make_lending(GetParam(), 4, 2);
  test::write_file(dir_ / "f", random_data(10 * kChunk, 3));
  int calls = 0;
  auto n = reader->read_file_lending(dir_ / "f", [&](uint64_t, std::span<const std::byte>, const BufferHold&) {
    return ++calls == 3 ? Status::internal("stop") : Status::ok();
  });
  EXPECT_EQ(n.status().code(), Code::kInternal);
  EXPECT_EQ(calls, 3);
  // Nothing was kept: every buffer is back and the reader reads on.
  std::string got;
  const std::string data = random_data(9 * kChunk + 1, 4);
  test::write_file(dir_ / "g", data);
  auto m = reader->read_file_lending(dir_ / "g", [&](uint64_t, std::span<const std::byte> d, const BufferHold&) {
    got.append(text(d));
    return Status::ok();
  });
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_TRUE(got == data);
}

INSTANTIATE_TEST_SUITE_P(Both, FileReaderTest, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& i) { return i.param ? "io_uring" : "pread"; });

TEST(FileReaderOptions, InvalidOptionsAreRejected) {
  EXPECT_EQ(FileReader::create({.chunk_size = 0}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(FileReader::create({.queue_depth = 0}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(FileReader::create({.queue_depth = 65}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(FileReader::create({.lend_buffers = 65}).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace stowage
