"""test_axial_train_ref.py - `aptomo kernel nn-axial-grad` (src/nn/axial_train.c: the axial attention core of
docs/NETWORK.md in training mode, forward + exact backward) against PyTorch autograd of the same formulas, with
nn.BatchNorm2d / nn.BatchNorm1d modules in train mode (momentum 0.1, eps 1e-5) for sim_bn / out_bn.

Random seeded inputs (numpy); cases cover axis 0, 1 and 2, B > 1, heads 1 and > 1, unequal D/H/W, K = 1 (the softmax
is trivially 1, so only the relative/BN paths carry gradient) and more than one reduction block of 32 lines. Checked:
y, dqkv, drel, dsim_w, dsim_b, dout_w, dout_b and the four running-statistics vectors.

Tolerance: the reference runs in float64 (the exact answer the float32 C code is judged against). The error of a
tensor is max|C - ref| / max|ref| (for a tensor that is exactly zero in exact arithmetic, dsim_b always and the
gradients behind the softmax when K = 1, the scale is max|dout_w| instead, a sum over as many terms). A correct
float32 implementation is off by rounding only: the same formulas in float32 PyTorch land at ~1e-7 .. 1e-6 here
(printed for each tensor). The bound is 20x the float32 PyTorch error of the same tensor, at least 2e-6: loose
enough for a different but correct summation order, tight enough that a missing term of the BatchNorm backward
(through the batch mean or variance: errors ~1e-1) or a 1e-4 relative slip in one relative-embedding gradient fails
(both tried by mutating the C code).

Determinism: the same input (four reduction blocks) with --threads 1, 2, 3, 5 and 64 (and a second run with 2)
gives byte-identical OUT datasets. Bad input (a wrong shape of /relative, /dy or /sim_rv, a missing attribute, heads
not dividing the planes, a non-finite value, a single BatchNorm value) exits 2 with one line naming the dataset or
attribute."""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

APTOMO = os.environ.get('APTOMO_BIN', 'aptomo')
torch.set_num_threads(2)
FAILS = []
OUT_NAMES = ['y', 'dqkv', 'drel', 'dsim_w', 'dsim_b', 'dout_w', 'dout_b', 'sim_rm', 'sim_rv', 'out_rm', 'out_rv']


def check(cond, msg):
    print(('ok   ' if cond else 'FAIL ') + msg)
    if not cond:
        FAILS.append(msg)


def run(*args):
    p = subprocess.run([APTOMO, 'kernel', 'nn-axial-grad', *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stderr


def make_case(seed, B, P, G, D, H, W, axis):
    rng = np.random.default_rng(seed)
    gp, K = P // G, (D, H, W)[axis]
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return {'qkv': f(B, 2 * P, D, H, W), 'relative': 0.5 * f(2 * gp, 2 * K - 1),
            'sim_w': (0.6 + 0.8 * rng.random(3 * G)).astype(np.float32), 'sim_b': 0.2 * f(3 * G),
            'sim_rm': 0.2 * f(3 * G), 'sim_rv': (0.5 + rng.random(3 * G)).astype(np.float32),
            'out_w': (0.6 + 0.8 * rng.random(2 * P)).astype(np.float32), 'out_b': 0.2 * f(2 * P),
            'out_rm': 0.2 * f(2 * P), 'out_rv': (0.5 + rng.random(2 * P)).astype(np.float32),
            'dy': f(B, P, D, H, W), 'heads': G, 'axis': axis}


def write_in(path, case, drop=None):
    with h5py.File(path, 'w') as h:
        for k, v in case.items():
            if k == drop:
                continue
            if k in ('heads', 'axis'):
                h.attrs[k] = np.int32(v)
            else:
                h[k] = v


def read_out(path):
    with h5py.File(path) as h:
        return {k: h[k][()] for k in OUT_NAMES}


def torch_ref(case, dtype):
    """The brief's formulas verbatim, autograd for the gradients of sum(y * dy)."""
    G, axis = case['heads'], case['axis']
    qkv5 = torch.tensor(case['qkv'], dtype=dtype, requires_grad=True)
    B, C, D, H, W = qkv5.shape
    P = C // 2
    gp = P // G
    rel = torch.tensor(case['relative'], dtype=dtype, requires_grad=True)
    sim_bn, out_bn = nn.BatchNorm2d(3 * G).to(dtype), nn.BatchNorm1d(2 * P).to(dtype)
    with torch.no_grad():
        for bn, pre in ((sim_bn, 'sim'), (out_bn, 'out')):
            bn.weight.copy_(torch.tensor(case[pre + '_w']))
            bn.bias.copy_(torch.tensor(case[pre + '_b']))
            bn.running_mean.copy_(torch.tensor(case[pre + '_rm']))
            bn.running_var.copy_(torch.tensor(case[pre + '_rv']))
    sim_bn.train(), out_bn.train()
    dim = 2 + axis
    perm = {2: (0, 3, 4, 1, 2), 3: (0, 2, 4, 1, 3), 4: (0, 2, 3, 1, 4)}[dim]
    xp = qkv5.permute(*perm)
    o1, o2, K = xp.shape[1], xp.shape[2], xp.shape[-1]
    Bp = B * o1 * o2
    qkv = xp.reshape(Bp, G, 2 * gp, K)
    q, k, v = torch.split(qkv, [gp // 2, gp // 2, gp], dim=2)
    idx = torch.arange(K)[:, None] - torch.arange(K)[None, :] + K - 1
    E = rel[:, idx]
    Eq, Ek, Ev = torch.split(E, [gp // 2, gp // 2, gp], dim=0)
    qr = torch.einsum('bgci,cij->bgij', q, Eq)
    kr = torch.einsum('bgci,cij->bgij', k, Ek).transpose(2, 3)
    qk = torch.einsum('bgci,bgcj->bgij', q, k)
    s = sim_bn(torch.cat([qk, qr, kr], dim=1)).reshape(Bp, 3, G, K, K).sum(1)
    s = F.softmax(s, dim=3)
    sv = torch.einsum('bgij,bgcj->bgci', s, v)
    sve = torch.einsum('bgij,cij->bgci', s, Ev)
    o = out_bn(torch.cat([sv, sve], dim=-1).reshape(Bp, 2 * P, K)).reshape(Bp, P, 2, K).sum(2)
    inv = {2: (0, 3, 4, 1, 2), 3: (0, 3, 1, 4, 2), 4: (0, 3, 1, 2, 4)}[dim]
    y = o.reshape(B, o1, o2, P, K).permute(*inv)
    (y * torch.tensor(case['dy'], dtype=dtype)).sum().backward()
    n = lambda t: t.detach().numpy().astype(np.float64)  # noqa: E731
    return {'y': n(y), 'dqkv': n(qkv5.grad), 'drel': n(rel.grad), 'dsim_w': n(sim_bn.weight.grad),
            'dsim_b': n(sim_bn.bias.grad), 'dout_w': n(out_bn.weight.grad), 'dout_b': n(out_bn.bias.grad),
            'sim_rm': n(sim_bn.running_mean), 'sim_rv': n(sim_bn.running_var), 'out_rm': n(out_bn.running_mean),
            'out_rv': n(out_bn.running_var)}


def max_abs(a, ref):
    return float(np.max(np.abs(a.astype(np.float64) - ref)))


CASES = [  # name, seed, B, P, G, D, H, W, axis
    ('axis0 B2 G2', 1, 2, 8, 2, 5, 3, 4, 0),
    ('axis1 B1 G1', 2, 1, 4, 1, 3, 6, 5, 1),
    ('axis2 B3 G3', 3, 3, 12, 3, 4, 5, 7, 2),
    ('axis0 B2 G2, 4 blocks', 4, 2, 8, 2, 6, 7, 9, 0),
    ('axis1 K=1', 5, 2, 8, 2, 3, 1, 2, 1),
    ('axis2 G4 gp2', 6, 2, 8, 4, 3, 2, 6, 2),
]


def reference_checks(tmp):
    for name, seed, B, P, G, D, H, W, axis in CASES:
        case = make_case(seed, B, P, G, D, H, W, axis)
        fin, fout = os.path.join(tmp, 'in.h5'), os.path.join(tmp, 'out.h5')
        write_in(fin, case)
        rc, err = run('--threads', 2, fin, fout)
        check(rc == 0, f'{name}: exit 0 ({err.strip()})')
        if rc != 0:
            continue
        c = read_out(fout)
        r64, r32 = torch_ref(case, torch.float64), torch_ref(case, torch.float32)
        # identically zero in exact arithmetic: dsim_b (each softmax row's gradient sums to 0) and, for K = 1 (the
        # softmax is constant), every gradient behind it; their scale is that of dout_w (a sum of the same size)
        zero = {'dsim_b'} | ({'drel', 'dsim_w'} if (D, H, W)[axis] == 1 else set())
        for k in OUT_NAMES:
            ok_shape = c[k].shape == r64[k].shape
            check(ok_shape, f'{name}: {k} shape {c[k].shape} == {r64[k].shape}')
            if not ok_shape:
                continue
            scale = float(np.max(np.abs(r64['dout_w' if k in zero else k])))
            if k in zero:
                check(np.max(np.abs(r64[k])) <= 1e-12 * scale, f'{name}: {k} is zero in the float64 reference')
            e, e32 = max_abs(c[k], r64[k]) / scale, max_abs(r32[k], r64[k]) / scale
            tol = max(20 * e32, 2e-6)
            check(e <= tol, f'{name}: {k:6s} C vs float64 {e:.2e} (float32 torch {e32:.2e}, bound {tol:.1e})'
                  + (' [exact value 0, scale of dout_w]' if k in zero else ''))


def determinism_checks(tmp):
    case = make_case(7, 2, 8, 2, 7, 6, 9, 1)  # 126 lines of K = 6: four reduction blocks
    fin = os.path.join(tmp, 'det.h5')
    write_in(fin, case)
    outs = {}
    runs = [(1, ''), (2, ''), (3, ''), (5, ''), (64, ''), (2, ' (second run)')]
    for t, tag in runs:
        fout = os.path.join(tmp, 'det.out.h5')
        rc, err = run('--threads', t, fin, fout)
        check(rc == 0, f'determinism --threads {t}{tag}: exit 0 ({err.strip()})')
        outs[(t, tag)] = read_out(fout) if rc == 0 else None
    base = outs[(1, '')]
    for t, tag in runs[1:]:
        o = outs[(t, tag)]
        same = base is not None and o is not None and all(o[k].tobytes() == base[k].tobytes() for k in OUT_NAMES)
        check(same, f'determinism: --threads {t}{tag} gives the same bytes as --threads 1 for every dataset')


def bad_input_checks(tmp):
    good = make_case(8, 1, 4, 2, 3, 4, 5, 2)
    fout = os.path.join(tmp, 'bad_out.h5')
    bads = [
        ('relative', {'relative': np.zeros((4, 8), np.float32)}, None, '/relative'),
        ('dy', {'dy': np.zeros((1, 4, 3, 4, 4), np.float32)}, None, '/dy'),
        ('sim_rv', {'sim_rv': np.ones(5, np.float32)}, None, '/sim_rv'),
        ('heads attribute missing', {}, 'heads', 'heads'),
        ('heads not dividing', {'heads': 3}, None, '/qkv'),
        ('nan in qkv', {'qkv': np.where(np.arange(good['qkv'].size).reshape(good['qkv'].shape) == 7, np.nan,
                                        good['qkv']).astype(np.float32)}, None, '/qkv'),
        ('one BatchNorm value', make_case(9, 1, 4, 2, 1, 1, 1, 0), None, 'more than one value'),
    ]
    for name, change, drop, needle in bads:
        case = dict(good, **change)
        fin = os.path.join(tmp, 'bad.h5')
        write_in(fin, case, drop)
        rc, err = run(fin, fout)
        check(rc == 2 and needle in err and err.count('\n') == 1,
              f'bad input ({name}): exit 2 naming {needle!r} (rc {rc}, {err.strip()!r})')


def main():
    with tempfile.TemporaryDirectory() as tmp:
        reference_checks(tmp)
        determinism_checks(tmp)
        bad_input_checks(tmp)
    if FAILS:
        sys.exit(f'{len(FAILS)} check(s) failed')
    print('all checks passed')


if __name__ == '__main__':
    main()
