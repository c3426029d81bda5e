#!/usr/bin/env python3
"""af-cnn 1.3.0 candidate, step 2: one ONNX graph = the 1.2.0 network (af_cnn_all.onnx,
unchanged, OOF class offsets in its head) + the stacker chosen by atrial_oof.py, its
checks, its throughput against 1.2.0's graph, and the candidate manifest.

    nice -n 10 python3 models/af-cnn/atrial_build.py [OOF_JSON EXPORT_PREFIX OUT_DIR SRC_TOML]

defaults /tmp/atr/oof_atrial.json, /tmp/atr/afcnn_inputs, /tmp/atr/cand,
/tmp/atr/af_cnn.source.toml (1.2.0's af_cnn.toml + `atrial_features = true`). Network and
1.2.0 graph: $AFCNN_DIR (default this folder)/af_cnn_all.onnx and
af_cnn_all_rr.onnx, read only.

Writes
  OUT_DIR/af_cnn_atrial_rr.onnx  inputs ecg float32 [batch, 1, 3750] (raw mV, 125 Hz) and
                                 rr float32 [batch, 14] (f0..f7, then ln_p_amp, p_sync,
                                 p_corr, p_share, pr_sd, ln_f_tq); output probabilities
                                 float32 [batch, 4] (N, A, O, ~); opset of the network (18)
  OUT_DIR/af_cnn.toml            SRC_TOML with onnx, version 1.3.0, the OOF threshold and
                                 its comments updated
  OOF_JSON's folder/build.json (atrial_build.json in the repository)   checks, sha256s, throughput

Graph (MLP stacker; p = the network's `probabilities`):
  logp = Log(p + 1e-6); u = Clip((Concat(logp, rr) - mu) / sd, -5, 5)
  probabilities = Softmax(logp + Gemm(Relu(Gemm(u, W1, b1)), W2, b2))
(linear stacker: Softmax(logp + Clip((rr - mu) / sd, -5, 5) @ W + b), as stack_rr.py).

Checks (onnxruntime, one thread): the graph against the numpy formula (atrial_stack.py,
float64) on the network's outputs for all non-held-out windows; batch 1 against batch 64;
a DC offset (+0.7 / -1 mV) and gain (x3 / x0.3) on the ecg input only, same rr. Throughput:
batch 64 (the first 64 non-held-out windows), one thread, this graph and 1.2.0's
af_cnn_all_rr.onnx alternated over 7 rounds of >= 2 s, medians. The held-out rows are
dropped on reading and nothing is scored. Deterministic apart from the timing figures:
two runs write the same ONNX bytes and manifest.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atrial_stack as A  # noqa: E402  (sets the thread variables first)

import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

cnn, srr = A.cnn, A.srr
NET = os.path.join(A.AFCNN, "af_cnn_all.onnx")
OLD = os.path.join(A.AFCNN, "af_cnn_all_rr.onnx")
OUT_NAME = "af_cnn_atrial_rr.onnx"
VERSION = "1.3.0"
BATCH = 64
ROUNDS, SECONDS = 7, 2.0


def stacker_params(st):
    sc = (np.array(st["mu"]), np.array(st["sd"]))
    if st["kind"] == "linear":
        return (sc, np.array(st["W"]), np.array(st["b"]))
    return (sc, np.array(st["W1"]), np.array(st["b1"]), np.array(st["W2"]), np.array(st["b2"]))


def build_onnx(st, P, out_path, n_rr):
    """NET with the chosen stacker appended (stack_rr.py's append_stacker): the MLP's
    nodes here, the linear stacker's from stack_rr.py."""
    from onnx import helper, numpy_helper

    if st["kind"] == "mlp":
        f32 = lambda v, name: numpy_helper.from_array(np.asarray(v, np.float32), name)  # noqa: E731
        N = helper.make_node
        sc, W1, b1, W2, b2 = P
        inits, nodes = srr.stacker_head(sc)
        inits += [f32(W1, "stack_W1"), f32(b1, "stack_b1"), f32(W2, "stack_W2"), f32(b2, "stack_b2")]
        nodes += [
            N("Concat", ["stack_logp", "rr"], ["stack_in"], axis=1, name="stack_concat"),
            N("Sub", ["stack_in", "stack_mu"], ["stack_in_c"], name="stack_sub"),
            N("Div", ["stack_in_c", "stack_sd"], ["stack_in_z"], name="stack_div"),
            N("Clip", ["stack_in_z", "stack_clip_lo", "stack_clip_hi"], ["stack_u"], name="stack_clip"),
            N("Gemm", ["stack_u", "stack_W1", "stack_b1"], ["stack_h_pre"], name="stack_gemm1"),
            N("Relu", ["stack_h_pre"], ["stack_h"], name="stack_relu"),
            N("Gemm", ["stack_h", "stack_W2", "stack_b2"], ["stack_res"], name="stack_gemm2"),
            N("Add", ["stack_logp", "stack_res"], ["stack_logits"], name="stack_add"),
            N("Softmax", ["stack_logits"], ["probabilities"], axis=1, name="stack_softmax"),
        ]
        doc = ("af-cnn 1.3.0: af_cnn_all.onnx + residual MLP stacker (atrial_build.py): "
               "logp = Log(p_cnn + 1e-6); u = Clip((Concat(logp, rr) - mu) / sd, -5, 5); "
               "probabilities = Softmax(logp + Gemm(Relu(Gemm(u, W1, b1)), W2, b2)); inputs "
               "ecg [batch,1,3750] raw mV at 125 Hz, rr [batch,14] af_rr_v1 f0..f7 then the "
               "atrial values ln_p_amp, p_sync, p_corr, p_share, pr_sd, ln_f_tq")
    else:
        inits, nodes = srr.linear_stacker(*P)
        doc = ("af-cnn 1.3.0: af_cnn_all.onnx + residual linear stacker (atrial_build.py): "
               "probabilities = Softmax(Log(p_cnn + 1e-6) + Clip((rr - mu) / sd, -5, 5) @ W + b); "
               "inputs ecg [batch,1,3750] raw mV at 125 Hz, rr [batch,14] af_rr_v1 f0..f7 then "
               "ln_p_amp, p_sync, p_corr, p_share, pr_sd, ln_f_tq")
    return srr.append_stacker(NET, out_path, n_rr, inits, nodes, doc)


def replace_block(text, key_re, comment, line):
    """Replace the line matching key_re (exactly one) and the comment lines right above
    it by `comment` lines and `line`."""
    lines = text.split("\n")
    hits = [i for i, s in enumerate(lines) if re.match(key_re, s)]
    if len(hits) != 1:
        raise SystemExit(f"manifest: {len(hits)} lines match {key_re!r}")
    i = j = hits[0]
    while j > 0 and lines[j - 1].startswith("#") and not lines[j - 1].startswith("# Contract"):
        j -= 1
    lines[j:i + 1] = [f"# {c}" if c else "#" for c in comment] + [line]
    return "\n".join(lines)


def manifest(src, kind, threshold):
    t = open(src).read()
    if not re.search(r"(?m)^atrial_features = true$", t) or not re.search(r'(?m)^rr_features = "rr"$', t):
        raise SystemExit(f"{src}: expected rr_features = \"rr\" and atrial_features = true")
    stacker = ["a residual MLP stacker appended (16 hidden units on the network's",
               "log-probabilities, the window's 8 RR features and 6 atrial-activity values),"] \
        if kind == "mlp" else \
        ["a residual linear stacker appended (on the window's 8 RR features and 6",
         "atrial-activity values),"]
    onnx_c = ["af_cnn_all.onnx (1.2.0's waveform network, trained on train + validation, its",
              "class offsets chosen on out-of-fold predictions; unchanged) with"] + stacker + [
              "fitted on the same out-of-fold predictions (atrial_oof.py, atrial_build.py):",
              "the second input `rr` takes [batch, 14]. 1.2.0's af_cnn_all_rr.onnx and",
              "1.1.0's af_cnn.onnx / af_cnn_rr.onnx are kept for history."]
    t = replace_block(t, r"^version = ", [], f'version = "{VERSION}"')
    t = replace_block(t, r"^onnx = ", onnx_c, f'onnx = "{OUT_NAME}"')
    t = replace_block(t, r'^rr_features = "rr"$', [
        "The af_rr_v1 features of the beats the DSP found in the window, [batch, 8]",
        "(stack_rr.py; MODEL_CARD.md, \"RR information beside the waveform\"), followed",
        "(atrial_features) by the 6 atrial-activity values of dsp/src/atrial.rs on the same",
        "beats: ln_p_amp, p_sync, p_corr, p_share, pr_sd, ln_f_tq; the input is [batch, 14]."],
        'rr_features = "rr"')
    t = replace_block(t, r"^threshold = ", [
        "Chosen on the cross-fitted out-of-fold record probabilities of the stacked 5 CV",
        "networks over train + validation (never the held-out part): see atrial_oof.json."],
        f"threshold = {threshold}")
    return t


def main(oof_json, prefix, out_dir, src_toml):
    t0 = time.time()
    O = json.load(open(oof_json))
    if O.get("choice") not in ("M", "L"):
        raise SystemExit(f"{oof_json}: no arm chosen ({O.get('choice')}); nothing to build")
    st = O["stacker"]
    P = stacker_params(st)
    thr = O["af_threshold"]["threshold"]
    os.makedirs(out_dir, exist_ok=True)
    out_path = os.path.join(out_dir, OUT_NAME)
    opset, ir = build_onnx(st, P, out_path, len(A.COLS))

    V = A.load(prefix)
    f = V["feats"]  # float32 [windows, 14], the graph's rr
    x = np.load(V["prefix"] + ".npy", mmap_mode="r")
    xs = np.ascontiguousarray(x[V["rows"]], np.float32)
    s_new, s_net, s_old = (cnn.ort_session(p, 1) for p in (out_path, NET, OLD))

    def run(ecg, rr, bs=BATCH):
        return np.concatenate([s_new.run(["probabilities"], {"ecg": ecg[i:i + bs], "rr": rr[i:i + bs]})[0]
                               for i in range(0, len(ecg), bs)])
    out = run(xs, f)
    pn = cnn.ort_predictor(s_net, BATCH)(xs)
    probs = A.ARMS[st["kind"]][1]
    ref = probs(f.astype(np.float64), pn.astype(np.float64), P)
    d_ref = np.abs(out.astype(np.float64) - ref)
    out1 = run(xs, f, 1)
    checks = {"windows": int(len(xs)),
              "max_abs_diff_graph_vs_numpy_formula": float(d_ref.max()),
              "batch1_vs_batch64_max_abs_diff": float(np.abs(out1 - out).max()),
              "batch1_vs_batch64_identical": bool(np.array_equal(out1, out))}
    changes = {"dc_offset_plus_0_7mV": lambda v: v + 0.7, "dc_offset_minus_1mV": lambda v: v - 1.0,
               "gain_x3": lambda v: v * 3.0, "gain_x0_3": lambda v: v * 0.3}
    ch = {}
    for k, fn in changes.items():
        ch[k] = {"max_abs_diff": float(np.abs(run(fn(xs), f) - out).max())}
    checks["ecg_only_changes_same_rr"] = ch
    # record-level consistency with the OOF study: none (different network); sanity only
    checks["all_windows_prob_sum_max_abs_dev_from_1"] = float(np.abs(out.sum(1) - 1).max())
    print(json.dumps(checks, indent=1), flush=True)
    assert checks["max_abs_diff_graph_vs_numpy_formula"] < 1e-5
    assert checks["batch1_vs_batch64_max_abs_diff"] < 1e-6

    # throughput: the same 64 windows, alternated rounds
    xe, rr14 = xs[:BATCH], f[:BATCH]
    feeds = {OUT_NAME: (s_new, {"ecg": xe, "rr": rr14}),
             "af_cnn_all_rr.onnx (1.2.0)": (s_old, {"ecg": xe, "rr": np.ascontiguousarray(rr14[:, :8])})}
    for s, fd in feeds.values():
        for _ in range(3):
            s.run(None, fd)
    rates = {k: [] for k in feeds}
    cpu = {k: [] for k in feeds}
    for _ in range(ROUNDS):
        for k, (s, fd) in feeds.items():
            n, w0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - w0 < SECONDS:
                s.run(None, fd)
                n += 1
            rates[k].append(n * BATCH / (time.perf_counter() - w0))
            cpu[k].append(n * BATCH / (time.process_time() - c0))
    k_new, k_old = list(feeds)
    ratio = [a / b for a, b in zip(rates[k_new], rates[k_old])]
    thr_ = {"batch": BATCH, "intra_op_threads": 1, "rounds": ROUNDS, "seconds_per_round": SECONDS,
            "order": "alternated per round (new, old)", "input": "the first 64 non-held-out windows",
            "load_average_1min": round(os.getloadavg()[0], 2)}
    for k in feeds:
        thr_[k] = {"windows_per_s_median": round(float(np.median(rates[k])), 1),
                   "windows_per_s_best": round(float(np.max(rates[k])), 1),
                   "windows_per_cpu_s_median": round(float(np.median(cpu[k])), 1),
                   "rounds": [round(v, 1) for v in rates[k]]}
    thr_["ratio_new_over_old_median_of_rounds"] = round(float(np.median(ratio)), 4)
    thr_["ratio_new_over_old_cpu_medians"] = round(float(np.median(cpu[k_new]) / np.median(cpu[k_old])), 4)
    print(json.dumps(thr_, indent=1), flush=True)

    toml_path = os.path.join(out_dir, "af_cnn.toml")
    toml = manifest(src_toml, st["kind"], thr)
    with open(toml_path, "w") as fh:
        fh.write(toml)
    rep = {"script": "atrial_build.py (with atrial_stack.py)",
           "oof_json": oof_json, "oof_json_sha256": A.sha256(oof_json), "arm": O["choice"],
           "network": {"file": NET, "sha256": A.sha256(NET)},
           "graph": {"file": out_path, "sha256": A.sha256(out_path), "opset": opset, "ir_version": ir,
                     **srr.io_desc(s_new)},
           "reference_1_2_0_graph": {"file": OLD, "sha256": A.sha256(OLD)},
           "manifest": {"file": toml_path, "source": src_toml, "sha256": A.sha256(toml_path),
                        "version": VERSION, "onnx": OUT_NAME},
           "af_threshold": thr, "af_threshold_oof_f1_A": O["af_threshold"]["oof_f1_A_at_threshold"],
           "export_csv_sha256": A.sha256(prefix + ".csv"),
           "checks": checks, "throughput": thr_,
           "heldout": "not scored",
           "wall_s": round(time.time() - t0)}
    bj = os.path.join(os.path.dirname(oof_json), "build.json")
    with open(bj, "w") as fh:
        json.dump(rep, fh, indent=1)
        fh.write("\n")
    print(json.dumps({k: rep[k] for k in ("graph", "manifest")}, indent=1))
    print(f"wrote {out_path}, {toml_path}, {bj}")


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) not in (0, 4):
        raise SystemExit(__doc__)
    main(*(a or ["/tmp/atr/oof_atrial.json", "/tmp/atr/afcnn_inputs", "/tmp/atr/cand",
                 "/tmp/atr/af_cnn.source.toml"]))
