"""test_sim_ref.py - `aptomo simulate` checked from outside with h5py and numpy: the scan file's layout against
docs/FILES.md (paths, dtypes, shapes, complex {r, i}, one bitshuffle chunk per frame), an independent far-field
check (a vacuum phantom: the mean frame must be sum_m |fftshift(fft2(P_m))|^2 of the stored probe, within Poisson
noise), --phantom resampling, and exit status 2 with the key/file named on bad input."""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

BIN = os.environ["APTOMO_BIN"]
SRC = os.environ["APTOMO_SRC"]
DEMO = os.path.join(SRC, "configs", "demo.yaml")
failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg, file=sys.stderr)


def simulate(*args):
    return subprocess.run([BIN, "simulate", "--config", DEMO, *args], capture_output=True, text=True)


def test_layout(tmp):
    out = os.path.join(tmp, "scan.h5")
    r = simulate("--set", "sim.angles=3", "--set", "sim.grid=[24, 32, 32]", "-o", out)
    check(r.returncode == 0, "simulate failed: " + r.stderr)
    if r.returncode:
        return
    with h5py.File(out, "r") as f:
        for k, v in (("energy_keV", 8.8), ("detector_distance_m", 0.96), ("pixel_size_m", 75e-6)):
            d = f["/entry/instrument/" + k]
            check(d.shape == () and d.dtype == np.float64 and abs(d[()] - v) < 1e-12, "instrument " + k)
        check(list(f["/entry/instrument/beam_center_px"][()]) == [32, 32], "beam centre (H/2, W/2)")
        modes = f["/entry/probe/modes"]
        check(modes.shape == (3, 64, 64) and modes.dtype == np.complex64, "probe modes %s %s" % (modes.shape,
                                                                                                   modes.dtype))
        check(modes.id.get_type().get_member_name(0) == b"r" and modes.id.get_type().get_member_name(1) == b"i",
              "probe modes are compound {r, i}")
        px = f["/entry/probe/pixel_size_m"][()]
        lam = 1.23984198e-9 / 8.8
        check(abs(px - lam * 0.96 / (64 * 75e-6)) < 1e-15, "object pixel lambda z / (N p)")
        ang = f["/entry/scan/angles_deg"][()]
        check(ang.dtype == np.float64 and np.allclose(ang, [-17, 0, 17]), "angles %s" % ang)
        for a in range(3):
            data = f["/entry/scan/%04d/data" % a]
            pos = f["/entry/scan/%04d/positions_m" % a]
            check(data.ndim == 3 and data.shape[1:] == (64, 64) and data.dtype == np.uint16, "data %d" % a)
            check(data.chunks == (1, 64, 64) and "32008" in str(data._filters), "one bslz4 chunk per frame")
            check(pos.shape == (data.shape[0], 2) and pos.dtype == np.float64, "positions %d" % a)
            p = pos[()]
            # positions cover the field across the beam (y over Y vy, x' over X vx cos + Z vz sin)
            th = np.radians(ang[a])
            ey, ex = 32 * 28e-9, 32 * 28e-9 * np.cos(th) + 24 * 28e-9 * abs(np.sin(th))
            check(p[:, 0].min() <= -ey / 2 + 15e-9 and p[:, 0].max() >= ey / 2 - 15e-9, "y coverage")
            check(p[:, 1].min() <= -ex / 2 + 15e-9 and p[:, 1].max() >= ex / 2 - 15e-9, "x' coverage")
            check(np.all(data[()] < 0xFFFF), "counts saturate below the type max")
        gt = f["/entry/sample/ground_truth"]
        check(gt.shape == (24, 32, 32) and gt.dtype == np.float32, "ground truth shape/dtype")
        check(np.allclose(f["/entry/sample/voxel_size_m"][()], [28e-9] * 3), "ground truth voxel size")
        g = gt[()]
        check(5e-6 < g.min() and g.max() < 5e-5, "delta range %g..%g" % (g.min(), g.max()))
    # the same config gives the same file contents
    out2 = os.path.join(tmp, "scan2.h5")
    simulate("--set", "sim.angles=3", "--set", "sim.grid=[24, 32, 32]", "-o", out2)
    with h5py.File(out, "r") as f, h5py.File(out2, "r") as f2:
        check(np.array_equal(f["/entry/scan/0001/data"][()], f2["/entry/scan/0001/data"][()]), "deterministic")


def write_phantom(path, delta, voxel, beta=None):
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = delta.astype(np.float32)
        if beta is not None:
            f["/exchange/beta"] = beta.astype(np.float32)
        if voxel is not None:
            f["/exchange/voxel_size_m"] = np.array(voxel, dtype=np.float64)


def test_vacuum_far_field(tmp):
    """Object = 1 everywhere: every frame is Poisson(sum_m |fftshift(F[P_m])|^2), F numpy's unnormalised fft2."""
    ph = os.path.join(tmp, "vacuum.h5")
    write_phantom(ph, np.zeros((16, 24, 24)), [28e-9] * 3)
    out = os.path.join(tmp, "vac.h5")
    r = simulate("--phantom", ph, "--set", "sim.angles=1", "--set", "sim.grid=[16, 24, 24]",
                 "--set", "sim.dtype=uint32", "-o", out)
    check(r.returncode == 0, "vacuum simulate: " + r.stderr)
    if r.returncode:
        return
    with h5py.File(out, "r") as f:
        P = f["/entry/probe/modes"][()].astype(np.complex128)
        frames = f["/entry/scan/0000/data"][()].astype(np.float64)
        check(np.all(f["/entry/sample/ground_truth"][()] == 0), "ground truth = the given volume")
    want = sum(np.abs(np.fft.fftshift(np.fft.fft2(p))) ** 2 for p in P)
    J = frames.shape[0]
    mean = frames.mean(axis=0)
    z = np.abs(mean - want) / np.sqrt(want / J + 1e-6)
    check(z.max() < 6, "mean frame vs model: max z-score %.2f" % z.max())
    check(abs(frames.sum(axis=(1, 2)).mean() / 1e6 - 1) < 0.01, "photons per frame %g" %
          frames.sum(axis=(1, 2)).mean())
    check(abs(want.sum() / 1e6 - 1) < 1e-4, "probe scaled to photons_per_frame")
    # the bright field is the zone plate's annulus around the frame centre [32, 32]
    yy, xx = np.mgrid[:64, :64]
    rad = np.hypot(yy - 32, xx - 32)
    rp = lam_na_px = (1.23984198e-9 / 8.8) / (2 * 50e-9) * 0.96 / 75e-6
    inside = want[(rad >= 0.5 * rp - 1) & (rad <= rp + 1)].sum() / want.sum()
    check(inside > 0.95, "annulus holds %.3f of the model intensity (radius %.1f px)" % (inside, lam_na_px))


def test_resample(tmp):
    """A phantom at twice the voxel size is resampled (trilinear) onto sim.grid; constant stays constant."""
    ph = os.path.join(tmp, "coarse.h5")
    delta = np.full((8, 12, 12), 1e-5)
    write_phantom(ph, delta, [56e-9] * 3, beta=np.full((8, 12, 12), 1e-7))
    out = os.path.join(tmp, "res.h5")
    r = simulate("--phantom", ph, "--set", "sim.angles=1", "--set", "sim.grid=[16, 24, 24]", "-o", out)
    check(r.returncode == 0, "resample simulate: " + r.stderr)
    if r.returncode:
        return
    with h5py.File(out, "r") as f:
        g = f["/entry/sample/ground_truth"][()]
    check(g.shape == (16, 24, 24) and np.allclose(g[2:-2, 2:-2, 2:-2], 1e-5, rtol=1e-5), "resampled constant")


def test_errors(tmp):
    r = subprocess.run([BIN, "simulate", "-o", os.path.join(tmp, "x.h5")], capture_output=True, text=True)
    check(r.returncode == 2 and "--config" in r.stderr, "missing --config: %d %s" % (r.returncode, r.stderr))
    r = simulate("--set", "sim.grid=[1, 2]", "-o", os.path.join(tmp, "x.h5"))
    check(r.returncode == 2 and "sim.grid" in r.stderr, "short sim.grid: %d %s" % (r.returncode, r.stderr))
    r = simulate("--set", "physics.probe.defocus_m=5e-3", "-o", os.path.join(tmp, "x.h5"))
    check(r.returncode == 2 and "defocus_m" in r.stderr, "huge defocus: %d %s" % (r.returncode, r.stderr))
    bad = os.path.join(tmp, "nodata.h5")
    with h5py.File(bad, "w") as f:
        f["/exchange/other"] = np.zeros(3)
    r = simulate("--phantom", bad, "-o", os.path.join(tmp, "x.h5"))
    check(r.returncode == 2 and "/exchange/data" in r.stderr, "phantom without data: %s" % r.stderr)
    noshape = os.path.join(tmp, "noshape.h5")
    write_phantom(noshape, np.zeros((4, 5, 6)), None)
    r = simulate("--phantom", noshape, "-o", os.path.join(tmp, "x.h5"))
    check(r.returncode == 2 and "voxel_size_m" in r.stderr, "phantom without voxel size: %s" % r.stderr)
    check(not os.path.exists(os.path.join(tmp, "x.h5")), "no half-written output")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        test_layout(tmp)
        test_vacuum_far_field(tmp)
        test_resample(tmp)
        test_errors(tmp)
    print("failures:", failures)
    sys.exit(1 if failures else 0)
