#!/usr/bin/env bash
# Builds cardiostream and runs `cardiostream demo` on its embedded default.
# Arguments are passed to the demo, e.g.: scripts/demo.sh --duration 45 --alerts-json
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup-onnxruntime.sh
cargo build --release --locked --bin cardiostream >&2
exec target/release/cardiostream demo "$@"
