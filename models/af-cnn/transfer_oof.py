#!/usr/bin/env python3
"""The pre-registered study of transfer_plan.md: 1.3.0's MLP stacker fitted on one
network's out-of-fold outputs (T1, seed 20170217) or on two networks' (T2, seeds
20170217 and 1), each judged on the outputs of a third network it has never seen (seed 2).

    nice -n 10 python3 models/af-cnn/transfer_oof.py EXPORT_PREFIX CV_S0 CV_S1 CV_S2 OUT_JSON

EXPORT_PREFIX = `cardiostream eval export-inputs --model af_cnn.toml` (1.3.0's manifest);
CV_Sx hold fold0.onnx .. fold4.onnx of `train.py --arch v1 --cv-fold K --ema 0.998
--cv-onnx` with the default seed, `--seed 1` and `--seed 2`. The held-out rows are
dropped right after reading; nothing here touches the held-out part. OOF probabilities
are cached next to OUT_JSON (oof_p_s0.npz, oof_p_s1.npz, oof_p_s2.npz).

Cross-fitted by fold K: each stacker is fitted on the windows of the other 4 folds, then
applied to S2's outputs on fold K's windows (OOF offsets 0, +0.5, 0, +0.5 throughout).
T2 sees every training window twice, once per network, each copy with half the weight
(atrial_stack.mlp_fit's 1 / windows-of-record weights over both copies), the scaler on
both. Scoring, bootstrap and the rule as in transfer_plan.md. With the choice: T2
refitted on all windows of S0 and S1 (atrial_oof.json's "stacker" format) and the AF
threshold = train.af_threshold on T2's cross-fitted record probabilities.

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

PLAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transfer_plan.md")
MIN_DF1_A = 0.005


def doubled(F, pos, rec_of, idx):
    """The windows idx once per network in `pos`: features, probabilities, record of each
    row, and the row indices to fit on."""
    n = len(rec_of)
    X = np.concatenate([F] * len(pos))
    po = np.concatenate(pos)
    r = np.concatenate([rec_of] * len(pos))
    i = np.concatenate([idx + j * n for j in range(len(pos))])
    return X, po, r, i


def crossfit_on(F, fit_pos, test_po, rec_of, y, fold):
    """Record probabilities [records, 4]: for each fold K, the stacker fitted on the
    other folds' windows of every network in fit_pos, applied to test_po on fold K."""
    def fit_apply(tr, te):
        X, po, r, i = doubled(F, fit_pos, rec_of, tr)
        P, info = A.mlp_fit(X, po, r, y, i)
        return A.mlp_probs(F, test_po, P)[te], info
    pw, infos = A.crossfit_folds(fit_apply, rec_of, fold)
    return A.records(pw, rec_of, y), infos


def main(prefix, cv0, cv1, cv2, out_json):
    t0 = time.time()
    V = A.load(prefix)
    rec_of, y, fold = V["rec_of"], V["y_rec"], V["fold"]
    print(f"outside the held-out part {len(y)} records, {len(rec_of)} windows", flush=True)
    cache = os.path.dirname(os.path.abspath(out_json))
    off = np.array(A.OOF_OFFSETS)
    po = {}
    for s, d in (("S0", cv0), ("S1", cv1), ("S2", cv2)):
        p, _ = A.oof_probs(V, d, os.path.join(cache, f"oof_p_{s.lower()}.npz"))
        po[s] = A.alldata.shifted(p.astype(np.float64), off)
    F = V["feats"].astype(np.float64)
    arms = {"T1": ["S0"], "T2": ["S0", "S1"]}
    prec, pred = {}, {}
    for a, nets in arms.items():
        prec[a], _ = crossfit_on(F, [po[s] for s in nets], po["S2"], rec_of, y, fold)
        pred[a] = prec[a].argmax(1)
        print(f"arm {a} (fitted on {'+'.join(nets)}, judged on S2, {time.time() - t0:.0f} s): "
              + " ".join(f"{k}={v:.4f}" for k, v in cnn.f1_scores(y, pred[a]).items()), flush=True)
    pred["S2 network alone"] = srr.record_mean(po["S2"], rec_of)[1].argmax(1)

    out = {"plan": os.path.basename(PLAN), "plan_sha256": A.sha256(PLAN),
           "script": "transfer_oof.py (with atrial_stack.py)",
           "export_csv_sha256": A.sha256(prefix + ".csv"), "export_npy_sha256": A.sha256(prefix + ".npy"),
           "fold_onnx_sha256": {s: A.fold_shas(d) for s, d in (("S0", cv0), ("S1", cv1), ("S2", cv2))},
           "oof_class_logit_offsets": A.OOF_OFFSETS, "records": int(len(y)), "windows": int(len(rec_of)),
           "scoring": "stackers cross-fitted by fold, applied to S2's OOF outputs; record = mean of "
                      "its windows' probabilities, argmax; F1 pooled over all records and per fold",
           "arms": {a: A.arm_record(y, pr, fold) for a, pr in pred.items()}}
    d, rule = A.paired_rule(y, fold, pred["T2"], pred["T1"], ss.SEED, MIN_DF1_A)
    out["paired_difference_T2_T1"] = d

    def build():
        n = len(rec_of)
        X, pp, r, i = doubled(F, [po["S0"], po["S1"]], rec_of, np.arange(n))
        P, info = A.mlp_fit(X, pp, r, y, i)
        out["stacker"] = A.mlp_stacker_record(
            "T2", P, info, "all windows' OOF outputs of the S0 and S1 fold networks (each window "
            "once per network, half weight), with the OOF offsets", 2 * n)
        out["af_threshold"] = A.af_threshold_record(prec["T2"], y, "arm T2's cross-fitted record "
                                                    "probabilities (judged on S2)")
        thr, f1a = out["af_threshold"]["threshold"], out["af_threshold"]["oof_f1_A_at_threshold"]
        print(f"chosen T2; threshold {thr} (cross-fitted F1 A {f1a:.4f})")

    A.conclude(out, d, rule, "T2", build, out_json, t0)


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) != 5:
        raise SystemExit(__doc__)
    main(*a)
