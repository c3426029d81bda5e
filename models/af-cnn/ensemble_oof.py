#!/usr/bin/env python3
"""af-cnn 1.4.0 candidate, step 1: the pre-registered out-of-fold comparison
(ensemble_plan.md) of 1.3.0's MLP stacker on one fold network (M1) and on the average of
two fold networks of the same recipe, differing only in their seed (M2).

    nice -n 10 python3 models/af-cnn/ensemble_oof.py EXPORT_PREFIX CV_S0 CV_S1 OUT_JSON

EXPORT_PREFIX = `cardiostream eval export-inputs --model af_cnn.toml` (the shipped 1.3.0
manifest, `atrial_features = true`); CV_S0 and CV_S1 hold fold0.onnx .. fold4.onnx of
`train.py --arch v1 --cv-fold K --ema 0.998 --cv-onnx` with the default seed and with
`--seed 1`. The held-out rows are dropped right after reading; nothing here touches the
held-out part. Each folder's OOF probabilities are cached next to OUT_JSON
(oof_p_s0.npz, oof_p_s1.npz, keyed by the export and the fold networks).

Arms (cross-fitted by fold as atrial_oof.py's arm M: fitted on the other 4 folds' OOF
windows, applied to the fold's windows; network probabilities shifted by the OOF offsets
0, +0.5, 0, +0.5):
  M1  p = the S0 fold network
  M2  p = softmax((log(p_S0 + 1e-12) + log(p_S1 + 1e-12)) / 2), the mean of the two
      networks' logits
Scoring: record = mean of its windows' probabilities, argmax; F1 pooled over the 4,752
records and per fold; paired bootstrap (2,000 record resamplings, train.resamplings with
default_rng(stack_study.SEED)), 95 % percentile CIs. Choice: M2 iff (M2 - M1) F1 A >=
+0.005, (M2 - M1) mean F1 (N, A, O) >= 0 and M2's F1 A > M1's in >= 4 of 5 folds.
With the choice: M2's stacker refitted on all OOF windows (atrial_oof.json's "stacker"
format, read by atrial_build.stacker_params) and the AF threshold = train.af_threshold on
M2's cross-fitted OOF record probabilities.

Deterministic (no randomness beyond the fixed seeds; BLAS and onnxruntime on one thread).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atrial_stack as A  # noqa: E402  (sets the thread variables first)

import time  # noqa: E402

import numpy as np  # noqa: E402

cnn, srr = A.cnn, A.srr
import stack_study as ss  # noqa: E402  (SEED; on the path atrial_stack set)

PLAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ensemble_plan.md")
MIN_DF1_A = 0.005


def main(prefix, cv0, cv1, out_json):
    t0 = time.time()
    V = A.load(prefix)
    rec_of, y, fold = V["rec_of"], V["y_rec"], V["fold"]
    print(f"outside the held-out part {len(y)} records, {len(rec_of)} windows; records per fold "
          f"{np.bincount(fold).tolist()}", flush=True)
    cache = os.path.dirname(os.path.abspath(out_json))
    p0, _ = A.oof_probs(V, cv0, os.path.join(cache, "oof_p_s0.npz"))
    p1, _ = A.oof_probs(V, cv1, os.path.join(cache, "oof_p_s1.npz"))
    off = np.array(A.OOF_OFFSETS)
    nets = {"S0": p0.astype(np.float64), "S1": p1.astype(np.float64), "S0+S1": A.mean_logits([p0, p1])}
    po = {k: A.alldata.shifted(v, off) for k, v in nets.items()}
    F = V["feats"].astype(np.float64)
    prec, pred = A.crossfit_arms(F, po, (("M1", "S0"), ("M2", "S0+S1"), ("M_S1", "S1")),
                                 rec_of, y, fold, t0)
    for net in nets:
        pred["net " + net] = srr.record_mean(po[net], rec_of)[1].argmax(1)

    out = {"plan": os.path.basename(PLAN), "plan_sha256": A.sha256(PLAN),
           "script": "ensemble_oof.py (with atrial_stack.py)",
           "export_csv_sha256": A.sha256(prefix + ".csv"), "export_npy_sha256": A.sha256(prefix + ".npy"),
           "fold_onnx_sha256": {"S0": A.fold_shas(cv0), "S1": A.fold_shas(cv1)},
           "oof_class_logit_offsets": A.OOF_OFFSETS, "ensemble": "softmax(mean(log(p + 1e-12)))",
           "records": int(len(y)), "windows": int(len(rec_of)),
           "scoring": "record = mean of its windows' probabilities, argmax; F1 pooled over all "
                      "records and per fold; stackers cross-fitted by fold",
           }
    A.record_arms(out, y, pred, fold, {
        "M1": "MLP stacker (atrial_oof.py arm M) on the S0 fold networks",
        "M2": "the same on the mean of the S0 and S1 fold networks' logits",
        "M_S1": "the same on the S1 fold networks (not part of the rule)"})

    d, rule = A.paired_rule(y, fold, pred["M2"], pred["M1"], ss.SEED, MIN_DF1_A)
    out["paired_difference_M2_M1"] = d
    A.conclude(out, d, rule, "M2", lambda: A.choose_mlp(
        out, "M2", F, po["S0+S1"], rec_of, y, prec["M2"], "all OOF windows (the mean of the S0 "
        "and S1 OOF networks' logits, with the OOF offsets)"), out_json, t0)


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) != 4:
        raise SystemExit(__doc__)
    main(*a)
