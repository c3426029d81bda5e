#!/usr/bin/env python3
"""af-cnn on raw versus monitor-filtered input, on the VALIDATION part (804 records).

The contract feeds af-cnn the RAW lead. If the pipeline fed it the monitor-filtered lead
instead, this says what changes: each 300 Hz record is run through a Python copy of the
pipeline's MonitorFilter (dsp/src/filter.rs: RBJ biquads, 2nd-order Butterworth
high-pass 0.5 Hz, notch at the mains frequency Q 5, 4th-order Butterworth low-pass
40 Hz; causal, in steady state: the record filtered twice in a row and the second pass
kept), then resampled to 125 Hz as in train.py and scored whole-record.

usage: filtered_input.py [--data DIR] [--onnx models/af-cnn/af_cnn.onnx] [--mains 50|60]
"""
import argparse
import os

import numpy as np

import train as T


def monitor_filter(x, fs, mains_hz):
    from scipy.signal import lfilter

    def biquad(kind, f0, q):
        w0 = 2 * np.pi * f0 / fs
        c, al = np.cos(w0), np.sin(w0) / (2 * q)
        b = {"lp": [(1 - c) / 2, 1 - c, (1 - c) / 2],
             "hp": [(1 + c) / 2, -(1 + c), (1 + c) / 2],
             "notch": [1, -2 * c, 1]}[kind]
        return np.array(b) / (1 + al), np.array([1 + al, -2 * c, 1 - al]) / (1 + al)

    sections = [biquad("hp", 0.5, np.sqrt(0.5)), biquad("notch", mains_hz, 5.0),
                biquad("lp", 40.0, 0.541196100146197), biquad("lp", 40.0, 1.3065629648763766)]
    y = np.concatenate([x, x])
    for b, a in sections:
        y = lfilter(b, a, y)
    return y[len(x):]


def main():
    from scipy.signal import resample_poly

    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--onnx", default=os.path.join(here, "af_cnn.onnx"))
    ap.add_argument("--mains", type=float, default=50.0)
    a = ap.parse_args()
    root = a.data or T.data_dir_default()
    names, y, sigs = T.load_records(root)
    iva = [i for i, n in enumerate(names) if T.validation(n)]
    pred = T.ort_predictor(T.ort_session(a.onnx))
    raw = T.record_probs(pred, [sigs[i] for i in iva])
    filt_sigs = []
    for i in iva:
        fs, x = T.read_wfdb_mat(os.path.join(root, "cinc2017", names[i]))
        filt_sigs.append(resample_poly(monitor_filter(x, fs, a.mains), T.UP, T.DOWN)
                         .astype(np.float32))
    filt = T.record_probs(pred, filt_sigs)
    for what, p in (("raw", raw), (f"monitor-filtered ({a.mains:.0f} Hz notch)", filt)):
        f = T.f1_scores(y[iva], p.argmax(1))
        print(f"{what}: mean F1 (N, A, O) {f['mean_NAO']:.4f}; F1 N {f['N']:.4f}, "
              f"A {f['A']:.4f}, O {f['O']:.4f}, ~ {f['~']:.4f}")
    print(f"records whose label changed: {int((raw.argmax(1) != filt.argmax(1)).sum())} of "
          f"{len(iva)}; max |dp| {np.abs(raw - filt).max():.3f}")


if __name__ == "__main__":
    main()
