#!/usr/bin/env bash
# Installs what is needed, builds Stowage with AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs every test (unit, integration, e2e with a
# real dockerd, conformance against a real Ceph radosgw). Exit status is ctest's.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
build=${STOWAGE_TEST_BUILD_DIR:-build/asan}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSTOWAGE_SANITIZE=ON
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 900 -j"$(nproc)" "$@"
