#!/usr/bin/python3
"""test_codec_ref.py - aptomo's pixel codecs (via `aptomo codec`) against independent references: the bitshuffle
library (transform and LZ4 blobs), python3-lz4, and HDF5 chunks written/read by h5py through Debian's filter plugins
(bitshuffle 32008, LZ4 32004). Bit-exact in both directions; malformed blobs must exit 2 with a message."""
import os
import struct
import subprocess
import sys
import tempfile

# Debian's serial-HDF5 plugins first: bitshuffle/plugin's .so files link the openmpi HDF5, which h5py (serial) can't
# use - creating a 32008 dataset through them fails with "error during user callback". Same reason bitshuffle.h5
# (openmpi-linked) is not imported: its constants are 32008 and (0, 2 = LZ4).
SERIAL_PLUGINS = "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins"
os.environ["HDF5_PLUGIN_PATH"] = ":".join([SERIAL_PLUGINS] + [p for p in os.environ.get("HDF5_PLUGIN_PATH", "")
                                                              .split(":") if p and p != SERIAL_PLUGINS])
import bitshuffle  # noqa: E402
import h5py  # noqa: E402
import lz4.block  # noqa: E402
import numpy as np  # noqa: E402

BIN = os.environ.get("APTOMO_BIN") or os.path.join(os.path.dirname(__file__), "..", "build", "tools", "aptomo")
H5_BSHUF, H5_BSHUF_LZ4, H5_LZ4 = 32008, 2, 32004
TMP = tempfile.mkdtemp(prefix="aptomo_codec_")
failures, checks = [], 0
rng = np.random.default_rng(20240611)


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def codec(verb, name, elem, data, *extra, expect=0):
    """Run `aptomo codec` on bytes; returns (output bytes or None, stderr)."""
    src, dst = os.path.join(TMP, "in.bin"), os.path.join(TMP, "out.bin")
    with open(src, "wb") as f:
        f.write(bytes(data))
    if os.path.exists(dst):
        os.unlink(dst)
    args = [BIN, "codec", verb, "--codec", name] + (["--elem-size", str(elem)] if elem else []) + list(extra)
    p = subprocess.run(args + [src, dst], capture_output=True, text=True)
    check(p.returncode == expect, f"{' '.join(args)}: exit {p.returncode}, wanted {expect}: {p.stderr.strip()}")
    if p.returncode != 0:
        return None, p.stderr
    with open(dst, "rb") as f:
        return f.read(), p.stderr


def bslz4_header(arr):
    """The 12 bytes the HDF5 filter puts before bitshuffle.compress_lz4's blocks."""
    block = max(8192 // arr.itemsize // 8 * 8, 128)
    return struct.pack(">QI", arr.nbytes, block * arr.itemsize)


def frame(dtype, n, kind):
    """random bits, or photon counts: mostly zeros (Poisson 0.3), some hot pixels, all-ones gap pixels."""
    top = np.iinfo(dtype).max
    if kind == "random":
        return rng.integers(0, top, n, dtype=np.uint64, endpoint=True).astype(dtype)
    a = rng.poisson(0.3, n).astype(dtype)
    a[rng.integers(0, n, max(1, n // 500))] = min(top, 40000)
    a[rng.integers(0, n, max(1, n // 200))] = top
    return a


ISAS = ["scalar", "sse2", "avx2"]
SIZES = [1, 7, 8, 9, 100, 1027, 4095, 4096, 4097, 8193, 514 * 1030]


def test_transform():
    """(1) the bit transpose equals bitshuffle.bitshuffle, every kernel set, and inverts."""
    for dt in (np.uint8, np.uint16, np.uint32):
        for n in SIZES:
            if n > 100000 and dt != np.uint16:
                continue
            for kind in ("random", "photons"):
                a = frame(dt, n, kind)
                ref = bitshuffle.bitshuffle(a).tobytes()
                for isa in ISAS if kind == "random" else ISAS[-1:]:  # the C test covers kernels x data kinds
                    e = str(a.itemsize)
                    got, _ = codec("encode", "bitshuffle", e, a.tobytes(), "--isa", isa)
                    check(got == ref, f"bitshuffle {dt.__name__} n={n} {kind} isa={isa}")
                    back, _ = codec("decode", "bitshuffle", e, ref, "--isa", isa)
                    check(back == a.tobytes(), f"bitunshuffle {dt.__name__} n={n} {kind} isa={isa}")


def blocks_of(c, arr):
    """Walk compress_lz4's output: BE u32 length + LZ4 block per block, then the raw tail - no 12-byte header."""
    n, s = arr.size, arr.itemsize
    block = max(8192 // s // 8 * 8, 128)
    pos, done = 0, 0
    while n - done >= 8:
        be = block if n - done >= block else (n - done) // 8 * 8
        (clen,) = struct.unpack(">I", c[pos:pos + 4])
        pos += 4 + clen
        done += be
    return pos + (n - done) * s == len(c)


identical = {"yes": 0, "no": 0}


def test_bslz4():
    """(2) bitshuffle.compress_lz4 blobs decode bit-exactly, also by range and crop; (3) ours decode with
    bitshuffle.decompress_lz4; (4) our compressed bytes equal bitshuffle's."""
    for dt in (np.uint8, np.uint16, np.uint32):
        for n in SIZES + [1030 * 37, 514 * 1030 + 3]:
            for kind in ("random", "photons"):
                a = frame(dt, n, kind)
                e = str(a.itemsize)
                c = bitshuffle.compress_lz4(a).tobytes()
                check(blocks_of(c, a), f"compress_lz4 output is not header-less blocks ({dt.__name__} n={n})")
                ref_blob = bslz4_header(a) + c
                got, _ = codec("decode", "bslz4", e, ref_blob)
                check(got == a.tobytes(), f"decode of bitshuffle's blob {dt.__name__} n={n} {kind}")
                ours, _ = codec("encode", "bslz4", e, a.tobytes())
                if ours is None:
                    continue
                check(ours[:12] == bslz4_header(a), f"our header {dt.__name__} n={n}")
                dec = bitshuffle.decompress_lz4(np.frombuffer(ours[12:], np.uint8), a.shape, a.dtype)
                check(np.array_equal(dec, a), f"bitshuffle.decompress_lz4 of our blob {dt.__name__} n={n} {kind}")
                identical["yes" if ours[12:] == c else "no"] += 1
                if n >= 4096 and kind == "photons":
                    for _ in range(3):
                        first = int(rng.integers(0, n))
                        count = int(rng.integers(0, n - first + 1))
                        got, _ = codec("decode", "bslz4", e, ref_blob, "--first", str(first),
                                       "--range-count", str(count))
                        check(got == a[first:first + count].tobytes(), f"range [{first},+{count}) n={n}")
                if n % 1030 == 0 and kind == "photons":
                    h = n // 1030
                    img = a.reshape(h, 1030)
                    windows = ((451, h // 3, 128, min(h - h // 3, 128)), (0, 0, 1030, h), (1029, h - 1, 1, 1))
                    for x0, y0, w, hh in windows:
                        got, _ = codec("decode", "bslz4", e, ref_blob, "--width", "1030", "--crop",
                                       f"{x0},{y0},{w},{hh}")
                        check(got == img[y0:y0 + hh, x0:x0 + w].tobytes(), f"crop {w}x{hh} at {x0},{y0} n={n}")
    check(identical["no"] == 0, f"our bslz4 bytes differ from bitshuffle's in {identical['no']} cases")
    print(f"bslz4 byte-identical to bitshuffle.compress_lz4: {identical['yes']} of "
          f"{identical['yes'] + identical['no']} blobs")


def test_h5_bitshuffle():
    """(5) chunks written by HDF5's bitshuffle filter decode with ours; our blobs written raw read back in h5py."""
    path = os.path.join(TMP, "bshuf.h5")
    stacks = {"u16": frame(np.uint16, 3 * 96 * 130, "photons").reshape(3, 96, 130),
              "u32": frame(np.uint32, 2 * 64 * 70, "photons").reshape(2, 64, 70),
              "u8": frame(np.uint8, 2 * 13 * 7, "random").reshape(2, 13, 7)}  # 91 pixels: a raw tail
    with h5py.File(path, "w") as f:
        for name, a in stacks.items():
            f.create_dataset(name, data=a, chunks=(1,) + a.shape[1:], compression=H5_BSHUF,
                             compression_opts=(0, H5_BSHUF_LZ4), allow_unknown_filter=True)
            f.create_dataset(name + "_ours", shape=a.shape, dtype=a.dtype, chunks=(1,) + a.shape[1:],
                             compression=H5_BSHUF, compression_opts=(0, H5_BSHUF_LZ4), allow_unknown_filter=True)
    with h5py.File(path, "r+") as f:
        for name, a in stacks.items():
            e = str(a.itemsize)
            for i in range(a.shape[0]):
                mask, chunk = f[name].id.read_direct_chunk((i, 0, 0))
                check(mask == 0, f"{name} chunk {i}: filter mask {mask}")
                got, _ = codec("decode", "bslz4", e, chunk)
                check(got == a[i].tobytes(), f"h5py 32008 chunk {name}[{i}] decoded by aptomo")
                ours, _ = codec("encode", "bslz4", e, a[i].tobytes())
                check(ours == bytes(chunk), f"our blob == HDF5 filter's chunk {name}[{i}]")
                f[name + "_ours"].id.write_direct_chunk((i, 0, 0), ours)
    with h5py.File(path, "r") as f:
        for name, a in stacks.items():
            check(np.array_equal(f[name + "_ours"][...], a), f"h5py reads our bslz4 chunks ({name})")


def test_h5lz4_and_lz4():
    """(6) HDF5 LZ4 filter chunks decode with apt_h5lz4_decode and ours read back in h5py; raw LZ4 blocks round
    trip with python3-lz4."""
    path = os.path.join(TMP, "lz4.h5")
    a = frame(np.uint16, 4 * 60 * 77, "photons").reshape(4, 60, 77)
    a[3] = rng.integers(0, 65535, (60, 77), dtype=np.uint16)  # incompressible: blocks stored raw
    variants = {"default": None, "b1000": 1000, "b4096": 4096}
    with h5py.File(path, "w") as f:
        for name, blk in variants.items():
            opts = {} if blk is None else {"compression_opts": (blk,)}
            f.create_dataset(name, data=a, chunks=(1, 60, 77), compression=H5_LZ4, allow_unknown_filter=True,
                             **opts)
            f.create_dataset(name + "_ours", shape=a.shape, dtype=a.dtype, chunks=(1, 60, 77),
                             compression=H5_LZ4, allow_unknown_filter=True, **opts)
    with h5py.File(path, "r+") as f:
        for name, blk in variants.items():
            for i in range(a.shape[0]):
                _, chunk = f[name].id.read_direct_chunk((i, 0, 0))
                got, _ = codec("decode", "h5lz4", None, chunk)
                check(got == a[i].tobytes(), f"h5py 32004 chunk {name}[{i}] decoded by aptomo")
                extra = [] if blk is None else ["--block-bytes", str(blk)]
                ours, _ = codec("encode", "h5lz4", None, a[i].tobytes(), *extra)
                check(ours == bytes(chunk), f"our h5lz4 blob == the plugin's chunk {name}[{i}]")
                f[name + "_ours"].id.write_direct_chunk((i, 0, 0), ours)
    with h5py.File(path, "r") as f:
        for name in variants:
            check(np.array_equal(f[name + "_ours"][...], a), f"h5py reads our h5lz4 chunks ({name})")
    for n in (0, 1, 1000, 514 * 1030):
        b = frame(np.uint16, n, "photons").tobytes() if n else b""
        theirs = lz4.block.compress(b, store_size=False)
        got, _ = codec("decode", "lz4", "2", theirs, "--count", str(n))
        check(got == b, f"python-lz4 block of {len(b)} bytes decoded by aptomo")
        ours, _ = codec("encode", "lz4", None, b)
        check(ours is not None and lz4.block.decompress(ours, uncompressed_size=len(b)) == b,
              f"our lz4 block of {len(b)} bytes decoded by python-lz4")


def test_malformed():
    """Bad blobs and bad usage: exit 2 with a message naming the input file and the field."""
    a = frame(np.uint16, 9000, "photons")
    blob = bslz4_header(a) + bitshuffle.compress_lz4(a).tobytes()
    cases = {
        "truncated": (blob[:len(blob) // 2], "truncated"),
        "trailing": (blob + b"\0", "after the last block"),
        "huge raw": (struct.pack(">QI", 1 << 60, 8192) + blob[12:], "cannot fit"),
        "bad block": (blob[:8] + struct.pack(">I", 8190) + blob[12:], "block size"),
        "short": (blob[:5], "header"),
    }
    for what, (bad, needle) in cases.items():
        _, err = codec("decode", "bslz4", "2", bad, expect=2)
        check("in.bin" in err and needle in err, f"malformed '{what}': message '{err.strip()}'")
    _, err = codec("decode", "h5lz4", None, struct.pack(">QI", 1 << 50, 1) + b"\0" * 8, expect=2)
    check("in.bin" in err, f"h5lz4 huge header: '{err.strip()}'")
    codec("decode", "lz4", "2", b"\x50abc", "--count", "100", expect=2)
    codec("decode", "lz4", "2", b"\x00", expect=2)  # no --count
    codec("encode", "bslz4", None, a.tobytes(), expect=2)  # no --elem-size
    codec("encode", "zstd", "2", a.tobytes(), expect=2)
    codec("encode", "bslz4", "2", a.tobytes()[:-1], expect=2)  # not whole elements
    codec("decode", "bslz4", "2", blob, "--first", "8999", "--range-count", "2", expect=2)


if __name__ == "__main__":
    if not os.access(BIN, os.X_OK):
        print(f"SKIP: aptomo CLI not found at {BIN} (set APTOMO_BIN)")
        sys.exit(1)
    for t in (test_transform, test_bslz4, test_h5_bitshuffle, test_h5lz4_and_lz4, test_malformed):
        t()
    print(f"{checks} checks, {len(failures)} failed")
    sys.exit(1 if failures else 0)
