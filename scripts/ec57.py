"""Beat-by-beat matching of ANSI/AAMI EC57 (PhysioNet `bxb` style), a line-for-line port
of `ecg_dsp::score::match_beats`, for the Python scripts that score QRS detections the
way `cardiostream eval qrs` and the Rust tests do (scripts/eval-qrs-neurokit.py,
tools/qrs_two_lead.py, tools/pvc_noise.py), and the MIT-BIH split they report by.
"""

# The tuning half of the MIT-BIH split (dsp/tests/common/mod.rs, QRS_TUNING); the other
# shared records are the held-out (check) half.
QRS_TUNING = frozenset("101 104 107 109 114 116 119 124 203 207 209 217 223".split())


def match_beats(reference, detected, tolerance):
    """(TP, FN, FP) of sorted `detected` against sorted `reference` sample indices: a
    detection within `tolerance` samples of a reference beat matches it, each beat at
    most once, greedily in time order (a detection gives way to the next one when that
    is closer)."""
    i = j = tp = fn = fp = 0
    while i < len(reference) and j < len(detected):
        r, d = reference[i], detected[j]
        if d + tolerance < r:
            fp += 1
            j += 1
        elif r + tolerance < d:
            fn += 1
            i += 1
        elif j + 1 < len(detected) and abs(detected[j + 1] - r) < abs(d - r):
            fp += 1
            j += 1
        else:
            tp += 1
            i += 1
            j += 1
    return tp, fn + len(reference) - i, fp + len(detected) - j
