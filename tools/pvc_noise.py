#!/usr/bin/env python3
"""PVC detection of the DSP stage's classifier on MIT-BIH and its noise-stress
mixtures: every beat `pvc_dump` calls a PVC against the reference `V` beats (150 ms),
per folder, tuning and check halves of the QRS split. All beats count (no quality
gate, unlike `mitdb_pvc_detection`), so noise the QRS detector takes for beats counts.

  cargo run --release -p ecg-dsp --example nst_records -- /tmp/nst    # the mixtures
  cargo build --release -p ecg-dsp --example pvc_dump
  tools/pvc_noise.py target/release/examples/pvc_dump $D/mitdb /tmp/nst/em_12 /tmp/nst/em_6 ...
Needs numpy and wfdb.
"""
import glob
import os
import subprocess
import sys

import numpy as np
import wfdb

TUNING = set("101 104 107 109 114 116 119 124 203 207 209 217 223".split())


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
            det = np.array([int(line.split(",")[1]) for line in out.split("\n")
                            if line.startswith("beat,") and line.endswith(",1")])
            ann = wfdb.rdann(rec, "atr")
            ref = [s for s, y in zip(ann.sample, ann.symbol) if y == "V"]
            tol, used, tp = int(0.15 * fs), set(), 0
            for r in ref:
                if len(det) == 0:
                    break
                i = int(np.argmin(np.abs(det - r)))
                if abs(det[i] - r) <= tol and i not in used:
                    used.add(i)
                    tp += 1
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
