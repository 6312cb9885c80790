#!/usr/bin/env bash
# Install the Debian packages rend's runs and tests use, if any is missing:
# memcached (L1, and the reference in tests), libclang-dev (the RocksDB
# build), libmemcached-tools (memccapable, memcslap), nutcracker, and fontconfig
# with a font for the tools' latency plots, and systemd (systemd-analyze checks
# the example unit in fixtures/).
set -euo pipefail
want=(memcached libclang-dev libmemcached-tools nutcracker pkg-config libfontconfig1-dev fonts-dejavu-core systemd)
missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
