"""Beat detector and beat-aligned atrial-activity features for one 30 s window at 125 Hz.

Everything here is plain arithmetic that can be re-implemented in Rust: biquad cascades
(coefficients printed by `python atrial_feats.py coeffs`), forward-backward filtering
with odd-extension padding, moving sums, medians, argmax, least-squares line fits.
See PLAN.md for the definitions in prose.
"""
import numpy as np
from scipy.signal import butter, sosfilt

FS = 125
PAD = 63  # 0.5 s odd-extension padding for the forward-backward filters

SOS_QRS = butter(2, [5.0, 15.0], btype="bandpass", fs=FS, output="sos")   # detector
SOS_ATR = butter(2, [1.0, 25.0], btype="bandpass", fs=FS, output="sos")   # P / QRS
SOS_F = butter(2, [4.0, 9.0], btype="bandpass", fs=FS, output="sos")      # f waves

NAMES = ["p_amp", "p_sync", "p_corr", "p_share", "pr_sd", "f_tq"]
# fallback values (window without >= 3 usable beats, or flat): "no P wave evidence"
FALLBACK = np.array([0.0, 0.0, 0.0, 0.0, 0.289, 0.0])
MIN_BEATS = 3


def filtfilt(sos, x):
    """Zero-phase: odd extension by PAD samples at both ends, biquad cascade forward
    (zero initial state), reversed, again, reversed, padding cut off."""
    n = len(x)
    p = min(PAD, n - 1)
    ext = np.concatenate([2 * x[0] - x[p:0:-1], x, 2 * x[-1] - x[-2:-p - 2:-1]])
    y = sosfilt(sos, ext)
    y = sosfilt(sos, y[::-1])[::-1]
    return y[p:p + n]


def valid_length(w):
    """Records shorter than 30 s are zero-padded at the end: the last non-zero sample
    ends the signal."""
    nz = np.flatnonzero(w)
    return int(nz[-1] + 1) if len(nz) else 0


def detect_r(x):
    """R peaks (sample indices) in x (the valid part of the window, mV).

    1. x0 = x - median(x); q = bandpass 5-15 Hz (Butterworth order 2 per edge,
       zero-phase as filtfilt()).
    2. d[n] = q[n+1] - q[n-1] (d[0] = d[-1] = 0); e = centred moving mean of d^2 over
       19 samples (152 ms).
    3. M = median over consecutive 2 s blocks (250 samples; the last partial block
       included if >= 125 samples) of max(e in block); threshold T = 0.3 M.
    4. Candidates: local maxima of e (e[n] > e[n-1] and e[n] >= e[n+1]) with e > T;
       taken in descending order of e, a candidate is kept if no kept peak lies within
       25 samples (200 ms).
    5. Search-back: for every gap between consecutive kept peaks longer than 1.66 x the
       median gap, the largest local maximum of e inside the gap that is > 0.5 T and at
       least 25 samples from both ends is added (once per gap; repeated until no change,
       at most 3 passes).
    6. Refinement: each peak moves to the argmax of |x1| within +-8 samples (64 ms) where
       x1 = bandpass 1-25 Hz of x0 (the atrial-analysis signal, see features()).
       Duplicates after refinement (<= 25 samples apart) keep the first.
    """
    n = len(x)
    if n < 3 * FS:
        return np.zeros(0, int)
    x0 = x - np.median(x)
    q = filtfilt(SOS_QRS, x0)
    d = np.zeros(n)
    d[1:-1] = q[2:] - q[:-2]
    e = np.convolve(d * d, np.ones(19) / 19, mode="same")
    blocks = [e[i:i + 250].max() for i in range(0, n, 250) if len(e[i:i + 250]) >= 125]
    M = float(np.median(blocks))
    if M <= 0:
        return np.zeros(0, int)
    T = 0.3 * M
    lm = np.flatnonzero((e[1:-1] > e[:-2]) & (e[1:-1] >= e[2:])) + 1
    cand = lm[e[lm] > T]
    order = cand[np.argsort(-e[cand], kind="stable")]
    kept = []
    for c in order:
        if all(abs(c - k) > 25 for k in kept):
            kept.append(c)
    kept = sorted(kept)
    for _ in range(3):
        if len(kept) < 3:
            break
        gaps = np.diff(kept)
        med = np.median(gaps)
        add = []
        for a, b in zip(kept[:-1], kept[1:]):
            if b - a > 1.66 * med:
                inside = lm[(lm > a + 25) & (lm < b - 25)]
                inside = inside[e[inside] > 0.5 * T]
                if len(inside):
                    add.append(int(inside[np.argmax(e[inside])]))
        if not add:
            break
        kept = sorted(kept + add)
    x1 = filtfilt(SOS_ATR, x0)
    out = []
    for k in kept:
        lo, hi = max(0, k - 8), min(n, k + 9)
        r = lo + int(np.argmax(np.abs(x1[lo:hi])))
        if not out or r - out[-1] > 25:
            out.append(r)
    return np.array(out, int)


def _detrend(S):
    """Subtract each row's least-squares line."""
    L = S.shape[1]
    t = np.arange(L) - (L - 1) / 2
    a = S.mean(1, keepdims=True)
    b = (S * t).sum(1, keepdims=True) / (t * t).sum()
    return S - a - b * t


def features(x, r):
    """The 6 atrial features of the window's valid samples x (mV) and R peaks r."""
    n = len(x)
    if len(r) < MIN_BEATS + 1 or n < 3 * FS:
        return FALLBACK.copy(), {"n_elig": 0, "L": 0, "fallback": 1}
    x0 = x - np.median(x)
    a = filtfilt(SOS_ATR, x0)
    # QRS amplitude: median over beats of peak-to-peak of a in [r-6, r+6]
    pp = [a[max(0, k - 6):k + 7].max() - a[max(0, k - 6):k + 7].min() for k in r]
    A = float(np.median(pp))
    if not A > 1e-6:
        return FALLBACK.copy(), {"n_elig": 0, "L": 0, "fallback": 1}
    rr = np.diff(r)
    med = float(np.median(rr))
    L = int(min(30, max(10, round(0.45 * med) - 8)))  # P window: [r-8-L, r-8)
    elig = [i for i in range(1, len(r))
            if rr[i - 1] >= 0.8 * med and r[i] - 8 - L >= 0]
    # f waves: 4-9 Hz band in the TQ part of every RR interval
    b = filtfilt(SOS_F, x0)
    tq = []
    for i in range(1, len(r)):
        rs = rr[i - 1] / FS
        s = r[i - 1] + int(round(FS * 0.42 * np.sqrt(rs)))
        t = r[i] - 8
        if t - s >= 8:
            tq.append(b[s:t])
    f_tq = float(np.sqrt(np.mean(np.concatenate(tq) ** 2)) / A) if tq else 0.0
    if len(elig) < MIN_BEATS:
        out = FALLBACK.copy()
        out[5] = f_tq
        return out, {"n_elig": len(elig), "L": L, "fallback": 1}
    S = np.stack([a[r[i] - 8 - L:r[i] - 8] for i in elig])
    S = _detrend(S)
    m = len(S)
    Tm = S.mean(0)
    E_T = float((Tm ** 2).mean())
    E_B = float((S ** 2).mean())
    p_amp = float(np.sqrt(E_T) / A)
    p_sync = float((m * E_T / E_B - 1) / (m - 1)) if E_B > 0 else 0.0
    # leave-one-out template correlation
    corr = np.zeros(m)
    for j in range(m):
        Tj = (m * Tm - S[j]) / (m - 1)
        sj, tj = S[j] - S[j].mean(), Tj - Tj.mean()
        den = np.sqrt((sj ** 2).sum() * (tj ** 2).sum())
        corr[j] = (sj * tj).sum() / den if den > 0 else 0.0
    p_corr = float(corr.mean())
    p_share = float((corr >= 0.5).sum() / (len(r) - 1))
    # P-peak position spread: template's extremum sign, each beat's argmax of sign*segment
    jstar = int(np.argmax(np.abs(Tm)))
    sg = 1.0 if Tm[jstar] >= 0 else -1.0
    pos = np.argmax(sg * S, axis=1)
    pr_sd = float(pos.std() / L)
    return np.array([p_amp, p_sync, p_corr, p_share, pr_sd, f_tq]), \
        {"n_elig": m, "L": L, "fallback": 0}


def model_columns(F):
    """The six columns the stackers take, from features() rows: the amplitude and the
    f-wave energy on a log scale (log(v + 1e-3)), the others as they are."""
    return np.column_stack([np.log(F[:, 0] + 1e-3), F[:, 1], F[:, 2], F[:, 3], F[:, 4],
                            np.log(F[:, 5] + 1e-3)])


def window_features(w):
    """Features of one exported window (float32 [3750]): valid part, R peaks, features."""
    n = valid_length(w)
    x = np.asarray(w[:n], np.float64)
    r = detect_r(x)
    f, info = features(x, r)
    info["n_beats"] = len(r)
    info["mean_rr_s"] = float(np.mean(np.diff(r)) / FS) if len(r) > 1 else 0.0
    return f, info


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["coeffs"]:
        for nm, s in (("QRS 5-15", SOS_QRS), ("ATR 1-25", SOS_ATR), ("F 4-9", SOS_F)):
            print(nm, np.array2string(s, precision=17, separator=", "))
