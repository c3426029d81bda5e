#!/usr/bin/env python3
"""Train and export the bundled AF / rhythm model `af-rr`.

Input: the `af_rr_v1` features of the CinC 2017 records as the pipeline's one model-input
builder makes them (the same streaming DSP chain and feature code the pipeline runs):
`cardiostream eval export-inputs --db DIR/cinc2017 --model models/af-rr/af_rr.toml
--out PREFIX` writes PREFIX.csv, one line per 30 s window; a record's first window (its
first 30 s, or all of a shorter record) is the record's training example.
Model: a small multilayer perceptron (8 -> 16 -> 4, ReLU, softmax) over standardised
features, classes N (normal), A (atrial fibrillation), O (other rhythm), ~ (noisy).
Split: a fixed 20 % of records, chosen by a hash of the record name, is held out and
never used for fitting, feature scaling, the decision threshold or any choice of
hyper-parameter; the figures written to `heldout.json` are measured on it once.

usage: train.py PREFIX.csv OUTDIR
Needs numpy, onnx and onnxruntime (scripts/setup-onnxruntime.sh --train installs them).
"""
import csv
import hashlib
import json
import sys

import numpy as np

CLASSES = ["N", "A", "O", "~"]
HIDDEN = 16
EPOCHS = 3000
LR = 0.01
L2 = 1e-4
SEED = 20171


def heldout(record: str) -> bool:
    return int(hashlib.sha256(record.encode()).hexdigest(), 16) % 5 == 0


def load(path):
    names, x, y = [], [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            if row["label"] not in CLASSES or row.get("window", "0") != "0":
                continue
            names.append(row["record"])
            x.append([float(row[k]) for k in row if k.startswith("f")])
            y.append(CLASSES.index(row["label"]))
    return names, np.array(x, dtype=np.float64), np.array(y)


def forward(p, x):
    h = np.maximum(0.0, x @ p["w1"] + p["b1"])
    z = h @ p["w2"] + p["b2"]
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return h, e / e.sum(axis=1, keepdims=True)


def train(x, y, weights):
    rng = np.random.default_rng(SEED)
    d, k = x.shape[1], len(CLASSES)
    p = {
        "w1": rng.normal(0, np.sqrt(2 / d), (d, HIDDEN)),
        "b1": np.zeros(HIDDEN),
        "w2": rng.normal(0, np.sqrt(1 / HIDDEN), (HIDDEN, k)),
        "b2": np.zeros(k),
    }
    m = {n: np.zeros_like(v) for n, v in p.items()}
    v = {n: np.zeros_like(v) for n, v in p.items()}
    onehot = np.eye(k)[y]
    sw = weights[y][:, None]
    for t in range(1, EPOCHS + 1):
        h, prob = forward(p, x)
        g = (prob - onehot) * sw / sw.sum()
        grads = {
            "w2": h.T @ g + L2 * p["w2"],
            "b2": g.sum(0),
        }
        gh = (g @ p["w2"].T) * (h > 0)
        grads["w1"] = x.T @ gh + L2 * p["w1"]
        grads["b1"] = gh.sum(0)
        for n in p:
            m[n] = 0.9 * m[n] + 0.1 * grads[n]
            v[n] = 0.999 * v[n] + 0.001 * grads[n] ** 2
            mh = m[n] / (1 - 0.9**t)
            vh = v[n] / (1 - 0.999**t)
            p[n] -= LR * mh / (np.sqrt(vh) + 1e-8)
    return p


def f1_scores(y, pred):
    out = {}
    for i, c in enumerate(CLASSES):
        tp = int(((pred == i) & (y == i)).sum())
        fp = int(((pred == i) & (y != i)).sum())
        fn = int(((pred != i) & (y == i)).sum())
        out[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    out["mean_NAO"] = (out["N"] + out["A"] + out["O"]) / 3
    return out


def export_onnx(p, mu, sd, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def init(name, arr):
        return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)

    d = mu.shape[0]
    nodes = [
        helper.make_node("Sub", ["features", "mu"], ["centred"]),
        helper.make_node("Div", ["centred", "sd"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "w1"], ["h_lin"]),
        helper.make_node("Add", ["h_lin", "b1"], ["h_pre"]),
        helper.make_node("Relu", ["h_pre"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["z_lin"]),
        helper.make_node("Add", ["z_lin", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "af_rr",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(CLASSES)])],
        [init("mu", mu), init("sd", sd), init("w1", p["w1"]), init("b1", p["b1"]),
         init("w2", p["w2"]), init("b2", p["b2"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="cardiostream models/af-rr/train.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main():
    feats, outdir = sys.argv[1], sys.argv[2]
    names, x, y = load(feats)
    ho = np.array([heldout(n) for n in names])
    xtr, ytr, xte, yte = x[~ho], y[~ho], x[ho], y[ho]
    mu = xtr.mean(0)
    sd = xtr.std(0) + 1e-6
    counts = np.bincount(ytr, minlength=len(CLASSES))
    weights = (len(ytr) / (len(CLASSES) * np.maximum(counts, 1))) ** 0.5
    p = train((xtr - mu) / sd, ytr, weights)
    _, ptr = forward(p, (xtr - mu) / sd)
    # AF threshold: best F1 of "A" on the training records only.
    best = max(np.arange(0.2, 0.91, 0.05),
               key=lambda t: f1_scores((ytr == 1).astype(int) * 1, (ptr[:, 1] >= t).astype(int))["A"])
    _, pte = forward(p, (xte - mu) / sd)
    pred = pte.argmax(1)
    af_pred = (pte[:, 1] >= best)
    tp = int((af_pred & (yte == 1)).sum())
    report = {
        "records_train": int((~ho).sum()),
        "records_heldout": int(ho.sum()),
        "heldout_counts": {c: int((yte == i).sum()) for i, c in enumerate(CLASSES)},
        "heldout_f1_argmax": f1_scores(yte, pred),
        "train_f1_argmax": f1_scores(ytr, ptr.argmax(1)),
        "af_threshold": round(float(best), 2),
        "heldout_af_at_threshold": {
            "sensitivity": tp / max(int((yte == 1).sum()), 1),
            "ppv": tp / max(int(af_pred.sum()), 1),
        },
    }
    export_onnx(p, mu, sd, f"{outdir}/af_rr.onnx")
    import onnxruntime as ort
    sess = ort.InferenceSession(f"{outdir}/af_rr.onnx")
    got = sess.run(["probabilities"], {"features": xte.astype(np.float32)})[0]
    assert np.allclose(got, pte, atol=1e-4), "onnx export disagrees with numpy"
    with open(f"{outdir}/heldout.json", "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
