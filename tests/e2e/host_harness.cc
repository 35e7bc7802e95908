#include "host_harness.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>

#include <gtest/gtest.h>

namespace stowage::test {

namespace fs = std::filesystem;

namespace {

struct ProcInfo {
  pid_t ppid = 0;
  char state = '?';
  std::string comm;
};

// /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces and ')'.
bool read_stat(pid_t pid, ProcInfo* info) {
  std::string s = read_file("/proc/" + std::to_string(pid) + "/stat");
  size_t open = s.find('('), close = s.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 4 > s.size()) return false;
  info->comm = s.substr(open + 1, close - open - 1);
  info->state = s[close + 2];
  info->ppid = static_cast<pid_t>(std::atol(s.c_str() + close + 4));
  return true;
}

std::map<pid_t, ProcInfo> all_processes() {
  std::map<pid_t, ProcInfo> procs;
  DIR* d = ::opendir("/proc");
  if (!d) return procs;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    ProcInfo info;
    if (read_stat(static_cast<pid_t>(pid), &info)) procs[static_cast<pid_t>(pid)] = info;
  }
  ::closedir(d);
  return procs;
}

}  // namespace

std::string mount_ns_of(pid_t pid) {
  char buf[64];
  std::string link = "/proc/" + std::to_string(pid) + "/ns/mnt";
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

Host::Host(HostOptions opts) : opts_(std::move(opts)) {
  fs::create_directories(opts_.dir + "/plugins");
  fs::create_directories(opts_.dir + "/stowage");
  engine_ = std::make_unique<DockerEngine>(opts_.dir + "/docker");
  daemon_ = std::make_unique<Daemon>(opts_.dir + "/stowage", plugin_socket());
  // Only this host's settings: a config file of its own, never /etc/stowage/stowage.json.
  write_file(opts_.dir + "/stowage.json", "{}\n");
  std::map<std::string, std::string> env = opts_.stowaged_env;
  env.emplace("STOWAGE_CONFIG", opts_.dir + "/stowage.json");
  daemon_->set_env(env);
}

Host::~Host() { teardown(); }

pid_t Host::ns_pid() const { return holder_ ? holder_->pid() : -1; }

bool Host::start_namespace() {
  std::string ready = opts_.dir + "/ns-ready";
  Subprocess::Options o;
  // unshare and sh exec in place: the holder's pid is the namespace's first process.
  o.argv = {"unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c",
            "mount --bind \"$0/plugins\" /run/docker/plugins && touch \"$0/ns-ready\" && exec sleep infinity",
            opts_.dir};
  o.log_path = opts_.dir + "/holder.log";
  holder_ = std::make_unique<Subprocess>(o);
  if (!wait_until([&] { return fs::exists(ready) || !holder_->running(); }, std::chrono::seconds(20)) ||
      !holder_->running()) {
    ADD_FAILURE() << "host " << opts_.name << ": mount namespace holder failed: " << read_file(o.log_path);
    return false;
  }
  ns_id_ = mount_ns_of(holder_->pid());
  if (ns_id_.empty() || ns_id_ == mount_ns_of(::getpid())) {
    ADD_FAILURE() << "host " << opts_.name << ": holder is not in a mount namespace of its own (" << ns_id_ << ")";
    return false;
  }
  std::vector<std::string> enter = {"nsenter", "-t", std::to_string(holder_->pid()), "-m", "--"};
  engine_->set_launcher(enter);
  daemon_->set_launcher(enter);
  return true;
}

bool Host::start() {
  torn_down_ = false;
  if (!start_namespace()) return false;
  return start_stowaged() && start_dockerd();
}

bool Host::start_stowaged() {
  // quiesce=pause reaches this host's dockerd.
  std::vector<std::string> args = {"--docker-socket", engine_->socket_path()};
  args.insert(args.end(), opts_.stowaged_args.begin(), opts_.stowaged_args.end());
  if (!daemon_->start(args)) {
    ADD_FAILURE() << "host " << opts_.name << ": stowaged did not start";
    return false;
  }
  return true;
}

int Host::stop_stowaged() { return daemon_->stop(); }

void Host::kill_stowaged() { daemon_->kill9(); }

bool Host::start_dockerd() {
  if (!engine_->start()) {
    ADD_FAILURE() << "host " << opts_.name << ": dockerd did not start";
    return false;
  }
  return true;
}

int Host::stop_dockerd() { return engine_->stop(); }

void Host::kill_dockerd() { engine_->kill9(); }

std::vector<pid_t> Host::processes() const {
  std::vector<pid_t> out;
  if (ns_id_.empty()) return out;
  auto procs = all_processes();
  std::set<pid_t> in;
  for (const auto& [pid, info] : procs) {
    if (info.state != 'Z' && mount_ns_of(pid) == ns_id_) in.insert(pid);
  }
  // Container processes live in namespaces below ours: take descendants.
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& [pid, info] : procs) {
      if (info.state != 'Z' && !in.count(pid) && in.count(info.ppid)) {
        in.insert(pid);
        grew = true;
      }
    }
  }
  in.erase(ns_pid());
  out.assign(in.begin(), in.end());
  return out;
}

void Host::reap_orphans() {
  // Shims and containerd are reparented to this (subreaper) process when their
  // parents die; they are nobody's Subprocess, so collect them here. Other
  // zombies may belong to a Subprocess that reaps its own.
  for (const auto& [pid, info] : all_processes()) {
    if (info.ppid == ::getpid() && info.state == 'Z' && info.comm.rfind("containerd", 0) == 0) {
      ::waitpid(pid, nullptr, WNOHANG);
    }
  }
}

void Host::crash() {
  std::vector<pid_t> before = processes();
  daemon_->kill9();
  engine_->kill9();
  // Everything else of the host: containerd, shims, containers.
  for (int round = 0; round < 50; ++round) {
    std::vector<pid_t> left = processes();
    if (left.empty()) break;
    for (pid_t p : left) ::kill(p, SIGKILL);
    for (pid_t p : left) before.push_back(p);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (pid_t p : before) {
    ::waitpid(p, nullptr, WNOHANG);
  }
  reap_orphans();
}

void Host::teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  if (holder_ && holder_->running()) {
    // Containers first, through dockerd (stowaged still up, so Unmounts arrive).
    if (engine_->running()) {
      engine_->remove_all_containers();
      engine_->stop();
    }
    daemon_->stop();
    // Anything left (containers of a killed dockerd, their shims) dies now.
    std::vector<pid_t> seen;
    bool empty = wait_until(
        [&] {
          std::vector<pid_t> left = processes();
          for (pid_t p : left) {
            ::kill(p, SIGKILL);
            seen.push_back(p);
          }
          for (pid_t p : seen) ::waitpid(p, nullptr, WNOHANG);
          return left.empty();
        },
        std::chrono::seconds(30));
    if (!empty) ADD_FAILURE() << "host " << opts_.name << ": processes survive SIGKILL in its namespace";
    holder_->stop(SIGKILL, std::chrono::seconds(10));
  }
  reap_orphans();
  if (!ns_id_.empty()) {
    std::vector<pid_t> left = processes();
    if (!left.empty()) {
      std::string list;
      for (pid_t p : left) list += " " + std::to_string(p);
      ADD_FAILURE() << "host " << opts_.name << ": processes left in its namespace:" << list;
    }
  }
}

int Host::docker(const std::string& args, std::string* out) { return engine_->docker(args, out); }

nlohmann::json Host::backup_status(const std::string& volume) {
  std::string out;
  if (stowctl("volume inspect " + volume + " --json", &out) != 0) return nullptr;
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (!j.is_object() || !j.contains("backup") || !j["backup"].is_object()) return nullptr;
  return j["backup"];
}

bool Host::wait_final_backup(const std::string& volume, std::chrono::seconds timeout, nlohmann::json* last) {
  nlohmann::json st;
  bool done = wait_until(
      [&] {
        st = backup_status(volume);
        if (!st.is_object() || !st.contains("lease") || !st["lease"].is_null()) return false;
        const nlohmann::json& b = st.contains("last_backup") ? st["last_backup"] : nlohmann::json();
        return b.is_object() && b.value("ok", false) && b.contains("reason") && b["reason"] == "final";
      },
      timeout);
  if (last) *last = st;
  return done;
}

int Host::stowctl(const std::string& args, std::string* out) {
  std::string o;
  int rc = daemon_->stowctl(args, &o);
  if (out) *out = std::move(o);
  return rc;
}

}  // namespace stowage::test
