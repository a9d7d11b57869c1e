#!/usr/bin/env python3
"""test_scanfile_ref.py - scan files against independent readers and writers.

(a) `aptomo synth-scan` output read with h5py + the bitshuffle library: layout, dtypes, filter cd_values, content
    (gap rows/columns, zeros far out, the disc at the beam centre, flux), angles, raster positions, probe; every
    stored chunk equals bitshuffle.compress_lz4 of the frame behind the 12-byte header (our filter is bit-exact
    with the library); our C reader (test_scanfile --dump) decodes the same pixels as h5py.
(b) A scan file written by h5py with the bitshuffle library itself (default and custom block, bitshuffle without
    LZ4, uint8/16/32, complex128 probe, no beam centre) read by our C reader: every value identical.
(c) CLI refusals exit 2 (bad usage) or 1 (cannot write) with a message naming the option or file.
"""
import json
import os
import subprocess
import sys
import tempfile

# Debian's serial HDF5 plugins (hdf5-filter-plugin: bitshuffle 32008, LZ4 32004) must come first: the plugin and
# the bitshuffle.h5 module of python3-bitshuffle are linked against libhdf5_openmpi, not h5py's serial library, so
# they cannot create filtered datasets from h5py. bitshuffle.compress_lz4 (no HDF5 inside) stays the blob reference.
os.environ["HDF5_PLUGIN_PATH"] = "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins"

import bitshuffle  # noqa: E402
import bitshuffle.h5  # noqa: E402  (filter constants)
import h5py  # noqa: E402
import numpy as np  # noqa: E402

BIN = os.environ["APTOMO_BIN"]
DUMP = os.path.join(os.path.dirname(BIN), "..", "tests", "test_scanfile")
failures = 0
checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what, file=sys.stderr)


def dump(path, out):
    """Run our C reader on path; return header, angles and per-angle arrays."""
    os.makedirs(out, exist_ok=True)
    r = subprocess.run([DUMP, "--dump", path, out], capture_output=True, text=True)
    check(r.returncode == 0, f"test_scanfile --dump {path}: {r.stderr}")
    with open(os.path.join(out, "header.txt")) as f:
        lines = f.read().split("\n")
    head = [float(v) for v in lines[0].split()]
    angles = [float(v) for v in lines[1:1 + int(head[5])]]
    return head, angles


def read_bin(out, name, dtype):
    p = os.path.join(out, name)
    return np.fromfile(p, dtype=dtype) if os.path.exists(p) else None


def chunk_filter(ds):
    return ds.id.get_create_plist().get_filter(0)


def synth_checks(tmp):
    H, W, J, N, flux, seed = 80, 96, 10, 3, 2e5, 5
    path = os.path.join(tmp, "synth.h5")
    r = subprocess.run([BIN, "synth-scan", "-o", path, "--angles", str(N), "--frames", str(J), "--width", str(W),
                        "--height", str(H), "--seed", str(seed), "--range-deg", "20", "--flux", str(flux)],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"synth-scan failed: {r.stderr}")
    summary = json.loads(r.stdout)
    check(summary["synthetic"] is True and summary["angles"] == N and summary["frames_per_angle"] == J,
          f"summary {summary}")
    with h5py.File(path, "r") as f:
        for k in ("energy_keV", "detector_distance_m", "pixel_size_m"):
            v = f["/entry/instrument/" + k][()]
            check(np.ndim(v) == 0 and v > 0, f"/entry/instrument/{k} = {v}")
        bc = f["/entry/instrument/beam_center_px"][()]
        check(bc.shape == (2,) and 0 < bc[0] < H and 0 < bc[1] < W, f"beam centre {bc}")
        angles = f["/entry/scan/angles_deg"][()]
        check(np.allclose(angles, np.linspace(-20, 20, N), rtol=0, atol=1e-12), f"angles {angles}")
        probe = f["/entry/probe/modes"][()]
        check(probe.dtype == np.complex64 and probe.shape == (1, H, W), f"probe {probe.dtype} {probe.shape}")
        check(abs(np.sum(np.abs(probe) ** 2) / flux - 1) < 1e-4, "probe power = flux")
        check(f["/entry/probe/pixel_size_m"][()] > 0, "probe pixel size")
        yy, xx = np.mgrid[0:H, 0:W]
        gap = np.zeros((H, W), bool)
        gap[H // 2 - 1:H // 2 + 1, :] = True
        for q in (1, 2, 3):
            gap[:, q * W // 4 - 1:q * W // 4 + 1] = True
        r = np.hypot(yy - bc[0], xx - bc[1])
        first = None
        for a in range(N):
            ds = f[f"/entry/scan/{a:04d}/data"]
            check(ds.shape == (J, H, W) and ds.dtype == np.uint16 and ds.chunks == (1, H, W), f"angle {a} layout")
            fid, _, cd, _ = chunk_filter(ds)
            check(fid == 32008 and tuple(cd) == (0, 3, 2, 0, 2), f"angle {a} filter {fid} {cd}")
            data = ds[()]
            if first is None:
                first = data
            check(np.all(data[:, gap] == 0xFFFF), f"angle {a}: gap pixels hold 0xFFFF")
            body = data[:, ~gap].astype(np.int64)
            check(np.all(body < 0xFFFF), f"angle {a}: no other pixel at 0xFFFF")
            check(np.all(data[:, (r > 0.46 * min(H, W)) & ~gap] == 0), f"angle {a}: zeros far out")
            tot = body.sum(axis=1)
            check(np.all(np.abs(tot / flux - 1) < 0.05), f"angle {a}: counts per frame {tot} ~ flux {flux}")
            mean = np.where(gap, 0, data.mean(axis=0))
            peak = np.unravel_index(np.argmax(mean), mean.shape)
            check(np.hypot(peak[0] - bc[0], peak[1] - bc[1]) <= 2, f"angle {a}: brightest pixel {peak} at {bc}")
            check(len({data[j].tobytes() for j in range(J)}) == J, f"angle {a}: frames differ (Poisson noise)")
            pos = f[f"/entry/scan/{a:04d}/positions_m"][()]
            cols = int(np.ceil(np.sqrt(J)))
            rows = (J + cols - 1) // cols
            grid = np.stack([np.arange(J) // cols - 0.5 * (rows - 1), np.arange(J) % cols - 0.5 * (cols - 1)], 1)
            dev = pos / 100e-9 - grid
            check(pos.shape == (J, 2) and np.all(np.abs(dev) <= 0.15 + 1e-9) and np.any(np.abs(dev) > 1e-3),
                  f"angle {a}: jittered 100 nm raster")
            for j in range(J):
                mask, blob = ds.id.read_direct_chunk((j, 0, 0))
                hdr = np.frombuffer(blob[:12], dtype=">u8", count=1)[0], np.frombuffer(blob[8:12], ">u4")[0]
                ref = bitshuffle.compress_lz4(data[j].ravel()).tobytes()
                check(mask == 0 and hdr == (H * W * 2, 8192) and blob[12:] == ref,
                      f"angle {a} frame {j}: chunk equals bitshuffle.compress_lz4")
        # our C reader decodes the same pixels
        out = os.path.join(tmp, "dump_synth")
        head, dangles = dump(path, out)
        check(head[3] == bc[0] and head[4] == bc[1] and dangles == list(angles), "C reader header")
        for a in range(N):
            fr = read_bin(out, f"frames_{a:04d}.bin", np.uint16)
            check(fr is not None and np.array_equal(fr.reshape(J, H, W), f[f"/entry/scan/{a:04d}/data"][()]),
                  f"C reader frames of angle {a}")
            ch = read_bin(out, f"chunk_{a:04d}.bin", np.uint8)
            check(ch is not None and ch.tobytes() == f[f"/entry/scan/{a:04d}/data"].id.read_direct_chunk(
                (0, 0, 0))[1], f"C reader raw chunk of angle {a}")
        pr = read_bin(out, "probe.bin", np.complex64)
        check(pr is not None and np.array_equal(pr.reshape(1, H, W), probe), "C reader probe")
    # determinism: same seed same pixels, another seed other pixels
    p2, p3 = os.path.join(tmp, "synth2.h5"), os.path.join(tmp, "synth3.h5")
    base = ["--angles", "1", "--frames", "2", "--width", str(W), "--height", str(H), "--flux", str(flux)]
    subprocess.run([BIN, "synth-scan", "-o", p2, "--seed", str(seed)] + base, check=True, capture_output=True)
    subprocess.run([BIN, "synth-scan", "-o", p3, "--seed", str(seed + 1)] + base, check=True, capture_output=True)
    with h5py.File(p2, "r") as f2, h5py.File(p3, "r") as f3:
        d2, d3 = f2["/entry/scan/0000/data"][()], f3["/entry/scan/0000/data"][()]
        check(np.array_equal(d2, first[:2]), "same seed and shape give the same frames")
        check(not np.array_equal(d2, d3), "different seed gives different frames")
    r2 = subprocess.run([BIN, "synth-scan", "-o", p2, "--seed", str(seed)] + base + ["--dtype", "uint32"],
                        capture_output=True, text=True)
    check(r2.returncode == 0, "uint32 synth")
    with h5py.File(p2, "r") as f2:
        d = f2["/entry/scan/0000/data"][()]
        check(d.dtype == np.uint32 and np.all(d[:, H // 2] == 0xFFFFFFFF), "uint32 gap value")


def h5py_written_checks(tmp):
    """A file from h5py + the bitshuffle library, read by our C reader."""
    path = os.path.join(tmp, "ext.h5")
    rng = np.random.default_rng(7)
    specs = [  # (dtype, J, H, W, compression_opts)
        (np.uint16, 4, 33, 47, (0, bitshuffle.h5.H5_COMPRESS_LZ4)),
        (np.uint32, 3, 20, 21, (256, bitshuffle.h5.H5_COMPRESS_LZ4)),
        (np.uint16, 2, 9, 13, (0, 0)),
        (np.uint8, 2, 40, 50, (0, bitshuffle.h5.H5_COMPRESS_LZ4)),
    ]
    frames, positions = [], []
    with h5py.File(path, "w") as f:
        f["/entry/instrument/energy_keV"] = 9.1
        f["/entry/instrument/detector_distance_m"] = 2.5
        f["/entry/instrument/pixel_size_m"] = 55e-6
        angles = np.array([-30.0, -1.5, 2.25, 44.0])
        f["/entry/scan/angles_deg"] = angles
        probe = (rng.standard_normal((2, 5, 6)) + 1j * rng.standard_normal((2, 5, 6))).astype(np.complex128)
        f["/entry/probe/modes"] = probe
        f["/entry/probe/pixel_size_m"] = 1.5e-8
        for a, (dt, J, H, W, opts) in enumerate(specs):
            hi = np.iinfo(dt).max
            d = rng.integers(0, 50, size=(J, H, W)).astype(dt)
            d[:, :, 3] = hi
            d[:, 5, :] = rng.integers(0, hi, size=(J, W), endpoint=True).astype(dt)
            frames.append(d)
            f.create_dataset(f"/entry/scan/{a:04d}/data", data=d, chunks=(1, H, W),
                             compression=bitshuffle.h5.H5FILTER, compression_opts=opts)
            pos = rng.standard_normal((J, 2)) * 1e-7
            positions.append(pos)
            f[f"/entry/scan/{a:04d}/positions_m"] = pos
    out = os.path.join(tmp, "dump_ext")
    head, dangles = dump(path, out)
    check(head[:3] == [9.1, 2.5, 55e-6], f"C reader instrument {head[:3]}")
    check(head[3] == 33 // 2 and head[4] == 47 // 2, f"default beam centre = frame centre, got {head[3:5]}")
    check(dangles == list(angles), f"C reader angles {dangles}")
    pr = read_bin(out, "probe.bin", np.complex64)
    check(pr is not None and np.array_equal(pr.reshape(2, 5, 6), probe.astype(np.complex64)), "complex128 probe")
    with h5py.File(path, "r") as f:
        for a, (dt, J, H, W, opts) in enumerate(specs):
            fr = read_bin(out, f"frames_{a:04d}.bin", dt)
            check(fr is not None and np.array_equal(fr.reshape(J, H, W), frames[a]),
                  f"C reader decodes bitshuffle-library angle {a} ({np.dtype(dt).name}, opts {opts})")
            pos = read_bin(out, f"positions_{a:04d}.bin", np.float64)
            check(pos is not None and np.array_equal(pos.reshape(J, 2), positions[a]), f"positions {a}")
            ch = read_bin(out, f"chunk_{a:04d}.bin", np.uint8)
            if opts[1] == bitshuffle.h5.H5_COMPRESS_LZ4:
                check(ch is not None and ch.tobytes() == f[f"/entry/scan/{a:04d}/data"].id.read_direct_chunk(
                    (0, 0, 0))[1], f"raw chunk of angle {a}")
            else:
                check(ch is None, f"no raw bslz4 chunk for bitshuffle-only angle {a}")


def cli_checks(tmp):
    cases = [
        (["synth-scan"], 2, "-o"),
        (["synth-scan", "-o", "x.h5", "--dtype", "float32"], 2, "--dtype"),
        (["synth-scan", "-o", "x.h5", "--width", "0"], 2, "--width"),
        (["synth-scan", "-o", "x.h5", "--frames", "abc"], 2, "--frames"),
        (["synth-scan", "-o", "x.h5", "--flux", "-1"], 2, "--flux"),
        (["synth-scan", "-o", "x.h5", "--bogus"], 2, "--bogus"),
        (["synth-scan", "-o", os.path.join(tmp, "no", "such", "dir.h5"), "--frames", "1", "--width", "8",
          "--height", "8"], 1, "dir.h5"),
    ]
    for args, code, word in cases:
        r = subprocess.run([BIN] + args, capture_output=True, text=True, cwd=tmp)
        check(r.returncode == code and word in r.stderr, f"{args}: rc {r.returncode}, stderr {r.stderr!r}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        synth_checks(tmp)
        h5py_written_checks(tmp)
        cli_checks(tmp)
    print(f"test_scanfile_ref: {checks} checks, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
