#!/usr/bin/env python3
"""The all-data af-cnn candidate (MODEL_CARD.md, "All-data network with out-of-fold
choices"): class offsets, RR stacker and AF threshold chosen on out-of-fold (OOF)
predictions of the 5 cross-validation networks, then put on the network trained on all
4,752 records outside the held-out part.

  alldata.py oof CV_DIR EXPORT_PREFIX [OUT_JSON]
      CV_DIR holds fold0.onnx .. fold4.onnx (`train.py --cv-fold K --ema 0.998 --cv-onnx
      --cv-out CV_DIR`); EXPORT_PREFIX the pipeline's windows (`cardiostream eval
      export-inputs --model models/af-cnn/af_cnn.toml --out PREFIX`). The held-out rows
      are dropped right after reading the export. Each fold's network (onnxruntime, one
      thread) is run on the windows of the records of its own fold only. On the pooled
      OOF windows: class logit offsets (train.py choose_offsets, the same grid and
      search, applied to the window log-probabilities and re-averaged per record, as
      train.py does on validation), then the residual RR stacker (stack_rr.py fit: the
      same 8 features, form, L2 0.1, 1 / windows-of-record weighting, scaler from the
      windows it is fitted on) on all OOF windows with the offset-shifted network
      probabilities, then the AF threshold (train.py af_threshold) on the OOF records'
      stacked probabilities. Writes OUT_JSON (default models/af-cnn/alldata_oof.json).

  alldata.py build CAND_DIR OOF_JSON EXPORT_PREFIX
      CAND_DIR/af_cnn.onnx: the all-data network with the OOF offsets in its head
      (`train.py --all-data --from-checkpoint F --offsets ... --out CAND_DIR`). Appends
      the OOF stacker with stack_rr.py's build_onnx -> CAND_DIR/af_cnn_rr.onnx; checks it
      against the numpy formula on the non-held-out windows, and its response to a DC
      offset and gain per window; writes CAND_DIR/build.json and CAND_DIR/af_cnn.toml
      (a copy of the shipped manifest pointing at the graph, version 1.2.0, the OOF
      threshold).

  alldata.py stay CV_DIR EXPORT_PREFIX [OOF_JSON]
      The episode tracker's stay_probability check on the OOF windows: per true class,
      P(A) after the OOF offsets and stacker, its 5th percentile and the share >= 0.1.

Deterministic: no randomness; onnxruntime and BLAS on one thread.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE_DIR)
import train as cnn  # noqa: E402
import stack_rr as srr  # noqa: E402

CLASSES = cnn.CLASSES
FOLDS = 5


def load_pool(prefix, columns=None):
    """The export's windows outside the held-out part (train + validation), in the
    export's order, with stack_rr.py's checks and its feature `columns` (default the RR
    features). Returns stack_rr.load_validation's dict."""
    saved = (srr.WORK, cnn.validation)
    srr.WORK = os.path.dirname(prefix)
    assert os.path.basename(prefix) == "afcnn_inputs", "export prefix must end in afcnn_inputs"
    cnn_validation = cnn.validation
    try:
        cnn.validation = lambda name: True  # every non-held-out record
        V = srr.load_validation(columns)
    finally:
        cnn.validation = cnn_validation
        srr.WORK = saved[0]
    V["fold"] = np.array([(cnn.name_hash(r) // 5) % FOLDS for r in V["records"]])
    return V


def oof_probs(V, cv_dir):
    """Per-window OOF probabilities: fold k's network on fold k's records' windows."""
    x = np.load(V["prefix"] + ".npy", mmap_mode="r")
    p = np.full((len(V["rows"]), len(CLASSES)), np.nan)
    wfold = V["fold"][V["rec_of"]]
    shas = {}
    for k in range(FOLDS):
        path = os.path.join(cv_dir, f"fold{k}.onnx")
        shas[k] = srr.sha256(path)
        idx = np.flatnonzero(wfold == k)
        xs = np.ascontiguousarray(x[V["rows"][idx]], np.float32)
        p[idx] = cnn.ort_predictor(cnn.ort_session(path, 1), 64)(xs)
    assert not np.isnan(p).any()
    return p, shas


def rec_f1(y, pw, rec_of):
    return cnn.f1_scores(y, srr.record_mean(pw, rec_of)[1].argmax(1))


def shifted(p, off):
    z = np.log(p) + off
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def rnd(f):
    return {k: round(float(v), 4) for k, v in f.items()}


def oof(cv_dir, prefix, out_json):
    t0 = time.time()
    V = load_pool(prefix)
    rec_of, y = V["rec_of"], V["y_rec"]
    f64 = V["feats"].astype(np.float64)
    print(f"export {V['n_export_rows']} windows; outside the held-out part: "
          f"{len(y)} records, {len(rec_of)} windows; records per fold "
          f"{np.bincount(V['fold']).tolist()}", flush=True)
    p, shas = oof_probs(V, cv_dir)
    p = p.astype(np.float64)
    print(f"OOF window probabilities ({time.time() - t0:.0f} s)", flush=True)

    # class offsets: train.py's rule, on the OOF records
    offsets, _ = cnn.choose_offsets(lambda off: srr.record_mean(shifted(p, off), rec_of)[1], y)
    po = shifted(p, offsets)
    # the stacker on all OOF windows, offset-shifted network probabilities
    sc, W, b = srr.fit(f64, po, rec_of, y, np.arange(len(rec_of)))
    ps = srr.stack_probs(f64, po, sc, W, b)
    pr_stack = srr.record_mean(ps, rec_of)[1]
    threshold, f1a_t = cnn.af_threshold(pr_stack, y)
    threshold_net, f1a_net_t = cnn.af_threshold(srr.record_mean(po, rec_of)[1], y)

    res = {"network_no_offsets": rnd(rec_f1(y, p, rec_of)),
           "network_with_offsets": rnd(rec_f1(y, po, rec_of)),
           "network_with_offsets_plus_stacker": rnd(rec_f1(y, ps, rec_of))}
    # a less optimistic figure for the stacker: fitted on the other 4 folds' OOF windows
    # (offsets as chosen on all), scored on the fold
    pred = np.zeros(len(y), int)
    for k in range(FOLDS):
        tr = np.flatnonzero(V["fold"][rec_of] != k)
        te = np.flatnonzero(V["fold"][rec_of] == k)
        sck, Wk, bk = srr.fit(f64, po, rec_of, y, tr)
        r, pr = srr.record_mean(srr.stack_probs(f64, po, sck, Wk, bk), rec_of, te)
        pred[r] = pr.argmax(1)
    res["network_with_offsets_plus_stacker_crossfitted_by_fold"] = rnd(cnn.f1_scores(y, pred))
    per_fold = {}
    for k in range(FOLDS):
        rk = np.flatnonzero(V["fold"] == k)
        wk = np.flatnonzero(V["fold"][rec_of] == k)
        per_fold[k] = {what: rnd(cnn.f1_scores(y[rk], srr.record_mean(pw, rec_of, wk)[1].argmax(1)))
                       for what, pw in (("network_with_offsets", po), ("stack", ps))}
    for k, v in res.items():
        print(f"OOF {k:55s} {srr.fmt(v)}", flush=True)
    print(f"offsets {offsets.tolist()}; AF threshold {threshold} (OOF F1 of A at it "
          f"{f1a_t:.4f}); network alone's would be {threshold_net}", flush=True)
    print("W (per SD of feature, N A O ~):")
    for name, w in zip(srr.FEATURE_NAMES, W):
        print(f"  {name:10s} " + " ".join(f"{v:+.4f}" for v in w))
    print("b: " + " ".join(f"{v:+.4f}" for v in b))
    out = {
        "study": "MODEL_CARD.md, All-data network with out-of-fold choices (stop 33)",
        "script": "models/af-cnn/alldata.py oof",
        "records": int(len(y)), "windows": int(len(rec_of)),
        "records_per_class": dict(zip(CLASSES, np.bincount(y, minlength=4).tolist())),
        "records_per_fold": np.bincount(V["fold"]).tolist(),
        "fold_onnx_sha256": {f"fold{k}": v for k, v in shas.items()},
        "export_csv_sha256": srr.sha256(V["prefix"] + ".csv"),
        "class_logit_offsets": offsets.tolist(),
        "af_threshold": threshold, "af_threshold_oof_f1_A": round(f1a_t, 4),
        "af_threshold_network_alone": threshold_net,
        "oof_f1": res,
        "oof_f1_per_fold": per_fold,
        "note": "network_with_offsets and _plus_stacker are in-sample for the offsets, "
                "stacker and threshold (chosen on these same OOF predictions); the "
                "cross-fitted line refits the stacker on the other 4 folds",
        "stacker": {"mu": sc[0].tolist(), "sd": sc[1].tolist(), "W": W.tolist(),
                    "b": b.tolist(), "l2": srr.L2, "eps": srr.EPS, "clip": srr.CLIP,
                    "features": srr.FEATURE_NAMES},
        "wall_s": round(time.time() - t0),
    }
    with open(out_json, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(f"wrote {out_json}")


def build(cand_dir, oof_json, prefix):
    with open(oof_json) as fh:
        O = json.load(fh)
    st = O["stacker"]
    sc = (np.array(st["mu"]), np.array(st["sd"]))
    W, b = np.array(st["W"]), np.array(st["b"])
    srr.SRC_ONNX = os.path.join(cand_dir, "af_cnn.onnx")
    srr.OUT_ONNX = os.path.join(cand_dir, "af_cnn_rr.onnx")
    opset, ir = srr.build_onnx(sc, W, b)
    V = load_pool(prefix)
    f = V["feats"]
    x = np.load(V["prefix"] + ".npy", mmap_mode="r")
    xs = np.ascontiguousarray(x[V["rows"]], np.float32)
    s_rr, s_net = cnn.ort_session(srr.OUT_ONNX), cnn.ort_session(srr.SRC_ONNX)

    def run(ecg, rr):
        return np.concatenate([s_rr.run(["probabilities"], {"ecg": ecg[i:i + 64], "rr": rr[i:i + 64]})[0]
                               for i in range(0, len(ecg), 64)])
    out = run(xs, f)
    pn = cnn.ort_predictor(s_net, 64)(xs)
    ref = srr.stack_probs(f.astype(np.float64), pn.astype(np.float64), sc, W, b)
    checks = {"windows": int(len(xs)),
              "max_abs_diff_graph_vs_numpy_formula": float(np.abs(out - ref).max()),
              "window_dc_offset_0_7mV_max_abs_diff": float(np.abs(run(xs + 0.7, f) - out).max()),
              "window_dc_offset_minus_1mV_max_abs_diff": float(np.abs(run(xs - 1.0, f) - out).max()),
              "window_gain_x3_max_abs_diff": float(np.abs(run(xs * 3.0, f) - out).max()),
              "window_gain_x0_3_max_abs_diff": float(np.abs(run(xs * 0.3, f) - out).max()),
              "batch1_vs_batch64_max_abs_diff": float(np.abs(np.concatenate(
                  [s_rr.run(["probabilities"], {"ecg": xs[i:i + 1], "rr": f[i:i + 1]})[0]
                   for i in range(64)]) - out[:64]).max())}
    print(json.dumps(checks, indent=1))
    assert checks["max_abs_diff_graph_vs_numpy_formula"] < 1e-5
    # the candidate's manifest: the shipped one, pointing at this graph
    with open(os.path.join(HERE_DIR, "af_cnn.toml")) as fh:
        toml = fh.read()
    toml = re.sub(r'(?m)^version = .*$', 'version = "1.2.0"', toml)
    toml = re.sub(r'(?m)^onnx = .*$', f'onnx = "{srr.OUT_ONNX}"', toml)
    toml = re.sub(r'(?m)^threshold = .*$', f'threshold = {O["af_threshold"]}', toml)
    toml = re.sub(r'(?m)^model_card = .*$', f'model_card = "{os.path.join(HERE_DIR, "MODEL_CARD.md")}"', toml)
    with open(os.path.join(cand_dir, "af_cnn.toml"), "w") as fh:
        fh.write(toml)
    rep = {"network": {"file": "af_cnn.onnx", "sha256": srr.sha256(srr.SRC_ONNX)},
           "graph": {"file": "af_cnn_rr.onnx", "sha256": srr.sha256(srr.OUT_ONNX),
                     "opset": opset, "ir_version": ir, **srr.io_desc(s_rr)},
           "oof_json_offsets": O["class_logit_offsets"], "af_threshold": O["af_threshold"],
           "checks": checks}
    with open(os.path.join(cand_dir, "build.json"), "w") as fh:
        json.dump(rep, fh, indent=1)
        fh.write("\n")
    print(json.dumps({k: rep[k] for k in ("network", "graph")}, indent=1))


def stay(cv_dir, prefix, oof_json):
    """The episode tracker's `stay_probability` check (docs/accuracy-af.md §4) on the
    OOF windows: P(A) of the offset-shifted, stacked OOF probabilities per true class
    of the window's record: its 5th percentile and the shares reaching 0.1."""
    V = load_pool(prefix)
    p, _ = oof_probs(V, cv_dir)
    with open(oof_json) as fh:
        d = json.load(fh)
    st = d["stacker"]
    po = shifted(p.astype(np.float64), np.array(d["class_logit_offsets"]))
    sc = (np.array(st["mu"]), np.array(st["sd"]))
    ps = srr.stack_probs(V["feats"].astype(np.float64), po, sc, np.array(st["W"]), np.array(st["b"]))
    wy = V["y_rec"][V["rec_of"]]
    for c, name in enumerate(CLASSES):
        pa = ps[wy == c, 1]
        print(f"{name}: {len(pa)} OOF windows; P(A) 5th percentile {np.percentile(pa, 5):.3f}; "
              f"share >= 0.1: {(pa >= 0.1).mean():.3f}")


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[:1] == ["stay"] and len(a) in (3, 4):
        stay(a[1], a[2], a[3] if len(a) == 4 else os.path.join(HERE_DIR, "alldata_oof.json"))
    elif a[:1] == ["oof"] and len(a) in (3, 4):
        oof(a[1], a[2], a[3] if len(a) == 4 else os.path.join(HERE_DIR, "alldata_oof.json"))
    elif a[:1] == ["build"] and len(a) == 4:
        build(a[1], a[2], a[3])
    else:
        raise SystemExit(__doc__)
