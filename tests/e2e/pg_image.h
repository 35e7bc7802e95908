// PostgreSQL 15 for end-to-end tests without a registry: an image made with
// `docker import` from this machine's Debian packages (make_pg_rootfs.sh),
// and a small driver for a PostgreSQL container whose data directory is a
// Docker volume: start and wait until it accepts connections, SQL through
// psql, pgbench, stop.
#pragma once

#include <string>

#include "docker_harness.h"

namespace stowage::test {

// Imports the PostgreSQL image as `tag` into `engine`. The root filesystem
// tarball is built once per test process (cached) and imported into every
// engine that asks. Fails the current test (and returns false) with the
// reason when the packages are missing or the import fails.
bool import_postgres_image(DockerEngine& engine, const std::string& tag);

// uid and gid of user postgres in the image: volumes for PGDATA are created
// with `-o uid=999 -o gid=999 -o mode=0700`.
inline constexpr int kPostgresUid = 999;

// One PostgreSQL container `name` on `engine` with `volume` as its PGDATA.
// An empty volume is initialised (initdb) on the first start.
class PostgresContainer {
 public:
  PostgresContainer(DockerEngine& engine, std::string image, std::string name, std::string volume);

  // `docker run -d` (stop signal SIGINT: PostgreSQL's fast shutdown, which
  // checkpoints), then waits until pg_isready answers (bounded, 2 min).
  // Returns "" or what went wrong, with docker's output and the container log.
  std::string start(const std::string& extra_run_args = "");
  // Waits until the server accepts connections; false (with *why) if the
  // container exits or the deadline passes.
  bool wait_ready(std::chrono::seconds timeout, std::string* why);
  // `docker stop` (60 s grace) then `docker rm`: the volume's last Unmount.
  // Returns docker's exit status of the stop.
  int stop_and_remove();

  // Runs one SQL statement with psql -AtX in the container; exit status,
  // trimmed output in *out.
  int sql(const std::string& statement, std::string* out);
  // The single value a query returns, or "" with a test failure.
  std::string query(const std::string& statement);
  // Runs pgbench in the container against database postgres; exit status,
  // output in *out.
  int pgbench(const std::string& args, std::string* out);
  // Container log (docker logs).
  std::string logs();

  const std::string& name() const { return name_; }

 private:
  DockerEngine& engine_;
  std::string image_, name_, volume_;
};

}  // namespace stowage::test
