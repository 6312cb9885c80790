#!/usr/bin/env bash
# Set up and run every check: installs what is missing, then formatting,
# clippy and the whole test suite (unit, property and integration tests
# against real memcached processes the tests start themselves).
# One cargo profile (release) serves tests, clippy and runs, so the slow
# native dependencies compile once; CARGO_TARGET_DIR may point outside the
# clone to keep them between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export PROPTEST_CASES="${PROPTEST_CASES:-256}"
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release --all-targets
