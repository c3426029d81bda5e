#!/usr/bin/env python3
"""Study (not part of the pipeline yet): af-cnn stacked with RR information, CinC 2017.

Would RR-interval information beside the waveform model lift its record classification?
Measured at record level; the pipeline does not run this stack (docs/accuracy-af.md §2,
"RR information beside af-cnn: a measured next step").

    W=/tmp/af-stack; mkdir -p $W
    cardiostream eval export-inputs --db $D/cinc2017 --model models/af-rr/af_rr.toml  --out $W/afrr_inputs
    cardiostream eval export-inputs --db $D/cinc2017 --model models/af-cnn/af_cnn.toml --out $W/afcnn_inputs
    STACK_WORK=$W python models/af-cnn/stack_study.py cv            # choices, validation only
    STACK_WORK=$W python models/af-cnn/stack_study.py heldout res+feat 0.1 none   # once

Phases:
  probs    (automatic, cached in $STACK_WORK/probs.npz) record probabilities of af-cnn
           (shipped ONNX, 1 thread), af-rr (shipped ONNX), af-rr-T (af-rr's own recipe
           refit on the TRAIN part only, so its validation outputs are out-of-sample),
           and record-mean RR features. Inputs: the pipeline's own
           `cardiostream eval export-inputs` files.
  cv       every choice on the validation part (804 records) by repeated stratified
           5-fold CV.
  heldout  scores the held-out part ONCE for the chosen stack, af-cnn alone, af-rr alone.
Split functions imported from models/af-cnn/train.py. Deterministic (fixed seeds).
"""
import csv
import json
import os
import sys

import numpy as np
from scipy.optimize import minimize

MAIN = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Exports in, caches and results out: outside the repository.
HERE = os.environ.get("STACK_WORK", "/tmp/af-stack")
sys.path.insert(0, os.path.join(MAIN, "models/af-cnn"))
import train as cnn  # noqa: E402  (name_hash, heldout, validation, load_export, record_windows, f1_scores)

CLASSES = cnn.CLASSES
SEED = 20261205
EPS = 1e-6


def load_rr(path):
    rows = list(csv.DictReader(open(path)))
    by = {}
    for r in rows:
        by.setdefault(r["record"], []).append(r)
    names = sorted(by)
    feats, first, labels = [], [], []
    for n in names:
        ws = sorted(by[n], key=lambda r: int(r["window"]))
        x = np.array([[float(r[f"f{i}"]) for i in range(8)] for r in ws])
        feats.append(x)
        labels.append(CLASSES.index(ws[0]["label"]))
    return names, np.array(labels), feats


def compute_probs():
    cache = os.path.join(HERE, "probs.npz")
    if os.path.exists(cache):
        z = np.load(cache, allow_pickle=True)
        return {k: z[k] for k in z.files}
    # af-cnn on the pipeline-exported windows, record = mean of window probabilities
    names, y, sigs = cnn.load_export(os.path.join(HERE, "afcnn_inputs"))
    sess = cnn.ort_session(os.path.join(MAIN, "models/af-cnn/af_cnn.onnx"))
    p_cnn = cnn.record_probs(cnn.ort_predictor(sess), sigs)
    # af-rr: every exported 30 s window (the manifest's hop), record = mean of window probs
    names_rr, y_rr, feats = load_rr(os.path.join(HERE, "afrr_inputs.csv"))
    assert names_rr == names and (y_rr == y).all()
    srr = cnn.ort_session(os.path.join(MAIN, "models/af-rr/af_rr.onnx"))
    p_rr = np.array([srr.run(["probabilities"], {"features": f.astype(np.float32)})[0].mean(0)
                     for f in feats])
    # af-rr-T: af-rr's recipe (models/af-rr/train.py: train(), same seed, weights, scaling,
    # first-window examples) fitted on the TRAIN part only
    sys.path.insert(0, os.path.join(MAIN, "models/af-rr"))
    import importlib.util
    spec = importlib.util.spec_from_file_location("rrtrain", os.path.join(MAIN, "models/af-rr/train.py"))
    rr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rr)
    part = np.array([0 if cnn.heldout(n) else (1 if cnn.validation(n) else 2) for n in names])
    tr = part == 2
    x0 = np.array([f[0] for f in feats])
    mu, sd = x0[tr].mean(0), x0[tr].std(0) + 1e-6
    counts = np.bincount(y[tr], minlength=4)
    w = (tr.sum() / (4 * np.maximum(counts, 1))) ** 0.5
    prm = rr.train((x0[tr] - mu) / sd, y[tr], w)
    p_rrT = np.array([rr.forward(prm, (f - mu) / sd)[1].mean(0) for f in feats])
    feat_mean = np.array([f.mean(0) for f in feats])
    out = dict(names=np.array(names), y=y, part=part, p_cnn=p_cnn, p_rr=p_rr, p_rrT=p_rrT,
               rr_feat=feat_mean)
    np.savez(cache, **out)
    return out


# ---------------- small multinomial logistic regression (L2, L-BFGS) ----------------
def lr_fit(x, y, l2, offset=None, sw=None, l2b=0.0):
    """softmax(offset + x @ W + b); weighted mean log-loss + l2/2 |W|^2 + l2b/2 |b|^2."""
    n, d = x.shape
    Y = np.eye(4)[y]
    off = np.zeros((n, 4)) if offset is None else offset
    s = np.ones(n) if sw is None else sw
    s = (s / s.mean())[:, None]

    def f(wv):
        W = wv[:d * 4].reshape(d, 4)
        b = wv[d * 4:]
        z = off + x @ W + b
        z -= z.max(1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(1, keepdims=True))
        p = np.exp(lp)
        loss = -(s * Y * lp).sum() / n + 0.5 * l2 * (W ** 2).sum() + 0.5 * l2b * (b ** 2).sum()
        g = s * (p - Y) / n
        return loss, np.concatenate([(x.T @ g + l2 * W).ravel(), g.sum(0) + l2b * b])

    r = minimize(f, np.zeros(d * 4 + 4), jac=True, method="L-BFGS-B",
                 options=dict(maxiter=2000, gtol=1e-8))
    return r.x[:d * 4].reshape(d, 4), r.x[d * 4:]


def lr_logits(model, x):
    W, b = model
    return x @ W + b


def design(D, idx, kind, scaler=None):
    if kind.startswith("res+"):
        # residual stack: af-cnn log-probs enter with weight 1 (an offset), only the RR
        # inputs' weights and a bias are learnt (both L2-shrunk towards af-cnn alone)
        x, sc = design(D, idx, "cnn+" + kind[4:], scaler)
        return x[:, 4:], sc
    """Stacker inputs. kind: 'cnn' (af-cnn log-probs), 'cnn+rr' (+ af-rr-T log-probs),
    'cnn+feat' (+ 8 record-mean RR features, standardised with validation-fold stats,
    clipped to +-5)."""
    parts = [np.log(D["p_cnn"][idx] + EPS)]
    if kind == "cnn+rr":
        parts.append(np.log(D["p_rrT"][idx] + EPS))
    if kind == "cnn+feat":
        f = D["rr_feat"][idx]
        if scaler is None:
            scaler = (f.mean(0), f.std(0) + 1e-9)
        parts.append(np.clip((f - scaler[0]) / scaler[1], -5, 5))
    return np.concatenate(parts, 1), scaler


def fit_stack(D, idx, kind, l2, weighting="none"):
    x, sc = design(D, idx, kind)
    y = D["y"][idx]
    sw = None
    if weighting == "sqrt":  # af-rr's recipe: (n / (4 n_c)) ** 0.5
        cnt = np.bincount(y, minlength=4)
        sw = ((len(y) / (4 * np.maximum(cnt, 1))) ** 0.5)[y]
    if kind.startswith("res+"):
        return lr_fit(x, y, l2, offset=np.log(D["p_cnn"][idx] + EPS), sw=sw, l2b=l2), sc
    return lr_fit(x, y, l2, sw=sw), sc


def predict_stack(D, idx, kind, model, sc):
    x, _ = design(D, idx, kind, sc)
    z = lr_logits(model, x)
    if kind.startswith("res+"):
        z = z + np.log(D["p_cnn"][idx] + EPS)
    return z


def strat_folds(y, k, rng):
    fold = np.zeros(len(y), int)
    for c in range(4):
        i = np.flatnonzero(y == c)
        rng.shuffle(i)
        fold[i] = np.arange(len(i)) % k
    return fold


CONFIGS = [(kind, l2, wt) for kind in ("cnn", "cnn+rr", "cnn+feat", "res+rr", "res+feat")
           for l2 in (0.001, 0.01, 0.1) for wt in ("none", "sqrt")]
# second round (after the first grid's best was at its strongest L2): stronger shrinkage
CONFIGS += [(kind, l2, "none") for kind in ("res+rr", "res+feat") for l2 in (0.3, 1.0, 3.0)]
if os.environ.get("ROUND2"):
    CONFIGS = CONFIGS[-6:]
REPEATS = 10


def cv(D):
    val = np.flatnonzero(D["part"] == 1)
    y = D["y"][val]
    res = {}
    base = {"af-cnn": cnn.f1_scores(y, D["p_cnn"][val].argmax(1)),
            "af-rr (shipped; saw validation in training)": cnn.f1_scores(y, D["p_rr"][val].argmax(1)),
            "af-rr-T (train-only refit)": cnn.f1_scores(y, D["p_rrT"][val].argmax(1))}
    for kind, l2, wt in CONFIGS:
        per = []
        for rep in range(REPEATS):
            fold = strat_folds(y, 5, np.random.default_rng(SEED + rep))
            pred = np.zeros(len(val), int)
            for k in range(5):
                tr, te = val[fold != k], val[fold == k]
                m, sc = fit_stack(D, tr, kind, l2, wt)
                pred[fold == k] = predict_stack(D, te, kind, m, sc).argmax(1)
            per.append(cnn.f1_scores(y, pred))
        res[f"{kind} l2={l2} w={wt}"] = {c: (float(np.mean([p[c] for p in per])), float(np.std([p[c] for p in per])))
                                  for c in CLASSES + ["mean_NAO"]}
    return base, res


def fmt(f):
    return " ".join(f"{c}={f[c]:.3f}" for c in CLASSES + ["mean_NAO"])


def main():
    D = compute_probs()
    print("records:", {p: int((D["part"] == i).sum()) for i, p in enumerate(["heldout", "validation", "train"])})
    phase = sys.argv[1]
    if phase == "cv":
        base, res = cv(D)
        print("validation, whole part (no fitting):")
        for k, f in base.items():
            print(f"  {k:45s} {fmt(f)}")
        print(f"validation, stratified 5-fold CV x{REPEATS} (mean +- sd over repeats):")
        for k, f in res.items():
            print(f"  {k:30s} " + " ".join(f"{c}={f[c][0]:.3f}±{f[c][1]:.3f}" for c in CLASSES + ["mean_NAO"]))
        json.dump({"base": base, "cv": res}, open(os.path.join(HERE, "cv.json"), "w"), indent=1)
    elif phase == "heldout":
        kind, l2, wt = sys.argv[2], float(sys.argv[3]), sys.argv[4]
        val = np.flatnonzero(D["part"] == 1)
        ho = np.flatnonzero(D["part"] == 0)
        (W, b), sc = fit_stack(D, val, kind, l2, wt)
        y = D["y"][ho]
        preds = {"af-cnn": D["p_cnn"][ho].argmax(1),
                 "af-rr (shipped)": D["p_rr"][ho].argmax(1),
                 "af-rr-T (train-only refit)": D["p_rrT"][ho].argmax(1),
                 f"stack {kind} l2={l2} w={wt}": predict_stack(D, ho, kind, (W, b), sc).argmax(1)}
        rng_seed = SEED
        B = 1000
        rng = np.random.default_rng(rng_seed)
        idxs = [rng.integers(0, len(y), len(y)) for _ in range(B)]
        out = {}
        keys = CLASSES + ["mean_NAO"]
        boot = {}
        for k, p in preds.items():
            f = cnn.f1_scores(y, p)
            draws = np.array([[cnn.f1_scores(y[i], p[i])[c] for c in keys] for i in idxs])
            boot[k] = draws
            out[k] = {c: [f[c], float(np.percentile(draws[:, j], 2.5)), float(np.percentile(draws[:, j], 97.5))]
                      for j, c in enumerate(keys)}
            out[k]["confusion"] = cnn.confusion(y, p).tolist()
        sk = f"stack {kind} l2={l2} w={wt}"
        d = boot[sk] - boot["af-cnn"]
        out["paired diff stack - af-cnn"] = {c: [float(out[sk][c][0] - out["af-cnn"][c][0]),
                                                 float(np.percentile(d[:, j], 2.5)),
                                                 float(np.percentile(d[:, j], 97.5))]
                                             for j, c in enumerate(keys)}
        names_in = [] if kind.startswith("res+") else [f"logp_cnn_{c}" for c in CLASSES]
        if kind.endswith("+rr"):
            names_in += [f"logp_rrT_{c}" for c in CLASSES]
        if kind.endswith("+feat"):
            names_in += [f"z_f{i}" for i in range(8)]
        form = "softmax(log p_cnn + x @ W + b)" if kind.startswith("res+") else "softmax(x @ W + b)"
        out["stacker"] = {"form": form + ", x = " + ", ".join(names_in),
                          "W": {n: dict(zip(CLASSES, map(float, w))) for n, w in zip(names_in, W)},
                          "b": dict(zip(CLASSES, map(float, b))),
                          "scaler": None if sc is None else [sc[0].tolist(), sc[1].tolist()]}
        for k in preds:
            print(f"{k:32s} " + " ".join(f"{c}={out[k][c][0]:.3f} [{out[k][c][1]:.3f},{out[k][c][2]:.3f}]" for c in keys))
        print("paired diff stack - af-cnn: " + " ".join(
            f"{c}={v[0]:+.3f} [{v[1]:+.3f},{v[2]:+.3f}]" for c, v in out["paired diff stack - af-cnn"].items()))
        print(json.dumps(out["stacker"], indent=1))
        json.dump(out, open(os.path.join(HERE, "heldout.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
