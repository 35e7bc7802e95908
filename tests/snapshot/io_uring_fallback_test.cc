// io_uring refusal: injected through the probe (EPERM as Docker >= 25's seccomp
// profile and kernel.io_uring_disabled give, ENOSYS as old kernels give), and
// for real by a seccomp filter in a child process. Either way the engine and the
// reader must fall back with exactly one log line, and a forced io_uring copy
// must fail cleanly.
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "snapshot/tree_util.h"
#include "stowage/copy_engine.h"
#include "stowage/file_reader.h"

namespace stowage {
namespace {

struct LogCapture {
  std::vector<std::string> lines;
  LogSink sink() {
    return [this](std::string_view l) { lines.emplace_back(l); };
  }
};

TEST(IoUringProbe, WorksOnThisMachine) {
  // The suites below assert that io_uring is really used when allowed; if this
  // fails, the machine refuses io_uring and those results would be meaningless.
  EXPECT_EQ(probe_io_uring(), 0) << errno_name(probe_io_uring());
  LogCapture log;
  auto engine = CopyEngine::create({{}, log.sink()});
  EXPECT_TRUE(engine->io_uring().usable);
  EXPECT_TRUE(log.lines.empty());
}

class InjectedRefusal : public testing::TestWithParam<int> {};

TEST_P(InjectedRefusal, CopyFallsBackWithOneLogLine) {
  const int err = GetParam();
  test::TempDir dir("stowage-fallback");
  test::build_random_tree(dir / "src", {.seed = 11, .with_owners = true, .large_file_mb = 2});
  LogCapture log;
  int probes = 0;
  auto engine = CopyEngine::create({[&] { probes++; return err; }, log.sink()});
  EXPECT_FALSE(engine->io_uring().usable);
  EXPECT_EQ(engine->io_uring().refusal_errno, err);

  auto want = test::describe_tree(dir / "src");
  for (const std::string dst : {"a", "b"}) {  // probed once, not per copy
    auto stats = engine->copy_tree(dir / "src", dir / dst);
    ASSERT_TRUE(stats.is_ok()) << stats.status().to_string();
    EXPECT_EQ(stats->strategy, CopyStrategy::kPortable);
    EXPECT_EQ(stats->uring_files, 0u);
    EXPECT_EQ(stats->portable_files, stats->files);
    EXPECT_EQ(test::diff_trees(want, test::describe_tree(dir / dst)), "");
  }
  EXPECT_EQ(probes, 1);
  ASSERT_EQ(log.lines.size(), 1u);
  EXPECT_NE(log.lines[0].find("level=warn"), std::string::npos) << log.lines[0];
  EXPECT_NE(log.lines[0].find("component=copy_engine"), std::string::npos) << log.lines[0];
  EXPECT_NE(log.lines[0].find("err=" + errno_name(err)), std::string::npos) << log.lines[0];

  CopyOptions forced;
  forced.strategy = CopyStrategy::kIoUring;
  auto r = engine->copy_tree(dir / "src", dir / "c", forced);
  EXPECT_EQ(r.status().code(), Code::kUnimplemented);
  EXPECT_NE(r.status().message().find(errno_name(err)), std::string::npos) << r.status().message();
  EXPECT_FALSE(std::filesystem::exists(dir / "c"));
  EXPECT_EQ(log.lines.size(), 1u);
}

TEST_P(InjectedRefusal, ReaderFallsBackWithOneLogLine) {
  test::TempDir dir("stowage-fallback");
  const std::string data(300000, 'q');
  test::write_file(dir / "f", data);
  LogCapture log;
  auto reader = FileReader::create({.chunk_size = 65536, .queue_depth = 4,
                                    .io_uring_probe = [&] { return GetParam(); }, .log = log.sink()});
  ASSERT_TRUE(reader.is_ok());
  EXPECT_FALSE((*reader)->uses_io_uring());
  std::string got;
  auto n = (*reader)->read_file(dir / "f", [&](uint64_t, std::span<const std::byte> d) {
    got.append(reinterpret_cast<const char*>(d.data()), d.size());
    return Status::ok();
  });
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(*n, data.size());
  EXPECT_EQ(got, data);
  ASSERT_EQ(log.lines.size(), 1u);
  EXPECT_NE(log.lines[0].find("component=file_reader"), std::string::npos) << log.lines[0];
  EXPECT_NE(log.lines[0].find("err=" + errno_name(GetParam())), std::string::npos) << log.lines[0];
}

INSTANTIATE_TEST_SUITE_P(Errnos, InjectedRefusal, testing::Values(EPERM, ENOSYS),
                         [](const testing::TestParamInfo<int>& i) { return errno_name(i.param); });

// Makes io_uring_setup fail with `err` in this process, as Docker's default
// seccomp profile does, so the real probe is exercised.
bool block_io_uring_setup(int err) {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

TEST(SeccompRefusal, RealProbeSeesEpermAndEverythingFallsBack) {
#if !defined(__x86_64__)
  GTEST_FAIL() << "the seccomp filter in this test is written for x86_64";
#endif
  test::TempDir dir("stowage-seccomp");
  test::build_random_tree(dir / "src", {.seed = 12, .with_owners = true, .large_file_mb = 1});
  auto want = test::describe_tree(dir / "src");
  // The child reports each failed check as one bit of its exit status.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = 0;
    if (!block_io_uring_setup(EPERM)) ::_exit(1);
    if (probe_io_uring() != EPERM) bad |= 2;
    LogCapture log;
    auto engine = CopyEngine::create({{}, log.sink()});
    auto stats = engine->copy_tree(dir / "src", dir / "dst");
    if (!stats.is_ok() || stats->strategy != CopyStrategy::kPortable || stats->uring_files != 0) bad |= 4;
    if (log.lines.size() != 1 || log.lines[0].find("err=EPERM") == std::string::npos) bad |= 8;
    CopyOptions forced;
    forced.strategy = CopyStrategy::kIoUring;
    if (engine->copy_tree(dir / "src", dir / "dst2", forced).status().code() != Code::kUnimplemented) bad |= 16;
    auto reader = FileReader::create({.log = log.sink()});
    if (!reader.is_ok() || (*reader)->uses_io_uring() || log.lines.size() != 2) bad |= 32;
    ::_exit(bad);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died: " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "bits: 1 seccomp install, 2 probe, 4 copy stats, 8 log line, "
                                       "16 forced io_uring, 32 reader fallback";
  EXPECT_EQ(test::diff_trees(want, test::describe_tree(dir / "dst")), "");
  EXPECT_FALSE(std::filesystem::exists(dir / "dst2"));
}

}  // namespace
}  // namespace stowage
