#!/usr/bin/env python3
"""Raw ONNX Runtime throughput and latency, the reference for `cargo bench --bench inference`.

Runs onnxruntime's own `InferenceSession` on a bundled .onnx with the same settings the
inference stage uses: `intra_op_num_threads = T`, `inter_op_num_threads = 1`, sequential
execution, CPU execution provider, default graph optimisations. Two ways of calling it:

- `run`:   `session.run([output], {input: batch})` with a prepared float32 numpy batch
           (what a Python service does; ORT wraps the numpy buffer, the output comes back
           as a new numpy array);
- `bound`: IOBinding with the input and output `OrtValue`s bound once, then
           `session.run_with_iobinding(binding)`: ONNX Runtime's `Run` with the least
           work around it (no per-call allocation of input or output tensors).

Two ways to use it:

  # stand-alone: prints one JSON document
  .cardiostream/venv/bin/python scripts/bench-ort-python.py \\
      --onnx models/af-rr/af_rr.onnx --threads 1 --batch 1,8,32,256 --seconds 1 --rounds 3

  # server (what benches/inference.rs uses, to interleave Rust and Python runs):
  # one JSON request per line on stdin, one JSON reply per line on stdout
  .cardiostream/venv/bin/python scripts/bench-ort-python.py --serve

Requests in server mode:
  {"op": "hello"}
  {"op": "load", "key": K, "onnx": PATH, "threads": T, "input": NAME,  # default: the first
   "data": F32_FILE, "rows": N, "dims": [..],       # N windows, row-major, little-endian
   "extra": [{"name": I, "data": F32_FILE, "dims": [..]}]}   # further inputs, N rows each
  {"op": "throughput", "key": K, "batch": B, "mode": "run"|"bound",
   "min_seconds": S, "min_calls": C, "warmup_calls": W}
  {"op": "latency", "key": K, "batch": B, "mode": "run"|"bound", "calls": C,
   "warmup_calls": W}
  {"op": "predict", "key": K, "batch": B}            # outputs of batch 0, flattened
  {"op": "unload", "key": K}
  {"op": "quit"}

Batch `k` of size `B` holds windows `(k*B + j) % N`, `j < B`, for `k < max(1, N // B)`, and
calls cycle through the batches: the same inputs in the same order as the Rust side.
Without `data`, the inputs are random but ECG-like (see `synthetic_rows`).
"""

import argparse
import gc
import json
import math
import sys
import time

import numpy as np
import onnxruntime as ort


def make_session(onnx_path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])


def synthetic_rows(rows, dims, seed=7):
    """ECG-like float32 inputs when no data file is given.

    - `[8]` (af_rr_v1 RR features): positive, feature-scaled values;
    - `[leads, samples]` (waveform, mV): a 1.2 Hz spike train (QRS-like, ~1 mV) plus
      baseline wander and 0.03 mV noise, per lead with a random gain.
    """
    rng = np.random.default_rng(seed)
    if len(dims) == 1:
        base = np.array([0.8, 0.05, 0.06, 0.3, 0.4, 0.1, 3.0, 0.5], dtype=np.float32)
        scale = np.resize(base, dims[0])
        return (np.abs(rng.normal(1.0, 0.4, size=(rows, dims[0]))) * scale).astype(np.float32)
    leads, samples = dims
    t = np.arange(samples, dtype=np.float32) / 500.0
    out = np.empty((rows, leads, samples), dtype=np.float32)
    for r in range(rows):
        hr = rng.uniform(0.9, 1.8)
        phase = (t * hr + rng.uniform()) % 1.0
        qrs = np.exp(-((phase - 0.3) ** 2) / (2 * 0.012**2)).astype(np.float32)
        wander = 0.2 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6.28))
        for lead in range(leads):
            out[r, lead] = (
                rng.uniform(-1.2, 1.5) * qrs
                + wander
                + rng.normal(0, 0.03, size=samples)
            )
    return out


def load_pool(data, rows, dims):
    """`rows` windows of shape `dims` from a float32 file, or synthetic ones."""
    if data:
        pool = np.fromfile(data, dtype="<f4")
        if rows is None:
            rows = pool.size // math.prod(dims)
        pool = pool.reshape([rows] + list(dims))
    else:
        pool = synthetic_rows(rows or 64, list(dims))
    return np.ascontiguousarray(pool, dtype=np.float32)


class Model:
    """A session and its input pools: the first graph input from `data`/`dims`, and
    any further ones (a waveform model's RR-feature input) from `extra`, a list of
    `{"name", "data", "dims"}` with the same number of rows (synthetic values for a
    further input not given)."""

    def __init__(self, onnx_path, threads, data=None, rows=None, dims=None, extra=(),
                 input_name=None):
        self.session = make_session(onnx_path, threads)
        inputs = self.session.get_inputs()
        inp = next((i for i in inputs if i.name == input_name), inputs[0])
        self.input = inp.name
        self.output = self.session.get_outputs()[0].name
        if dims is None:
            dims = [int(d) for d in inp.shape[1:]]
        self.dims = list(dims)
        self.pool = load_pool(data, rows, self.dims)
        self.pools = {self.input: self.pool}
        for e in extra:
            self.pools[e["name"]] = load_pool(e.get("data"), self.pool.shape[0], e["dims"])
        for i in inputs:
            if i.name not in self.pools:  # stand-alone: synthetic values
                d = [int(x) for x in i.shape[1:]]
                self.pools[i.name] = load_pool(None, self.pool.shape[0], d)
        self.threads = threads
        self.batches = {}
        self.bindings = {}

    def batch_list(self, b):
        """The feeds of the batches of size `b`: one dict (input name -> array) each."""
        if b not in self.batches:
            n = self.pool.shape[0]
            count = max(1, n // b)
            rows = [[(k * b + j) % n for j in range(b)] for k in range(count)]
            self.batches[b] = [
                {name: np.ascontiguousarray(pool[r]) for name, pool in self.pools.items()}
                for r in rows
            ]
        return self.batches[b]

    def binding_list(self, b):
        if b not in self.bindings:
            out_shape = [b] + [
                int(d) for d in self.session.get_outputs()[0].shape[1:]
            ]
            out = ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32, "cpu", 0)
            bs = []
            for feed in self.batch_list(b):
                io = self.session.io_binding()
                for name, x in feed.items():
                    io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x))
                io.bind_ortvalue_output(self.output, out)
                bs.append(io)
            self.bindings[b] = (bs, out)
        return self.bindings[b][0]

    def caller(self, b, mode):
        """A zero-argument function doing call number i (cycling through batches)."""
        sess, names = self.session, [self.output]
        if mode == "run":
            feeds = self.batch_list(b)
            n = len(feeds)
            state = [0]

            def call():
                i = state[0]
                state[0] = i + 1
                return sess.run(names, feeds[i % n])

            return call
        if mode == "bound":
            bs = self.binding_list(b)
            n = len(bs)
            state = [0]
            run = sess.run_with_iobinding

            def call():
                i = state[0]
                state[0] = i + 1
                run(bs[i % n])

            return call
        raise ValueError(f"unknown mode {mode!r}")

    def throughput(self, b, mode, min_seconds, min_calls, warmup_calls):
        call = self.caller(b, mode)
        for _ in range(warmup_calls):
            call()
        gc_was = gc.isenabled()
        gc.disable()
        try:
            calls = 0
            t0 = time.perf_counter()
            while True:
                call()
                calls += 1
                if calls >= min_calls:
                    dt = time.perf_counter() - t0
                    if dt >= min_seconds:
                        break
        finally:
            if gc_was:
                gc.enable()
        return {
            "batch": b,
            "mode": mode,
            "calls": calls,
            "seconds": dt,
            "windows_per_s": calls * b / dt,
            "us_per_call": dt / calls * 1e6,
        }

    def latency(self, b, mode, calls, warmup_calls):
        call = self.caller(b, mode)
        for _ in range(warmup_calls):
            call()
        lat = np.empty(calls, dtype=np.int64)
        clock = time.perf_counter_ns
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for i in range(calls):
                t = clock()
                call()
                lat[i] = clock() - t
        finally:
            if gc_was:
                gc.enable()
        return {"batch": b, "mode": mode, "calls": calls, "latencies_ns": lat.tolist()}


def serve():
    models = {}
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            op = req["op"]
            if op == "hello":
                rep = {
                    "onnxruntime": ort.__version__,
                    "numpy": np.__version__,
                    "python": sys.version.split()[0],
                    "providers": ort.get_available_providers(),
                }
            elif op == "load":
                m = Model(
                    req["onnx"],
                    req["threads"],
                    req.get("data"),
                    req.get("rows"),
                    req.get("dims"),
                    req.get("extra", ()),
                    req.get("input"),
                )
                models[req["key"]] = m
                rep = {"input": m.input, "output": m.output, "rows": int(m.pool.shape[0])}
            elif op == "throughput":
                rep = models[req["key"]].throughput(
                    int(req["batch"]),
                    req.get("mode", "run"),
                    float(req.get("min_seconds", 1.0)),
                    int(req.get("min_calls", 10)),
                    int(req.get("warmup_calls", 5)),
                )
            elif op == "latency":
                rep = models[req["key"]].latency(
                    int(req["batch"]),
                    req.get("mode", "run"),
                    int(req["calls"]),
                    int(req.get("warmup_calls", 5)),
                )
            elif op == "predict":
                m = models[req["key"]]
                y = m.session.run([m.output], m.batch_list(int(req["batch"]))[0])[0]
                rep = {"output": [float(v) for v in y.ravel()]}
            elif op == "unload":
                models.pop(req["key"], None)
                gc.collect()
                rep = {}
            elif op == "quit":
                out.write(json.dumps({"ok": True}) + "\n")
                out.flush()
                return
            else:
                raise ValueError(f"unknown op {op!r}")
            rep["ok"] = True
        except Exception as e:  # reply, never die: the Rust side prints the error
            rep = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(rep) + "\n")
        out.flush()


def standalone(args):
    m = Model(args.onnx, args.threads, args.data, args.rows, None)
    results = []
    for b in [int(x) for x in args.batch.split(",")]:
        for mode in args.modes.split(","):
            runs = [
                m.throughput(b, mode, args.seconds, args.min_calls, args.warmup)
                for _ in range(args.rounds)
            ]
            wps = sorted(r["windows_per_s"] for r in runs)
            results.append(
                {
                    "batch": b,
                    "mode": mode,
                    "median_windows_per_s": wps[len(wps) // 2],
                    "runs": runs,
                }
            )
    json.dump(
        {
            "onnx": args.onnx,
            "onnxruntime": ort.__version__,
            "threads": args.threads,
            "results": results,
        },
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve", action="store_true", help="JSON-lines server on stdin/stdout")
    p.add_argument("--onnx", help="model file (stand-alone mode)")
    p.add_argument("--data", help="float32 little-endian windows, row-major")
    p.add_argument("--rows", type=int, help="windows in --data (or synthetic windows)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", default="1,8,32")
    p.add_argument("--modes", default="run,bound")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--min-calls", type=int, default=10)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if args.serve:
        serve()
    elif args.onnx:
        standalone(args)
    else:
        p.error("give --serve or --onnx")


if __name__ == "__main__":
    main()
