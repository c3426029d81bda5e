#!/usr/bin/env python3
"""Lock-on in short noisy excerpts: per noise mixture, the excerpts whose detected beats'
median RR is below 0.8 x the reference beats' (the detector took a rhythm of beats and
artefacts), and the false and missed beats they carry, against all excerpts'.

Reads the dumps of the noisy-excerpt test:
  QRS_SPOT_DUMP_DIR=DIR cargo test --release -p ecg-dsp --test mitdb spot_check_noisy_excerpts
  tools/qrs_lockon.py DIR
Needs numpy.
"""
import glob
import json
import os
import sys

import numpy as np


def main(root):
    for mix in sorted(os.listdir(root)):
        files = sorted(glob.glob(os.path.join(root, mix, "*_noisy.json")))
        if not files:
            continue
        tot = [0, 0, 0]
        lock = [0, 0, 0]
        for f in files:
            d = json.load(open(f))
            near = np.array(d["near"]) - d["win"]
            found = np.array(d["found"])
            ratio = np.nan
            if len(near) > 2 and len(found) > 2:
                ratio = np.median(np.diff(found)) / np.median(np.diff(near))
            row = [1, d["fp"], d["fn"]]
            tot = [a + b for a, b in zip(tot, row)]
            if ratio < 0.8:
                lock = [a + b for a, b in zip(lock, row)]
        print(f"{mix}: {lock[0]} of {tot[0]} excerpts locked on (median RR < 0.8 x the "
              f"reference's), {lock[1]} of {tot[1]} false beats, {lock[2]} of {tot[2]} missed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
