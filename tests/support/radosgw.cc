#include "support/radosgw.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

namespace stowage::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string tail(const std::string& path, size_t bytes = 3000) {
  std::string s = read_file(path);
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

bool tcp_accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string uuid() {
  std::string u = read_file("/proc/sys/kernel/random/uuid");
  while (!u.empty() && (u.back() == '\n')) u.pop_back();
  return u;
}

}  // namespace

std::string Radosgw::fail(const std::string& what, const std::string& log) {
  std::string msg = "radosgw fixture: " + what;
  if (!log.empty()) msg += "\n--- " + log + " (tail) ---\n" + tail(log);
  stop();
  return msg;
}

std::string Radosgw::start(const std::string& dir) {
  stop();
  dir_ = dir;
  std::error_code ec;
  fs::remove_all(dir_, ec);
  for (const char* sub : {"mon", "osd", "run", "log"}) fs::create_directories(dir_ + "/" + sub, ec);
  if (ec) return fail("cannot create " + dir_ + ": " + ec.message(), "");
  const int mon_port = free_tcp_port();
  const int rgw_port = free_tcp_port();
  const std::string fsid = uuid();
  conf_ = dir_ + "/ceph.conf";
  // Every setting here was needed to get a fast, self-contained cluster:
  // crc modes (or radosgw fails with -13), a short paxos interval (or pool
  // creation takes ~15 s), size-1 pools, no cephx, memstore.
  {
    std::ofstream c(conf_);
    c << "[global]\n"
      << "fsid = " << fsid << "\n"
      << "mon host = v1:127.0.0.1:" << mon_port << "\n"
      << "mon initial members = a\n"
      << "public addr = 127.0.0.1\n"
      << "auth cluster required = none\nauth service required = none\nauth client required = none\n"
      << "auth allow insecure global id reclaim = true\n"
      << "ms mon client mode = crc\nms client mode = crc\nms bind msgr2 = false\n"
      << "osd pool default size = 1\nosd pool default min size = 1\n"
      << "osd pool default pg num = 8\nosd pool default pgp num = 8\n"
      << "osd pool default pg autoscale mode = off\n"
      << "mon allow pool size one = true\nmon warn on pool no redundancy = false\n"
      << "paxos propose interval = 0.05\n"
      << "osd crush chooseleaf type = 0\n"
      << "run dir = " << dir_ << "/run\n"
      << "admin socket = " << dir_ << "/run/$name.asok\n"
      << "log file = " << dir_ << "/log/$name.log\n"
      << "pid file = " << dir_ << "/run/$name.pid\n"
      << "keyring = /dev/null\n"
      << "osd objectstore = memstore\n"
      << "memstore device bytes = 4294967296\n"
      << "osd data = " << dir_ << "/osd\n"
      << "mon data = " << dir_ << "/mon\n"
      << "[client.rgw]\n"
      << "rgw frontends = beast endpoint=127.0.0.1:" << rgw_port << "\n"
      << "rgw data = " << dir_ << "/run\n";
    if (!c) return fail("cannot write " + conf_, "");
  }
  const std::string q = "'" + conf_ + "'";
  const std::string setup_log = dir_ + "/log/setup.out";
  auto sh = [&](const std::string& cmd) {
    std::string out;
    int rc = run_shell("timeout 60 " + cmd, &out);
    std::ofstream(setup_log, std::ios::app) << "$ " << cmd << "\n" << out << "rc=" << rc << "\n";
    return rc;
  };

  if (sh("monmaptool --create --addv a '[v1:127.0.0.1:" + std::to_string(mon_port) + "]' --fsid " + fsid + " '" +
         dir_ + "/monmap'") != 0 ||
      sh("ceph-mon -c " + q + " --mkfs -i a --monmap '" + dir_ + "/monmap'") != 0) {
    return fail("monitor mkfs failed (is ceph-mon installed? deploy/install-deps.sh)", setup_log);
  }
  auto spawn = [&](std::vector<std::string> argv, const std::string& name) {
    Subprocess::Options o;
    o.argv = std::move(argv);
    o.log_path = dir_ + "/log/" + name + ".out";
    return std::make_unique<Subprocess>(std::move(o));
  };
  mon_ = spawn({"ceph-mon", "-c", conf_, "-i", "a", "-f"}, "mon");
  // A monitor that has just started can refuse the first commands (seen under
  // load: the call fails in well under its timeout), so ask a few times. The
  // answer must be this cluster's fsid: were the port taken by another
  // cluster's monitor, every later step would quietly join that cluster (the
  // ceph CLI adopts whatever monmap the monitor hands it: checked by hand,
  // `ceph -c <conf with fsid B> fsid` against a monitor of fsid A prints A).
  std::string answered_fsid;
  for (int attempt = 0; attempt < 5 && answered_fsid.empty(); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(seconds(1));
    std::string out;
    // Only stdout is the answer; stderr goes to the setup log.
    if (run_shell("{ timeout 60 ceph -c " + q + " --connect-timeout 30 fsid 2>>'" + setup_log + "'; }", &out) == 0) {
      answered_fsid = out.substr(0, out.find_first_of("\r\n"));
    }
  }
  if (answered_fsid.empty()) {
    return fail("'ceph fsid' failed 5 times: monitor not answering (its log: " + dir_ + "/log/mon.a.log)", setup_log);
  }
  if (answered_fsid != fsid) {
    return fail("the monitor on port " + std::to_string(mon_port) + " belongs to another cluster (fsid " +
                    answered_fsid + ", ours " + fsid + ")",
                dir_ + "/log/mon.a.log");
  }
  // `osd new UUID` is idempotent: retried, as the first command was.
  const std::string osd_uuid = uuid();
  bool osd_made = false;
  for (int attempt = 0; attempt < 3 && !osd_made; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(seconds(1));
    osd_made = sh("ceph -c " + q + " --connect-timeout 30 osd new " + osd_uuid) == 0;
  }
  if (!osd_made) return fail("'ceph osd new' failed 3 times", setup_log);
  if (sh("ceph-osd -c " + q + " --mkfs -i 0 --osd-uuid " + osd_uuid) != 0) {
    return fail("ceph-osd --mkfs failed", setup_log);
  }
  // A freshly made OSD sometimes sends its first command before it has the
  // monmap and exits ("wrong fsid"); start it again, a bounded number of times.
  const std::string osd_up_cmd = "timeout 20 ceph -c " + q + " osd stat 2>/dev/null | grep -q '1 up'";
  bool osd_up = false;
  for (int attempt = 0; attempt < 4 && !osd_up; ++attempt) {
    osd_ = spawn({"ceph-osd", "-c", conf_, "-i", "0", "-f"}, "osd");
    osd_up = wait_until([&] { return !osd_->running() || run_shell(osd_up_cmd) == 0; }, seconds(30)) &&
             osd_->running();
  }
  if (!osd_up) return fail("ceph-osd did not come up", dir_ + "/log/osd.0.log");
  bool listening = false;
  for (int attempt = 0; attempt < 2 && !listening; ++attempt) {
    rgw_ = spawn({"radosgw", "-c", conf_, "-n", "client.rgw", "-f"}, "rgw");
    listening = wait_until([&] { return !rgw_->running() || tcp_accepts(rgw_port); }, seconds(60)) &&
                rgw_->running();
  }
  if (!listening) {
    return fail("radosgw did not start listening on port " + std::to_string(rgw_port), dir_ + "/log/client.rgw.log");
  }
  endpoint_ = "http://127.0.0.1:" + std::to_string(rgw_port);
  if (std::string err = create_user(user_); !err.empty()) return fail(err, setup_log);
  return "";
}

std::string Radosgw::create_user(const S3User& u) {
  int rc = run_shell("timeout 60 radosgw-admin -c '" + conf_ + "' user create --uid '" + u.uid +
                     "' --display-name '" + u.uid + "' --access-key '" + u.access_key + "' --secret-key '" +
                     u.secret_key + "' >> '" + dir_ + "/log/setup.out'");
  return rc == 0 ? "" : "radosgw-admin user create " + u.uid + " failed (rc=" + std::to_string(rc) + ")";
}

std::string Radosgw::create_bucket(const std::string& bucket) {
  // Signed by curl(1) itself; bucket names are plain DNS labels.
  const std::string cmd = "curl -sS -o /dev/null -w '%{http_code}' --aws-sigv4 'aws:amz:" + region() + ":s3' -u '" +
                          user_.access_key + ":" + user_.secret_key +
                          "' -H 'x-amz-content-sha256: "
                          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' -X PUT '" +
                          endpoint_ + "/" + bucket + "'";
  std::string out;
  // The first bucket creation also creates radosgw's data pools: allow time.
  bool ok = wait_until(
      [&] {
        if (run_shell(cmd, &out) == 0 && (out == "200" || out == "409")) return true;
        std::this_thread::sleep_for(milliseconds(100));
        return false;
      },
      seconds(60));
  return ok ? "" : "create bucket " + bucket + " failed: HTTP " + out;
}

void Radosgw::stop() {
  for (auto* p : {&rgw_, &osd_, &mon_}) {
    if (*p) (*p)->stop(SIGKILL, seconds(10));
    p->reset();
  }
}

void RadosgwEnvironment::SetUp() {
  dir_ = std::make_unique<TempDir>("stowage-rgw");
  error_ = rgw_.start(dir_->path() + "/ceph");
  started_ = error_.empty();
}

void RadosgwEnvironment::TearDown() {
  rgw_.stop();
  dir_.reset();
}

}  // namespace stowage::test
