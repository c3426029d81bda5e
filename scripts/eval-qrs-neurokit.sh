#!/usr/bin/env bash
# QRS detection: cardiostream's streaming beats (`eval qrs`: leads 0 and 1 where a record
# has two ECG leads, else lead 0) and NeuroKit2's default detector on lead 0 of the same
# records, scored by the same code (150 ms, EC57 VF exclusion and
# whole records), side by side, in one run:
#   - the shared mitdb records (tuning / held-out halves of dsp/tests/common/mod.rs),
#   - the nstdb records 118e24/e12/e00,
#   - every mitdb record with bw, ma and em noise at 12 and 6 dB SNR, mixed as
#     PhysioNet's nst does (written once as WFDB records by
#     `cargo run -p ecg-dsp --example nst_records`, the same mixtures the Rust tests
#     score), so both detectors read exactly the same samples.
# It ends with a summary table (EC57 gross Se / +P, tuning vs held-out).
#
#   scripts/eval-qrs-neurokit.sh [--db DIR --records A,B]   (default: all of the above)
#
# Creates .cardiostream/neurokit-venv (gitignored) with neurokit2 0.2.13, numpy, pandas
# and wfdb 4.3.1 on first use; cardiostream's beats are written to
# .cardiostream/eval-qrs/<set>/, the noisy records to .cardiostream/nst/<noise>_<snr>/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/.cardiostream/neurokit-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import neurokit2, wfdb' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q neurokit2==0.2.13 numpy pandas wfdb==4.3.1
fi
cargo build -q --bin cardiostream
bin="$root/target/debug/cardiostream"
# The tuning half, as QRS_TUNING in dsp/tests/common/mod.rs.
tuning="$(sed -n '/QRS_TUNING/,/];/p' dsp/tests/common/mod.rs | grep -o '"[0-9]*"' | tr -d '"' | paste -sd, -)"
summary="$(mktemp)"
trap 'rm -f "$summary"' EXIT

run() { # name db [records]
    local name=$1 db=$2 records=${3:-}
    local out="$root/.cardiostream/eval-qrs/$name"
    echo "== $name: cardiostream eval qrs --db $db ${records:+--records $records} --out $out"
    "$bin" eval qrs --db "$db" ${records:+--records "$records"} --out "$out"
    echo "== $name: cardiostream and NeuroKit2 side by side"
    "$venv/bin/python" "$root/scripts/eval-qrs-neurokit.py" --db "$db" \
        --cardiostream "$out" ${records:+--records "$records"} \
        --tuning "$tuning" --label "$name" | tee >(grep '^SUMMARY' >>"$summary") | grep -v '^SUMMARY'
}

if [[ "${1:-}" == "--db" ]]; then
    run custom "$2" "${4:-}"
else
    data="$(../shared/data/unpack | tail -n 1)"
    run mitdb "$data/mitdb"
    run nstdb "$data/nstdb" 118e24,118e12,118e00
    nst="$root/.cardiostream/nst"
    echo "== writing the noise-stress mixtures to $nst"
    cargo run -q -p ecg-dsp --example nst_records -- "$nst" "$data"
    for noise in bw ma em; do
        for snr in 12 6; do
            run "${noise}_${snr}" "$nst/${noise}_${snr}"
        done
    done
fi
sleep 1
echo
echo "== summary: EC57 (VF excluded), 150 ms, gross; cs = cardiostream (two leads where the record has them), nk = NeuroKit2 (lead 0)"
printf '%-8s %-9s %8s %8s %8s %8s\n' set half "cs Se%" "cs +P%" "nk Se%" "nk +P%"
awk '{printf "%-8s %-9s %8s %8s %8s %8s\n", $2, $3, $4, $5, $6, $7}' "$summary"
