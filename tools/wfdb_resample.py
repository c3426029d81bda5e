#!/usr/bin/env python3
"""WFDB records resampled to another rate, channels named as in the AF databases.

A stand-in for data not shared here: the MIT-BIH AF Database records at 250 Hz and the
Long-Term AF Database at 128 Hz, both with two leads named `ECG1` and `ECG2` (which
`eval af-episodes` streams as one unnamed lead). Each record's signals are resampled
with a polyphase filter (scipy's `resample_poly`), written in format 212 at 200 adu/mV,
and its `.atr` annotations (beats and rhythm) are moved to the nearest sample at the
new rate.

With `--concat NAME`, the records (repeated `--repeat` times) are written end to end as
one record NAME instead, for the length of those databases' records (10 h, 24 h): the
26 shared MIT-BIH records make 13 h. `--rhythm-only` keeps only the rhythm
annotations, as the AF Database's `.atr` has them.

Usage:
  tools/wfdb_resample.py IN_DIR OUT_DIR RATE RECORDS     # RECORDS: 201,203,217
  tools/wfdb_resample.py IN_DIR OUT_DIR RATE RECORDS --concat long [--repeat 2] [--rhythm-only]
  cardiostream eval af-episodes --db OUT_DIR --out /tmp/ep.csv
Needs numpy, scipy and wfdb.
"""
import argparse
import os
from fractions import Fraction

import numpy as np
import wfdb
from scipy.signal import resample_poly


def resampled(src, r, rate):
    """Record r's signals at `rate` and its annotations' samples, symbols and notes."""
    rec = wfdb.rdrecord(os.path.join(src, r))
    step = Fraction(rate, int(rec.fs))
    sig = resample_poly(rec.p_signal, step.numerator, step.denominator, axis=0)
    ann = wfdb.rdann(os.path.join(src, r), "atr")
    at = np.minimum(np.round(ann.sample * rate / rec.fs).astype(int), sig.shape[0] - 1)
    return rec, sig, at, list(ann.symbol), list(ann.aux_note)


def write(name, out, rate, units, sig, at, symbol, aux_note, rhythm_only):
    if rhythm_only:
        keep = [i for i, s in enumerate(symbol) if s == "+"]
        at, symbol, aux_note = at[keep], [symbol[i] for i in keep], [aux_note[i] for i in keep]
    n = sig.shape[1]
    wfdb.wrsamp(name, fs=rate, units=units, sig_name=[f"ECG{i + 1}" for i in range(n)],
                p_signal=sig, fmt=["212"] * n, adc_gain=[200.0] * n, baseline=[0] * n,
                write_dir=out)
    wfdb.wrann(name, "atr", at, symbol=symbol, aux_note=aux_note, fs=rate, write_dir=out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("rate", type=int)
    p.add_argument("records")
    p.add_argument("--concat", metavar="NAME", help="write the records end to end as NAME")
    p.add_argument("--repeat", type=int, default=1, help="with --concat: the list this many times")
    p.add_argument("--rhythm-only", action="store_true", help="keep only rhythm annotations")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    records = a.records.split(",")
    if not a.concat:
        for r in records:
            rec, sig, at, sym, aux = resampled(a.src, r, a.rate)
            write(r, a.out, a.rate, rec.units, sig, at, sym, aux, a.rhythm_only)
            print(f"{r}: {rec.fs:g} -> {a.rate} Hz, {sig.shape[0]} samples")
        return
    sigs, ats, syms, auxs, offset = [], [], [], [], 0
    for r in records * a.repeat:
        rec, sig, at, sym, aux = resampled(a.src, r, a.rate)
        sigs.append(sig)
        ats.append(at + offset)
        syms += sym
        auxs += aux
        offset += sig.shape[0]
    sig = np.vstack(sigs)
    write(a.concat, a.out, a.rate, rec.units, sig, np.concatenate(ats), syms, auxs,
          a.rhythm_only)
    print(f"{a.concat}: {len(records) * a.repeat} records at {a.rate} Hz, "
          f"{sig.shape[0]} samples ({sig.shape[0] / a.rate / 3600:.2f} h)")


if __name__ == "__main__":
    main()
