#!/usr/bin/env python3
"""Windows per second of ONNX models in Python onnxruntime, one intra-op thread.

usage: bench_onnx.py [--batch N] [--rounds N] [--seconds S] [--into FILE.json --key KEY]
                     MODEL.onnx [MODEL.onnx ...]

Each model gets a session with intra_op_num_threads=1 (inter-op 1, sequential) and a
random input of its declared shape with the batch dimension set to --batch (raw-mV-like
values: normal, SD 0.3). The models are timed in interleaved rounds (A B A B ...), each
round running one model for at least --seconds, so machine-load swings hit all of them
alike; the report gives every model's median and best windows/s over the rounds and,
with two or more models, each one's median ratio to the first, round by round. It also
gives windows per second of this process's CPU time (time.process_time), which
time-slicing by other jobs on a shared machine does not deflate (cache and memory
contention still do). --into writes the figures into FILE.json under KEY (the other
keys kept), e.g. a model's heldout.json.
"""
import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--into")
    ap.add_argument("--key", default="throughput")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    runs = []
    for path in a.models:
        s = session(path)
        inp = s.get_inputs()[0]
        shape = [a.batch] + [int(d) for d in inp.shape[1:]]
        x = rng.normal(0, 0.3, shape).astype(np.float32)
        for _ in range(3):
            s.run(None, {inp.name: x})
        runs.append((path, s, inp.name, x, [], []))
    for _ in range(a.rounds):
        for path, s, name, x, rates, cpu_rates in runs:
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < a.seconds:
                s.run(None, {name: x})
                n += 1
            rates.append(n * a.batch / (time.perf_counter() - t0))
            cpu_rates.append(n * a.batch / (time.process_time() - c0))
    base = np.array(runs[0][4])
    result = {"command": "models/bench_onnx.py", "onnxruntime": ort.__version__,
              "intra_op_threads": 1, "batch": a.batch, "rounds": a.rounds,
              "seconds_per_round": a.seconds, "load_average_1min": os.getloadavg()[0],
              "models": []}
    print(f"onnxruntime {ort.__version__}, 1 intra-op thread, batch {a.batch}, "
          f"{a.rounds} interleaved rounds of >= {a.seconds} s")
    for path, _, _, x, rates, cpu_rates in runs:
        r = np.array(rates)
        line = (f"{path}: input {list(x.shape)}: windows/s median {np.median(r):.1f}, "
                f"best {r.max():.1f}, all {[round(float(v), 1) for v in r]}; "
                f"windows per CPU-second median {np.median(cpu_rates):.1f}")
        entry = {"onnx": path, "windows_per_s_median": float(np.median(r)),
                 "windows_per_s_best": float(r.max()),
                 "windows_per_cpu_s_median": float(np.median(cpu_rates))}
        if len(runs) > 1:
            line += f"; median ratio to the first {np.median(r / base):.2f}x"
            entry["median_ratio_to_first"] = float(np.median(r / base))
        result["models"].append(entry)
        print(line)
    if a.into:
        with open(a.into) as f:
            doc = json.load(f)
        doc[a.key] = result
        with open(a.into, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
