"""Per-window atrial features + detector stats for the 4,752 non-held-out records, and
the OOF network probabilities (alldata.oof_probs). Writes /tmp/atrial/feats.npz.
The held-out rows are dropped by alldata.load_pool before anything is computed."""
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
import sys, time
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import alldata  # noqa
import atrial_feats as af  # noqa

PREFIX = "/tmp/alldata/afcnn_inputs"
t0 = time.time()
V = alldata.load_pool(PREFIX)
x = np.load(PREFIX + ".npy", mmap_mode="r")
rows = V["rows"]
F = np.zeros((len(rows), len(af.NAMES)))
info = {k: np.zeros(len(rows)) for k in ("n_beats", "mean_rr_s", "n_elig", "L", "fallback")}
for i, row in enumerate(rows):
    f, inf = af.window_features(np.asarray(x[row, 0]))
    F[i] = f
    for k in info:
        info[k][i] = inf[k]
    if i % 1000 == 0:
        print(i, f"{time.time()-t0:.0f}s", flush=True)
p = None
cache = "/tmp/atrial/oof_p.npz"
if os.path.exists(cache):
    p = np.load(cache)["p"]
else:
    p, _ = alldata.oof_probs(V, "/tmp/alldata/cv")
    np.savez(cache, p=p, rows=rows)
np.savez("/tmp/atrial/feats.npz", F=F, rows=rows, rec_of=V["rec_of"], y_rec=V["y_rec"],
         fold=V["fold"], rr=V["feats"], n_rr=V["n_rr"], p=p,
         records=np.array(V["records"]), **info)
print("done", f"{time.time()-t0:.0f}s", len(rows), "windows", len(V["y_rec"]), "records")
