#!/usr/bin/env python3
"""af-cnn 1.4.0 candidate (distillation), step 1: the pre-registered out-of-fold
comparison of distill_plan.md: 1.3.0's MLP stacker on one fold network of the recipe (M1:
seed 20170217, S0; also M_S1, M_S2 for seeds 1 and 2) and on the fold networks of a
student trained towards the average of those three (D).

    nice -n 10 python3 models/af-cnn/distill_oof.py EXPORT_PREFIX CV_S0 CV_S1 CV_S2 CV_D OUT_JSON

EXPORT_PREFIX = `cardiostream eval export-inputs --model af_cnn.toml` (the shipped 1.3.0
manifest, `atrial_features = true`); each CV_* folder holds fold0.onnx .. fold4.onnx of
`train.py --arch v1 --cv-fold K --ema 0.998 --cv-onnx` (CV_D: with `--teachers
CV_S0,CV_S1,CV_S2`). The held-out rows are dropped right after reading; nothing here
touches the held-out part. OOF probabilities are cached next to OUT_JSON
(oof_p_s0.npz, ..., oof_p_d.npz, keyed by the export and the fold networks).

Arms (cross-fitted by fold as atrial_oof.py's arm M, with the OOF offsets 0, +0.5, 0,
+0.5): M1, M_S1, M_S2, D as above; reported beside them, not part of the rule, the
stacker on the mean of the three teachers' logits (M3) and every network alone.
Choice (distill_plan.md): D iff (D - M1) F1 A >= +0.005, (D - M1) mean F1 (N, A, O) >= 0,
D's F1 A > M1's in >= 4 of 5 folds, and D's pooled F1 A >= max(M1, M_S1, M_S2).
With the choice: D's stacker refitted on all OOF windows (atrial_oof.json's "stacker"
format) and the AF threshold = train.af_threshold on D's cross-fitted OOF record
probabilities.

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

PLAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distill_plan.md")
MIN_DF1_A = 0.005


def main(prefix, cv0, cv1, cv2, cvd, out_json):
    t0 = time.time()
    V = A.load(prefix)
    rec_of, y, fold = V["rec_of"], V["y_rec"], V["fold"]
    print(f"outside the held-out part {len(y)} records, {len(rec_of)} windows; records per fold "
          f"{np.bincount(fold).tolist()}", flush=True)
    cache = os.path.dirname(os.path.abspath(out_json))
    dirs = {"S0": cv0, "S1": cv1, "S2": cv2, "D": cvd}
    raw = {k: A.oof_probs(V, d, os.path.join(cache, f"oof_p_{k.lower()}.npz"))[0].astype(np.float64)
           for k, d in dirs.items()}
    nets = dict(raw)
    nets["S0+S1+S2"] = A.mean_logits([raw["S0"], raw["S1"], raw["S2"]])
    off = np.array(A.OOF_OFFSETS)
    po = {k: A.alldata.shifted(v, off) for k, v in nets.items()}
    F = V["feats"].astype(np.float64)
    arms = (("M1", "S0"), ("M_S1", "S1"), ("M_S2", "S2"), ("D", "D"), ("M3", "S0+S1+S2"))
    prec, pred = A.crossfit_arms(F, po, arms, rec_of, y, fold, t0)
    for net in nets:
        pred["net " + net] = srr.record_mean(po[net], rec_of)[1].argmax(1)

    out = {"plan": os.path.basename(PLAN), "plan_sha256": A.sha256(PLAN),
           "script": "distill_oof.py (with atrial_stack.py)",
           "export_csv_sha256": A.sha256(prefix + ".csv"), "export_npy_sha256": A.sha256(prefix + ".npy"),
           "fold_onnx_sha256": {k: A.fold_shas(d) for k, d in dirs.items()},
           "oof_class_logit_offsets": A.OOF_OFFSETS,
           "distill": {"alpha": cnn.DISTILL_ALPHA, "T": cnn.DISTILL_T,
                       "teachers": "the fold-K networks of S0, S1 and S2, their logits averaged"},
           "records": int(len(y)), "windows": int(len(rec_of)),
           "scoring": "record = mean of its windows' probabilities, argmax; F1 pooled over all "
                      "records and per fold; stackers cross-fitted by fold",
           }
    A.record_arms(out, y, pred, fold, {
        "M1": "MLP stacker (atrial_oof.py arm M) on the S0 fold networks",
        "M_S1": "the same on the S1 fold networks", "M_S2": "the same on the S2 fold networks",
        "D": "the same on the student fold networks (taught by S0, S1, S2)",
        "M3": "the same on the mean of the S0, S1 and S2 fold networks' logits (not part of the rule)"})

    d, rule = A.paired_rule(y, fold, pred["D"], pred["M1"], ss.SEED, MIN_DF1_A)
    f1a = {a: cnn.f1_scores(y, pred[a])["A"] for a in ("M1", "M_S1", "M_S2", "D")}
    best_single = max(f1a[a] for a in ("M1", "M_S1", "M_S2"))
    rule["F1_A_D"] = A.r4(f1a["D"])
    rule["F1_A_best_single_seed"] = A.r4(best_single)
    rule["D_ge_every_single_seed"] = bool(f1a["D"] >= best_single)
    rule["met"] = bool(rule["met"] and rule["D_ge_every_single_seed"])
    out["paired_difference_D_M1"] = d
    d3, _ = A.paired_rule(y, fold, pred["D"], pred["M3"], ss.SEED, MIN_DF1_A)
    out["paired_difference_D_M3_not_in_rule"] = d3
    A.conclude(out, d, rule, "D", lambda: A.choose_mlp(
        out, "D", F, po["D"], rec_of, y, prec["D"],
        "all OOF windows (the student OOF networks, with the OOF offsets)"), out_json, t0)


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) != 6:
        raise SystemExit(__doc__)
    main(*a)
