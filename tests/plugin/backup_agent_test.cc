// The backup agent in-process: real volume managers (one per simulated host,
// each with its own state root) over one real file-store repository, with the
// fault-injecting store slowing reads where a test needs a long restore.
#include "backup_agent.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include <unistd.h>

#include "dir_backend.h"
#include "snapshot/tree_util.h"
#include "stowage/store_faults.h"
#include "stowage/store_deadline.h"
#include "stowage/store_file.h"
#include "support/test_support.h"

namespace stowage {
namespace {

using namespace std::chrono_literals;

// Lets a test stop a host's repository calls at an exact point (the first
// call of one kind on keys with a prefix waits until open(), or, like the S3
// store, until the calling thread's StoreDeadline) or make the repository
// fail every call (down), without timing.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  StoreOp op = StoreOp::kPut;
  std::string prefix;
  bool armed = false, reached = false;
  std::atomic<bool> down{false};

  void arm(StoreOp o, std::string p) {
    std::lock_guard lk(mu);
    op = o;
    prefix = std::move(p);
    armed = true;
    reached = false;
  }
  bool wait_reached() {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, 60s, [&] { return reached; });
  }
  void open() {
    std::lock_guard lk(mu);
    armed = false;
    cv.notify_all();
  }
  Status pass(StoreOp o, std::string_view key) {
    if (down) return Status::unavailable("repository down (test)");
    std::unique_lock lk(mu);
    if (armed && o == op && key.starts_with(prefix)) {
      reached = true;
      cv.notify_all();
      if (auto deadline = StoreDeadline::current()) {
        if (!cv.wait_until(lk, *deadline, [&] { return !armed; })) return Status::deadline_exceeded("stalled (test)");
      } else {
        cv.wait(lk, [&] { return !armed; });
      }
    }
    return Status::ok();
  }
};

class GatedStore : public ObjectStore {
 public:
  GatedStore(std::unique_ptr<ObjectStore> inner, std::shared_ptr<Gate> gate)
      : inner_(std::move(inner)), gate_(std::move(gate)) {}
  Status put(std::string_view key, std::string_view data, PutOptions opts) override {
    STOWAGE_RETURN_IF_ERROR(gate_->pass(StoreOp::kPut, key));
    return inner_->put(key, data, opts);
  }
  Result<Bytes> get(std::string_view key, uint64_t offset, uint64_t length) override {
    STOWAGE_RETURN_IF_ERROR(gate_->pass(StoreOp::kGet, key));
    return inner_->get(key, offset, length);
  }
  Result<ObjectInfo> head(std::string_view key) override {
    STOWAGE_RETURN_IF_ERROR(gate_->pass(StoreOp::kHead, key));
    return inner_->head(key);
  }
  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override {
    STOWAGE_RETURN_IF_ERROR(gate_->pass(StoreOp::kList, prefix));
    return inner_->list(prefix);
  }
  Status remove(std::string_view key) override {
    STOWAGE_RETURN_IF_ERROR(gate_->pass(StoreOp::kRemove, key));
    return inner_->remove(key);
  }
  StoreCaps caps() const override { return inner_->caps(); }
  std::string describe() const override { return inner_->describe(); }

 private:
  std::unique_ptr<ObjectStore> inner_;
  std::shared_ptr<Gate> gate_;
};

// One simulated host: its volumes and its agent.
struct Host {
  // `reachable`, when given, is the repository's reachability, read at each
  // connection attempt.
  Host(const std::string& root, const std::string& repo, const std::string& id, int64_t mount_wait_ns,
       std::chrono::milliseconds read_delay = 0ms, std::chrono::milliseconds write_delay = 0ms,
       std::shared_ptr<std::atomic<bool>> reachable = nullptr, int64_t identity_margin_ns = 1'000'000'000,
       int64_t call_budget_ns = 100'000'000'000, std::shared_ptr<Gate> gate = nullptr)
      : log(LogFormat::kLogfmt, LogLevel::kDebug, [](std::string_view) {}) {
    VolumeManager::Options o;
    o.state_root = root;
    o.boot_id = "boot";
    o.snapshots = &snapshots;
    auto m = VolumeManager::open(o, backend, log);
    EXPECT_TRUE(m.is_ok()) << m.status().to_string();
    volumes = std::move(m).value();
    BackupAgent::Options a;
    a.open_store = [repo, read_delay, write_delay, down = reachable, gate]() -> Result<std::unique_ptr<ObjectStore>> {
      if (down && !*down) return Status::unavailable("connect to repository: connection refused (test)");
      STOWAGE_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> store, open_file_store(repo));
      if (gate) store = std::make_unique<GatedStore>(std::move(store), gate);
      for (auto [op, delay] : {std::pair{StoreOp::kGet, read_delay}, std::pair{StoreOp::kPut, write_delay}}) {
        if (delay == 0ms) continue;
        FaultPlan plan;
        plan.ops = static_cast<unsigned>(op);
        plan.delay_rate = 1;
        plan.max_delay = delay;
        store = make_fault_injecting_store(std::move(store), plan);
      }
      return store;
    };
    a.state_dir = root + "/agent";
    a.lease.host = id;
    a.lease.ttl_ns = 30'000'000'000;
    a.renew_interval_ns = 10'000'000'000;
    a.mount_wait_ns = mount_wait_ns;
    a.call_budget_ns = call_budget_ns;
    a.identity_margin_ns = identity_margin_ns;  // 1 s: the tests write through write(2), not mmap
    auto ag = BackupAgent::open(std::move(a), *volumes, log);
    EXPECT_TRUE(ag.is_ok()) << ag.status().to_string();
    agent = std::move(ag).value();
    if (!reachable) {
      EXPECT_TRUE(test::wait_until([&] { return agent->connected(); }, 60s));
    }
  }
  std::string data(const std::string& name) { return *volumes->path(name); }
  // Docker's Mount as DockerVolumeApi makes it.
  Status mount(const std::string& name, const std::string& id) {
    STOWAGE_RETURN_IF_ERROR(agent->before_mount(name));
    auto mp = volumes->mount(name, id);
    agent->mount_done(name, mp.is_ok());
    return mp.status();
  }
  // Docker's Unmount as DockerVolumeApi makes it.
  Status unmount(const std::string& name, const std::string& id) {
    agent->before_unmount(name);
    STOWAGE_RETURN_IF_ERROR(volumes->unmount(name, id));
    agent->after_unmount(name);
    return Status::ok();
  }
  // Docker's Remove as DockerVolumeApi makes it.
  Status remove(const std::string& name) {
    STOWAGE_RETURN_IF_ERROR(agent->before_remove(name));
    STOWAGE_RETURN_IF_ERROR(volumes->remove(name));
    agent->after_remove(name);
    return Status::ok();
  }

  DirBackend backend;
  std::unique_ptr<CopyEngine> engine = CopyEngine::create();
  SnapshotStore snapshots{*engine};
  Logger log;
  std::unique_ptr<VolumeManager> volumes;
  std::unique_ptr<BackupAgent> agent;
};

class BackupAgentTest : public ::testing::Test {
 protected:
  std::unique_ptr<Host> host(const std::string& id, int64_t mount_wait_ns = 60'000'000'000,
                             std::chrono::milliseconds read_delay = 0ms, std::chrono::milliseconds write_delay = 0ms,
                             std::shared_ptr<std::atomic<bool>> reachable = nullptr) {
    return std::make_unique<Host>(dir_ / id, dir_ / "repo", id, mount_wait_ns, read_delay, write_delay,
                                  std::move(reachable));
  }
  // A host whose repository calls pass `gate`.
  std::unique_ptr<Host> gated_host(const std::string& id, std::shared_ptr<Gate> gate) {
    return std::make_unique<Host>(dir_ / id, dir_ / "repo", id, 60'000'000'000, 0ms, 0ms, nullptr, 1'000'000'000,
                                  100'000'000'000, std::move(gate));
  }
  // The shared repository, opened afresh (as another process would).
  std::unique_ptr<Repository> repository() {
    auto store = open_file_store(dir_ / "repo");
    EXPECT_TRUE(store.is_ok());
    auto repo = Repository::open(std::move(store).value());
    EXPECT_TRUE(repo.is_ok());
    return repo.is_ok() ? std::move(repo).value() : nullptr;
  }
  Hash256 latest_id(Repository& repo, const std::string& volume) {
    auto id = latest_snapshot_of(repo, volume);
    EXPECT_TRUE(id.is_ok() && id->has_value());
    return id.is_ok() && id->has_value() ? **id : Hash256{};
  }
  // The newest snapshot of `volume`'s manifest.
  SnapshotManifest latest_manifest(const std::string& volume) {
    auto repo = repository();
    auto bytes = repo->load_snapshot(latest_id(*repo, volume));
    EXPECT_TRUE(bytes.is_ok());
    auto m = bytes.is_ok() ? parse_snapshot(*bytes) : Result<SnapshotManifest>(bytes.status());
    EXPECT_TRUE(m.is_ok());
    return m.is_ok() ? *m : SnapshotManifest{};
  }
  // The newest snapshot of `volume` restored into a fresh directory.
  std::string restore_latest(const std::string& volume) {
    auto repo = repository();
    const std::string target = dir_ / ("restored-" + std::to_string(restores_++));
    RestoreOptions ro;
    ro.target = target;
    auto r = run_restore(*repo, latest_id(*repo, volume), ro);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return target;
  }
  // Volume "db" with eight files is mounted as `mount_id` and unmounted; returns
  // once the final backup that starts has taken its temporary snapshot (and
  // is uploading, slowly on a host with a write delay).
  static void start_slow_final_backup(Host& h, const std::string& mount_id) {
    ASSERT_TRUE(h.volumes->create("db", {}).is_ok());
    ASSERT_TRUE(h.mount("db", mount_id).is_ok());
    for (int i = 0; i < 8; ++i) test::write_file(h.data("db") + "/f" + std::to_string(i), std::string(200000, 'a' + i));
    ASSERT_TRUE(h.unmount("db", mount_id).is_ok());
    ASSERT_TRUE(test::wait_until([&] {
      auto snaps = h.volumes->snapshot_list("db");
      return snaps.is_ok() && !snaps->empty();
    }, 60s));
  }
  // Volume "big" on `h` with eight files f0..f7 (300,000 bytes of 'a'..'h'), backed up.
  static void big_backed_up(Host& h) {
    ASSERT_TRUE(h.volumes->create("big", {}).is_ok());
    for (int i = 0; i < 8; ++i) test::write_file(h.data("big") + "/f" + std::to_string(i), std::string(300000, 'a' + i));
    ASSERT_TRUE(h.agent->backup_volume("big", "manual").is_ok());
  }
  // Another host's Mount of `volume` is refused, naming `holder`.
  void expect_kept_out(const std::string& volume, const std::string& holder) {
    auto b = host("other-host");
    ASSERT_TRUE(b->volumes->create(volume, {}).is_ok());
    Status st = b->agent->before_mount(volume);
    EXPECT_EQ(st.code(), Code::kFailedPrecondition) << st.to_string();
    EXPECT_NE(st.message().find(holder), std::string::npos) << st.message();
  }
  // Starts a scheduled backup of the new, unmounted volume "db" on `h` (whose
  // repository calls pass `gate`) and returns once it is held at the write of
  // its manifest; gate.open() lets it finish.
  static std::thread held_backup(Host& h, Gate& gate, Status& result) {
    EXPECT_TRUE(h.volumes->create("db", {}).is_ok());
    test::write_file(h.data("db") + "/f", "one");
    gate.arm(StoreOp::kPut, "snapshots/");
    std::thread t([&h, &result] { result = h.agent->backup_volume("db", "scheduled"); });
    EXPECT_TRUE(gate.wait_reached());
    return t;
  }
  // Volume "db" on `h`, mounted as `mount_id`, with file f = `contents` backed up.
  static void mounted_with_backup(Host& h, const std::string& mount_id, const std::string& contents) {
    ASSERT_TRUE(h.volumes->create("db", {}).is_ok());
    ASSERT_TRUE(h.mount("db", mount_id).is_ok());
    test::write_file(h.data("db") + "/f", contents);
    ASSERT_TRUE(h.agent->backup_volume("db", "scheduled").is_ok());
  }
  // Volume "db" of `h` with "big" (8 MiB) and "f" is backed up; then "big" is
  // deleted and "f" changed. Returns its data directory.
  static std::string backed_up_then_changed(Host& h) {
    EXPECT_TRUE(h.volumes->create("db", {}).is_ok());
    const std::string data = h.data("db");
    test::write_file(data + "/big", std::string(8 << 20, 'b'));
    test::write_file(data + "/f", "backed up");
    EXPECT_TRUE(h.agent->backup_volume("db", "manual").is_ok());
    std::filesystem::remove(data + "/big");
    test::write_file(data + "/f", "newer, not backed up");
    return data;
  }
  // Host `id` with volume "db" (file f = "one") backed up, not mounted.
  std::unique_ptr<Host> backed_up_elsewhere(const std::string& id) {
    auto h = host(id);
    EXPECT_TRUE(h->volumes->create("db", {}).is_ok());
    test::write_file(h->data("db") + "/f", "one");
    EXPECT_TRUE(h->agent->backup_volume("db", "manual").is_ok());
    return h;
  }
  int restores_ = 0;
  test::TempDir dir_{"stowage-agent"};
};

TEST_F(BackupAgentTest, BackupByNameUsesATemporarySnapshotAndATemporaryLease) {
  auto a = host("node-a");
  ASSERT_TRUE(a->volumes->create("db", {}).is_ok());
  test::write_file(a->data("db") + "/f", "contents");
  ASSERT_TRUE(a->agent->backup_volume("db", "manual").is_ok());
  auto last = a->agent->last_backup_json("db");
  ASSERT_TRUE(last.is_object());
  EXPECT_TRUE(last["ok"].get<bool>());
  EXPECT_EQ(last["reason"], "manual");
  // The temporary local snapshot is gone, and so is the lease (not mounted).
  auto snaps = a->volumes->snapshot_list("db");
  ASSERT_TRUE(snaps.is_ok());
  EXPECT_TRUE(snaps->empty());
  EXPECT_TRUE(a->agent->lease_json("db").is_null());
  // The manifest names the volume, the host and the lease generation.
  auto store = open_file_store(dir_ / "repo");
  ASSERT_TRUE(store.is_ok());
  auto repo = Repository::open(std::move(store).value());
  ASSERT_TRUE(repo.is_ok());
  auto id = latest_snapshot_of(**repo, "db");
  ASSERT_TRUE(id.is_ok() && id->has_value());
  auto bytes = (*repo)->load_snapshot(**id);
  ASSERT_TRUE(bytes.is_ok());
  auto m = parse_snapshot(*bytes);
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(m->volume, "db");
  EXPECT_EQ(m->hostname, "node-a");
  EXPECT_EQ(m->lease_generation, 1u);
  EXPECT_EQ(m->tags, std::vector<std::string>{"manual"});
}

// A restore into a volume whose filesystem fills up: it fails naming the
// cause, the volume keeps its data, no staging copy is left, and the same
// restore works once space is freed.
TEST_F(BackupAgentTest, RestoreOntoAFullDiskKeepsTheOldDataAndWorksOnceSpaceIsFreed) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs: needs root";
  test::SmallFs small(32 << 20);
  ASSERT_EQ(small.error(), "");
  Host a(small.path() + "/node-a", dir_ / "repo", "node-a", 60'000'000'000);
  const std::string data = backed_up_then_changed(a);
  ASSERT_FALSE(HasFailure());
  const std::string filler = small.path() + "/filler";
  small.fill(filler);

  auto failed = a.agent->restore_volume("db", "latest");
  ASSERT_FALSE(failed.is_ok());
  EXPECT_EQ(failed.status().code(), Code::kResourceExhausted) << failed.status().to_string();
  EXPECT_NE(failed.status().message().find("restore volume 'db'"), std::string::npos) << failed.status().message();
  EXPECT_NE(failed.status().message().find("No space left on device"), std::string::npos) << failed.status().message();
  EXPECT_EQ(test::read_file(data + "/f"), "newer, not backed up");
  EXPECT_FALSE(std::filesystem::exists(data + "/big"));
  for (auto& e : std::filesystem::directory_iterator(std::filesystem::path(data).parent_path())) {
    EXPECT_FALSE(e.path().filename().string().starts_with(".restore-")) << "left behind: " << e.path();
  }

  ASSERT_TRUE(std::filesystem::remove(filler));
  auto restored = a.agent->restore_volume("db", "latest");
  ASSERT_TRUE(restored.is_ok()) << restored.status().to_string();
  EXPECT_EQ(test::read_file(data + "/f"), "backed up");
  EXPECT_EQ(std::filesystem::file_size(data + "/big"), 8u << 20);
}

// The same on a thin-provisioned device (ext4 in a sparse image on a pool that
// fills up): the restore's writes succeed and only writing them back fails.
// The restored copy must be on the disk before it replaces the volume's data,
// which is then deleted; else the volume keeps its data.
TEST_F(BackupAgentTest, RestoreThatCannotBeWrittenBackKeepsTheOldData) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs and a loop image: needs root";
  test::ThinFs lfs(48, 128);
  ASSERT_EQ(lfs.error(), "");
  Host a(lfs.mount_point() + "/node-a", dir_ / "repo", "node-a", 60'000'000'000);
  const std::string data = backed_up_then_changed(a);
  ASSERT_FALSE(HasFailure());
  ::sync();
  lfs.fill_pool();

  auto restored = a.agent->restore_volume("db", "latest");
  // Writeback reports ENOSPC or EIO, as the kernel maps the device's error.
  EXPECT_TRUE(restored.status().code() == Code::kResourceExhausted || restored.status().code() == Code::kIOError)
      << "restored a copy that is not on the disk: " << restored.status().to_string();
  EXPECT_NE(restored.status().message().find("restore volume 'db'"), std::string::npos) << restored.status().message();
  EXPECT_EQ(test::read_file(data + "/f"), "newer, not backed up");
  for (auto& e : std::filesystem::directory_iterator(std::filesystem::path(data).parent_path())) {
    EXPECT_FALSE(e.path().filename().string().starts_with(".restore-")) << "left behind: " << e.path();
  }
}

TEST_F(BackupAgentTest, SlowRestoreFailsTheMountButFinishesInTheBackground) {
  auto a = host("node-a");
  ASSERT_NO_FATAL_FAILURE(big_backed_up(*a));

  // Every read of B's store takes up to 50 ms; B's Mount waits only 1 ms.
  // (No after_create: the restore starts with the Mount, not ahead of it.)
  auto b = host("node-b", 1'000'000, 50ms);
  ASSERT_TRUE(b->volumes->create("big", {}).is_ok());
  Status first = b->agent->before_mount("big");
  ASSERT_FALSE(first.is_ok());
  EXPECT_EQ(first.code(), Code::kDeadlineExceeded) << first.to_string();
  EXPECT_NE(first.message().find("still being restored"), std::string::npos) << first.message();
  EXPECT_NE(first.message().find("retry"), std::string::npos) << first.message();
  // The restore goes on; a retried Mount succeeds once it is done.
  ASSERT_TRUE(test::wait_until([&] { return b->agent->before_mount("big").is_ok(); }, 120s));
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(test::read_file(b->data("big") + "/f" + std::to_string(i)), std::string(300000, 'a' + i));
  }
  EXPECT_EQ(b->agent->lease_json("big")["holder"], "node-b");
}

// A first Mount that took the lease and failed leaves no container behind:
// once the restore it started is done, the lease goes, so that another host
// is not kept out for good by a Mount that never happened. (Before, B renewed
// it for as long as it ran.)
TEST_F(BackupAgentTest, FailedFirstMountReleasesTheLeaseOnceItsRestoreIsDone) {
  auto a = host("node-a");
  ASSERT_NO_FATAL_FAILURE(big_backed_up(*a));

  auto b = host("node-b", 1'000'000, 50ms);  // its Mount waits 1 ms for a restore of slow reads
  ASSERT_TRUE(b->volumes->create("big", {}).is_ok());
  Status first = b->mount("big", "c1");
  ASSERT_EQ(first.code(), Code::kDeadlineExceeded) << first.to_string();
  // Docker's retry, under the lease the first one took, fails the same way
  // (or finds the restore done): either way no container is left using it.
  Status retry = b->mount("big", "c1");
  if (retry.is_ok()) {
    ASSERT_TRUE(b->unmount("big", "c1").is_ok());
  }
  ASSERT_TRUE(test::wait_until([&] { return b->agent->lease_json("big").is_null(); }, 60s))
      << "a failed Mount kept the lease: " << b->agent->volume_status("big").dump();
  EXPECT_EQ(test::read_file(b->data("big") + "/f7"), std::string(300000, 'h')) << "the restore was finished first";

  auto c = host("node-c");
  ASSERT_TRUE(c->volumes->create("big", {}).is_ok());
  ASSERT_TRUE(c->mount("big", "c2").is_ok());
  EXPECT_EQ(c->agent->lease_json("big")["holder"], "node-c");
  EXPECT_EQ(test::read_file(c->data("big") + "/f0"), std::string(300000, 'a'));
}

// A repository that stalls (every write takes up to 10 minutes, like radosgw
// stopped with SIGSTOP) must not hold a Docker call past the call budget.
TEST_F(BackupAgentTest, AStalledRepositoryFailsTheMountAtTheCallBudget) {
  host("node-0");  // makes the repository, so that connecting writes nothing
  Host a(dir_ / "node-a", dir_ / "repo", "node-a", 60'000'000'000, 0ms, 600'000ms, nullptr, 1'000'000'000,
         /*call_budget_ns=*/500'000'000);
  ASSERT_TRUE(a.volumes->create("db", {}).is_ok());
  const auto start = std::chrono::steady_clock::now();
  Status st = a.mount("db", "c1");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(st.is_ok()) << "the lease cannot have been written";
  EXPECT_EQ(st.code(), Code::kDeadlineExceeded) << st.to_string();
  EXPECT_LT(took, 60s) << "held far past its 0.5 s budget";
  EXPECT_TRUE(a.volumes->get("db", false)->record.mount_ids.empty());
}

TEST_F(BackupAgentTest, StaleCopyIsNotBackedUpOverNewerData) {
  auto a = host("node-a");
  auto b = host("node-b");
  ASSERT_TRUE(a->volumes->create("v", {}).is_ok());
  test::write_file(a->data("v") + "/f", "one");
  ASSERT_TRUE(a->agent->backup_volume("v", "manual").is_ok());
  // B takes the volume, changes it and backs it up.
  ASSERT_TRUE(b->volumes->create("v", {}).is_ok());
  ASSERT_TRUE(b->mount("v", "ctr-b").is_ok());
  EXPECT_EQ(test::read_file(b->data("v") + "/f"), "one");
  test::write_file(b->data("v") + "/f", "two");
  ASSERT_TRUE(b->agent->backup_volume("v", "manual").is_ok());
  // A's copy is now older than the newest snapshot: backing it up is refused
  // (B holds the lease anyway), and after B lets go, still refused as stale.
  Status st = a->agent->backup_volume("v", "scheduled");
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("node-b"), std::string::npos) << st.message();
  ASSERT_TRUE(b->unmount("v", "ctr-b").is_ok());
  ASSERT_TRUE(test::wait_until([&] { return b->agent->lease_json("v").is_null(); }, 60s));
  st = a->agent->backup_volume("v", "scheduled");
  EXPECT_EQ(st.code(), Code::kFailedPrecondition) << st.to_string();
  EXPECT_NE(st.message().find("older"), std::string::npos) << st.message();
  // Mounting it on A brings it up to date, after which backups work again.
  ASSERT_TRUE(a->mount("v", "ctr-a").is_ok());
  EXPECT_EQ(test::read_file(a->data("v") + "/f"), "two");
  EXPECT_TRUE(a->agent->backup_volume("v", "scheduled").is_ok());
}

// Docker's first `docker run` mounts and unmounts a new volume (copy-up)
// right before the container's own Mount. The final backup that the first
// Unmount starts must not be the last word: the container mounted after its
// snapshot and wrote more; the lease is released only after a backup that
// has those writes.
TEST_F(BackupAgentTest, UnmountDuringAFinalBackupIsBackedUpBeforeTheLeaseGoes) {
  auto a = host("node-a", 60'000'000'000, 0ms, 100ms);  // every put takes up to 100 ms
  ASSERT_NO_FATAL_FAILURE(start_slow_final_backup(*a, "copy-up"));
  ASSERT_TRUE(a->mount("db", "container").is_ok());
  test::write_file(a->data("db") + "/f0", "committed after the first final backup's snapshot");
  ASSERT_TRUE(a->unmount("db", "container").is_ok());

  ASSERT_TRUE(test::wait_until([&] { return a->agent->lease_json("db").is_null(); }, 120s));
  const std::string restored = restore_latest("db");
  EXPECT_EQ(test::read_file(restored + "/f0"), "committed after the first final backup's snapshot");
  EXPECT_EQ(test::read_file(restored + "/f7"), std::string(200000, 'h'));
}

// The same when the container's Unmount ends right as that final backup
// decides whether to release the lease: the volume manager has dropped the
// mount ID, after_unmount() has not run yet. Two hosts in one test once hit
// this (the next host came up without the container's writes).
TEST_F(BackupAgentTest, UnmountEndingAsAFinalBackupDecidesIsBackedUpBeforeTheLeaseGoes) {
  auto gate = std::make_shared<Gate>();
  auto a = gated_host("node-a", gate);
  ASSERT_TRUE(a->volumes->create("db", {}).is_ok());
  ASSERT_TRUE(a->mount("db", "copy-up").is_ok());
  test::write_file(a->data("db") + "/f", "copied up");
  gate->arm(StoreOp::kPut, "snapshots/");
  ASSERT_TRUE(a->unmount("db", "copy-up").is_ok());
  ASSERT_TRUE(gate->wait_reached());  // the final backup's snapshot is taken, its manifest held
  ASSERT_TRUE(a->mount("db", "container").is_ok());
  test::write_file(a->data("db") + "/f", "committed by the container");

  // The container's Unmount, stopped between the volume manager and after_unmount().
  a->agent->before_unmount("db");
  ASSERT_TRUE(a->volumes->unmount("db", "container").is_ok());
  gate->open();
  ASSERT_TRUE(test::wait_until([&] { return a->agent->volume_status("db")["final_backup"].is_null(); }, 60s));
  a->agent->after_unmount("db");

  ASSERT_TRUE(test::wait_until([&] { return a->agent->lease_json("db").is_null(); }, 60s));
  EXPECT_EQ(test::read_file(restore_latest("db") + "/f"), "committed by the container");
}

// A Mount that comes while a final backup runs keeps the lease: the backup
// finishing does not release it under the new container.
TEST_F(BackupAgentTest, MountDuringAFinalBackupKeepsTheLease) {
  auto a = host("node-a", 60'000'000'000, 0ms, 100ms);
  ASSERT_NO_FATAL_FAILURE(start_slow_final_backup(*a, "one"));
  ASSERT_TRUE(a->mount("db", "two").is_ok());
  ASSERT_TRUE(test::wait_until([&] { return a->agent->volume_status("db")["final_backup"].is_null(); }, 120s));
  auto last = a->agent->last_backup_json("db");
  ASSERT_TRUE(last.is_object());
  EXPECT_EQ(last["reason"], "final");
  EXPECT_TRUE(last["ok"].get<bool>()) << last.dump();
  auto lease = a->agent->lease_json("db");
  ASSERT_TRUE(lease.is_object()) << "the lease went while the volume is mounted";
  EXPECT_EQ(lease["holder"], "node-a");
  expect_kept_out("db", "node-a");
}

// An unreachable repository does not keep the daemon from starting: local
// volumes work, what needs the repository fails saying so, and once the
// repository answers everything works without a restart.
TEST_F(BackupAgentTest, UnreachableRepositoryAtStartIsReachedInTheBackground) {
  auto reachable = std::make_shared<std::atomic<bool>>(false);
  auto a = host("node-a", 60'000'000'000, 0ms, 0ms, reachable);
  EXPECT_FALSE(a->agent->connected());
  ASSERT_TRUE(a->volumes->create("local", {{"backup", "off"}}).is_ok());
  EXPECT_TRUE(a->mount("local", "m1").is_ok());
  ASSERT_TRUE(a->volumes->create("db", {}).is_ok());
  EXPECT_TRUE(a->agent->after_create("db", true).is_ok());
  for (const Status& st : {a->mount("db", "m2"), a->agent->backup_volume("db", "manual"),
                           a->agent->restore_volume("db", "latest").status(), a->agent->takeover("db").status(),
                           a->agent->repository().status()}) {
    EXPECT_EQ(st.code(), Code::kUnavailable) << st.to_string();
    EXPECT_NE(st.message().find("not been reached yet"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("connection refused (test)"), std::string::npos) << st.message();
  }
  auto status = a->agent->volume_status("db");
  EXPECT_EQ(status["repository"]["connected"], false) << status.dump();
  EXPECT_TRUE(a->volumes->get("db", false)->record.mount_ids.empty());

  reachable->store(true);
  ASSERT_TRUE(test::wait_until([&] { return a->agent->connected(); }, 60s));
  ASSERT_TRUE(a->mount("db", "m2").is_ok());
  EXPECT_EQ(a->agent->lease_json("db")["holder"], "node-a");
  test::write_file(a->data("db") + "/f", "after the repository came back");
  EXPECT_TRUE(a->agent->backup_volume("db", "manual").is_ok());
  EXPECT_EQ(test::read_file(restore_latest("db") + "/f"), "after the repository came back");
  EXPECT_EQ(a->agent->volume_status("db")["repository"]["connected"], true);
}

// Backups of a volume go through a temporary snapshot whose files are new
// inodes; they still read only the files that changed since the last backup,
// whether the volume is mounted (scheduled) or not (the final backup).
TEST_F(BackupAgentTest, BackupsThroughTemporarySnapshotsReadOnlyWhatChanged) {
  auto a = host("node-a");
  ASSERT_TRUE(a->volumes->create("db", {}).is_ok());
  ASSERT_TRUE(a->mount("db", "ctr").is_ok());
  for (int i = 0; i < 4; ++i) test::write_file(a->data("db") + "/f" + std::to_string(i), std::string(200000, 'a' + i));
  // Files changed within the margin (1 s here) before a backup are read
  // again: let these age past it.
  std::this_thread::sleep_for(1200ms);
  ASSERT_TRUE(a->agent->backup_volume("db", "scheduled").is_ok());
  EXPECT_EQ(latest_manifest("db").stats.bytes_read, 800000u);
  ASSERT_TRUE(a->agent->backup_volume("db", "scheduled").is_ok());
  EXPECT_EQ(latest_manifest("db").stats.bytes_read, 0u);
  test::write_file(a->data("db") + "/f1", std::string(200000, 'z'));
  std::this_thread::sleep_for(1200ms);
  ASSERT_TRUE(a->agent->backup_volume("db", "scheduled").is_ok());
  EXPECT_EQ(latest_manifest("db").stats.bytes_read, 200000u);
  ASSERT_TRUE(a->unmount("db", "ctr").is_ok());
  ASSERT_TRUE(test::wait_until([&] { return a->agent->lease_json("db").is_null(); }, 60s));
  const SnapshotManifest final_backup = latest_manifest("db");
  EXPECT_EQ(final_backup.tags, std::vector<std::string>{"final"});
  EXPECT_EQ(final_backup.stats.bytes_read, 0u);
  const std::string restored = restore_latest("db");
  EXPECT_EQ(test::read_file(restored + "/f1"), std::string(200000, 'z'));
  EXPECT_EQ(test::read_file(restored + "/f3"), std::string(200000, 'd'));
}

// With the default margin (the kernel's writeback window, 36 s unless tuned),
// a file written moments before a backup is read again by the next one: its
// ctime cannot yet prove that an mmap writer left it alone.
TEST_F(BackupAgentTest, RecentlyWrittenFilesAreReadAgainWithinTheWritebackWindow) {
  Host a(dir_ / "node-a", dir_ / "repo", "node-a", 60'000'000'000, 0ms, 0ms, nullptr, 0);
  ASSERT_TRUE(a.volumes->create("db", {}).is_ok());
  test::write_file(a.data("db") + "/young", std::string(300000, 'y'));
  ASSERT_TRUE(a.agent->backup_volume("db", "manual").is_ok());
  ASSERT_TRUE(a.agent->backup_volume("db", "manual").is_ok());
  EXPECT_EQ(latest_manifest("db").stats.bytes_read, 300000u);
}

// A backup of an unmounted volume takes the lease for itself only. A Mount
// that comes while it runs goes on under that lease: the backup ending between
// the Mount's lease step and the mount itself must not release it, or another
// host could take the volume while a container here writes to it.
TEST_F(BackupAgentTest, ABackupEndingDuringAMountLeavesTheLeaseToTheMount) {
  auto gate = std::make_shared<Gate>();
  auto a = gated_host("node-a", gate);
  Status backup;
  std::thread scheduled = held_backup(*a, *gate, backup);
  // Docker's Mount: the agent's part has run, the volume manager's not yet.
  ASSERT_TRUE(a->agent->before_mount("db").is_ok());
  gate->open();
  scheduled.join();
  EXPECT_TRUE(backup.is_ok()) << backup.to_string();
  ASSERT_TRUE(a->volumes->mount("db", "ctr").is_ok());
  a->agent->mount_done("db", true);

  EXPECT_TRUE(a->agent->lease_json("db").is_object()) << "the lease went under a Mount";
  expect_kept_out("db", "node-a");
}

// A container that mounts and unmounts while a backup of the unmounted volume
// runs wrote after that backup's snapshot: the lease must stay until the final
// backup its Unmount started has those writes. Had it gone in between, another
// host could have mounted the volume without them (the final backup would then
// have to take a new lease generation).
TEST_F(BackupAgentTest, AContainerThatCameAndWentDuringABackupKeepsTheLeaseUntilItsFinalBackup) {
  auto gate = std::make_shared<Gate>();
  auto a = gated_host("node-a", gate);
  Status backup;
  std::thread scheduled = held_backup(*a, *gate, backup);
  ASSERT_TRUE(a->mount("db", "ctr").is_ok());
  test::write_file(a->data("db") + "/f", "written by the container");
  ASSERT_TRUE(a->unmount("db", "ctr").is_ok());
  gate->open();
  scheduled.join();
  EXPECT_TRUE(backup.is_ok()) << backup.to_string();

  ASSERT_TRUE(test::wait_until([&] { return a->agent->volume_status("db")["final_backup"].is_null(); }, 60s));
  EXPECT_TRUE(a->agent->lease_json("db").is_null());
  const SnapshotManifest m = latest_manifest("db");
  EXPECT_EQ(m.tags, std::vector<std::string>{"final"});
  EXPECT_EQ(m.lease_generation, 1u) << "the lease was released between the two backups";
  EXPECT_EQ(test::read_file(restore_latest("db") + "/f"), "written by the container");
}

// `stowctl restore SNAPSHOT --to db` swaps the restored tree in at the end. A
// Mount that came while it ran would hand the container the old tree, which
// the swap then moves aside and deletes: the Mount is refused until the
// restore is done, and then sees the restored data.
TEST_F(BackupAgentTest, AMountDuringARestoreByNameIsRefusedUntilItEnds) {
  auto gate = std::make_shared<Gate>();
  auto a = gated_host("node-a", gate);
  ASSERT_TRUE(a->volumes->create("db", {}).is_ok());
  test::write_file(a->data("db") + "/f", "backed up");
  ASSERT_TRUE(a->agent->backup_volume("db", "manual").is_ok());
  test::write_file(a->data("db") + "/f", "changed locally");
  gate->arm(StoreOp::kGet, "data/");
  Result<std::string> restored = Status::internal("not run");
  std::thread restore([&] { restored = a->agent->restore_volume("db", "latest"); });
  ASSERT_TRUE(gate->wait_reached());
  Status st = a->mount("db", "ctr");
  gate->open();
  restore.join();
  ASSERT_TRUE(restored.is_ok()) << restored.status().to_string();
  EXPECT_FALSE(st.is_ok()) << "mounted while its data was being replaced";
  EXPECT_NE(st.message().find("being restored"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("retry"), std::string::npos) << st.message();
  EXPECT_TRUE(a->volumes->get("db", false)->record.mount_ids.empty());
  ASSERT_TRUE(a->mount("db", "ctr").is_ok());
  EXPECT_EQ(test::read_file(a->data("db") + "/f"), "backed up");
}

// A second container mounting a volume this host already has mounted (and
// holds the lease of) needs nothing from the repository (docs/MIGRATION.md:
// "further mounts on the same host: nothing extra"), so a repository that
// went away since does not keep it from starting.
TEST_F(BackupAgentTest, AFurtherMountNeedsNoRepository) {
  auto gate = std::make_shared<Gate>();
  auto a = gated_host("node-a", gate);
  ASSERT_NO_FATAL_FAILURE(mounted_with_backup(*a, "first", "one"));
  gate->down = true;
  Status st = a->mount("db", "second");
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(a->volumes->get("db", false)->record.mount_ids.size(), 2u);
  // The first Mount of another volume still needs the repository for its lease.
  ASSERT_TRUE(a->volumes->create("other", {}).is_ok());
  EXPECT_FALSE(a->mount("other", "third").is_ok());
  gate->down = false;
}

// A takeover can land between the old holder's fencing check and its
// manifest write (FORMAT.md §7): that late snapshot, of the old lease
// generation, ranks newest until the new holder's first backup. The new
// holder's copy, found up to date under its lease when it was mounted, is not
// older for it: its backups go on, and the late snapshot is never restored
// over what the new holder's containers wrote.
TEST_F(BackupAgentTest, ALateSnapshotOfAFencedHolderDoesNotSupersedeItsSuccessor) {
  auto gate = std::make_shared<Gate>();
  auto a = gated_host("node-a", gate);
  ASSERT_NO_FATAL_FAILURE(mounted_with_backup(*a, "ctr-a", "first"));
  test::write_file(a->data("db") + "/f", "late");
  gate->arm(StoreOp::kPut, "snapshots/");
  Status late;
  std::thread scheduled([&] { late = a->agent->backup_volume("db", "scheduled"); });
  ASSERT_TRUE(gate->wait_reached());  // past its fencing check

  auto b = host("node-b");
  ASSERT_TRUE(b->agent->takeover("db").is_ok());
  ASSERT_TRUE(b->mount("db", "ctr-b").is_ok());
  EXPECT_EQ(test::read_file(b->data("db") + "/f"), "first");
  gate->open();
  scheduled.join();
  EXPECT_TRUE(late.is_ok()) << late.to_string();  // A could not know

  test::write_file(b->data("db") + "/f", "written on node-b");
  Status st = b->agent->backup_volume("db", "scheduled");
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  test::write_file(b->data("db") + "/f", "written on node-b, then stopped");
  ASSERT_TRUE(b->unmount("db", "ctr-b").is_ok());
  ASSERT_TRUE(test::wait_until([&] { return b->agent->volume_status("db")["final_backup"] != "running"; }, 60s));
  EXPECT_TRUE(b->agent->volume_status("db")["final_backup"].is_null()) << b->agent->volume_status("db").dump();
  ASSERT_TRUE(b->mount("db", "ctr-b2").is_ok());
  EXPECT_EQ(test::read_file(b->data("db") + "/f"), "written on node-b, then stopped");
  EXPECT_EQ(test::read_file(restore_latest("db") + "/f"), "written on node-b, then stopped");
}

// A daemon stopped (or killed) after a first Mount took the lease but before
// its restore was done leaves the lease held and the copy unrestored. The
// restarted daemon's final backup cannot back up an unrestored copy, and has
// nothing to save (no container used it since; what it held before is
// superseded by the newer snapshot): it lets the lease go, so another host
// mounts at once instead of waiting for the lease to run out.
TEST_F(BackupAgentTest, ALeaseLeftByAnUnfinishedRestoreIsReleasedAfterARestart) {
  auto a = backed_up_elsewhere("node-a");
  auto gate = std::make_shared<Gate>();
  auto b = gated_host("node-b", gate);
  ASSERT_TRUE(b->volumes->create("db", {}).is_ok());
  gate->arm(StoreOp::kGet, "data/");
  Status mount;
  std::thread first([&] { mount = b->mount("db", "ctr-b"); });
  ASSERT_TRUE(gate->wait_reached());
  gate->down = true;  // the restore fails here: as if the daemon had died
  gate->open();
  first.join();
  ASSERT_FALSE(mount.is_ok());
  b.reset();
  gate->down = false;
  b = gated_host("node-b", gate);

  ASSERT_TRUE(test::wait_until([&] { return b->agent->volume_status("db")["final_backup"].is_null(); }, 60s))
      << b->agent->volume_status("db").dump();
  Status st = a->mount("db", "ctr-a");
  EXPECT_TRUE(st.is_ok()) << st.to_string();
}

// The release after the last Unmount stalls (a repository that accepts
// connections and never answers). The next Mount on this host waits for that
// lease work: it must still be answered within its call budget, saying so,
// and not after the store's own timeouts (minutes).
TEST_F(BackupAgentTest, AMountWaitingForStalledLeaseWorkIsAnsweredWithinItsBudget) {
  auto gate = std::make_shared<Gate>();
  Host a(dir_ / "node-a", dir_ / "repo", "node-a", 60'000'000'000, 0ms, 0ms, nullptr, 1'000'000'000,
         /*call_budget_ns=*/1'000'000'000, gate);
  ASSERT_TRUE(a.volumes->create("db", {}).is_ok());
  ASSERT_TRUE(a.mount("db", "one").is_ok());
  test::write_file(a.data("db") + "/f", "one");
  gate->arm(StoreOp::kPut, "leases/db/");
  ASSERT_TRUE(a.unmount("db", "one").is_ok());
  ASSERT_TRUE(gate->wait_reached());  // the final backup is done, its release stalls

  std::atomic<bool> answered{false};
  Status st;
  std::thread docker([&] {
    st = a.mount("db", "two");
    answered = true;
  });
  const bool in_time = test::wait_until([&] { return answered.load(); }, 60s);
  // The release itself gives up at the renewal interval (retried at the next
  // renewal) instead of holding the lock for as long as the store stalls.
  EXPECT_TRUE(test::wait_until([&] { return a.agent->volume_status("db")["final_backup"] == "pending"; }, 60s))
      << a.agent->volume_status("db").dump();
  gate->open();
  docker.join();
  EXPECT_TRUE(in_time) << "the Mount waited for the stalled release";
  EXPECT_EQ(st.code(), Code::kDeadlineExceeded) << st.to_string();
  EXPECT_NE(st.message().find("retry"), std::string::npos) << st.message();
  EXPECT_TRUE(a.volumes->get("db", false)->record.mount_ids.empty());
  // Once the repository answers again, so does the Mount.
  ASSERT_TRUE(test::wait_until([&] { return a.agent->volume_status("db")["final_backup"].is_null(); }, 60s));
  EXPECT_TRUE(a.mount("db", "two").is_ok());
}

// `docker volume rm` right after `docker stop`: the final backup the last
// Unmount started has not taken its temporary snapshot yet. Removing the
// volume then would release the lease with the container's last writes in no
// snapshot, and the next host would mount older data. Remove waits for the
// final backup, no longer than its call budget, and is refused (the volume
// kept) while the backup is not done.
TEST_F(BackupAgentTest, RemoveDuringTheFinalBackupWaitsForItWithinItsBudget) {
  auto gate = std::make_shared<Gate>();
  Host a(dir_ / "node-a", dir_ / "repo", "node-a", 60'000'000'000, 0ms, 0ms, nullptr, 1'000'000'000,
         /*call_budget_ns=*/1'000'000'000, gate);
  ASSERT_NO_FATAL_FAILURE(mounted_with_backup(a, "ctr", "backed up"));
  test::write_file(a.data("db") + "/f", "last writes");
  gate->arm(StoreOp::kList, "snapshots/");  // the final backup's look for the newest snapshot
  ASSERT_TRUE(a.unmount("db", "ctr").is_ok());
  ASSERT_TRUE(gate->wait_reached());

  Status st = a.remove("db");
  EXPECT_EQ(st.code(), Code::kDeadlineExceeded) << st.to_string();
  EXPECT_NE(st.message().find("final backup"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("retry"), std::string::npos) << st.message();
  const bool kept = a.volumes->get("db", false).is_ok();
  gate->open();
  ASSERT_TRUE(kept) << "removed before its last writes were backed up";
  ASSERT_TRUE(test::wait_until([&] { return a.agent->volume_status("db")["final_backup"].is_null(); }, 60s));
  st = a.remove("db");
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(test::read_file(restore_latest("db") + "/f"), "last writes");
}

// The final backup after the last Unmount failed (the repository is down):
// the volume's last writes are only here. Remove is refused saying what would
// be lost, why, and the way out; the lease stays with this host. When the
// repository is gone for good, 'stowctl volume forget-unsynced' discards
// them deliberately and the volume can be removed.
TEST_F(BackupAgentTest, RemoveWithAFailedFinalBackupIsRefusedUntilTheWritesAreDiscarded) {
  auto gate = std::make_shared<Gate>();
  auto a = gated_host("node-a", gate);
  ASSERT_NO_FATAL_FAILURE(mounted_with_backup(*a, "ctr", "backed up"));
  test::write_file(a->data("db") + "/f", "last writes");
  gate->down = true;
  ASSERT_TRUE(a->unmount("db", "ctr").is_ok());
  ASSERT_TRUE(test::wait_until([&] { return a->agent->volume_status("db")["final_backup"] == "pending"; }, 60s))
      << a->agent->volume_status("db").dump();
  const nlohmann::json failed = a->agent->volume_status("db")["final_backup_error"];
  EXPECT_TRUE(failed.is_string() && failed.get<std::string>().find("repository down (test)") != std::string::npos)
      << failed.dump();

  Status st = a->remove("db");
  EXPECT_EQ(st.code(), Code::kFailedPrecondition) << st.to_string();
  for (const char* part : {"not in the backup repository", "repository down (test)", "retry",
                           "stowctl volume forget-unsynced db"}) {
    EXPECT_NE(st.message().find(part), std::string::npos) << part << " not in: " << st.message();
  }
  ASSERT_TRUE(a->volumes->get("db", false).is_ok()) << "removed with its last writes only here";
  EXPECT_EQ(test::read_file(a->data("db") + "/f"), "last writes");
  expect_kept_out("db", "node-a");

  // The repository is gone for good: discard them deliberately.
  auto discarded = a->agent->forget_unsynced("db");
  ASSERT_TRUE(discarded.is_ok()) << discarded.status().to_string();
  EXPECT_TRUE(*discarded);
  EXPECT_TRUE(a->agent->volume_status("db")["final_backup"].is_null());
  st = a->remove("db");
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_FALSE(a->volumes->get("db", false).is_ok());
  gate->down = false;
}

// A volume removed while the restore that its Create started still runs: that
// job ends after the removal and must not write the volume's agent state back,
// or a later Create of the name would start from the removed volume's
// 'restore pending' and synced snapshot.
TEST_F(BackupAgentTest, ARemovedVolumesAgentStateDoesNotComeBack) {
  auto a = backed_up_elsewhere("node-a");
  auto gate = std::make_shared<Gate>();
  auto b = gated_host("node-b", gate);
  ASSERT_TRUE(b->volumes->create("db", {}).is_ok());
  gate->arm(StoreOp::kGet, "data/");
  ASSERT_TRUE(b->agent->after_create("db", true).is_ok());
  ASSERT_TRUE(gate->wait_reached());  // the restore job is fetching
  Status st = b->remove("db");
  gate->open();
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  b.reset();  // joins the restore job

  const std::string state = dir_ / "node-b/agent/db.json";
  EXPECT_NE(::access(state.c_str(), F_OK), 0) << "the removed volume's agent state came back";
  b = gated_host("node-b", gate);
  ASSERT_TRUE(b->volumes->create("db", {}).is_ok());
  auto status = b->agent->volume_status("db");
  EXPECT_TRUE(status["synced_snapshot"].is_null()) << status.dump();
  EXPECT_TRUE(status["restore"].is_null()) << status.dump();
}

}  // namespace
}  // namespace stowage
