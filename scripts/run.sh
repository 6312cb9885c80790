#!/usr/bin/env bash
# Set up and start the proxy: installs what is missing, builds, and runs rend
# on 127.0.0.1:11211 with its own memcached. Extra arguments go to rend.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec cargo run --release --bin rend -- "$@"
