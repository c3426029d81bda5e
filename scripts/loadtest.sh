#!/usr/bin/env bash
# The end-to-end load test (docs/performance.md): builds the cardiostream binary and
# the load-test tool in release mode, then runs the tool with the given options, e.g.
#   scripts/loadtest.sh --patients 1000,2000,3000
#   scripts/loadtest.sh --patients 2000,4000 --pipelines 2 --partitions 8
# Needs tansu (scripts/test.sh installs it) and ONNX Runtime
# (scripts/setup-onnxruntime.sh). Each step takes minutes and the whole machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup-onnxruntime.sh >&2
cargo build --release --locked -p cardiostream --bin cardiostream -p cardiostream-loadtest --bin cardiostream-loadtest
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target} # where target/loadtest.json is appended
exec target/release/cardiostream-loadtest "$@"
