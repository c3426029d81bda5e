"""POST-HOC checks (not part of the pre-registered rule): (1) placebo — the 6 atrial
columns permuted across records (whole records' windows kept together... per window rows
permuted within fold), 10 permutations, to see what adding 6 uninformative columns does;
(2) leave-one-feature-out of the candidate; (3) each feature alone added to RR8."""
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
import sys, json
import numpy as np
sys.argv = sys.argv[:1]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study as S  # reruns study.py's main part (deterministic; rewrites results.json identically)
cnn = S.cnn
base = cnn.f1_scores(S.y, S.crossfit_linear(S.X_base))
out = {"baseline": {k: round(v, 4) for k, v in base.items()}}
rng = np.random.default_rng(12345)
pl = []
for i in range(10):
    Ap = S.A.copy()
    for k in range(5):
        idx = np.flatnonzero(S.wfold == k)
        Ap[idx] = S.A[rng.permutation(idx)]
    f = cnn.f1_scores(S.y, S.crossfit_linear(np.column_stack([S.rr, Ap])))
    pl.append([f["A"] - base["A"], f["mean_NAO"] - base["mean_NAO"]])
pl = np.array(pl)
out["placebo_dA"] = [round(v, 4) for v in pl[:, 0]]
out["placebo_dmean"] = [round(v, 4) for v in pl[:, 1]]
lofo, alone = {}, {}
for j, nm in enumerate(S.ANAMES):
    keep = [c for c in range(6) if c != j]
    f = cnn.f1_scores(S.y, S.crossfit_linear(np.column_stack([S.rr, S.A[:, keep]])))
    lofo[nm] = [round(f["A"] - base["A"], 4), round(f["mean_NAO"] - base["mean_NAO"], 4)]
    f = cnn.f1_scores(S.y, S.crossfit_linear(np.column_stack([S.rr, S.A[:, [j]]])))
    alone[nm] = [round(f["A"] - base["A"], 4), round(f["mean_NAO"] - base["mean_NAO"], 4)]
out["leave_one_out_dA_dmean_vs_baseline"] = lofo
out["single_feature_added_dA_dmean_vs_baseline"] = alone
json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "posthoc.json"), "w"), indent=1)
print(json.dumps(out, indent=1))
