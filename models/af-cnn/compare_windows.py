#!/usr/bin/env python3
"""Per-window AF calls of two af-cnn graphs on the same exported windows (MODEL_CARD.md,
"Atrial activity beside the waveform": the MIT-BIH per-window counts).

    compare_windows.py EXPORT_PREFIX NEW.onnx NEW_THRESHOLD OLD.onnx OLD_THRESHOLD

EXPORT_PREFIX: `cardiostream eval export-inputs --model M --out PREFIX` with a manifest that
has `atrial_features = true` (the CSV then has the 8 RR features and the 6 atrial values);
each graph gets as many of those columns as its `rr` input takes (14 for 1.3.0, 8 for
1.2.0). Per record: windows, windows with P(A) at or above each graph's threshold, and
the mean P(A). onnxruntime on one thread; deterministic.
"""
import csv
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack_rr as srr  # noqa: E402  (the export's RR and atrial column names)
import train as cnn  # noqa: E402  (ort_session)


def p_af(sess, x, feats):
    width = next(i for i in sess.get_inputs() if i.name == "rr").shape[1]
    return sess.run(None, {"ecg": x, "rr": np.ascontiguousarray(feats[:, :width])})[0][:, 1]


def main(prefix, new_onnx, new_thr, old_onnx, old_thr):
    with open(prefix + ".csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cols = srr.FEATURES + srr.ATRIAL
    feats = np.array([[float(r[c]) for c in cols] for r in rows], np.float32)
    x = np.load(prefix + ".npy")
    pn = p_af(cnn.ort_session(new_onnx), x, feats)
    po = p_af(cnn.ort_session(old_onnx), x, feats)
    records = [r["record"] for r in rows]
    print("| record | windows | old: P(A) >= %s | new: P(A) >= %s | mean P(A) old | new |" % (old_thr, new_thr))
    print("|---|---|---|---|---|---|")
    for rec in sorted(set(records)):
        i = [k for k, r in enumerate(records) if r == rec]
        print(f"| {rec} | {len(i)} | {int((po[i] >= float(old_thr)).sum())} | "
              f"{int((pn[i] >= float(new_thr)).sum())} | {po[i].mean():.3f} | {pn[i].mean():.3f} |")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
