#!/usr/bin/env python3
"""Writes docs/cinc2015-heldout.txt: the CinC 2015 alarm records held out from tuning.

Per (alarm type, verdict) group of the records in ALARMS, sorted by the SHA-256 hex
digest of the record name, every third record (index 0, 3, 6, ...) is held out, so
each type and verdict is represented in both parts. The split reads the verdicts; the
detector, its tuning on the other part and `cardiostream eval alarms` never do.

usage: cinc2015-split.py CINC2015_DIR > docs/cinc2015-heldout.txt
"""
import hashlib
import sys
from collections import defaultdict


def main():
    db = sys.argv[1]
    groups = defaultdict(list)
    with open(f"{db}/ALARMS") as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) == 3:
                groups[(parts[1], parts[2])].append(parts[0])
    held = []
    for key in sorted(groups):
        names = sorted(groups[key], key=lambda n: hashlib.sha256(n.encode()).hexdigest())
        held += [n for i, n in enumerate(names) if i % 3 == 0]
    print("# CinC 2015 alarm records held out from all tuning (issue 13). Fixed before any")
    print("# tuning: per (alarm type, verdict) group of the shared 450 records, sorted by the")
    print("# SHA-256 hex digest of the record name, every third (index 0, 3, 6, ...).")
    print("# Produced by scripts/cinc2015-split.py; the eval command never reads verdicts.")
    for n in sorted(held):
        print(n)


if __name__ == "__main__":
    main()
