#include "state_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "support/test_support.h"

namespace stowage {
namespace {

namespace fs = std::filesystem;

TEST(StateJournal, CommitsAreReadBackInOrder) {
  test::TempDir dir("stowage-journal");
  {
    auto j = StateJournal::create(dir.path(), 7);
    ASSERT_TRUE(j.is_ok()) << j.status().message();
    for (int i = 0; i < 100; ++i) ASSERT_TRUE((*j)->commit("record-" + std::to_string(i)).is_ok());
    ASSERT_TRUE((*j)->commit("").is_ok());
    EXPECT_EQ(StateJournal::create(dir.path(), 7).status().code(), Code::kAlreadyExists);
  }
  auto gens = StateJournal::read_all(dir.path());
  ASSERT_TRUE(gens.is_ok());
  ASSERT_EQ(gens->size(), 1u);
  EXPECT_EQ((*gens)[0].number, 7u);
  ASSERT_EQ((*gens)[0].payloads.size(), 101u);
  EXPECT_EQ((*gens)[0].payloads[42], "record-42");
  EXPECT_EQ((*gens)[0].payloads[100], "");
  EXPECT_FALSE((*gens)[0].torn_tail);
}

TEST(StateJournal, GenerationsSortedAndForeignFilesIgnored) {
  test::TempDir dir("stowage-journal");
  for (uint64_t n : {3, 1, 2}) {
    auto j = StateJournal::create(dir.path(), n);
    ASSERT_TRUE(j.is_ok());
    ASSERT_TRUE((*j)->commit("gen" + std::to_string(n)).is_ok());
  }
  test::write_file(dir / "notes.txt", "x");
  test::write_file(dir / "zzzzzzzzzzzzzzzz.log", "x");
  auto gens = StateJournal::read_all(dir.path());
  ASSERT_TRUE(gens.is_ok());
  ASSERT_EQ(gens->size(), 3u);
  EXPECT_EQ((*gens)[0].payloads[0], "gen1");
  EXPECT_EQ((*gens)[2].payloads[0], "gen3");
  EXPECT_TRUE(StateJournal::read_all(dir / "missing")->empty());
}

TEST(StateJournal, TornOrCorruptTailStopsReading) {
  test::TempDir dir("stowage-journal");
  std::string path;
  {
    auto j = StateJournal::create(dir.path(), 1);
    ASSERT_TRUE(j.is_ok());
    path = (*j)->path();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*j)->commit("ok" + std::to_string(i)).is_ok());
  }
  std::string intact = test::read_file(path);
  // Every possible truncation of a fourth frame is ignored; the first three survive.
  {
    auto j = StateJournal::create(dir.path(), 2);
    ASSERT_TRUE((*j)->commit("fourth-record").is_ok());
  }
  std::string fourth = test::read_file(dir.path() + "/0000000000000002.log");
  for (size_t cut = 1; cut < fourth.size(); ++cut) {
    test::write_file(path, intact + fourth.substr(0, cut));
    auto gens = StateJournal::read_all(dir.path());
    ASSERT_TRUE(gens.is_ok());
    EXPECT_EQ((*gens)[0].payloads.size(), 3u) << cut;
    EXPECT_TRUE((*gens)[0].torn_tail) << cut;
  }
  // A flipped bit in the middle frame's checksum or payload: its length field
  // still leads to the next frame, which checks out. Damage, not a torn tail.
  for (size_t at : {size_t{15 + 5}, size_t{15 + 13}}) {
    std::string bad = intact;
    bad[at] ^= 0x40;
    test::write_file(path, bad);
    auto gens = StateJournal::read_all(dir.path());
    EXPECT_EQ((*gens)[0].payloads, (std::vector<std::string>{"ok0", "ok2"})) << at;
    EXPECT_EQ((*gens)[0].damaged, (std::vector<uint64_t>{15})) << at;
    EXPECT_FALSE((*gens)[0].torn_tail) << at;
  }
  // A flipped bit in its length field: the next frame is found by scanning
  // on, so this is damage too, not a torn tail.
  std::string bad = intact;
  bad[15] ^= 0x40;
  test::write_file(path, bad);
  auto gens = StateJournal::read_all(dir.path());
  EXPECT_EQ((*gens)[0].payloads, (std::vector<std::string>{"ok0", "ok2"}));
  EXPECT_EQ((*gens)[0].damaged, (std::vector<uint64_t>{15}));
  EXPECT_FALSE((*gens)[0].torn_tail);
  // The same after a preallocated journal's zeros: a torn last frame
  // followed by zeros only is still a torn tail.
  test::write_file(path, intact + fourth.substr(0, 9) + std::string(64 << 10, '\0'));
  gens = StateJournal::read_all(dir.path());
  EXPECT_EQ((*gens)[0].payloads.size(), 3u);
  EXPECT_TRUE((*gens)[0].damaged.empty());
  EXPECT_TRUE((*gens)[0].torn_tail);
  // A length field claiming more than the file holds.
  test::write_file(path, std::string("\xff\xff\xff\x00", 4) + std::string(20, 'x'));
  gens = StateJournal::read_all(dir.path());
  EXPECT_TRUE((*gens)[0].payloads.empty());
}

TEST(StateJournal, ProcessDurableCommitsAreInTheFileWithoutAFlush) {
  test::TempDir dir("stowage-journal");
  auto j = StateJournal::create(dir.path(), 1, 64 << 10);
  ASSERT_TRUE(j.is_ok()) << j.status().message();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*j)->commit("mount-" + std::to_string(i), StateJournal::Durability::kProcess).is_ok());
  }
  EXPECT_EQ((*j)->flushes(), 0u);
  // Another process (the daemon restarted after a SIGKILL) reads them back.
  auto gens = StateJournal::read_all(dir.path());
  ASSERT_TRUE(gens.is_ok());
  EXPECT_EQ((*gens)[0].payloads, (std::vector<std::string>{"mount-0", "mount-1", "mount-2"}));
  // A flushed commit flushes them with it: one fdatasync.
  ASSERT_TRUE((*j)->commit("create").is_ok());
  EXPECT_EQ((*j)->flushes(), 1u);
  gens = StateJournal::read_all(dir.path());
  ASSERT_EQ((*gens)[0].payloads.size(), 4u);
  EXPECT_EQ((*gens)[0].payloads[3], "create");
}

TEST(StateJournal, ConcurrentCommitsAllLandExactlyOnce) {
  test::TempDir dir("stowage-journal");
  constexpr int kThreads = 16, kEach = 200;
  {
    auto j = StateJournal::create(dir.path(), 1);
    ASSERT_TRUE(j.is_ok());
    std::vector<std::thread> threads;
    // Odd threads commit without waiting for a flush, interleaved with the
    // flushing ones.
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        auto durability = t % 2 ? StateJournal::Durability::kProcess : StateJournal::Durability::kDisk;
        for (int i = 0; i < kEach; ++i) {
          EXPECT_TRUE((*j)->commit(std::to_string(t) + ":" + std::to_string(i), durability).is_ok());
        }
      });
    }
    for (auto& t : threads) t.join();
    // Flushing commits share flushes; the others make none.
    EXPECT_GT((*j)->flushes(), 0u);
    EXPECT_LE((*j)->flushes(), static_cast<uint64_t>(kThreads / 2 * kEach));
  }
  auto gens = StateJournal::read_all(dir.path());
  ASSERT_TRUE(gens.is_ok());
  const auto& p = (*gens)[0].payloads;
  ASSERT_EQ(p.size(), static_cast<size_t>(kThreads * kEach));
  std::set<std::string> unique(p.begin(), p.end());
  EXPECT_EQ(unique.size(), p.size());
  // Per thread, frames appear in the order that thread committed them.
  std::vector<int> next(kThreads, 0);
  for (const auto& rec : p) {
    int t = std::stoi(rec.substr(0, rec.find(':')));
    EXPECT_EQ(std::stoi(rec.substr(rec.find(':') + 1)), next[t]++);
  }
}

TEST(StateJournal, PreallocatedGenerationKeepsItsSizeAndItsZeroTailIsNotTorn) {
  test::TempDir dir("stowage-journal");
  std::string path;
  {
    auto j = StateJournal::create(dir.path(), 1, 64 << 10);
    ASSERT_TRUE(j.is_ok()) << j.status().message();
    path = (*j)->path();
    EXPECT_EQ(fs::file_size(path), 64u << 10);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE((*j)->commit("record-" + std::to_string(i)).is_ok());
    // Frames went over the zeros: the size did not change.
    EXPECT_EQ(fs::file_size(path), 64u << 10);
    EXPECT_LT((*j)->bytes(), 64u << 10);
  }
  auto gens = StateJournal::read_all(dir.path());
  ASSERT_TRUE(gens.is_ok());
  ASSERT_EQ(gens->size(), 1u);
  ASSERT_EQ((*gens)[0].payloads.size(), 50u);
  EXPECT_EQ((*gens)[0].payloads[49], "record-49");
  EXPECT_FALSE((*gens)[0].torn_tail);
  // An empty preallocated generation reads as empty, not torn.
  ASSERT_TRUE(StateJournal::create(dir.path(), 2, 4096).is_ok());
  gens = StateJournal::read_all(dir.path());
  ASSERT_EQ(gens->size(), 2u);
  EXPECT_TRUE((*gens)[1].payloads.empty());
  EXPECT_FALSE((*gens)[1].torn_tail);
}

TEST(StateJournal, FramesPastThePreallocatedSizeExtendTheFile) {
  test::TempDir dir("stowage-journal");
  std::string path;
  {
    auto j = StateJournal::create(dir.path(), 1, 100);
    ASSERT_TRUE(j.is_ok());
    path = (*j)->path();
    for (int i = 0; i < 20; ++i) ASSERT_TRUE((*j)->commit(std::string(30, static_cast<char>('a' + i))).is_ok());
    EXPECT_EQ(fs::file_size(path), (*j)->bytes());
    EXPECT_EQ((*j)->bytes(), 20u * (12 + 30));
  }
  auto gens = StateJournal::read_all(dir.path());
  ASSERT_EQ((*gens)[0].payloads.size(), 20u);
  EXPECT_EQ((*gens)[0].payloads[19], std::string(30, 't'));
  EXPECT_FALSE((*gens)[0].torn_tail);
}

TEST(StateJournal, TornFrameOverPreallocatedZerosStopsReading) {
  // A crash while a frame was being written over the zeros: any prefix of it
  // may have reached the disk, followed by the rest of the zeros.
  test::TempDir dir("stowage-journal");
  std::string path;
  uint64_t end = 0;
  {
    auto j = StateJournal::create(dir.path(), 1, 4096);
    ASSERT_TRUE(j.is_ok());
    path = (*j)->path();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*j)->commit("ok" + std::to_string(i)).is_ok());
    end = (*j)->bytes();
  }
  std::string intact = test::read_file(path);
  ASSERT_EQ(intact.size(), 4096u);
  {
    auto j = StateJournal::create(dir.path(), 2);
    ASSERT_TRUE((*j)->commit("fourth-record").is_ok());
  }
  std::string fourth = test::read_file(journal_path(dir.path(), 2));
  ASSERT_EQ(::unlink(journal_path(dir.path(), 2).c_str()), 0);
  for (size_t cut = 1; cut < fourth.size(); ++cut) {
    std::string torn = intact;
    torn.replace(end, cut, fourth.substr(0, cut));
    test::write_file(path, torn);
    auto gens = StateJournal::read_all(dir.path());
    ASSERT_TRUE(gens.is_ok());
    ASSERT_EQ(gens->size(), 1u);
    ASSERT_EQ((*gens)[0].payloads.size(), 3u) << cut;
    EXPECT_EQ((*gens)[0].payloads[2], "ok2");
    EXPECT_TRUE((*gens)[0].torn_tail) << cut;
  }
  // The whole frame there: it counts, and the zeros after it are not torn.
  std::string whole = intact;
  whole.replace(end, fourth.size(), fourth);
  test::write_file(path, whole);
  auto gens = StateJournal::read_all(dir.path());
  ASSERT_EQ((*gens)[0].payloads.size(), 4u);
  EXPECT_EQ((*gens)[0].payloads[3], "fourth-record");
  EXPECT_FALSE((*gens)[0].torn_tail);
}

TEST(StateJournal, CommitThatFindsTheDiskFullFailsAndTheNextOneWorksOnceSpaceIsFreed) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs: needs root";
  test::SmallFs small(1 << 20);
  ASSERT_EQ(small.error(), "");
  auto j = StateJournal::create(small.path(), 1);  // not preallocated: every frame extends the file
  ASSERT_TRUE(j.is_ok()) << j.status().message();
  ASSERT_TRUE((*j)->commit("before").is_ok());
  const std::string filler = small.path() + "/filler";
  small.fill(filler);
  // Larger than what is left of the file's last page: part of the frame may
  // be written before the disk refuses the rest.
  Status full = (*j)->commit(std::string(64 << 10, 'x'));
  EXPECT_EQ(full.code(), Code::kResourceExhausted) << full.message();
  EXPECT_NE(full.message().find((*j)->path()), std::string::npos) << full.message();
  EXPECT_NE(full.message().find("No space left on device"), std::string::npos) << full.message();
  EXPECT_EQ((*j)->commit(std::string(64 << 10, 'y'), StateJournal::Durability::kProcess).code(),
            Code::kResourceExhausted);
  // Nothing written before is in doubt, so once space is freed the journal
  // goes on, and the refused frames leave no trace a reader would take for
  // damage.
  ASSERT_TRUE(fs::remove(filler));
  Status after = (*j)->commit("after");
  EXPECT_TRUE(after.is_ok()) << after.message();
  EXPECT_TRUE((*j)->commit("and more").is_ok());
  j->reset();
  auto gens = StateJournal::read_all(small.path());
  ASSERT_TRUE(gens.is_ok());
  ASSERT_EQ(gens->size(), 1u);
  EXPECT_EQ((*gens)[0].payloads, (std::vector<std::string>{"before", "after", "and more"}));
  EXPECT_TRUE((*gens)[0].damaged.empty());
  EXPECT_FALSE((*gens)[0].torn_tail);
}

TEST(StateJournal, ListNamesGenerationsWithoutReadingThem) {
  test::TempDir dir("stowage-journal");
  for (uint64_t n : {5, 2}) {
    auto j = StateJournal::create(dir.path(), n);
    ASSERT_TRUE(j.is_ok());
    ASSERT_TRUE((*j)->commit("x").is_ok());
  }
  test::write_file(dir / "notes.txt", "x");
  auto gens = StateJournal::list(dir.path());
  ASSERT_TRUE(gens.is_ok());
  ASSERT_EQ(gens->size(), 2u);
  EXPECT_EQ((*gens)[0].number, 2u);
  EXPECT_EQ((*gens)[0].path, journal_path(dir.path(), 2));
  EXPECT_TRUE((*gens)[0].payloads.empty());
  EXPECT_EQ((*gens)[1].number, 5u);
  EXPECT_TRUE(StateJournal::list(dir / "missing")->empty());
}

}  // namespace
}  // namespace stowage
