"""nn_torch.py - independent PyTorch reference of docs/NETWORK.md (module names = state_dict names) and a
pure-python safetensors reader/writer (JSON header + raw little-endian bytes; the safetensors package is not
installed). Used by tests/test_nn_ref.py to cross-check `aptomo kernel nn-forward` / `nn-init`, and (nn_step: the
training step of docs/NETWORK.md "Training") by tests/test_nn_step_ref.py to cross-check `aptomo kernel nn-step`."""
import copy
import json
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# Functions f(kind, x, y) called for every ReLU ('relu': y = relu(x)) and max pool ('pool': y = pool(x)) of a
# forward, and f('step', t, None) at the start of nn_step's step t: the step test measures with them how close a
# run comes to the switches of the network's piecewise-linear decisions, and what a switch would change.
OBSERVERS = []


def relu(x):
    y = F.relu(x)
    for f in OBSERVERS:
        f('relu', x, y)
    return y


class Stem(nn.Module):
    def __init__(self, c, stride):
        super().__init__()
        self.conv = nn.Conv3d(1, c, 7, stride=tuple(stride), padding=3, bias=False)
        self.bn = nn.BatchNorm3d(c)
        self.pool = nn.MaxPool3d(3, stride=1, padding=1)

    def forward(self, x):
        y = relu(self.bn(self.conv(x)))
        p = self.pool(y)
        for f in OBSERVERS:
            f('pool', y, p)
        return p


class Block(nn.Module):
    def __init__(self, cin, f0, f1, stride, first):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, f0, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(f0)
        self.conv2 = nn.Conv3d(f0, f0, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(f0)
        self.conv3 = nn.Conv3d(f0, f1, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm3d(f1)
        self.first = first
        if first:
            self.proj = nn.Conv3d(cin, f1, 3, stride=stride, padding=1, bias=False)
            self.proj_bn = nn.BatchNorm3d(f1)

    def forward(self, x):
        y = relu(self.bn1(self.conv1(x)))
        y = relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return relu(y + (self.proj_bn(self.proj(x)) if self.first else x))


class AxialAttention(nn.Module):
    """Axial-DeepLab attention along one spatial axis (2 = Z, 3 = Y, 4 = X of NCDHW), exactly as docs/NETWORK.md."""

    def __init__(self, planes, heads, K, dim):
        super().__init__()
        self.P, self.G, self.K, self.dim = planes, heads, K, dim
        self.gp = planes // heads
        self.qkv = nn.Conv1d(planes, 2 * planes, 1, bias=False)
        self.qkv_bn = nn.BatchNorm1d(2 * planes)
        self.relative = nn.Parameter(torch.randn(2 * self.gp, 2 * K - 1) * (1.0 / self.gp) ** 0.5)
        self.sim_bn = nn.BatchNorm2d(3 * heads)
        self.out_bn = nn.BatchNorm1d(2 * planes)

    def forward(self, x):
        B, C, D, H, W = x.shape
        perm = {2: (0, 3, 4, 1, 2), 3: (0, 2, 4, 1, 3), 4: (0, 2, 3, 1, 4)}[self.dim]
        xp = x.permute(*perm).contiguous()
        o1, o2 = xp.shape[1], xp.shape[2]
        K = xp.shape[-1]
        xb = xp.reshape(B * o1 * o2, C, K)
        Bp, G, gp = xb.shape[0], self.G, self.gp
        qkv = self.qkv_bn(self.qkv(xb)).reshape(Bp, G, 2 * gp, K)
        q, k, v = torch.split(qkv, [gp // 2, gp // 2, gp], dim=2)
        idx = torch.arange(K)[:, None] - torch.arange(K)[None, :] + K - 1
        E = self.relative[:, idx]
        Eq, Ek, Ev = torch.split(E, [gp // 2, gp // 2, gp], dim=0)
        qr = torch.einsum('bgci,cij->bgij', q, Eq)
        kr = torch.einsum('bgci,cij->bgij', k, Ek).transpose(2, 3)
        qk = torch.einsum('bgci,bgcj->bgij', q, k)
        s = self.sim_bn(torch.cat([qk, qr, kr], dim=1)).reshape(Bp, 3, G, K, K).sum(1)
        s = F.softmax(s, dim=3)
        sv = torch.einsum('bgij,bgcj->bgci', s, v)
        sve = torch.einsum('bgij,cij->bgci', s, Ev)
        o = self.out_bn(torch.cat([sv, sve], dim=-1).reshape(Bp, 2 * self.P, K)).reshape(Bp, self.P, 2, K).sum(2)
        o = o.reshape(B, o1, o2, self.P, K)
        inv = {2: (0, 3, 4, 1, 2), 3: (0, 3, 1, 4, 2), 4: (0, 3, 1, 2, 4)}[self.dim]
        return o.permute(*inv).contiguous()


class Axial(nn.Module):
    def __init__(self, cin, planes, heads, out, size):
        super().__init__()
        self.conv_in = nn.Conv3d(cin, planes, 1, bias=False)
        self.bn_in = nn.BatchNorm3d(planes)
        self.attn_z = AxialAttention(planes, heads, size[0], 2)
        self.attn_y = AxialAttention(planes, heads, size[1], 3)
        self.attn_x = AxialAttention(planes, heads, size[2], 4)
        self.conv_out = nn.Conv3d(planes, out, 1, bias=False)
        self.bn_out = nn.BatchNorm3d(out)
        self.shortcut = nn.Conv3d(cin, out, 1, bias=False)
        self.shortcut_bn = nn.BatchNorm3d(out)

    def forward(self, x):
        y = relu(self.bn_in(self.conv_in(x)))
        y = relu(self.attn_x(self.attn_y(self.attn_z(y))))
        return relu(self.bn_out(self.conv_out(y)) + self.shortcut_bn(self.shortcut(x)))


class Dec(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(cout)

    def forward(self, x):
        return F.interpolate(relu(self.bn(self.conv(x))), scale_factor=2, mode='nearest')


class Head(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.conv = nn.Conv3d(cin, 1, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(1)

    def forward(self, x):
        return relu(self.bn(self.conv(x)))


class APTNet(nn.Module):
    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        self.stem = Stem(arch['stem'], arch['stem_stride'])
        cin = arch['stem']
        for s, st in enumerate(arch['stages']):
            blocks = nn.ModuleList()
            for b in range(st['blocks']):
                blocks.append(Block(cin if b == 0 else st['f1'], st['f0'], st['f1'], st['stride'] if b == 0 else 1,
                                    b == 0))
            setattr(self, f'enc{s}', blocks)
            cin = st['f1']
        ax = arch['axial']
        self.axial = Axial(cin, ax['planes'], ax['heads'], ax['out'], ax['size'])
        cin = ax['out']
        for i, d in enumerate(arch['decoder']):
            setattr(self, f'dec{i}', Dec(cin, d))
            cin = d
        self.head = Head(cin)

    def forward(self, x):
        x = self.stem(x)
        skips = []
        for s in range(3):
            for blk in getattr(self, f'enc{s}'):
                x = blk(x)
            skips.append(x)
        x = self.axial(x)
        x = self.dec0(x) + skips[1]
        x = self.dec1(x) + skips[0]
        x = self.dec2(x)
        return self.head(x)


def randomize(model, seed):
    """Non-trivial weights everywhere: BN affine and running stats random so a wrong fold or order shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('relative'):
                p.copy_(torch.randn(p.shape, generator=g) * 0.25)
            elif p.dim() >= 3:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif name.endswith('weight'):
                p.copy_(0.6 + 0.8 * torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.2 * torch.randn(b.shape, generator=g))
            elif name.endswith('running_var'):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
            elif name.endswith('num_batches_tracked'):
                b.fill_(7)
    return model


_DT = {'F32': (np.float32, 4), 'I64': (np.int64, 8)}


def st_save(path, tensors, metadata=None, omit_count=False):
    """tensors: dict name -> torch tensor / ndarray (float32 or int64)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header['__metadata__'] = metadata
    for name, t in tensors.items():
        if omit_count and name.endswith('num_batches_tracked'):
            continue
        a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        dt = 'I64' if a.dtype == np.int64 else 'F32'
        a = np.ascontiguousarray(a.astype(_DT[dt][0]).astype('<' + _DT[dt][0]().dtype.str[1:]))
        b = a.tobytes()
        header[name] = {'dtype': dt, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def st_load(path):
    """-> (dict name -> torch tensor, metadata dict)."""
    with open(path, 'rb') as f:
        raw = f.read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop('__metadata__', {})
    data, out = raw[8 + n:], {}
    for name, e in header.items():
        b, end = e['data_offsets']
        a = np.frombuffer(data[b:end], dtype='<' + ('f4' if e['dtype'] == 'F32' else 'i8')).reshape(e['shape'])
        out[name] = torch.from_numpy(a.copy())
    return out, meta


def npcc(out, y):
    """NPCC loss: per sample -sum(a b)/sqrt(sum(a^2) sum(b^2)) of the centred voxels, mean over the batch."""
    a = out.reshape(out.shape[0], -1)
    b = y.reshape(y.shape[0], -1)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (-(a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1))).mean()


def as_dtype(model, dtype):
    """An independent copy of model with its floating-point tensors in dtype (torch.float64: the "exact" reference);
    num_batches_tracked stays int64."""
    m = copy.deepcopy(model)
    return m.to(dtype)


def nn_step(model, x, y, lr=2e-4, steps=1, record_grads=False, loss_fn=npcc, probe=None):
    """`steps` training steps of docs/NETWORK.md on the whole batch (x [B,1,Z,Y,X], y the output shape), in place:
    BatchNorm in training mode (batch statistics; running stats momentum 0.1, unbiased variance; num_batches_tracked
    += 1), NPCC, torch.optim.Adam (betas 0.9/0.999, eps 1e-8, no weight decay, fresh state), constant lr.
    Returns (losses before each update, [per step {name: gradient}] if record_grads else None). x and y are cast
    to the model's dtype; loss_fn only differs in tests that check a wrong loss is caught; probe(t, model), if given,
    runs after each backward with the graph still alive."""
    dtype = next(model.parameters()).dtype
    x, y = x.to(dtype), y.to(dtype)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    losses, grads = [], [] if record_grads else None
    for t in range(steps):
        for f in OBSERVERS:
            f('step', t, None)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward(retain_graph=probe is not None)
        if probe is not None:
            probe(t, model)
        losses.append(float(loss))
        if record_grads:
            grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
        opt.step()
    return losses, grads


def export(model, path, input_meta=None, omit_count=False):
    meta = {'aptomo.arch': json.dumps(model.arch)}
    if input_meta is not None:
        meta['aptomo.input'] = json.dumps(input_meta)
    st_save(path, model.state_dict(), meta, omit_count)
