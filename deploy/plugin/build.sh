#!/usr/bin/env bash
# Builds Stowage's managed (v2) Docker plugin from already-built binaries and
# registers it with `docker plugin create`. No registry, no downloads: the
# rootfs holds stowaged, stowctl, every shared library ldd lists for them and
# the dynamic loader, nothing else.
#
# Usage: deploy/plugin/build.sh [--bin-dir DIR] [--out DIR] [--name NAME] [--no-create]
#   --bin-dir DIR  where stowaged and stowctl are (default: build/release/bin)
#   --out DIR      plugin directory to (re)create: DIR/config.json, DIR/rootfs
#                  (default: build/plugin)
#   --name NAME    plugin name for `docker plugin create` (default: stowage)
#   --no-create    only build the directory
# The docker client is $DOCKER (default: docker); DOCKER_HOST is honoured.
# Then: mkdir -p /var/lib/stowage-plugin && docker plugin enable NAME
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin_dir=$here/../../build/release/bin
out=$here/../../build/plugin
name=stowage
create=1
while (($#)); do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --no-create) create=0; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for b in stowaged stowctl; do
  [[ -x $bin_dir/$b ]] || { echo "build.sh: $bin_dir/$b not found; build the stowaged and stowctl targets first" >&2; exit 1; }
done

rm -rf "$out"
rootfs=$out/rootfs
mkdir -p "$rootfs/usr/sbin" "$rootfs/var/lib/stowage" "$rootfs/run/docker/plugins" "$rootfs/tmp" "$rootfs/etc"
chmod 1777 "$rootfs/tmp"
install -m 0755 "$bin_dir/stowaged" "$bin_dir/stowctl" "$rootfs/usr/sbin/"

# Every library at the path ldd resolved it to (the loader finds them there
# without an ld.so.cache), plus the loader itself.
libs=$(ldd "$bin_dir/stowaged" "$bin_dir/stowctl" | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | sort -u)
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
# getpwnam/getgrnam (volume options name no users today, but libc may look).
printf 'root:x:0:0:root:/:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"

cp "$here/config.json" "$out/config.json"
if grep -q 'libasan' <<<"$libs"; then
  # A sanitizer build (CI): LeakSanitizer needs ptrace, which a plugin lacks,
  # and would turn every clean exit into a failure.
  sed -i 's#^  "env": \[#  "env": [\n    {"name": "ASAN_OPTIONS", "description": "sanitizer build", "value": "detect_leaks=0"},#' "$out/config.json"
fi
echo "build.sh: plugin directory $out ($(du -sh "$rootfs" | cut -f1) rootfs)"

if ((create)); then
  ${DOCKER:-docker} plugin create "$name" "$out"
fi
