#!/usr/bin/env python3
"""tomo_sart_gap.py - why `aptomo tomo sart` and scikit-image's iradon_sart differ on limited-angle data.

Both SARTs are rebuilt here as explicit per-angle matrices on one 2-D slice (the phantom of tests/test_tomo_ref.py,
N = 65) so that one ingredient at a time can be swapped:
  projector  - ours: Joseph's method over the whole box (the matrix is read from libaptomo's apt_proj_forward through
               ctypes); skimage: bilinear samples every ~0.5 pixel along each ray, only inside the circle of radius
               N//2 - 1 (a numpy copy of _radon_transform.pyx's bilinear_ray_sum).
  update     - ours: x += relax * C_a * A_a^T R_a (b_a - A_a x), R = 1 / row sums (a path counts >= 1 voxel),
               C_a = 1 / column sums of the angle; skimage: x += relax * sum_i (b_i - a_i x) / |a_i|_2^2 *
               (a_i .* hamming_i), a Hamming window along each ray (ends of the ray get 8 % of the middle's update).
  support    - ours: the voxels every view sees (a lens at +-17 deg); skimage: the circle (rays stop there).
  order      - ours: sorted angles, bit-reversed; skimage: golden-ratio order.
Prints the PCC against the phantom (inside the circle, as the test measures) for each combination, 1..N passes.
The replicas are checked first: the skimage replica reproduces iradon_sart, ours reproduces `aptomo tomo sart`.

usage: APTOMO_BIN=build/tools/aptomo bench/tomo_sart_gap.py [--lib build/libaptomo.so] [--passes 2] [--relax 0.15]
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
from skimage.transform import iradon_sart, radon
from skimage.transform.radon_transform import order_angles_golden_ratio

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from test_tomo_ref import N, pcc, phantom  # noqa: E402


def joseph_matrix(lib, theta):
    """Our projector as per-angle matrices [n][U, N*N] in skimage's frame (image rows flipped: ours(t) =
    radon(img[::-1], t)). Each unit image is one y-slice of a [N, N*N, N] volume, so one forward call gives all."""
    lib.apt_proj_new.argtypes = [ctypes.c_int] * 4 + [ctypes.POINTER(ctypes.c_double), ctypes.c_int, ctypes.c_int,
                                                      ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    lib.apt_proj_forward.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    n, P = len(theta), N * N
    th = (ctypes.c_double * n)(*theta)
    p = ctypes.c_void_p()
    err = ctypes.create_string_buffer(4096)
    if lib.apt_proj_new(N, P, N, N, th, n, 0, 0, ctypes.byref(p), err):
        sys.exit("apt_proj_new failed")
    vol = np.zeros((N, P, N), np.float32)
    z, x = np.divmod(np.arange(P), N)
    vol[z, np.arange(P), x] = 1
    sino = np.zeros((n, P, N), np.float32)
    if lib.apt_proj_forward(p, vol.ctypes.data, sino.ctypes.data, err):
        sys.exit("apt_proj_forward failed")
    lib.apt_proj_destroy(ctypes.byref(p))
    A = sino.transpose(0, 2, 1).astype(np.float64)  # [n, U, P]: column P = pixel (z, x) of ours
    return A.reshape(n, N, N, N)[:, :, ::-1, :].reshape(n, N, P)  # columns in skimage's frame (rows flipped)


def skimage_matrix(theta):
    """bilinear_ray_sum / bilinear_ray_update of skimage 0.19 as matrices: A [n, U, P] (weights * ds), H the same
    entries times the Hamming window of the sample (what the update scatters), W [n, U] the weight norms (sum of
    squared sample weights)."""
    n, P = len(theta), N * N
    A, H, W = np.zeros((n, N, P)), np.zeros((n, N, P)), np.zeros((n, N))
    radius, centre = N // 2 - 1, N // 2
    for a, t_deg in enumerate(theta):
        t = np.deg2rad(t_deg)
        for u in range(N):
            tt = u - centre
            s0 = np.sqrt(radius * radius - tt * tt) if radius * radius >= tt * tt else 0.0
            Ns = 2 * int(np.ceil(2 * s0))
            if Ns <= 0:
                continue
            ds = 2 * s0 / Ns
            k = np.arange(Ns + 1)
            x = s0 * np.cos(t) - tt * np.sin(t) + k * (-ds * np.cos(t))
            y = s0 * np.sin(t) + tt * np.cos(t) + k * (-ds * np.sin(t))
            ii, jj = x + centre, y + centre
            i, j = np.floor(ii).astype(int), np.floor(jj).astype(int)
            di, dj = ii - i, jj - j
            ham = (1 - 0.46164) - 0.46164 * np.cos(2 * np.pi * k / (Ns - 1))
            for oi, oj, w, ok in [(0, 0, (1 - di) * (1 - dj), (i > 0) & (j > 0)),
                                  (0, 1, (1 - di) * dj, (i > 0) & (j < N - 1)),
                                  (1, 0, di * (1 - dj), (i < N - 1) & (j > 0)),
                                  (1, 1, di * dj, (i < N - 1) & (j < N - 1))]:
                col = (i[ok] + oi) * N + (j[ok] + oj)
                np.add.at(A[a, u], col, w[ok] * ds)
                W[a, u] += ((w[ok] * ds) ** 2).sum()  # per sample, not per pixel: skimage's weight_norm
                np.add.at(H[a, u], col, w[ok] * ds * ham[ok])
    return A, H, W


def lens_mask(theta):
    """Ours: voxels whose centre projects onto the detector at every angle (src/tomo/iter.c support_mask), in
    skimage's frame (the mask is symmetric under the row flip for angle sets symmetric about 0; flipped anyway)."""
    c = (N - 1) / 2
    z, x = np.mgrid[0:N, 0:N] - c
    m = np.ones((N, N), bool)
    for t in np.deg2rad(theta):
        m &= np.abs(x * np.cos(t) + z * np.sin(t)) <= (N - 1) / 2 + 0.5 + 1e-9
    return m[::-1].ravel()


def circle_support():
    r, c = N // 2 - 1, N // 2
    i, j = np.mgrid[0:N, 0:N]
    return ((i - c) ** 2 + (j - c) ** 2 <= (r + 1) ** 2).ravel()


def bitrev_order(theta):
    srt = np.argsort(theta, kind="stable")
    bits = max(1, int(np.ceil(np.log2(len(theta)))))
    out = [int(r) for r in (int(format(c, f"0{bits}b")[::-1], 2) for c in range(1 << bits)) if r < len(theta)]
    return [int(srt[s]) for s in out]


def sart(A, B, b, order, passes, relax, rule, support, W=None):
    """Generic SART on per-angle matrices: A projects, B scatters back (A, or A .* Hamming); W: skimage's per-ray
    norms (default |a_i|^2)."""
    n, U, P = A.shape
    x = np.zeros(P)
    hist = []
    if rule == "ours":  # R over the whole set at once, paths >= 1 voxel; C per angle, 1/x above 1e-6 max
        rs = A.sum(2)
        R = np.where(rs > rs.max() * 1e-6, 1 / np.where(rs > 0, rs, 1), 0)
        R = np.minimum(R, 1.0)
        C = []
        for a in range(n):
            cs = A[a].sum(0)  # of A: a Hamming-weighted B keeps its taper
            C.append(np.where(cs > cs.max() * 1e-6, 1 / np.where(cs > 0, cs, 1), 0))
    for _ in range(passes):
        for a in order:
            r = b[:, a] - A[a] @ x
            if rule == "ours":
                x = x + relax * C[a] * (B[a].T @ (R[a] * r))
            else:  # skimage: per-ray 1/|a_i|^2, no column normalisation
                wn = (A[a] ** 2).sum(1) if W is None else W[a]
                x = x + relax * (B[a].T @ np.where(wn > 0, r / np.where(wn > 0, wn, 1), 0))
            x = np.where(support, x, 0)
        hist.append(x.copy())
    return hist


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--lib", default=os.path.join(here, "..", "build", "libaptomo.so"))
    ap.add_argument("--aptomo", default=os.environ.get("APTOMO_BIN", os.path.join(here, "..", "build", "tools",
                                                                                  "aptomo")))
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--relax", type=float, default=0.15)
    ap.add_argument("--range", type=float, default=17.0)
    ap.add_argument("--angles", type=int, default=29)
    a = ap.parse_args()
    theta = np.linspace(-a.range, a.range, a.angles)
    img = phantom(N)
    truth = img[::-1].ravel()  # skimage's frame
    c = (N - 1) / 2
    z, x = np.mgrid[0:N, 0:N] - c
    mask = (z * z + x * x <= (c - 2) ** 2)[::-1].ravel()
    b = radon(img[::-1], theta=theta)  # [U, n]
    lib = ctypes.CDLL(os.path.abspath(a.lib))
    Aj = joseph_matrix(lib, theta)
    As, Hs, Ws = skimage_matrix(theta)
    golden, bitrev = list(order_angles_golden_ratio(theta)), bitrev_order(theta)
    lens, circ, every = lens_mask(theta), circle_support(), np.ones(N * N, bool)

    # the replicas first
    ref = iradon_sart(b, theta=theta, relaxation=a.relax)
    for _ in range(a.passes - 1):
        ref = iradon_sart(b, theta=theta, image=ref, relaxation=a.relax)
    rep = sart(As, Hs, b, golden, a.passes, a.relax, "skimage", every, Ws)[-1]
    d_sk = float(np.abs(rep - ref.ravel()).max() / np.abs(ref).max())
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "in.h5"), os.path.join(tmp, "out.h5")
        with h5py.File(src, "w") as f:
            f["/exchange/data"] = b.T[:, None, :].astype("f4")
            f["/exchange/theta"] = theta
        subprocess.run([a.aptomo, "tomo", "sart", src, "-o", out, "--iters", str(a.passes), "--relax",
                        str(a.relax), "--allow-negative", "--threads", "1"], check=True, capture_output=True)
        with h5py.File(out, "r") as f:
            cli = f["/exchange/data"][()][:, 0, :][::-1].ravel()
    ours = sart(Aj, Aj, b, bitrev, a.passes, a.relax, "ours", lens)[-1]
    d_ours = float(np.abs(ours - cli).max() / np.abs(cli).max())
    print(json.dumps({"check": "replicas", "skimage_vs_iradon_sart_maxrel": d_sk, "ours_vs_cli_maxrel": d_ours}))

    rows = [
        ("skimage: its projector, its rule (Hamming, 1/|a|^2), circle, golden", As, Hs, "skimage", every, golden,
         Ws),
        ("ours: Joseph, our rule (R, C), lens support, bit-reversed", Aj, Aj, "ours", lens, bitrev),
        ("ours, golden order", Aj, Aj, "ours", lens, golden),
        ("ours, circle support", Aj, Aj, "ours", circ, bitrev),
        ("ours with skimage's projector (no Hamming), circle", As, As, "ours", circ, bitrev),
        ("ours with skimage's projector and Hamming back-projection", As, Hs, "ours", circ, bitrev),
        ("ours + Hamming-weighted back-projection (Joseph, lens)", Aj, None, "ours", lens, bitrev),
        ("skimage rule without Hamming (its projector, circle)", As, As, "skimage", every, golden, Ws),
        ("skimage rule with Joseph projector (no Hamming), lens", Aj, Aj, "skimage", lens, golden),
    ]
    for r in (0.3, 0.5, 1.0, 1.5):
        rows.append((f"ours at relax {r}", Aj, Aj, "ours", lens, bitrev, None, r))
    rows.append(("skimage rule without Hamming at relax 0.35", As, As, "skimage", every, golden, Ws, 0.35))
    for label, A, B, rule, sup, order, *W in rows:
        relax = W[1] if len(W) > 1 else a.relax
        if B is None:  # Joseph rows weighted by a Hamming window over each ray's extent in the support
            B = np.empty_like(A)
            for ang in range(A.shape[0]):
                for u in range(N):
                    nz = np.nonzero(A[ang, u] * sup)[0]
                    B[ang, u] = A[ang, u]
                    if len(nz) > 1:
                        # position along the ray: the row index in skimage's frame (rays are near-vertical)
                        zi = nz // N
                        s = (zi - zi.min()) / max(1, zi.max() - zi.min())
                        B[ang, u, nz] *= (1 - 0.46164) - 0.46164 * np.cos(2 * np.pi * s)
        hist = sart(A, B, b, order, max(a.passes, 10), relax, rule, sup, W[0] if W else None)
        print(json.dumps({"variant": label, "pcc_by_pass": [round(pcc(h.reshape(N, N), truth.reshape(N, N),
                                                                       mask.reshape(N, N)), 4) for h in hist]}))


if __name__ == "__main__":
    main()
