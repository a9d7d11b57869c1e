"""test_e2e_train.py - `aptomo train` end to end on a tiny arch and tiny numpy volumes (a phantom of boxes as the
target on the network's output grid, its 2x2-binned, blurred, noisy copy as the "Approximant"):

- 3 epochs: the loss decreases on this easy task; stdout and --log carry one JSON line per epoch; the PNG is a PNG;
  OUT loads into the PyTorch reference with strict=True and runs in `aptomo infer`, which applies its aptomo.output
  (the same weights without it give the raw output); its metadata has aptomo.arch, aptomo.input and
  aptomo.output;
- independent cross-checks of the data path (numpy patch grid, normalisation, NPCC): aptomo.input is the mean/std
  of the training patches' voxels, the best epoch's test NPCC and PCC are those of OUT's weights on the test
  patches run through `aptomo kernel nn-forward`, and aptomo.output is the least-squares fit on the training patches;
- resume: 1 epoch, then --resume to 3 epochs, ends with the same OUT bytes as the uninterrupted run, and the same
  epoch lines; a resume that changes an option is refused;
- the split: a pair given twice (one copy drawn as test) is refused as overlapping; one pair splits by a band;
  --dataset manifests (aptomo dataset's format) are read;
- a progress bar on a terminal, nothing on stderr otherwise; bad inputs exit 2 with a message naming the fault."""
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nn_torch as N  # noqa: E402
from e2e_util import APTOMO, Checker, run_pty  # noqa: E402

torch.set_num_threads(2)
ARCH = {'stem': 4, 'stem_stride': [2, 1, 1],
        'stages': [{'f0': 4, 'f1': 8, 'blocks': 1, 'stride': 1}, {'f0': 4, 'f1': 8, 'blocks': 1, 'stride': 2},
                   {'f0': 8, 'f1': 8, 'blocks': 1, 'stride': 2}],
        'axial': {'planes': 8, 'heads': 2, 'out': 8, 'size': [2, 2, 2]}, 'decoder': [8, 8, 4]}
PATCH, SCALE = (16, 8, 8), (1, 2, 2)  # size * stem stride * 4; output [16, 16, 16]
TRAIN = ['--lr0', '2e-3', '--lr-end', '2e-5', '--batch', '4', '--threads', '2', '--seed', '5']


def cli(*args, cwd=None, timeout=600):
    return subprocess.run([APTOMO, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def write_vol(path, v):
    with h5py.File(path, 'w') as f:
        f['/exchange/data'] = v.astype(np.float32)


def make_pair(rng, Z=16, Y=24, X=24):
    """Target: boxes on the 2x lateral grid; Approximant: binned 2x2, blurred, noisy."""
    t = np.zeros((Z, 2 * Y, 2 * X), np.float32)
    for _ in range(14):
        z0, y0, x0 = rng.integers(0, Z - 3), rng.integers(0, 2 * Y - 8), rng.integers(0, 2 * X - 8)
        t[z0:z0 + rng.integers(2, 6), y0:y0 + rng.integers(3, Y), x0:x0 + rng.integers(3, 8)] = 1.0
    a = t.reshape(Z, Y, 2, X, 2).mean((2, 4))
    a = ndimage.gaussian_filter(a, 1.0) + 0.03 * rng.standard_normal(a.shape)
    return a.astype(np.float32), t


def lines(text):
    return [json.loads(s) for s in text.splitlines() if s.strip()]


def tile_starts(n, p):
    """The inference tiler's grid (docs/NETWORK.md "Tiling"): every p/2, the last patch ending at n."""
    return [0] if n <= p else list(range(0, n - p, p // 2)) + [n - p]


def z_starts(n, p):
    if n <= p:
        return [0]
    s = list(range(0, n - p + 1, p))
    return s + [n - p] if s[-1] + p < n else s


def patches(a, t):
    """(x, y) of every patch of a pair larger than a patch (no padding), constant targets left out."""
    out = []
    for z in z_starts(a.shape[0], PATCH[0]):
        for y in tile_starts(a.shape[1], PATCH[1]):
            for x in tile_starts(a.shape[2], PATCH[2]):
                xp = a[z:z + PATCH[0], y:y + PATCH[1], x:x + PATCH[2]]
                yp = t[z:z + 16, 2 * y:2 * y + 16, 2 * x:2 * x + 16]
                if np.ptp(yp) > 0:
                    out.append((xp, yp))
    return out


def forward(weights, xs, mean, std, tmp):
    x = ((np.stack(xs)[:, None].astype(np.float64) - mean) * (1.0 / std)).astype(np.float32)
    with h5py.File(os.path.join(tmp, 'x.h5'), 'w') as f:
        f['x'] = x
    p = cli('kernel', 'nn-forward', '--threads', '2', weights, os.path.join(tmp, 'x.h5'), os.path.join(tmp, 'y.h5'))
    assert p.returncode == 0, p.stderr
    with h5py.File(os.path.join(tmp, 'y.h5')) as f:
        return f['y'][()][:, 0].astype(np.float64)


def pcc(a, b):
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def cross_check(ck, tmp, out, pairs, setup, epochs):
    sd, meta = N.st_load(out)
    for key in ('aptomo.arch', 'aptomo.input', 'aptomo.output', 'aptomo.train'):
        ck.true(f'OUT metadata has {key}', key in meta)
    ck.eq('aptomo.arch', json.loads(meta['aptomo.arch']), ARCH)
    model = N.APTNet(ARCH)
    try:
        model.load_state_dict(sd, strict=True)
        ck.true('OUT loads into the PyTorch reference with strict=True', True)
    except RuntimeError as e:
        ck.true(f'OUT loads into the PyTorch reference with strict=True: {e}', False)
    test_ids = setup['split']['test_pairs']
    train_p = [p for i, (a, t) in enumerate(pairs) if i not in test_ids for p in patches(a, t)]
    test_p = [p for i in test_ids for p in patches(*pairs[i])]
    ck.eq('training / test patch counts', (setup['split']['train_patches'], setup['split']['test_patches']),
          (len(train_p), len(test_p)))
    vox = np.concatenate([x.ravel() for x, _ in train_p]).astype(np.float64)
    inp = json.loads(meta['aptomo.input'])
    ck.true(f'aptomo.input {inp} = mean/std of the training patches ({vox.mean()}, {vox.std()})',
            abs(inp['mean'] - vox.mean()) < 1e-9 * max(1, abs(vox.mean())) and abs(inp['std'] / vox.std() - 1) < 1e-9)
    best = min(epochs, key=lambda e: e['test_npcc'])
    ck.eq('final line: best epoch', setup['final']['best_epoch'], best['epoch'])
    yt = forward(out, [x for x, _ in test_p], inp['mean'], inp['std'], tmp)
    npcc = float(np.mean([-pcc(y, t) for y, (_, t) in zip(yt, test_p)]))
    pooled = pcc(yt, np.stack([t for _, t in test_p]))
    ck.true(f'best epoch test NPCC {best["test_npcc"]:.7f} = OUT on the test patches via nn-forward {npcc:.7f}',
            abs(best['test_npcc'] - npcc) < 2e-5)
    ck.true(f'best epoch test PCC {best["test_pcc"]:.7f} = pooled PCC {pooled:.7f}', abs(best['test_pcc'] - pooled)
            < 2e-5)
    ys = forward(out, [x for x, _ in train_p], inp['mean'], inp['std'], tmp).ravel()
    ts = np.concatenate([t.ravel() for _, t in train_p]).astype(np.float64)
    A = np.stack([ys, np.ones_like(ys)], 1)
    (scale, offset), *_ = np.linalg.lstsq(A, ts, rcond=None)
    fit = json.loads(meta['aptomo.output'])
    ck.true(f'aptomo.output {fit} = least squares on the training patches ({scale:.6g}, {offset:.6g})',
            abs(fit['scale'] - scale) < 1e-4 * abs(scale) + 1e-7 and abs(fit['offset'] - offset) < 1e-4)


def fault(ck, what, p, needle):
    ck.true(f'{what}: exit 2 naming {needle!r} (rc {p.returncode}, {p.stderr.strip()!r})',
            p.returncode == 2 and needle in p.stderr and p.stderr.startswith('aptomo train: '))


def main():
    ck = Checker('test_e2e_train')
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as tmp:
        pairs, args = [], []
        for i in range(3):
            a, t = make_pair(rng)
            pairs.append((a, t))
            write_vol(os.path.join(tmp, f'a{i}.h5'), a)
            write_vol(os.path.join(tmp, f't{i}.h5'), t)
            args.append(f'a{i}.h5:t{i}.h5')
        with open(os.path.join(tmp, 'arch.json'), 'w') as f:
            json.dump(ARCH, f)

        # 3 epochs, uninterrupted
        p = cli('train', '--arch', 'arch.json', *args, '--test-pairs', '1', *TRAIN, '--epochs', '3', '--log',
                'w.jsonl', '-o', 'w.safetensors', cwd=tmp)
        ck.eq(f'train: exit ({p.stderr.strip()!r})', p.returncode, 0)
        if p.returncode:
            return ck.done()
        ck.eq('train: stderr is empty off a terminal', p.stderr, '')
        out = lines(p.stdout)
        setup, epochs, final = out[0], out[1:-1], out[-1]
        setup['final'] = final
        ck.eq('stdout: setup line, 3 epoch lines, final line', [e.get('epoch') for e in epochs], [1, 2, 3])
        with open(os.path.join(tmp, 'w.jsonl')) as f:
            ck.eq('--log: the epoch lines', lines(f.read()), epochs)
        keys = {'epoch', 'lr', 'train_loss', 'test_npcc', 'test_pcc', 'seconds', 'best'}
        ck.true('epoch lines have ' + ', '.join(sorted(keys)), all(keys <= set(e) for e in epochs))
        lr = [(2e-3 - 2e-5) * (1 - t / 200) ** 0.9 + 2e-5 for t in range(3)]  # docs/NETWORK.md, t = epoch
        ck.true(f'lr by epoch: {[e["lr"] for e in epochs]} vs {lr}', all(abs(e['lr'] - w) < 1e-15 * w
                                                                              for e, w in zip(epochs, lr)))
        tl = [e['train_loss'] for e in epochs]
        ck.true(f'train loss decreases on an easy task: {tl}', tl[2] < tl[0] - 0.02)
        ck.true(f'test NPCC improves: {[e["test_npcc"] for e in epochs]}',
                min(e['test_npcc'] for e in epochs[1:]) < epochs[0]['test_npcc'])
        with open(os.path.join(tmp, 'w.png'), 'rb') as f:
            ck.true('loss plot (default OUT.png) is a PNG', f.read(8) == b'\x89PNG\r\n\x1a\n')
        ck.true('checkpoint at the default path', os.path.exists(os.path.join(tmp, 'w.ckpt.safetensors')))
        cross_check(ck, tmp, os.path.join(tmp, 'w.safetensors'), pairs, setup, epochs)
        p = cli('infer', '--weights', 'w.safetensors', 'a1.h5', '-o', 'r1.h5', cwd=tmp)
        ck.eq(f'OUT runs in aptomo infer ({p.stderr.strip()!r})', p.returncode, 0)
        sd, meta = N.st_load(os.path.join(tmp, 'w.safetensors'))
        fit = json.loads(meta.pop('aptomo.output'))
        N.st_save(os.path.join(tmp, 'raw.safetensors'), sd, meta)  # the same weights without aptomo.output
        q = cli('infer', '--weights', 'raw.safetensors', 'a1.h5', '-o', 'r1raw.h5', cwd=tmp)
        if p.returncode == 0 and q.returncode == 0:
            with h5py.File(os.path.join(tmp, 'r1.h5')) as f, h5py.File(os.path.join(tmp, 'r1raw.h5')) as g:
                got, raw = f['/exchange/data'][()].astype(np.float64), g['/exchange/data'][()].astype(np.float64)
            ck.eq('infer output shape', got.shape, (16, 48, 48))
            want = fit['scale'] * raw + fit['offset']
            err = np.abs(got - want).max() / np.abs(want).max()
            ck.true(f'infer applies aptomo.output: scale * raw + offset (max rel. error {err:.2e})', err < 1e-5)

        # resume: 1 epoch, then 2 more from the checkpoint
        p1 = cli('train', '--arch', 'arch.json', *args, '--test-pairs', '1', *TRAIN, '--epochs', '1', '--log',
                 'r.jsonl', '-o', 'r.safetensors', cwd=tmp)
        p2 = cli('train', '--resume', 'r.ckpt.safetensors', '--epochs', '3', '--threads', '1', '--log', 'r.jsonl',
                 '-o', 'r.safetensors', cwd=tmp)
        ck.true(f'interrupted + resumed: exits 0 ({p1.stderr.strip()!r} {p2.stderr.strip()!r})',
                p1.returncode == 0 and p2.returncode == 0)
        with open(os.path.join(tmp, 'w.safetensors'), 'rb') as f1, open(os.path.join(tmp, 'r.safetensors'), 'rb') as f2:
            ck.true('resumed run ends with the same OUT bytes as the uninterrupted one', f1.read() == f2.read())

        def strip(es):
            return [{k: v for k, v in e.items() if k != 'seconds'} for e in es]
        with open(os.path.join(tmp, 'r.jsonl')) as f:
            ck.eq('resumed log = uninterrupted log (but the timings)', strip(lines(f.read())), strip(epochs))
        p = cli('train', '--resume', 'r.ckpt.safetensors', '--batch', '8', '--epochs', '4', '-o', 'r.safetensors',
                cwd=tmp)
        fault(ck, 'resume with another --batch', p, 'differs from the checkpoint')
        p = cli('train', '--resume', 'w.safetensors', '-o', 'x.safetensors', cwd=tmp)
        fault(ck, 'resume from plain weights', p, 'not a checkpoint')

        # split check: the same pair twice, one copy held out -> overlap
        p = cli('train', '--arch', 'arch.json', 'a0.h5:t0.h5', 'a0.h5:t0.h5', '--test-pairs', '1', '--epochs', '1',
                '-o', 'o.safetensors', cwd=tmp)
        fault(ck, 'a pair given twice', p, 'overlaps training patch')
        ck.true('refused before any output', not os.path.exists(os.path.join(tmp, 'o.safetensors')))

        # one pair: a band of X; a manifest in aptomo dataset's format; a progress bar on a terminal
        os.makedirs(os.path.join(tmp, 'ds', 'ic-000'))
        os.rename(os.path.join(tmp, 'a2.h5'), os.path.join(tmp, 'ds', 'ic-000', 'approximant.h5'))
        os.rename(os.path.join(tmp, 't2.h5'), os.path.join(tmp, 'ds', 'ic-000', 'truth.h5'))
        with open(os.path.join(tmp, 'ds', 'dataset.json'), 'w') as f:
            json.dump({'seed': 1, 'pairs': [{'approximant': 'ic-000/approximant.h5', 'truth': 'ic-000/truth.h5',
                                             'seed': 7}]}, f)
        rc, term = run_pty(['train', '--init', 'w.safetensors', '--dataset', 'ds/dataset.json', *TRAIN, '--epochs',
                            '1', '-o', 'b.safetensors'], tmp)
        ck.eq('one pair from a manifest, on a terminal: exit', rc, 0)
        ck.true(f'progress bar with an ETA on the terminal ({term[-120:]!r})', 'epoch 1/1' in term and 'eta' in term)
        with open(os.path.join(tmp, 'pty-stdout.txt')) as f:
            got = lines(f.read())
        band = got[0]['split'].get('test_band_x')
        ck.eq('one pair: the test set is the band X >= 24 - round(0.2 * 24)', band, [19, 24])
        sd, meta = N.st_load(os.path.join(tmp, 'b.safetensors'))
        rec = json.loads(meta['aptomo.train'])
        ck.eq('the manifest pair is recorded by absolute path', rec['options']['pairs'][0][0],
              os.path.join(os.path.realpath(tmp), 'ds', 'ic-000', 'approximant.h5'))

        # bad inputs
        write_vol(os.path.join(tmp, 'tbad.h5'), np.zeros((16, 24, 24), np.float32))
        fault(ck, 'target not on the output grid', cli('train', '--arch', 'arch.json', 'a0.h5:tbad.h5', '-o',
                                                       'o.safetensors', cwd=tmp), 'must have that shape')
        fault(ck, 'missing file', cli('train', '--arch', 'arch.json', 'a0.h5:nope.h5', '-o', 'o.safetensors',
                                      cwd=tmp), 'nope.h5')
        fault(ck, 'no start', cli('train', 'a0.h5:t0.h5', '-o', 'o.safetensors', cwd=tmp), 'exactly one of')
        fault(ck, 'two starts', cli('train', '--arch', 'arch.json', '--init', 'w.safetensors', 'a0.h5:t0.h5', '-o',
                                    'o.safetensors', cwd=tmp), 'exactly one of')
        fault(ck, 'no data', cli('train', '--arch', 'arch.json', '-o', 'o.safetensors', cwd=tmp), 'no training data')
        fault(ck, 'pair without a colon', cli('train', '--arch', 'arch.json', 'a0.h5', '-o', 'o.safetensors',
                                              cwd=tmp), 'APPROX.h5:TARGET.h5')
        fault(ck, '--patch off the strides', cli('train', '--arch', 'arch.json', 'a0.h5:t0.h5', '--patch', '16,6,8',
                                                 '-o', 'o.safetensors', cwd=tmp), 'patch')
        fault(ck, '--test-pairs with one pair', cli('train', '--arch', 'arch.json', 'a0.h5:t0.h5', '--test-pairs',
                                                    '1', '-o', 'o.safetensors', cwd=tmp), 'at least 2 pairs')
        fault(ck, 'bad arch', cli('train', '--arch', 'a0.h5', 'a0.h5:t0.h5', '-o', 'o.safetensors', cwd=tmp),
              'a0.h5')
        with open(os.path.join(tmp, 'bad.json'), 'w') as f:
            json.dump({'pairs': [{'approximant': 'a0.h5'}]}, f)
        fault(ck, 'manifest pair without a truth', cli('train', '--arch', 'arch.json', '--dataset', 'bad.json', '-o',
                                                       'o.safetensors', cwd=tmp), 'pairs[0].truth')
        fault(ck, '--epochs 0', cli('train', '--arch', 'arch.json', 'a0.h5:t0.h5', '--epochs', '0', '-o',
                                    'o.safetensors', cwd=tmp), '--epochs')
        ck.true('no output from refused runs', not os.path.exists(os.path.join(tmp, 'o.safetensors')))
    return ck.done()


if __name__ == '__main__':
    sys.exit(1 if main() else 0)
