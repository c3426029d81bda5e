#!/usr/bin/env python3
"""Residual RR stacker on top of af-cnn, PER WINDOW, and its ONNX file af_cnn_rr.onnx.

The record-level study (stack_study.py, "res+feat l2=0.1 w=none") stacked af-cnn with 8 RR
features. This script fits the same residual form on the unit the pipeline scores, one
30 s window:

    probabilities = softmax( log(p_cnn + 1e-6) + clip((rr - mu) / sd, -5, 5) @ W + b )

p_cnn: af_cnn.onnx's output for the window's waveform; rr: the window's raw af_rr_v1
features f0..f7 (mean_rr_s, nrmssd, cv, nmad_drr, frac_dev20, tpr, sd1_sd2, cosen) of the
beats the pipeline's DSP found in it, exactly the f0..f7 columns of `cardiostream eval
export-inputs --model models/af-cnn/af_cnn.toml`. A record's probabilities are the mean
over its windows (as `eval af`).

Fitting (VALIDATION part only, cnn.validation(name) and not cnn.heldout(name), split from
train.py): mu / sd = mean / std (+1e-9) of the validation windows' features; W (8x4) and
b (4) by stack_study.lr_fit with l2 = 0.1 on W and b, the af-cnn log-probabilities as a
fixed offset, each window weighted 1 / (windows of its record) so every record counts once;
the window's target is its record's label. The AF finding threshold is chosen on the
validation records as train.py choose_on_validation does. The held-out records are dropped
right after reading the export: nothing is computed on them here.

Outputs:
  models/af-cnn/af_cnn_rr.onnx  af_cnn.onnx plus a second input `rr` float32 [batch, 8];
                                output `probabilities` float32 [batch, 4] (N, A, O, ~)
  models/af-cnn/stack_rr.json   the stacker, its validation figures (in-sample and
                                repeated stratified 5-fold CV by record), the ONNX check
  $STACK_WORK/p_cnn_val.npz     cache of af-cnn's validation window probabilities

Reproduce (from the repository root; D = the data folder holding cinc2017/):

    export CARDIOSTREAM_ORT_LIB=$PWD/.cardiostream/lib/libonnxruntime.so
    W=/tmp/af-stack-rr; mkdir -p $W; B=target/release/cardiostream   # cargo build --release
    $B eval export-inputs --db $D/cinc2017 --model models/af-cnn/af_cnn.toml --out $W/afcnn_inputs
    python3 -m venv /work/.venv-train
    /work/.venv-train/bin/pip install -r models/af-cnn/requirements.txt   # torch is not needed here
    STACK_WORK=$W /work/.venv-train/bin/python models/af-cnn/stack_rr.py

Held-out part, once the shipped manifest points at af_cnn_rr.onnx (af-cnn 1.1.0), against
af-cnn 1.0.0 (its manifest from git, af_cnn.onnx alone), through the pipeline's eval:

    $B eval af --db $D/cinc2017 --split heldout --model models/af-cnn/af_cnn.toml --out $W/v110.csv
    git show 985ba4e:models/af-cnn/af_cnn.toml \
      | sed "s|^onnx = .*|onnx = \"$PWD/models/af-cnn/af_cnn.onnx\"|" > $W/v100.toml
    $B eval af --db $D/cinc2017 --split heldout --model $W/v100.toml --out $W/v100.csv
    CARDIOSTREAM_DATA=$D /work/.venv-train/bin/python models/af-cnn/stack_rr.py heldout $W/v110.csv $W/v100.csv

A candidate network in a folder of its own (STACK_OUT=DIR holding its af_cnn.onnx; this
script then reads and writes there instead of in models/af-cnn/), against another model's
`eval af` CSV with labels of one's choosing:

    STACK_WORK=$W STACK_OUT=DIR python3 models/af-cnn/stack_rr.py
    STACK_OUT=DIR python3 models/af-cnn/stack_rr.py heldout NEW.csv OLD.csv "af-cnn 1.2.0 (stack)" "af-cnn 1.1.0"

Deterministic: fixed seeds, onnxruntime and BLAS on one thread; two runs write the same
stack_rr.json apart from the timing figures ("throughput") and the same ONNX bytes.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import csv  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE_DIR = os.path.dirname(os.path.abspath(__file__))
MAIN = os.path.dirname(os.path.dirname(HERE_DIR))
WORK = os.environ.get("STACK_WORK", "/tmp/af-stack-rr")
sys.path.insert(0, HERE_DIR)
import train as cnn  # noqa: E402  (split, f1_scores, CLASSES)
import stack_study as ss  # noqa: E402  (lr_fit, strat_folds, SEED)

CLASSES = cnn.CLASSES
NF = 8
FEATURES = [f"f{i}" for i in range(NF)]
# dsp/src/atrial.rs ATRIAL_FEATURE_NAMES: the export's columns after the RR features when
# the manifest has `atrial_features = true`.
ATRIAL = ["ln_p_amp", "p_sync", "p_corr", "p_share", "pr_sd", "ln_f_tq"]
FEATURE_NAMES = ["mean_rr_s", "nrmssd", "cv", "nmad_drr", "frac_dev20", "tpr", "sd1_sd2", "cosen"]
EPS = 1e-6
CLIP = 5.0
P_CNN = "p_cnn"  # the network's probabilities inside a graph with a stacker appended
L2 = 0.1
FOLDS = 5
REPEATS = 10
BATCH = 64
# STACK_OUT: the folder of the network (af_cnn.onnx) and of what this script writes;
# default this script's folder (a candidate network is stacked in a folder of its own
# first, outside the repository).
OUT_DIR = os.environ.get("STACK_OUT", HERE_DIR)
SRC_ONNX = os.path.join(OUT_DIR, "af_cnn.onnx")
OUT_ONNX = os.path.join(OUT_DIR, "af_cnn_rr.onnx")
OUT_JSON = os.path.join(OUT_DIR, "stack_rr.json")


sha256 = cnn.file_sha256


# ---------------------------------------------------------------- data ----------
def load_validation(columns=None):
    """The export's validation windows, in the export's order, with the feature
    `columns` (default the 8 RR features; the atrial values too when the export has
    them). Held-out rows are dropped here, before anything is computed; so are the
    training part's (unused)."""
    columns = columns or FEATURES
    prefix = os.path.join(WORK, "afcnn_inputs")
    with open(prefix + ".csv", newline="") as f:
        reader = csv.DictReader(f)
        want = ["record", "label", "window", "start_s", "quality_ok", "n_rr"] + FEATURES
        # An export for a manifest with `atrial_features` has the atrial values after
        # the RR features.
        if reader.fieldnames not in (want, want + ATRIAL) or \
                not set(columns) <= set(reader.fieldnames):
            raise SystemExit(f"{prefix}.csv: header {reader.fieldnames}, expected {want} "
                             f"(optionally + {ATRIAL}) with {columns}")
        rows = list(reader)
    n_all = len(rows)
    keep = [i for i, r in enumerate(rows)
            if not cnn.heldout(r["record"]) and cnn.validation(r["record"])]
    rows = [rows[i] for i in keep]
    records, rec_of = [], []
    for r in rows:
        if not records or records[-1] != r["record"]:
            if r["record"] in records:
                raise SystemExit(f"{r['record']}: windows not contiguous in the export")
            records.append(r["record"])
        rec_of.append(len(records) - 1)
    rec_of = np.array(rec_of)
    for k in range(len(records)):
        ws = [rows[i] for i in np.flatnonzero(rec_of == k)]
        for j, r in enumerate(ws):
            if int(r["window"]) != j or abs(float(r["start_s"]) - j * cnn.HOP_S) > 1e-3:
                raise SystemExit(f"{r['record']}: window {r['window']} at {r['start_s']} s "
                                 "is not in order on the manifest's hop grid")
            if r["label"] != ws[0]["label"] or r["label"] not in CLASSES:
                raise SystemExit(f"{r['record']}: label {r['label']!r}")
    # the features as float32 (what the ONNX input holds), then float64 for the fit
    feats = np.array([[float(r[c]) for c in columns] for r in rows], np.float32)
    y_rec = np.array([CLASSES.index(rows[np.flatnonzero(rec_of == k)[0]]["label"])
                      for k in range(len(records))])
    n_rr = np.array([int(r["n_rr"]) for r in rows])
    quality_ok = np.array([r["quality_ok"].strip().lower() in ("true", "1") for r in rows])
    return dict(prefix=prefix, n_export_rows=n_all, rows=np.array(keep), records=records,
                rec_of=rec_of, y_rec=y_rec, feats=feats, n_rr=n_rr, quality_ok=quality_ok)


def cnn_window_probs(V):
    """af_cnn.onnx on the validation windows (1 thread, batches of 64), cached."""
    cache = os.path.join(WORK, "p_cnn_val.npz")
    key = sha256(V["prefix"] + ".csv") + sha256(SRC_ONNX)
    if os.path.exists(cache):
        z = np.load(cache)
        if str(z["key"]) == key and np.array_equal(z["rows"], V["rows"]):
            return z["p"]
    x = np.load(V["prefix"] + ".npy", mmap_mode="r")
    if x.shape != (V["n_export_rows"], 1, cnn.W):
        raise SystemExit(f"{V['prefix']}.npy: shape {x.shape}")
    rows = V["rows"]
    p = cnn.ort_predictor(cnn.ort_session(SRC_ONNX), BATCH)(np.ascontiguousarray(x[rows], np.float32))
    np.savez(cache, key=np.array(key), rows=rows, p=p)
    return p


# ------------------------------------------------------------ stacker ----------
def scaler(f):
    return f.mean(0), f.std(0) + 1e-9


def design(f, sc):
    return np.clip((f - sc[0]) / sc[1], -CLIP, CLIP)


def fit(f, p, rec_of, y_rec, idx):
    """Fit on the windows idx: scaler from those windows, record-weighted, l2 0.1."""
    sc = scaler(f[idx])
    counts = np.bincount(rec_of[idx])
    sw = 1.0 / counts[rec_of[idx]]
    W, b = ss.lr_fit(design(f[idx], sc), y_rec[rec_of[idx]], L2,
                     offset=np.log(p[idx] + EPS), sw=sw, l2b=L2)
    return sc, W, b


def stack_probs(f, p, sc, W, b):
    z = np.log(p + EPS) + design(f, sc) @ W + b
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def record_mean(pw, rec_of, idx=None):
    if idx is None:
        idx = np.arange(len(rec_of))
    r, inv = np.unique(rec_of[idx], return_inverse=True)
    out = np.zeros((len(r), pw.shape[1]))
    np.add.at(out, inv, pw[idx])
    return r, out / np.bincount(inv)[:, None]


def rnd(f):
    return {k: round(float(v), 6) for k, v in f.items()}


def fmt(f):
    return " ".join(f"{c}={f[c]:.4f}" for c in CLASSES + ["mean_NAO"])


def cv(f, p, rec_of, y_rec):
    """Repeated stratified 5-fold CV by RECORD inside the validation part: the scaler and
    the stacker are fitted on the other folds' windows, the fold's records scored."""
    keys = CLASSES + ["mean_NAO"]
    base = cnn.f1_scores(y_rec, record_mean(p, rec_of)[1].argmax(1))
    per, diff = [], []
    for rep in range(REPEATS):
        fold = ss.strat_folds(y_rec, FOLDS, np.random.default_rng(ss.SEED + rep))
        pred = np.zeros(len(y_rec), int)
        for k in range(FOLDS):
            tr = np.flatnonzero(fold[rec_of] != k)
            te = np.flatnonzero(fold[rec_of] == k)
            sc, W, b = fit(f, p, rec_of, y_rec, tr)
            r, pr = record_mean(stack_probs(f, p, sc, W, b), rec_of, te)
            pred[r] = pr.argmax(1)
        s = cnn.f1_scores(y_rec, pred)
        per.append([s[c] for c in keys])
        diff.append([s[c] - base[c] for c in keys])
    per, diff = np.array(per), np.array(diff)
    return {"folds": FOLDS, "repeats": REPEATS,
            "af-cnn": rnd(base),
            "stack_mean": rnd(dict(zip(keys, per.mean(0)))),
            "stack_sd_over_repeats": rnd(dict(zip(keys, per.std(0)))),
            "stack_minus_afcnn_mean": rnd(dict(zip(keys, diff.mean(0)))),
            "stack_minus_afcnn_min": rnd(dict(zip(keys, diff.min(0)))),
            "stack_minus_afcnn_max": rnd(dict(zip(keys, diff.max(0))))}


# ---------------------------------------------------------------- ONNX ----------
def stacker_head(sc):
    """The ONNX initializers and nodes every appended stacker starts with: the network's
    log-probabilities `stack_logp` = Log(p_cnn + EPS), and the standardisation (`sc`:
    mean, SD) and clip constants its inputs are scaled with."""
    from onnx import helper, numpy_helper

    f32 = lambda v, name: numpy_helper.from_array(np.asarray(v, np.float32), name)  # noqa: E731
    N = helper.make_node
    inits = [f32(EPS, "stack_eps"), f32(sc[0], "stack_mu"), f32(sc[1], "stack_sd"),
             f32(-CLIP, "stack_clip_lo"), f32(CLIP, "stack_clip_hi")]
    nodes = [N("Add", [P_CNN, "stack_eps"], ["stack_p_eps"], name="stack_add_eps"),
             N("Log", ["stack_p_eps"], ["stack_logp"], name="stack_log")]
    return inits, nodes


def linear_stacker(sc, W, b):
    """The residual linear stacker's initializers and nodes: probabilities =
    Softmax(Log(p_cnn + EPS) + Clip((rr - mu) / sd, -CLIP, CLIP) @ W + b)."""
    from onnx import helper, numpy_helper

    inits, nodes = stacker_head(sc)
    inits += [numpy_helper.from_array(np.asarray(W, np.float32), "stack_W"),
              numpy_helper.from_array(np.asarray(b, np.float32), "stack_b")]
    N = helper.make_node
    nodes += [
        N("Sub", ["rr", "stack_mu"], ["stack_rr_c"], name="stack_sub"),
        N("Div", ["stack_rr_c", "stack_sd"], ["stack_rr_z"], name="stack_div"),
        N("Clip", ["stack_rr_z", "stack_clip_lo", "stack_clip_hi"], ["stack_rr_x"], name="stack_clip"),
        N("MatMul", ["stack_rr_x", "stack_W"], ["stack_rr_mm"], name="stack_matmul"),
        N("Add", ["stack_rr_mm", "stack_b"], ["stack_rr_lin"], name="stack_add_b"),
        N("Add", ["stack_logp", "stack_rr_lin"], ["stack_logits"], name="stack_add"),
        N("Softmax", ["stack_logits"], ["probabilities"], axis=1, name="stack_softmax"),
    ]
    return inits, nodes


def append_stacker(src, out, n_rr, inits, nodes, doc):
    """Appends a stacker to the network `src` (input `ecg`, output `probabilities`,
    opset >= 13) and saves the graph to `out`: the network's output becomes `p_cnn`, a
    second input `rr` [batch, n_rr] is added, then the stacker's initializers and nodes
    (which read `p_cnn` and `rr` and end in `probabilities`). Returns (opset, IR
    version)."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(src)
    g = m.graph
    opset = {o.domain: o.version for o in m.opset_import}.get("", 0)
    if opset < 13:  # Clip with min/max inputs: 11; Softmax over one axis only: 13
        raise SystemExit(f"{src}: opset {opset} < 13")
    if [i.name for i in g.input] != ["ecg"] or [o.name for o in g.output] != ["probabilities"]:
        raise SystemExit(f"{src}: unexpected inputs/outputs")
    used = {t for n in g.node for t in list(n.input) + list(n.output)} | \
           {i.name for i in g.initializer} | {n.name for n in g.node}
    new = {"rr", P_CNN} | {i.name for i in inits} | {n.name for n in nodes} | \
          {t for n in nodes for t in n.output}
    new.discard("probabilities")  # the network's output, renamed to p_cnn below
    if used & new:
        raise SystemExit(f"name clash: {used & new}")
    for n in g.node:
        for j, o in enumerate(n.output):
            if o == "probabilities":
                n.output[j] = P_CNN
        for j, i in enumerate(n.input):
            if i == "probabilities":
                n.input[j] = P_CNN
    for vi in g.value_info:
        if vi.name == "probabilities":
            vi.name = P_CNN
    batch_dim = g.input[0].type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_param if batch_dim.dim_param else (batch_dim.dim_value or None)
    g.input.append(helper.make_tensor_value_info("rr", TensorProto.FLOAT, [batch, n_rr]))
    g.initializer.extend(inits)
    g.node.extend(nodes)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, 4]))
    m.doc_string = doc
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, out)
    return opset, m.ir_version


def build_onnx(sc, W, b):
    inits, nodes = linear_stacker(sc, W, b)
    return append_stacker(
        SRC_ONNX, OUT_ONNX, NF, inits, nodes,
        "af-cnn + residual RR stacker (models/af-cnn/stack_rr.py): probabilities = "
        "Softmax(Log(p_cnn + 1e-6) + Clip((rr - mu) / sd, -5, 5) @ W + b); "
        "inputs ecg [batch,1,3750] raw mV at 125 Hz, rr [batch,8] af_rr_v1 f0..f7")


def io_desc(sess):
    return {"inputs": [[i.name, i.type, i.shape] for i in sess.get_inputs()],
            "outputs": [[o.name, o.type, o.shape] for o in sess.get_outputs()]}


def verify_and_time(V, p, sc, W, b):
    x = np.load(V["prefix"] + ".npy", mmap_mode="r")
    rows, f = V["rows"], V["feats"]
    s_rr, s_cnn = cnn.ort_session(OUT_ONNX), cnn.ort_session(SRC_ONNX)
    out = np.concatenate([s_rr.run(["probabilities"], {
        "ecg": np.ascontiguousarray(x[rows[i:i + BATCH]], np.float32),
        "rr": f[i:i + BATCH]})[0] for i in range(0, len(rows), BATCH)])
    ref = stack_probs(f.astype(np.float64), p.astype(np.float64), sc, W, b)
    maxdiff = float(np.abs(out.astype(np.float64) - ref).max())
    # throughput: the same 64 validation windows, both files, repeats interleaved
    xe = np.ascontiguousarray(x[rows[:BATCH]], np.float32)
    xr = f[:BATCH]
    feeds = {"af_cnn.onnx": (s_cnn, {"ecg": xe}), "af_cnn_rr.onnx": (s_rr, {"ecg": xe, "rr": xr})}
    for s, fd in feeds.values():
        for _ in range(3):
            s.run(None, fd)
    rates = {k: [] for k in feeds}
    for _ in range(5):
        for k, (s, fd) in feeds.items():
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 2.0:
                s.run(None, fd)
                n += 1
            rates[k].append(n * BATCH / (time.perf_counter() - t0))
    thr = {"batch": BATCH, "intra_op_threads": 1, "repeats": 5, "seconds_per_repeat": 2.0,
           "load_average_1min": round(os.getloadavg()[0], 2)}
    for k, r in rates.items():
        thr[k] = {"windows_per_s_median": round(float(np.median(r)), 1),
                  "windows_per_s_best": round(float(np.max(r)), 1)}
    return maxdiff, thr, io_desc(s_rr)


# ---------------------------------------------------------------- main ----------
def main():
    V = load_validation()
    f64 = V["feats"].astype(np.float64)
    rec_of, y_rec = V["rec_of"], V["y_rec"]
    nw, nr = len(rec_of), len(y_rec)
    print(f"export: {V['n_export_rows']} windows; validation part (held-out and train "
          f"dropped): {nr} records, {nw} windows; records per class "
          f"{dict(zip(CLASSES, np.bincount(y_rec, minlength=4).tolist()))}")
    p = cnn_window_probs(V).astype(np.float64)
    zero = int((np.abs(f64).sum(1) == 0).sum())
    few = int((V["n_rr"] < 2).sum())
    print(f"validation windows with n_rr < 2: {few}; with all 8 features 0: {zero}; "
          f"quality_ok false: {int((~V['quality_ok']).sum())}")

    idx = np.arange(nw)
    sc, W, b = fit(f64, p, rec_of, y_rec, idx)
    print("feature mean:", np.round(sc[0], 4).tolist())
    print("feature sd:  ", np.round(sc[1], 4).tolist())
    pw = stack_probs(f64, p, sc, W, b)
    _, pr_stack = record_mean(pw, rec_of)
    _, pr_cnn = record_mean(p, rec_of)
    ins = {"af-cnn": rnd(cnn.f1_scores(y_rec, pr_cnn.argmax(1))),
           "stack": rnd(cnn.f1_scores(y_rec, pr_stack.argmax(1)))}
    t_stack, f1a_stack = cnn.af_threshold(pr_stack, y_rec)
    t_cnn, f1a_cnn = cnn.af_threshold(pr_cnn, y_rec)
    print("validation IN-SAMPLE (stacker fitted and scored on the same records; optimistic):")
    for k, v in ins.items():
        print(f"  {k:8s} {fmt(v)}")
    print(f"AF finding threshold (validation): stack {t_stack} (F1 A {f1a_stack:.4f}); "
          f"af-cnn alone {t_cnn} (F1 A {f1a_cnn:.4f})")
    C = cv(f64, p, rec_of, y_rec)
    print(f"validation stratified {FOLDS}-fold CV by record x{REPEATS} (honest estimate):")
    print(f"  af-cnn   {fmt(C['af-cnn'])}")
    print(f"  stack    {fmt(C['stack_mean'])}   (sd over repeats "
          + " ".join(f"{c}={C['stack_sd_over_repeats'][c]:.4f}" for c in CLASSES + ["mean_NAO"]) + ")")
    print("  stack - af-cnn mean " + " ".join(f"{c}={C['stack_minus_afcnn_mean'][c]:+.4f}"
                                            for c in CLASSES + ["mean_NAO"]))

    opset, ir = build_onnx(sc, W, b)
    maxdiff, thr, io = verify_and_time(V, p, sc, W, b)
    digest = sha256(OUT_ONNX)
    print(f"wrote {OUT_ONNX} (opset {opset}, IR {ir}, sha256 {digest})")
    print(f"  io: {io}")
    print(f"  max |onnx - numpy| over {nw} validation windows: {maxdiff:.3g}")
    for k in ("af_cnn.onnx", "af_cnn_rr.onnx"):
        print(f"  {k:15s} {thr[k]['windows_per_s_median']:.0f} windows/s median, "
              f"{thr[k]['windows_per_s_best']:.0f} best (batch {BATCH}, 1 thread, load "
              f"{thr['load_average_1min']})")

    out = {
        "form": "probabilities = softmax(log(p_cnn + 1e-6) + clip((rr - mu) / sd, -5, 5) @ W + b); "
                "record = mean of its windows' probabilities",
        "script": "models/af-cnn/stack_rr.py",
        "onnx": {"file": "af_cnn_rr.onnx", "sha256": digest, "base": "af_cnn.onnx",
                 "base_sha256": sha256(SRC_ONNX), "opset": opset, "ir_version": ir, **io},
        "features": FEATURES, "feature_names": FEATURE_NAMES,
        "labels": CLASSES,
        "mu": dict(zip(FEATURES, map(float, sc[0]))),
        "sd": dict(zip(FEATURES, map(float, sc[1]))),
        "W": {c: dict(zip(CLASSES, map(float, w))) for c, w in zip(FEATURES, W)},
        "b": dict(zip(CLASSES, map(float, b))),
        "eps": EPS, "clip": CLIP,
        "l2": {"W": L2, "b": L2},
        "weighting": "per window 1 / (windows of its record) (every record weighs 1); "
                     "target = the record's label; scaler = validation windows' mean / std + 1e-9",
        "fit_data": {"part": "validation (train.py validation(name) and not heldout(name))",
                     "records": nr, "windows": nw,
                     "records_per_class": dict(zip(CLASSES, np.bincount(y_rec, minlength=4).tolist())),
                     "windows_n_rr_lt_2": few, "windows_all_features_zero": zero,
                     "windows_quality_not_ok": int((~V["quality_ok"]).sum()),
                     "export_csv_sha256": sha256(V["prefix"] + ".csv")},
        "af_threshold": {"rule": "train.py choose_on_validation: first t in 0.20..0.80 step 0.05 "
                                 "maximising validation record F1 of A for P(A) >= t",
                         "stack": t_stack, "stack_validation_f1_A": round(f1a_stack, 6),
                         "af-cnn": t_cnn, "af-cnn_validation_f1_A": round(f1a_cnn, 6)},
        "validation_in_sample": {"note": "stacker fitted and scored on the same records (optimistic)",
                                 **ins},
        "validation_cv": {"note": "stratified 5-fold CV by record inside validation, folds "
                                  "stack_study.strat_folds(rng(SEED + rep)); scaler and stacker "
                                  "refitted per fold", **C},
        "heldout": "not computed here (scored later by other means)",
        "verification": {"windows": nw, "max_abs_diff_onnx_vs_numpy": maxdiff},
        "throughput": thr,
    }
    with open(OUT_JSON, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(f"wrote {OUT_JSON}")


def read_labels(path):
    """`record,label` lines (an `eval af` CSV, or REFERENCE.csv) as a dict."""
    with open(path, newline="") as fh:
        return {r[0]: r[1] for r in csv.reader(fh) if r}


def reference_labels():
    return read_labels(os.path.join(cnn.data_dir_default(), "cinc2017", "REFERENCE.csv"))


def paired_f1(y, pn, po, new_label, old_label, paired_key):
    """F1s of two label vectors against `y`, each with 2,000 record-resampled bootstrap
    rounds (seed stack_study.SEED) and its confusion matrix, and their paired difference
    on the same draws under `paired_key`. Returns (that dict, new F1s, old F1s)."""
    keys = cnn.F1_KEYS
    draws = cnn.resamplings(len(y), 2000, np.random.default_rng(ss.SEED))
    fn, fo = cnn.f1_draws(y, pn, draws), cnn.f1_draws(y, po, draws)
    ci = lambda d, j: [round(v, 4) for v in cnn.ci95(d, j)]  # noqa: E731
    out = {}
    for label, p, d in ((new_label, pn, fn), (old_label, po, fo)):
        f = cnn.f1_scores(y, p)
        out[label] = {k: [round(f[k], 4)] + ci(d, j) for j, k in enumerate(keys)}
        out[label]["confusion"] = cnn.confusion(y, p).tolist()
    fa, fb = cnn.f1_scores(y, pn), cnn.f1_scores(y, po)
    out[paired_key] = {k: [round(fa[k] - fb[k], 4)] + ci(fn - fo, j) for j, k in enumerate(keys)}
    return out, fa, fb


def heldout(new_csv, old_csv, new_label="af-cnn 1.1.0 (stack)", old_label="af-cnn 1.0.0"):
    """Scores the held-out records from two `cardiostream eval af --split heldout` CSVs
    (one `record,label` line each, no header): the shipped model (af-cnn 1.1.0, this stack) and af-cnn 1.0.0,
    each with 2,000 record-resampled bootstrap rounds (the card's rule), and their
    paired difference on the same draws. Writes stack_rr_heldout.json."""
    ref = reference_labels()
    new, old = read_labels(new_csv), read_labels(old_csv)
    names = sorted(new)
    if sorted(old) != names or not all(cnn.heldout(n) for n in names):
        raise SystemExit("both CSVs must hold exactly the held-out records")
    y = np.array([CLASSES.index(ref[n]) for n in names])
    pn = np.array([CLASSES.index(new[n]) for n in names])
    po = np.array([CLASSES.index(old[n]) for n in names])
    out = {"records": len(y), "bootstrap_rounds": 2000, "seed": ss.SEED}
    short = lambda label: label.split(" (")[0].replace("af-cnn ", "")  # noqa: E731
    out.update(paired_f1(y, pn, po, new_label, old_label,
                         f"paired difference {short(new_label)} - {short(old_label)}")[0])
    for k, v in out.items():
        print(f"{k}: {v}")
    path = os.path.join(OUT_DIR, "stack_rr_heldout.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["heldout"] and len(sys.argv) in (4, 6):
        heldout(*sys.argv[2:])
    elif len(sys.argv) == 1:
        main()
    else:
        raise SystemExit("usage: stack_rr.py | stack_rr.py heldout NEW.csv OLD.csv "
                         "[NEW_LABEL OLD_LABEL]")
