#!/usr/bin/env bash
# The capacity ratio of `stages_bench` counted in instructions instead of CPU time:
# exact, and the same on a busy or a quiet machine, where the timed ratio moves by a
# quarter from run to run on shared 2-core machines. For A/B comparisons of changes
# to the per-stream work; it does not see cache misses (a change that only makes
# state smaller or more local shows in the timed runs, not here).
#
#   scripts/stages-instructions.sh [PATIENTS]     # default 20 (12-lead 500 Hz, 60 s)
#
# Needs valgrind (Debian: apt-get install valgrind) and, for the models' input
# building to be counted, CARDIOSTREAM_ORT_LIB (as stages_bench). Prints the
# instructions of the bare DSP chain (StreamDsp::push called by the bench's bare
# loop), of the sequencer and the analyzer (and of the lethal detector inside it),
# and the ratio bare / (sequencer + analyzer).
set -euo pipefail
cd "$(dirname "$0")/.."
patients="${1:-20}"
if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  echo "stages-instructions: valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)" >&2
  exit 2
fi
cargo build --release -p ecg-pipeline --example stages_bench >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
  "$target_dir/release/examples/stages_bench" "$patients" 1 1 >"$out/bench.txt" 2>"$out/valgrind.txt"
grep -E '^digest' "$out/bench.txt" || true
callgrind_annotate --inclusive=yes --tree=caller "$out/cg" >"$out/tree.txt" 2>/dev/null
callgrind_annotate --inclusive=yes "$out/cg" >"$out/flat.txt" 2>/dev/null
python3 - "$out/tree.txt" "$out/flat.txt" "$patients" <<'PY'
import re, sys
tree, flat, patients = open(sys.argv[1]).read(), open(sys.argv[2]).read(), int(sys.argv[3])
num = lambda s: int(s.replace(",", ""))
def inclusive(name):
    m = re.search(r"^\s*([\d,]+) \([^)]*\)\s+\S*:" + re.escape(name) + r"(?: \[|$)", flat, re.M)
    if not m:
        sys.exit(f"stages-instructions: {name} not found in the profile")
    return num(m.group(1))
# StreamDsp::push as called by the bench's own bare loop (not by the analyzer): in the
# caller tree, the "<" line of stages_bench::main in the block of StreamDsp::push.
bare = None
for block in tree.split("\n\n"):
    lines = block.strip().splitlines()
    if lines and re.search(r"\*\s+\S*:ecg_dsp::stream::StreamDsp::push(?: \[|$)", lines[-1]):
        for line in lines[:-1]:
            if ":stages_bench::main (" in line:
                bare = num(line.split()[0])
if bare is None:
    sys.exit("stages-instructions: the bare loop's StreamDsp::push not found in the profile")
seq = inclusive("ecg_pipeline::sequencer::Sequencer::process")
ana = inclusive("ecg_pipeline::shards::Shards::process")
lethal = inclusive("ecg_dsp::lethal::LethalDetector::push_ecg")
stages = seq + ana
per = lambda x: x / (patients * 60)
print(f"{patients} streams x 60 s, 12 leads at 500 Hz; instructions per stream-second")
print(f"bare DSP chain   {per(bare):12,.0f}")
print(f"sequencer        {per(seq):12,.0f}")
print(f"analyzer         {per(ana):12,.0f}   (of which the lethal detector {per(lethal):,.0f})")
print(f"stages           {per(stages):12,.0f}")
print(f"ratio bare / stages (instructions) {bare / stages:.3f}")
PY
