#!/usr/bin/env python3
"""External checks of the AF models on shared records that no AF model here was trained,
tuned or chosen on: PTB-XL (12-lead 10 s hospital ECGs, 500 Hz; ecg_id 1-500) and the
CinC 2021 sample (50 12-lead 10 s ECGs, 500 Hz, from Georgia, PTB-XL and Chapman/Ningbo).

  external.py ptbxl PTBXL_DIR OUT_DIR
      OUT_DIR becomes a CinC 2017-style folder that `cardiostream eval af` reads: a
      symbolic link to each record's header and signal, and REFERENCE.csv with the label
      from PTB-XL's SCP statements: A when `AFIB` is among them, O for another rhythm
      statement (AFLT, SVTAC, PSVT, SVARR, BIGU, TRIGU, PACE), N otherwise.

  external.py cinc2021 CINC2021_DIR OUT_DIR
      The same from the headers' SNOMED-CT `# Dx:` codes: A for atrial fibrillation
      (164889003), O for atrial flutter (164890007), premature atrial or ventricular
      beats (284470004, 63593006, 427172004, 17338001), supraventricular tachycardia
      (426761007) or a paced rhythm (10370003), N otherwise.

  external.py score REFERENCE.csv OUT.csv [OUT.csv ...]
      For each `eval af` output (record,label): AF against the rest, as a monitor's AF
      finding is used: sensitivity, specificity, PPV and F1 of A, with Wilson 95 %
      intervals for the proportions. N against O is not scored: PTB-XL's "no rhythm
      statement" records include infarcts, blocks and hypertrophy, which CinC 2017's
      labellers would often have called "other rhythm", so that split does not carry over.

Standard library only.
"""
import ast
import csv
import math
import os
import sys

RHYTHM_OTHER = ("AFLT", "SVTAC", "PSVT", "SVARR", "BIGU", "TRIGU", "PACE")


SNOMED_AF = "164889003"
SNOMED_OTHER = ("164890007", "284470004", "63593006", "427172004", "17338001", "426761007",
                "10370003")


def write_folder(out, records):
    """records: (name, header path without extension, signal extension, label)."""
    os.makedirs(out, exist_ok=True)
    counts = {}
    with open(os.path.join(out, "REFERENCE.csv"), "w") as ref:
        for name, base, sig, label in records:
            for ext in (".hea", sig):
                link = os.path.join(out, name + ext)
                if not os.path.lexists(link):
                    os.symlink(os.path.abspath(base + ext), link)
            ref.write(f"{name},{label}\n")
            counts[label] = counts.get(label, 0) + 1
    print(f"{out}: {sum(counts.values())} records, labels {dict(sorted(counts.items()))}")


def ptbxl_records(ptbxl):
    with open(os.path.join(ptbxl, "ptbxl_database.csv"), newline="") as f:
        for r in csv.DictReader(f):
            base = os.path.join(ptbxl, r["filename_hr"])
            if not os.path.exists(base + ".hea"):
                continue
            codes = ast.literal_eval(r["scp_codes"])
            label = "A" if "AFIB" in codes else \
                "O" if any(c in codes for c in RHYTHM_OTHER) else "N"
            yield os.path.basename(base), base, ".dat", label


def cinc2021_records(folder):
    for hea in sorted(f for f in os.listdir(folder) if f.endswith(".hea")):
        base = os.path.join(folder, hea[:-4])
        with open(base + ".hea") as f:
            dx = [line.split(":", 1)[1] for line in f if line.startswith("# Dx:")]
        codes = {c.strip() for c in (dx[0].split(",") if dx else [])}
        label = "A" if SNOMED_AF in codes else \
            "O" if codes & set(SNOMED_OTHER) else "N"
        yield hea[:-4], base, ".mat", label


def wilson(k, n, z=1.96):
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def read(path):
    with open(path, newline="") as f:
        return {row[0]: row[1] for row in csv.reader(f) if row and row[0] != "record"}


def score(ref_path, outs):
    truth = read(ref_path)
    print("| answers | records | AF Se [95 % CI] | specificity [95 % CI] | PPV [95 % CI] | F1 A "
          "| AF calls by label |")
    print("|---|---|---|---|---|---|---|")
    for path in outs:
        pred = read(path)
        missing = sorted(set(truth) - set(pred))
        if missing:
            raise SystemExit(f"{path}: no answer for {len(missing)} records, e.g. {missing[0]}")
        tp = sum(truth[r] == "A" and pred[r] == "A" for r in truth)
        fn = sum(truth[r] == "A" and pred[r] != "A" for r in truth)
        fp = sum(truth[r] != "A" and pred[r] == "A" for r in truth)
        tn = sum(truth[r] != "A" and pred[r] != "A" for r in truth)
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")

        def cell(k, n):
            lo, hi = wilson(k, n)
            return f"{k}/{n} = {k / n:.3f} [{lo:.2f}, {hi:.2f}]" if n else "—"
        by_label = ", ".join(
            f"{lab} {sum(truth[r] == lab and pred[r] == 'A' for r in truth)}"
            f"/{sum(truth[r] == lab for r in truth)}" for lab in sorted(set(truth.values())))
        print(f"| {os.path.basename(path)} | {len(truth)} | {cell(tp, tp + fn)} | "
              f"{cell(tn, tn + fp)} | {cell(tp, tp + fp)} | {f1:.3f} | {by_label} |")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "ptbxl":
        write_folder(sys.argv[3], ptbxl_records(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "cinc2021":
        write_folder(sys.argv[3], cinc2021_records(sys.argv[2]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "score":
        score(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
