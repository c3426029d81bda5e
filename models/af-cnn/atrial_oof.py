#!/usr/bin/env python3
"""af-cnn 1.3.0 candidate, step 1: the pre-registered out-of-fold comparison
(atrial_plan.md) of three residual stackers on the 5 CV networks' OOF probabilities,
its choice rule, and the chosen stacker fitted on all OOF windows.

    nice -n 10 python3 models/af-cnn/atrial_oof.py [EXPORT_PREFIX CV_DIR OUT_JSON]
    nice -n 10 python3 models/af-cnn/atrial_oof.py stay [EXPORT_PREFIX CV_DIR OUT_JSON]

defaults /tmp/atr/afcnn_inputs, /tmp/alldata/cv, /tmp/atr/oof_atrial.json. EXPORT_PREFIX =
`cardiostream eval export-inputs --model af_cnn.toml(+ atrial_features = true)`; CV_DIR
holds fold0.onnx .. fold4.onnx. The held-out rows are dropped right after reading; nothing
here touches the held-out part. The OOF probabilities are cached next to OUT_JSON
(oof_p.npz, keyed by the export and the fold networks).

Arms (all cross-fitted by fold: fitted on the other 4 folds' OOF windows, applied to the
fold's windows; network probabilities shifted by the OOF offsets 0, +0.5, 0, +0.5):
  B  linear stacker on RR 8 (stack_rr.fit) - must reproduce mean F1 0.7986 / F1 A 0.7644
  L  the same form on RR 8 + atrial 6
  M  residual MLP, 16 hidden, on standardised clipped [log p, RR 8, atrial 6]
Scoring: record = mean of its windows' probabilities, argmax; F1 of N, A, O, ~ and mean
(N, A, O) pooled over the 4,752 records and per fold; paired bootstrap (2,000 record
resamplings, train.resamplings with numpy default_rng(stack_study.SEED)), 95 % percentile
CIs. Choice (in this order):
  1. M if (M-B) F1 A >= +0.020, its CI lower bound > 0, (M-B) mean F1 >= 0, M's F1 A > B's
     in >= 4 of 5 folds;
  2. else L if (L-B) F1 A >= +0.010, (L-B) mean F1 >= 0, L's F1 A > B's in >= 4 folds;
  3. else none (1.2.0 stays).
With a choice: the chosen stacker refitted on all OOF windows (its parameters in OUT_JSON,
full precision, read by atrial_build.py) and the AF threshold = train.af_threshold on the
chosen arm's CROSS-FITTED OOF record probabilities.

Deterministic (no randomness beyond the fixed seeds; BLAS and onnxruntime on one thread).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atrial_stack as A  # noqa: E402  (sets the thread variables first)

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

cnn, srr, r4 = A.cnn, A.srr, A.r4
import stack_study as ss  # noqa: E402  (SEED; on the path atrial_stack set)
PLAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "atrial_plan.md")
PLAN_SHA = "ab19b8ce5033eafb59b96b3cb27367d45ab3936b7958ec604de324537a9dc876"
BASELINE_EXPECTED = {"mean_NAO": 0.7986, "A": 0.7644}


def stay(prefix, cv_dir, out_json):
    """The episode tracker's stay_probability check for the chosen arm (M): P(A) of the
    cross-fitted OOF windows per true class — its 5th percentile and the share >= 0.1."""
    V = A.load(prefix)
    rec_of, y, fold = V["rec_of"], V["y_rec"], V["fold"]
    p, _ = A.oof_probs(V, cv_dir, os.path.join(os.path.dirname(out_json), "oof_p.npz"))
    po = A.alldata.shifted(p.astype(np.float64), A.offsets_checked())
    pw, _ = A.crossfit_windows("mlp", V["feats"].astype(np.float64), po, rec_of, y, fold)
    for c, name in enumerate(cnn.CLASSES):
        pa = pw[y[rec_of] == c, 1]
        print(f"{name}: {len(pa)} windows, P(A) 5th percentile {np.percentile(pa, 5):.3f}, "
              f"share >= 0.1 {np.mean(pa >= 0.1):.3f}")


def main(prefix, cv_dir, out_json):
    t0 = time.time()
    assert A.sha256(PLAN) == PLAN_SHA, "atrial_plan.md changed"
    V = A.load(prefix)
    rec_of, y, fold = V["rec_of"], V["y_rec"], V["fold"]
    print(f"export {V['n_export_rows']} windows; outside the held-out part {len(y)} records, "
          f"{len(rec_of)} windows; records per fold {np.bincount(fold).tolist()}", flush=True)
    p, cached = A.oof_probs(V, cv_dir, os.path.join(os.path.dirname(out_json), "oof_p.npz"))
    print(f"OOF probabilities ({'cache' if cached else 'computed'}, {time.time() - t0:.0f} s)", flush=True)
    po = A.alldata.shifted(p.astype(np.float64), A.offsets_checked())
    F = V["feats"].astype(np.float64)
    X_rr, X_all = F[:, :8], F
    arms = {"B": ("linear", X_rr), "L": ("linear", X_all), "M": ("mlp", X_all)}
    desc = {"B": "linear residual stacker on RR 8 (stack_rr.fit)",
            "L": "linear residual stacker on RR 8 + atrial 6",
            "M": "residual MLP 16 hidden on standardised clipped [log p (4), RR 8, atrial 6], "
                 "L2 0.01, L-BFGS-B maxiter 1000, init default_rng(0)"}
    prec, pred, fit_info = {}, {}, {}
    for a, (kind, X) in arms.items():
        prec[a], infos = A.crossfit(kind, X, po, rec_of, y, fold)
        pred[a] = prec[a].argmax(1)
        fit_info[a] = infos
        print(f"arm {a} cross-fitted ({time.time() - t0:.0f} s): "
              + " ".join(f"{k}={v:.4f}" for k, v in cnn.f1_scores(y, pred[a]).items()), flush=True)
    pred_net = srr.record_mean(po, rec_of)[1].argmax(1)

    out = {"plan": PLAN, "plan_sha256": PLAN_SHA,
           "script": "atrial_oof.py (with atrial_stack.py)",
           "export_csv_sha256": A.sha256(prefix + ".csv"), "export_npy_sha256": A.sha256(prefix + ".npy"),
           "fold_onnx_sha256": A.fold_shas(cv_dir),
           "oof_class_logit_offsets": A.OOF_OFFSETS,
           "records": int(len(y)), "windows": int(len(rec_of)),
           "records_per_class": dict(zip(A.CLASSES, np.bincount(y, minlength=4).tolist())),
           "records_per_fold": np.bincount(fold).tolist(),
           "features": {"B": A.NAMES[:8], "L": A.NAMES, "M": ["log_p_" + c for c in A.CLASSES] + A.NAMES},
           "export_columns": A.COLS,
           "scoring": "record = mean of its windows' probabilities, argmax; F1 pooled over all "
                      "records and per fold; arms cross-fitted by fold",
           "arms": {}}

    for a, pr in (("network_with_offsets", pred_net), ("B", pred["B"]), ("L", pred["L"]), ("M", pred["M"])):
        out["arms"][a] = A.arm_record(y, pr, fold, desc.get(
            a, "OOF network probabilities with the OOF offsets, no stacker"))
    out["arms"]["M"]["fit_per_fold"] = fit_info["M"]

    # baseline reproduction (alldata_oof.json's cross-fitted line)
    fb = cnn.f1_scores(y, pred["B"])
    repro = {k: {"expected": v, "got": r4(fb[k])} for k, v in BASELINE_EXPECTED.items()}
    ok = all(r4(fb[k]) == v for k, v in BASELINE_EXPECTED.items())
    out["baseline_reproduction"] = {**repro, "ok": ok}
    if not ok:
        out["choice"] = None
        out["stopped"] = "baseline B does not reproduce alldata_oof.json's cross-fitted line"
        json.dump(out, open(out_json, "w"), indent=1)
        raise SystemExit(out["stopped"] + f": {repro}")

    # paired bootstrap on the same record resamplings
    draws = cnn.resamplings(len(y), A.BOOT_ROUNDS, np.random.default_rng(ss.SEED))
    fd = {a: cnn.f1_draws(y, pred[a], draws) for a in ("B", "L", "M")}
    f1 = {a: cnn.f1_scores(y, pred[a]) for a in ("B", "L", "M")}
    fold_f1 = {a: [cnn.f1_scores(y[fold == k], pred[a][fold == k]) for k in range(5)] for a in ("B", "L", "M")}
    diffs = {}
    for a, b in (("L", "B"), ("M", "B"), ("M", "L")):
        d = {}
        for j, k in enumerate(A.KEYS):
            lo, hi = cnn.ci95(fd[a] - fd[b], j)
            d[k] = {"diff": r4(f1[a][k] - f1[b][k]), "ci95": [r4(lo), r4(hi)]}
        d["per_fold_diff_A"] = [r4(fold_f1[a][k]["A"] - fold_f1[b][k]["A"]) for k in range(5)]
        d["per_fold_diff_mean_NAO"] = [r4(fold_f1[a][k]["mean_NAO"] - fold_f1[b][k]["mean_NAO"]) for k in range(5)]
        d["folds_A_higher"] = int(sum(fold_f1[a][k]["A"] > fold_f1[b][k]["A"] for k in range(5)))
        diffs[f"{a}-{b}"] = d
    out["paired_differences"] = {"bootstrap": {"rounds": A.BOOT_ROUNDS, "seed": ss.SEED,
                                               "draws": "train.resamplings(records, 2000, default_rng(stack_study.SEED))",
                                               "ci": "2.5th / 97.5th percentiles of the paired differences"},
                                 **diffs}

    # the choice rule, mechanically, on unrounded figures
    def diff(a, k):
        return f1[a][k] - f1["B"][k]

    lo_MA = cnn.ci95(fd["M"] - fd["B"], A.KEYS.index("A"))[0]
    r1 = {"dF1_A": r4(diff("M", "A")), "dF1_A_ge_0.020": bool(diff("M", "A") >= 0.020),
          "dF1_A_ci_low": r4(lo_MA), "ci_low_gt_0": bool(lo_MA > 0),
          "dmean_NAO": r4(diff("M", "mean_NAO")), "dmean_ge_0": bool(diff("M", "mean_NAO") >= 0),
          "folds_A_higher": diffs["M-B"]["folds_A_higher"],
          "folds_ge_4": bool(diffs["M-B"]["folds_A_higher"] >= 4)}
    r1["met"] = bool(r1["dF1_A_ge_0.020"] and r1["ci_low_gt_0"] and r1["dmean_ge_0"] and r1["folds_ge_4"])
    r2 = {"dF1_A": r4(diff("L", "A")), "dF1_A_ge_0.010": bool(diff("L", "A") >= 0.010),
          "dmean_NAO": r4(diff("L", "mean_NAO")), "dmean_ge_0": bool(diff("L", "mean_NAO") >= 0),
          "folds_A_higher": diffs["L-B"]["folds_A_higher"],
          "folds_ge_4": bool(diffs["L-B"]["folds_A_higher"] >= 4)}
    r2["met"] = bool(r2["dF1_A_ge_0.010"] and r2["dmean_ge_0"] and r2["folds_ge_4"])
    choice = "M" if r1["met"] else ("L" if r2["met"] else None)
    out["rule"] = {"1_M": r1, "2_L": r2 if not r1["met"] else {**r2, "note": "not needed (rule 1 met)"},
                   "choice": choice}
    out["choice"] = choice
    print(json.dumps(out["rule"], indent=1), flush=True)

    if choice is not None:
        kind, X = arms[choice]
        fit, probs = A.ARMS[kind]
        P, info = fit(X, po, rec_of, y, np.arange(len(rec_of)))
        ins = srr.record_mean(probs(X, po, P), rec_of)[1]
        fitted_on = "all OOF windows (the OOF networks' probabilities with the OOF offsets)"
        if kind == "linear":
            sc, W, b = P
            st = {"arm": choice, "kind": kind, "fitted_on": fitted_on, "windows": int(len(rec_of)),
                  "eps": A.EPS, "clip": A.CLIP, "inputs": out["features"][choice],
                  "form": "softmax(log(p + eps) + clip((rr - mu) / sd, -clip, clip) @ W + b)",
                  "mu": sc[0].tolist(), "sd": sc[1].tolist(), "W": W.tolist(), "b": b.tolist(),
                  "l2": srr.L2}
        else:
            st = A.mlp_stacker_record(choice, P, info, fitted_on, len(rec_of))
        out["stacker"] = st
        out["af_threshold"] = A.af_threshold_record(
            prec[choice], y, f"arm {choice}'s cross-fitted OOF record probabilities")
        thr, f1a = out["af_threshold"]["threshold"], out["af_threshold"]["oof_f1_A_at_threshold"]
        out["final_stacker_in_sample_oof"] = {
            "note": "the all-OOF stacker scored on the same OOF records (in-sample, optimistic)",
            "argmax": {k: r4(v) for k, v in cnn.f1_scores(y, ins.argmax(1)).items()}}
        print(f"chosen {choice}; threshold {thr} (cross-fitted OOF F1 A {f1a:.4f})")
    else:
        out["note"] = "no arm met the rule: af-cnn 1.2.0 stays, nothing is built"
    A.write_study(out, out_json, t0)


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[:1] == ["stay"]:
        stay(*(a[1:] or ["/tmp/atr/afcnn_inputs", "/tmp/alldata/cv", "/tmp/atr/oof_atrial.json"]))
        sys.exit(0)
    if len(a) not in (0, 3):
        raise SystemExit(__doc__)
    main(*(a or ["/tmp/atr/afcnn_inputs", "/tmp/alldata/cv", "/tmp/atr/oof_atrial.json"]))
