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
if ! [[ "$patients" =~ ^[1-9][0-9]*$ ]]; then
  echo "stages-instructions: PATIENTS must be a positive whole number, not '$patients'" >&2
  exit 2
fi
if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  echo "stages-instructions: valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)" >&2
  exit 2
fi
if ! command -v python3 >/dev/null; then
  echo "stages-instructions: python3 is needed to read the profile" >&2
  exit 2
fi
cargo build --release -p ecg-pipeline --example stages_bench >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
if ! valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
  "$target_dir/release/examples/stages_bench" "$patients" 1 1 >"$out/bench.txt" 2>"$out/valgrind.txt"; then
  echo "stages-instructions: stages_bench under valgrind failed:" >&2
  tail -20 "$out/valgrind.txt" >&2
  exit 1
fi
grep -E '^digest' "$out/bench.txt" || true
for mode in tree flat; do
  args=(--inclusive=yes)
  [[ $mode == tree ]] && args+=(--tree=caller)
  if ! callgrind_annotate "${args[@]}" "$out/cg" >"$out/$mode.txt" 2>"$out/annotate.txt"; then
    echo "stages-instructions: callgrind_annotate failed:" >&2
    tail -5 "$out/annotate.txt" >&2
    exit 1
  fi
done
python3 - "$out/tree.txt" "$out/flat.txt" "$patients" <<'PY'
import re, sys
tree, flat, patients = open(sys.argv[1]).read(), open(sys.argv[2]).read(), int(sys.argv[3])
num = lambda s: int(s.replace(",", ""))
def inclusive(name):
    m = re.search(r"^\s*([\d,]+) \([^)]*\)\s+.*?:" + re.escape(name) + r"(?: \[|$)", flat, re.M)
    if not m:
        sys.exit(f"stages-instructions: {name} not found in the profile")
    return num(m.group(1))
# StreamDsp::push as called by the bench's own bare loop (not by the analyzer): in the
# caller tree, the "<" lines of the bench's functions (main, and its loop if it is not
# inlined) in the block of StreamDsp::push.
bare = None
for block in tree.split("\n\n"):
    lines = block.strip().splitlines()
    if lines and re.search(r"\*\s+.*?:ecg_dsp::stream::StreamDsp::push(?: \[|$)", lines[-1]):
        callers = [l for l in lines[:-1] if re.search(r":stages_bench::\w+ \(", l)]
        if callers:
            bare = sum(num(l.split()[0]) for l in callers)
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
