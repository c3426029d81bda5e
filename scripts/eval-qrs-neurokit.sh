#!/usr/bin/env bash
# QRS detection: cardiostream's streaming detector and NeuroKit2's default detector on
# lead 0 of the shared mitdb records and the nstdb records 118e24/e12/e00, scored the
# same way (150 ms, EC57 VF exclusion and whole records), side by side.
#
#   scripts/eval-qrs-neurokit.sh [--db DIR --records A,B]   (default: shared mitdb + nstdb)
#
# Creates .cardiostream/neurokit-venv (gitignored) with neurokit2, numpy, pandas and wfdb
# on first use; cardiostream's beats are written to .cardiostream/eval-qrs/<set>/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/.cardiostream/neurokit-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import neurokit2, wfdb' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q neurokit2 numpy pandas wfdb
fi
cargo build -q --bin cardiostream
bin="$root/target/debug/cardiostream"

run() { # name db [records]
    local name=$1 db=$2 records=${3:-}
    local out="$root/.cardiostream/eval-qrs/$name"
    echo "== $name: cardiostream eval qrs --db $db ${records:+--records $records} --out $out"
    "$bin" eval qrs --db "$db" ${records:+--records "$records"} --out "$out"
    echo "== $name: cardiostream and NeuroKit2 side by side"
    "$venv/bin/python" "$root/scripts/eval-qrs-neurokit.py" --db "$db" \
        --cardiostream "$out" ${records:+--records "$records"}
}

if [[ "${1:-}" == "--db" ]]; then
    run custom "$2" "${4:-}"
else
    data="$(../shared/data/unpack | tail -n 1)"
    run mitdb "$data/mitdb"
    run nstdb "$data/nstdb" 118e24,118e12,118e00
fi
