// Crash test: clients create, mount, unmount and remove volumes while the
// daemon is killed with SIGKILL at random moments. After every restart each
// volume's state must be exactly the last acknowledged one, or the one its
// in-flight (unacknowledged) call would have produced — never anything else.
// Each client writes a file into its volume once its Create is acknowledged:
// a volume that is there must still hold it (a Remove killed halfway once
// brought a volume back empty). A second test does the same with Creates from
// a snapshot, whose data comes with the Create.
#include <atomic>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_harness.h"

namespace stowage::test {
namespace {

using json = nlohmann::json;

struct Model {
  bool exists = false;
  bool data = false;  // the volume holds what it should (the client's file, or the snapshot's)
  bool broken = false;  // Get answers with a problem: stowaged could not tell what the volume is
  std::set<std::string> mounts;
  bool operator==(const Model&) const = default;
};

std::string describe(const Model& m) {
  if (!m.exists) return "absent";
  std::string s = m.broken ? "broken " : "";
  s += m.data ? "present with data{" : "present without data{";
  for (const auto& id : m.mounts) s += id + ",";
  return s + "}";
}

// One client owns one volume and walks it through a fixed cycle of calls.
struct Client {
  std::string volume;
  std::vector<std::string> cycle;  // "Create", "Mount:<id>", "Unmount:<id>", "Remove"
  json create_opts;                // a Create's Opts; with from-snapshot the data comes with it
  Model acked;                     // state after the last acknowledged call
  std::optional<Model> maybe;      // state if the unacknowledged call took effect
  size_t step = 0;
  uint64_t acks = 0;

  bool clone() const { return create_opts.contains("from-snapshot"); }

  // The next call and the state it leads to.
  std::pair<std::string, json> next(Model* after) const {
    std::string op = cycle[step % cycle.size()];
    *after = acked;
    json body = {{"Name", volume}};
    if (op == "Create") {
      after->exists = true;
      after->data = clone();
      if (!create_opts.empty()) body["Opts"] = create_opts;
    } else if (op == "Remove") {
      *after = Model{};
    } else {
      std::string id = op.substr(op.find(':') + 1);
      body["ID"] = id;
      if (op.starts_with("Mount")) {
        after->mounts.insert(id);
      } else {
        after->mounts.erase(id);
      }
      op = op.substr(0, op.find(':'));
    }
    return {op, body};
  }
};

constexpr const char* kSeed = "the snapshot's data";

Model observe(PluginClient& c, const Client& client) {
  auto g = c.call("Get", {{"Name", client.volume}});
  Model m;
  if (g.status == 404) return m;
  EXPECT_EQ(g.status, 200) << g.body;
  m.exists = true;
  json body = g.json();
  m.broken = body["Volume"]["Status"].contains("problem");
  for (const auto& id : body["Volume"]["Status"]["mount_ids"]) m.mounts.insert(id.get<std::string>());
  const std::string mp = body["Volume"]["Mountpoint"].get<std::string>();
  m.data = client.clone() ? read_file(mp + "/seed") == kSeed : read_file(mp + "/written") == client.volume;
  return m;
}

// `rounds` times: start the daemon, check that every client's volume is in
// its acknowledged state or in the one its in-flight call would have made,
// let the clients run, and kill the daemon at a random moment.
void run_kill_rounds(Daemon& daemon, std::vector<Client>& clients, int rounds, std::mt19937& rng) {
  for (int round = 0; round < rounds; ++round) {
    ASSERT_TRUE(daemon.start());
    // Verify what survived the previous kill.
    {
      PluginClient checker(daemon.plugin_socket());
      for (auto& c : clients) {
        Model seen = observe(checker, c);
        bool ok = seen == c.acked || (c.maybe && seen == *c.maybe);
        ASSERT_TRUE(ok) << "round " << round << " volume " << c.volume << ": saw " << describe(seen)
                        << ", acknowledged " << describe(c.acked)
                        << (c.maybe ? ", in flight " + describe(*c.maybe) : std::string());
        if (c.maybe && seen == *c.maybe && !(seen == c.acked)) ++c.step;  // the in-flight call took effect
        c.acked = seen;
        c.maybe.reset();
      }
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (auto& c : clients) {
      threads.emplace_back([&daemon, &c, &stop] {
        PluginClient pc(daemon.plugin_socket());
        while (!stop) {
          Model after;
          auto [op, body] = c.next(&after);
          auto r = pc.call(op, body);
          if (r.status == 0) {  // no answer: the daemon died with this call in flight
            c.maybe = after;
            return;
          }
          ASSERT_EQ(r.status, 200) << op << " " << body.dump() << ": " << r.body;
          if (op == "Create" && !c.clone()) {
            auto p = pc.call("Path", {{"Name", c.volume}});
            if (p.status == 0) {  // died right after the Create: write next round
              c.acked = after;
              ++c.step;
              return;
            }
            write_file(p.json()["Mountpoint"].get<std::string>() + "/written", c.volume);
            after.data = true;
          }
          c.acked = after;
          ++c.step;
          ++c.acks;
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 200));
    daemon.kill9();
    stop = true;
    for (auto& t : threads) t.join();
  }
}

// The test means something only if calls were actually acknowledged between kills.
void expect_acknowledged_calls(const std::vector<Client>& clients, int rounds, const char* what) {
  uint64_t total = 0;
  for (const auto& c : clients) total += c.acks;
  EXPECT_GT(total, static_cast<uint64_t>(rounds) * clients.size()) << "too few acknowledged calls";
  std::printf("%s: %d kills, %llu acknowledged calls verified\n", what, rounds, static_cast<unsigned long long>(total));
}

TEST(CrashTest, StateIsLastAcknowledgedOrInFlightAfterEveryKill) {
  constexpr int kClients = 8;
  constexpr int kRounds = 25;
  TempDir dir("stowage-crash");
  Daemon daemon(dir.path());
  std::vector<Client> clients(kClients);
  for (int i = 0; i < kClients; ++i) {
    clients[i].volume = "crash" + std::to_string(i);
    clients[i].cycle = {"Create", "Mount:a", "Mount:b", "Mount:a", "Unmount:a", "Unmount:b", "Remove"};
  }
  std::mt19937 rng(20261126);
  run_kill_rounds(daemon, clients, kRounds, rng);
  expect_acknowledged_calls(clients, kRounds, "crash test");
}

// Creates from a snapshot copy the data, rename it into place, then commit:
// a kill anywhere leaves the clone absent or whole, never empty and never a
// directory stowaged holds broken (the name taken until an operator acts).
TEST(CrashTest, ClonesAreWholeOrAbsentAfterEveryKill) {
  constexpr int kClients = 4;
  constexpr int kRounds = 20;
  TempDir dir("stowage-crash-clone");
  Daemon daemon(dir.path());
  ASSERT_TRUE(daemon.start());
  {
    PluginClient pc(daemon.plugin_socket());
    ASSERT_EQ(pc.call("Create", {{"Name", "src"}}).status, 200);
    const std::string mp = pc.call("Path", {{"Name", "src"}}).json()["Mountpoint"];
    write_file(mp + "/seed", kSeed);
    for (int i = 0; i < 20; ++i) write_file(mp + "/file" + std::to_string(i), std::string(4096, 'a' + i % 26));
    std::string out;
    ASSERT_EQ(daemon.stowctl("snapshot create src s", &out), 0) << out;
  }
  daemon.kill9();
  std::vector<Client> clients(kClients);
  for (int i = 0; i < kClients; ++i) {
    clients[i].volume = "clone" + std::to_string(i);
    clients[i].cycle = {"Create", "Remove"};
    clients[i].create_opts = {{"from-snapshot", "src@s"}};
  }
  std::mt19937 rng(20261129);
  run_kill_rounds(daemon, clients, kRounds, rng);
  expect_acknowledged_calls(clients, kRounds, "clone crash test");
}

}  // namespace
}  // namespace stowage::test
