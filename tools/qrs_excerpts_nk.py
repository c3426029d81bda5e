#!/usr/bin/env python3
"""NeuroKit2 beside cardiostream's QRS detector on the short noisy recordings of
`spot_check_noisy_excerpts` (dsp/tests/mitdb.rs), both scored by the same code.

Usage:
    mkdir -p DIR   # an empty one: every JSON file below it is read
    QRS_SPOT_DUMP_DIR=DIR cargo test --release -p ecg-dsp --test mitdb \\
        spot_check_noisy_excerpts -- --nocapture | tee DIR/rust.txt
    .cardiostream/neurokit-venv/bin/python tools/qrs_excerpts_nk.py DIR \\
        [--rust-table DIR/rust.txt]

The test writes every excerpt (10 s of lead 0 of a noise-stress mixture's noisy
stretch, resampled to 500 Hz, and the same excerpt without the noise) as
`DIR/<noise>_<snr>/<record>_<k>_<start>_<noisy|clean>.json`: the samples (mV), the
scoring's window `win`, the reference beats `near` (those within `win` of the
excerpt, in excerpt samples shifted by `win`), the count `inner` of those inside
the excerpt, cardiostream's beats `found` and the test's score of them.

Here NeuroKit2 (`ecg_peaks(ecg_clean(x, 500), 500)`, defaults, as
scripts/eval-qrs-neurokit.py runs it) reads each excerpt, and both detectors' beats
are scored as `ExcerptReference::score` in the test scores them: beats shifted by
`win`, matched within `win` against `near` (`match_beats` of scripts/ec57.py, the
port of ecg_dsp::score::match_beats), missed beats less the `near` beats outside the
excerpt (not below 0), false beats in the first second = beats found before sample
`rate` with no `near` beat within `win`. cardiostream's re-score must equal the
test's, excerpt by excerpt (asserted), and with `--rust-table` (the test's printed
output) every row of the test's table (asserted).

Needs numpy and neurokit2: the venv scripts/eval-qrs-neurokit.sh creates,
.cardiostream/neurokit-venv (neurokit2 0.2.13). Per-excerpt scores go to
DIR/scores.csv. `QRS_SPOT_NOISE=em:6` (the test's subset) dumps only those rows.
"""

import argparse
import glob
import hashlib
import json
import os
import sys
import time

import neurokit2 as nk
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from ec57 import match_beats  # noqa: E402

NOISES = ["bw", "ma", "em"]
SNRS = [12, 6]
HALVES = ["tuning", "held-out"]
SIGNALS = ["noisy", "clean"]


def score_excerpt(near, inner, win, rate, found):
    """(TP, FN, FP), first-second false beats: ExcerptReference::score."""
    beats = [b + win for b in found]
    tp, fn, fp = match_beats(near, beats, win)
    false_first = sum(
        1 for b in beats if float(b - win) < rate and not any(abs(r - b) <= win for r in near)
    )
    return np.array([tp, max(fn - (len(near) - inner), 0), fp, false_first], dtype=np.int64)


def se_pp(c):
    """Se, +P (%) as BeatCounts::se / pp (100 when the denominator is 0)."""
    tp, fn, fp = int(c[0]), int(c[1]), int(c[2])
    se = 100.0 if tp + fn == 0 else 100.0 * tp / (tp + fn)
    pp = 100.0 if tp + fp == 0 else 100.0 * tp / (tp + fp)
    return se, pp


def neurokit_beats(x, rate):
    _, info = nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=rate), sampling_rate=rate)
    return sorted(int(p) for p in info["ECG_R_Peaks"])


def rust_rows(path):
    """The test's table rows: (noise, snr, half, signal) -> (excerpts, TP, FN, FP, FP<1s)."""
    rows = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 12 and p[0] in NOISES and p[2] in HALVES and p[3] in SIGNALS:
                n, beats, tp, fn, fp, ff = (int(v) for v in p[4:10])
                assert beats == tp + fn, line
                rows[(p[0], int(p[1]), p[2], p[3])] = (n, tp, fn, fp, ff)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--rust-table", help="the test's printed output, to check its rows")
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.dir, "*", "*.json")))
    if not files:
        sys.exit(f"no excerpts in {a.dir}/*/ (run the test with QRS_SPOT_DUMP_DIR={a.dir})")
    t0 = time.time()
    # (noise, snr, half, signal) -> {"n": excerpts, "inner": beats, "cs": counts, "nk": counts}
    groups = {}
    cache = {}  # NeuroKit2's beats by the samples' digest (the clean excerpts recur per noise)
    nk_runs = 0
    out = open(os.path.join(a.dir, "scores.csv"), "w")
    out.write("noise,snr,half,signal,record,start,inner,"
              "cs_tp,cs_fn,cs_fp,cs_fp_first,nk_tp,nk_fn,nk_fp,nk_fp_first\n")
    for path in files:
        with open(path) as f:
            d = json.load(f)
        rate = float(d["rate"])
        near, inner, win = d["near"], d["inner"], d["win"]
        assert near == sorted(near) and d["found"] == sorted(d["found"]), path
        cs = score_excerpt(near, inner, win, rate, d["found"])
        rust = np.array([d["tp"], d["fn"], d["fp"], d["fp_first"]], dtype=np.int64)
        assert (cs == rust).all(), f"{path}: Python {cs.tolist()} != Rust {rust.tolist()}"
        # The exact f32 samples the detector read.
        x = np.asarray(d["samples"], dtype=np.float32).astype(np.float64)
        key = hashlib.sha1(x.tobytes()).hexdigest()
        if key not in cache:
            cache[key] = neurokit_beats(x, rate)
            nk_runs += 1
        nkc = score_excerpt(near, inner, win, rate, cache[key])
        g = groups.setdefault(
            (d["noise"], int(d["snr"]), d["half"], d["signal"]),
            {"n": 0, "inner": 0, "cs": np.zeros(4, np.int64), "nk": np.zeros(4, np.int64)},
        )
        g["n"] += 1
        g["inner"] += inner
        g["cs"] += cs
        g["nk"] += nkc
        out.write(",".join(str(v) for v in (
            d["noise"], d["snr"], d["half"], d["signal"], d["record"], d["start"], inner,
            *cs.tolist(), *nkc.tolist())) + "\n")
    out.close()
    elapsed = time.time() - t0
    print(f"{len(files)} excerpts ({nk_runs} distinct signals through NeuroKit2 "
          f"{nk.__version__}, {elapsed:.0f} s); 75 ms window, 500 Hz, lead 0")
    print(f"cardiostream re-scored here: TP/FN/FP/FP<1s identical to the Rust test's "
          f"in all {len(files)} excerpts")
    if a.rust_table:
        rows = rust_rows(a.rust_table)
        for k, g in groups.items():
            mine = (g["n"], *g["cs"].tolist())
            assert rows.get(k) == mine, f"{k}: Rust row {rows.get(k)} != Python {mine}"
        assert set(rows) == set(groups), "the Rust table and the dump cover different rows"
        print(f"cardiostream's rows here equal the Rust test's table ({len(rows)} rows, "
              f"{a.rust_table})")
    print("beats = reference beats inside the excerpts (the test's `beats`, TP + FN, can "
          "be 1 more: a beat just outside an excerpt matched where FN stops at 0); "
          "FP<1s = false beats in an excerpt's first second; cs = cardiostream, nk = NeuroKit2")
    print(f"{'noise':<5} {'SNR':>3} {'half':<8} {'signal':<6} {'exc':>4} {'beats':>5} | "
          f"{'cs FN':>5} {'cs FP':>5} {'cs Se%':>6} {'cs +P%':>6} {'FP<1s':>5} | "
          f"{'nk FN':>5} {'nk FP':>5} {'nk Se%':>6} {'nk +P%':>6} {'FP<1s':>5}")

    def row(noise, snr, half, signal, g):
        cs, nkc = g["cs"], g["nk"]
        (cse, cpp), (nse, npp) = se_pp(cs), se_pp(nkc)
        return (f"{noise:<5} {snr:>3} {half:<8} {signal:<6} {g['n']:>4} {g['inner']:>5} | "
                f"{cs[1]:>5} {cs[2]:>5} {cse:>6.2f} {cpp:>6.2f} {cs[3]:>5} | "
                f"{nkc[1]:>5} {nkc[2]:>5} {nse:>6.2f} {npp:>6.2f} {nkc[3]:>5}")

    for noise in NOISES:
        for snr in SNRS:
            if not any(k[:2] == (noise, snr) for k in groups):
                continue
            for half in HALVES:
                for signal in SIGNALS:
                    if (noise, snr, half, signal) in groups:
                        print(row(noise, snr, half, signal, groups[(noise, snr, half, signal)]))
            for signal in SIGNALS:
                both = {"n": 0, "inner": 0, "cs": np.zeros(4, np.int64),
                        "nk": np.zeros(4, np.int64)}
                for half in HALVES:
                    g = groups.get((noise, snr, half, signal))
                    if g:
                        for k in both:
                            both[k] = both[k] + g[k]
                print(row(noise, snr, "gross", signal, both))


if __name__ == "__main__":
    main()
