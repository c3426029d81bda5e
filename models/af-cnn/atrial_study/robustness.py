"""Feature change under +0.7 mV DC, x3 and x0.3 gain on every 12th pool window (PLAN.md)."""
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
import sys, json
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atrial_feats as af
z = np.load("/tmp/atrial/feats.npz")
x = np.load("/tmp/alldata/afcnn_inputs.npy", mmap_mode="r")
rows = z["rows"][::12][:500]   # pool (non-held-out) rows only
out = {"windows": int(len(rows))}
base, beats = [], []
for row in rows:
    w = np.asarray(x[row, 0], np.float64)
    n = af.valid_length(w)
    r = af.detect_r(w[:n]); base.append(af.features(w[:n], r)[0]); beats.append(r)
base = np.array(base)
for name, fn in (("dc_plus_0.7mV", lambda v: v + 0.7), ("gain_x3", lambda v: v * 3.0), ("gain_x0.3", lambda v: v * 0.3)):
    fs, same = [], 0
    for row, rb in zip(rows, beats):
        w = np.asarray(x[row, 0], np.float64)
        n = af.valid_length(w)
        v = fn(w[:n])
        r = af.detect_r(v); fs.append(af.features(v, r)[0])
        same += int(len(r) == len(rb) and np.array_equal(r, rb))
    d = np.abs(np.array(fs) - base)
    out[name] = {"beats_identical_share": same / len(rows),
                 "max_abs_change": dict(zip(af.NAMES, [float(f"{v:.3g}") for v in d.max(0)])),
                 "p99_abs_change": dict(zip(af.NAMES, [float(f"{v:.3g}") for v in np.percentile(d, 99, axis=0)]))}
json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "robustness.json"), "w"), indent=1)
print(json.dumps(out, indent=1))
