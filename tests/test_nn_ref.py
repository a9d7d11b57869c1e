"""test_nn_ref.py - the C network forward (`aptomo kernel nn-forward`) against the independent PyTorch reference of
docs/NETWORK.md (tests/nn_torch.py) on two small architectures with Z != Y != X and random non-trivial weights (BN
affine and running stats random); weights written by `aptomo kernel nn-init` load into PyTorch with strict=True and
agree; bad patch shapes and corrupted safetensors files exit 2 naming the tensor/field at fault."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nn_torch as N  # noqa: E402

APTOMO = os.environ.get('APTOMO_BIN', 'aptomo')
torch.set_num_threads(2)
FAILS = []


def check(cond, msg):
    print(('ok   ' if cond else 'FAIL ') + msg)
    if not cond:
        FAILS.append(msg)


def run(*args):
    p = subprocess.run([APTOMO, 'kernel', *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stderr


ARCH_A = {'stem': 4, 'stem_stride': [2, 1, 1],
          'stages': [{'f0': 4, 'f1': 8, 'blocks': 1, 'stride': 1}, {'f0': 4, 'f1': 8, 'blocks': 1, 'stride': 2},
                     {'f0': 8, 'f1': 16, 'blocks': 1, 'stride': 2}],
          'axial': {'planes': 16, 'heads': 2, 'out': 16, 'size': [3, 2, 5]}, 'decoder': [8, 8, 4]}
ARCH_B = {'stem': 6, 'stem_stride': [1, 2, 1],
          'stages': [{'f0': 4, 'f1': 6, 'blocks': 2, 'stride': 1}, {'f0': 5, 'f1': 10, 'blocks': 3, 'stride': 2},
                     {'f0': 6, 'f1': 12, 'blocks': 2, 'stride': 2}],
          'axial': {'planes': 24, 'heads': 3, 'out': 20, 'size': [4, 3, 2]}, 'decoder': [10, 6, 5]}
SHAPES = {'A': (24, 8, 20), 'B': (16, 24, 8)}


def patch_shape(arch, size):
    s = [arch['stem_stride'][i] * 4 for i in range(3)]  # stage strides 1, 2, 2
    return tuple(size[i] * s[i] for i in range(3))


def forward_c(w, x, tmp, tag):
    xin, yout = os.path.join(tmp, f'x_{tag}.h5'), os.path.join(tmp, f'y_{tag}.h5')
    with h5py.File(xin, 'w') as f:
        f['x'] = x.numpy().astype(np.float32)
    rc, err = run('nn-forward', '--threads', '2', w, xin, yout)
    if rc != 0:
        return None, err
    with h5py.File(yout) as f:
        return f['y'][()], err


def forward_gpu(w, x, tmp):
    """GPU twin through --backend gpu: (y, None) or (None, reason it is skipped)."""
    xin, yout = os.path.join(tmp, 'x_gpu.h5'), os.path.join(tmp, 'y_gpu.h5')
    with h5py.File(xin, 'w') as f:
        f['x'] = x.numpy().astype(np.float32)
    rc, err = run('nn-forward', '--backend', 'gpu', w, xin, yout)
    if rc != 0:
        return None, err.strip()
    with h5py.File(yout) as f:
        return f['y'][()], None


def torch_ref(model, x):
    """Eval forward in float64 (the exact answer the float32 C code is judged against; a float32 torch forward
    differs from it by rounding amplified through the depth, ~1e-5 here) and in float32 (reported)."""
    m64 = N.APTNet(model.arch).double()
    m64.load_state_dict(model.state_dict())
    with torch.no_grad():
        return m64.eval()(x.double()).numpy(), model.eval()(x).numpy()


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        # 1. torch-exported random weights -> C forward == torch eval forward
        for tag, arch, seed in (('A', ARCH_A, 1), ('B', ARCH_B, 2)):
            shp = patch_shape(arch, arch['axial']['size'])
            check(len(set(shp)) == 3, f'arch {tag}: patch {shp} has Z != Y != X')
            model = N.randomize(N.APTNet(arch), seed).eval()
            w = os.path.join(tmp, f'w_{tag}.safetensors')
            N.export(model, w, input_meta={'mean': 0.5, 'std': 2.0}, omit_count=(tag == 'B'))
            x = torch.randn(2, 1, *shp, generator=torch.Generator().manual_seed(seed))
            ref, ref32 = torch_ref(model, x)
            y, err = forward_c(w, x, tmp, tag)
            check(y is not None, f'arch {tag}: nn-forward runs ({err.strip()})')
            if y is not None:
                e = rel_err(y, ref)
                check(y.shape == ref.shape, f'arch {tag}: output shape {y.shape} == torch {ref.shape}')
                check(e < 1e-4, f'arch {tag}: max rel error {e:.2e} < 1e-4 vs torch float64 (torch float32: '
                                f'{rel_err(ref32, ref):.2e}; C vs torch float32 {rel_err(y, ref32):.2e}; '
                                f'max |y| {np.abs(ref).max():.3g})')
                check(np.abs(ref).max() > 0 and (ref > 0).mean() > 0.05, f'arch {tag}: output not degenerate')
            yg, why = forward_gpu(w, x, tmp)
            if yg is None:
                check('GPU' in why or 'CUDA' in why or 'device' in why, f'arch {tag}: GPU twin SKIPPED: {why}')
            else:
                e = rel_err(yg, ref)
                check(e < 1e-4, f'arch {tag}: GPU (cuDNN) max rel error {e:.2e} < 1e-4')

        # 2. nn-init weights load into torch with strict=True and agree
        archf, wi = os.path.join(tmp, 'arch.json'), os.path.join(tmp, 'init.safetensors')
        with open(archf, 'w') as f:
            json.dump(ARCH_A, f)
        rc, err = run('nn-init', '--arch', archf, '--seed', '5', '--input', '{"mean": 1.5, "std": 3}', wi)
        check(rc == 0, f'nn-init exits 0 ({err.strip()})')
        sd, meta = N.st_load(wi)
        check(json.loads(meta['aptomo.arch']) == ARCH_A, 'nn-init: aptomo.arch round-trips')
        check(json.loads(meta['aptomo.input']) == {'mean': 1.5, 'std': 3}, 'nn-init: aptomo.input stored')
        model = N.APTNet(json.loads(meta['aptomo.arch']))
        try:
            model.load_state_dict(sd, strict=True)
            check(True, 'nn-init file loads with load_state_dict(strict=True)')
        except Exception as ex:  # noqa: BLE001
            check(False, f'nn-init file loads with strict=True: {ex}')
        rv = [v for k, v in sd.items() if k.endswith('running_var')]
        check(all(float(v.min()) > 0.5 for v in rv) and any(float(v.std()) > 0 for v in rv if v.numel() > 1),
              'nn-init: running_var random near 1')
        model.eval()
        x = torch.randn(1, 1, *SHAPES['A'], generator=torch.Generator().manual_seed(9))
        ref, _ = torch_ref(model, x)
        y, err = forward_c(wi, x, tmp, 'init')
        check(y is not None and rel_err(y, ref) < 1e-4,
              f'nn-init weights: C and torch agree ({"no output " + err if y is None else f"{rel_err(y, ref):.2e}"})')

        # 3. bad patch shapes refused with the reason
        wa = os.path.join(tmp, 'w_A.safetensors')
        for shp, why in (((25, 8, 20), 'stem stride'), ((24, 6, 20), 'divisible'), ((48, 8, 20), 'axial.size')):
            x = torch.zeros(1, 1, *shp)
            y, err = forward_c(wa, x, tmp, 'bad')
            check(y is None and why in err, f'patch {shp} refused naming "{why}": {err.strip()}')
        # wrong channel count in /x
        xin = os.path.join(tmp, 'x2.h5')
        with h5py.File(xin, 'w') as f:
            f['x'] = np.zeros((1, 2, 24, 8, 20), np.float32)
        rc, err = run('nn-forward', wa, xin, os.path.join(tmp, 'o.h5'))
        check(rc == 2 and '/x' in err, f'/x with 2 channels: exit 2 naming /x: {err.strip()}')

        # 4. corrupted weight files: exit 2 naming the tensor/field
        sd = N.randomize(N.APTNet(ARCH_A), 3).state_dict()
        meta = {'aptomo.arch': json.dumps(ARCH_A)}
        x = torch.zeros(1, 1, *SHAPES['A'])
        with h5py.File(xin, 'w') as f:
            f['x'] = x.numpy()

        def bad(tag, path, want):
            rc, err = run('nn-forward', path, xin, os.path.join(tmp, 'o.h5'))
            check(rc == 2 and want in err, f'{tag}: exit {rc} (want 2) naming "{want}": {err.strip()}')

        good = os.path.join(tmp, 'good.safetensors')
        N.st_save(good, sd, meta)
        raw = open(good, 'rb').read()
        p = os.path.join(tmp, 'c.safetensors')
        open(p, 'wb').write(raw[:len(raw) - 100])
        bad('truncated data', p, 'tensor head.')  # the last tensors now point past the end
        open(p, 'wb').write(raw[:6])
        bad('truncated length', p, 'truncated')
        open(p, 'wb').write(struct.pack('<Q', 1 << 40) + raw[8:])
        bad('huge header length', p, 'header length')
        hl = struct.unpack('<Q', raw[:8])[0]
        hdr = json.loads(raw[8:8 + hl])

        def with_header(h):
            hb = json.dumps(h).encode()
            hb += b' ' * ((8 - len(hb) % 8) % 8)
            open(p, 'wb').write(struct.pack('<Q', len(hb)) + hb + raw[8 + hl:])

        h = json.loads(json.dumps(hdr))
        h['enc1.0.conv2.weight']['data_offsets'][1] = 1 << 50
        with_header(h)
        bad('huge offset', p, 'enc1.0.conv2.weight')
        h = json.loads(json.dumps(hdr))
        h['axial.attn_y.relative']['dtype'] = 'F16'
        with_header(h)
        bad('wrong dtype', p, 'axial.attn_y.relative')
        h = json.loads(json.dumps(hdr))
        e = h['dec1.conv.weight']
        e['shape'] = [e['shape'][0], e['shape'][1], 3, 3, 1, 3]
        e['data_offsets'][1] = e['data_offsets'][0] + 4 * int(np.prod(e['shape']))
        with_header(h)
        bad('wrong shape', p, 'dec1.conv.weight')
        sd2 = dict(sd)
        del sd2['axial.attn_x.sim_bn.running_var']
        N.st_save(p, sd2, meta)
        bad('missing tensor', p, 'axial.attn_x.sim_bn.running_var')
        sd2 = dict(sd)
        sd2['enc0.0.conv9.weight'] = torch.zeros(2)
        N.st_save(p, sd2, meta)
        bad('unexpected tensor', p, 'enc0.0.conv9.weight')
        N.st_save(p, sd, {})
        bad('no arch', p, 'aptomo.arch')
        a2 = json.loads(json.dumps(ARCH_A))
        a2['decoder'][0] = 7
        N.st_save(p, sd, {'aptomo.arch': json.dumps(a2)})
        bad('arch constraint', p, 'decoder[0]')
        N.st_save(p, sd, {'aptomo.arch': json.dumps(ARCH_A), 'aptomo.input': '{"std": 0}'})
        bad('bad aptomo.input', p, 'aptomo.input')
    print(f'{len(FAILS)} failed')
    return 1 if FAILS else 0


if __name__ == '__main__':
    sys.exit(main())
