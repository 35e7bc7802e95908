#!/usr/bin/env bash
# Installs every Debian 12 package Stowage needs to build, run and test.
# Usage: deploy/install-deps.sh [--build-only]
#   (default)     build tools, libraries, and every component the tests start
#   --build-only  build tools and libraries, plus docker.io when no Docker
#                 engine is installed (what deploy/quickstart.sh needs)
set -euo pipefail

build_pkgs=(
  cmake ninja-build g++ pkg-config git
  libboost-dev libboost-filesystem-dev libcurl4-openssl-dev nlohmann-json3-dev
  liburing-dev libzstd-dev libssl-dev libcli11-dev libxxhash-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
)
# Real components the tests start: a Docker engine, a busybox image source,
# PostgreSQL 15, Ceph radosgw (S3), restic (benchmark baseline), filesystems
# with reflink for snapshot tests; docker-compose (compose example) and
# dpkg-dev (dpkg-shlibdeps for the .deb).
test_pkgs=(
  docker.io busybox-static docker-compose dpkg-dev postgresql-15 postgresql-contrib
  ceph-mon ceph-osd radosgw restic
  xfsprogs btrfs-progs util-linux iproute2 curl zstd procps psmisc
)

pkgs=("${build_pkgs[@]}")
case "${1:-}" in
  --build-only)
    command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io)
    ;;
  "")
    pkgs+=("${test_pkgs[@]}")
    ;;
  *)
    echo "usage: $0 [--build-only]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
