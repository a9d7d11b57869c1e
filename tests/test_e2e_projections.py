"""Projections from the per-angle ptychography, end to end: `aptomo approximant --projections P.h5` and
`aptomo tomo fbp SCAN.h5 --save-projections Q.h5` write the same file (same code path) without changing the
Approximant; the detector is wide enough for the tilted slab (width rule recomputed here, edge columns are air);
every angle carries the sample's whole mass (integrated phase referenced to air, docs/TOMO.md "Scan-file input");
`aptomo tomo` on the saved projections gives the volume of the run on the scan file; bad paths and --nx fail."""
import json
import math
import os
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import SRC, Checker, run_cli  # noqa: E402

DEMO = os.path.join(SRC, "configs", "demo.yaml")
# the demo IC (grid 32 x 48 x 48) at 5 angles over +-70 deg; 4 iterations per angle keep the air noise ~1 %
CFG = ["--config", DEMO, "--set", "physics.iterations=4"]


def width_rule(Z, X, theta_deg):
    """include/aptomo/angle.h apt_angle_proj_width, independently."""
    t = np.deg2rad(np.asarray(theta_deg))
    half = ((X - 1) / 2 * np.abs(np.cos(t)) + (Z - 1) / 2 * np.abs(np.sin(t))).max() + 1
    U = max(X, math.ceil(2 * half + 1 - 1e-9))
    return U + (U - X) % 2


def load(path, what="exchange/data"):
    with h5py.File(path, "r") as f:
        return f[what][()]


def main():
    ck = Checker("projections")
    with tempfile.TemporaryDirectory() as tmp:
        j = lambda name: os.path.join(tmp, name)  # noqa: E731
        run_cli("simulate", "--config", DEMO, "--set", "sim.angles=5", "--set", "sim.range_deg=70", "-o", j("scan.h5"))
        with h5py.File(j("scan.h5"), "r") as f:
            truth = f["entry/sample/ground_truth"][()]
            vs = f["entry/sample/voxel_size_m"][()]
            angles = f["entry/scan/angles_deg"][()]
        Z, Y, X = truth.shape

        # one ptychography pass -> Approximant + projections; the Approximant is untouched by --projections
        p = run_cli("approximant", j("scan.h5"), "-o", j("approx_p.h5"), "--projections", j("P.h5"), *CFG)
        ck.eq("approximant JSON lines", len([l for l in p.stdout.splitlines() if l.startswith("{")]), len(angles))
        run_cli("approximant", j("scan.h5"), "-o", j("approx.h5"), *CFG)
        # Two processes may pick different FFTW_MEASURE plans (load-dependent), so the bits can differ in the last
        # place; the bound is the one live == offline uses (docs/INTERFACES.md).
        a_p, a = load(j("approx_p.h5")), load(j("approx.h5"))
        diff = float(np.abs(a_p - a).max() / (np.abs(a).max() + 1e-30))
        ck.true(f"Approximant with --projections == without (max rel diff {diff:.1e})", diff < 1e-4)

        run_cli("tomo", "fbp", j("scan.h5"), "-o", j("fbp_scan.h5"), "--save-projections", j("Q.h5"), *CFG)
        P, Q = load(j("P.h5")), load(j("Q.h5"))
        ck.eq("P and Q shapes", P.shape, Q.shape)
        if P.shape == Q.shape:
            diff = float(np.abs(P - Q).max() / np.abs(P).max())
            ck.true(f"approximant --projections == tomo --save-projections (max rel diff {diff:.1e})", diff < 1e-6)
        with h5py.File(j("P.h5"), "r") as f:
            theta = f["exchange/theta"][()]
            shape = tuple(int(v) for v in f["exchange/data"].attrs["volume_shape"])
            ck.eq("volume_shape is the grid", shape, (Z, Y, X))
            ck.eq("volume_shape is int32", f["exchange/data"].attrs["volume_shape"].dtype, np.dtype("int32"))
            ck.true("voxel size (z, y, x) stored", np.allclose(f["exchange/voxel_size_m"][()], vs))
        ck.true("theta in processing order", np.array_equal(theta, angles))
        ck.true("Q's theta, shape and voxel size equal P's",
                np.array_equal(load(j("Q.h5"), "exchange/theta"), theta) and
                np.array_equal(load(j("Q.h5"), "exchange/voxel_size_m"), load(j("P.h5"), "exchange/voxel_size_m")))

        # width: the rule, and wider than the grid (the slab's diagonal at +-35 deg)
        n, Yp, U = P.shape
        ck.eq("n angles, Y rows", (n, Yp), (len(angles), Y))
        ck.eq("detector width U == numpy width rule", U, width_rule(Z, X, theta))
        ck.true(f"U {U} > X {X}", U > X)
        rowmax = np.abs(P).max(axis=2)  # [n, Y]
        edges = np.concatenate([P[:, :, :2], P[:, :, -2:]], axis=2) / rowmax[:, :, None]
        # columns are air: their mean over rows is ~0 (the per-pixel reconstruction noise is ~1 % rms, <= 6 %)
        colmean = np.abs(edges.mean(axis=1)).max()
        ck.true(f"edge columns ~0: max |mean over rows| {colmean:.4f} < 2 % of the row max", colmean < 0.02)
        ck.true(f"edge pixels ~0: max {np.abs(edges).max():.3f} < 10 % of the row max", np.abs(edges).max() < 0.10)
        # the same test on the old U = X crop sees the slab cut off where it is widest (tan theta = Z / X)
        a = int(np.argmin(np.abs(np.abs(theta) - np.rad2deg(np.arctan2(Z, X)))))
        o = (U - X) // 2
        crop = P[a, :, o:o + X]
        cut = np.abs(np.concatenate([crop[:, :2], crop[:, -2:]], axis=1).mean(axis=0)).max() / rowmax[a].mean()
        ck.true(f"an X-wide detector at {theta[a]:.0f} deg cuts the slab (edge {cut:.2f} of the row max)", cut > 0.1)

        # mass: sum(proj) (delta x voxels over U x Y) == sum(truth) * vz / vx at every angle
        ratio = P.sum(axis=(1, 2)) / (truth.sum() * vs[0] / vs[2])
        print("mass ratio per angle:", " ".join(f"{t:+.0f}:{r:.3f}" for t, r in zip(theta, ratio)))
        ck.true(f"mass within 10 % at every angle ({ratio.min():.3f}..{ratio.max():.3f})",
                np.all(np.abs(ratio - 1) < 0.10))

        # the saved projections replace the ptychography pass: same volume
        run_cli("tomo", "fbp", j("P.h5"), "-o", j("fbp_p.h5"))
        va, vb = load(j("fbp_p.h5")), load(j("fbp_scan.h5"))
        ck.eq("fbp on scan file: shape = ground truth (default --nz = grid Z)", vb.shape, truth.shape)
        ck.eq("fbp on P.h5: shape from volume_shape", va.shape, truth.shape)
        if va.shape == vb.shape:
            d = float(np.abs(va - vb).max() / np.abs(vb).max())
            ck.true(f"tomo fbp P.h5 == tomo fbp SCAN.h5 (max rel diff {d:.1e})", d < 1e-5)
        run_cli("tomo", "fbp", j("P.h5"), "-o", j("fbp_small.h5"), "--nz", 20, "--nx", 40)
        ck.eq("--nz/--nx override volume_shape", load(j("fbp_small.h5")).shape, (20, Y, 40))
        with h5py.File(j("plain.h5"), "w") as f:  # Data Exchange without volume_shape: [U, Y, U] as before
            f["exchange/data"] = P
            f["exchange/theta"] = theta
        run_cli("tomo", "fbp", j("plain.h5"), "-o", j("fbp_plain.h5"))
        ck.eq("no volume_shape: volume [U, Y, U]", load(j("fbp_plain.h5")).shape, (U, Y, U))

        # error paths
        bad = os.path.join(tmp, "no_such_dir", "P.h5")
        p = run_cli("approximant", j("scan.h5"), "-o", j("a2.h5"), "--projections", bad, *CFG, check=False)
        ck.eq("--projections to an unwritable path: exit 1", p.returncode, 1)
        ck.true(f"... message names the path ({p.stderr.strip()[:120]})", bad in p.stderr)
        ck.true("... refused before any ptychography", '"angle"' not in p.stdout)
        p = run_cli("tomo", "fbp", j("P.h5"), "-o", j("x.h5"), "--nx", U + 1, check=False)
        ck.eq("--nx wider than U: exit 2", p.returncode, 2)
        ck.true(f"... message names --nx ({p.stderr.strip()[:120]})", "--nx" in p.stderr)
        p = run_cli("tomo", "fbp", j("scan.h5"), "-o", j("x.h5"), "--save-projections", bad, *CFG, check=False)
        ck.eq("--save-projections to an unwritable path: exit 1", p.returncode, 1)
        ck.true("... message names the path", bad in p.stderr)
        with h5py.File(j("badshape.h5"), "w") as f:
            f["exchange/data"] = P
            f["exchange/theta"] = theta
            f["exchange/data"].attrs["volume_shape"] = np.array([Z, Y + 1, X], dtype="int32")
        p = run_cli("tomo", "fbp", j("badshape.h5"), "-o", j("x.h5"), check=False)
        ck.eq("volume_shape not matching the rows: exit 2", p.returncode, 2)
        ck.true(f"... message names volume_shape ({p.stderr.strip()[:120]})", "volume_shape" in p.stderr)
        ck.true("no .part/.tmp files left behind", not any(s.endswith((".part", ".tmp")) for s in os.listdir(tmp)))
    return ck.done()


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
