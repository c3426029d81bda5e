#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of every decoder that takes
# outside bytes: docs/fuzzing.md. The targets live in fuzz/ (their own workspace).
#
#   scripts/fuzz.sh --short               # every target ~5 s: the test command's smoke run
#   scripts/fuzz.sh --runs 10000000       # the campaigns: 10 million inputs per target
#   scripts/fuzz.sh --runs N TARGET...    # some targets only
#   scripts/fuzz.sh --seconds S [TARGET...]
#
# Options: --rss MB (libFuzzer -rss_limit_mb, default 2048: a run that grows past it
# fails), --max-len BYTES (longest input, default 4096), --jobs N (parallel libFuzzer
# workers per target, default 1).
# Only the stable toolchain is installed: cargo-fuzz's nightly flags
# (-Zsanitizer=..., -Cpasses=sancov-module) are accepted with RUSTC_BOOTSTRAP=1. No
# sanitizer runtime is linked (-s none): the project forbids unsafe code, and a panic,
# an overflow (overflow checks are on: -a) or the RSS limit is what is looked for.
# Long runs go under nice -n 10. Logs: fuzz/logs/TARGET.log; the corpus grows in
# fuzz/corpus/TARGET (not committed), seeded from fuzz/seeds/TARGET (committed).
# A crash leaves its input in fuzz/artifacts/TARGET/ and exits non-zero.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

TARGETS=(codec wfdb_header wfdb_record wfdb_annotations mllp api_json)
mode=seconds
amount=5
rss=2048
max_len=4096
jobs=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --short) mode=seconds; amount=5 ;;
    --runs) mode=runs; amount=$2; shift ;;
    --seconds) mode=seconds; amount=$2; shift ;;
    --rss) rss=$2; shift ;;
    --max-len) max_len=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[ ${#targets[@]} -eq 0 ] && targets=("${TARGETS[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install, ~2 minutes, once)" >&2
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
export RUSTC_BOOTSTRAP=1
build_start=$(date +%s)
# cargo fuzz build takes one target or all of them.
if [ ${#targets[@]} -eq 1 ]; then
  nice -n 10 cargo fuzz build -O -a -s none "${targets[0]}"
else
  nice -n 10 cargo fuzz build -O -a -s none
fi
echo "fuzz: built in $(( $(date +%s) - build_start )) s" >&2

mkdir -p logs
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  if [ "$mode" = runs ]; then
    limit=(-runs="$amount")
  else
    limit=(-max_total_time="$amount")
  fi
  # -jobs (even 1) makes libFuzzer run children logging to ./fuzz-N.log: only then.
  par=()
  if [ "$jobs" -gt 1 ]; then
    par=(-jobs="$jobs" -workers="$jobs")
  fi
  start=$(date +%s)
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb bounds memory;
  # -max_len 4096 holds a header with several KB of samples, or an API body.
  if nice -n 10 cargo fuzz run -O -a -s none "$t" "corpus/$t" "seeds/$t" -- \
      "${limit[@]}" -rss_limit_mb="$rss" -malloc_limit_mb="$rss" -timeout=10 \
      -max_len="$max_len" -print_final_stats=1 "${par[@]}" \
      >"logs/$t.log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  secs=$(( $(date +%s) - start ))
  execs=$(grep -ho 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | awk '{s+=$2} END{print s+0}')
  rss_mb=$(grep -ho 'stat::peak_rss_mb: *[0-9]*' "logs/$t.log" | awk '{if($2>m)m=$2} END{print m+0}')
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -n 1 | awk '{print $2}')
  echo "fuzz: $t: $result: $execs inputs in $secs s, peak RSS $rss_mb MB (limit $rss), coverage ${cov:-?} edges, corpus $(ls "corpus/$t" | wc -l) files" >&2
  if [ "$result" = FAILED ]; then
    grep -m 5 -E 'panicked|ERROR|SUMMARY|Test unit written' "logs/$t.log" >&2 || true
  fi
done
exit $status
