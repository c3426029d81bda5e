#!/usr/bin/env bash
# The chaos scenarios (docs/chaos.md), long versions: each ends with a ledger of what
# was lost and who was paged twice (the "chaos ...:" lines).
#
#   scripts/chaos.sh            # long versions of all five scenarios (~25 minutes)
#   scripts/chaos.sh --short    # the test command's versions (~6 minutes)
#   CHAOS_SEED=7 KILL_TEST_SEED=7 scripts/chaos.sh   # other random kill moments
#
# Needs what the test command installs: tansu (broker restarts, pipeline SIGKILLs),
# PostgreSQL server binaries (a private server per scenario), root for the tmpfs
# whose disk is filled, and the ONNX Runtime library for the pipeline processes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "${1:-}" != --short ]; then
  export CHAOS_LONG=1 KILL_TEST_KILLS=${KILL_TEST_KILLS:-50}
fi
scripts/setup-onnxruntime.sh >/dev/null
if [ -z "${CARDIOSTREAM_TEST_PG:-}" ] && url=$(scripts/setup/postgres.sh); then
  export CARDIOSTREAM_TEST_PG=$url
fi
log=$(mktemp -d)/chaos.log
nice -n 10 cargo test --locked \
  --test chaos_alerts --test chaos_broker --test kill -- --nocapture --test-threads 1 --include-ignored \
  2>&1 | tee "$log" | grep -E '^(chaos |kills: |test |round |kill |restart )' || true
grep -q 'test result: ok' "$log" && ! grep -q 'test result: FAILED' "$log"
