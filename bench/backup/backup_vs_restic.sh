#!/usr/bin/env bash
# Stowage backup/restore against restic 0.14 on the same data, same machine,
# caches dropped before every timed run. Builds its datasets itself:
#
#   dataset/pg     a PostgreSQL 15 data directory: initdb, `pgbench -i -s
#                  $PG_SCALE`, plus a table of random md5 text ($RANDOM_MB MB)
#                  so the data does not compress 20:1; cleanly stopped.
#   dataset/small  $SMALL_FILES files of 100 B .. 8 KiB in 300 directories.
#
# Then, each for stowctl and restic (`--compression auto`, local repository):
#   full         first backup of dataset/
#   incremental  after `pgbench -c 4 -t $PG_TXNS` (+ CHECKPOINT, clean stop)
#   restore      of the latest snapshot into an empty directory
# and prints wall time, ratio (restic / stowage), peak RSS (/usr/bin/time -v)
# and repository bytes. Asserts nothing; not run in CI.
#
# Usage: bench/backup/backup_vs_restic.sh WORKDIR [STOWCTL]
#   Root (drop_caches, runuser postgres). WORKDIR needs ~5× the dataset size.
#   STOWCTL defaults to build/pipeline-release/bin/stowctl (a Release build).
#   Re-running with an existing WORKDIR/dataset skips building it.
set -euo pipefail
work=${1:?usage: $0 WORKDIR [STOWCTL]}
stowctl=${2:-$(cd "$(dirname "$0")/../.." && pwd)/build/pipeline-release/bin/stowctl}
pgbin=/usr/lib/postgresql/15/bin
scale=${PG_SCALE:-100}
random_mb=${RANDOM_MB:-600}
small_files=${SMALL_FILES:-30000}
txns=${PG_TXNS:-2500}   # per client, 4 clients

export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache
mkdir -p "$work"
chown postgres "$work"
pg() { runuser -u postgres -- "$@"; }
start() { pg "$pgbin/pg_ctl" -D "$work/dataset/pg" -l "$work/pg.log" -w \
            -o "-c listen_addresses='' -k $work/sock" start >/dev/null; }
stop() { pg "$pgbin/pg_ctl" -D "$work/dataset/pg" -m fast -w stop >/dev/null; }
sql() { pg "$pgbin/psql" -h "$work/sock" -q -v ON_ERROR_STOP=1 -c "$1" postgres; }
# Never leave a server running (a later run deletes its directory under it).
stop_if_running() { [[ -f $work/dataset/pg/postmaster.pid ]] && stop || true; }
trap stop_if_running EXIT

if [[ ! -f $work/dataset/.complete ]]; then
  stop_if_running
  rm -rf "$work/dataset" "$work/sock"
  mkdir -p "$work/dataset" "$work/sock"
  chown postgres "$work/dataset" "$work/sock"
  pg "$pgbin/initdb" -D "$work/dataset/pg" -A trust >/dev/null
  start
  pg "$pgbin/pgbench" -h "$work/sock" -i -s "$scale" -q postgres
  # ~1 KB rows of hex text: compresses about 2:1, not 20:1 like pgbench filler.
  sql "CREATE TABLE random_text (id bigint, body text)"
  rows=$((random_mb * 1024))
  # (g in the inner FROM makes the subquery correlated: a new value per row.)
  sql "INSERT INTO random_text SELECT g, (SELECT string_agg(md5(random()::text || s), '') FROM generate_series(1, 30 + 0 * g) s)
       FROM generate_series(1, $rows) g"
  sql CHECKPOINT
  stop
  python3 - "$work/dataset/small" "$small_files" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
words = [bytes(rng.randrange(97, 123) for _ in range(rng.randrange(2, 10))) for _ in range(5000)]
for i in range(n):
    d = os.path.join(root, "d%03d" % (i % 300))
    os.makedirs(d, exist_ok=True)
    size = rng.randrange(100, 8192)
    data = b" ".join(rng.choice(words) for _ in range(size // 5))[:size]
    with open(os.path.join(d, "f%05d.txt" % i), "wb") as f:
        f.write(data)
EOF
  touch "$work/dataset/.complete"
fi
du -sh "$work/dataset/pg" "$work/dataset/small"
echo "files: $(find "$work/dataset" -type f | wc -l)"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# timed NAME CMD...: runs CMD with caches dropped, records seconds and peak RSS (KiB).
declare -A secs rss
timed() {
  local name=$1; shift
  drop
  /usr/bin/time -v -o "$work/time.$name" "$@" >"$work/out.$name" 2>"$work/err.$name" || {
    echo "$name failed:"; tail -5 "$work/err.$name"; exit 1; }
  local wall
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.$name")
  secs[$name]=$(awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }' <<<"$wall")
  rss[$name]=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.$name")
  printf '%-22s %8.1f s  %7d MiB peak RSS\n' "$name" "${secs[$name]}" $((rss[$name] / 1024))
}

rm -rf "$work/stow" "$work/restic" "$work/restic-cache" "$work/r-stow" "$work/r-restic"
"$stowctl" repo init --repo "file://$work/stow" >/dev/null
restic init --repository-version 2 -r "$work/restic" >/dev/null

timed stowage-full "$stowctl" backup create "$work/dataset" --repo "file://$work/stow" --name bench
timed restic-full restic -r "$work/restic" backup --compression auto "$work/dataset"
stow_full=$(du -sb "$work/stow" | cut -f1); restic_full=$(du -sb "$work/restic" | cut -f1)

start
pg "$pgbin/pgbench" -h "$work/sock" -c 4 -t "$txns" -n postgres | grep -E '^tps' || true
sql CHECKPOINT
stop

timed stowage-incremental "$stowctl" backup create "$work/dataset" --repo "file://$work/stow" --name bench
timed restic-incremental restic -r "$work/restic" backup --compression auto "$work/dataset"
stow_inc=$(( $(du -sb "$work/stow" | cut -f1) - stow_full )); restic_inc=$(( $(du -sb "$work/restic" | cut -f1) - restic_full ))

timed stowage-restore "$stowctl" restore latest --to "$work/r-stow" --repo "file://$work/stow"
# stowctl restore ends with the restored files on the disk (syncfs); restic
# does not flush, so sync -f follows it within the timed run.
timed restic-restore sh -c 'restic -r "$1" restore latest --target "$2" && sync -f "$2"' sh "$work/restic" "$work/r-restic"

# Both restores must equal the dataset.
diff -r "$work/dataset" "$work/r-stow" >/dev/null || { echo "stowage restore differs from the dataset"; exit 1; }
diff -r "$work/dataset" "$work/r-restic$work/dataset" >/dev/null || { echo "restic restore differs from the dataset"; exit 1; }

echo
printf '%-12s %10s %10s %8s %12s %12s\n' phase stowage restic speedup stowage-RSS restic-RSS
for p in full incremental restore; do
  printf '%-12s %9.1fs %9.1fs %7.2fx %9d MiB %9d MiB\n' "$p" "${secs[stowage-$p]}" "${secs[restic-$p]}" \
    "$(awk "BEGIN { print ${secs[restic-$p]} / ${secs[stowage-$p]} }")" \
    $((rss[stowage-$p] / 1024)) $((rss[restic-$p] / 1024))
done
printf 'stored after full:        stowage %s MiB, restic %s MiB\n' $((stow_full >> 20)) $((restic_full >> 20))
printf 'added by incremental:     stowage %s MiB, restic %s MiB\n' $((stow_inc >> 20)) $((restic_inc >> 20))
echo "targets: full >= 3x, incremental >= 5x, restore >= 2x"
