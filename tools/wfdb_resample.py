#!/usr/bin/env python3
"""WFDB records resampled to another rate, channels named as in the AF databases.

A stand-in for data not shared here: the MIT-BIH AF Database records at 250 Hz and the
Long-Term AF Database at 128 Hz, both with two leads named `ECG1` and `ECG2` (which
`eval af-episodes` streams as one unnamed lead). Each record's signals are resampled
with a polyphase filter (scipy's `resample_poly`), written in format 212 at 200 adu/mV,
and its `.atr` annotations (beats and rhythm) are moved to the nearest sample at the
new rate.

Usage:
  tools/wfdb_resample.py IN_DIR OUT_DIR RATE RECORDS     # RECORDS: 201,203,217
  cardiostream eval af-episodes --db OUT_DIR --out /tmp/ep.csv
Needs numpy, scipy and wfdb.
"""
import os
import sys
from fractions import Fraction

import numpy as np
import wfdb
from scipy.signal import resample_poly


def main():
    if len(sys.argv) != 5:
        raise SystemExit("usage: tools/wfdb_resample.py IN_DIR OUT_DIR RATE RECORDS")
    src, out, rate, records = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    os.makedirs(out, exist_ok=True)
    for r in records.split(","):
        rec = wfdb.rdrecord(os.path.join(src, r))
        step = Fraction(rate, int(rec.fs))
        sig = resample_poly(rec.p_signal, step.numerator, step.denominator, axis=0)
        n = sig.shape[1]
        wfdb.wrsamp(r, fs=rate, units=rec.units, sig_name=[f"ECG{i + 1}" for i in range(n)],
                    p_signal=sig, fmt=["212"] * n, adc_gain=[200.0] * n, baseline=[0] * n,
                    write_dir=out)
        ann = wfdb.rdann(os.path.join(src, r), "atr")
        at = np.minimum(np.round(ann.sample * rate / rec.fs).astype(int), sig.shape[0] - 1)
        wfdb.wrann(r, "atr", at, symbol=ann.symbol, aux_note=ann.aux_note, fs=rate,
                   write_dir=out)
        print(f"{r}: {rec.fs:g} -> {rate} Hz, {sig.shape[0]} samples")


if __name__ == "__main__":
    main()
