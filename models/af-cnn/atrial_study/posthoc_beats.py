"""POST-HOC: sensitivity of the candidate's gain to the beat positions (the Rust pipeline
would use its own beats): R positions shifted by a constant -2 / +2 samples (16 ms), or
jittered by a uniform integer in [-2, 2] per beat (seed 7), features recomputed, the
candidate re-cross-fitted. Baseline unchanged."""
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
import sys, json
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atrial_feats as af
import study as S
cnn = S.cnn
x = np.load("/tmp/alldata/afcnn_inputs.npy", mmap_mode="r")
base = cnn.f1_scores(S.y, S.crossfit_linear(S.X_base))
out = {}
for name in ("shift_-2", "shift_+2", "jitter_pm2"):
    rng = np.random.default_rng(7)
    F = np.zeros_like(S.F)
    for i, row in enumerate(S.z["rows"]):
        w = np.asarray(x[row, 0], np.float64)
        n = af.valid_length(w)
        r = af.detect_r(w[:n])
        if name == "shift_-2":
            r = r - 2
        elif name == "shift_+2":
            r = r + 2
        else:
            r = r + rng.integers(-2, 3, len(r))
        r = r[(r >= 0) & (r < n)]
        F[i] = af.features(w[:n], r)[0]
    A = af.model_columns(F)
    f = cnn.f1_scores(S.y, S.crossfit_linear(np.column_stack([S.rr, A])))
    out[name] = {"dF1_A": round(f["A"] - base["A"], 4), "dmean_NAO": round(f["mean_NAO"] - base["mean_NAO"], 4)}
    print(name, out[name], flush=True)
json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "posthoc_beats.json"), "w"), indent=1)
