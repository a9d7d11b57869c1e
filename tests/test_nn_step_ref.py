"""test_nn_step_ref.py - `aptomo kernel nn-step` (K training steps: BatchNorm in training mode, NPCC, Adam) against
the independent PyTorch reference tests/nn_torch.py (nn_step: model.train(), NPCC, torch.optim.Adam), run in
float64 as the truth, on two small but structurally complete archs (stem, first and identity residual blocks, axial
bottleneck with heads > 1, decoder, head; stem_stride [2,1,1] like the full-size arch and [2,2,2]; patch
Z != Y != X), B = 2 and B = 1, K = 3 steps at lr 1e-3, /y a smooth nonlinear function of /x (the loss must fall).

Checked on OUT: every state_dict tensor (names, dtypes, shapes, no extras; num_batches_tracked = input + K, and
absent when the input had none), the loss list `aptomo.loss`, `aptomo.arch` / `aptomo.input` unchanged (byte for
byte; absent stays absent); byte-identical OUT for --threads 1 and 2 and on a rerun; bad input exits 2 naming the
dataset or option (/y of the wrong shape or batch, /y missing, NaN in /y, Inf in /x, --steps 0 / -1), no OUT.

Why the weights are "gated", and the tolerances (measured; `--self-check` runs the torch side alone with 8
float32 runs per case, inputs moved by one ulp at random, and prints how much of each bound they use):
  * Adam's first step is lr * sign(g), so K steps of two float32 codes agree only while they take the same
    decisions. With plain random weights they do not: among the ~10^5 ReLU inputs of a step one is typically within
    float32 rounding (~1e-6) of 0; whichever side a code lands on passes that voxel's gradient (1e-2..1e-1 of the
    largest) or not, Adam turns the difference into sign flips, and after 3 steps float32 torch is O(lr) away from
    float64 on most elements (measured: about half of 6 random cases per arch, at lr 1e-3, 1e-4 and 1e-5 alike).
    So every BatchNorm in front of a ReLU gets bias = +-GATE * weight per channel (channel c off iff c % 4 == 3):
    every ReLU input is far from 0 (asserted: >= MARGIN_MIN at every step of the float64 run; 2.9..3.2 here), both
    branches of every ReLU site are exercised, and the network is smooth except the stem's max pool. An off
    channel's parameters have exactly zero gradient ("dead": the exact update is 0, so |change| <= DEAD_TOL lr K;
    Adam moves an element with |g| << 1e-8 by ~lr |g| / 1e-8). A pool window whose two largest inputs are within
    TAU_POOL (2 lr: ~100x the float32 rounding of those inputs, and the drift of the stem's output when its loose
    elements move differently) may route its gradient to either voxel: for each such window the float64 run
    computes by one more backward how much that switch changes every parameter's gradient (|upstream gradient| *
    |d(difference of the two inputs)/d(parameter)|; only the stem's parameters see it) and adds it to their noise.
  * Parameters. Adam moves an element by lr * m^/(sqrt(v^) + eps) per step with |m^/sqrt(v^)| <= ~1, and a gradient
    error dg changes that by at most ~2 dg / sqrt(v^). Per element the bound is
    lr * sum_t min(2, 2 * noise_t / s_t) + 8 ulp(w): s_t = sqrt(v^_t) of the float64 gradients (Adam's own scale of
    the element at step t); noise_t = RHO * (the tensor's largest gradient) + GAMMA * (the network's largest) + the
    pool switches of steps <= t. Measured gradient error of float32 torch: 1e-6..7e-5 of the tensor's largest
    (1.3e-4 where the gradient is a small remainder of larger terms), so RHO = 5e-4; GAMMA = 1e-8 of the largest
    gradient of all covers those remainders (measured <= 3e-9). Where the allowance reaches 2 lr the update's sign
    is noise and only Adam's bound holds: those elements are "loose" and must stay under LOOSE_MAX of the live ones
    (measured 1.2..1.8 %, most in the stem). "Null" elements, whose float64 gradient stays below NULL of the largest
    (1e-21..1e-15 measured; the smallest real ones 1e-6), are zero in exact arithmetic (sim_bn.bias: a constant
    along the softmax axis; out_bn.bias of attn_z / attn_y and the biases of always-on BatchNorms in front of a
    1x1x1 conv: the next BatchNorm removes a constant; head.bn: NPCC ignores an affine map of the output) and get
    Adam's bound too, counted apart. Independently of the reference no element may move more than 1.01 lr K from
    the input (Adam's bound). Float32 torch uses at most 0.11 of the other (tight) bounds.
  * Running mean / var: |error| <= STAT_REL * (1 + max |value| of the tensor); float32 torch uses at most 0.06 of
    it. Loss (NPCC, in [-1, 1]): |error| <= LOSS_ABS; float32 torch uses at most 0.03.
  Measured on aptomo's trainer when this test was written: at most 0.11 of the tight parameter bounds (largest
  error 3e-3 lr, like float32 torch's 1e-3 lr), 0.08 of the running-stat bound, 0.18 of the loss bound.
  That the bounds catch real mistakes is checked on the torch side, judged exactly as the C output is: lr off by
  2 %, BatchNorm momentum 0.2, the biased batch variance in running_var, one NPCC over the whole batch instead of
  the mean of per-sample NPCCs, a ReLU backward that ignores the mask.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nn_torch as N  # noqa: E402

APTOMO = os.environ.get('APTOMO_BIN', 'aptomo')
torch.set_num_threads(2)
FAILS = []
LR, STEPS = 1e-3, 3
# the tolerances and their measurements: see the docstring
GATE, MARGIN_MIN, TAU_POOL = 8.0, 0.1, 2 * LR
RHO, GAMMA, NULL, LOOSE_MAX, DEAD_TOL = 5e-4, 1e-8, 1e-10, 0.03, 0.01
STAT_REL, LOSS_ABS = 5e-5, 1e-6

ARCH_1 = {'stem': 4, 'stem_stride': [2, 1, 1],
          'stages': [{'f0': 4, 'f1': 6, 'blocks': 2, 'stride': 1}, {'f0': 4, 'f1': 8, 'blocks': 2, 'stride': 2},
                     {'f0': 6, 'f1': 12, 'blocks': 1, 'stride': 2}],
          'axial': {'planes': 8, 'heads': 2, 'out': 10, 'size': [3, 2, 4]}, 'decoder': [8, 6, 4]}
ARCH_2 = {'stem': 5, 'stem_stride': [2, 2, 2],
          'stages': [{'f0': 3, 'f1': 6, 'blocks': 1, 'stride': 1}, {'f0': 4, 'f1': 8, 'blocks': 1, 'stride': 2},
                     {'f0': 6, 'f1': 12, 'blocks': 2, 'stride': 2}],
          'axial': {'planes': 12, 'heads': 3, 'out': 8, 'size': [2, 3, 4]}, 'decoder': [8, 6, 5]}
# tag, arch, B, seed (weights; data = seed + 10), file has num_batches_tracked, aptomo.input, determinism runs
CASES = (('1', ARCH_1, 2, 1, True, {'mean': 0.25, 'std': 1.5}, True),
         ('2', ARCH_2, 2, 2, False, None, True),
         ('2-B1', ARCH_2, 1, 3, True, None, False))
RELU_BNS = ('bn', 'bn1', 'bn2', 'bn3', 'proj_bn', 'bn_in', 'bn_out', 'shortcut_bn')


def check(cond, msg):
    print(('ok   ' if cond else 'FAIL ') + msg)
    if not cond:
        FAILS.append(msg)
    return cond


def shapes(arch):
    """(input patch, output) spatial shapes: patch = axial.size * stem stride * stage strides (NETWORK.md)."""
    ss, s0 = arch['stem_stride'], arch['stages'][0]['stride']
    prod = s0 * arch['stages'][1]['stride'] * arch['stages'][2]['stride']
    inp = tuple(arch['axial']['size'][i] * ss[i] * prod for i in range(3))
    return inp, tuple(2 * inp[i] // (ss[i] * s0) for i in range(3))


def make_data(arch, B, seed):
    """/x: smoothed unit-variance noise; /y: a smooth nonlinear function of /x resampled to the output shape."""
    g = torch.Generator().manual_seed(seed)
    inp, out = shapes(arch)
    x = F.avg_pool3d(torch.randn(B, 1, *inp, generator=g), 3, 1, 1, count_include_pad=False)
    x = (x - x.mean()) / x.std()
    u = F.interpolate(x, size=out, mode='trilinear', align_corners=False)
    return x.float(), (torch.sigmoid(3 * u) + 0.2 * u * u).float()


def gate(model):
    """Every BatchNorm in front of a ReLU: bias = +-GATE * weight, channel c off iff c % 4 == 3 (the head's one
    channel on; attn_x's out_bn channels 2n and 2n+1 share plane n's sign, as they are summed before the ReLU)."""
    def signs(n, pair=1):
        return torch.tensor([-1.0 if (c // pair) % 4 == 3 else 1.0 for c in range(n)])

    with torch.no_grad():
        for name, mod in model.named_modules():
            if name.split('.')[-1] in RELU_BNS and name != 'head.bn':
                mod.bias.copy_(signs(mod.bias.numel()) * GATE * mod.weight)
        ob = model.axial.attn_x.out_bn
        ob.bias.copy_(signs(ob.bias.numel(), 2) * GATE * ob.weight)
        model.head.bn.bias.copy_(GATE * model.head.bn.weight)
    return model


def window_top2(x):
    """Per 3x3x3 window (stride 1, padding 1) of x >= 0: the two largest values and their flat indices into x."""
    idx = torch.arange(x.numel(), dtype=x.dtype).reshape(x.shape)
    w, wi = (F.pad(t, (1,) * 6, value=-1.0).unfold(2, 3, 1).unfold(3, 3, 1).unfold(4, 3, 1).reshape(*x.shape, 27)
             for t in (x, idx))
    v, k = w.topk(2, dim=-1)
    return v, wi.gather(-1, k).long()


class Decisions:
    """Watches a float64 nn_step (nn_torch.OBSERVERS): the smallest |ReLU input| per step, and per step and parameter
    the most the switchable max-pool windows (two largest inputs within TAU_POOL) could change its gradient."""

    def __init__(self):
        self.margin, self.switch, self.windows, self.pending = [], [], [], []

    def observe(self, kind, x, y):
        if kind == 'step':
            self.margin.append(float('inf'))
            self.pending = []
        elif kind == 'relu':
            self.margin[-1] = min(self.margin[-1], float(x.detach().abs().min()))
        else:
            v, ix = window_top2(x.detach())
            near = ((v[..., 0] > 0) & (v[..., 0] - v[..., 1] < TAU_POOL)).flatten().nonzero().flatten()
            if len(near):
                y.retain_grad()
                self.pending.append((x, y, near, ix.reshape(-1, 2)[near]))

    def probe(self, t, model):
        named = list(model.named_parameters())
        acc = {n: torch.zeros_like(p) for n, p in named}
        count = 0
        for x, y, near, pair in self.pending:
            xf, gy = x.flatten(), y.grad.flatten()
            for j, w in enumerate(near.tolist()):
                u = abs(float(gy[w]))
                if u == 0:
                    continue
                jac = torch.autograd.grad(xf[pair[j, 0]] - xf[pair[j, 1]], [p for _, p in named],
                                          retain_graph=True, allow_unused=True)
                count += 1
                for (n, _), g in zip(named, jac):
                    if g is not None:
                        acc[n] += u * g.abs()
        self.switch.append(acc)
        self.windows.append(count)


def truth(model, x, y):
    """The float64 run: state, losses, gradients per step, ReLU margins, pool switches."""
    d = Decisions()
    m = N.as_dtype(model, torch.float64)
    N.OBSERVERS.append(d.observe)
    try:
        losses, grads = N.nn_step(m, x, y, LR, STEPS, record_grads=True, probe=d.probe)
    finally:
        N.OBSERVERS.remove(d.observe)
    return {'loss': losses, 'grad': grads, 'sd': {n: t.detach().clone() for n, t in m.state_dict().items()},
            'sd0': {n: t.detach().clone() for n, t in model.state_dict().items()}, 'dec': d}


def bounds(r):
    """Per-element parameter bounds and the loose / null / dead masks (docstring)."""
    grads, sw = r['grad'], r['dec'].switch
    gmax = {n: max(float(g[n].abs().max()) for g in grads) for n in grads[0]}
    gall = max(gmax.values())
    b = {'param': {}, 'loose': {}, 'null': {}, 'dead': {}}
    for n in grads[0]:
        v = torch.zeros_like(grads[0][n])
        allow, extra, top = torch.zeros_like(v), torch.zeros_like(v), torch.zeros_like(v)
        loose = torch.zeros(v.shape, dtype=torch.bool)
        for t, g in enumerate(grads, 1):
            v = 0.999 * v + 0.001 * g[n] * g[n]
            s = torch.sqrt(v / (1 - 0.999 ** t))
            extra += sw[t - 1][n]
            a = torch.clamp(2 * (RHO * gmax[n] + GAMMA * gall + extra) / torch.clamp(s, min=1e-300), max=2.0)
            loose |= a >= 2
            allow += a
            top = torch.maximum(top, g[n].abs())
        dead, null = top == 0, (top > 0) & (top < NULL * gall)
        ulp = torch.from_numpy(np.spacing(np.abs(r['sd'][n].numpy()).astype(np.float32)).astype(np.float64))
        b['param'][n] = torch.where(dead, torch.full_like(v, DEAD_TOL * LR * STEPS), LR * allow + 8 * ulp)
        b['loose'][n], b['null'][n], b['dead'][n] = loose & ~dead & ~null, null, dead
    return b


def compare(tag, sd, losses, r, b, show=8):
    """Candidate state dict + losses vs the float64 truth; prints the use of each bound, returns what is over."""
    bad, worst, worst_tight, n_loose, n_null, n_dead, total, dead_move = [], (0.0, ''), (0.0, ''), 0, 0, 0, 0, 0.0
    for n, bound in b['param'].items():
        c = sd[n].double()
        err = (c - r['sd'][n]).abs()
        ratio = err / bound
        if float(ratio.max()) > worst[0]:
            worst = (float(ratio.max()), n)
        tight = ~(b['loose'][n] | b['null'][n] | b['dead'][n])
        if tight.any() and float(ratio[tight].max()) > worst_tight[0]:
            worst_tight = (float(ratio[tight].max()), n)
        total += err.numel()
        n_loose += int(b['loose'][n].sum())
        n_dead += int(b['dead'][n].sum())
        n_null += int(b['null'][n].sum())
        if b['dead'][n].any():
            dead_move = max(dead_move, float(err[b['dead'][n]].max()))
        if float(ratio.max()) > 1:
            i = int(ratio.argmax())
            what = 'dead ' if bool(b['dead'][n].flatten()[i]) else ''
            bad.append(f'{n}: {what}element {i} off by {float(err.flatten()[i]) / LR:.3g} lr > bound '
                       f'{float(bound.flatten()[i]) / LR:.3g} lr (max error {float(err.max()) / LR:.3g} lr; '
                       f'{int((ratio > 1).sum())}/{err.numel()} elements over)')
        move = float((c - r['sd0'][n].double()).abs().max())
        if move > 1.01 * LR * STEPS:
            bad.append(f'{n}: moved {move / LR:.3g} lr from the input, over Adam\'s bound {1.01 * STEPS:.3g} lr')
    stat_worst = (0.0, '')
    for n, t in r['sd'].items():
        if 'running_' not in n:
            continue
        err = float((sd[n].double() - t).abs().max())
        bound = STAT_REL * (1 + float(t.abs().max()))
        if err / bound > stat_worst[0]:
            stat_worst = (err / bound, n)
        if err > bound:
            bad.append(f'{n}: max error {err:.3g} > bound {bound:.3g} (max |value| {float(t.abs().max()):.3g})')
    lerr = [abs(p - q) for p, q in zip(losses, r['loss'])]
    if len(losses) != len(r['loss']) or max(lerr) > LOSS_ABS:
        bad.append(f'losses {losses} vs float64 {r["loss"]}: errors {lerr} > {LOSS_ABS}')
    live = total - n_dead - n_null
    print(f'     [{tag}] params: worst {worst[0]:.3g} of the bound ({worst[1]}), of a tight bound '
          f'{worst_tight[0]:.3g} ({worst_tight[1]}); loose {n_loose}/{live} = {n_loose / live:.2%} of the live '
          f'elements; null {n_null}; dead {n_dead}, moved <= {dead_move / LR:.2g} lr; running stats: worst '
          f'{stat_worst[0]:.3g} of the bound ({stat_worst[1]}); loss errors {", ".join(f"{e:.2g}" for e in lerr)} '
          f'({max(lerr) / LOSS_ABS:.2g} of the bound)')
    for m in bad[:show]:
        print('       ' + m)
    return bad, n_loose / live, worst[0], worst_tight[0], stat_worst[0], max(lerr) / LOSS_ABS


def st_header(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        return json.loads(f.read(n))


def run(*args):
    p = subprocess.run([APTOMO, 'kernel', *map(str, args)], capture_output=True, text=True, timeout=600)
    return p.returncode, p.stderr.strip()


def write_h5(path, **dsets):
    with h5py.File(path, 'w') as f:
        for k, v in dsets.items():
            f[k] = v.numpy() if isinstance(v, torch.Tensor) else v


def float32_run(model, x, y, member=0):
    """Float32 torch on x perturbed by one ulp at random (member > 0): one more float32 code, rounding elsewhere."""
    if member:
        g = torch.Generator().manual_seed(1000 + member)
        s = torch.randint(-1, 2, x.shape, generator=g).float()
        x = torch.from_numpy(np.nextafter(x.numpy(), (x + s * 1e9).numpy()).astype(np.float32))
    m = N.as_dtype(model, torch.float32)
    losses, _ = N.nn_step(m, x, y, LR, STEPS)
    return m.state_dict(), losses


def torch_side(tag, arch, B, seed, members):
    model = gate(N.randomize(N.APTNet(arch), seed))
    x, y = make_data(arch, B, seed + 10)
    r = truth(model, x, y)
    b = bounds(r)
    d = r['dec']
    check(min(d.margin) >= MARGIN_MIN, f'[{tag}] every ReLU input of the float64 run at least {MARGIN_MIN} from 0 '
                                       f'(per step: {", ".join(f"{v:.2f}" for v in d.margin)}); switchable pool '
                                       f'windows per step: {d.windows}')
    check(all(r['loss'][i + 1] < r['loss'][i] for i in range(STEPS - 1)), f'[{tag}] reference loss falls: '
                                                                           f'{[round(v, 5) for v in r["loss"]]}')
    use = []
    for k in range(members):
        bad, loose, *u = compare(f'{tag} float32 torch #{k}', *float32_run(model, x, y, k), r, b)
        use.append(u)
        check(not bad and loose < LOOSE_MAX, f'[{tag}] float32 torch #{k} within the bounds, loose {loose:.2%} < '
                                             f'{LOOSE_MAX:.0%}')
    if members > 1:
        print(f'     [{tag}] largest use of the bounds over {members} float32 runs: parameters '
              f'{max(u[0] for u in use):.3g} (tight ones {max(u[1] for u in use):.3g}), running stats '
              f'{max(u[2] for u in use):.3g}, losses {max(u[3] for u in use):.3g}')
    return model, x, y, r, b


class NoMask(torch.autograd.Function):
    """ReLU whose backward ignores the mask (a fault)."""
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g


def faults(model, x, y, r, b):
    """The bounds must reject real mistakes, judged exactly as the C output is."""
    def global_npcc(out, t):
        return N.npcc(out.reshape(1, -1), t.reshape(1, -1))

    tries = [('lr 2 % high', dict(lr=LR * 1.02)), ('BatchNorm momentum 0.2', dict(momentum=0.2)),
             ('biased running_var', dict(biased=True)), ('one NPCC over the batch', dict(loss_fn=global_npcc)),
             ('ReLU backward without its mask', dict(nomask=True))]
    for what, kw in tries:
        mom, biased, nomask = kw.pop('momentum', None), kw.pop('biased', False), kw.pop('nomask', False)
        m = N.as_dtype(model, torch.float32)
        bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
        seen = []
        hooks = [mod.register_forward_hook(lambda mod, i, o: seen.append((mod, i[0].detach()))) for mod in bns]
        if mom is not None:
            for mod in bns:
                mod.momentum = mom
        saved = N.relu
        if nomask:
            N.relu = NoMask.apply
        try:
            losses, _ = N.nn_step(m, x, y, kw.pop('lr', LR), STEPS, **kw)
        finally:
            N.relu = saved
        for h in hooks:
            h.remove()
        if biased:  # running_var is linear in the batch variances: swap in the biased ones afterwards
            for k, (mod, xin) in enumerate(seen):
                later = sum(1 for mm, _ in seen[k + 1:] if mm is mod)
                n = xin.numel() / xin.shape[1]
                var = xin.transpose(0, 1).reshape(xin.shape[1], -1).var(dim=1, unbiased=True)
                with torch.no_grad():
                    mod.running_var.sub_(mod.momentum * (1 - mod.momentum) ** later * var / n)
        bad, *_ = compare('fault: ' + what, m.state_dict(), losses, r, b, show=2)
        check(bool(bad), f'fault "{what}" is caught ({len(bad)} items over their bounds)')


def c_side(tag, arch, model, x, y, r, b, with_count, input_meta, determinism, tmp):
    w, xin = os.path.join(tmp, f'w{tag}.safetensors'), os.path.join(tmp, f'in{tag}.h5')
    N.export(model, w, input_meta=input_meta, omit_count=not with_count)
    write_h5(xin, x=x, y=y)
    out = os.path.join(tmp, f'out{tag}.safetensors')
    rc, err = run('nn-step', '--threads', 2, '--lr', LR, '--steps', STEPS, w, xin, out)
    if not check(rc == 0, f'[{tag}] nn-step exits 0 ({err})'):
        return
    sd, meta = N.st_load(out)
    hdr = st_header(out)
    hdr.pop('__metadata__', None)
    want = {n for n in r['sd'] if with_count or not n.endswith('num_batches_tracked')}
    check(set(sd) == want, f'[{tag}] OUT holds exactly the state_dict tensors (missing '
                           f'{sorted(want - set(sd))[:4]}, extra {sorted(set(sd) - want)[:4]})')
    shapes_ok = all(list(hdr[n]['shape']) == list(r['sd'][n].shape) and
                    hdr[n]['dtype'] == ('I64' if n.endswith('num_batches_tracked') else 'F32')
                    for n in want & set(sd))
    check(shapes_ok, f'[{tag}] every tensor has its state_dict shape and dtype (F32, I64 for the counts)')
    if with_count:
        counts = {int(sd[n]) for n in sd if n.endswith('num_batches_tracked')}
        check(counts == {7 + STEPS}, f'[{tag}] num_batches_tracked 7 -> {counts} (want {7 + STEPS})')
    in_meta = st_header(w)['__metadata__']
    check(meta.get('aptomo.arch') == in_meta['aptomo.arch'], f'[{tag}] aptomo.arch unchanged')
    check(meta.get('aptomo.input') == in_meta.get('aptomo.input'),
          f'[{tag}] aptomo.input unchanged ({meta.get("aptomo.input")!r})')
    try:
        losses = json.loads(meta['aptomo.loss'])
        ok = isinstance(losses, list) and len(losses) == STEPS and \
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in losses)
    except (KeyError, ValueError):
        losses, ok = None, False
    if not check(ok, f'[{tag}] aptomo.loss is a JSON list of {STEPS} numbers ({meta.get("aptomo.loss")!r})'):
        return
    if set(sd) != want or not shapes_ok:
        return
    full = dict(r['sd'])
    full.update(sd)
    bad, loose, *_ = compare(tag + ' C', full, losses, r, b)
    check(not bad, f'[{tag}] C within the bounds of every parameter, running stat and loss')
    if determinism:
        raw = open(out, 'rb').read()
        for threads, name in ((1, 'a'), (2, 'b')):
            o2 = os.path.join(tmp, f'out{tag}{name}.safetensors')
            rc, err = run('nn-step', '--threads', threads, '--lr', LR, '--steps', STEPS, w, xin, o2)
            same = rc == 0 and open(o2, 'rb').read() == raw
            check(same, f'[{tag}] --threads {threads} gives the same bytes as the first run (--threads 2)'
                        f'{"" if rc == 0 else " (exit %d: %s)" % (rc, err)}')


def errors(tmp):
    """Bad input: exit 2 naming the dataset or option, and no OUT."""
    w = os.path.join(tmp, 'we.safetensors')
    N.export(N.randomize(N.APTNet(ARCH_1), 4), w)
    x, y = make_data(ARCH_1, 2, 5)
    inp, _ = shapes(ARCH_1)
    xin, out = os.path.join(tmp, 'bad.h5'), os.path.join(tmp, 'bad.safetensors')
    yn, xi = y.clone(), x.clone()
    yn[1, 0, 3, 4, 5] = float('nan')
    xi[0, 0, 1, 2, 3] = float('inf')
    bads = [('/y of the input shape', dict(x=x, y=torch.zeros(2, 1, *inp)), [], '/y'),
            ('/y with another batch', dict(x=x, y=y[:1]), [], '/y'),
            ('/y missing', dict(x=x), [], '/y'),
            ('NaN in /y', dict(x=x, y=yn), [], '/y'),
            ('Inf in /x', dict(x=xi, y=y), [], '/x'),
            ('--steps 0', dict(x=x, y=y), ['--steps', 0], '--steps'),
            ('--steps -1', dict(x=x, y=y), ['--steps', -1], '--steps')]
    for what, d, opts, name in bads:
        write_h5(xin, **d)
        if os.path.exists(out):
            os.remove(out)
        rc, err = run('nn-step', *opts, w, xin, out)
        check(rc == 2 and name in err and not os.path.exists(out),
              f'{what}: exit {rc} (want 2) naming {name}, no OUT: {err}')


def main():
    self_check = '--self-check' in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        for tag, arch, B, seed, with_count, input_meta, determinism in CASES:
            inp, out = shapes(arch)
            print(f'case {tag}: stem_stride {arch["stem_stride"]}, B {B}, /x {inp}, /y {out}, '
                  f'num_batches_tracked {"present" if with_count else "absent"}')
            model, x, y, r, b = torch_side(tag, arch, B, seed, 8 if self_check else 1)
            if tag == '1':
                faults(model, x, y, r, b)
            if not self_check:
                c_side(tag, arch, model, x, y, r, b, with_count, input_meta, determinism, tmp)
        if not self_check:
            errors(tmp)
    print(f'{len(FAILS)} failed')
    return 1 if FAILS else 0


if __name__ == '__main__':
    sys.exit(main())
