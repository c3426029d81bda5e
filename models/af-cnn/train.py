#!/usr/bin/env python3
"""Train and export `af-cnn`: a compact 1-D CNN that reads the single-lead ECG waveform
of a 30 s window and classifies its rhythm as N (normal), A (atrial fibrillation),
O (other rhythm) or ~ (too noisy).

Data: the PhysioNet/CinC Challenge 2017 records in ../shared/data (AliveCor handheld,
single lead, 300 Hz, 9-61 s, WFDB `.hea` + `.mat` format 16, labels in REFERENCE.csv).

Split (the same as models/af-rr, so the figures compare):
  held out   sha256(name) % 5 == 0                   1,218 records, scored once at the end
  validation sha256(name) % 5 != 0, (h // 5) % 6 == 0  every choice: epoch, class offsets,
                                                       AF finding threshold
  train      the rest                                 fitting only
The recipe itself (network, weights kept, augmentation) is chosen by K-fold
cross-validation over train + validation (`--cv-fold`, cv_report.py, cv_study.json).
Nothing about the held-out records is used for fitting or any choice; `--dev` trains and
reports the validation part only and writes nothing.

Input contract (what the pipeline builds, see MODEL_CARD.md): ONNX input `ecg` float32
[batch, 1, 30*R] with R = 125 Hz, the RAW lead in mV (DC offset and amplitude free),
a record shorter than 30 s zero-padded at the end. All preprocessing is inside the
graph: the first convolution has no zero padding and its kernels are constrained to sum to
zero (it cannot see a DC offset, and barely sees baseline wander), and its output is
divided by its own mean absolute value over the window (so the model is invariant to
amplitude scale).
Output `probabilities` float32 [batch, 4], softmax over N, A, O, ~.
Whole record: 30 s windows starting at 0, HOP_S apart, each ending inside the record
(one zero-padded window for a shorter record); the mean of the windows' probabilities,
argmax for the label.

Where the inputs come from: `load_records()` resamples the 300 Hz records with
scipy.signal.resample_poly (up 5, down 12). `--inputs PREFIX` instead reads the inputs
the Rust pipeline's one model-input builder wrote (`cardiostream eval export-inputs
--db DIR/cinc2017 --model models/af-cnn/af_cnn.toml --out PREFIX`; see `load_export`),
so that training, evaluation and serving share one builder, value for value.

usage: train.py [--dev] [--seed S] [--checkpoint FILE | --from-checkpoint FILE [--export-only] |
                --members F1,F2,...] [--inputs PREFIX] [--data DIR] [--out DIR] [--epochs N]
                [--arch v1|v2|v2d] [--ema DECAY] [--mixup ALPHA]
       train.py --cv-fold K [--folds 5] [--cv-out DIR] [--cv-onnx] [--arch ...] [--ema ...] [--mixup ...]
                [--teachers DIR,DIR,...]
       train.py --all-data --ema DECAY --checkpoint FILE
       train.py --all-data --ema DECAY --from-checkpoint FILE --offsets N,A,O,~ --out DIR
  --dev   train, make every choice on the validation part, print; the held-out part is
          not scored and nothing is written to --out
  --checkpoint FILE       save the trained model and its validation choices (outside the
                          repository), e.g. with --dev
  --from-checkpoint FILE  skip training: export that model, then score the held-out part
                          once (what the shipped af_cnn.onnx and heldout.json came from)
  --seed S                the seed of one member (initialisation, dropout, crops,
                          augmentation); default 20170217
  --members F1,F2,...     with --dev: the members saved by `--dev --seed S --checkpoint
                          Fi` runs, averaged as one model (the mean of their logits), its
                          class offsets and AF threshold chosen and its F1s printed on the
                          validation part (a measurement; see MODEL_CARD.md, "Ensembles")
  --arch A                the network (ARCHS): v1 (default) is 1.0.0's; v2 and v2d were
                          studied for 1.2.0 and not adopted (MODEL_CARD.md, "Recipe study")
  --ema DECAY             keep the moving average of the weights (DECAY per step) at the
                          end of the schedule instead of choosing an epoch on validation
  --mixup ALPHA           mix each batch with a shuffled copy of itself, Beta(ALPHA, ALPHA)
  --export-only           with --from-checkpoint: export af_cnn.onnx (and export.json) to
                          --out and run the contract checks; the held-out part is not scored
  --cv-fold K             one fold of the K-fold cross-validation over train + validation
                          (fold = (sha256(name) // 5) % --folds; the held-out part is in
                          no fold): train on the other folds with the recipe's fixed
                          schedule, score fold K with the last and the moving-average
                          weights (decay --ema, default 0.998), no epoch choice, no offsets;
                          cv_report.py pools the folds. Chooses between recipes.
  --cv-onnx               with --cv-fold: also save the fold's moving-average network as
                          CV_OUT/fold{K}.onnx (zero offsets) and fold{K}.pt, after the
                          scoring (the fold's training and scores are unchanged); for the
                          out-of-fold predictions of alldata.py
  --all-data              train v1 with --ema on train + validation (all records outside
                          the held-out part), fixed schedule, no choice; save --checkpoint.
                          With --from-checkpoint and --offsets (chosen on out-of-fold
                          predictions by alldata.py): export af_cnn.onnx with those offsets
                          to --out, with the per-window contract checks; nothing is scored
                          (MODEL_CARD.md, "All-data network with out-of-fold choices")
  --teachers LIST         train a student (distill_plan.md; MODEL_CARD.md, "One network
                          taught by three"): with --cv-fold, the --cv-out folders whose
                          fold{K}.pt networks teach; with --all-data, --all-data
                          checkpoints. Loss = (1 - DISTILL_ALPHA) x the recipe's
                          cross-entropy + DISTILL_ALPHA x T^2 KL to the teachers' mean
                          logits (T = DISTILL_T) on the same batch
  --inputs PREFIX         train and score on the windows `cardiostream eval export-inputs`
                          wrote to PREFIX.csv/.npy instead of resampling in Python
  --data  folder holding cinc2017/ (default: $CARDIOSTREAM_DATA, else the output of
          ../shared/data/unpack)
  --out   where to write af_cnn.onnx and heldout.json (default: this script's folder)
Needs torch, numpy, scipy, onnx, onnxruntime, onnxscript (requirements.txt).
Deterministic: fixed seeds, deterministic torch algorithms, 1 CPU thread.
"""
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

CLASSES = ["N", "A", "O", "~"]
SEED = 20170217
FS_IN = 300
R = 125  # model sample rate, Hz
UP, DOWN = 5, 12  # 300 Hz -> 125 Hz
WIN_S = 30
W = WIN_S * R  # 3750 samples
HOP_S = 10
MIN_CROP_S = 9  # shortest record in CinC 2017

# Architecture: (out channels, kernel, conv stride, max-pool after). Stride early, no
# pooling (a strided convolution costs half of a convolution followed by a pool):
# 3750 samples -> 935 -> 468 -> 234 -> 117 -> 59 -> 30 -> 30 steps (~1 s each).
BLOCKS = [
    (16, 11, 4, 1),
    (24, 5, 2, 1),
    (32, 5, 2, 1),
    (48, 5, 2, 1),
    (64, 3, 2, 1),
    (64, 3, 2, 1),
    (64, 3, 1, 1),
]
TAPS = (3, 6)  # blocks whose outputs are pooled into the head (117 and 30 steps)
# Autocorrelation pooling: at block AUTOCORR_TAP's output (234 steps of 0.128 s), each
# feature's autocorrelation over the window at lags 1..AUTOCORR_LAGS (up to 3.1 s). A
# regular rhythm shows a peak at the RR interval (and bigeminy at two), atrial
# fibrillation a flat, decaying curve: rhythm regularity, read from the waveform.
AUTOCORR_TAP = 2
AUTOCORR_LAGS = 24
AUTOCORR_CHANNELS = 8  # a 1x1 convolution first projects the tap to this many features
HEAD = 32
# Architectures (--arch). "v1": the blocks above, af-cnn 1.0.0's network. The others
# keep v1's first three blocks (the high-rate part, where a multiply-add costs most in
# ONNX Runtime) and add width after them, and a residual refinement convolution
# (stride 1, same width, optionally squeeze-excitation) after some of the later blocks,
# where the time axis is short and a convolution is cheap; same taps, same
# autocorrelation pooling, same head form. "v2": wider (64, 96, 128, 128 filters), two
# refinements; "v2d": narrower (48, 64, 96, 96), four refinements.
# Entries: blocks, taps, autocorr tap, head width, {block: refinement kernel}, SE.
_EARLY = [(16, 11, 4, 1), (24, 5, 2, 1), (32, 5, 2, 1)]
ARCHS = {
    "v1": dict(blocks=BLOCKS, taps=TAPS, autocorr_tap=AUTOCORR_TAP, head=HEAD, res={},
               se=False),
    "v2": dict(blocks=_EARLY + [(64, 5, 2, 1), (96, 3, 2, 1), (128, 3, 2, 1), (128, 3, 1, 1)],
               taps=(3, 6), autocorr_tap=2, head=64, res={3: 3, 4: 3}, se=True),
    "v2d": dict(blocks=_EARLY + [(48, 5, 2, 1), (64, 3, 2, 1), (96, 3, 2, 1), (96, 3, 1, 1)],
                taps=(3, 6), autocorr_tap=2, head=64, res={3: 3, 4: 3, 5: 3, 6: 3}, se=True),
}
ARCH = "v1"  # set by --arch
SE_REDUCTION = 8
DROPOUT = 0.3
NORM_EPS = 1e-5  # mV-scale epsilon of the in-graph amplitude normalisation

EPOCHS = 50
BATCH = 64
LR = 3e-3
WEIGHT_DECAY = 1e-3
LABEL_SMOOTHING = 0.05
CLASS_WEIGHT_POWER = 0.5  # loss weight (n / n_c) ** power
BOOTSTRAP = 2000
# One thread: on this shared 2-core machine two torch threads ran a training step 10-20x
# slower than one (OpenMP workers spinning against other jobs), and one keeps it exact.
THREADS = 1
# Distillation (--teachers; distill_plan.md): the weight of the teachers' term in the loss
# and the temperature both sides are softened with. Fixed by the plan, not tuned.
DISTILL_ALPHA = 0.5
DISTILL_T = 2.0


def name_hash(name):
    return int(hashlib.sha256(name.encode()).hexdigest(), 16)


def heldout(name):
    return name_hash(name) % 5 == 0


def validation(name):
    h = name_hash(name)
    return h % 5 != 0 and (h // 5) % 6 == 0


def data_dir_default():
    env = os.environ.get("CARDIOSTREAM_DATA")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    unpack = os.path.join(here, "..", "..", "..", "shared", "data", "unpack")
    return subprocess.check_output([unpack], text=True).strip()


def read_wfdb_mat(path_no_ext):
    """One-signal WFDB record with a MATLAB v4 `.mat` signal file (format 16): returns
    (fs, mV). Parses the header instead of needing the wfdb package."""
    with open(path_no_ext + ".hea") as f:
        lines = [ln.split() for ln in f if ln.strip() and not ln.startswith("#")]
    fs = float(lines[0][2])
    n = int(lines[0][3])
    sig = lines[1]
    fname, fmt = sig[0], sig[1]
    fmt, _, offset = fmt.partition("+")
    assert fmt == "16", f"{path_no_ext}: format {fmt}"
    gain = float(sig[2].split("/")[0].split("(")[0])
    baseline = int(sig[4]) if len(sig) > 4 else 0
    adc_zero = baseline
    if "(" in sig[2]:
        adc_zero = int(sig[2].split("(")[1].split(")")[0])
    raw = np.fromfile(os.path.join(os.path.dirname(path_no_ext), fname), dtype="<i2",
                      count=n, offset=int(offset or 0))
    assert len(raw) == n, path_no_ext
    return fs, (raw.astype(np.float64) - adc_zero) / gain


def load_records(root, cache_dir="/tmp"):
    """name -> (label index, float32 signal in mV at R Hz), resampled from 300 Hz with
    scipy.signal.resample_poly. Cached as an .npz keyed by R."""
    from scipy.signal import resample_poly

    db = os.path.join(root, "cinc2017")
    cache = os.path.join(cache_dir, f"af_cnn_cinc2017_{R}hz.npz")
    labels = {}
    with open(os.path.join(db, "REFERENCE.csv")) as f:
        for line in f:
            name, lab = line.strip().split(",")
            labels[name] = CLASSES.index(lab)
    names = sorted(labels)
    if os.path.exists(cache):
        z = np.load(cache)
        if list(z["names"]) == names:
            sig = np.split(z["samples"], np.cumsum(z["lengths"])[:-1])
            return names, np.array([labels[n] for n in names]), sig
    sig = []
    for name in names:
        fs, x = read_wfdb_mat(os.path.join(db, name))
        assert fs == FS_IN, name
        sig.append(resample_poly(x, UP, DOWN).astype(np.float32))
    np.savez(cache, names=np.array(names), lengths=np.array([len(s) for s in sig]),
             samples=np.concatenate(sig))
    return names, np.array([labels[n] for n in names]), sig


def load_export(prefix):
    """Inputs as the Rust pipeline's one model-input builder made them:
    `cardiostream eval export-inputs --db DIR/cinc2017 --model models/af-cnn/af_cnn.toml
    --out PREFIX` writes PREFIX.csv (`record,label,window,start_s,...`, one line per
    30 s window at the manifest's 10 s hop) and PREFIX.npy (float32 [windows, 1, W]).

    Returns what load_records returns, (names, labels, signals at R Hz in mV), each
    record's signal rebuilt from its windows: the first HOP_S of each window, then the
    whole last one. Consecutive windows are slices of one resampled stream, so their
    overlaps must agree (checked), and record_windows() of the rebuilt signal gives
    back exactly the exported windows. A record with one window may be shorter than
    it: the builder zero-pads the end, which is cut off again here (its last non-zero
    sample ends the record). What is lost against load_records: the last < HOP_S of a
    longer record that no window reaches."""
    import csv

    table = prefix + ".csv"
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    windows = np.load(prefix + ".npy", mmap_mode="r")
    if windows.shape != (len(rows), 1, W):
        raise SystemExit(f"{prefix}.npy: shape {windows.shape}, expected "
                         f"({len(rows)}, 1, {W}) for the {len(rows)} lines of {table}")
    by_record = {}
    for i, row in enumerate(rows):
        by_record.setdefault(row["record"], []).append((int(row["window"]), i, row))
    names = sorted(by_record)
    hop = HOP_S * R
    labels, sigs = [], []
    for name in names:
        parts = sorted(by_record[name])
        for k, (index, _, row) in enumerate(parts):
            if index != k or abs(float(row["start_s"]) - k * HOP_S) > 1e-3:
                raise SystemExit(f"{table}: {name} window {index} at {row['start_s']} s is "
                                 f"not on the {HOP_S} s hop grid from 0 (export with the "
                                 "manifest's hop)")
        label = parts[0][2]["label"]
        if label not in CLASSES:
            raise SystemExit(f"{table}: {name} has label {label!r}, not one of {CLASSES}")
        ws = [np.asarray(windows[i, 0]) for _, i, _ in parts]
        for a, b in zip(ws, ws[1:]):
            if not np.array_equal(a[hop:], b[:W - hop]):
                raise SystemExit(f"{table}: {name}'s windows do not overlap exactly; "
                                 "they are not slices of one stream")
        last = ws[-1]
        if len(ws) == 1:
            nz = np.flatnonzero(last)
            last = last[:nz[-1] + 1 if len(nz) else 0]
        sigs.append(np.concatenate([w[:hop] for w in ws[:-1]] + [last]).astype(np.float32))
        labels.append(CLASSES.index(label))
    return names, np.array(labels), sigs


def record_windows(sig):
    """The whole-record protocol: 30 s windows at 0, HOP_S, ... each ending inside the
    record; a record shorter than 30 s gives one window zero-padded at the end."""
    n = len(sig)
    if n < W:
        out = np.zeros((1, W), dtype=np.float32)
        out[0, :n] = sig
        return out
    starts = range(0, n - W + 1, HOP_S * R)
    return np.stack([sig[s:s + W] for s in starts]).astype(np.float32)


def build_model():
    import torch
    from torch import nn

    class ZeroSumConv(nn.Conv1d):
        """First convolution: each kernel sums to zero, so a DC offset never reaches the
        network. Exported as a plain Conv with the constrained weights."""

        def forward(self, x):
            w = self.weight - self.weight.mean(dim=-1, keepdim=True)
            return nn.functional.conv1d(x, w, None, self.stride, self.padding)

    class ScaleNorm(nn.Module):
        """Divide by the window's mean absolute first-layer output: amplitude-scale
        invariant (up to NORM_EPS)."""

        def forward(self, x):
            return x / (x.abs().mean(dim=(1, 2), keepdim=True) + NORM_EPS)

    class Refine(nn.Module):
        """z + BN(conv(z)) (stride 1, same width), optionally re-weighted per channel by
        squeeze-excitation from its mean over the window, then ReLU."""

        def __init__(self, c, k, se):
            super().__init__()
            self.conv = nn.Conv1d(c, c, k, padding=k // 2, bias=False)
            self.bn = nn.BatchNorm1d(c)
            self.se = nn.Sequential(nn.Linear(c, c // SE_REDUCTION), nn.ReLU(),
                                    nn.Linear(c // SE_REDUCTION, c), nn.Sigmoid()) \
                if se else None

        def forward(self, z):
            r = self.bn(self.conv(z))
            if self.se is not None:
                r = r * self.se(r.mean(dim=-1))[..., None]
            return torch.relu(z + r)

    class AfCnn(nn.Module):
        def __init__(self):
            super().__init__()
            a = ARCHS[ARCH]
            self.taps, self.autocorr_tap = a["taps"], a["autocorr_tap"]
            self.blocks = nn.ModuleList()
            # v1 has no refinements: its state_dict keys stay 1.0.0's
            self.refine = nn.ModuleDict({str(i): Refine(a["blocks"][i][0], k, a["se"])
                                         for i, k in a["res"].items()})
            cin, pooled = 1, 0
            for i, (c, k, s, p) in enumerate(a["blocks"]):
                # The first convolution has no zero padding: padding would turn a DC
                # offset into steps at the window's edges.
                layers = [(ZeroSumConv if i == 0 else nn.Conv1d)(
                    cin, c, k, stride=s, padding=0 if i == 0 else k // 2, bias=False)]
                if i == 0:
                    layers.append(ScaleNorm())
                layers += [nn.BatchNorm1d(c), nn.ReLU()]
                if p > 1:
                    layers.append(nn.MaxPool1d(p))
                self.blocks.append(nn.Sequential(*layers))
                cin = c
                if i in self.taps:
                    pooled += 3 * c
                if i == self.autocorr_tap:
                    self.rhythm = nn.Conv1d(c, AUTOCORR_CHANNELS, 1)
                    pooled += AUTOCORR_LAGS * AUTOCORR_CHANNELS
            head = a["head"]
            self.head = nn.Sequential(
                nn.Dropout(DROPOUT), nn.Linear(pooled, head), nn.ReLU(),
                nn.Dropout(DROPOUT), nn.Linear(head, len(CLASSES)))
            # Class offsets added to the logits, chosen on the validation part after
            # training (zero while training).
            self.register_buffer("offsets", torch.zeros(len(CLASSES)))

        def logits(self, ecg):
            # Pool over time, at the beat scale (~0.25 s steps) and at the end (~1 s
            # steps): mean, max and standard deviation of each feature. The SD says how
            # much a feature varies across the window (an irregular rhythm); mean and
            # max say what is present.
            z, stats = ecg, []
            for i, block in enumerate(self.blocks):
                z = block(z)
                if str(i) in self.refine:
                    z = self.refine[str(i)](z)
                if i in self.taps:
                    mean = z.mean(dim=-1)
                    sd = torch.sqrt((z - mean[..., None]).square().mean(dim=-1) + 1e-6)
                    stats += [mean, z.amax(dim=-1), sd]
                if i == self.autocorr_tap:
                    r = self.rhythm(z)
                    zc = r - r.mean(dim=-1, keepdim=True)
                    var = zc.square().mean(dim=-1) + 1e-4
                    n = r.shape[-1]
                    stats += [(zc[..., :n - lag] * zc[..., lag:]).mean(dim=-1) / var
                              for lag in range(1, AUTOCORR_LAGS + 1)]
            return self.head(torch.cat(stats, dim=1))

        def forward(self, ecg):
            return torch.softmax(self.logits(ecg) + self.offsets, dim=-1)

    return AfCnn()


def build_ensemble(members):
    """Members trained alone (different seeds, the same recipe) as one model: the mean
    of their logits, plus the ensemble's own class offsets (chosen on validation), then
    the softmax. One graph, one input, the same contract as a single member."""
    import torch
    from torch import nn

    class AfCnnEnsemble(nn.Module):
        def __init__(self, members):
            super().__init__()
            self.members = nn.ModuleList(members)
            self.register_buffer("offsets", torch.zeros(len(CLASSES)))

        def logits(self, ecg):
            return torch.stack([m.logits(ecg) for m in self.members]).mean(dim=0)

        def forward(self, ecg):
            return torch.softmax(self.logits(ecg) + self.offsets, dim=-1)

    return AfCnnEnsemble(members)


def count_macs():
    """Multiply-adds per window of build_model(): every Conv1d and Linear (forward hooks
    on one window), plus the autocorrelation's products (lags x channels x steps).
    Element-wise work (batch norm, ReLU, pooling, the SE scaling) is not counted. For
    "v1" this is the 4.26 M of 1.0.0's card."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):  # leaves the caller's torch RNG as it was
        model = build_model().eval()
    macs = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv1d):
            macs[0] += out.shape[-1] * mod.out_channels * (mod.in_channels // mod.groups) \
                * mod.kernel_size[0]
        else:
            macs[0] += mod.in_features * mod.out_features
        if mod is model.rhythm:
            macs[0] += AUTOCORR_LAGS * AUTOCORR_CHANNELS * out.shape[-1]

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv1d, nn.Linear))]
    with torch.no_grad():
        model.logits(torch.zeros(1, 1, W))
    for h in hs:
        h.remove()
    return macs[0]


def make_batch(sigs, rng):
    """Training views of records: a random 30 s crop of a longer record (sometimes
    shortened to 9-30 s and zero-padded, as short records are), a short record
    zero-padded at the end; polarity flip, amplitude scale, DC offset, baseline wander
    and white noise, applied before the padding as on a device."""
    out = np.zeros((len(sigs), 1, W), dtype=np.float32)
    t = np.arange(W) / R
    for i, s in enumerate(sigs):
        n = len(s)
        if n > W:
            a = rng.integers(0, n - W + 1)
            x = s[a:a + W].astype(np.float64)
        else:
            x = s.astype(np.float64)
        if len(x) == W and rng.random() < 0.1:
            x = x[:int(rng.uniform(MIN_CROP_S, WIN_S) * R)]
        m = len(x)
        if rng.random() < 0.3:
            x = -x
        x = x * np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        if rng.random() < 0.5:
            x = x + rng.uniform(-1.0, 1.0)
        if rng.random() < 0.3:
            f = rng.uniform(0.05, 0.5)
            x = x + rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * f * t[:m] + rng.uniform(0, 6.3))
        if rng.random() < 0.3:
            x = x + rng.normal(0, rng.uniform(0.005, 0.03), m)
        out[i, 0, :m] = x
    return out


def f1_scores(y, pred):
    out = {}
    for i, c in enumerate(CLASSES):
        tp = int(((pred == i) & (y == i)).sum())
        fp = int(((pred == i) & (y != i)).sum())
        fn = int(((pred != i) & (y == i)).sum())
        out[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    out["mean_NAO"] = (out["N"] + out["A"] + out["O"]) / 3
    return out


def confusion(y, pred):
    k = len(CLASSES)
    m = np.zeros((k, k), dtype=int)
    for a, b in zip(y, pred):
        m[a, b] += 1
    return m


F1_KEYS = CLASSES + ["mean_NAO"]


def resamplings(n, rounds, rng):
    """`rounds` bootstrap resamplings of n records (index arrays), drawn from `rng`."""
    return [rng.integers(0, n, n) for _ in range(rounds)]


def f1_draws(y, pred, draws):
    """The F1s (F1_KEYS) of `pred` on each resampling of `draws`: [len(draws), 5]. Two
    predictions scored on the same draws give their paired difference."""
    return np.array([[f[k] for k in F1_KEYS] for f in (f1_scores(y[i], pred[i]) for i in draws)])


def ci95(d, j):
    """The 2.5th and 97.5th percentiles of column j of draws `d`."""
    return [float(np.percentile(d[:, j], 2.5)), float(np.percentile(d[:, j], 97.5))]


def bootstrap_f1(y, pred, rounds, seed):
    d = f1_draws(y, pred, resamplings(len(y), rounds, np.random.default_rng(seed)))
    return {k: ci95(d, j) for j, k in enumerate(F1_KEYS)}


def record_probs(predict_windows, sigs):
    """Whole-record probabilities: mean over the record's windows."""
    wins = [record_windows(s) for s in sigs]
    idx = np.repeat(np.arange(len(wins)), [len(w) for w in wins])
    p = predict_windows(np.concatenate(wins)[:, None, :])
    out = np.zeros((len(wins), len(CLASSES)))
    np.add.at(out, idx, p)
    return out / np.bincount(idx)[:, None]


def torch_predictor(model, batch=256):
    import torch

    def run(x):
        model.eval()
        with torch.no_grad():
            return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy()
                                   for i in range(0, len(x), batch)])
    return run


def choose_offsets(p, y):
    """Logit offsets for A, O, ~ (N fixed at 0) that maximise validation mean F1 (N, A,
    O) of the whole-record argmax, by coordinate search on a grid. Applied to window
    log-probabilities, re-averaged per record, so it matches the exported graph."""
    grid = np.arange(-1.5, 1.51, 0.25)
    best = np.zeros(len(CLASSES))

    def score(off):
        return f1_scores(y, p(off).argmax(1))["mean_NAO"]

    cur = score(best)
    for _ in range(2):
        for c in (1, 2, 3):
            for g in grid:
                off = best.copy()
                off[c] = g
                s = score(off)
                if s > cur + 1e-9:
                    cur, best = s, off
    return best, cur


def plain_member(model):
    """A copy of a member whose zero-sum first convolution is a plain Conv holding the
    constrained weights (what ONNX exports)."""
    import torch
    from torch import nn

    plain = build_model()
    plain.load_state_dict(model.state_dict())
    first = plain.blocks[0][0]
    conv = nn.Conv1d(first.in_channels, first.out_channels, first.kernel_size,
                     stride=first.stride, padding=first.padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(first.weight - first.weight.mean(dim=-1, keepdim=True))
    plain.blocks[0][0] = conv
    return plain


def export_onnx(model, path):
    import onnx
    import torch

    model.eval()
    plain = plain_member(model)
    plain.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(plain, (torch.zeros(2, 1, W),), path, input_names=["ecg"],
                      output_names=["probabilities"], opset_version=18, dynamo=True,
                      external_data=False, dynamic_shapes={"ecg": {0: batch}})
    m = onnx.load(path)
    m.producer_name = "cardiostream models/af-cnn/train.py"
    m.doc_string = ("af-cnn: 1-D CNN rhythm classifier (N, A, O, ~) for a 30 s single-lead "
                    f"ECG window, raw mV at {R} Hz; decision support, not a diagnosis. "
                    "See MODEL_CARD.md.")
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
    return sorted({n.op_type for n in m.graph.node})


def ort_session(path, threads=1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_predictor(sess, batch=64):
    def run(x):
        return np.concatenate([sess.run(["probabilities"], {"ecg": x[i:i + batch]})[0]
                               for i in range(0, len(x), batch)])
    return run


# The contract's changes to a whole 30 s window: a DC offset and an amplitude gain.
WINDOW_CHANGES = {
    "window_dc_offset_0_7mV_max_abs_diff": lambda x: x + 0.7,
    "window_dc_offset_minus_1mV_max_abs_diff": lambda x: x - 1.0,
    "window_amplitude_x3_max_abs_diff": lambda x: x * 3.0,
    "window_amplitude_x0_3_max_abs_diff": lambda x: x * 0.3,
}


def window_changes(pred, xv, base, names=tuple(WINDOW_CHANGES)):
    """Max |dp| of `pred` on the windows `xv` (whose probabilities are `base`) under
    each named change of WINDOW_CHANGES."""
    return {n: float(np.abs(pred(WINDOW_CHANGES[n](xv)) - base).max()) for n in names}


def throughput(path, batch=64, repeats=7, seconds=2.0, seed=0):
    """Windows/s of the ONNX file in Python onnxruntime, one intra-op thread, on random
    raw-mV windows: median and best of `repeats` timed runs of at least `seconds` each,
    by the wall clock and per second of this process's CPU time (which time-slicing by
    other jobs on a shared machine does not deflate). models/bench_onnx.py does the same
    for any set of models."""
    sess = ort_session(path, 1)
    x = np.random.default_rng(seed).normal(0, 0.3, (batch, 1, W)).astype(np.float32)
    for _ in range(5):
        sess.run(None, {"ecg": x})
    rates, cpu_rates = [], []
    for _ in range(repeats):
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            sess.run(None, {"ecg": x})
            n += 1
        rates.append(n * batch / (time.perf_counter() - t0))
        cpu_rates.append(n * batch / (time.process_time() - c0))
    return {"batch": batch, "intra_op_threads": 1, "repeats": repeats,
            "windows_per_s_median": float(np.median(rates)),
            "windows_per_s_best": float(np.max(rates)),
            "windows_per_s_all": [round(r) for r in rates],
            "windows_per_cpu_s_median": float(np.median(cpu_rates)),
            "load_average_1min": os.getloadavg()[0]}


def choose_on_validation(model, val_sigs, yv):
    """The class offsets and the AF finding threshold of `model` (a member or an
    ensemble: anything with `logits` and an `offsets` buffer), chosen on the validation
    records; sets the offsets. Returns (offsets, validation mean F1 after them,
    validation F1s, threshold)."""
    import torch

    # Class offsets on the validation part (windows' logits shifted, then averaged).
    val_wins = [record_windows(s) for s in val_sigs]
    widx = np.repeat(np.arange(len(val_wins)), [len(w) for w in val_wins])
    model.eval()
    with torch.no_grad():
        wl = np.concatenate([model.logits(torch.from_numpy(
            np.concatenate(val_wins)[i:i + 256, None, :])).numpy()
            for i in range(0, len(widx), 256)])

    def val_probs(off):
        z = wl + off
        e = np.exp(z - z.max(1, keepdims=True))
        e /= e.sum(1, keepdims=True)
        out = np.zeros((len(val_wins), len(CLASSES)))
        np.add.at(out, widx, e)
        return out / np.bincount(widx)[:, None]

    offsets, val_after = choose_offsets(val_probs, yv)
    model.offsets.copy_(torch.tensor(offsets, dtype=torch.float32))
    pv = val_probs(offsets)
    fv = f1_scores(yv, pv.argmax(1))
    threshold, af_f1 = af_threshold(pv, yv)
    print(f"validation after offsets: {json.dumps({k: round(v, 4) for k, v in fv.items()})}; "
          f"AF threshold {threshold} (validation F1 of A at it {af_f1:.4f})", flush=True)
    return offsets, val_after, fv, threshold


def af_threshold(p, y):
    """The AF finding threshold: the first t of 0.20, 0.25, ..., 0.80 with the best F1
    of "A" for P(A) >= t over records with probabilities `p` and labels `y`; and that
    F1."""
    ts = np.round(np.arange(0.2, 0.81, 0.05), 2)
    ya = (y == 1).astype(int)
    af_f1 = [f1_scores(ya, (p[:, 1] >= t).astype(int))["A"] for t in ts]
    i = int(np.argmax(af_f1))
    return float(ts[i]), float(af_f1[i])


def load_teachers(paths, fold=None, folds=None):
    """--teachers: networks of the recipe saved by --cv-fold --cv-onnx (fold{K}.pt; with
    `fold`, each must be fold `fold` of `folds`, so that it never saw the student's
    scored fold) or --all-data --checkpoint (without `fold`), in eval mode, frozen. The
    torch RNG is left as it was, so the student starts, drops out and crops exactly as it
    would without teachers."""
    import torch

    state = torch.get_rng_state()
    teachers = []
    for path in paths:
        f = torch.load(path, weights_only=False)
        if fold is None:
            assert f.get("all_data"), f"{path}: not an --all-data network"
        else:
            assert (f.get("fold"), f.get("folds")) == (fold, folds), \
                f"{path}: fold {f.get('fold')} of {f.get('folds')}, not {fold} of {folds}"
        m = build_model()
        m.load_state_dict(f["state"])
        assert not m.offsets.abs().sum(), f"{path}: a teacher's class offsets are not zero"
        m.eval()
        for q in m.parameters():
            q.requires_grad_(False)
        teachers.append(m)
    torch.set_rng_state(state)
    return teachers


def distill_loss(out, teachers, xb):
    """The teachers' term of the loss: T^2 KL(softmax(mean teacher logits / T) ||
    softmax(student logits / T)), batch mean (Hinton et al., 2015)."""
    import torch

    with torch.no_grad():
        zt = torch.stack([t.logits(xb) for t in teachers]).mean(dim=0)
    return DISTILL_T ** 2 * torch.nn.functional.kl_div(
        torch.log_softmax(out / DISTILL_T, dim=-1), torch.softmax(zt / DISTILL_T, dim=-1),
        reduction="batchmean")


def train_epochs(model, y, sigs, itr, epochs, rng, ema=0.0, after_epoch=None, mixup=0.0,
                 teachers=None):
    """The training loop: class-weighted, label-smoothed cross-entropy, AdamW, one-cycle
    learning rate, one random view (make_batch) of every record of `itr` per epoch.
    With `mixup` > 0 each batch is mixed with a shuffled copy of itself, weight
    lam ~ Beta(mixup, mixup) (inputs and losses alike). With `ema` > 0 it also keeps an exponential moving average of the weights and of the
    batch-norm statistics (decay `ema` per step), returned (else None). With `teachers`
    (load_teachers) the loss is (1 - DISTILL_ALPHA) * that cross-entropy + DISTILL_ALPHA *
    distill_loss on the same batch (distill_plan.md).
    `after_epoch(epoch, mean loss)` is called after each epoch."""
    import torch

    assert not (teachers and mixup), "--teachers is not combined with --mixup"
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    counts = np.bincount(y[itr], minlength=len(CLASSES))
    cw = (len(itr) / (len(CLASSES) * counts)) ** CLASS_WEIGHT_POWER
    lossf = torch.nn.CrossEntropyLoss(weight=torch.tensor(cw, dtype=torch.float32),
                                      label_smoothing=LABEL_SMOOTHING)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = epochs * ((len(itr) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps,
                                                pct_start=0.15)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema),
                             use_buffers=True) if ema > 0 else None
    for epoch in range(1, epochs + 1):
        model.train()
        perm = rng.permutation(itr)
        total = 0.0
        for i in range(0, len(perm), BATCH):
            idx = perm[i:i + BATCH]
            xb = torch.from_numpy(make_batch([sigs[j] for j in idx], rng))
            yb = torch.from_numpy(y[idx])
            opt.zero_grad()
            if mixup > 0:
                lam = float(rng.beta(mixup, mixup))
                other = torch.from_numpy(rng.permutation(len(idx)))
                out = model.logits(lam * xb + (1 - lam) * xb[other])
                loss = lam * lossf(out, yb) + (1 - lam) * lossf(out, yb[other])
            elif teachers:
                out = model.logits(xb)
                loss = ((1 - DISTILL_ALPHA) * lossf(out, yb)
                        + DISTILL_ALPHA * distill_loss(out, teachers, xb))
            else:
                loss = lossf(model.logits(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total += float(loss.detach()) * len(idx)
        if after_epoch is not None:
            after_epoch(epoch, total / len(itr))
    return averaged


def fit(model, names, y, sigs, itr, iva, epochs, rng, t_start, ema=0.0, mixup=0.0):
    """Train on the training part; choose the epoch (without --ema), the class offsets
    and the AF threshold on the validation part. With --ema the weights kept are the
    moving average at the end of the schedule (no epoch is chosen; validation F1 is
    printed every 5 epochs for the record only). Returns everything the export needs."""
    val_sigs = [sigs[i] for i in iva]
    best = [-1.0, 0, None]
    history = []
    t0 = [time.time()]

    def after_epoch(epoch, loss):
        if ema > 0 and epoch % 5 and epoch != epochs:
            print(f"epoch {epoch:3d} loss {loss:.4f} ({time.time() - t0[0]:.0f} s)", flush=True)
            history.append({"epoch": epoch, "loss": loss})
            t0[0] = time.time()
            return
        pv = record_probs(torch_predictor(model), val_sigs)
        f = f1_scores(y[iva], pv.argmax(1))
        history.append({"epoch": epoch, "loss": loss,
                        **{k: round(v, 4) for k, v in f.items()}})
        print(f"epoch {epoch:3d} loss {loss:.4f} val F1 N {f['N']:.3f} "
              f"A {f['A']:.3f} O {f['O']:.3f} ~ {f['~']:.3f} mean {f['mean_NAO']:.4f} "
              f"({time.time() - t0[0]:.0f} s)", flush=True)
        t0[0] = time.time()
        # Epoch choice: best validation mean F1 (N, A, O), among the last half of the
        # schedule (early epochs are noisy).
        if ema == 0 and epoch > epochs // 2 and f["mean_NAO"] > best[0]:
            best[:] = [f["mean_NAO"], epoch,
                       {k: v.detach().clone() for k, v in model.state_dict().items()}]

    averaged = train_epochs(model, y, sigs, itr, epochs, rng, ema, after_epoch, mixup)
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
        pv = record_probs(torch_predictor(model), val_sigs)
        best = [f1_scores(y[iva], pv.argmax(1))["mean_NAO"], f"ema {ema} at {epochs}", None]
    else:
        model.load_state_dict(best[2])
    t_train = time.time() - t_start
    print(f"kept epoch {best[1]} (validation mean F1 {best[0]:.4f}); "
          f"training took {t_train:.0f} s", flush=True)

    offsets, val_after, fv, threshold = choose_on_validation(model, val_sigs, y[iva])
    print(f"class offsets {offsets.tolist()}: validation mean F1 {best[0]:.4f} -> "
          f"{val_after:.4f}", flush=True)
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "selected_epoch": best[1], "validation_f1_before_offsets": best[0],
            "offsets": offsets.tolist(), "validation_f1": fv, "threshold": threshold,
            "history": history, "epochs": epochs, "training_wall_s": t_train,
            "training_cpu_s": time.process_time()}


def cv_fold(names, y, sigs, fold, folds, epochs, seed, ema, out_dir, mixup=0.0,
            save_onnx=False, teacher_dirs=None):
    """One fold of the K-fold cross-validation over train + validation (the held-out
    part is not in it): fold(name) = (sha256(name) // 5) % K. Trains on the other K-1
    folds with the recipe (fixed schedule, no epoch choice, no class offsets), then
    scores the fold's records by the argmax of their mean window probabilities, with the
    weights at the end of the schedule ("last") and with their moving average ("ema",
    decay `ema`, tracked alongside at no training cost). Writes
    out_dir/fold{fold}.json (F1s) and .npz (record probabilities); with `save_onnx`
    (--cv-onnx) also the moving-average network (zero class offsets) as
    out_dir/fold{fold}.onnx and its weights as fold{fold}.pt, after the scoring (the
    training and the scores are unchanged by it). With `teacher_dirs` (--teachers) the
    student learns from the fold{fold}.pt networks of those folders as well
    (train_epochs; they were trained on the same folds, so fold K stays unseen)."""
    import torch

    pool = np.array([not heldout(n) for n in names])
    fo = np.array([(name_hash(n) // 5) % folds for n in names])
    itr = np.flatnonzero(pool & (fo != fold))
    isc = np.flatnonzero(pool & (fo == fold))
    rng = np.random.default_rng(seed)
    model = build_model()
    tpaths = [os.path.join(d, f"fold{fold}.pt") for d in teacher_dirs or []]
    teachers = load_teachers(tpaths, fold, folds) if tpaths else None
    t0, c0 = time.time(), time.process_time()
    print(f"fold {fold}/{folds}: train {len(itr)}, scored {len(isc)} records"
          + (f"; teachers {tpaths}" if tpaths else ""), flush=True)

    def after_epoch(epoch, loss):
        print(f"epoch {epoch:3d} loss {loss:.4f} ({time.time() - t0:.0f} s)", flush=True)

    averaged = train_epochs(model, y, sigs, itr, epochs, rng, ema, after_epoch, mixup,
                            teachers)
    sc_sigs = [sigs[i] for i in isc]
    out = {"arch": ARCH, "fold": fold, "folds": folds, "seed": seed, "epochs": epochs,
           "ema": ema, "mixup": mixup, "train_records": int(len(itr)), "scored_records": int(len(isc)),
           "training_wall_s": round(time.time() - t0),
           "training_cpu_s": round(time.process_time() - c0), "f1": {}}
    if tpaths:
        out["teachers"] = {p: file_sha256(p) for p in tpaths}
        out["distill"] = {"alpha": DISTILL_ALPHA, "T": DISTILL_T}
    probs = {"names": np.array([names[i] for i in isc]), "y": y[isc]}
    for what, m in (("last", model), ("ema", averaged.module if averaged else None)):
        if m is None:
            continue
        p = record_probs(torch_predictor(m), sc_sigs)
        out["f1"][what] = {k: round(v, 4) for k, v in f1_scores(y[isc], p.argmax(1)).items()}
        probs[what] = p
        print(f"fold {fold} {what}: {json.dumps(out['f1'][what])}", flush=True)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"fold{fold}.json"), "w") as f:
        json.dump(out, f, indent=1)
    np.savez(os.path.join(out_dir, f"fold{fold}.npz"), **probs)
    if save_onnx:
        m = averaged.module
        torch.save({"state": {k: v.detach().clone() for k, v in m.state_dict().items()},
                    "config": config_key(seed, ema, mixup, tpaths), "fold": fold, "folds": folds,
                    "train_records": int(len(itr))},
                   os.path.join(out_dir, f"fold{fold}.pt"))
        ops = export_onnx(m, os.path.join(out_dir, f"fold{fold}.onnx"))
        print(f"fold {fold}: wrote fold{fold}.onnx ({ops})", flush=True)


def fit_all(model, names, y, sigs, epochs, rng, ema, teachers=None):
    """--all-data: train on every record outside the held-out part (train + validation,
    4,752 records) with the fixed schedule; the moving average of the weights (decay
    `ema`) at the end is kept. No epoch, offsets or threshold are chosen here (nothing is
    left to choose them on): they come from the out-of-fold predictions of the --cv-fold
    networks (alldata.py). Returns the checkpoint dict."""
    pool = np.flatnonzero(np.array([not heldout(n) for n in names]))
    t0, c0 = time.time(), time.process_time()
    print(f"all data: train on {len(pool)} records (train + validation)", flush=True)

    def after_epoch(epoch, loss):
        print(f"epoch {epoch:3d} loss {loss:.4f} ({time.time() - t0:.0f} s)", flush=True)

    averaged = train_epochs(model, y, sigs, pool, epochs, rng, ema, after_epoch,
                            teachers=teachers)
    model.load_state_dict(averaged.module.state_dict())
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "all_data": True, "train_records": int(len(pool)), "epochs": epochs,
            "ema": ema, "training_wall_s": round(time.time() - t0),
            "training_cpu_s": round(time.process_time() - c0)}


def export_all(model, names, sigs, fitted, offsets, out_dir):
    """--all-data --from-checkpoint F --offsets ...: the all-data network with the given
    class offsets in its head, exported as out_dir/af_cnn.onnx, with the contract checks
    per window (ONNX vs torch, DC offset, amplitude) on windows of the first 64 records
    outside the held-out part; writes out_dir/export.json. No record is scored."""
    import torch

    model.load_state_dict(fitted["state"])
    model.offsets.copy_(torch.tensor(offsets, dtype=torch.float32))
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "af_cnn.onnx")
    ops = export_onnx(model, path)
    pool = [i for i, n in enumerate(names) if not heldout(n)][:64]
    xv = np.concatenate([record_windows(sigs[i]) for i in pool])[:, None, :]
    pred = ort_predictor(ort_session(path, 1))
    base = pred(xv)
    ort_diff = float(np.abs(base - torch_predictor(model)(xv)).max())
    checks = {"windows": int(len(xv)), "onnx_vs_torch_max_abs_diff": ort_diff,
              **window_changes(pred, xv, base)}
    print(f"ops {ops}; checks {json.dumps(checks)}", flush=True)
    assert ort_diff < 1e-4, f"onnx export disagrees with torch: {ort_diff}"
    assert checks["window_dc_offset_0_7mV_max_abs_diff"] < 1e-4
    assert checks["window_amplitude_x3_max_abs_diff"] < 1e-2
    report = {"model": "af-cnn", "arch": ARCH, "all_data": True,
              "train_records": fitted["train_records"], "epochs": fitted["epochs"],
              "ema": fitted["ema"], "class_logit_offsets": [float(v) for v in offsets],
              "onnx_ops": ops, "checks": checks,
              "training_wall_s": fitted["training_wall_s"],
              "training_cpu_s": fitted["training_cpu_s"],
              "heldout": "not scored by train.py --all-data"}
    with open(os.path.join(out_dir, "export.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {path} and export.json; no record scored", flush=True)


def file_sha256(path):
    """The SHA-256 of a file, hex (the studies' `sha256` is this one)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_key(seed=SEED, ema=0.0, mixup=0.0, teachers=None):
    """Everything that defines the trained model, to refuse a checkpoint of another.
    (1.0.0's recipe, --arch v1 without --ema, keeps its key; the seed is last. A student
    of --teachers carries the distillation settings and its teachers' sha256.)"""
    extra = [] if ARCH == "v1" and not ema else [ARCH, ARCHS[ARCH], SE_REDUCTION, ema]
    extra += [["mixup", mixup]] if mixup else []
    if teachers:
        extra += [["distill", DISTILL_ALPHA, DISTILL_T, [file_sha256(p) for p in teachers]]]
    return json.dumps(["first conv unpadded", R, WIN_S, HOP_S, BLOCKS, TAPS, AUTOCORR_TAP, AUTOCORR_LAGS,
                       AUTOCORR_CHANNELS, HEAD, DROPOUT, NORM_EPS, BATCH, LR,
                       WEIGHT_DECAY, LABEL_SMOOTHING, CLASS_WEIGHT_POWER] + extra + [seed])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev", action="store_true")
    ap.add_argument("--inputs")
    ap.add_argument("--data")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--seed", type=int, default=SEED, help="seed of the weights' "
                    "initialisation, dropout, crops and augmentation (one ensemble member)")
    ap.add_argument("--checkpoint", help="save the trained model and the validation "
                    "choices here (outside the repository)")
    ap.add_argument("--from-checkpoint", help="skip training: export and score the "
                    "held-out part once with a model saved by --dev --checkpoint")
    ap.add_argument("--members", help="skip training: comma-separated checkpoints of "
                    "members (--dev --seed S --checkpoint F runs) averaged as one model; "
                    "with --dev only: its class offsets, AF threshold and F1s on the "
                    "validation part")
    ap.add_argument("--arch", default="v1", choices=sorted(ARCHS),
                    help="network (ARCHS): v1 = 1.0.0's")
    ap.add_argument("--ema", type=float, default=0.0, help="keep the moving average "
                    "of the weights (this decay per step) at the end of the schedule "
                    "instead of choosing an epoch on validation")
    ap.add_argument("--cv-fold", type=int, help="train and score one fold of the "
                    "K-fold cross-validation over train + validation (cv_fold); "
                    "nothing about the held-out part is read")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--mixup", type=float, default=0.0, help="mix each batch with a "
                    "shuffled copy of itself, lam ~ Beta(MIXUP, MIXUP); 0: off")
    ap.add_argument("--export-only", action="store_true", help="with --from-checkpoint: "
                    "export af_cnn.onnx to --out and run the contract checks on the "
                    "validation part; the held-out part is not scored")
    ap.add_argument("--cv-out", default="/tmp/af_cnn_cv", help="where --cv-fold writes")
    ap.add_argument("--cv-onnx", action="store_true", help="with --cv-fold: also save the "
                    "fold's moving-average network as CV_OUT/fold{K}.onnx and .pt")
    ap.add_argument("--all-data", action="store_true", help="train on train + validation "
                    "(every record outside the held-out part) with the fixed schedule and "
                    "--ema, save --checkpoint; with --from-checkpoint and --offsets: "
                    "export af_cnn.onnx to --out (no record scored)")
    ap.add_argument("--offsets", help="with --all-data --from-checkpoint: the class logit "
                    "offsets N,A,O,~ (from the out-of-fold predictions, alldata.py)")
    ap.add_argument("--teachers", help="train a student (distill_plan.md): with --cv-fold, "
                    "comma-separated --cv-out folders whose fold{K}.pt teach fold K's "
                    "network; with --all-data, comma-separated --all-data checkpoints "
                    "(with --from-checkpoint: the same list, to check the student's key)")
    args = ap.parse_args()
    teachers = args.teachers.split(",") if args.teachers else None
    assert not teachers or args.cv_fold is not None or args.all_data, \
        "--teachers trains a student: with --cv-fold or --all-data"
    t_start = time.time()
    global ARCH
    ARCH = args.arch

    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)

    if args.inputs:
        names, y, sigs = load_export(args.inputs)
    else:
        names, y, sigs = load_records(args.data or data_dir_default())
    ho = np.array([heldout(n) for n in names])
    va = np.array([validation(n) for n in names])
    tr = ~ho & ~va
    itr, iva, ite = np.flatnonzero(tr), np.flatnonzero(va), np.flatnonzero(ho)
    print(f"{len(names)} records at {R} Hz: train {len(itr)}, validation {len(iva)}, "
          f"held out {len(ite)} (not touched{'' if args.dev else ' until the end'})",
          flush=True)

    model = build_model()
    n_params = sum(p.numel() for p in model.parameters())
    macs = count_macs()
    print(f"arch {ARCH}: {n_params} parameters, {macs / 1e6:.2f} M multiply-adds per "
          "window", flush=True)
    if args.cv_fold is not None:
        # The folds of cv_study.json were run while count_macs() drew its model from
        # the torch RNG; one model built and dropped here keeps them reproducible.
        build_model()
        cv_fold(names, y, sigs, args.cv_fold, args.folds, args.epochs, args.seed,
                args.ema or 0.998, args.cv_out, args.mixup, args.cv_onnx, teachers)
        return
    if args.all_data:
        assert args.ema > 0 and args.arch == "v1" and not args.mixup, \
            "--all-data is the v1 recipe with --ema"
        key = json.dumps(["all data", json.loads(config_key(args.seed, args.ema, 0.0, teachers))])
        if args.from_checkpoint:
            fitted = torch.load(args.from_checkpoint, weights_only=False)
            assert fitted["config"] == key, "checkpoint from another configuration"
            assert args.offsets, "--all-data --from-checkpoint needs --offsets N,A,O,~"
            offsets = [float(v) for v in args.offsets.split(",")]
            assert len(offsets) == len(CLASSES)
            export_all(model, names, sigs, fitted, offsets, args.out)
            return
        assert args.checkpoint, "--all-data trains and saves --checkpoint"
        fitted = fit_all(model, names, y, sigs, args.epochs, rng, args.ema,
                         load_teachers(teachers) if teachers else None)
        fitted["config"] = key
        torch.save(fitted, args.checkpoint)
        print(f"saved {args.checkpoint} ({fitted['training_wall_s']} s wall, "
              f"{fitted['training_cpu_s']} s CPU)", flush=True)
        return
    if args.members:
        assert args.dev, "--members measures an ensemble on the validation part (--dev)"
        members, fits = [], []
        for path in args.members.split(","):
            f = torch.load(path, weights_only=False)
            seed = json.loads(f["config"])[-1]
            assert f["config"] == config_key(seed), f"{path}: another configuration"
            m = build_model()
            m.load_state_dict(f["state"])
            members.append(m)
            fits.append((seed, f))
        model = build_ensemble(members)
        n_params = sum(p.numel() for p in model.parameters())
        macs = count_macs() * len(members)
        val_sigs = [sigs[i] for i in iva]
        before = f1_scores(y[iva], record_probs(torch_predictor(model), val_sigs).argmax(1))
        print(f"ensemble of {len(members)} (seeds {[sd for sd, _ in fits]}; members' "
              f"validation mean F1 after their own offsets "
              f"{[round(f['validation_f1']['mean_NAO'], 4) for _, f in fits]}, F1 of A "
              f"{[round(f['validation_f1']['A'], 4) for _, f in fits]}): {n_params} "
              f"parameters, {macs / 1e6:.2f} M multiply-adds per window; validation "
              f"mean F1 before offsets {before['mean_NAO']:.4f}", flush=True)
        offsets, val_after, fv, threshold = choose_on_validation(model, val_sigs, y[iva])
        print(f"class offsets {offsets.tolist()}: validation mean F1 "
              f"{before['mean_NAO']:.4f} -> {val_after:.4f}", flush=True)
        fitted = {"state": model.state_dict(),
                  "selected_epoch": [f["selected_epoch"] for _, f in fits],
                  "validation_f1_before_offsets": before["mean_NAO"],
                  "offsets": offsets.tolist(), "validation_f1": fv, "threshold": threshold,
                  "history": [f["history"] for _, f in fits],
                  "epochs": fits[0][1]["epochs"],
                  "training_wall_s": sum(f["training_wall_s"] for _, f in fits),
                  "training_cpu_s": sum(f["training_cpu_s"] for _, f in fits),
                  "seeds": [sd for sd, _ in fits]}
    elif args.from_checkpoint:
        fitted = torch.load(args.from_checkpoint, weights_only=False)
        assert fitted["config"] == config_key(args.seed, args.ema, args.mixup), \
            "checkpoint from another configuration (--arch, --ema, --seed)"
        print(f"loaded {args.from_checkpoint}: trained by a --dev run of this script",
              flush=True)
    else:
        fitted = fit(model, names, y, sigs, itr, iva, args.epochs, rng, t_start, args.ema,
                     args.mixup)
        fitted["config"] = config_key(args.seed, args.ema, args.mixup)
        if args.checkpoint:
            torch.save(fitted, args.checkpoint)
            print(f"saved {args.checkpoint}", flush=True)
    model.load_state_dict(fitted["state"])
    model.eval()
    best = (fitted["validation_f1_before_offsets"], fitted["selected_epoch"])
    offsets = np.array(fitted["offsets"])
    fv, threshold, history = fitted["validation_f1"], fitted["threshold"], fitted["history"]
    t_train = fitted["training_wall_s"]
    val_sigs = [sigs[i] for i in iva]

    if args.dev:
        print(f"--dev: held-out part not scored, nothing written "
              f"({time.time() - t_start:.0f} s)")
        return

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "af_cnn.onnx")
    ops = export_onnx(model, path)
    sess = ort_session(path, 1)
    # ONNX Runtime against torch on the validation records (whole-record protocol).
    pv_ort = record_probs(ort_predictor(sess), val_sigs)
    pv_torch = record_probs(torch_predictor(model), val_sigs)
    ort_diff = float(np.abs(pv_ort - pv_torch).max())
    assert ort_diff < 1e-4, f"onnx export disagrees with torch: {ort_diff}"
    # Contract checks: DC offset and amplitude scale. Per window (the offset added to the
    # whole 30 s window), and per record on the validation part (the offset or gain
    # applied to the record before its windows are cut and a short one zero-padded, as
    # a device would).
    xv = np.concatenate([record_windows(s) for s in val_sigs[:64]])[:, None, :]
    pred = ort_predictor(sess)
    base = pred(xv)
    dc_diff, scale_diff = window_changes(pred, xv, base, (
        "window_dc_offset_0_7mV_max_abs_diff", "window_amplitude_x3_max_abs_diff")).values()
    print(f"ops {ops}; ONNX vs torch max |dp| {ort_diff:.2e}; +0.7 mV DC max |dp| "
          f"{dc_diff:.2e}; x3 amplitude max |dp| {scale_diff:.2e}", flush=True)
    robustness = {}
    for what, f in (("dc_plus_0_7_mV", lambda s: s + 0.7), ("dc_minus_1_mV", lambda s: s - 1.0),
                    ("gain_x3", lambda s: s * 3.0), ("gain_x0_3", lambda s: s * 0.3)):
        p = record_probs(pred, [f(s) for s in val_sigs])
        robustness[what] = {"validation_f1": f1_scores(y[iva], p.argmax(1)),
                            "max_abs_record_probability_change": float(
                                np.abs(p - pv_ort).max()),
                            "records_whose_label_changed": int(
                                (p.argmax(1) != pv_ort.argmax(1)).sum())}
    print(f"record-level robustness (validation): {json.dumps(robustness)}", flush=True)
    # The contract: blind to a DC offset, and to amplitude scale up to NORM_EPS.
    assert dc_diff < 1e-4, f"+0.7 mV DC offset changes a window's probabilities by {dc_diff}"
    assert scale_diff < 1e-2, f"x3 amplitude changes a window's probabilities by {scale_diff}"
    import onnxruntime

    checks = {"onnx_vs_torch_max_abs_diff": ort_diff,
              "window_dc_offset_0_7mV_max_abs_diff": dc_diff,
              "window_amplitude_x3_max_abs_diff": scale_diff,
              "record_level_validation": robustness}
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__, "onnxruntime": onnxruntime.__version__}
    if args.export_only:
        report = {
            "model": "af-cnn", "arch": ARCH, "ema": args.ema, "seed": args.seed,
            "parameters": int(n_params), "multiply_adds_per_window": int(macs),
            "onnx_ops": ops, "selected_epoch": best[1], "epochs": fitted["epochs"],
            "class_logit_offsets": [round(float(v), 4) for v in offsets],
            "validation_f1_before_offsets": best[0], "validation_f1": fv,
            "af_threshold": threshold,
            "checks": checks,
            "throughput_onnxruntime_python": throughput(path),
            "training_wall_s": round(t_train),
            "training_cpu_s": round(fitted["training_cpu_s"]),
            "heldout": "not scored by --export-only",
            "versions": versions,
            "history": history,
        }
        with open(os.path.join(args.out, "export.json"), "w") as f:
            json.dump(report, f, indent=2)
        print(f"--export-only: wrote {path} and export.json; held-out part not scored",
              flush=True)
        return

    # The held-out part, scored once, through ONNX Runtime.
    te_sigs = [sigs[i] for i in ite]
    pt = record_probs(ort_predictor(sess), te_sigs)
    yt = y[ite]
    pred_t = pt.argmax(1)
    af_at = pt[:, 1] >= threshold
    tp = int((af_at & (yt == 1)).sum())
    speed = throughput(path)
    report = {
        "model": "af-cnn",
        "data": "PhysioNet/CinC 2017 training records in ../shared/data/cinc2017 (5,970)",
        "input": {"name": "ecg", "shape": ["batch", 1, W], "sample_rate_hz": R,
                  "window_s": WIN_S, "hop_s": HOP_S, "units": "mV, raw",
                  "source": "inputs export" if args.inputs else
                  "scipy.signal.resample_poly 300 -> 125 Hz (up 5, down 12)"},
        "split": {"heldout": "sha256(name) % 5 == 0",
                  "validation": "sha256(name) % 5 != 0 and (sha256(name) // 5) % 6 == 0",
                  "records": {"train": int(len(itr)), "validation": int(len(iva)),
                              "heldout": int(len(ite))}},
        "parameters": int(n_params),
        "multiply_adds_per_window": int(macs),
        "seed": args.seed,
        "onnx_ops": ops,
        "selected_epoch": best[1],
        "epochs": fitted["epochs"],
        "training_cpu_s": round(fitted["training_cpu_s"]),
        "trained_in": "a --dev --checkpoint run, then --from-checkpoint"
        if args.from_checkpoint else "this run",
        "class_logit_offsets": [round(float(v), 4) for v in offsets],
        "validation_f1": fv,
        "af_threshold": threshold,
        "heldout_counts": {c: int((yt == i).sum()) for i, c in enumerate(CLASSES)},
        "heldout_f1_argmax": f1_scores(yt, pred_t),
        "heldout_f1_bootstrap_95ci": bootstrap_f1(yt, pred_t, BOOTSTRAP, SEED),
        "bootstrap_rounds": BOOTSTRAP,
        "heldout_confusion": {"rows_true_cols_pred": CLASSES,
                              "matrix": confusion(yt, pred_t).tolist()},
        "heldout_af_at_threshold": {
            "threshold": threshold,
            "sensitivity": tp / max(int((yt == 1).sum()), 1),
            "ppv": tp / max(int(af_at.sum()), 1)},
        "checks": checks,
        "throughput_onnxruntime_python": speed,
        "training_wall_s": round(t_train),
        "total_wall_s": round(time.time() - t_start),
        "versions": versions,
        "history": history,
    }
    with open(os.path.join(args.out, "heldout.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps({k: report[k] for k in ("heldout_counts", "heldout_f1_argmax",
                                             "heldout_f1_bootstrap_95ci", "heldout_confusion",
                                             "heldout_af_at_threshold",
                                             "throughput_onnxruntime_python",
                                             "training_wall_s")}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
