#!/usr/bin/env python3
"""How far apart true and false alarms of one type lie, feature by feature.

Reads the per-record lines of `alarms --list` (the ecg-dsp example) and, for the
alarms of one type that the detector raised, prints each feature's range over the
true ones and how many false ones fall outside it: the most a rule on that feature
alone could remove without silencing a true alarm of these records. A range fitted to
the records it is judged on, so an upper bound, not a rule to adopt.

Usage:
  cargo run --release -p ecg-dsp --example alarms -- --split tuning --list > /tmp/list.txt
  tools/alarms_ranges.py /tmp/list.txt [vtach]
"""
import re
import sys

FEATURES = {
    "hr": "the call's rate (bpm)",
    "nv": "ventricular beats in the run",
    "cons": "complex consistency",
    "cv": "RR variation in the run",
}


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__.strip().splitlines()[-1])
    kind = sys.argv[2] if len(sys.argv) == 3 else "vtach"
    raised = {"tp": [], "FP": []}
    for line in open(sys.argv[1]):
        f = line.split()
        if len(f) < 3 or f[2] != kind or f[0] not in raised:
            continue
        row = {k: float(m.group(1)) for k in FEATURES
               if (m := re.search(rf"\b{k}=([0-9.]+)", line))}
        pulse = re.search(r" r=([0-9]+) a=", line)
        if pulse and "hr" in row:
            row["pulse/hr"] = float(pulse.group(1)) / row["hr"]
        raised[f[0]].append(row)
    tp, fp = raised["tp"], raised["FP"]
    print(f"{kind}: {len(tp)} true alarms raised, {len(fp)} false alarms raised")
    for k, what in list(FEATURES.items()) + [("pulse/hr", "pulse rate / ECG rate")]:
        t = [r[k] for r in tp if k in r]
        if not t:
            continue
        lo, hi = min(t), max(t)
        below = sum(1 for r in fp if k in r and r[k] < lo)
        above = sum(1 for r in fp if k in r and r[k] > hi)
        print(f"  {k:9} {what:28} true {lo:.2f}-{hi:.2f} (n {len(t)}); "
              f"false outside: {below} below, {above} above, of {sum(k in r for r in fp)}")


if __name__ == "__main__":
    main()
