"""NeuroKit2's default QRS detector on the same records, lead and scoring as
`cardiostream eval qrs`, printed side by side with cardiostream's detections.

Usage: eval-qrs-neurokit.py --db DIR --cardiostream DIR [--records 100,101]
       [--tolerance-ms 150] [--tuning 101,104,...] [--label NAME]

`--cardiostream DIR` holds the `REC.csv` files written by `cardiostream eval qrs
--out DIR` (one detected beat per line, sample index); both detectors are scored
here by the same code, a port of `score` in eval/src/qrs.rs (its matching in ec57.py) (EC57 / bxb style:
greedy beat-by-beat matching within the window; EC57 variant = ventricular
flutter/fibrillation episodes between `[` and `]` excluded, reference beats and
detections alike; whole = nothing excluded). Whole records; NeuroKit2 reads lead 0 (the
first signal), cardiostream's beats are the stream's (`eval qrs`: leads 0 and 1 where the
record has two ECG leads).

With `--tuning`, gross rows are also printed for the records in that list and for
the others (held out); every gross row is repeated as a `SUMMARY <label> <half>
cs_Se cs_+P nk_Se nk_+P` line (EC57) for the summary table of eval-qrs-neurokit.sh.
"""

import argparse
import os
import sys

import neurokit2 as nk
import numpy as np
import wfdb

from ec57 import match_beats

# Beat annotation codes, as ecg_ingest::wfdb::is_beat.
BEAT_CODES = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 25, 30, 34, 35, 38, 41}


def score(reference, detected, win):
    return np.array(match_beats(reference, detected, win))


def vf_episodes(ann):
    eps, on = [], None
    for s, sym in zip(ann.sample, ann.symbol):
        if sym == "[":
            on = s
        elif sym == "]" and on is not None:
            eps.append((on, s))
            on = None
    if on is not None:
        eps.append((on, 2**63))
    return eps


def outside(v, eps):
    return [b for b in v if not any(s <= b <= e for s, e in eps)]


def se_pp(c):
    tp, fn, fp = c
    return 100.0 * tp / max(tp + fn, 1), 100.0 * tp / max(tp + fp, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--cardiostream", required=True)
    ap.add_argument("--records", default="")
    ap.add_argument("--tolerance-ms", type=float, default=150.0)
    ap.add_argument("--tuning", default="")
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    tuning = set(a.tuning.split(",")) if a.tuning else set()
    if a.records:
        names = a.records.split(",")
    else:
        names = sorted(
            f[:-4] for f in os.listdir(a.db)
            if f.endswith(".atr") and os.path.exists(os.path.join(a.db, f[:-4] + ".hea"))
        )
    print(f"cardiostream: the stream's beats (two leads where the record has two ECG leads); "
          f"NeuroKit2: lead 0; whole records, match window ±{a.tolerance_ms:g} ms; "
          f"EC57 = VF/VFL episodes excluded; NeuroKit2 {nk.__version__} "
          "ecg_peaks(ecg_clean(x, fs), fs) defaults (method 'neurokit')")
    hdr = (f"{'record':<9} {'beats':>6} | {'cardiostream EC57':^27} | {'NeuroKit2 EC57':^27}"
           f" | {'cs whole':^13} | {'nk whole':^13}")
    print(hdr)
    print(f"{'':<9} {'':>6} | {'FN':>5} {'FP':>5} {'Se%':>7} {'+P%':>7} | {'FN':>5} {'FP':>5} "
          f"{'Se%':>7} {'+P%':>7} | {'Se%':>6} {'+P%':>6} | {'Se%':>6} {'+P%':>6}")
    keys = ("cs", "nk", "csw", "nkw")
    gross = {k: np.zeros(3, dtype=np.int64) for k in keys}
    halves = {h: {k: np.zeros(3, dtype=np.int64) for k in keys} for h in ("tuning", "held-out")}
    for name in names:
        rec = wfdb.rdrecord(os.path.join(a.db, name), channels=[0])
        fs = float(rec.fs)
        x = np.nan_to_num(rec.p_signal[:, 0].astype(np.float64))
        ann = wfdb.rdann(os.path.join(a.db, name), "atr",
                         return_label_elements=["symbol", "label_store"])
        ref = [int(s) for s, code in zip(ann.sample, ann.label_store) if code in BEAT_CODES]
        _, info = nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=fs), sampling_rate=fs)
        nkb = sorted(int(p) for p in info["ECG_R_Peaks"])
        csv = os.path.join(a.cardiostream, f"{name}.csv")
        with open(csv) as f:
            csb = sorted(int(line) for line in f if line.strip())
        win = int(round(a.tolerance_ms / 1000.0 * fs))
        eps = vf_episodes(ann)
        ref_o = outside(ref, eps)
        c = {
            "cs": score(ref_o, outside(csb, eps), win),
            "nk": score(ref_o, outside(nkb, eps), win),
            "csw": score(ref, csb, win),
            "nkw": score(ref, nkb, win),
        }
        half = "tuning" if name in tuning else "held-out"
        for k in c:
            gross[k] += c[k]
            halves[half][k] += c[k]
        print(row(name, c))
        sys.stdout.flush()
    rows = [("gross", "all", gross)]
    if tuning:
        rows = [(label, half, halves[half])
                for label, half in (("gross tun", "tuning"), ("gross h-o", "held-out"))
                if halves[half]["cs"][:2].sum() > 0] + rows
    for label, half, g in rows:
        print(row(label, g))
    for label, half, g in rows:
        cs, nk_ = se_pp(g["cs"]), se_pp(g["nk"])
        print(f"SUMMARY {a.label or 'set'} {half} {cs[0]:.2f} {cs[1]:.2f} {nk_[0]:.2f} {nk_[1]:.2f}")


def row(name, c):
    cs, nk_ = se_pp(c["cs"]), se_pp(c["nk"])
    csw, nkw = se_pp(c["csw"]), se_pp(c["nkw"])
    beats = c["cs"][0] + c["cs"][1]
    return (f"{name:<9} {beats:>6} | {c['cs'][1]:>5} {c['cs'][2]:>5} {cs[0]:>7.2f} {cs[1]:>7.2f} | "
            f"{c['nk'][1]:>5} {c['nk'][2]:>5} {nk_[0]:>7.2f} {nk_[1]:>7.2f} | "
            f"{csw[0]:>6.2f} {csw[1]:>6.2f} | {nkw[0]:>6.2f} {nkw[1]:>6.2f}")


if __name__ == "__main__":
    main()
