// Crash test: clients create, mount, unmount and remove volumes while the
// daemon is killed with SIGKILL at random moments. After every restart each
// volume's state must be exactly the last acknowledged one, or the one its
// in-flight (unacknowledged) call would have produced — never anything else.
// Each client writes a file into its volume once its Create is acknowledged:
// a volume that is there must still hold it (a Remove killed halfway once
// brought a volume back empty).
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
  bool data = false;  // the client's file is in the volume
  std::set<std::string> mounts;
  bool operator==(const Model&) const = default;
};

std::string describe(const Model& m) {
  if (!m.exists) return "absent";
  std::string s = m.data ? "present with data{" : "present without data{";
  for (const auto& id : m.mounts) s += id + ",";
  return s + "}";
}

// One client owns one volume and walks it through a fixed cycle of calls.
struct Client {
  std::string volume;
  Model acked;                  // state after the last acknowledged call
  std::optional<Model> maybe;   // state if the unacknowledged call took effect
  size_t step = 0;
  uint64_t acks = 0;

  // The next call and the state it leads to.
  std::pair<std::string, json> next(Model* after) const {
    static const char* kCycle[] = {"Create", "Mount:a", "Mount:b", "Mount:a", "Unmount:a", "Unmount:b", "Remove"};
    std::string op = kCycle[step % 7];
    *after = acked;
    json body = {{"Name", volume}};
    if (op == "Create") {
      after->exists = true;
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

Model observe(PluginClient& c, const std::string& volume) {
  auto g = c.call("Get", {{"Name", volume}});
  Model m;
  if (g.status == 404) return m;
  EXPECT_EQ(g.status, 200) << g.body;
  m.exists = true;
  json body = g.json();
  for (const auto& id : body["Volume"]["Status"]["mount_ids"]) m.mounts.insert(id.get<std::string>());
  m.data = read_file(body["Volume"]["Mountpoint"].get<std::string>() + "/written") == volume;
  return m;
}

TEST(CrashTest, StateIsLastAcknowledgedOrInFlightAfterEveryKill) {
  constexpr int kClients = 8;
  constexpr int kRounds = 25;
  TempDir dir("stowage-crash");
  Daemon daemon(dir.path());
  std::vector<Client> clients(kClients);
  for (int i = 0; i < kClients; ++i) clients[i].volume = "crash" + std::to_string(i);
  std::mt19937 rng(20261126);

  for (int round = 0; round < kRounds; ++round) {
    ASSERT_TRUE(daemon.start());
    // Verify what survived the previous kill.
    {
      PluginClient checker(daemon.plugin_socket());
      for (auto& c : clients) {
        Model seen = observe(checker, c.volume);
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
          if (op == "Create") {
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
  uint64_t total = 0;
  for (const auto& c : clients) total += c.acks;
  // The test means something only if calls were actually acknowledged between kills.
  EXPECT_GT(total, static_cast<uint64_t>(kRounds * kClients)) << "too few acknowledged calls";
  std::printf("crash test: %d kills, %llu acknowledged calls verified\n", kRounds,
              static_cast<unsigned long long>(total));
}

}  // namespace
}  // namespace stowage::test
