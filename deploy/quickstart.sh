#!/usr/bin/env bash
# Installs what Stowage needs, builds it (Release), installs it under
# /usr/local, and starts stowaged on the embedded default: state in
# /var/lib/stowage, backups to the local repository /var/lib/stowage/repo
# (made here, and named in /etc/stowage/stowage.json unless that file
# exists already). Under systemd it installs and starts stowaged.service;
# elsewhere (containers, CI machines) it starts the daemon in the background
# with its log in /var/log/stowaged.log.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh --build-only
cmake -S . -B build/quickstart -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTOWAGE_WERROR=OFF -DSTOWAGE_BUILD_TESTS=OFF -DSTOWAGE_BUILD_BENCH=OFF
cmake --build build/quickstart -j"$(nproc)" --target stowaged stowctl
cmake --install build/quickstart --prefix /usr/local

# The embedded default repository. An existing config file is the
# operator's: it is left alone, whatever repository it names (or none).
repo=/var/lib/stowage/repo
config=/etc/stowage/stowage.json
if [[ ! -e $config ]]; then
  install -d -m 0755 /etc/stowage
  printf '{\n  "repository": {"url": "file://%s"}\n}\n' "$repo" >"$config"
  chmod 0600 "$config"
  echo "quickstart: wrote $config (backups to file://$repo)"
fi
default_repo=false
if grep -Eq "\"(file://)?$repo/?\"" "$config"; then
  default_repo=true
  if [[ ! -e $repo/config ]]; then
    mkdir -p /var/lib/stowage
    /usr/local/sbin/stowctl repo init --repo "file://$repo"
  fi
else
  echo "quickstart: $config names another repository (or none); $repo is not made"
fi

sock=/run/docker/plugins/stowage.sock
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  systemctl enable --now stowaged.service
  systemctl restart stowaged.service  # pick up a rebuilt binary
else
  if pid=$(pgrep -x stowaged); then
    echo "quickstart: stopping the running stowaged (pid $pid) to start the new build"
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  nohup /usr/local/sbin/stowaged --state-root /var/lib/stowage >>/var/log/stowaged.log 2>&1 &
fi

for _ in $(seq 100); do
  [[ -S $sock ]] && /usr/local/sbin/stowctl volume ls >/dev/null 2>&1 && break
  sleep 0.1
done
if ! /usr/local/sbin/stowctl volume ls >/dev/null 2>&1; then
  echo "quickstart: stowaged did not come up; see journalctl -u stowaged or /var/log/stowaged.log" >&2
  exit 1
fi
echo
echo "stowaged is running: Docker plugin socket $sock, state in /var/lib/stowage, config $config."
if $default_repo; then
  echo "Try:  docker volume create --driver stowage -o uid=1000 -o backup=@daily -o keep=daily:7 demo"
  echo "      stowctl volume ls; stowctl schedule ls"
  echo "      stowctl backup ls --repo $repo"
else
  echo "Try:  docker volume create --driver stowage -o uid=1000 demo"
  echo "      stowctl volume ls"
fi
