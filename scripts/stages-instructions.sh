#!/usr/bin/env bash
# The capacity ratio of `stages_bench` counted in instructions instead of CPU time:
# exact, and the same on a busy or a quiet machine, where the timed ratio moves by a
# quarter from run to run on shared 2-core machines. For A/B comparisons of changes
# to the per-stream work. Instructions do not see cache misses (a change that only
# makes state smaller or more local shows in the timed runs, not in them); `--cache`
# adds them, from valgrind's cache simulation, as estimated cycles.
#
#   scripts/stages-instructions.sh [--cache] [PATIENTS]   # default 20 (12-lead 500 Hz, 60 s)
#
# Needs valgrind (Debian: apt-get install valgrind) and, for the models' input
# building to be counted, CARDIOSTREAM_ORT_LIB (as stages_bench). Prints the
# instructions of the bare DSP chain (StreamDsp::push called by the bench's bare
# loop), of the sequencer and the analyzer (and of the lethal detector inside it),
# and the ratio bare / (sequencer + analyzer).
#
# With --cache (about ten times slower; use 100 streams or more, so that their state
# does not fit the simulated caches as it never does in production): the caches of
# these machines' cores are simulated (L1d 48 KiB, L1i 32 KiB, and their 2 MiB L2 as
# the last level), and each part's cycles are estimated as callgrind's cycle estimate
# does, instructions + 10 x first-level misses + 100 x last-level misses. Printed for
# the bare chain as the bench's `bare` runs it (one stream after another, its state
# warm) and as `bare_interleaved` runs it (every stream's state kept, frames in the
# order the stages read them), with both ratios. An estimate, not a measurement: it is
# for A/B comparisons of state layout, as the instructions are of work done.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=0
if [[ "${1:-}" == "--cache" ]]; then
  cache=1
  shift
fi
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
vg=(--tool=callgrind --callgrind-out-file="$out/cg")
show=(--show=Ir)
if ((cache)); then
  vg+=(--cache-sim=yes --I1=32768,8,64 --D1=49152,12,64 --LL=2097152,16,64)
  show=(--show=Ir,I1mr,D1mr,D1mw,ILmr,DLmr,DLmw)
fi
if ! valgrind "${vg[@]}" \
  "$target_dir/release/examples/stages_bench" "$patients" 1 1 >"$out/bench.txt" 2>"$out/valgrind.txt"; then
  echo "stages-instructions: stages_bench under valgrind failed:" >&2
  tail -20 "$out/valgrind.txt" >&2
  exit 1
fi
grep -E '^digest' "$out/bench.txt" || true
for mode in tree flat; do
  args=(--inclusive=yes "${show[@]}")
  [[ $mode == tree ]] && args+=(--tree=caller)
  if ! callgrind_annotate "${args[@]}" "$out/cg" >"$out/$mode.txt" 2>"$out/annotate.txt"; then
    echo "stages-instructions: callgrind_annotate failed:" >&2
    tail -5 "$out/annotate.txt" >&2
    exit 1
  fi
done
python3 - "$out/tree.txt" "$out/flat.txt" "$patients" "$cache" <<'PY'
import re, sys
tree, flat = open(sys.argv[1]).read(), open(sys.argv[2]).read()
patients, cache = int(sys.argv[3]), sys.argv[4] == "1"

def counts(line):
    """The event columns of a callgrind_annotate line ('.' is zero), in --show order."""
    vals = []
    for tok in re.sub(r"\(\s*[\d.]+%\)", " ", line).split():
        if re.fullmatch(r"[\d,]+", tok):
            vals.append(int(tok.replace(",", "")))
        elif tok == ".":
            vals.append(0)
        else:
            break
    return vals

def inclusive(name):
    m = re.search(r"^(.*?:" + re.escape(name) + r")(?: \[|$)", flat, re.M)
    if not m:
        sys.exit(f"stages-instructions: {name} not found in the profile")
    return counts(m.group(1))

def bare_loop(which):
    """StreamDsp::push as called by the bench's functions selected by `which` (in the
    caller tree, the "<" lines of that block), summed column by column."""
    for block in tree.split("\n\n"):
        lines = block.strip().splitlines()
        if lines and re.search(r"\*\s+.*?:ecg_dsp::stream::StreamDsp::push(?: \[|$)", lines[-1]):
            callers = [l for l in lines[:-1] if re.search(which, l)]
            if callers:
                return [sum(c) for c in zip(*(counts(l) for l in callers))]
    return None

# The bench's loop `bare` (or main, were it inlined); not `bare_interleaved`, the same
# chain run a second time in the stages' order (the same instructions, other misses).
bare = bare_loop(r":stages_bench::(?!bare_interleaved)\w+ \(")
if bare is None:
    sys.exit("stages-instructions: the bare loop's StreamDsp::push not found in the profile")
seq = inclusive("ecg_pipeline::sequencer::Sequencer::process")
ana = inclusive("ecg_pipeline::shards::Shards::process")
lethal = inclusive("ecg_dsp::lethal::LethalDetector::push_ecg")
stages = [a + b for a, b in zip(seq, ana)]
per = lambda x: x / (patients * 60)
print(f"{patients} streams x 60 s, 12 leads at 500 Hz; instructions per stream-second")
print(f"bare DSP chain   {per(bare[0]):12,.0f}")
print(f"sequencer        {per(seq[0]):12,.0f}")
print(f"analyzer         {per(ana[0]):12,.0f}   (of which the lethal detector {per(lethal[0]):,.0f})")
print(f"stages           {per(stages[0]):12,.0f}")
print(f"ratio bare / stages (instructions) {bare[0] / stages[0]:.3f}")
if cache:
    inter = bare_loop(r":stages_bench::bare_interleaved \(")
    if inter is None:
        sys.exit("stages-instructions: bare_interleaved's StreamDsp::push not found in the profile")
    # Ir, I1mr, D1mr, D1mw, ILmr, DLmr, DLmw -> estimated cycles.
    est = lambda c: c[0] + 10 * (c[1] + c[2] + c[3]) + 100 * (c[4] + c[5] + c[6])
    ll = lambda c: c[4] + c[5] + c[6]
    print("with the simulated caches: estimated cycles (last-level misses) per stream-second")
    for name, c in [("bare, warm", bare), ("bare, interleaved", inter), ("sequencer", seq),
                    ("analyzer", ana), ("  lethal detector", lethal), ("stages", stages)]:
        print(f"{name:<18} {per(est(c)):12,.0f}   ({per(ll(c)):,.0f})")
    print(f"ratio bare / stages (estimated cycles): warm {est(bare) / est(stages):.3f}, "
          f"interleaved {est(inter) / est(stages):.3f}")
PY
