#!/usr/bin/env python3
"""test_spool_ref.py - spooled frames are bit-identical to the frames the detector sent, proven by readers that share
no code with aptomo: tests/test_spool (the C test binary, given a directory) writes one spool per (encoding, pixel
type) plus mixed-encoding series; here h5py with Debian's HDF5 plugins (bitshuffle 32008, LZ4 32004) reads them and
compares with frames regenerated in numpy from the same formula. Raw chunks are checked independently as well:
32008 chunks equal bitshuffle.compress_lz4 of the frame behind the 12-byte header, 32004 chunks are parsed by hand
and their blocks decompressed with python-lz4.
"""
import glob
import os
import subprocess
import sys
import tempfile

# Debian's serial plugins first (python3-bitshuffle's plugin is linked against libhdf5_openmpi, not h5py's HDF5).
os.environ["HDF5_PLUGIN_PATH"] = "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins"

import bitshuffle  # noqa: E402
import h5py  # noqa: E402
import lz4.block  # noqa: E402
import numpy as np  # noqa: E402

BIN = os.environ["APTOMO_BIN"]
SPOOL_TEST = os.path.join(os.path.dirname(BIN), "..", "tests", "test_spool")
J, H, W = 6, 37, 123
ORDER = [3, 0, 5, 1, 4]  # image 2 never sent
# (encoding attribute, pixel dtype) per series index, series id = 100 + index (as in tests/test_spool.c)
SERIES = [("bslz4", np.uint8), ("bslz4", np.uint16), ("bslz4", np.uint32), ("lz4", np.uint8), ("lz4", np.uint16),
          ("lz4", np.uint32), ("lz4raw", np.uint8), ("lz4raw", np.uint16), ("lz4raw", np.uint32), ("none", np.uint8),
          ("none", np.uint16), ("none", np.uint32)]
M32 = 0xFFFFFFFF
failures = 0
checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what, file=sys.stderr)


def frame(s, k, dtype, h=H, w=W):
    """numpy twin of pix() in tests/test_spool.c (uint32 arithmetic modulo 2^32)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.uint64)
    v = ((y * w + x) * 2654435761 + k * 2246822519 + s * 3266489917) & M32
    v ^= v >> 15
    v = (v * 2246822519) & M32
    v ^= v >> 13
    out = np.where(v & 3, v >> 28, v)
    out = np.where(x % 11 == 5, M32, out)
    return (out & np.uint64(np.iinfo(dtype).max)).astype(dtype)


def pos_row(s, k):
    return [1e-7 * k + 1e-9 * s, -5e-8 * k]


def decode_h5lz4(blob):
    """HDF5 LZ4-filter framing: BE u64 raw size, BE u32 block size, blocks of BE u32 length + LZ4 block
    (a block as long as its raw size is stored raw)."""
    total = int.from_bytes(blob[:8], "big")
    block = int.from_bytes(blob[8:12], "big")
    out, p = bytearray(), 12
    while len(out) < total:
        n = min(block, total - len(out))
        clen = int.from_bytes(blob[p:p + 4], "big")
        p += 4
        chunk = blob[p:p + clen]
        out += chunk if clen == n else lz4.block.decompress(chunk, uncompressed_size=n)
        p += clen
    return bytes(out), p == len(blob)


def check_series(path, idx):
    enc, dt = SERIES[idx]
    sid = 100 + idx
    with h5py.File(path, "r") as f:
        g = f["/entry/data"]
        ds = g["data"]
        check(ds.shape == (J, H, W) and ds.dtype == dt and ds.chunks == (1, H, W) and ds.maxshape[0] is None,
              f"{path}: layout {ds.shape} {ds.dtype} {ds.chunks} {ds.maxshape}")
        check(int(g.attrs["series_id"]) == sid and g.attrs["series_unique_id"] == f"u{idx}", f"{path}: ids")
        want_enc = {"bslz4": "bslz4", "lz4": "h5lz4", "lz4raw": "lz4", "none": "none"}[enc]
        check(g.attrs["encoding"] == want_enc, f"{path}: encoding attr {g.attrs['encoding']}")
        check(g.attrs["angle_deg"] == idx * 1.5 - 7, f"{path}: angle")
        check(int(g.attrs["frames"]) == 5, f"{path}: frames attr")
        fid = ds.id.get_create_plist().get_filter(0)[0]
        check(fid == (32004 if enc in ("lz4", "lz4raw") else 32008), f"{path}: filter {fid}")
        data = ds[()]  # decoded by Debian's plugins
        for k in range(J):
            want = np.zeros((H, W), dt) if k == 2 else frame(sid, k, dt)
            check(np.array_equal(data[k], want), f"{path}: frame {k} bit-identical ({enc}, {np.dtype(dt).name})")
        check(list(g["image_id"][()]) == ORDER, f"{path}: image_id arrival order")
        check(np.array_equal(g["positions_m"][()], np.array([pos_row(sid, k) for k in range(J)])),
              f"{path}: positions")
        for k in ORDER:
            mask, blob = ds.id.read_direct_chunk((k, 0, 0))
            raw = frame(sid, k, dt)
            check(mask == 0, f"{path}: chunk {k} filter mask {mask}")
            if fid == 32008:
                size = int.from_bytes(blob[:8], "big")
                block = int.from_bytes(blob[8:12], "big")
                ref = bitshuffle.compress_lz4(raw.ravel()).tobytes()
                check(size == raw.nbytes and block == 8192 and blob[12:] == ref,
                      f"{path}: chunk {k} equals bitshuffle.compress_lz4")
            else:
                dec, whole = decode_h5lz4(blob)
                check(whole and dec == raw.tobytes(), f"{path}: chunk {k} decodes with python-lz4")
                if enc == "lz4raw":  # one block as large as the frame: 16-byte prefix + the received block
                    check(int.from_bytes(blob[8:12], "big") == raw.nbytes and
                          int.from_bytes(blob[12:16], "big") == len(blob) - 16, f"{path}: chunk {k} raw-block framing")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([SPOOL_TEST, tmp], capture_output=True, text=True)
        check(r.returncode == 0, f"test_spool {tmp}: {r.stdout}{r.stderr}")
        for idx in range(len(SERIES)):
            paths = glob.glob(os.path.join(tmp, f"series_{100 + idx}_u{idx}.h5"))
            check(len(paths) == 1, f"spool file of series {100 + idx}")
            for p in paths:
                check_series(p, idx)
        # mixed encodings: pixels survive re-encoding whatever family the dataset took from its first frame
        for sid, reenc in ((200, 3), (201, 2)):
            with h5py.File(os.path.join(tmp, f"series_{sid}_mixed_.._x_y.h5"), "r") as f:
                d = f["/entry/data/data"][()]
                check(d.shape == (4, H, W) and all(np.array_equal(d[k], frame(sid, k, np.uint16)) for k in range(4)),
                      f"mixed series {sid}")
                check(int(f["/entry/data"].attrs["reencoded_frames"]) == reenc, f"mixed series {sid} reencoded")
        # the raw LZ4 block as long as its raw size: stored raw, read right by the plugin
        with h5py.File(os.path.join(tmp, "series_300_eq.h5"), "r") as f:
            check(f["/entry/data/data"][()].tobytes() == b"abcdabcdefghijkl", "equal-length raw LZ4 block")
        # never clobbered: second file of series 7 got a suffix; huge image id extends without storing frames
        with h5py.File(os.path.join(tmp, "series_7.h5"), "r") as f:
            ds = f["/entry/data/data"]
            check(ds.shape[0] == 100001 and ds.id.get_num_chunks() == 2, "sparse extent")
            check(np.array_equal(ds[100000], frame(7, 0, np.uint16)) and not ds[50000].any(), "sparse frames")
        check(os.path.exists(os.path.join(tmp, "series_7-1.h5")), "no clobber")
    print(f"test_spool_ref: {checks} checks, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
