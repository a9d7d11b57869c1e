#!/usr/bin/env python3
"""tomo_cli.py - the whole `aptomo tomo fbp|sart` command (process start to exit, wall time, best of N) against
scikit-image's iradon / iradon_sart doing the same reconstruction slice by slice, in the same run.

Volumes [N, Y, N] of IC-like cross-sections (layers of metal lines and vias in oxide, inside the inscribed circle,
every y-slice a different layout); projections from skimage's radon of each row-flipped slice (the angle convention of
tests/test_tomo_ref.py: ours(t) = radon(slice[::-1], t)), written as Data Exchange. Settings match: FBP ramp filter;
SART one pass over the angles, one angle per update, relaxation 0.15, no clipping (iradon_sart's defaults: one call
is one pass) = `aptomo tomo sart --iters 1 --relax 0.15 --allow-negative`. PCC of both against the phantom inside
the circle. The runs alternate (aptomo, scikit-image, `aptomo tomo --help`) so a shared machine's load hits both
sides alike; each figure is the best of its runs. `startup_s` is the best wall time of `aptomo tomo --help`, the
process start-up (dynamic loading) every command pays and no amount of reconstruction speed removes. One JSON line
per figure: {size, angles, method, aptomo_s, skimage_s, speedup, startup_s, pcc_aptomo, pcc_skimage, threads}.

usage: bench/tomo_cli.py [--aptomo build/tools/aptomo] [--sizes 128x8x128,256x32x256] [--angles 29]
                         [--range 17] [--reps 7] [--threads 0] [--methods fbp,sart]
Environment passes through (e.g. APTOMO_FFTW_WISDOM=off to time without the wisdom cache).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
from skimage.transform import iradon, iradon_sart, radon


def phantom_slice(n, j):
    """IC-like cross-section in the x-z plane (rows z, cols x), layout shifted by slice index j."""
    z, x = np.mgrid[0:n, 0:n]
    sc = n / 129.0
    zz, xx = (z / sc).astype(int), (x / sc).astype(int) + 5 * j
    img = np.full((n, n), 0.2)
    inside = (zz >= 20) & (zz < 110)
    layer = (zz - 20) // 18
    metal = inside & ((zz - 20) % 18 < 6) & ((xx // (4 + 2 * np.maximum(layer, 0))) % 2 == 0)
    via = inside & ((zz - 20) % 18 >= 6) & (xx % 23 < 3)
    img[metal] = 1.0
    img[via] = 0.8
    c = (n - 1) / 2
    img[(z - c) ** 2 + (x - c) ** 2 > (c - 2) ** 2] = 0
    return img


def circle_mask(n):
    c = (n - 1) / 2
    z, x = np.mgrid[0:n, 0:n] - c
    return z * z + x * x <= (c - 2) ** 2


def pcc(a, b, m):
    a, b = a[m] - a[m].mean(), b[m] - b[m].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aptomo", default=os.environ.get("APTOMO_BIN", "build/tools/aptomo"))
    ap.add_argument("--sizes", default="128x8x128,256x32x256")
    ap.add_argument("--angles", type=int, default=29)
    ap.add_argument("--range", type=float, default=17.0, help="half range in degrees (angles over +-range)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--methods", default="fbp,sart")
    a = ap.parse_args()
    theta = np.linspace(-a.range, a.range, a.angles)
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes.split(","):
            Z, Y, X = (int(v) for v in size.split("x"))
            if Z != X:
                sys.exit(f"tomo_cli.py: size {size}: square slices only (Z == X)")
            n = X
            truth = np.stack([phantom_slice(n, j) for j in range(Y)], 1)  # [Z, Y, X]
            sinos = [radon(truth[::-1, j, :], theta=theta) for j in range(Y)]  # [U, angles] each
            src = os.path.join(tmp, f"in_{size}.h5")
            with h5py.File(src, "w") as f:
                f["/exchange/data"] = np.transpose(np.stack(sinos, 1), (2, 1, 0)).astype("f4")  # [angles, Y, U]
                f["/exchange/theta"] = theta
            mask = circle_mask(n)
            for method in a.methods.split(","):
                out = os.path.join(tmp, f"out_{size}_{method}.h5")
                cmd = [a.aptomo, "tomo", method, src, "-o", out, "--threads", str(a.threads)]
                if method == "sart":
                    cmd += ["--iters", "1", "--relax", "0.15", "--allow-negative"]
                    sk = lambda: [iradon_sart(s, theta=theta) for s in sinos]  # noqa: E731
                else:
                    sk = lambda: [iradon(s, theta=theta, filter_name="ramp") for s in sinos]  # noqa: E731

                def run(c=cmd):
                    r = subprocess.run(c, capture_output=True, text=True)
                    if r.returncode:
                        sys.exit(f"tomo_cli.py: {' '.join(c)}: rc {r.returncode}: {r.stderr}")

                t_apt = t_sk = t_start = float("inf")
                for _ in range(a.reps):
                    t_apt = min(t_apt, timed(run)[0])
                    t, rec = timed(sk)
                    t_sk = min(t_sk, t)
                    t_start = min(t_start, timed(lambda: run([a.aptomo, "tomo", "--help"]))[0])
                with h5py.File(out, "r") as f:
                    vol = f["/exchange/data"][()]
                p_apt = np.mean([pcc(vol[:, j, :], truth[:, j, :], mask) for j in range(Y)])
                p_sk = np.mean([pcc(rec[j][::-1], truth[:, j, :], mask) for j in range(Y)])
                print(json.dumps({"size": size, "angles": a.angles, "range_deg": a.range, "method": method,
                                  "aptomo_s": round(t_apt, 5), "skimage_s": round(t_sk, 5),
                                  "speedup": round(t_sk / t_apt, 2), "startup_s": round(t_start, 5),
                                  "pcc_aptomo": round(float(p_apt), 4),
                                  "pcc_skimage": round(float(p_sk), 4), "threads": a.threads}), flush=True)


if __name__ == "__main__":
    main()
