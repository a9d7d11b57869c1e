#!/usr/bin/python3
"""Writes the seed inputs of the libFuzzer targets to tests/fuzz/corpus/<target>/ (deterministic: re-running gives
the same bytes). Seeds are meaningful inputs: tests/data's stream messages, configs, valid scan metadata, control
requests and safetensors files, and descriptions of valid HDF5 files in the format fuzz_h5util.h reads. `make
fuzz-ci` grows no corpus here: new units go to a scratch directory; fuzz_seeds_merge (docs/TESTING.md) keeps this
set minimal. Usage: tests/fuzz/make_seeds.py [SRC_DIR]"""
import json
import os
import struct
import sys

import lz4.block
import numpy as np

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(SRC, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())


def src(*p):
    with open(os.path.join(SRC, *p), "rb") as fh:
        return fh.read()


def bslz4(raw, es):
    """One-block bitshuffle+LZ4 chunk (HDF5 filter 32008 framing) of n elements, n % 8 == 0, n * es <= 8192."""
    n = len(raw) // es
    bits = np.unpackbits(np.frombuffer(raw, np.uint8).reshape(n, es), axis=1, bitorder="little")
    shuffled = np.packbits(bits.T, axis=1, bitorder="little").tobytes()
    block = lz4.block.compress(shuffled, store_size=False)
    return struct.pack(">QI", len(raw), 8192) + struct.pack(">I", len(block)) + block


# ---- stream decoders, codecs, scan metadata, configuration ---------------------------------------------------
data = os.path.join(SRC, "tests", "data")
for fn in sorted(os.listdir(data)):
    if fn.startswith("stream_v2_"):
        put("fuzz_v2", fn, src("tests", "data", fn))
    elif fn.startswith("stream_v1_"):  # container (u32 count, u32 len + part) -> parts joined by FE FF
        b = src("tests", "data", fn)
        count, off, parts = struct.unpack_from("<I", b)[0], 4, []
        for _ in range(count):
            n = struct.unpack_from("<I", b, off)[0]
            parts.append(b[off + 4:off + 4 + n])
            off += 4 + n
        put("fuzz_v1", fn, b"\xfe\xff".join(parts))

ramp16 = np.arange(64, dtype="<u2").tobytes()
for sel, es in ((0, 1), (1, 2), (2, 4)):  # first byte % 3 picks the element size
    raw = (np.arange(64 * es, dtype=np.uint8) // 3).tobytes()
    put("fuzz_codec", f"bslz4_{es}", bytes([sel]) + bslz4(raw, es))
put("fuzz_codec", "lz4_raw", b"\x01" + lz4.block.compress(ramp16, store_size=False))
blk = lz4.block.compress(ramp16, store_size=False)  # HDF5 LZ4 framing: BE u64 total, BE u32 block, BE u32 + block
put("fuzz_codec", "h5lz4", b"\x01" + struct.pack(">QII", len(ramp16), len(ramp16), len(blk)) + blk)

put("fuzz_scanmeta", "user_data", json.dumps({"angle_deg": 12.5, "positions_m": [[0, 1e-6], [2e-6, 3e-6]]}))
put("fuzz_scanmeta", "frame", json.dumps({"pos_m": [1e-6, -2e-6]}))
put("fuzz_scanmeta", "scan", json.dumps({"htype": "aptomo-scan-1.0", "series": 3, "angle_deg": -90, "n_frames": 2,
                                         "positions_m": [[0, 0], [1e-7, 1e-7]]}))
put("fuzz_scanmeta", "pos", json.dumps({"htype": "aptomo-pos-1.0", "series": 3, "frame0": 1,
                                        "positions_m": [[1e-7, 2e-7]]}))

for fn in sorted(os.listdir(os.path.join(SRC, "configs"))):
    put("fuzz_config", fn, src("configs", fn))
for fn in ("probe_inline.yaml", "duplicate_key.yaml", "two_documents.yaml", "out_of_range.yaml"):
    put("fuzz_config", fn, src("tests", "data", "config", fn))

# ---- daemon control requests ---------------------------------------------------------------------------------
for name, req in (("status", {"cmd": "status"}), ("latest", {"cmd": "latest"}),
                  ("latest_topic", {"cmd": "latest", "topic": "approximant"}), ("reset", {"cmd": "reset"}),
                  ("finalize", {"cmd": "finalize"}), ("shutdown", {"cmd": "shutdown"}),
                  ("set_n_star", {"cmd": "set", "key": "tomo.n_star", "value": 40}),
                  ("set_alias", {"cmd": "set", "key": "publish_every", "value": 2}),
                  ("set_timeout", {"cmd": "set", "key": "detector.series_timeout_s", "value": 2.5}),
                  ("set_level", {"cmd": "set", "key": "log.level", "value": "debug"}),
                  ("set_other", {"cmd": "set", "key": "detector.crop", "value": 64})):
    put("fuzz_control", name, json.dumps(req))


# ---- safetensors ---------------------------------------------------------------------------------------------
def safetensors(tensors, meta):
    header, blob = {}, b""
    for name, arr in tensors:
        b = arr.tobytes()
        header[name] = {"dtype": "F32" if arr.dtype == np.float32 else "I64", "shape": list(arr.shape),
                        "data_offsets": [len(blob), len(blob) + len(b)]}
        blob += b
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


put("fuzz_safetensors", "two", safetensors([("enc.0.conv.weight", np.ones((2, 1, 3, 3), "<f4")),
                                            ("enc.0.bn.num_batches_tracked", np.array(7, "<i8"))],
                                           {"aptomo.arch": "{\"base\":2}", "format": "pt"}))
put("fuzz_safetensors", "empty_tensor", safetensors([("z", np.zeros((0, 4), "<f4"))], None))


# ---- HDF5 descriptions (fuzz_h5util.h): structure bytes per dataset, then the value stream ------------------------
def ds(mode=0, typ=0, rank=0, dims=(0, 0, 0, 0), layout=0, chunk=0):
    return bytes([mode, typ, rank, *dims, layout, chunk])


def attr(mode=0, typ=0, rank=0, dims=(0, 0, 0, 0)):
    return bytes([mode, typ, rank, *dims])


scan_names = ["energy", "dist", "pixel", "beam", "angles", "probe", "probe_px", "truth", "voxel"] + \
             [f"{w}{k}" for k in range(3) for w in ("data", "pos")]


def scan(head=b"\0" * 6, over=None, values=b""):
    over = over or {}
    return head + b"".join(over.get(n, ds()) for n in scan_names) + values


put("fuzz_h5scan", "canonical", scan())
# 3 angles of 3 frames 8x6 uint32, 2 probe modes, values other than 1.0 (bytes 16.. are (b - 16) / 4)
put("fuzz_h5scan", "three_angles", scan(bytes([2, 2, 4, 2, 2, 1]), values=bytes(range(20, 250)) * 4))
# angle 0 stored as a raw bslz4 chunk (1 frame of 4x4 uint16: 16 elements), values of the datasets before it 1.0
frame = np.arange(16, dtype="<u2").tobytes()
chunk = bslz4(frame, 2)
before = 1 + 1 + 1 + 2 + 1 + 16 * 2 + 1 + 12 + 3  # energy dist pixel beam angles probe probe_px truth voxel
put("fuzz_h5scan", "raw_chunk", scan(over={"data0": ds(7, 0, 0, (0, 0, 0, 0), 5, 0)},
                                     values=b"\0" * before + struct.pack("<H", len(chunk)) + chunk))
# never-written frames of [1, 65537, 4] (a side past the bound) and of [16777216, 4, 4]
put("fuzz_h5scan", "huge_side", scan(over={"data0": ds(7, 0, 3, (0, 8 + 2, 0, 0), 0x80 | 6, 2)}))
put("fuzz_h5scan", "huge_count", scan(over={"data0": ds(7, 0, 3, (8 + 4, 3, 3, 0), 0x80 | 6, 2)}))

vol_names = ["data", "voxel", "truth", "tvoxel", "theta"]


def vol(over=None, shape_attr=attr(), values=b""):
    over = over or {}
    return b"".join(over.get(n, ds()) for n in vol_names) + shape_attr + values


put("fuzz_h5volume", "canonical", vol())
put("fuzz_h5volume", "volume_shape", vol(values=b"\0" * (24 + 3 + 24 + 3 + 3) + bytes([3, 5, 7])))
put("fuzz_h5volume", "voxel_1nm", vol(values=b"\0" * 24 + (b"\xff" + struct.pack("<d", 1e-9)) * 3))
put("fuzz_h5volume", "chunked_deflate", vol(over={"data": ds(7, 0, 0, (0, 0, 0, 0), 4, 3)},
                                            values=bytes(range(16, 200))))


def sealed(header, payload):
    """A state file (docs/FILES.md "State files"); the last byte's low bit asks the target to fix the CRC."""
    import zlib
    h = json.dumps(header, separators=(",", ":")).encode()
    body = b"APTSEAL1" + struct.pack("<I", len(h)) + h + struct.pack("<Q", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


q = {"kind": "queued_angle", "series": 3, "unique_id": "u", "index": 2, "has_angle": True, "angle_deg": 4.5,
     "crop": 8, "frames": 1, "received": 1, "dropped": 0, "dup": 0, "undecodable": 0, "nopos": 0, "overflow": 0,
     "reason": "end", "seconds_acquire": 0.5}
put("fuzz_sealed", "queued_angle", sealed(q, b"\0" * (8 * 8 * 4 + 16)))
put("fuzz_sealed", "empty_payload", sealed({"kind": "approximant"}, b""))
