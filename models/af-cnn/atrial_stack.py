"""Shared code of the af-cnn 1.3.0 atrial-stacker study (atrial_oof.py) and build
(atrial_build.py), and of the later stacker studies (ensemble_oof.py, transfer_oof.py):
loading, the stackers, cross-fitting by fold, and the reports (per-arm F1s, the paired
comparison with its rule, the stacker and threshold records, writing); not run by itself.

Data: `cardiostream eval export-inputs --model af_cnn.toml` with `atrial_features = true`
(EXPORT_PREFIX.csv / .npy): per window record, label, window, start_s, quality_ok, n_rr,
the 8 RR features f0..f7 and the 6 atrial values of dsp/src/atrial.rs (ln_p_amp, p_sync,
p_corr, p_share, pr_sd, ln_f_tq). The held-out rows are dropped right after reading
(alldata.load_pool -> stack_rr.load_validation with the 14 columns); folds
(sha256(name) // 5) % 5.

Stackers (all on the OOF network probabilities p with the OOF class offsets applied):
  linear  probabilities = softmax(log(p + 1e-6) + clip((x - mu) / sd, -5, 5) @ W + b)
          (stack_rr.fit: L2 0.1 on W and b, 1 / windows-of-record weights)
  mlp     u = clip((concat(log(p + 1e-6), x) - mu) / sd, -5, 5)
          probabilities = softmax(log(p + 1e-6) + relu(u @ W1 + b1) @ W2 + b2)
          (16 hidden units, L2 0.01 on W1 and W2, record-weighted cross-entropy,
          init numpy default_rng(0) normal / sqrt(fan-in) and zero biases, scipy
          L-BFGS-B maxiter 1000; the atrial-feature study's secondary arm, MODEL_CARD.md)
x = the 8 RR features (arm B), or the 8 RR + 6 atrial values (arm L, M), as the
pipeline feeds them in the graph's `rr` input.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

AFCNN = os.environ.get("AFCNN_DIR", os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, AFCNN)
import train as cnn  # noqa: E402
import stack_rr as srr  # noqa: E402
import alldata  # noqa: E402

CLASSES = cnn.CLASSES
KEYS = cnn.F1_KEYS
COLS = srr.FEATURES + srr.ATRIAL  # f0..f7, then the atrial values
NAMES = list(srr.FEATURE_NAMES) + srr.ATRIAL
EPS = srr.EPS
CLIP = srr.CLIP
OOF_OFFSETS = [0.0, 0.5, 0.0, 0.5]
H, L2M, MAXITER_M = 16, 0.01, 1000
ENS_EPS = 1e-12  # floor of the probabilities whose logs mean_logits averages
BOOT_ROUNDS = 2000


def sha256(path):
    return srr.sha256(path)


def load(prefix):
    """The export's windows outside the held-out part, with the 14 feature columns
    (float32, as the graph's `rr` input holds them). alldata.load_pool's dict."""
    V = alldata.load_pool(prefix, COLS)
    assert V["feats"].shape[1] == len(COLS)
    assert not any(cnn.heldout(r) for r in V["records"])
    return V


def oof_probs(V, cv_dir, cache):
    """alldata.oof_probs (fold k's network on fold k's windows), cached in `cache` under a
    key of the export and the five fold networks."""
    key = sha256(V["prefix"] + ".npy") + "".join(sha256(os.path.join(cv_dir, f"fold{k}.onnx"))
                                                 for k in range(alldata.FOLDS))
    if os.path.exists(cache):
        z = np.load(cache)
        if "key" in z and str(z["key"]) == key and np.array_equal(z["rows"], V["rows"]):
            return z["p"], True
    p, _ = alldata.oof_probs(V, cv_dir)
    np.savez(cache, key=np.array(key), rows=V["rows"], p=p)
    return p, False


def offsets_checked():
    off = json.load(open(os.path.join(AFCNN, "alldata_oof.json")))["class_logit_offsets"]
    assert off == OOF_OFFSETS, off
    return np.array(off)


# ------------------------------------------------------------- linear ----------
def linear_fit(X, po, rec_of, y, idx):
    return srr.fit(X, po, rec_of, y, idx)  # (sc, W, b)


def linear_probs(X, po, P):
    sc, W, b = P
    return srr.stack_probs(X, po, sc, W, b)


# ---------------------------------------------------------------- MLP ----------
def mlp_train(U, off, yw, sw):
    """The study's MLP fit (its secondary arm), unchanged."""
    n, d = U.shape
    Y = np.eye(4)[yw]
    s = (sw / sw.mean())[:, None]
    rng = np.random.default_rng(0)
    w0 = np.concatenate([(rng.standard_normal((d, H)) / np.sqrt(d)).ravel(), np.zeros(H),
                         (rng.standard_normal((H, 4)) / np.sqrt(H)).ravel(), np.zeros(4)])

    def unpack(w):
        i = 0
        W1 = w[i:i + d * H].reshape(d, H); i += d * H  # noqa: E702
        b1 = w[i:i + H]; i += H  # noqa: E702
        W2 = w[i:i + H * 4].reshape(H, 4); i += H * 4  # noqa: E702
        return W1, b1, W2, w[i:i + 4]

    def f(w):
        W1, b1, W2, b2 = unpack(w)
        hp = U @ W1 + b1
        h = np.maximum(hp, 0)
        zz = off + h @ W2 + b2
        zz = zz - zz.max(1, keepdims=True)
        lp = zz - np.log(np.exp(zz).sum(1, keepdims=True))
        loss = -(s * Y * lp).sum() / n + 0.5 * L2M * ((W1 ** 2).sum() + (W2 ** 2).sum())
        g = s * (np.exp(lp) - Y) / n
        gW2 = h.T @ g + L2M * W2
        gb2 = g.sum(0)
        gh = (g @ W2.T) * (hp > 0)
        gW1 = U.T @ gh + L2M * W1
        gb1 = gh.sum(0)
        return loss, np.concatenate([gW1.ravel(), gb1, gW2.ravel(), gb2])

    r = minimize(f, w0, jac=True, method="L-BFGS-B", options=dict(maxiter=MAXITER_M))
    return unpack(r.x), {"nit": int(r.nit), "success": bool(r.success), "message": str(r.message),
                         "loss": float(r.fun)}


def mlp_fit(X, po, rec_of, y, idx):
    """Scaler on the windows idx of [log(p + 1e-6), X]; record-weighted MLP."""
    logp = np.log(po + EPS)
    Z = np.column_stack([logp, X])
    sc = srr.scaler(Z[idx])
    sw = 1.0 / np.bincount(rec_of[idx])[rec_of[idx]]
    (W1, b1, W2, b2), info = mlp_train(srr.design(Z[idx], sc), logp[idx], y[rec_of[idx]], sw)
    return (sc, W1, b1, W2, b2), info


def mlp_probs(X, po, P):
    sc, W1, b1, W2, b2 = P
    logp = np.log(po + EPS)
    u = srr.design(np.column_stack([logp, X]), sc)
    zz = logp + np.maximum(u @ W1 + b1, 0) @ W2 + b2
    zz = zz - zz.max(1, keepdims=True)
    e = np.exp(zz)
    return e / e.sum(1, keepdims=True)


ARMS = {"linear": (lambda X, po, r, y, i: (linear_fit(X, po, r, y, i), None), linear_probs),
        "mlp": (mlp_fit, mlp_probs)}


def crossfit_folds(fit_apply, rec_of, fold):
    """For each fold K, `fit_apply(tr, te)` fits on the windows tr of the other folds and
    returns (probabilities of the windows te of fold K, fit info); returns the cross-fitted
    window probabilities [windows, 4] and the per-fold fit infos."""
    wfold = fold[rec_of]
    pw = np.full((len(rec_of), 4), np.nan)
    infos = []
    for k in range(alldata.FOLDS):
        tr, te = np.flatnonzero(wfold != k), np.flatnonzero(wfold == k)
        pw[te], info = fit_apply(tr, te)
        infos.append(info)
    assert not np.isnan(pw).any()
    return pw, infos


def crossfit_windows(kind, X, po, rec_of, y, fold):
    """Fit on the other 4 folds' OOF windows, apply to the fold's windows; returns the
    cross-fitted window probabilities [windows, 4] and the per-fold fit infos."""
    fit, probs = ARMS[kind]

    def fit_apply(tr, te):
        P, info = fit(X, po, rec_of, y, tr)
        return probs(X, po, P)[te], info
    return crossfit_folds(fit_apply, rec_of, fold)


def records(pw, rec_of, y):
    """Window probabilities as record probabilities [records, 4] (the mean of a record's
    windows), every record present and in order."""
    r, prec = srr.record_mean(pw, rec_of)
    assert np.array_equal(r, np.arange(len(y)))
    return prec


def crossfit(kind, X, po, rec_of, y, fold):
    """crossfit_windows' probabilities as record probabilities [records, 4] (the mean of
    a record's windows, all in one fold), and the per-fold fit infos."""
    pw, infos = crossfit_windows(kind, X, po, rec_of, y, fold)
    return records(pw, rec_of, y), infos


# ------------------------------------------------- two-arm comparisons ----------
def r4(v):
    return round(float(v), 4)


def per_fold(y, pred, fold):
    """F1s of the records of each fold, rounded to 4 places."""
    return {str(k): {c: r4(v) for c, v in cnn.f1_scores(y[fold == k], pred[fold == k]).items()}
            for k in range(alldata.FOLDS)}


def arm_record(y, pred, fold, description=None):
    """An arm's record predictions as the studies report them: pooled and per-fold F1s
    and the confusion matrix (after its description, when given)."""
    rec = {} if description is None else {"description": description}
    rec.update(pooled={k: r4(v) for k, v in cnn.f1_scores(y, pred).items()},
               per_fold=per_fold(y, pred, fold), confusion=cnn.confusion(y, pred).tolist())
    return rec


def fold_shas(cv_dir):
    """sha256 of the fold networks fold0.onnx .. fold4.onnx in cv_dir."""
    return {f"fold{k}": sha256(os.path.join(cv_dir, f"fold{k}.onnx")) for k in range(alldata.FOLDS)}


def write_study(out, out_json, t0):
    """Ends a study's report (the held-out part not scored, wall time since t0) and
    writes it to out_json."""
    out["heldout"] = "not scored"
    out["wall_s"] = round(time.time() - t0)
    with open(out_json, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(f"wrote {out_json}")


def mean_logits(ps):
    """softmax of the mean of networks' log-probabilities (= of their logits)."""
    z = np.mean([np.log(p.astype(np.float64) + ENS_EPS) for p in ps], axis=0)
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def conclude(out, paired, rule, arm, build, out_json, t0):
    """Ends a study under its rule: out["rule"], out["choice"] (`arm` iff the rule is
    met), the paired differences and the rule printed; then `build()` (the chosen arm's
    stacker and threshold into `out`) when met, else the note that nothing is built; and
    write_study."""
    out["rule"] = rule
    out["choice"] = arm if rule["met"] else None
    print(json.dumps({"paired": paired, "rule": rule}, indent=1), flush=True)
    if rule["met"]:
        build()
    else:
        out["note"] = "the rule is not met: af-cnn 1.3.0 stays, nothing is built"
    write_study(out, out_json, t0)


def paired_rule(y, fold, new, old, seed, min_df1_a=0.005):
    """The study rule of ensemble_plan.md and transfer_plan.md: `new` against `old`
    (record predictions), paired bootstrap (BOOT_ROUNDS record resamplings with
    default_rng(seed)), and the rule: F1 of A up by >= min_df1_a, mean F1 (N, A, O) not
    down, F1 of A higher in >= 4 of the 5 folds. Returns (paired differences, rule)."""
    draws = cnn.resamplings(len(y), BOOT_ROUNDS, np.random.default_rng(seed))
    f1 = {a: cnn.f1_scores(y, p) for a, p in (("new", new), ("old", old))}
    fd = {a: cnn.f1_draws(y, p, draws) for a, p in (("new", new), ("old", old))}
    ff = {a: [cnn.f1_scores(y[fold == k], p[fold == k]) for k in range(alldata.FOLDS)]
          for a, p in (("new", new), ("old", old))}
    d = {}
    for j, k in enumerate(KEYS):
        lo, hi = cnn.ci95(fd["new"] - fd["old"], j)
        d[k] = {"diff": r4(f1["new"][k] - f1["old"][k]), "ci95": [r4(lo), r4(hi)]}
    folds = range(alldata.FOLDS)
    d["per_fold_diff_A"] = [r4(ff["new"][k]["A"] - ff["old"][k]["A"]) for k in folds]
    d["per_fold_diff_mean_NAO"] = [r4(ff["new"][k]["mean_NAO"] - ff["old"][k]["mean_NAO"]) for k in folds]
    d["folds_A_higher"] = int(sum(ff["new"][k]["A"] > ff["old"][k]["A"] for k in folds))
    dA = f1["new"]["A"] - f1["old"]["A"]
    dm = f1["new"]["mean_NAO"] - f1["old"]["mean_NAO"]
    rule = {"dF1_A": r4(dA), f"dF1_A_ge_{min_df1_a}": bool(dA >= min_df1_a), "dmean_NAO": r4(dm),
            "dmean_ge_0": bool(dm >= 0), "folds_A_higher": d["folds_A_higher"],
            "folds_ge_4": bool(d["folds_A_higher"] >= 4)}
    rule["met"] = bool(dA >= min_df1_a and dm >= 0 and d["folds_A_higher"] >= 4)
    return d, rule


def mlp_stacker_record(arm, P, info, fitted_on, windows):
    """An MLP stacker's parameters in atrial_oof.json's "stacker" format (what
    atrial_build.stacker_params reads)."""
    sc, W1, b1, W2, b2 = P
    return {"arm": arm, "kind": "mlp", "fitted_on": fitted_on, "windows": int(windows),
            "eps": EPS, "clip": CLIP, "inputs": ["log_p_" + c for c in CLASSES] + NAMES,
            "form": "u = clip((concat(log(p + eps), rr) - mu) / sd, -clip, clip); "
                    "softmax(log(p + eps) + relu(u @ W1 + b1) @ W2 + b2)",
            "mu": sc[0].tolist(), "sd": sc[1].tolist(), "W1": W1.tolist(), "b1": b1.tolist(),
            "W2": W2.tolist(), "b2": b2.tolist(), "hidden": H, "l2": L2M, "fit": info}


def af_threshold_record(prec, y, on):
    """train.af_threshold on cross-fitted record probabilities, as the studies report it."""
    thr, f1a = cnn.af_threshold(prec, y)
    return {"rule": "train.af_threshold (first t of 0.20..0.80 step 0.05 with the best record "
                    "F1 of A for P(A) >= t)", "on": on, "threshold": thr,
            "oof_f1_A_at_threshold": r4(f1a)}


def crossfit_arms(F, po, arms, rec_of, y, fold, t0):
    """The studies' arms: for each (arm, network) of `arms`, the MLP stacker cross-fitted
    by fold on po[network] (crossfit "mlp"), printed as it goes. Returns the cross-fitted
    record probabilities and their argmax per arm."""
    prec, pred = {}, {}
    for arm, net in arms:
        prec[arm], _ = crossfit("mlp", F, po[net], rec_of, y, fold)
        pred[arm] = prec[arm].argmax(1)
        print(f"arm {arm} ({net}) cross-fitted ({time.time() - t0:.0f} s): "
              + " ".join(f"{k}={v:.4f}" for k, v in cnn.f1_scores(y, pred[arm]).items()), flush=True)
    return prec, pred


def record_arms(out, y, pred, fold, desc):
    """out["arms"]: arm_record of every prediction, described by `desc` (the rest are the
    networks alone, with the OOF offsets and no stacker)."""
    out["arms"] = {a: arm_record(y, pr, fold, desc.get(
        a, "OOF network probabilities with the OOF offsets, no stacker")) for a, pr in pred.items()}


def choose_mlp(out, arm, F, po, rec_of, y, prec, fitted_on):
    """A study's chosen arm: its MLP stacker refitted on all OOF windows (`po`, the arm's
    network probabilities) into out["stacker"], and the AF threshold from the arm's
    cross-fitted record probabilities `prec` into out["af_threshold"]."""
    P, info = mlp_fit(F, po, rec_of, y, np.arange(len(rec_of)))
    out["stacker"] = mlp_stacker_record(arm, P, info, fitted_on, len(rec_of))
    out["af_threshold"] = af_threshold_record(prec, y, f"arm {arm}'s cross-fitted OOF record probabilities")
    thr, f1a = out["af_threshold"]["threshold"], out["af_threshold"]["oof_f1_A_at_threshold"]
    print(f"chosen {arm}; threshold {thr} (cross-fitted OOF F1 A {f1a:.4f})")
