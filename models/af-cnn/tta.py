#!/usr/bin/env python3
"""Polarity averaging (test-time augmentation) of af-cnn 1.1.0, as one ONNX graph.

af_cnn_rr.onnx (af-cnn 1.1.0) is the 1.0.0 network af_cnn.onnx, whose output p_cnn goes
through the RR stacker of stack_rr.py:

    probabilities = softmax(log(p_cnn + 1e-6) + clip((rr - mu) / sd, -5, 5) @ W + b)

This script builds af_cnn_tta.onnx, the same graph with the network averaged over both
polarities of its input:

    p_tta = (p_cnn(x) + p_cnn(-x)) / 2          then the same stacker on p_tta

Surgery (nothing else changes; the stacker's weights are af_cnn_rr.onnx's own):
  ecg [B,1,3750] -> Neg -> Concat([ecg, -ecg], axis 0) [2B,1,3750] -> the network
  p_both [2B,4]  -> Reshape [2,B,4] -> ReduceMean(axis 0, keepdims 0) -> p_cnn [B,4]
  -> the stacker's Add(eps) / Log / ... as before; `rr` [B,8] untouched.
The network's internal tensors' declared batch dimension (value_info) is renamed from
`batch` to `batch_x2`, since they now hold 2B rows.

Verification (`check`), onnxruntime on one thread, on windows of a
`cardiostream eval export-inputs` export (the pipeline's own windows and rr features):
  1. the TTA graph's internal p_both: first half == af_cnn.onnx(x), second half ==
     af_cnn.onnx(-x) (the network part is unchanged);
  2. the TTA graph's output == numpy: stacker(mean of two af_cnn.onnx runs) with the
     stacker constants read from af_cnn_rr.onnx;
  3. the same numpy stacker on af_cnn.onnx(x) alone == af_cnn_rr.onnx (sanity of 2.);
  4. batch independence: the TTA graph on batches of 1 == on batches of 64.
The held-out records' windows are dropped first; no label is read.
Max |dp| of each is printed; each must be < 1e-5.

Usage (from the repository root; deterministic: same input bytes -> same output bytes):

    python models/af-cnn/tta.py                       # writes models/af-cnn/af_cnn_tta.onnx
    python models/af-cnn/tta.py check PREFIX [N]      # PREFIX.csv/.npy from eval export-inputs;
                                                      # the first N windows (default all)
    python models/af-cnn/tta.py score PART NEW.csv OLD.csv   # PART: validation | heldout
    python models/af-cnn/tta.py network PREFIX        # exploratory, the network alone

`score` reads two `cardiostream eval af` CSVs (`record,label` lines) and REFERENCE.csv
($CARDIOSTREAM_DATA/cinc2017), keeps the records of PART (train.py's validation() /
heldout()), and prints F1 (N, A, O, ~, mean N A O) of each with 2,000 record-resampled
bootstrap rounds (seed stack_study.SEED, train.py's resamplings) and the paired
differences NEW - OLD on the same draws; writes tta_PART.json beside this script.
Needs numpy, onnx, onnxruntime.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stack_rr as srr  # noqa: E402  (sha256, the stacker, record means, paired F1s)
import stack_study as ss  # noqa: E402  (SEED)
import train as cnn  # noqa: E402  (split, ONNX Runtime sessions, F1, bootstrap)

SRC = os.path.join(HERE, "af_cnn_rr.onnx")
NET = os.path.join(HERE, "af_cnn.onnx")
OUT = os.path.join(HERE, "af_cnn_tta.onnx")
P_CNN = "p_cnn"  # the network's output inside af_cnn_rr.onnx (stack_rr.py)
NEW = ["tta_ecg_neg", "tta_ecg_both", "tta_p_both", "tta_shape", "tta_p_pair", "tta_axes"]


def build(src=SRC, out=OUT):
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(src)
    g = m.graph
    opset = {o.domain: o.version for o in m.opset_import}.get("", 0)
    if opset < 18:  # ReduceMean with `axes` as an input
        raise SystemExit(f"{src}: opset {opset} < 18")
    if [i.name for i in g.input] != ["ecg", "rr"] or [o.name for o in g.output] != ["probabilities"]:
        raise SystemExit(f"{src}: unexpected inputs/outputs")
    used = {t for n in g.node for t in list(n.input) + list(n.output)} | \
           {i.name for i in g.initializer} | {n.name for n in g.node}
    if used & set(NEW):
        raise SystemExit(f"name clash: {used & set(NEW)}")
    consumers = [n for n in g.node if "ecg" in n.input]
    producers = [i for i, n in enumerate(g.node) if P_CNN in n.output]
    if len(consumers) != 1 or len(producers) != 1:
        raise SystemExit(f"{src}: expected one consumer of ecg and one producer of {P_CNN}")
    # the network = every node before the stacker (stack_rr.py appends its nodes last,
    # all named stack_*); its value_info gets the doubled batch's own symbol
    k = producers[0]
    if any(n.name.startswith("stack_") for n in g.node[:k + 1]) or \
            not all(n.name.startswith("stack_") for n in g.node[k + 1:]):
        raise SystemExit(f"{src}: the stacker's nodes are not the graph's last ones")
    net_tensors = {t for n in g.node[:k + 1] for t in n.output}
    for vi in g.value_info:
        if vi.name in net_tensors and vi.name != P_CNN:
            for d in vi.type.tensor_type.shape.dim:
                if d.dim_param == "batch":
                    d.dim_param = "batch_x2"
    # input side
    c = consumers[0]
    c.input[list(c.input).index("ecg")] = "tta_ecg_both"
    # output side
    g.node[k].output[list(g.node[k].output).index(P_CNN)] = "tta_p_both"
    g.initializer.extend([
        numpy_helper.from_array(np.array([2, -1, 4], np.int64), "tta_shape"),
        numpy_helper.from_array(np.array([0], np.int64), "tta_axes")])
    N = helper.make_node
    head = [N("Neg", ["ecg"], ["tta_ecg_neg"], name="tta_neg"),
            N("Concat", ["ecg", "tta_ecg_neg"], ["tta_ecg_both"], axis=0, name="tta_concat")]
    tail = [N("Reshape", ["tta_p_both", "tta_shape"], ["tta_p_pair"], name="tta_reshape"),
            N("ReduceMean", ["tta_p_pair", "tta_axes"], [P_CNN], keepdims=0, name="tta_mean")]
    nodes = head + list(g.node[:k + 1]) + tail + list(g.node[k + 1:])
    del g.node[:]
    g.node.extend(nodes)
    m.doc_string = ("af-cnn 1.1.0 averaged over both polarities (models/af-cnn/tta.py): "
                    "p_tta = (p_cnn(ecg) + p_cnn(-ecg)) / 2, then the RR stacker of stack_rr.py: "
                    "probabilities = Softmax(Log(p_tta + 1e-6) + Clip((rr - mu) / sd, -5, 5) @ W + b); "
                    "inputs ecg [batch,1,3750] raw mV at 125 Hz, rr [batch,8] af_rr_v1 f0..f7")
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, out)
    print(f"wrote {out} (from {os.path.basename(src)} sha256 {srr.sha256(src)[:16]}…; "
          f"sha256 {srr.sha256(out)})")


def run(sess, feeds, outputs=("probabilities",), batch=64):
    n = len(next(iter(feeds.values())))
    parts = [sess.run(list(outputs), {k: v[i:i + batch] for k, v in feeds.items()})
             for i in range(0, n, batch)]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(outputs))]


def stacker_constants(path):
    """The stacker's constants as stored in `path`'s graph (stack_rr.build_onnx)."""
    import onnx
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    return {k: init["stack_" + k].astype(np.float64)
            for k in ("eps", "mu", "sd", "clip_lo", "clip_hi", "W", "b")}


def stack(p, rr, c):
    """stack_rr.stack_probs with the graph's own constants (the graph's eps and clip,
    float32, not stack_rr's float64 ones: the check compares against what the file holds)."""
    z = np.log(p + c["eps"]) + np.clip((rr - c["mu"]) / c["sd"], c["clip_lo"], c["clip_hi"]) @ c["W"] + c["b"]
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def check(prefix, limit=None):
    import csv

    import onnx

    with open(prefix + ".csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # the held-out records' windows are dropped (train.py's rule)
    keep = [i for i, r in enumerate(rows) if not cnn.heldout(r["record"])]
    keep = keep if limit is None else keep[:int(limit)]
    rows = [rows[i] for i in keep]
    n = len(rows)
    x = np.ascontiguousarray(np.load(prefix + ".npy", mmap_mode="r")[keep], np.float32)
    rr = np.array([[float(r[f"f{i}"]) for i in range(8)] for r in rows], np.float32)
    # the TTA graph with its internal p_both exposed as a second output (in memory only)
    m = onnx.load(OUT)
    m.graph.output.append(onnx.helper.make_tensor_value_info("tta_p_both", onnx.TensorProto.FLOAT, None))
    s_dbg = cnn.ort_session(m.SerializeToString())
    s_tta, s_net, s_rr = cnn.ort_session(OUT), cnn.ort_session(NET), cnn.ort_session(SRC)
    c = stacker_constants(SRC)

    # p_both for a batch of B: rows 0..B-1 = x, rows B..2B-1 = -x
    out_b, both_b = [], []
    for i in range(0, n, 64):
        o, pb = s_dbg.run(["probabilities", "tta_p_both"], {"ecg": x[i:i + 64], "rr": rr[i:i + 64]})
        out_b.append(o)
        both_b.append(pb.reshape(2, -1, 4))
    out = np.concatenate(out_b)
    both = np.concatenate(both_b, axis=1)
    p_pos = run(s_net, {"ecg": x})[0].astype(np.float64)
    p_neg = run(s_net, {"ecg": -x})[0].astype(np.float64)
    p_rr = run(s_rr, {"ecg": x, "rr": rr})[0].astype(np.float64)
    p_tta = run(s_tta, {"ecg": x, "rr": rr})[0].astype(np.float64)
    p_tta_1 = run(s_tta, {"ecg": x, "rr": rr}, batch=1)[0].astype(np.float64)
    d = {
        "network part, +x half vs af_cnn.onnx(x)": np.abs(both[0] - p_pos).max(),
        "network part, -x half vs af_cnn.onnx(-x)": np.abs(both[1] - p_neg).max(),
        "TTA graph vs numpy stacker((af_cnn(x) + af_cnn(-x)) / 2)":
            np.abs(p_tta - stack((p_pos + p_neg) / 2, rr.astype(np.float64), c)).max(),
        "numpy stacker(af_cnn(x)) vs af_cnn_rr.onnx (sanity)":
            np.abs(p_rr - stack(p_pos, rr.astype(np.float64), c)).max(),
        "TTA graph batch 1 vs batch 64": np.abs(p_tta_1 - p_tta).max(),
        "debug copy vs TTA graph": np.abs(out - p_tta).max(),
    }
    print(f"{n} windows of {prefix} (held-out records dropped)")
    ok = True
    for k, v in d.items():
        print(f"  max |dp| {k}: {v:.3g}")
        ok &= v < 1e-5
    # for scale: how far apart the two polarities and the two models are
    print(f"  for scale, max |af_cnn(x) - af_cnn(-x)|: {np.abs(p_pos - p_neg).max():.3g}; "
          f"max |TTA - 1.1.0|: {np.abs(p_tta - p_rr).max():.3g}; "
          f"windows whose argmax differs (TTA vs 1.1.0): {int((p_tta.argmax(1) != p_rr.argmax(1)).sum())}")
    if not ok:
        raise SystemExit("verification FAILED")
    print("verification passed (every max |dp| < 1e-5)")


def score(part, new_csv, old_csv):
    import json

    keep = {"validation": lambda n: not cnn.heldout(n) and cnn.validation(n),
            "heldout": cnn.heldout}[part]
    ref = srr.reference_labels()
    new, old = srr.read_labels(new_csv), srr.read_labels(old_csv)
    if sorted(new) != sorted(old):
        raise SystemExit("the two CSVs hold different records")
    names = sorted(n for n in new if keep(n))
    y = np.array([cnn.CLASSES.index(ref[n]) for n in names])
    pn = np.array([cnn.CLASSES.index(new[n]) for n in names])
    po = np.array([cnn.CLASSES.index(old[n]) for n in names])
    out = {"part": part, "records": len(y),
           "records_per_class": dict(zip(cnn.CLASSES, np.bincount(y, minlength=4).tolist())),
           "bootstrap_rounds": 2000, "seed": ss.SEED,
           "new": os.path.basename(new_csv), "old": os.path.basename(old_csv),
           "labels_changed": int((pn != po).sum())}
    scored, fa, fb = srr.paired_f1(y, pn, po, "TTA", "1.1.0", "TTA - 1.1.0, paired")
    out.update(scored)
    if part == "validation":
        adopt = fa["mean_NAO"] >= fb["mean_NAO"] and fa["A"] > fb["A"]
        out["pre-registered rule"] = ("adopt only if mean F1 (N, A, O) TTA >= 1.1.0 and "
                                      "F1 A TTA > 1.1.0 (validation point estimates)")
        out["adopt"] = bool(adopt)
    for k, v in out.items():
        print(f"{k}: {v}")
    path = os.path.join(HERE, f"tta_{part}.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(f"wrote {path}")


def network(prefix):
    """Exploratory (not part of the pre-registered rule): the 1.0.0 network ALONE, no RR
    stacker (whose weights were fitted on the validation windows' p_cnn(x), which
    flatters 1.1.0 against the TTA graph there), on the validation records of an
    `eval export-inputs` export: record = mean of its windows' probabilities, label =
    argmax. p_cnn(x), p_cnn(-x) and their mean; paired bootstrap as `score`."""
    import csv

    with open(prefix + ".csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [i for i, r in enumerate(rows)
            if not cnn.heldout(r["record"]) and cnn.validation(r["record"])]
    x = np.ascontiguousarray(np.load(prefix + ".npy", mmap_mode="r")[keep], np.float32)
    rec = [rows[i]["record"] for i in keep]
    names = sorted(set(rec))
    at = {n: i for i, n in enumerate(names)}
    idx = np.array([at[r] for r in rec])
    lab = {rows[i]["record"]: rows[i]["label"] for i in keep}
    y = np.array([cnn.CLASSES.index(lab[n]) for n in names])
    s_net = cnn.ort_session(NET)
    p_pos = run(s_net, {"ecg": x})[0].astype(np.float64)
    p_neg = run(s_net, {"ecg": -x})[0].astype(np.float64)

    def labels(pw):
        return srr.record_mean(pw, idx)[1].argmax(1)

    preds = {"x": labels(p_pos), "-x": labels(p_neg), "mean": labels((p_pos + p_neg) / 2)}
    draws = cnn.resamplings(len(y), 2000, np.random.default_rng(ss.SEED))
    d = {k: cnn.f1_draws(y, p, draws) for k, p in preds.items()}
    keys = cnn.F1_KEYS
    print(f"validation: {len(names)} records, {len(keep)} windows; network alone, "
          "record = mean of windows, argmax")
    for k, p in preds.items():
        f = cnn.f1_scores(y, p)
        print(f"  p_cnn({k:>4s}): " + "  ".join(
            f"{c} {f[c]:.4f} [{np.percentile(d[k][:, j], 2.5):.4f}, "
            f"{np.percentile(d[k][:, j], 97.5):.4f}]" for j, c in enumerate(keys) if c != "~"))
    fm, fx = cnn.f1_scores(y, preds["mean"]), cnn.f1_scores(y, preds["x"])
    dd = d["mean"] - d["x"]
    print("  mean - x, paired: " + "  ".join(
        f"{c} {fm[c] - fx[c]:+.4f} [{np.percentile(dd[:, j], 2.5):+.4f}, "
        f"{np.percentile(dd[:, j], 97.5):+.4f}]" for j, c in enumerate(keys) if c != "~"))
    print(f"  records whose label differs (mean vs x): {int((preds['mean'] != preds['x']).sum())}")


if __name__ == "__main__":
    if len(sys.argv) == 1:
        build()
    elif sys.argv[1] == "check" and len(sys.argv) in (3, 4):
        check(*sys.argv[2:])
    elif sys.argv[1] == "network" and len(sys.argv) == 3:
        network(sys.argv[2])
    elif sys.argv[1] == "score" and len(sys.argv) == 5:
        score(*sys.argv[2:])
    else:
        raise SystemExit(__doc__)
