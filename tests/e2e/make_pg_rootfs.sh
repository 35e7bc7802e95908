#!/usr/bin/env bash
# Builds a minimal PostgreSQL 15 root filesystem from this machine's Debian
# packages (postgresql-15, busybox-static), for `docker import` where no
# registry is reachable. Used by the e2e harness (pg_image.cc) and
# bench/migration/rto_bench.sh.
#
# Usage: make_pg_rootfs.sh ROOTDIR
#
# The image runs as user postgres (uid/gid 999, in its own /etc/passwd) with
# PGDATA=/var/lib/postgresql/data, where a volume is mounted:
#   docker run -u 999:999 -v VOL:/var/lib/postgresql/data IMAGE
# /usr/local/bin/pg-entrypoint initialises an empty PGDATA (initdb, trust auth,
# C locale) and then execs postgres listening on the unix socket in
# /var/run/postgresql only (no network). JIT is off (llvmjit is not copied).
# Exit status: 0, or 1 with the reason on stderr.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 ROOTDIR" >&2
  exit 2
fi
root=$1
pgbin=/usr/lib/postgresql/15/bin
pglib=/usr/lib/postgresql/15/lib
pgshare=/usr/share/postgresql/15
for need in "$pgbin/postgres" "$pgbin/initdb" "$pgbin/pgbench" "$pgbin/psql" "$pgshare/postgres.bki" /bin/busybox; do
  if [[ ! -e $need ]]; then
    echo "make_pg_rootfs: $need is missing (deploy/install-deps.sh installs postgresql-15 and busybox-static)" >&2
    exit 1
  fi
done
mkdir -p "$root"/{bin,etc,tmp,usr/local/bin,var/run/postgresql,var/lib/postgresql/data,usr/share}
chmod 1777 "$root/tmp"

# Server and client programs, extension modules (no JIT: llvmjit pulls in LLVM).
mkdir -p "$root$pgbin" "$root$pglib"
cp -a "$pgbin"/. "$root$pgbin"/
find "$pglib" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' -exec cp -a {} "$root$pglib"/ \;
mkdir -p "$root$pgshare"
cp -a "$pgshare"/. "$root$pgshare"/
# Debian builds with --with-system-tzdata.
cp -a /usr/share/zoneinfo "$root/usr/share/"

# Every shared library the programs and modules load, at the same path, plus
# the dynamic loader.
libs=$(find "$root$pgbin" "$root$pglib" -type f | while read -r f; do
  ldd "${f#"$root"}" 2>/dev/null || true
done | awk '/=> \// {print $3} /^\s*\/[^ ]*ld-linux/ {print $1}' | sort -u)
for lib in $libs /lib64/ld-linux-x86-64.so.2; do
  [[ -e $lib ]] || continue
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# Merged /usr as on Debian 12: /lib and /lib64 are links into /usr.
for d in lib lib64; do
  if [[ -d $root/$d && ! -L $root/$d && -d /usr/$d && -L /$d ]]; then
    mkdir -p "$root/usr/$d"
    cp -a "$root/$d"/. "$root/usr/$d"/
    rm -rf "${root:?}/$d"
    ln -s "usr/$d" "$root/$d"
  fi
done

# A shell and the usual tools.
cp /bin/busybox "$root/bin/busybox"
for applet in sh cat echo ls sleep stat id touch date wc sync dd test [ mkdir rm sha256sum head grep true false \
  env kill ps chmod chown tail; do
  ln -sf busybox "$root/bin/$applet"
done
for p in postgres initdb pg_ctl psql pgbench pg_isready pg_controldata; do
  ln -sf "$pgbin/$p" "$root/usr/local/bin/$p"
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
postgres:x:999:
EOF
chown 999:999 "$root/var/run/postgresql" "$root/var/lib/postgresql" "$root/var/lib/postgresql/data"
chmod 2775 "$root/var/run/postgresql"
# Docker copies the image directory's owner and mode onto an empty volume
# mounted there: PostgreSQL wants 0700.
chmod 0700 "$root/var/lib/postgresql/data"

cat >"$root/usr/local/bin/pg-entrypoint" <<'EOF'
#!/bin/sh
# Initialises an empty $PGDATA, then runs postgres in the foreground as PID 1.
# Extra arguments go to postgres (e.g. -c fsync=off).
set -e
export PATH=/usr/local/bin:/bin:/usr/lib/postgresql/15/bin
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U postgres --auth=trust --locale=C --encoding=UTF8 >/tmp/initdb.log 2>&1 \
    || { cat /tmp/initdb.log >&2; exit 1; }
  echo "pg-entrypoint: initialised $PGDATA"
fi
exec postgres -D "$PGDATA" -c listen_addresses= -c unix_socket_directories=/var/run/postgresql -c jit=off "$@"
EOF
chmod 0755 "$root/usr/local/bin/pg-entrypoint"
