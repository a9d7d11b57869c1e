#!/usr/bin/python3
"""test_stream_ref.py - aptomo's Eiger stream encoders and decoder against independent references.
1. `aptomo stream sample DIR` writes messages made by our v1/v2 encoders; python cbor2/json, the bitshuffle package
   and python lz4 read them: exact CBOR structure and tags (cbor2 re-encodes the decoded item to the very same
   bytes), every field, and the pixels after decompression equal the pattern the sample was made from.
2. Messages built here with cbor2/json (valid ones and malformed ones) go through `aptomo stream dump`: the JSON
   summary must match what was built (blob CRC-32 via zlib), malformed input must exit 2 naming the fault."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import bitshuffle
import cbor2
import lz4.block
import numpy as np

APTOMO = os.environ.get("APTOMO_BIN", "aptomo")
W, H = 48, 32
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def pattern(c, elem):
    """tools/cmd_stream.c pattern(): ((x*7 + y*131 + c*1013) * (65537 if 32-bit)) wrapped to the element width."""
    y, x = np.mgrid[0:H, 0:W].astype(np.uint64)
    v = (x * 7 + y * 131 + c * 1013) * (65537 if elem == 4 else 1)
    return (v % (1 << (8 * elem))).astype({1: "<u1", 2: "<u2", 4: "<u4"}[elem])


def unbslz4(blob, elem):
    raw, block = struct.unpack(">QI", blob[:12])
    check(raw == W * H * elem, "bslz4 header raw size %d" % raw)
    check(block == 8192, "bslz4 header block %d (bitshuffle's default is 8192 bytes)" % block)
    body = np.frombuffer(blob[12:], dtype=np.uint8)
    return bitshuffle.decompress_lz4(body, (H, W), np.dtype({1: "<u1", 2: "<u2", 4: "<u4"}[elem]), 0)


def unh5lz4(blob):
    total, block = struct.unpack(">QI", blob[:12])
    out, at = b"", 12
    while len(out) < total:
        n = struct.unpack(">I", blob[at:at + 4])[0]
        want = min(block, total - len(out))
        chunk = blob[at + 4:at + 4 + n]
        out += chunk if n == want else lz4.block.decompress(chunk, uncompressed_size=want)
        at += 4 + n
    check(at == len(blob), "h5lz4: %d trailing bytes" % (len(blob) - at))
    return out


def read_v1(path):
    d = open(path, "rb").read()
    n = struct.unpack("<I", d[:4])[0]
    parts, at = [], 4
    for _ in range(n):
        k = struct.unpack("<I", d[at:at + 4])[0]
        parts.append(d[at + 4:at + 4 + k])
        at += 4 + k
    check(at == len(d), path + ": container length")
    return parts


def write_v1(path, parts):
    with open(path, "wb") as f:
        f.write(struct.pack("<I", len(parts)))
        for p in parts:
            f.write(struct.pack("<I", len(p)) + p)


START_CONFIG = {"beam_center_x": 23.5, "beam_center_y": 15.25, "image_size_x": W, "image_size_y": H,
                "number_of_images": 3, "image_dtype": "uint16", "incident_energy": 8000.0, "detector_distance": 2.5,
                "pixel_size_x": 75e-6, "pixel_size_y": 75e-6, "count_time": 0.001, "frame_time": 0.0011,
                "saturation_value": 65000}
SERIES_USER = {"angle_deg": 12.5, "positions_m": [[1e-06, -2e-06], [3e-06, 4e-06], [5e-06, 6e-06]]}
FRAME_USER = {"pos_m": [3e-06, 4e-06]}


def check_v2_samples(d):
    # start: exact key order and values, mask as tag 40 [[H, W], tag 70 bytes]
    raw = open(os.path.join(d, "v2_start.cbor"), "rb").read()
    check(raw[:3] == b"\xd9\xd9\xf7", "v2 start: self-describe tag 55799")
    m = cbor2.loads(raw)
    check(cbor2.dumps(cbor2.CBORTag(55799, m)) == raw, "v2 start: cbor2 re-encodes to the same bytes")
    keys = ["type", "series_id", "series_unique_id"] + list(START_CONFIG) + ["channels", "pixel_mask", "user_data"]
    check(list(m) == keys, "v2 start keys %s" % list(m))
    check(m["type"] == "start" and m["series_id"] == 7 and m["series_unique_id"] == "sample-7", "v2 start ids")
    for k, v in START_CONFIG.items():
        check(m[k] == v and type(m[k]) is type(v), "v2 start %s = %r" % (k, m[k]))
    check(m["channels"] == ["threshold_1", "threshold_2"], "v2 start channels")
    mk = m["pixel_mask"]["threshold_1"]
    check(isinstance(mk, cbor2.CBORTag) and mk.tag == 40 and mk.value[0] == [H, W], "v2 mask tag 40 [[H, W], .]")
    check(mk.value[1].tag == 70 and mk.value[1].value == pattern(0, 4).tobytes(), "v2 mask tag 70 + bytes")
    check(m["user_data"] == SERIES_USER, "v2 start user_data is a CBOR map equal to the JSON")
    # images: every compression and element size, two channels
    for comp in ("none", "bslz4", "h5lz4"):
        for elem in (1, 2, 4):
            name = "v2_image_%s_%d.cbor" % (comp, 8 * elem)
            raw = open(os.path.join(d, name), "rb").read()
            m = cbor2.loads(raw)
            check(raw[:3] == b"\xd9\xd9\xf7" and cbor2.dumps(cbor2.CBORTag(55799, m)) == raw, name + ": bytes")
            check(list(m) == ["type", "series_id", "series_unique_id", "data", "image_id", "user_data"],
                  name + ": keys %s" % list(m))
            check(m["type"] == "image" and m["image_id"] == 2 and m["series_id"] == 7, name + ": ids")
            check(m["user_data"] == FRAME_USER, name + ": user_data")
            check(list(m["data"]) == ["threshold_1", "threshold_2"], name + ": channels")
            for c, ch in enumerate(["threshold_1", "threshold_2"]):
                t = m["data"][ch]
                check(t.tag == 40 and t.value[0] == [H, W], name + ": tag 40 dims")
                ta = t.value[1]
                check(ta.tag == {1: 64, 2: 69, 4: 70}[elem], name + ": typed-array tag %d" % ta.tag)
                want = pattern(c, elem)
                if comp == "none":
                    check(ta.value == want.tobytes(), name + ": raw pixels")
                    continue
                z = ta.value
                check(isinstance(z, cbor2.CBORTag) and z.tag == 56500 and len(z.value) == 3, name + ": tag 56500")
                alg, mod, blob = z.value
                if comp == "bslz4":
                    check(alg == "bslz4" and mod == elem, name + ": [bslz4, %d]" % mod)
                    check(np.array_equal(unbslz4(blob, elem), want), name + ": bitshuffle decodes our bslz4")
                else:
                    check(alg == "lz4" and mod == 0, name + ": [lz4, 0]")
                    check(unh5lz4(blob) == want.tobytes(), name + ": python lz4 decodes our HDF5-framed lz4")
    raw = open(os.path.join(d, "v2_end.cbor"), "rb").read()
    m = cbor2.loads(raw)
    check(m == {"type": "end", "series_id": 7, "series_unique_id": "sample-7"}, "v2 end %r" % m)


def check_v1_samples(d):
    cfg = {"beam_center_x": 23.5, "beam_center_y": 15.25, "x_pixels_in_detector": W, "y_pixels_in_detector": H,
           "nimages": 3, "ntrigger": 1, "bit_depth_image": 16, "photon_energy": 8000.0, "detector_distance": 2.5,
           "x_pixel_size": 75e-6, "y_pixel_size": 75e-6, "count_time": 0.001, "frame_time": 0.0011,
           "countrate_correction_count_cutoff": 65000}
    for detail, n in (("none", 2), ("basic", 3), ("all", 9)):
        parts = read_v1(os.path.join(d, "v1_start_%s.bin" % detail))
        check(len(parts) == n, "v1 start %s: %d parts" % (detail, len(parts)))
        check(json.loads(parts[0]) == {"htype": "dheader-1.0", "series": 7, "header_detail": detail}, "dheader")
        check(json.loads(parts[-1]) == SERIES_USER, "v1 start appendix")
        if detail != "none":
            check(json.loads(parts[1]) == cfg, "v1 config %s" % parts[1])
        if detail == "all":
            check(json.loads(parts[2]) == {"htype": "dflatfield-1.0", "shape": [W, H], "type": "float32"}, "flat")
            check(np.all(np.frombuffer(parts[3], "<f4") == 1.0) and len(parts[3]) == W * H * 4, "flat blob")
            check(json.loads(parts[4]) == {"htype": "dpixelmask-1.0", "shape": [W, H], "type": "uint32"}, "mask")
            check(parts[5] == pattern(0, 4).tobytes(), "mask blob")
            check(json.loads(parts[6])["htype"] == "dcountrate_table-1.0", "countrate")
    names = {"none": "<", "lz4": "lz4<"}
    for comp in ("none", "bslz4", "lz4"):
        for elem in (1, 2, 4):
            name = "v1_image_%s_%d.bin" % (comp, 8 * elem)
            parts = read_v1(os.path.join(d, name))
            check(len(parts) == 5, name + ": 5 parts")
            check(json.loads(parts[0]) == {"htype": "dimage-1.0", "series": 7, "frame": 2, "hash": ""}, name)
            enc = names.get(comp, "bs%d-lz4<" % (8 * elem))
            dd = json.loads(parts[1])
            check(dd == {"htype": "dimage_d-1.0", "shape": [W, H], "type": "uint%d" % (8 * elem), "encoding": enc,
                         "size": len(parts[2])}, name + ": %r" % dd)
            want = pattern(0, elem)
            if comp == "none":
                got = parts[2] == want.tobytes()
            elif comp == "bslz4":
                got = np.array_equal(unbslz4(parts[2], elem), want)
            else:
                got = lz4.block.decompress(parts[2], uncompressed_size=want.nbytes) == want.tobytes()
            check(got, name + ": pixels")
            check(json.loads(parts[3])["htype"] == "dconfig-1.0", name + ": dconfig")
            check(json.loads(parts[4]) == FRAME_USER, name + ": appendix")
    check(read_v1(os.path.join(d, "v1_end.bin")) == [b'{"htype":"dseries_end-1.0","series":7}'], "v1 end")


def dump(path, *args):
    p = subprocess.run([APTOMO, "stream", "dump", path] + list(args), capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def md(arr, comp=None):
    elem = arr.dtype.itemsize
    raw = arr.tobytes()
    if comp == "bslz4":
        blob = struct.pack(">QI", len(raw), 8192) + bitshuffle.compress_lz4(arr.reshape(-1), 0).tobytes()
        inner = cbor2.CBORTag(56500, ["bslz4", elem, blob])
    elif comp == "lz4":
        c = lz4.block.compress(raw, store_size=False)
        blob = struct.pack(">QII", len(raw), len(raw), len(c)) + c
        inner = cbor2.CBORTag(56500, ["lz4", 0, blob])
    else:
        blob = inner = raw
    return cbor2.CBORTag(40, [list(arr.shape), cbor2.CBORTag({1: 64, 2: 69, 4: 70}[elem], inner)]), blob


def check_dump(d):
    a1, a2, a3 = pattern(0, 2), pattern(1, 2), pattern(2, 2)
    t1, b1 = md(a1, "bslz4")
    t2, b2 = md(a2, "lz4")
    t3, b3 = md(a3)
    img = {"type": "image", "series_id": 11, "series_unique_id": "py-11", "image_id": 5,
           "data": {"difference": t3, "threshold_1": t1, "threshold_2": t2},
           "user_data": {"pos_m": [1.5e-6, -2e-6], "tags": ["a", 1, None]}}
    path = os.path.join(d, "py_image.cbor")
    open(path, "wb").write(cbor2.dumps(cbor2.CBORTag(55799, img)))
    rc, out, err = dump(path)
    check(rc == 0, "dump py_image: rc %d %s" % (rc, err))
    if rc == 0:
        s = json.loads(out)
        check(s["type"] == "image" and s["series_id"] == 11 and s["image_id"] == 5 and s["version"] == 2, "ids")
        check(s["series_unique_id"] == "py-11", "uid")
        check(s["pixels"]["channel"] == "threshold_1", "default channel is threshold_1")
        for got, (ch, blob, enc) in zip(s["chan"], [("difference", b3, "none"), ("threshold_1", b1, "bslz4"),
                                                    ("threshold_2", b2, "h5lz4")]):
            check(got == {"channel": ch, "width": W, "height": H, "elem_size": 2, "encoding": enc,
                          "blob_len": len(blob), "crc32": zlib.crc32(blob)}, "dump chan %r" % got)
        check(json.loads(s["user_json"]) == img["user_data"], "user_data as JSON")
    rc, out, _ = dump(path, "--channel", "difference")
    check(rc == 0 and json.loads(out)["pixels"]["channel"] == "difference", "--channel difference")
    rc, _, err = dump(path, "--channel", "threshold_9")
    check(rc == 2 and "threshold_9" in err, "unknown channel: %s" % err)
    # plain map without the self-describe tag, start message
    mask, mb = md(pattern(0, 4))
    start = {"type": "start", "series_id": 11, "series_unique_id": "py-11", "channels": ["threshold_1"],
             "image_size_x": W, "image_size_y": H, "pixel_mask": {"threshold_1": mask}, "incident_energy": 9000,
             "user_data": json.dumps({"angle_deg": 3.0})}
    path = os.path.join(d, "py_start.cbor")
    open(path, "wb").write(cbor2.dumps(start))
    rc, out, err = dump(path)
    check(rc == 0, "dump py_start: %s" % err)
    if rc == 0:
        s = json.loads(out)
        check(s["config"]["energy_eV"] == 9000.0 and s["config"]["width"] == W and s["channels"] == ["threshold_1"],
              "start config %r" % s["config"])
        check(s["mask"]["crc32"] == zlib.crc32(mb) and s["mask"]["elem_size"] == 4, "start mask")
        check(s["user_json"] == start["user_data"], "JSON text user_data passes through as-is")
    # v1 container made here
    parts = [json.dumps({"htype": "dimage-1.0", "series": 2, "frame": 9, "hash": "x"}).encode(),
             json.dumps({"htype": "dimage_d-1.0", "shape": [W, H], "type": "uint16", "encoding": "bs16-lz4<",
                         "size": len(b1)}).encode(), b1,
             json.dumps({"htype": "dconfig-1.0", "start_time": 1, "stop_time": 2, "real_time": 1}).encode()]
    path = os.path.join(d, "py_v1.bin")
    write_v1(path, parts)
    rc, out, err = dump(path, "--v1")
    check(rc == 0, "dump v1: %s" % err)
    if rc == 0:
        s = json.loads(out)
        check(s["version"] == 1 and s["image_id"] == 9 and s["pixels"]["crc32"] == zlib.crc32(b1) and
              s["pixels"]["encoding"] == "bslz4" and s["user_json"] is None, "v1 dump %r" % s)

    # malformed: (bytes or v1 parts, expected words in the message)
    good = cbor2.dumps(img)
    bad_tag, _ = md(a1)
    bad_tag = cbor2.CBORTag(41, bad_tag.value)
    big_endian = cbor2.CBORTag(40, [[H, W], cbor2.CBORTag(65, a1.tobytes())])
    zstd = cbor2.CBORTag(40, [[H, W], cbor2.CBORTag(69, cbor2.CBORTag(56500, ["zstd", 2, b"1234"]))])
    short = cbor2.CBORTag(40, [[H, W], cbor2.CBORTag(69, a1.tobytes()[:-2])])
    huge = cbor2.CBORTag(40, [[H, 70000], cbor2.CBORTag(69, b"")])

    def with_data(item):
        return cbor2.dumps(dict(img, data={"threshold_1": item}))

    cases = [
        ("list", cbor2.dumps([1, 2, 3]), "not a CBOR map"),
        ("no type", cbor2.dumps({"series_id": 1}), "type"),
        ("bad type", cbor2.dumps({"type": "frame", "series_id": 1}), "frame"),
        ("tag 41", with_data(bad_tag), "tag 41"),
        ("tag 65", with_data(big_endian), "65"),
        ("zstd", with_data(zstd), "zstd"),
        ("short blob", with_data(short), "raw blob"),
        ("70000 wide", with_data(huge), "70000"),
        ("truncated", good[:-10], "truncated"),
        ("trailing", good + b"\x00", "trailing"),
        ("depth bomb", b"\x81" * 5000 + b"\x00", "nesting"),
        ("2^40 items", b"\x9b" + struct.pack(">Q", 1 << 40) + b"\x00" * 11, "exceeds"),
        ("indefinite", b"\xbf\x64type\x63end\xff", "indefinite"),
        ("user_data bytes", cbor2.dumps(dict(img, user_data={"b": b"\x00"})), "user_data"),
        ("empty", b"", "empty"),
    ]
    for label, data, word in cases:
        path = os.path.join(d, "bad.cbor")
        open(path, "wb").write(data)
        rc, out, err = dump(path)
        check(rc == 2 and word in err and out == "", "malformed %s: rc %d, stderr %r" % (label, rc, err))
    v1cases = [
        ("htype", [b'{"htype":"dfoo-1.0"}'], "dfoo-1.0"),
        ("parts", [b'{"htype":"dheader-1.0","series":1,"header_detail":"basic"}'], "parts"),
        ("size", parts[:1] + [parts[1].replace(b'"size": ', b'"size": 1')] + parts[2:], "size"),
        ("shape", parts[:1] + [parts[1].replace(b"[48, 32]", b"[48, 0]")] + parts[2:], "shape"),
        ("encoding", parts[:1] + [parts[1].replace(b"bs16-lz4<", b"bs32-lz4<")] + parts[2:], "does not match"),
        ("json", [b'{"htype": '], "invalid JSON"),
    ]
    for label, ps, word in v1cases:
        path = os.path.join(d, "bad.bin")
        write_v1(path, ps)
        rc, out, err = dump(path, "--v1")
        check(rc == 2 and word in err, "malformed v1 %s: rc %d, stderr %r" % (label, rc, err))
    path = os.path.join(d, "bad.bin")
    open(path, "wb").write(struct.pack("<II", 1, 1000) + b"{}")
    rc, _, err = dump(path, "--v1")
    check(rc == 2 and "declares 1000 bytes" in err, "broken container: %r" % err)
    rc, _, err = dump(os.path.join(d, "does-not-exist"))
    check(rc == 2, "missing file exits 2")


def main():
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([APTOMO, "stream", "sample", d], capture_output=True, text=True)
        check(p.returncode == 0, "stream sample: %s" % p.stderr)
        if p.returncode == 0:
            check_v2_samples(d)
            check_v1_samples(d)
        check_dump(d)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
