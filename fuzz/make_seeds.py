#!/usr/bin/env python3
"""Writes the committed seed inputs of the fuzz targets (fuzz/seeds/TARGET/): small
valid inputs of every decoder, made here rather than copied from any data set, so
the fuzzers start from the structure they must break. With --data DIR (the shared
records, CARDIOSTREAM_DATA) it also writes seeds from the real WFDB files into
fuzz/corpus/ (never committed)."""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data, base="seeds"):
    d = os.path.join(HERE, base, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(tag, wire, payload):
    return varint(tag << 3 | wire) + payload


def ld(tag, payload):
    return field(tag, 2, varint(len(payload)) + payload)


def zigzag(v):
    return (v << 1) ^ (v >> 31)


def pb_frame(leads, n):
    chans = b""
    for i, lead in enumerate(leads):
        samples = b"".join(varint(zigzag(((k * 37 + i) % 201) - 100)) for k in range(n))
        chans += ld(9, field(1, 0, varint(lead)) + field(2, 0, varint(i == 1)) + ld(3, samples))
    return (
        field(1, 0, varint(1))
        + ld(2, b"bed-7.ecg")
        + ld(3, b"dev-001")
        + ld(4, b"pt-4f2a")
        + field(5, 0, varint(42))
        + field(6, 0, varint(1763000000000000))
        + field(7, 0, varint(250))
        + field(8, 0, varint(1000))
        + chans
    )


def pb_waveform(code, unit, rate, scale, n):
    samples = b"".join(varint(zigzag(1500 + (k * 53) % 400)) for k in range(n))
    return ld(10, field(1, 0, varint(code)) + field(2, 0, varint(unit)) + field(3, 0, varint(rate))
              + field(4, 5, struct.pack("<f", scale)) + ld(6, samples))


def codec():
    # First byte: content type (0 none, 1 protobuf, 2 JSON, 3 JSON; charset, 4 other).
    put("codec", "pb-3-leads", b"\x01" + pb_frame([1, 2, 3], 50))
    put("codec", "pb-1-lead-sniffed", b"\x00" + pb_frame([2], 250))
    # The optional parts: a plethysmogram at half the ECG's rate and arterial pressure
    # at its rate (field 10), and pacemaker pulses (field 11, packed).
    put("codec", "pb-pulses-and-pace", b"\x01" + pb_frame([2, 3], 50)
        + pb_waveform(150452, 512, 125, 0.001, 25) + pb_waveform(150036, 3872, 250, 0.01, 50)
        + ld(11, b"".join(varint(p) for p in [3, 20, 41])))
    j = {
        "schema_version": 1, "stream_id": "bed-12.ecg", "device_id": "mon-4471",
        "patient_id": "pt-8c1f", "seq": 1842, "t0_us": 1763900000000000,
        "sample_rate_hz": 250, "scale_nv": 1000,
        "channels": [{"lead": "II", "lead_off": False, "samples": [12, 15, 21, 40]},
                     {"lead": "V5", "samples": [8, 9, 14, 30]}],
    }
    put("codec", "json-doc-example", b"\x02" + json.dumps(j).encode())
    j["channels"] = [{"lead": 2, "samples": [1, -1, 3, -3]}]
    put("codec", "json-lead-number-charset", b"\x03" + json.dumps(j).encode())
    j["channels"] = [{"lead": "II", "samples": [12, 2015, 1021, -288, -190, -95, 8, 11]}]
    j["waveforms"] = [{"code": 150452, "unit": 512, "sample_rate_hz": 125, "scale": 0.001,
                       "samples": [1520, 1604, 1650, 1610]}]
    j["pace_pulses"] = [1, 6]
    put("codec", "json-pulses-and-pace", b"\x02" + json.dumps(j).encode())


def record(hea, sig):
    h = hea.encode()
    return struct.pack("<H", len(h)) + h + sig


def wfdb():
    headers = {
        "212-two": "r 2 360 2\n# comment\nr.dat 212 200(10)/mV 12 1024 995 -22131 0 MLII\nr.dat 212 200 12 1024 1011 20052 0 V5\n",
        "16-spf": "x 1 300\nx.dat 16x2:3+4 1000/uV 16 0 5\n",
        "mat": "m 1 300 3\nm.mat 16 1000/mV 16 0 100 0 0 ECG\n",
        "fs-counter": "r 3 500/250(0) 10 12:00:00 01/01/2020\nr.dat 8 100 8 0 0\nr.dat 8\nr.dat 8\n",
    }
    for n, h in headers.items():
        put("wfdb_header", n, h)
    # Records: header + signal bytes, one per format.
    body = bytes(range(256)) * 2
    for fmt in [8, 16, 24, 32, 61, 80, 160, 212, 310, 311]:
        put("wfdb_record", f"fmt{fmt}", record(f"r 2 250\nr.dat {fmt} 200 12 0 0 0 0 I\nr.dat {fmt} 100/uV 12 0 0 0 0 II\n", body))
    put("wfdb_record", "fmt16-spf", record("r 2 250 10\nr.dat 16x2 200\nr.dat 16 200\n", body))
    put("wfdb_record", "two-files", record("r 2 250\na.dat 16\nb.dat 212\n", body))
    mat = b"".join(struct.pack("<I", w) for w in [30, 1, 3, 0, 4]) + b"val\0" + struct.pack("<3h", 100, -200, 300)
    put("wfdb_record", "mat", record("m 1 300 3\nm.mat 16 1000/mV 16 0 100 0 0 ECG\n", mat))

    def w(a, i):
        return struct.pack("<H", (a << 10) | (i & 0x3FF))

    ann = (w(28, 18) + w(63, 5) + b"(AFIB\0" + w(1, 100) + w(62, 1) + w(59, 0)
           + struct.pack("<HH", 1, 70000 - 65536) + w(5, 2) + w(61, 3) + w(60, 2)
           + w(32, 10) + w(33, 50) + w(14, 10) + b"\0\0")
    put("wfdb_annotations", "mixed", ann)
    put("wfdb_annotations", "beats", b"".join(w(1, 250) for _ in range(20)) + b"\0\0")


def mllp():
    ack = "MSH|^~\\&|HIS|WARD|CS|CS|20250101120000||ACK^R40^ACK|A1|P|2.6\rMSA|AA|C1\r"
    put("mllp", "ack-aa", b"\x0b" + ack.encode() + b"\x1c\x0d")
    nak = ("MSH|^~\\&|HIS|WARD|CS|CS|20250101120000||ACK^R40^ACK|A2|P|2.6\rMSA|AE|C1|bad PID\r"
           "ERR||PID^1^5|101^Required field missing^HL70357|E||||Patient name \\T\\ id missing\r")
    put("mllp", "ack-ae-err", b"noise\x0b" + nak.encode() + b"\x1c\x0d\x0bMSA|CR|C1\x1c\x0d")
    put("mllp", "two-frames", b"\x0bMSH|^~\\&\rMSA|CA|C1\x1c\x0d\x0bMSA|AR|C1|\\X0D\\\x1c\x0d")


def api():
    # First byte: route (0 ack, 1 resolve, 2 escalate, 3 silence, 4 list query,
    # 5 ack by id); second: content type (0 JSON, 1 text/plain, 2 none).
    put("api_json", "ack-verdict", b"\x00\x00" + json.dumps({"verdict": "confirmed", "note": "seen"}).encode())
    put("api_json", "resolve-empty", b"\x01\x00{}")
    put("api_json", "escalate-note", b"\x02\x00" + json.dumps({"note": "no answer \u202e"}).encode())
    put("api_json", "silence", b"\x03\x00" + json.dumps(
        {"matchers": {"stream": "bed-1", "condition": "atrial_fibrillation", "priority": "medium"}, "duration_s": 600, "comment": "maintenance"}).encode())
    put("api_json", "list-query", b"\x04\x02state=open,resolved&priority=high&team=icu&limit=10")
    put("api_json", "ack-unknown-id", b"\x05\x00bed-1/atrial_fibrillation/x/1")


def from_data(data):
    """Seeds from the shared WFDB files into the (uncommitted) corpus."""
    d = os.path.join(data, "wfdb-formats")
    if not os.path.isdir(d):
        return
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        if name.endswith(".hea"):
            text = open(p, "rb").read()[:8192].decode("latin-1")
            put("wfdb_header", name, text, base="corpus")
            sig = b""
            for line in text.splitlines()[1:2]:
                parts = line.split()
                if parts:
                    sp = os.path.join(d, parts[0])
                    if os.path.isfile(sp):
                        sig = open(sp, "rb").read(4096)
            put("wfdb_record", name, record(text, sig), base="corpus")
        elif name.endswith((".atr", ".qrs", ".sqrs", ".wqrs", ".gqrsh", ".gqrsl", ".wabp")):
            put("wfdb_annotations", name, open(p, "rb").read(16384), base="corpus")


if __name__ == "__main__":
    codec()
    wfdb()
    mllp()
    api()
    if len(sys.argv) > 2 and sys.argv[1] == "--data":
        from_data(sys.argv[2])
