#!/usr/bin/env python3
"""Random excerpts of continuous AF test streams, for `eval af-episodes` at a record's ends.

`tools/af_splice.py`'s streams start and end with a run of non-AF records, so they say
nothing about how a record's first and last seconds are scored. This cuts excerpts
whose ends fall wherever a fixed seed puts them: from each record of IN_DIR (WFDB with
`.atr` rhythm annotations, e.g. the spliced streams), four excerpts of 5-10 min at
random offsets (seed 37). An excerpt starts or ends inside an AF run about as often as
the stream is in AF there, and now and then a few seconds from a change of rhythm: the
cases a rule for the ends can win or lose. Each excerpt's `.atr` opens with the rhythm
in effect at its first sample, then the changes inside it.

Usage:
  tools/af_crop.py IN_DIR OUT_DIR        # needs numpy and wfdb
  cardiostream eval af-episodes --db OUT_DIR --out /tmp/crops.csv
"""
import glob
import os
import random
import sys

import numpy as np
import wfdb

PER_RECORD = 4
MIN_S, MAX_S = 300, 600


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: tools/af_crop.py IN_DIR OUT_DIR")
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(37)
    for hea in sorted(glob.glob(os.path.join(src, "*.hea"))):
        name = os.path.basename(hea)[:-4]
        if not os.path.exists(os.path.join(src, name + ".atr")):
            continue
        rec = wfdb.rdrecord(os.path.join(src, name))
        ann = wfdb.rdann(os.path.join(src, name), "atr")
        fs = int(rec.fs)
        rhythm = [(s, a) for s, a in zip(ann.sample, ann.aux_note) if a.startswith("(")]
        x = rec.p_signal[:, 0]
        for k in range(PER_RECORD):
            n = int(rng.uniform(MIN_S, MAX_S) * fs)
            if n >= len(x):
                continue
            start = rng.randrange(0, len(x) - n)
            before = [a for s, a in rhythm if s <= start]
            starts, aux = [0], [before[-1] if before else "(N"]
            for s, a in rhythm:
                if start < s < start + n:
                    starts.append(s - start)
                    aux.append(a)
            crop = f"{name}c{k}"
            wfdb.wrsamp(crop, fs=fs, units=["mV"], sig_name=["ECG"],
                        p_signal=x[start:start + n, None], fmt=["16"], adc_gain=[1000.0],
                        baseline=[0], write_dir=out)
            wfdb.wrann(crop, "atr", np.array(starts), symbol=["+"] * len(starts),
                       aux_note=aux, write_dir=out)
            print(f"{crop}: {start / fs:.1f}-{(start + n) / fs:.1f} s of {name}, "
                  f"starts {aux[0]}, ends {aux[-1]}")


if __name__ == "__main__":
    main()
