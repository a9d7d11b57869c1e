"""test_ptycho_ref.py - `aptomo kernel ptycho-grad` against an independent PyTorch (complex128, autograd)
implementation of the multislice mixed-state model of docs/PHYSICS.md: random small cases (modes, slices, window sizes,
positions, masked pixels, complex64 and complex128 inputs) must agree in loss and object gradient; bad inputs must
exit 2 naming the dataset or attribute at fault. With APTOMO_TEST_BACKEND=gpu (tests/gpu/run.sh sets it) the same
cases run once more with `--backend gpu`, the CUDA model against the same reference, and must not have fallen back
to the CPU."""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

BIN = os.environ.get("APTOMO_BIN", "aptomo")
BACKEND = os.environ.get("APTOMO_TEST_BACKEND", "")
failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg, file=sys.stderr)


def torch_model(probe, obj, pos, meas, lam, dx, dz):
    """Loss of docs/PHYSICS.md 'The contract'; obj is a leaf tensor with requires_grad."""
    M, H, W = probe.shape
    L = obj.shape[0]
    qy = torch.fft.fftfreq(H, dx, dtype=torch.float64)[:, None]
    qx = torch.fft.fftfreq(W, dx, dtype=torch.float64)[None, :]
    prop = torch.exp(-1j * np.pi * lam * dz * (qy ** 2 + qx ** 2))
    loss = torch.zeros((), dtype=torch.float64)
    mask = meas >= 0
    for j, (r, c) in enumerate(pos):
        psi = probe
        for l in range(L):
            win = obj[l, r:r + H, c:c + W]
            psi = psi * win
            if l < L - 1:
                psi = torch.fft.ifft2(torch.fft.fft2(psi) * prop)
        far = torch.fft.fftshift(torch.fft.fft2(psi), dim=(-2, -1))
        inten = (far.abs() ** 2).sum(0)
        d = torch.sqrt(inten) - torch.sqrt(torch.clamp(meas[j], min=0))
        loss = loss + (d[mask[j]] ** 2).sum()
    return loss


def write_in(path, probe, obj, pos, meas, lam, dx, dz, cdtype):
    with h5py.File(path, "w") as f:
        f["probe"] = probe.astype(cdtype)
        f["object"] = obj.astype(cdtype)
        f["positions"] = pos
        f["intensities"] = meas
        f.attrs["wavelength_m"] = lam
        f.attrs["pixel_size_m"] = dx
        f.attrs["dz_m"] = dz


def run_kernel(inp, out, *extra):
    return subprocess.run([BIN, "kernel", "ptycho-grad", *extra, inp, out], capture_output=True, text=True)


def random_case(rng, M, L, H, W):
    J = int(rng.integers(3, 7))
    Ny, Nx = H + int(rng.integers(4, 16)), W + int(rng.integers(4, 16))
    probe = (rng.normal(size=(M, H, W)) + 1j * rng.normal(size=(M, H, W))) * 0.5
    # weak-ish object near 1 so that intensities vary smoothly
    obj = np.exp(1j * rng.normal(scale=0.5, size=(L, Ny, Nx)) - 0.1 * rng.random((L, Ny, Nx)))
    pos = np.stack([rng.integers(0, Ny - H + 1, J), rng.integers(0, Nx - W + 1, J)], 1).astype(np.int32)
    meas = (rng.random((J, H, W)) * 4 * H * W).astype(np.float32)
    meas[rng.random(meas.shape) < 0.1] = -1  # masked pixels
    lam, dx, dz = 1.0e-10, 10e-9, float(rng.uniform(0.2e-6, 2e-6))
    return probe, obj, pos, meas, lam, dx, dz


def compare(tmp, k, case, cdtype, threads, backend="cpu"):
    probe, obj, pos, meas, lam, dx, dz = case
    inp, out = os.path.join(tmp, f"in{k}.h5"), os.path.join(tmp, f"out{k}.h5")
    write_in(inp, probe, obj, pos, meas, lam, dx, dz, cdtype)
    r = run_kernel(inp, out, "--threads", str(threads), "--backend", backend)
    check(r.returncode == 0, f"case {k} ({backend}): kernel failed: {r.stderr}")
    check("redone on the cpu" not in r.stderr, f"case {k}: the {backend} backend fell back: {r.stderr}")
    if r.returncode:
        return
    # reference from exactly the values the kernel saw (complex64-rounded inputs)
    p64 = probe.astype(cdtype).astype(np.complex128)
    o64 = obj.astype(cdtype).astype(np.complex128)
    ot = torch.tensor(o64, requires_grad=True)
    loss = torch_model(torch.tensor(p64), ot, pos, torch.tensor(meas.astype(np.float64)), lam, dx, dz)
    loss.backward()
    g = ot.grad.numpy()
    # torch's gradient of a real loss w.r.t. complex z is dL/dRe + i dL/dIm, the convention of the kernel
    with h5py.File(out, "r") as f:
        kl = float(f["loss"][()])
        kg = f["grad"][()]
    check(kg.dtype == np.complex64 and kg.shape == obj.shape, f"case {k}: grad dtype/shape {kg.dtype} {kg.shape}")
    el = abs(kl - loss.item()) / abs(loss.item())
    eg = np.linalg.norm(kg - g) / np.linalg.norm(g)
    check(el < 1e-4, f"case {k}: loss {kl} vs torch {loss.item()} (rel {el:.2e})")
    check(eg < 1e-4, f"case {k}: gradient rel error {eg:.2e}")
    # untouched object pixels have exactly zero gradient
    cover = np.zeros(obj.shape[1:], bool)
    H, W = probe.shape[1:]
    for r_, c_ in pos:
        cover[r_:r_ + H, c_:c_ + W] = True
    check(np.all(kg[:, ~cover] == 0), f"case {k}: gradient outside the scanned windows")
    print(f"case {k} ({backend}): M={probe.shape[0]} L={obj.shape[0]} {H}x{W} J={len(pos)} threads={threads} "
          f"loss rel {el:.1e} grad rel {eg:.1e}")


def bad_inputs(tmp, case):
    probe, obj, pos, meas, lam, dx, dz = case
    out = os.path.join(tmp, "bad_out.h5")

    def expect(name, needle, mutate):
        inp = os.path.join(tmp, f"bad_{name}.h5")
        write_in(inp, probe, obj, pos, meas, lam, dx, dz, np.complex64)
        with h5py.File(inp, "a") as f:
            mutate(f)
        r = run_kernel(inp, out)
        check(r.returncode == 2 and needle in r.stderr, f"bad input {name}: rc {r.returncode}, stderr {r.stderr!r}")

    def replace(f, key, val):
        del f[key]
        f[key] = val

    expect("noprobe", "/probe", lambda f: f.__delitem__("probe"))
    expect("realprobe", "/probe", lambda f: replace(f, "probe", np.abs(probe).astype(np.float32)))
    expect("objrank", "/object", lambda f: replace(f, "object", obj[0].astype(np.complex64)))
    expect("posshape", "/positions", lambda f: replace(f, "positions", pos[:, :1]))
    expect("posfloat", "/positions", lambda f: replace(f, "positions", pos.astype(np.float32)))
    expect("posrange", "/positions[", lambda f: replace(f, "positions", pos + 1000))
    expect("posneg", "/positions[", lambda f: replace(f, "positions", pos - 1000))
    expect("measshape", "/intensities", lambda f: replace(f, "intensities", meas[:, :-1]))
    expect("meascount", "/intensities", lambda f: replace(f, "intensities", meas[:-1]))
    expect("nowave", "wavelength_m", lambda f: f.attrs.__delitem__("wavelength_m"))
    expect("negdx", "pixel_size_m", lambda f: f.attrs.__setitem__("pixel_size_m", -1.0))
    expect("nandz", "dz_m", lambda f: f.attrs.__setitem__("dz_m", float("nan")))
    inp = os.path.join(tmp, "notthere.h5")
    r = run_kernel(inp, out)
    check(r.returncode == 2 and "notthere.h5" in r.stderr, f"missing file: {r.returncode} {r.stderr!r}")
    r = subprocess.run([BIN, "kernel", "ptycho-grad", inp], capture_output=True, text=True)
    check(r.returncode == 2 and "usage" in r.stderr, "usage error")
    r = subprocess.run([BIN, "kernel", "no-such-kernel"], capture_output=True, text=True)
    check(r.returncode == 2, "unknown kernel")


def main():
    rng = np.random.default_rng(20240531)
    with tempfile.TemporaryDirectory() as tmp:
        k = 0
        cases = []
        for M, L, H, W in [(1, 1, 16, 16), (2, 2, 16, 24), (3, 3, 32, 32), (1, 3, 17, 20), (2, 1, 24, 16)]:
            cases.append(random_case(rng, M, L, H, W))
            compare(tmp, k, cases[-1], np.complex64, 1 + k % 3)
            k += 1
        if BACKEND and BACKEND != "cpu":  # the optional pass: the same cases on another backend
            for case in cases:
                compare(tmp, k, case, np.complex64, 2, BACKEND)
                k += 1
        compare(tmp, k, random_case(rng, 2, 2, 20, 20), np.complex128, 2)  # complex128 input accepted
        k += 1
        # windows large enough that the CPU engine runs the modes through the FFT in groups (2 x 2, 3 x 1)
        for M, L, H, W in [(4, 2, 128, 128), (3, 2, 96, 112)]:
            compare(tmp, k, random_case(rng, M, L, H, W), np.complex64, 1 + k % 2)
            k += 1
        bad_inputs(tmp, random_case(rng, 1, 2, 16, 16))
    print("failures:", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    torch.set_num_threads(2)
    sys.exit(main())
