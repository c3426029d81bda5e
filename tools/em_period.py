#!/usr/bin/env python3
"""The rhythm inside nstdb's electrode-motion noise: per noisy block of the standard
protocol (2 min from 5:00, every 4 min), the lag (0.35-2 s) of the largest
autocorrelation of the 5-20 Hz band's magnitude, both signals summed.

The `em` noise is recovered as 118e00 - 118 (what `eval af-episodes --noise em` and
the tests do when nstdb's own `em` is absent): at 0 dB SNR, 118e00's noisy blocks are
118 plus the scaled `em`.

Usage: tools/em_period.py DATA_DIR        # the folder holding mitdb/ and nstdb/
Needs numpy, scipy, wfdb.
"""
import sys

import numpy as np
import wfdb
from scipy.signal import butter, filtfilt


def main(data):
    noisy = wfdb.rdrecord(f"{data}/nstdb/118e00").p_signal
    clean = wfdb.rdrecord(f"{data}/mitdb/118").p_signal
    em = noisy - clean[: len(noisy)]
    fs = 360
    b, a = butter(2, [5 / (fs / 2), 20 / (fs / 2)], "band")
    mag = np.abs(filtfilt(b, a, em[:, 0])) + np.abs(filtfilt(b, a, em[:, 1]))
    print("block (s)    lag of the largest autocorrelation (s)  its value")
    for start in range(300, len(em) // fs - 120, 240):
        seg = mag[start * fs:(start + 120) * fs]
        seg = seg - seg.mean()
        ac = np.correlate(seg, seg, "full")[len(seg) - 1:]
        ac /= ac[0]
        lags = np.arange(len(ac)) / fs
        m = (lags > 0.35) & (lags < 2.0)
        i = int(np.argmax(ac[m]))
        print(f"{start:5d}-{start + 120:5d}  {lags[m][i]:.3f}                                   {ac[m][i]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
