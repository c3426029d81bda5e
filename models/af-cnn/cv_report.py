#!/usr/bin/env python3
"""Summarise the K-fold cross-validation of af-cnn training recipes (train.py --cv-fold).

usage: cv_report.py CV_DIR [CV_DIR ...] [--folds 0,1,2] [--json OUT.json]

Each CV_DIR holds one recipe's folds as train.py --arch A --cv-fold k --cv-out CV_DIR
wrote them (fold{k}.json, fold{k}.npz): the records of fold k of train + validation
(fold = (sha256(name) // 5) % K; the held-out part is in no fold), scored by a network
trained on the other folds, by the argmax of their mean window probabilities, with the
weights at the end of the schedule ("last") and their moving average ("ema"). No class
offsets and no epoch choice: every recipe is scored the same way.

Per recipe and weights: F1 of N, A, O, ~ and mean F1 (N, A, O) pooled over all folds'
records (each record scored once, by the one network that did not see it), the mean and
SD over folds, and the paired bootstrap (records resampled, 2,000 rounds, seed 20170217)
of the pooled difference to the first CV_DIR's "last". What is chosen on this: the
recipe (network, weights) of the next af-cnn, by pooled mean F1 (N, A, O) and F1 of A.
--folds keeps only those folds (so recipes run on different folds compare on the same
records). Nothing here reads the held-out part.
"""
import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as cnn  # noqa: E402  (f1_scores, CLASSES)

KEYS = cnn.F1_KEYS
ROUNDS = 2000


def load(cv_dir, keep=None):
    folds = sorted(glob.glob(os.path.join(cv_dir, "fold*.json")))
    if keep is not None:
        folds = [f for f in folds if int(os.path.basename(f)[4:-5]) in keep]
    runs = []
    for path in folds:
        with open(path) as f:
            meta = json.load(f)
        z = np.load(path[:-5] + ".npz")
        runs.append((meta, {k: z[k] for k in z.files}))
    return runs


def main():
    args = sys.argv[1:]
    out_json = None
    if "--json" in args:
        i = args.index("--json")
        out_json = args[i + 1]
        args = args[:i] + args[i + 2:]
    keep = None
    if "--folds" in args:
        i = args.index("--folds")
        keep = {int(k) for k in args[i + 1].split(",")}
        args = args[:i] + args[i + 2:]
    if not args:
        raise SystemExit(__doc__)
    recipes = {}
    for d in args:
        runs = load(d, keep)
        if not runs:
            raise SystemExit(f"{d}: no folds")
        for what in ("last", "ema"):
            if what not in runs[0][1]:
                continue
            names = np.concatenate([r[1]["names"] for r in runs])
            y = np.concatenate([r[1]["y"] for r in runs])
            p = np.concatenate([r[1][what] for r in runs])
            order = np.argsort(names)
            recipes[f"{os.path.basename(os.path.normpath(d))}/{what}"] = dict(
                names=names[order], y=y[order], pred=p[order].argmax(1),
                folds=[r[0]["fold"] for r in runs],
                per_fold=[r[0]["f1"][what] for r in runs],
                cpu_s=[r[0]["training_cpu_s"] for r in runs],
                wall_s=[r[0]["training_wall_s"] for r in runs],
                epochs=runs[0][0]["epochs"], ema=runs[0][0]["ema"],
                arch=runs[0][0]["arch"])
    base_key = next(iter(recipes))
    base = recipes[base_key]
    rng = np.random.default_rng(cnn.SEED)
    out = {"baseline": base_key, "rounds": ROUNDS, "recipes": {}}
    for key, r in recipes.items():
        pooled = cnn.f1_scores(r["y"], r["pred"])
        pf = np.array([[f[k] for k in KEYS] for f in r["per_fold"]])
        entry = {"arch": r["arch"], "epochs": r["epochs"], "ema_decay": r["ema"],
                 "folds": r["folds"], "records": int(len(r["y"])),
                 "pooled_f1": {k: round(pooled[k], 4) for k in KEYS},
                 "fold_mean": dict(zip(KEYS, np.round(pf.mean(0), 4).tolist())),
                 "fold_sd": dict(zip(KEYS, np.round(pf.std(0, ddof=1) if len(pf) > 1
                                                    else 0 * pf[0], 4).tolist())),
                 "per_fold": r["per_fold"],
                 "training_cpu_s_per_fold": r["cpu_s"], "training_wall_s_per_fold": r["wall_s"]}
        if key != base_key and np.array_equal(r["names"], base["names"]):
            draws = cnn.resamplings(len(r["y"]), ROUNDS, rng)
            d = (cnn.f1_draws(r["y"], r["pred"], draws)
                 - cnn.f1_draws(base["y"], base["pred"], draws))
            base_f = cnn.f1_scores(base["y"], base["pred"])
            entry[f"minus_{base_key}"] = {
                k: [round(pooled[k] - base_f[k], 4)] + [round(v, 4) for v in cnn.ci95(d, j)]
                for j, k in enumerate(KEYS)}
            # paired per fold: how many folds the recipe beats the baseline in
            entry[f"folds_better_than_{base_key}"] = {
                k: int(sum(a[k] > b[k] for a, b in zip(r["per_fold"], base["per_fold"])))
                for k in ("A", "mean_NAO")}
        out["recipes"][key] = entry
        line = (f"{key:10s} pooled ({len(r['y'])} records, folds {r['folds']}): "
                + " ".join(f"{k} {pooled[k]:.4f}" for k in KEYS)
                + f" | folds: mean {pf[:, 4].mean():.4f} sd {entry['fold_sd']['mean_NAO']:.4f}, "
                  f"A {pf[:, 1].mean():.4f} sd {entry['fold_sd']['A']:.4f} "
                  f"(A per fold {[round(v, 3) for v in pf[:, 1]]})"
                + f" | cpu s/fold {int(np.mean(r['cpu_s']))}")
        print(line)
        if f"minus_{base_key}" in entry:
            dd = entry[f"minus_{base_key}"]
            print(f"{'':10s}   - {base_key}: mean {dd['mean_NAO']} A {dd['A']} "
                  f"O {dd['O']} N {dd['N']}; folds better (A, mean): "
                  f"{entry[f'folds_better_than_{base_key}']}")
    if out_json:
        with open(out_json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
