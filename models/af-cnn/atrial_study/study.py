"""The pre-registered comparison (PLAN.md). Reads /tmp/atrial/feats.npz (compute.py),
writes results.json beside it."""
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
import sys, json
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as cnn  # noqa
import stack_rr as srr  # noqa
import stack_study as ss  # noqa
import alldata  # noqa
import atrial_stack  # noqa
import atrial_feats as af  # noqa

CL = cnn.CLASSES
KEYS = cnn.F1_KEYS
z = np.load("/tmp/atrial/feats.npz")
rec_of, y, fold = z["rec_of"], z["y_rec"], z["fold"]
wfold = fold[rec_of]  # posthoc.py
rr = z["rr"].astype(np.float64)
F = z["F"]
offsets = np.array(json.load(open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "alldata_oof.json")))["class_logit_offsets"])
po = alldata.shifted(z["p"].astype(np.float64), offsets)
A = af.model_columns(F)
ANAMES = ["log_p_amp", "p_sync", "p_corr", "p_share", "pr_sd", "log_f_tq"]
X_base, X_cand = rr, np.column_stack([rr, A])
NAMES_CAND = srr.FEATURE_NAMES + ANAMES


def crossfit_linear(X):
    """Record labels of the linear residual stacker, cross-fitted by fold
    (atrial_stack.py, which step 2 shares)."""
    return atrial_stack.crossfit("linear", X, po, rec_of, y, fold)[0].argmax(1)


def crossfit_mlp(X):
    """The same with the residual MLP (16 hidden units; the secondary arm)."""
    return atrial_stack.crossfit("mlp", X, po, rec_of, y, fold)[0].argmax(1)


def r4(v):
    return round(float(v), 4)


draws = cnn.resamplings(len(y), 2000, np.random.default_rng(ss.SEED))


def compare(pn, pb):
    fn, fb = cnn.f1_draws(y, pn, draws), cnn.f1_draws(y, pb, draws)
    a, b = cnn.f1_scores(y, pn), cnn.f1_scores(y, pb)
    return {k: [r4(a[k] - b[k])] + [r4(v) for v in cnn.ci95(fn - fb, j)] for j, k in enumerate(KEYS)}


def per_fold(pred):
    return {k: {c: r4(v) for c, v in cnn.f1_scores(y[fold == k], pred[fold == k]).items()} for k in range(5)}


out = {"plan_sha256": open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "PLAN.sha256")).read().split()[0]}
pred_net = srr.record_mean(po, rec_of)[1].argmax(1)
pred_b = crossfit_linear(X_base)
pred_c = crossfit_linear(X_cand)
res = {}
for name, pr in (("network_with_offsets", pred_net), ("baseline_rr8_crossfit", pred_b), ("candidate_rr8_atrial6_crossfit", pred_c)):
    res[name] = {"pooled": {k: r4(v) for k, v in cnn.f1_scores(y, pr).items()}, "per_fold": per_fold(pr),
                 "confusion": cnn.confusion(y, pr).tolist()}
out["primary"] = res
out["primary_diff_candidate_minus_baseline"] = compare(pred_c, pred_b)
dA = [res["candidate_rr8_atrial6_crossfit"]["per_fold"][k]["A"] - res["baseline_rr8_crossfit"]["per_fold"][k]["A"] for k in range(5)]
dM = [res["candidate_rr8_atrial6_crossfit"]["per_fold"][k]["mean_NAO"] - res["baseline_rr8_crossfit"]["per_fold"][k]["mean_NAO"] for k in range(5)]
out["per_fold_diff_A"] = [r4(v) for v in dA]
out["per_fold_diff_mean_NAO"] = [r4(v) for v in dM]
pc, pb = res["candidate_rr8_atrial6_crossfit"]["pooled"], res["baseline_rr8_crossfit"]["pooled"]
gA, gM, nf = pc["A"] - pb["A"], pc["mean_NAO"] - pb["mean_NAO"], sum(d > 0 for d in dA)
out["rule"] = {"dF1_A": r4(gA), "dmeanNAO": r4(gM), "folds_A_higher": int(nf),
               "GO": bool(gA >= 0.010 and gM >= 0 and nf >= 4)}
# stacker weights on all OOF windows (display)
sc, W, b = srr.fit(X_cand, po, rec_of, y, np.arange(len(rec_of)))
out["candidate_stacker_all_oof"] = {"W_per_sd": {n: dict(zip(CL, [r4(v) for v in w])) for n, w in zip(NAMES_CAND, W)},
                                    "b": dict(zip(CL, [r4(v) for v in b])),
                                    "mu": dict(zip(NAMES_CAND, [float(v) for v in sc[0]])),
                                    "sd": dict(zip(NAMES_CAND, [float(v) for v in sc[1]]))}
# per-class feature table (window level, by record label)
wy = y[rec_of]
tab = {}
for j, nm in enumerate(af.NAMES):
    tab[nm] = {c: [r4(np.median(F[wy == i, j])), r4(np.percentile(F[wy == i, j], 25)), r4(np.percentile(F[wy == i, j], 75))]
               for i, c in enumerate(CL)}
out["feature_median_q25_q75_by_class"] = tab
# univariate A-vs-O separation (window level AUC, record-weighted not applied)
from scipy.stats import rankdata
auc = {}
for j, nm in enumerate(af.NAMES):
    a_, o_ = F[wy == 1, j], F[wy == 2, j]
    rk = rankdata(np.concatenate([a_, o_]))
    auc[nm] = r4((rk[:len(a_)].sum() - len(a_) * (len(a_) + 1) / 2) / (len(a_) * len(o_)))
for j, nm in enumerate(srr.FEATURE_NAMES):
    a_, o_ = rr[wy == 1, j], rr[wy == 2, j]
    rk = rankdata(np.concatenate([a_, o_]))
    auc["rr:" + nm] = r4((rk[:len(a_)].sum() - len(a_) * (len(a_) + 1) / 2) / (len(a_) * len(o_)))
out["auc_A_vs_O_window_level"] = auc
# secondary: MLP
pred_m0 = crossfit_mlp(X_base)
pred_m1 = crossfit_mlp(X_cand)
sec = {}
for name, pr in (("mlp16_rr8", pred_m0), ("mlp16_rr8_atrial6", pred_m1)):
    sec[name] = {"pooled": {k: r4(v) for k, v in cnn.f1_scores(y, pr).items()}, "per_fold": per_fold(pr)}
sec["diff_mlp_atrial_minus_linear_baseline"] = compare(pred_m1, pred_b)
sec["diff_mlp_atrial_minus_mlp_rr8"] = compare(pred_m1, pred_m0)
sec["diff_mlp_rr8_minus_linear_baseline"] = compare(pred_m0, pred_b)
out["secondary_mlp"] = sec
json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json"), "w"), indent=1)
print(json.dumps({k: out[k] for k in ("rule", "per_fold_diff_A", "per_fold_diff_mean_NAO", "primary_diff_candidate_minus_baseline")}, indent=0))
for n_, r_ in res.items():
    print(n_, r_["pooled"])
for n_ in ("mlp16_rr8", "mlp16_rr8_atrial6"):
    print(n_, sec[n_]["pooled"])
