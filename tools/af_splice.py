#!/usr/bin/env python3
"""Continuous AF test streams spliced from CinC 2017 records, for `eval af-episodes`.

The shared MIT-BIH records hold only three with AF, and every rule of the AF episode
tracker was found by reading some of them. This writes an independent check: twelve
WFDB records (300 Hz, one lead named ECG, 14-26 min each) made by joining whole CinC
2017 records of the AF model's **held-out split** (SHA-256 of the name mod 5 == 0,
never trained or tuned on), in runs: 4-16 normal or other-rhythm records, then 3-9 AF
records (the last AF run may be shorter), and so on, ending with a non-AF run; noise
records (`~`) are left out. Each record's median is removed before joining. The `.atr`
file marks each run's start with a rhythm annotation, `(AFIB` or `(N`, so `eval
af-episodes` scores the streams as it scores MIT-BIH. The order is drawn with a fixed seed (2017): the same folder
gives the same streams.

What it cannot be: real AF onsets. Each junction is a change of patient (a step in
shape and size the filters see), the AF runs last 1.5-5 min, and there are no beat
annotations (with `--noise`, `eval af-episodes` measures the QRS amplitude that sets
the SNR at the beats its detector finds, and resamples the 360 Hz noise to 300 Hz). The
labels are the records' own, whole: an AF record is annotated AF from end to end,
and an "other rhythm" record, which may hold atrial flutter (AF for EC57), counts as
not AF.

Usage:
  tools/af_splice.py CINC2017_DIR OUT_DIR        # needs numpy and wfdb
  cardiostream eval af-episodes --db OUT_DIR --out /tmp/splice.csv
"""
import os
import random
import sys

import numpy as np
import wfdb

# The AF model's split, from its training script (numpy only at import).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "af-cnn"))
import train as cnn  # noqa: E402

STREAMS = 12


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: tools/af_splice.py CINC2017_DIR OUT_DIR")
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(src, "REFERENCE.csv")) as f:
        labels = dict(line.strip().split(",") for line in f if line.strip())
    held = [r for r in sorted(labels) if cnn.heldout(r)]
    rng = random.Random(2017)
    af = [r for r in held if labels[r] == "A"]
    other = [r for r in held if labels[r] in ("N", "O")]
    rng.shuffle(af)
    rng.shuffle(other)
    streams = [[] for _ in range(STREAMS)]
    ai = oi = k = 0
    while ai < len(af):
        s = streams[k % STREAMS]
        k += 1
        n = rng.randint(4, 16)
        s.append(("N", other[oi:oi + n]))
        oi += n
        n = rng.randint(3, 9)
        s.append(("A", af[ai:ai + n]))
        ai += n
    for i, s in enumerate(streams):
        n = rng.randint(4, 16)
        s.append(("N", other[oi:oi + n]))
        oi += n
        parts, starts, aux, t = [], [], [], 0
        for label, records in s:
            if not records:
                continue
            starts.append(t)
            aux.append("(AFIB" if label == "A" else "(N")
            for r in records:
                rec = wfdb.rdrecord(os.path.join(src, r))
                if rec.fs != 300:
                    raise SystemExit(f"{r}: {rec.fs} Hz, CinC 2017 records are 300 Hz")
                x = rec.p_signal[:, 0]
                parts.append(x - np.median(x))
                t += len(x)
        x = np.concatenate(parts)
        name = f"cs{i:02d}"
        wfdb.wrsamp(name, fs=300, units=["mV"], sig_name=["ECG"], p_signal=x[:, None],
                    fmt=["16"], adc_gain=[1000.0], baseline=[0], write_dir=out)
        wfdb.wrann(name, "atr", np.array(starts), symbol=["+"] * len(starts),
                   aux_note=aux, write_dir=out)
        n_af = sum(len(r) for label, r in s if label == "A")
        print(f"{name}: {t / 300 / 60:.1f} min, {n_af} AF records")


if __name__ == "__main__":
    main()
