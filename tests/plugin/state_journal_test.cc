#include "state_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>

#include "support/test_support.h"

namespace stowage {
namespace {

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
  // A flipped bit in the middle frame hides it and everything after it.
  std::string bad = intact;
  bad[intact.size() / 2] ^= 0x40;
  test::write_file(path, bad);
  auto gens = StateJournal::read_all(dir.path());
  EXPECT_LT((*gens)[0].payloads.size(), 3u);
  EXPECT_TRUE((*gens)[0].torn_tail);
  // A length field claiming more than the file holds.
  test::write_file(path, std::string("\xff\xff\xff\x00", 4) + std::string(20, 'x'));
  gens = StateJournal::read_all(dir.path());
  EXPECT_TRUE((*gens)[0].payloads.empty());
}

TEST(StateJournal, ConcurrentCommitsAllLandExactlyOnce) {
  test::TempDir dir("stowage-journal");
  constexpr int kThreads = 16, kEach = 200;
  {
    auto j = StateJournal::create(dir.path(), 1);
    ASSERT_TRUE(j.is_ok());
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          EXPECT_TRUE((*j)->commit(std::to_string(t) + ":" + std::to_string(i)).is_ok());
        }
      });
    }
    for (auto& t : threads) t.join();
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

}  // namespace
}  // namespace stowage
