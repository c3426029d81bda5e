#!/usr/bin/env bash
# The test command: installs what the tests need, then runs the format check,
# clippy and the whole test suite. CI (.ci/run) runs exactly this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# ONNX Runtime (the shared library from the onnxruntime PyPI wheel).
scripts/setup-onnxruntime.sh

# tansu, a Kafka-compatible broker written in Rust, for the tests on a real broker
# (tests/broker.rs, docs/broker.md); they skip with a printed reason without it.
if ! command -v tansu >/dev/null 2>&1 && [ -z "${TANSU:-}" ]; then
  echo "test: installing tansu 0.6.0 (cargo install; takes ~15-20 minutes, once)" >&2
  cargo install tansu --version 0.6.0 --locked --features dynostore
fi
scripts/setup/chromium.sh # headless Chromium + chromedriver (apt) for tests/console.rs; skips when present
scripts/setup/prometheus.sh # prometheus + promtool (apt) for tests/ops.rs; skips when present

# A private PostgreSQL server for the alert store's tests (alerts/tests/service.rs,
# tests/deployables.rs); without it they print why and run on SQLite only.
if CARDIOSTREAM_TEST_PG=$(scripts/setup/postgres.sh); then
  export CARDIOSTREAM_TEST_PG
  echo "test: PostgreSQL for the alert store tests on 127.0.0.1:${CARDIOSTREAM_PG_PORT:-55432}" >&2
else
  unset CARDIOSTREAM_TEST_PG
  echo "test: no PostgreSQL server; the alert store tests run on SQLite only" >&2
fi

# Shared annotated ECG records, when ../shared is beside the project; tests that need
# them skip with a printed reason otherwise.
if [ -x ../shared/data/unpack ]; then
  CARDIOSTREAM_DATA=$(../shared/data/unpack)
  export CARDIOSTREAM_DATA
  echo "test: shared records in $CARDIOSTREAM_DATA" >&2
else
  echo "test: ../shared/data not found; tests on shared records will skip" >&2
fi

cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo test --locked --workspace
# OTLP trace export is an opt-in feature: its own build, its one test.
cargo test --locked --features otlp --test otlp
