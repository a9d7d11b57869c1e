"""test_metrics_ref.py - `aptomo metrics` against an independent numpy implementation of every metric of
docs/METRICS.md: PCC (np.corrcoef), 3-D MS-SSIM (whole-volume separable valid filtering, no ring
buffer), the two-Gaussian EM binarisation behind DSC/BER (on the same 65536-bin histogram, vectorised, two-pass
variances; plus a check that the exact per-voxel EM lands on nearly the same threshold), and the FSC from the full
complex np.fft.fftn (no Hermitian weighting), on IC-like volumes (layers of metal lines and vias) and noisy, blurred
and offset copies; all agree to 1e-4. Then identities, --plot (PNG, N from /exchange/theta) and exit 2 on bad input."""
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

BIN = os.environ["APTOMO_BIN"]
failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg, file=sys.stderr)


# ---------------------------------------------------------------- reference implementations (float64 numpy)

def gauss_window(dim):
    w = min(11, dim)
    u = np.arange(w) - (w - 1) / 2.0
    g = np.exp(-u * u / (2 * 1.5 ** 2))
    return g / g.sum()


def filt_valid(v, g, axis):
    """Valid correlation with g along axis: sum_k g[k] v[i+k]."""
    n = v.shape[axis] - len(g) + 1
    out = np.zeros(v.shape[:axis] + (n,) + v.shape[axis + 1:])
    for k, gk in enumerate(g):
        out += gk * np.take(v, np.arange(k, k + n), axis=axis)
    return out


def gfilter(v):
    for ax in (2, 1, 0):
        v = filt_valid(v, gauss_window(v.shape[ax]), ax)
    return v


def pool2(v):
    Z, Y, X = (s // 2 for s in v.shape)
    v = v[:2 * Z, :2 * Y, :2 * X]
    return v.reshape(Z, 2, Y, 2, X, 2).mean(axis=(1, 3, 5))


def ms_ssim(x, y):
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    L = y.max() - y.min()
    L = L if L > 0 else 1.0
    C1, C2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    w = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    vals = []
    for s in range(5):
        mx, my = gfilter(x), gfilter(y)
        sxx = gfilter(x * x) - mx * mx
        syy = gfilter(y * y) - my * my
        sxy = gfilter(x * y) - mx * my
        cs = (2 * sxy + C2) / (sxx + syy + C2)
        lum = (2 * mx * my + C1) / (mx * mx + my * my + C1)
        vals.append(cs.mean() if s < 4 else (lum * cs).mean())
        x, y = pool2(x), pool2(y)
    return float(np.prod([max(v, 0.0) ** wi for v, wi in zip(vals, w)]))


def log_wpdf(t, w, mu, var):
    return np.log(w) - 0.5 * np.log(2 * np.pi * var) - (t - mu) ** 2 / (2 * var)


def gmm_threshold(v, bins=65536):
    """EM of a two-Gaussian mixture on the values binned into `bins` equal bins between min and max."""
    x = v.astype(np.float64).ravel()
    lo, hi = x.min(), x.max()
    if hi == lo:
        return float(lo)
    idx = np.clip(np.floor((x - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    cnt = np.bincount(idx, minlength=bins).astype(np.float64)
    occ = np.nonzero(cnt)[0]
    return gmm_fit(lo + (occ + 0.5) * ((hi - lo) / bins), cnt[occ])


def gmm_exact(v):
    """The same EM on every voxel (no binning): the histogram must not move the threshold noticeably."""
    x = v.astype(np.float64).ravel()
    return gmm_fit(x, np.ones_like(x))


def gmm_fit(xc, c):
    n = c.sum()
    m = (c * xc).sum() / n
    vfloor = 1e-6 * (c * (xc - m) ** 2).sum() / n + np.finfo(float).tiny
    up = xc > m
    w = np.array([c[~up].sum(), c[up].sum()]) / n
    mu = np.array([np.average(xc[~up], weights=c[~up]), np.average(xc[up], weights=c[up])])
    var = np.maximum([np.average((xc[~up] - mu[0]) ** 2, weights=c[~up]),
                      np.average((xc[up] - mu[1]) ** 2, weights=c[up])], vfloor)
    prev = -np.inf
    for _ in range(500):
        lp = np.stack([log_wpdf(xc, w[k], mu[k], var[k]) for k in range(2)])
        top = lp.max(axis=0)
        ll = (c * (top + np.log(np.exp(lp - top).sum(axis=0)))).sum() / n
        r = np.exp(lp - top)
        r = c * r / r.sum(axis=0)
        N = r.sum(axis=1)
        if N.min() < 1e-9 * n:
            break
        w = N / n
        mu = (r * xc).sum(axis=1) / N
        var = np.maximum(np.array([(r[k] * (xc - mu[k]) ** 2).sum() / N[k] for k in range(2)]), vfloor)
        if ll - prev < 1e-10:
            break
        prev = ll
    o = np.argsort(mu)
    w, mu, var = w[o], mu[o], var[o]
    f = lambda t: log_wpdf(t, w[1], mu[1], var[1]) - log_wpdf(t, w[0], mu[0], var[0])
    lo, hi_ = mu[0], mu[1]
    if f(lo) >= 0:
        return float(lo)
    if f(hi_) <= 0:
        return float(hi_)
    for _ in range(200):
        mid = 0.5 * (lo + hi_)
        if mid <= lo or mid >= hi_:
            break
        if f(mid) < 0:
            lo = mid
        else:
            hi_ = mid
    return float(0.5 * (lo + hi_))


def dsc_ber(t, r):
    a = t > gmm_threshold(t)
    b = r > gmm_threshold(r)
    na, nb = a.sum(), b.sum()
    dsc = 2.0 * (a & b).sum() / (na + nb) if na + nb else 1.0
    return float(dsc), float((a ^ b).mean())


def fsc(a, b):
    Z, Y, X = a.shape
    M = min(a.shape)
    ns = M // 2 + 1
    Fa, Fb = np.fft.fftn(a.astype(np.float64)), np.fft.fftn(b.astype(np.float64))
    fz, fy, fx = np.fft.fftfreq(Z), np.fft.fftfreq(Y), np.fft.fftfreq(X)
    f2 = (fz[:, None, None] ** 2 + fy[None, :, None] ** 2) + fx[None, None, :] ** 2
    sh = np.floor(np.sqrt(f2) * M + 0.5).astype(int).ravel()
    keep = sh < ns
    sh = sh[keep]
    num = np.bincount(sh, (Fa * np.conj(Fb)).real.ravel()[keep], ns)
    da = np.bincount(sh, (np.abs(Fa) ** 2).ravel()[keep], ns)
    db = np.bincount(sh, (np.abs(Fb) ** 2).ravel()[keep], ns)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(da * db > 0, num / np.sqrt(da * db), np.nan)
    res = 2.0
    for s in range(1, ns):
        if c[s] < 0.143:
            sx = float(s)
            if np.isfinite(c[s - 1]) and c[s - 1] >= 0.143 and c[s - 1] > c[s]:
                sx = (s - 1) + (c[s - 1] - 0.143) / (c[s - 1] - c[s])
            res = M / sx if sx > 0 else M / s
            break
    return c, res


# ---------------------------------------------------------------- IC-like volumes

def ic_volume(shape, rng):
    """Layers of metal lines (alternating x/y direction), vias between layers, on a weak background."""
    Z, Y, X = shape
    v = np.full(shape, 0.15, np.float64)
    z = 2
    layer = 0
    while z + 3 < Z:
        pitch = 4 + layer % 3
        for k in range(2, (X if layer % 2 == 0 else Y) - 2, pitch):
            if layer % 2 == 0:
                v[z:z + 3, 3:Y - 3, k:k + 2] = 1.0
            else:
                v[z:z + 3, k:k + 2, 3:X - 3] = 1.0
        for _ in range(6):
            vy, vx = rng.integers(3, Y - 4), rng.integers(3, X - 4)
            v[z + 3:z + 5, vy:vy + 2, vx:vx + 2] = 0.8
        z += 5
        layer += 1
    return v


def blur(v, s=1.0):
    k = np.exp(-np.arange(-3, 4) ** 2 / (2 * s * s))
    k /= k.sum()
    for ax in range(3):
        v = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), ax, v)
    return v


def write(path, v, theta=None):
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = np.asarray(v, np.float32)
        if theta is not None:
            f["/exchange/theta"] = np.asarray(theta, np.float64)


def run(*args):
    return subprocess.run([BIN, "metrics", *args], capture_output=True, text=True)


def compare(tmp, name, test, ref, exact=False):
    test = np.asarray(test, np.float32)
    ref = np.asarray(ref, np.float32)
    tp, rp = os.path.join(tmp, name + "_t.h5"), os.path.join(tmp, name + "_r.h5")
    write(tp, test)
    write(rp, ref)
    r = run(tp, rp)
    check(r.returncode == 0, f"{name}: exit {r.returncode}: {r.stderr}")
    if r.returncode:
        return None
    got = json.loads(r.stdout)
    want_pcc = np.corrcoef(test.astype(np.float64).ravel(), ref.astype(np.float64).ravel())[0, 1]
    want_ms = ms_ssim(test, ref)
    want_dsc, want_ber = dsc_ber(test, ref)
    if exact:
        for v in (test, ref):
            tb, te = gmm_threshold(v), gmm_exact(v)
            check(abs(tb - te) < 1e-3 * float(v.max() - v.min()), f"{name}: binned EM threshold {tb} vs exact {te}")
    curve, res = fsc(test, ref)
    for k, w in (("pcc", want_pcc), ("ms_ssim", want_ms), ("dsc", want_dsc), ("ber", want_ber)):
        check(abs(got[k] - w) < 1e-4, f"{name}: {k} {got[k]} vs numpy {w}")
    check(abs(got["fsc_threshold_px"] - res) < 1e-4 * max(1.0, res),
          f"{name}: fsc_threshold_px {got['fsc_threshold_px']} vs numpy {res}")
    gc = np.array([np.nan if c is None else c for c in got["fsc"]])
    check(gc.shape == curve.shape, f"{name}: fsc length {gc.shape} vs {curve.shape}")
    if gc.shape == curve.shape:
        same_nan = np.array_equal(np.isnan(gc), np.isnan(curve))
        err = np.nanmax(np.abs(gc - curve)) if same_nan else np.inf
        check(same_nan and err < 1e-4, f"{name}: fsc curve differs by {err}")
    print(f"{name}: {json.dumps({k: got[k] for k in ('pcc', 'ms_ssim', 'dsc', 'ber', 'fsc_threshold_px')})}")
    return got


def main():
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        # non-cubic (ties in the shell rounding), odd extents (pooling drops the last plane/row/column)
        ref = blur(ic_volume((40, 48, 44), rng), 0.5)
        same = compare(tmp, "identical", ref, ref)
        if same:
            check(abs(same["pcc"] - 1) < 1e-9 and abs(same["ms_ssim"] - 1) < 1e-9, "identity pcc/ms_ssim")
            check(same["dsc"] == 1 and same["ber"] == 0, "identity dsc=1 ber=0")
            check(all(abs(c - 1) < 1e-6 for c in same["fsc"]) and same["fsc_threshold_px"] == 2.0, "identity fsc")
        noisy = compare(tmp, "noisy", ref + 0.05 * rng.standard_normal(ref.shape), ref, exact=True)
        very = compare(tmp, "very_noisy", ref + 0.6 * rng.standard_normal(ref.shape), ref, exact=True)
        if noisy and very:
            check(very["ms_ssim"] < noisy["ms_ssim"] and very["pcc"] < noisy["pcc"], "more noise, lower scores")
            check(noisy["dsc"] > 0.99 and noisy["ber"] < 0.01, "light noise keeps the binarisation")
            check(very["dsc"] < noisy["dsc"] and very["ber"] > noisy["ber"], "heavy noise: worse DSC/BER")
            check(very["fsc_threshold_px"] > 2.0, "heavy noise: the FSC crosses 0.143 before Nyquist")
        odd = blur(ic_volume((37, 45, 50), rng), 0.5)
        compare(tmp, "odd_blurred", blur(odd, 1.5) + 0.1 * rng.standard_normal(odd.shape), odd)
        # a large offset: E[x^2] - E[x]^2 must not lose the variance (luminance term sees the offset)
        compare(tmp, "offset", ref + 1000.0 + 0.05 * rng.standard_normal(ref.shape), ref + 1000.0)
        compare(tmp, "shifted", np.roll(ref, 2, axis=2), ref)

        # --plot: N from /exchange/theta, PNG out, results in the JSON
        rp = os.path.join(tmp, "ref.h5")
        write(rp, ref, np.linspace(-70, 70, 349))
        files = []
        for n, s in ((29, 0.4), (90, 0.2), (349, 0.05)):
            p = os.path.join(tmp, f"n{n}.h5")
            write(p, ref + s * rng.standard_normal(ref.shape), np.linspace(-17, 17, n))
            files.append(p)
        png = os.path.join(tmp, "plot.png")
        r = run("--plot", png, files[2], files[0], files[1], "--ref", rp, "--title", "test")
        check(r.returncode == 0, "plot: " + r.stderr)
        if r.returncode == 0:
            out = json.loads(r.stdout)
            check([x["n_angles"] for x in out["results"]] == [349, 29, 90], "plot: N from /exchange/theta")
            check(out["results"][2]["pcc"] > out["results"][1]["pcc"], "plot: less noise, higher PCC")
            with open(png, "rb") as f:
                head = f.read(24)
            check(head[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(head[16:20], "big") > 100, "plot: PNG")

        # error paths: exit 2 with the file or field named
        small = os.path.join(tmp, "small.h5")
        write(small, ref[:20])
        r = run(small, rp)
        check(r.returncode == 2 and "shape mismatch" in r.stderr and "small.h5" in r.stderr, "shape mismatch: " +
              r.stderr)
        r = run(os.path.join(tmp, "missing.h5"), rp)
        check(r.returncode == 2 and "missing.h5" in r.stderr, "missing file: " + r.stderr)
        r = run(rp, rp, "--dataset", "/exchange/nothing")
        check(r.returncode == 2 and "/exchange/nothing" in r.stderr, "missing dataset: " + r.stderr)
        bad = os.path.join(tmp, "nan.h5")
        v = ref.copy()
        v[3, 4, 5] = np.nan
        write(bad, v)
        r = run(bad, rp)
        check(r.returncode == 2 and "non-finite" in r.stderr, "NaN voxel: " + r.stderr)
        tiny = os.path.join(tmp, "tiny.h5")
        write(tiny, ref[:8, :8, :8])
        r = run(tiny, tiny)
        check(r.returncode == 2 and "too small" in r.stderr, "volume too small for MS-SSIM: " + r.stderr)
        nothe = os.path.join(tmp, "notheta.h5")
        write(nothe, ref)
        r = run("--plot", png, nothe, "--ref", rp)
        check(r.returncode == 2 and "/exchange/theta" in r.stderr, "plot without theta: " + r.stderr)
        r = run(rp)
        check(r.returncode == 2, "one file only: usage")

    print("failures:", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
