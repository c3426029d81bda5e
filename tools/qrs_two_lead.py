#!/usr/bin/env python3
"""Would a second lead make the QRS detector's beats survive noise? An offline study.

Reads what `nst_mixtures_qrs` writes with QRS_DUMP=DIR (per MIT-BIH record and noise
mixture: the reference beats and the streaming detector's beats on lead 0 and on lead 1,
both mixed with the noise stress test's noise at the same SNR, ventricular flutter
excluded) and scores, per half (the tuning / held-out split of docs/accuracy-qrs.md):

  l0         the detector on lead 0 alone (what the pipeline runs)
  l1         the detector on lead 1 alone
  and        lead-0 beats with a lead-1 beat within 150 ms
  gap R      lead-0 beats confirmed by lead 1 within 150 ms, or falling in a lead-1
             interval longer than R x the median of the 16 lead-1 intervals around it
             (lead 1 missed a beat there)
  noisy      `gap 1.5` only where lead 0 is noisy and lead 1 less so: a lead-0 beat is
             kept as it is when lead 0's noise ratio (QrsDetector::noise_ratio, when the
             beat came out) is below 0.25, or lead 1's nearest beat's ratio is not
             below 0.8 x lead 0's; the two values were chosen on the tuning half
  cleaner    follow the cleaner lead: lead 0's beats as `noisy` keeps them as they are,
             plus lead 1's beats where lead 0's nearest beat's ratio is at least 0.25
             and lead 1's is below 0.8 x it, unless a kept lead-0 beat is within 150 ms
             (the same two values as `noisy`, not chosen again)
  confirm    `cleaner`, and where the beat's own lead is noisy (its noise ratio at least
             0.25, the same value) it must also be confirmed: a beat of the other lead
             within 150 ms (stop 33; no new value)

Beats are matched to the reference within 150 ms, each reference beat at most once,
nearest first in time order (the test's EC57 matching); gross Se and +P over records.
Nothing here changes the detector: it measures what fusing two leads could give.

usage:
  mkdir -p /tmp/q2
  QRS_DUMP=/tmp/q2 QRS_NST=bw:12,ma:12,em:12,em:6,ma:6 cargo test --release -p ecg-dsp --test mitdb \\
      nst_mixtures_qrs -- --nocapture
  tools/qrs_two_lead.py /tmp/q2
"""
import bisect
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from ec57 import QRS_TUNING as TUNING, match_beats  # noqa: E402  (the Rust match_beats, ported once)

FS = 360
WIN = round(0.150 * FS)


def load(path):
    """Beat times (the first column; a second, the noise ratio, is left out)."""
    with open(path) as f:
        return [int(line.split()[0]) for line in f if line.strip()]


def load_noise(path):
    with open(path) as f:
        return [float(line.split()[1]) for line in f if line.strip()]


def match(ref, det):
    return match_beats(ref, det, WIN)


def near(beats, t):
    i = bisect.bisect_left(beats, t - WIN)
    return i < len(beats) and beats[i] <= t + WIN


def gap_rule(l0, l1, ratio):
    out = []
    for b in l0:
        i = bisect.bisect_left(l1, b)
        if near(l1, b) or i == 0 or i >= len(l1):
            out.append(b)
            continue
        rr = [l1[k] - l1[k - 1] for k in range(max(1, i - 8), min(len(l1), i + 8))]
        if l1[i] - l1[i - 1] > ratio * statistics.median(rr):
            out.append(b)
    return out


def nearest(beats, t):
    """Index of the beat nearest to t (beats not empty)."""
    i = bisect.bisect_left(beats, t)
    if i > 0 and (i == len(beats) or t - beats[i - 1] <= beats[i] - t):
        i -= 1
    return i


def lead0_clean(r0, r1, floor, margin):
    """Lead 0 is trusted as it is: quiet, or lead 1 no cleaner."""
    return r0 < floor or r1 >= margin * r0


def noisy_rule(l0, n0, l1, n1, floor=0.25, margin=0.8):
    gap = set(gap_rule(l0, l1, 1.5))
    out = []
    for b, r0 in zip(l0, n0):
        r1 = n1[nearest(l1, b)] if l1 else r0
        if lead0_clean(r0, r1, floor, margin) or b in gap:
            out.append(b)
    return out


def cleaner_rule(l0, n0, l1, n1, floor=0.25, margin=0.8, confirm=False):
    """`cleaner`; with `confirm`, a beat whose own lead's noise ratio is at least
    `floor` also needs a beat of the other lead within the match window (`confirm`)."""
    if not l0 or not l1:
        return l0

    def confirmed(r, other, b):
        return not confirm or r < floor or near(other, b)

    kept = [
        b
        for b, r0 in zip(l0, n0)
        if lead0_clean(r0, n1[nearest(l1, b)], floor, margin) and confirmed(r0, l1, b)
    ]
    added = [
        b
        for b, r1 in zip(l1, n1)
        if not lead0_clean(n0[nearest(l0, b)], r1, floor, margin)
        and not near(kept, b)
        and confirmed(r1, l0, b)
    ]
    return sorted(kept + added)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "/tmp/q2"
    stems = sorted({f.rsplit(".", 1)[0] for f in os.listdir(d) if f.endswith(".l0")})
    mixtures = sorted({s.split(".", 1)[1] for s in stems})
    rules = {
        "l0": lambda l0, l1: l0,
        "l1": lambda l0, l1: l1,
        "and": lambda l0, l1: [b for b in l0 if near(l1, b)],
        "gap 1.5": lambda l0, l1: gap_rule(l0, l1, 1.5),
        "gap 1.3": lambda l0, l1: gap_rule(l0, l1, 1.3),
        "noisy": noisy_rule,
        "cleaner": cleaner_rule,
        "confirm": lambda *a: cleaner_rule(*a, confirm=True),
    }
    with_noise = {"noisy", "cleaner", "confirm"}
    print("mixture half      " + "".join(f"{k:>16}" for k in rules))
    print("                  " + "".join(f"{'Se / +P %':>16}" for _ in rules))
    for mix in mixtures:
        for half in ("tuning", "held-out"):
            sums = {k: [0, 0, 0] for k in rules}
            for stem in stems:
                rec, m = stem.split(".", 1)
                if m != mix or (rec in TUNING) != (half == "tuning"):
                    continue
                ref = load(f"{d}/{stem}.ref")
                l0, l1 = load(f"{d}/{stem}.l0"), load(f"{d}/{stem}.l1")
                n0, n1 = load_noise(f"{d}/{stem}.l0"), load_noise(f"{d}/{stem}.l1")
                for k, rule in rules.items():
                    fused = rule(l0, n0, l1, n1) if k in with_noise else rule(l0, l1)
                    c = match(ref, fused)
                    sums[k] = [a + b for a, b in zip(sums[k], c)]
            if sum(sums["l0"][:2]) == 0:
                continue  # no record of this half in the dump (QRS_HALF)
            cells = []
            for tp, fn, fp in sums.values():
                cells.append(f"{100 * tp / (tp + fn):.2f} / {100 * tp / (tp + fp):.2f}")
            print(f"{mix:<7} {half:<9} " + "".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
