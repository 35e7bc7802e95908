#!/usr/bin/env bash
# Builds the .deb with cpack from a configured and built tree and checks it
# without installing it on this machine: name, control fields (Depends from
# dpkg-shlibdeps), maintainer scripts, file list, that the extracted binaries
# run and document every flag, that the unit points at the packaged binary,
# and what the maintainer scripts ask of systemd with and without a running
# systemd (a stub systemctl records the calls; a private mount namespace
# fakes /run/systemd/system).
# Usage: deb_package_test.sh BUILD_DIR VERSION SOURCE_DIR INSTALL_PREFIX
set -euo pipefail
build=$1 version=$2 src=$3 prefix=$4
arch=$(dpkg --print-architecture)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/stowage-deb-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
expect_contains() {  # haystack needle what
  grep -qF -- "$2" <<<"$1" || fail "$3: '$2' missing in:"$'\n'"$1"
}

cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1 || {
  cat "$tmp/cpack.log" >&2
  fail "cpack"
  exit 1
}
deb=$tmp/out/stowage_${version}_${arch}.deb
[[ -f $deb ]] || { ls -R "$tmp/out" >&2; fail "no $deb"; exit 1; }

info=$(dpkg-deb -I "$deb")
expect_contains "$info" "Package: stowage" "control"
expect_contains "$info" "Version: $version" "control"
expect_contains "$info" "Architecture: $arch" "control"
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libc6 libcurl4 libssl3 libzstd1 liburing2 libstdc++6; do
  expect_contains "$depends" "$lib" "Depends"
done
# A sanitizer build links the sanitizer runtimes; shlibdeps must say so.
if ldd "$build/bin/stowaged" | grep -q libasan; then expect_contains "$depends" "libasan" "Depends"; fi

dpkg-deb -e "$deb" "$tmp/control"
for s in postinst prerm postrm; do
  [[ -x $tmp/control/$s ]] || fail "maintainer script $s missing or not executable"
  cmp -s "$tmp/control/$s" "$src/deploy/debian/$s" || fail "maintainer script $s differs from deploy/debian/$s"
done

files=$(dpkg-deb -c "$deb" | awk '{print $NF}')
for f in sbin/stowaged sbin/stowctl lib/systemd/system/stowaged.service share/doc/stowage/README.md \
  share/doc/stowage/OPERATIONS.md share/doc/stowage/PLUGIN.md share/doc/stowage/CONFIG.md \
  share/doc/stowage/stowage.json.example share/doc/stowage/examples/postgres/compose.yaml; do
  expect_contains "$files" ".$prefix/$f" "file list"
done
# The example config beside the real one: /etc/stowage for a /usr package (GNUInstallDirs), a conffile.
if [[ $prefix == /usr ]]; then etc=/etc; else etc=$prefix/etc; fi
expect_contains "$files" ".$etc/stowage/stowage.json.example" "file list"
[[ -f $tmp/control/conffiles ]] || fail "no conffiles in the control archive"
expect_contains "$(cat "$tmp/control/conffiles" 2>/dev/null)" "$etc/stowage/stowage.json.example" "conffiles"

dpkg-deb -x "$deb" "$tmp/root"
root=$tmp/root$prefix
ver_out=$("$root/sbin/stowaged" --version)
expect_contains "$ver_out" "$version" "stowaged --version"
help=$("$root/sbin/stowaged" --help)
for flag in --state-root --plugin-socket --admin-socket --docker-socket --threads --log-format --log-level \
  --version --help STOWAGE_STATE_ROOT STOWAGE_PLUGIN_SOCKET STOWAGE_ADMIN_SOCKET STOWAGE_DOCKER_SOCKET \
  STOWAGE_LOG_FORMAT STOWAGE_LOG_LEVEL --config --check-config --metrics-listen --repository --host-id \
  STOWAGE_REPOSITORY docs/CONFIG.md; do
  expect_contains "$help" "$flag" "stowaged --help"
done
# The packaged example passes the packaged binary's own check.
"$root/sbin/stowaged" --check-config --config "$tmp/root$etc/stowage/stowage.json.example" >/dev/null 2>&1 ||
  fail "stowaged --check-config rejects the packaged example"
help=$("$root/sbin/stowctl" --help)
for word in --admin-socket STOWAGE_ADMIN_SOCKET --version status volume snapshot repo backup restore forget prune check; do
  expect_contains "$help" "$word" "stowctl --help"
done
help=$("$root/sbin/stowctl" volume --help)
for word in ls inspect release; do expect_contains "$help" "$word" "stowctl volume --help"; done
help=$("$root/sbin/stowctl" snapshot --help)
for word in create ls rm rollback; do expect_contains "$help" "$word" "stowctl snapshot --help"; done

unit=$(cat "$root/lib/systemd/system/stowaged.service")
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' <<<"$unit")
[[ $exec_start == "$prefix/sbin/stowaged" ]] || fail "unit ExecStart=$exec_start, package has $prefix/sbin/stowaged"

# Maintainer scripts against a stub systemctl, in a private mount namespace
# where /run/systemd is a tmpfs we control. Each call prints what systemctl got.
mkdir -p "$tmp/stub"
cat >"$tmp/stub/systemctl" <<STUB
#!/bin/sh
echo "\$*" >>"$tmp/calls"
STUB
chmod +x "$tmp/stub/systemctl"
calls_for() {  # with_systemd(0|1) script args...
  local with=$1
  shift
  rm -f "$tmp/calls"
  unshare -m --propagation private sh -c '
    mount -t tmpfs tmpfs /run/systemd || exit 97
    [ "$0" = 1 ] && mkdir /run/systemd/system
    PATH=$1:$PATH; shift; exec "$@"' "$with" "$tmp/stub" "$tmp/control/$@" || fail "$* exited $?"
  [[ -f $tmp/calls ]] && tr '\n' ';' <"$tmp/calls"
  return 0
}
check_calls() {  # expected actual what
  [[ $2 == "$1" ]] || fail "$3: systemctl calls '$2', expected '$1'"
}
u=stowaged.service
check_calls "daemon-reload;enable $u;start $u;" "$(calls_for 1 postinst configure)" "postinst install, systemd"
check_calls "daemon-reload;try-restart $u;" "$(calls_for 1 postinst configure 0.0.1)" "postinst upgrade, systemd"
check_calls "stop $u;disable $u;" "$(calls_for 1 prerm remove)" "prerm remove, systemd"
check_calls "" "$(calls_for 1 prerm upgrade "$version")" "prerm upgrade, systemd"
check_calls "daemon-reload;" "$(calls_for 1 postrm remove)" "postrm remove, systemd"
check_calls "" "$(calls_for 1 postrm purge)" "postrm purge, systemd"
check_calls "enable $u;" "$(calls_for 0 postinst configure)" "postinst install, no systemd"
check_calls "" "$(calls_for 0 postinst configure 0.0.1)" "postinst upgrade, no systemd"
check_calls "disable $u;" "$(calls_for 0 prerm remove)" "prerm remove, no systemd"
check_calls "" "$(calls_for 0 postrm remove)" "postrm remove, no systemd"

if ((fails)); then
  echo "deb_package_test: $fails failure(s)" >&2
  exit 1
fi
echo "deb_package_test: $(basename "$deb") OK ($(du -h "$deb" | cut -f1)); Depends: $depends"
