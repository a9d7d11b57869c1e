"""The daemon never dies on what a peer sends: thousands of random, malformed and mutated Eiger v1/v2 and
scan-metadata messages (built with json/cbor2/bitshuffle, independent of our encoders) are pushed into a running
aptomod on a second detector endpoint and on the metadata channel; afterwards a clean replay must still be received
with exact per-angle counts, the control socket must answer malformed requests, and SIGTERM must exit 0."""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

import bitshuffle
import cbor2
import numpy as np
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import APTOMO, Checker, Daemon, free_ports, run_cli  # noqa: E402


def bslz4(arr):
    body = bitshuffle.compress_lz4(arr).tobytes()
    return struct.pack(">QI", arr.nbytes, 8192) + body


def valid_v1(rng):
    w, h = 48, 32
    frame = rng.integers(0, 50, size=(h, w), dtype=np.uint16)
    blob = bslz4(frame)
    sid = int(rng.integers(1, 900))
    kind = rng.integers(0, 3)
    if kind == 0:
        return [json.dumps({"htype": "dheader-1.0", "series": sid, "header_detail": "none"}).encode(),
                json.dumps({"angle_deg": 1.5, "positions_m": [[0, 0]] * 4}).encode()]
    if kind == 1:
        return [json.dumps({"htype": "dimage-1.0", "series": sid, "frame": int(rng.integers(0, 10)),
                            "hash": ""}).encode(),
                json.dumps({"htype": "dimage_d-1.0", "shape": [w, h], "type": "uint16", "encoding": "bs16-lz4<",
                            "size": len(blob)}).encode(),
                blob, json.dumps({"htype": "dconfig-1.0", "start_time": 0, "stop_time": 1,
                                  "real_time": 1}).encode()]
    return [json.dumps({"htype": "dseries_end-1.0", "series": sid}).encode()]


def valid_v2(rng):
    w, h = 48, 32
    frame = rng.integers(0, 50, size=(h, w), dtype=np.uint16)
    sid = int(rng.integers(1, 900))
    data = cbor2.CBORTag(40, [[h, w], cbor2.CBORTag(69, cbor2.CBORTag(56500, ["bslz4", 2, bslz4(frame)]))])
    kind = rng.integers(0, 3)
    if kind == 0:
        msg = {"type": "start", "series_id": sid, "series_unique_id": "fz", "channels": ["threshold_1"],
               "image_size_x": w, "image_size_y": h, "user_data": {"angle_deg": 3.0}}
    elif kind == 1:
        msg = {"type": "image", "series_id": sid, "series_unique_id": "fz", "image_id": int(rng.integers(0, 9)),
               "data": {"threshold_1": data}, "user_data": {"pos_m": [0.0, 1e-7]}}
    else:
        msg = {"type": "end", "series_id": sid, "series_unique_id": "fz"}
    return [cbor2.dumps(cbor2.CBORTag(55799, msg))]


def mutate(parts, rng):
    parts = [bytearray(p) for p in parts]
    for _ in range(int(rng.integers(1, 6))):
        p = parts[int(rng.integers(0, len(parts)))]
        op = rng.integers(0, 4)
        if op == 0 and p:
            p[int(rng.integers(0, len(p)))] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and p:
            del p[int(rng.integers(0, len(p))):]
        elif op == 2:
            p[int(rng.integers(0, len(p) + 1)):0] = bytes(rng.integers(0, 256, size=int(rng.integers(1, 9)),
                                                                       dtype=np.uint8))
        elif op == 3 and p:
            i = int(rng.integers(0, len(p)))
            p[i] = int(rng.choice([0x00, 0xFF, 0x9B, 0xBB, 0x5B, 0x7B, 0x1B]))
    return [bytes(p) for p in parts]


def nasty(rng):
    """Hand-made hostile messages: absurd sizes, deep nesting, wrong types, too many parts."""
    k = int(rng.integers(0, 9))
    if k == 0:
        return [json.dumps({"htype": "dimage_d-1.0", "shape": [10 ** 9, 10 ** 9], "type": "uint32",
                            "encoding": "<", "size": 4}).encode()]
    if k == 1:
        return [b"\x9b\x00\x00\x01\x00\x00\x00\x00\x00"]  # CBOR array of 2^40 items in 9 bytes
    if k == 2:
        return [b"\x81" * 5000]  # nesting bomb
    if k == 3:
        return [b"{}"] * 40  # more parts than any message has
    if k == 4:
        return [cbor2.dumps({"type": "image", "series_id": -5, "image_id": 2 ** 64 - 1, "data": {"x": 1}})]
    if k == 5:
        return [json.dumps({"htype": "dimage-1.0", "series": 1, "frame": -1}).encode(), b"", b"", b""]
    if k == 6:
        return [cbor2.dumps({"type": "image", "series_id": 1, "image_id": 0, "data": {
            "threshold_1": cbor2.CBORTag(40, [[2 ** 31, 2 ** 31], cbor2.CBORTag(69, b"\x00" * 16)])}})]
    if k == 7:
        return [bytes(rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8))]
    return [b""]


def main():
    ck = Checker("fuzz")
    rng = np.random.default_rng(20261125)
    with tempfile.TemporaryDirectory() as tmp:
        scan = os.path.join(tmp, "scan.h5")
        run_cli("synth-scan", "-o", scan, "--angles", 2, "--frames", 30, "--width", 96, "--height", 80,
                "--seed", 5)
        fuzz_port, = free_ports(1)
        ctx = zmq.Context()
        # one daemon, two detector endpoints: ours for the fuzz, the usual one for the replay afterwards
        d = Daemon(tmp, [f"detector.endpoints=[tcp://127.0.0.1:{fuzz_port},tcp://127.0.0.1:{{det}}]",
                         "detector.crop=32", "metadata.endpoint=tcp://127.0.0.1:{meta}", "metadata.bind=true",
                         "detector.series_timeout_s=1"], log_name="fuzz.log")
        det = d.det
        push = ctx.socket(zmq.PUSH)
        push.bind(f"tcp://127.0.0.1:{fuzz_port}")
        mpush = ctx.socket(zmq.PUSH)
        mpush.connect(f"tcp://127.0.0.1:{d.meta}")
        n_sent = 0
        for i in range(3000):
            base = valid_v1(rng) if i % 2 else valid_v2(rng)
            r = rng.random()
            parts = base if r < 0.1 else nasty(rng) if r < 0.3 else mutate(base, rng)
            push.send_multipart(parts)
            n_sent += 1
            if i % 10 == 0:
                meta_msgs = [b"{", b"[]", json.dumps({"htype": "aptomo-scan-1.0", "series": 5,
                                                      "positions_m": [[1, 2, 3]]}).encode(),
                             json.dumps({"htype": "aptomo-pos-1.0", "series": int(rng.integers(0, 99)),
                                         "frame0": 2 ** 62, "positions_m": [[0, 0]]}).encode(),
                             bytes(rng.integers(0, 256, size=50, dtype=np.uint8))]
                mpush.send(meta_msgs[(i // 10) % len(meta_msgs)])
        # wait until the daemon has taken every fuzz message
        t0 = time.time()
        while time.time() - t0 < 60:
            st = d.control({"cmd": "status"})
            if st["messages"] >= n_sent:
                break
            time.sleep(0.2)
        ck.true(f"all {n_sent} fuzz messages consumed (saw {st['messages']})", st["messages"] >= n_sent)
        ck.true("many counted malformed", st["malformed"] > 1000)
        ck.true("daemon alive after fuzz", d.proc.poll() is None)
        time.sleep(1.5)  # let any fuzz series time out
        # control socket: malformed requests get an error reply, never silence
        ck.eq("non-JSON request", d.control(b"\xff\x00")["ok"], False)
        ck.eq("no cmd", d.control({"x": 1})["ok"], False)
        ck.eq("unknown cmd", d.control({"cmd": "explode"})["ok"], False)
        ck.eq("bad set", d.control({"cmd": "set", "key": "tomo.n_star", "value": "many"})["ok"], False)
        ck.eq("good set", d.control({"cmd": "set", "key": "tomo.n_star", "value": 31})["ok"], True)
        ck.eq("n_star applied", d.control({"cmd": "status"})["n_star"], 31)
        t_drain = time.time()  # drain what the fuzz made the daemon publish (status keeps coming: bounded)
        while time.time() - t_drain < 3:
            d.recv(0.1)
        # a clean replay afterwards is received exactly
        rp = subprocess.run([APTOMO, "replay", scan, "--endpoint", f"tcp://127.0.0.1:{det}", "--series0", "5000",
                             "--protocol", "v2", "--wait", "20"], capture_output=True, text=True, timeout=120)
        ck.eq("replay exit", rp.returncode, 0)
        summary = json.loads(rp.stdout)
        got = {}
        t0 = time.time()
        while len(got) < 2 and time.time() - t0 < 60:
            m = d.recv(0.5)
            if m and m[0] == "angle" and m[1]["series"] >= 5000:
                got[m[1]["series"]] = m[1]
        for s in summary["series"]:
            a = got.get(s["series"], {})
            ck.eq(f"series {s['series']} frames_used", a.get("frames_used"), s["expected_used"])
            ck.eq(f"series {s['series']} frames_dropped", a.get("frames_dropped"), 0)
        ck.eq("SIGTERM exit", d.stop("term"), 0)
        if ck.failed:
            print("".join(l for l in open(d.log_path, errors="replace") if "malformed message" not in l)[-4000:])
        push.close(0)
        mpush.close(0)
        ctx.term()
    return ck.done()


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
