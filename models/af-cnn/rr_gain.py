#!/usr/bin/env python3
"""Would RR-interval features, as a second model input, add to af-cnn? A measurement for
the decision, on the VALIDATION part only (the held-out part is not read).

For each validation record: af-cnn's whole-record probabilities (the ONNX file, the
protocol of train.py), and eight RR-irregularity features in the spirit of af_rr_v1
(mean RR, RMSSD / mean RR, coefficient of variation, median |dRR| / median RR, share of
RR more than 20 % from the median, turning-point ratio, Poincare SD1 / SD2, beats per
second), from a simple Pan-Tompkins-style QRS detector in Python (NOT the pipeline's
detector). Two multinomial logistic regressions are compared by 10-fold
cross-validation over the validation records, repeated 5 times with different folds:
  cnn      log of af-cnn's four probabilities
  cnn+rr   the same plus the eight standardised RR features
and the script prints mean F1 (N, A, O) and F1 of A, pooled over each repeat's folds.

With --features PREFIX.csv (what `cardiostream eval export-inputs --model
models/af-rr/af_rr.toml --out PREFIX` writes: the pipeline's own detector and af_rr_v1
features per 30 s window; each record's first window is used, as models/af-rr/train.py
uses it), those features replace the Python ones: that is the measurement that decides.

usage: rr_gain.py [--data DIR] [--onnx models/af-cnn/af_cnn.onnx] [--features PREFIX.csv]
"""
import argparse
import os

import numpy as np

import train as T


def qrs_peaks(x, fs):
    from scipy.signal import butter, filtfilt, find_peaks

    b, a = butter(2, [5 / (fs / 2), 20 / (fs / 2)], btype="band")
    y = filtfilt(b, a, x)
    e = np.convolve(np.gradient(y) ** 2, np.ones(int(0.15 * fs)) / (0.15 * fs), "same")
    height = 0.3 * np.percentile(e, 98)
    peaks, _ = find_peaks(e, height=height, distance=int(0.25 * fs))
    return peaks


def rr_features(x, fs):
    p = qrs_peaks(x, fs)
    rr = np.diff(p) / fs
    if len(rr) < 4:
        return np.array([1.0, 0, 0, 0, 0, 0.67, 1.0, len(p) / (len(x) / fs)])
    d = np.diff(rr)
    med = np.median(rr)
    tp = np.mean((d[:-1] * d[1:]) < 0) if len(d) > 1 else 0.67
    sd1 = np.std(d) / np.sqrt(2)
    sd2 = np.sqrt(max(2 * np.var(rr) - sd1 ** 2, 1e-9))
    return np.array([rr.mean(), np.sqrt(np.mean(d ** 2)) / rr.mean(), rr.std() / rr.mean(),
                     np.median(np.abs(d)) / med, np.mean(np.abs(rr - med) > 0.2 * med), tp,
                     sd1 / sd2, len(p) / (len(x) / fs)])


def fit_logreg(x, y, k, l2=1e-2, iters=500, lr=0.1):
    w = np.zeros((x.shape[1], k))
    b = np.zeros(k)
    onehot = np.eye(k)[y]
    for _ in range(iters):
        z = x @ w + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(y)
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum(0)
    return w, b


def cv(x, y, repeats=5, folds=10, seed=1):
    scores = []
    for r in range(repeats):
        rng = np.random.default_rng(seed + r)
        fold = rng.permutation(len(y)) % folds
        pred = np.zeros(len(y), dtype=int)
        for f in range(folds):
            tr, te = fold != f, fold == f
            mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-9
            w, b = fit_logreg((x[tr] - mu) / sd, y[tr], len(T.CLASSES))
            pred[te] = (((x[te] - mu) / sd) @ w + b).argmax(1)
        scores.append(T.f1_scores(y, pred))
    return {k: float(np.mean([s[k] for s in scores])) for k in ("mean_NAO", "A", "O", "N")}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--onnx", default=os.path.join(here, "af_cnn.onnx"))
    ap.add_argument("--features")
    a = ap.parse_args()
    root = a.data or T.data_dir_default()
    names, y, sigs = T.load_records(root)
    iva = np.array([i for i, n in enumerate(names) if T.validation(n)])
    yv = y[iva]
    p = T.record_probs(T.ort_predictor(T.ort_session(a.onnx)), [sigs[i] for i in iva])
    if a.features:
        import csv

        with open(a.features) as f:
            rows = {r["record"]: [float(r[k]) for k in r if k.startswith("f")]
                    for r in csv.DictReader(f) if r.get("window", "0") == "0"}
        rr = np.array([rows[names[i]] for i in iva])
        print(f"RR features: af_rr_v1 from {a.features}")
    else:
        rr = np.stack([rr_features(T.read_wfdb_mat(
            os.path.join(root, "cinc2017", names[i]))[1], T.FS_IN) for i in iva])
        print("RR features: this script's Python QRS detector (weaker than the pipeline's)")
    logp = np.log(np.clip(p, 1e-6, 1))
    print(f"validation records: {len(iva)}; af-cnn argmax as is: "
          f"{ {k: round(v, 4) for k, v in T.f1_scores(yv, p.argmax(1)).items()} }")
    for name, x in (("cnn", logp), ("cnn+rr", np.hstack([logp, rr])), ("rr", rr)):
        s = cv(x, yv)
        print(f"{name:7s} 10-fold CV x5 on validation: mean F1 (N, A, O) {s['mean_NAO']:.4f}, "
              f"F1 N {s['N']:.4f}, A {s['A']:.4f}, O {s['O']:.4f}")


if __name__ == "__main__":
    main()
