#!/usr/bin/env bash
# Measures how the FastCDC average chunk size affects incremental backup cost on
# a PostgreSQL data directory (the workload Stowage volumes are sized for).
#
#   1. initdb + `pgbench -i -s 50` (≈ 750 MB), checkpoint, stop → copy "v1"
#   2. start again, run a fixed number of pgbench transactions, stop → copy "v2"
#   3. start again, run a smaller number of transactions (steady state: hint
#      bits set, tables vacuumed), stop → copy "v3"
#   4. chunk_size_measure v1 v2 and v2 v3: for each average size, the bytes of
#      the newer version's chunks that the older one lacks ("new bytes" = what
#      an incremental backup would upload before compression), plus chunk counts.
#
# Usage: bench/backup/pg_chunk_size.sh WORKDIR [BUILD_DIR]
#   Runs as root (uses `runuser -u postgres`). WORKDIR needs ~3 GB. Re-running
#   with existing WORKDIR/v1, v2, v3 skips the PostgreSQL steps.
set -euo pipefail
work=${1:?usage: $0 WORKDIR [BUILD_DIR]}
build=${2:-$(cd "$(dirname "$0")/../.." && pwd)/build/backup}
pgbin=/usr/lib/postgresql/15/bin
scale=${PG_SCALE:-50}
txns=${PG_TXNS:-20000}   # per client, v1 → v2
txns_small=${PG_TXNS_SMALL:-1000}   # per client, v2 → v3
clients=${PG_CLIENTS:-4}

mkdir -p "$work"
chown postgres "$work"
pg() { runuser -u postgres -- "$@"; }

start() { pg "$pgbin/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
            -o "-c listen_addresses='' -k $work/sock -c fsync=off" start >/dev/null; }
stop() { pg "$pgbin/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null; }
if [[ ! -d $work/v1 || ! -d $work/v2 ]]; then
  rm -rf "$work/data" "$work/sock" "$work/v1" "$work/v2" "$work/v3"
  mkdir -p "$work/sock" && chown postgres "$work/sock"
  pg "$pgbin/initdb" -D "$work/data" -A trust >/dev/null
  start
  pg "$pgbin/pgbench" -h "$work/sock" -i -s "$scale" -q postgres
  pg "$pgbin/psql" -h "$work/sock" -q -c CHECKPOINT postgres
  stop
  cp -a "$work/data" "$work/v1"
  start
  pg "$pgbin/pgbench" -h "$work/sock" -c "$clients" -t "$txns" -n postgres | grep -E 'transactions|tps'
  pg "$pgbin/psql" -h "$work/sock" -q -c CHECKPOINT postgres
  stop
  cp -a "$work/data" "$work/v2"
fi
if [[ ! -d $work/v3 ]]; then
  start
  pg "$pgbin/pgbench" -h "$work/sock" -c "$clients" -t "$txns_small" -n postgres | grep -E 'transactions|tps'
  pg "$pgbin/psql" -h "$work/sock" -q -c CHECKPOINT postgres
  stop
  cp -a "$work/data" "$work/v3"
fi
du -sh "$work/v1" "$work/v2" "$work/v3"
echo "== v1 -> v2: after load, $((txns * clients)) transactions"
"$build/bin/chunk_size_measure" "$work/v1" "$work/v2" 65536 262144 1048576
echo "== v2 -> v3: steady state, $((txns_small * clients)) transactions"
"$build/bin/chunk_size_measure" "$work/v2" "$work/v3" 16384 65536 262144 1048576
