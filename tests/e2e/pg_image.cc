#include "pg_image.h"

#include <filesystem>
#include <memory>
#include <mutex>

#include <gtest/gtest.h>

namespace stowage::test {

namespace fs = std::filesystem;

namespace {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// The tarball of the root filesystem, built on first use; lives until exit.
struct RootfsCache {
  std::mutex mu;
  std::unique_ptr<TempDir> dir;
  std::string tarball, error;
};

RootfsCache& cache() {
  static RootfsCache c;  // its TempDir goes at exit
  return c;
}

std::string build_rootfs_tarball() {
  RootfsCache& c = cache();
  std::lock_guard lock(c.mu);
  if (!c.tarball.empty() || !c.error.empty()) return c.error;
  c.dir = std::make_unique<TempDir>("stowage-pg-image");
  std::string root = c.dir->path() + "/root";
  std::string out;
  int rc = run_shell("bash " + std::string(STOWAGE_SOURCE_DIR) + "/tests/e2e/make_pg_rootfs.sh " + root, &out);
  if (rc != 0) {
    c.error = "make_pg_rootfs.sh failed (" + std::to_string(rc) + "): " + out;
    return c.error;
  }
  std::string tar = c.dir->path() + "/rootfs.tar";
  rc = run_shell("tar -C " + root + " -cf " + tar + " . && rm -rf " + root, &out);
  if (rc != 0) {
    c.error = "tar of the PostgreSQL root failed: " + out;
    return c.error;
  }
  c.tarball = tar;
  return "";
}

}  // namespace

bool import_postgres_image(DockerEngine& engine, const std::string& tag) {
  std::string why = build_rootfs_tarball();
  if (!why.empty()) {
    ADD_FAILURE() << why;
    return false;
  }
  std::string out;
  int rc = engine.docker("import --change 'USER postgres' --change 'ENV PGDATA=/var/lib/postgresql/data' "
                         "--change 'CMD [\"/usr/local/bin/pg-entrypoint\"]' " +
                             cache().tarball + " " + tag,
                         &out);
  if (rc != 0) ADD_FAILURE() << "docker import of the PostgreSQL image failed: " << out;
  return rc == 0;
}

PostgresContainer::PostgresContainer(DockerEngine& engine, std::string image, std::string name, std::string volume)
    : engine_(engine), image_(std::move(image)), name_(std::move(name)), volume_(std::move(volume)) {}

std::string PostgresContainer::start(const std::string& extra_run_args) {
  std::string out;
  int rc = engine_.docker("run -d --name " + name_ + " -u " + std::to_string(kPostgresUid) + ":" +
                              std::to_string(kPostgresUid) + " --stop-signal SIGINT --stop-timeout 60 -v " + volume_ +
                              ":/var/lib/postgresql/data " + extra_run_args + " " + image_,
                          &out);
  if (rc != 0) return "docker run " + name_ + " failed (" + std::to_string(rc) + "): " + trim(out);
  std::string why;
  if (!wait_ready(std::chrono::seconds(120), &why)) return why;
  return "";
}

bool PostgresContainer::wait_ready(std::chrono::seconds timeout, std::string* why) {
  bool exited = false;
  bool ready = wait_until(
      [&] {
        std::string state;
        engine_.docker("inspect -f '{{.State.Running}}' " + name_, &state);
        if (trim(state) != "true") {
          exited = true;
          return true;
        }
        std::string out;
        return engine_.docker("exec " + name_ + " pg_isready -q -h /var/run/postgresql -U postgres", &out) == 0;
      },
      timeout);
  if (ready && !exited) return true;
  if (why) {
    *why = "PostgreSQL in " + name_ + (exited ? " exited" : " did not accept connections in time") +
           "; container log:\n" + logs();
  }
  return false;
}

int PostgresContainer::stop_and_remove() {
  std::string out;
  int rc = engine_.docker("stop -t 60 " + name_, &out);
  EXPECT_EQ(rc, 0) << "docker stop " << name_ << ": " << out;
  int rm = engine_.docker("rm " + name_, &out);
  EXPECT_EQ(rm, 0) << "docker rm " << name_ << ": " << out;
  return rc;
}

int PostgresContainer::sql(const std::string& statement, std::string* out) {
  std::string o;
  int rc = engine_.docker("exec " + name_ + " psql -h /var/run/postgresql -U postgres -d postgres -AtX " +
                              "-v ON_ERROR_STOP=1 -c " + shell_quote(statement),
                          &o);
  if (out) *out = trim(o);
  return rc;
}

std::string PostgresContainer::query(const std::string& statement) {
  std::string out;
  int rc = sql(statement, &out);
  if (rc != 0) {
    ADD_FAILURE() << "psql in " << name_ << " failed (" << rc << ") for: " << statement << "\n" << out;
    return "";
  }
  return out;
}

int PostgresContainer::pgbench(const std::string& args, std::string* out) {
  return engine_.docker("exec " + name_ + " pgbench -h /var/run/postgresql -U postgres " + args + " postgres", out);
}

std::string PostgresContainer::logs() {
  std::string out;
  engine_.docker("logs --tail 60 " + name_, &out);
  return out;
}

}  // namespace stowage::test
