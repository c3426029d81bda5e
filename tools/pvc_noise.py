#!/usr/bin/env python3
"""PVC detection of the DSP stage's classifier on MIT-BIH and its noise-stress
mixtures: every beat `pvc_dump` calls a PVC against the reference `V` beats (150 ms),
per folder, tuning and check halves of the QRS split. All beats count (no quality
gate, unlike `mitdb_pvc_detection`), so noise the QRS detector takes for beats counts.

  cargo run --release -p ecg-dsp --example nst_records -- /tmp/nst    # the mixtures
  cargo build --release -p ecg-dsp --example pvc_dump
  tools/pvc_noise.py target/release/examples/pvc_dump $D/mitdb /tmp/nst/em_12 /tmp/nst/em_6 ...
Needs wfdb.
"""
import glob
import os
import subprocess
import sys

import wfdb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from ec57 import QRS_TUNING as TUNING, match_beats  # noqa: E402


def main(exe, folders):
    for folder in folders:
        tot = {True: [0, 0, 0], False: [0, 0, 0]}  # reference V, called PVCs, matched
        for hea in sorted(glob.glob(os.path.join(folder, "*.hea"))):
            rec = hea[:-4]
            name = os.path.basename(rec)
            if not os.path.exists(rec + ".atr"):
                continue
            out = subprocess.run([exe, rec], capture_output=True, text=True, check=True).stdout
            fs = float(out.split("\n")[0].split(",")[1])
            det = [int(line.split(",")[1]) for line in out.split("\n")
                   if line.startswith("beat,") and line.endswith(",1")]
            ann = wfdb.rdann(rec, "atr")
            ref = [int(s) for s, y in zip(ann.sample, ann.symbol) if y == "V"]
            tp = match_beats(ref, det, int(0.15 * fs))[0]
            t = tot[name in TUNING]
            t[0] += len(ref)
            t[1] += len(det)
            t[2] += tp
        for half, label in ((True, "tuning"), (False, "check")):
            r, d, tp = tot[half]
            print(f"{folder} {label}: reference V {r}, called {d}, Se {100 * tp / max(r, 1):.1f} %, "
                  f"+P {100 * tp / max(d, 1):.1f} %")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
