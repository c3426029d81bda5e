"""Detector sanity (no labels used): our mean RR vs the pipeline's f0 (mean RR), beats vs n_rr."""
import numpy as np
z = np.load("/tmp/atrial/feats.npz")
f0, m, nrr, nb = z["rr"][:, 0], z["mean_rr_s"], z["n_rr"], z["n_beats"]
ok = (f0 > 0) & (m > 0)
rel = np.abs(m[ok] - f0[ok]) / f0[ok]
print(f"windows {len(f0)}; both mean RR > 0: {ok.sum()}")
print(f"|meanRR_ours - f0| / f0: median {np.median(rel):.4f}; share <5% {np.mean(rel<0.05):.3f}; <10% {np.mean(rel<0.10):.3f}; >25% {np.mean(rel>0.25):.3f}")
d = (nb - 1) - nrr
print(f"(beats-1) - n_rr: median {np.median(d):.0f}; share |diff|<=2 {np.mean(np.abs(d)<=2):.3f}; IQR {np.percentile(d,25):.0f}..{np.percentile(d,75):.0f}")
print(f"windows with fallback (P features): {int(z['fallback'].sum())} ({z['fallback'].mean():.3%}); n_beats<4: {(nb<4).sum()}")
print(f"n_elig / (n_beats-1): median {np.median(z['n_elig'][nb>1]/(nb[nb>1]-1)):.3f}; L median {np.median(z['L'])}")
