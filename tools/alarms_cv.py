#!/usr/bin/env python3
"""Five-fold cross-validation of lethal-alarm detector variants inside the CinC 2015
tuning part (the 295 records outside docs/cinc2015-heldout.txt). Never runs or reads
a held-out record.

Folds: per (alarm type, verdict) group of the tuning records, sorted by the SHA-256
hex digest of the name, record i goes to fold i % 5 (stratified, fixed, independent
of any result).

Each candidate is a set of `LethalConfig` overrides (`--set key=value` of the
`alarms` example); candidate 0 is always the current detector (no overrides). For
every candidate the script prints its per-fold and overall challenge scores. Then,
for a change with thresholds, the nested choice: for each fold k the candidate with
the best score on the other four folds (ties go to the earlier candidate, so list the
current detector and the simplest settings first) is scored on fold k; the per-fold
scores of these choices are the change's cross-validated figures, next to the current
detector's on the same folds.

usage:
  tools/alarms_cv.py [--bin target/release/examples/alarms] [--only GROUP...] \\
      [--cand 'label:key=value,key=value' ...]

e.g. tools/alarms_cv.py --cand 'on:vt_rule=true' --cand 'x0.7:vt_x=0.7'

Needs CARDIOSTREAM_DATA (the folder holding cinc2015/). The example is run once per
candidate with `--split tuning --list`.
"""
import argparse
import hashlib
import os
import subprocess
import sys
from collections import defaultdict

TYPES = {
    "Asystole": "asys",
    "Bradycardia": "brady",
    "Tachycardia": "tachy",
    "Ventricular_Tachycardia": "vtach",
    "Ventricular_Flutter_Fib": "vfib",
}
K = 5


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def folds(db):
    held = set()
    with open(os.path.join(repo_root(), "docs/cinc2015-heldout.txt")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                held.add(line)
    groups = defaultdict(list)
    with open(os.path.join(db, "ALARMS")) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) == 3 and parts[0] not in held:
                groups[(parts[1], parts[2])].append(parts[0])
    fold = {}
    for key in sorted(groups):
        names = sorted(groups[key], key=lambda n: hashlib.sha256(n.encode()).hexdigest())
        for i, n in enumerate(names):
            fold[n] = i % K
    return fold


def run(binary, sets):
    cmd = [binary, "--split", "tuning", "--list"]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) >= 3 and p[0] in ("tp", "tn", "FP", "FN"):
            rows[p[1]] = (p[2], p[0])
    return rows


def counts(rows, names):
    c = {"tp": 0, "tn": 0, "FP": 0, "FN": 0}
    for n in names:
        c[rows[n][1]] += 1
    return c


def score(c):
    d = c["tp"] + c["tn"] + c["FP"] + 5 * c["FN"]
    return 100.0 * (c["tp"] + c["tn"]) / d if d else float("nan")


def tpr(c):
    p = c["tp"] + c["FN"]
    return c["tp"] / p if p else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(repo_root(), "target/release/examples/alarms"))
    ap.add_argument("--cand", action="append", default=[])
    args = ap.parse_args()
    data = os.environ.get("CARDIOSTREAM_DATA")
    if not data:
        sys.exit("set CARDIOSTREAM_DATA")
    fold = folds(os.path.join(data, "cinc2015"))
    cands = [("current", [])]
    for c in args.cand:
        label, _, sets = c.partition(":")
        cands.append((label, [s for s in sets.split(",") if s]))
    results = []
    for label, sets in cands:
        rows = run(args.bin, sets)
        missing = set(fold) - set(rows)
        assert not missing, f"records missing from the listing: {sorted(missing)[:5]}"
        results.append(rows)
    by_fold = [[n for n in fold if fold[n] == k] for k in range(K)]
    print(f"folds: {[len(b) for b in by_fold]} records")
    hdr = "".join(f"  fold{k}  " for k in range(K))
    print(f"{'candidate':24} {hdr}|  all (TPR, FP, FN)")
    for (label, _), rows in zip(cands, results):
        per = [score(counts(rows, b)) for b in by_fold]
        c = counts(rows, fold)
        print(
            f"{label:24} "
            + "".join(f"{s:8.2f}  " for s in per)
            + f"| {score(c):6.2f} ({tpr(c):.3f}, {c['FP']}, {c['FN']})"
        )
    if len(cands) > 1:
        # Nested choice among the candidates other than the current detector, and
        # among all of them (the current one may win).
        for pool_label, pool in (("change", range(1, len(cands))), ("any", range(len(cands)))):
            chosen, per = [], []
            tot = {"tp": 0, "tn": 0, "FP": 0, "FN": 0}
            for k in range(K):
                train = [n for n in fold if fold[n] != k]
                best = max(pool, key=lambda i: (score(counts(results[i], train)), -i))
                chosen.append(cands[best][0])
                c = counts(results[best], by_fold[k])
                per.append(score(c))
                for x in tot:
                    tot[x] += c[x]
            print(
                f"CV[{pool_label:6}] "
                + " ".join(f"{s:6.2f}" for s in per)
                + f" | pooled {score(tot):6.2f} TPR {tpr(tot):.3f}  chosen {chosen}"
            )
        base = [score(counts(results[0], b)) for b in by_fold]
        print("current  " + " ".join(f"{s:6.2f}" for s in base) + f" | {score(counts(results[0], fold)):6.2f}")
        # Per-record differences of each candidate against the current detector.
        for (label, _), rows in zip(cands[1:], results[1:]):
            diff = [f"{n}:{results[0][n][1]}->{rows[n][1]}" for n in sorted(fold) if rows[n][1] != results[0][n][1]]
            print(f"{label}: {len(diff)} changed: {' '.join(diff)}")


if __name__ == "__main__":
    main()
