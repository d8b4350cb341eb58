# test_methods.py — the contrastive methods attached to an encoder
# (models/methods.c) against PyTorch references written from each method's
# definition (facebookresearch/moco's builder and CIFAR demo, SupContrast's
# SupConLoss, byol-pytorch, the SimCLR and SimSiam papers). The contra graph
# runs in the reference interpreter (tests/c/method_ref.c); both sides start
# from the same weights, heads, queue and views, and one step must agree on
# the loss, every parameter gradient, the momentum/EMA-updated key/target
# parameters, the BatchNorm statistics of both encoders and the queue with
# its pointer. Also the queue ring wrap-around and the bad-input errors.
import subprocess

import numpy as np
import pytest

B = 4
SIZE = 8


def _exe(build_dir):
    exe = build_dir / "tests" / "method_ref"
    if not exe.exists():
        pytest.skip(f"{exe} is missing: build it first")
    return exe


def _tiny():
    import torch
    from torch import nn

    class Tiny(nn.Module):
        """A small ResNet-like encoder: conv-BN-ReLU twice, global pool, fc classifier."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 12, 3, 2, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(12)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(12, 10)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.bn2(self.conv2(x)))
            return self.fc(torch.flatten(self.pool(x), 1))

    torch.manual_seed(0)
    m = Tiny()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                mod.running_var.copy_(1.0 + 0.2 * torch.rand(n, generator=g))
                mod.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=g))
                mod.bias.copy_(0.1 * torch.randn(n, generator=g))
    return m


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    import torch
    path = tmp_path_factory.mktemp("enc") / "tiny.onnx"
    m = _tiny().eval()
    with torch.no_grad():
        torch.onnx.export(m, torch.zeros(2, 3, SIZE, SIZE), str(path), opset_version=13, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    return path


def _body():
    """The encoder without its classifier (what contra cuts at the representation layer)."""
    import torch
    m = _tiny()
    m.fc = torch.nn.Identity()
    return m


def _run(build_dir, tmp_path, enc, preset, opts, ins, sets, steps=1, expect_fail=False):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    if preset.startswith("moco"):  # the presets' 8 BatchNorm splits do not divide these small batches
        opts = dict({"splits": 1}, **opts)
    cmd = [str(_exe(build_dir)), str(enc), str(out), "--preset", preset] + [f"{k}={v}" for k, v in opts.items()]
    for k, v in ins.items():
        f = tmp_path / f"in_{k}.npy"
        np.save(f, v)
        cmd += ["--in", k, str(f)]
    for k, v in sets.items():
        f = tmp_path / ("set_" + k.replace("/", "_") + ".npy")
        np.save(f, np.ascontiguousarray(v))
        cmd += ["--set", k, str(f)]
    cmd += ["--steps", str(steps)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if expect_fail:
        return p
    assert p.returncode == 0, p.stderr[-4000:]
    r = {"loss": [], "grad": {}, "state": {}, "init": {}}
    for line in p.stdout.split("\n"):
        f = line.split()
        if not f:
            continue
        if f[0] == "loss":
            r["loss"].append(float(np.load(out / f"loss{f[1]}.npy")))
        elif f[0] in ("grad", "state", "init"):
            r[f[0]][f[2]] = np.load(out / f"{f[0]}{f[1]}.npy")
    return r


def _check_loss(got, ref):
    # relative 1e-4, with an absolute floor for losses near 0 (a tiny head at T 0.05)
    assert abs(got - ref) <= 1e-4 * abs(ref) + 1e-6, (got, ref)


def _check_losses(got, ref, scale=0.0):
    # scale: for losses that are means of cosines (SimSiam: in [-1, 1]) and cross near 0, the error is
    # measured against max(|loss|, scale)
    bad = [s for s in range(len(ref)) if abs(got[s] - ref[s]) > 1e-4 * max(abs(ref[s]), scale) + 1e-6]
    assert not bad, f"steps {bad}: contra {got}, PyTorch {ref}"


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _check_grads(grads, named_params, tol=1e-3):
    params = {k: v for k, v in named_params if v.grad is not None}
    assert set(grads) == set(params), (sorted(set(params) - set(grads)), sorted(set(grads) - set(params)))
    floor = 1e-3 * max(float(np.max(np.abs(v.grad.numpy()))) for v in params.values())
    worst = max((float(np.max(np.abs(grads[k] - v.grad.numpy()))) /
                 max(float(np.max(np.abs(v.grad.numpy()))), floor), k) for k, v in params.items())
    assert worst[0] <= tol, f"worst gradient: {worst[1]} relative error {worst[0]:.3g}"
    return worst


def _check_states(states, ref, tol=1e-4):
    missing = sorted(set(ref) - set(states))
    assert not missing, f"contra has no state update for {missing}"
    # relative to the tensor's largest value, floored at 1e-3: a BatchNorm mean that is 0 in exact arithmetic
    # (a bias-free Linear after an affine-free BatchNorm, as in SimSiam's predictor) is ~1e-9 of noise
    worst = max((float(np.max(np.abs(states[k] - np.asarray(ref[k])))) / max(float(np.max(np.abs(ref[k]))), 1e-3),
                 k) for k in ref)
    assert worst[0] <= tol, f"worst state: {worst[1]} relative error {worst[0]:.3g}"
    return worst


def _load(module, values, prefix=""):
    """Copy contra-named tensors (prefix + state_dict key) into a torch module."""
    import torch
    sd = module.state_dict()
    n = 0
    for k in sd:
        if prefix + k in values:
            sd[k] = torch.from_numpy(np.array(values[prefix + k]))
            n += 1
    module.load_state_dict(sd)
    return n


def _split_bn(module, splits):
    from test_autodiff import _swap_split_bn
    if splits > 1:
        _swap_split_bn(module, splits)


def _bn_buffers(module, prefix=""):
    return {prefix + k: v.detach().numpy().copy() for k, v in module.named_buffers()
            if k.endswith("running_mean") or k.endswith("running_var")}


def _views(seed, n=2, batch=B):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32) for _ in range(n)]


def _rand_like(rng, a, scale=0.1):
    return (np.asarray(a) + scale * rng.standard_normal(np.shape(a))).astype(np.float32)


# ---------------------------------------------------------------- MoCo

def _cname(k):
    """contra's name of a torch state_dict key of a _net: encoder tensors keep their ONNX names."""
    return k[4:] if k.startswith("enc.") else k


def _mlp(spec, d):
    """torch.nn.Sequential of a head spec: (dims, bn_hidden, bias_hidden, bias_last, last_bn)."""
    from torch import nn
    dims, bn_hidden, bias_hidden, bias_last, last_bn = spec
    layers, prev = [], d
    for i, w in enumerate(dims):
        last = i == len(dims) - 1
        layers.append(nn.Linear(prev, w, bias=bias_last if last else bias_hidden))
        bn = last_bn if last else (1 if bn_hidden else 0)
        if bn:
            layers.append(nn.BatchNorm1d(w, affine=bn == 1))
        if not last:
            layers.append(nn.ReLU())
        prev = w
    return nn.Sequential(*layers)


def _net(d=12, splits=1, **parts):
    import torch
    net = torch.nn.Module()
    net.enc = _body()
    _split_bn(net.enc, splits)
    prev = d
    for name, spec in parts.items():  # each part reads the previous one's output (projector -> predictor)
        if name == "predictor":
            prev = prev_out
        setattr(net, name, _mlp(spec, prev))
        prev_out = spec[0][-1]
    torch.manual_seed(3)
    for name in parts:
        for mod in getattr(net, name).modules():
            if isinstance(mod, torch.nn.Linear):
                mod.reset_parameters()
            if isinstance(mod, torch.nn.BatchNorm1d) and mod.affine:
                with torch.no_grad():
                    mod.weight.uniform_(0.8, 1.2)
                    mod.bias.uniform_(-0.1, 0.1)
    return net


class _MoCoNet(object):
    @staticmethod
    def make(head_dims, d=12, splits=1):
        return _net(d, splits, head=(head_dims, False, True, True, 0))


def _moco_named(net):
    """(contra name, tensor) pairs of the trainable parameters."""
    return [(_cname(k), v) for k, v in net.named_parameters()]


def _moco_load(net, values, prefix=""):
    import torch
    sd = net.state_dict()
    n = 0
    for k in sd:
        if prefix + _cname(k) in values:
            sd[k] = torch.from_numpy(np.array(values[prefix + _cname(k)]))
            n += 1
    net.load_state_dict(sd)
    return n


def _buffers(net, prefix=""):
    return {prefix + _cname(k): v.detach().numpy().copy() for k, v in net.named_buffers()
            if k.endswith("running_mean") or k.endswith("running_var")}


def _moco_fwd(net, x):
    import torch
    return torch.nn.functional.normalize(net.head(net.enc(x)), dim=1)


def _moco_reference(q_net, k_net, queue, ptr, x1, x2, perms, T, m, symmetric):
    """facebookresearch/moco's builder (momentum update before the keys, l_pos, l_neg, CE with label 0,
    dequeue-and-enqueue) with the CIFAR demo's single-device shuffle and symmetric loss."""
    import torch
    F = torch.nn.functional
    with torch.no_grad():
        for pq, pk in zip(q_net.parameters(), k_net.parameters()):
            pk.data = pk.data * m + pq.data * (1.0 - m)

    def pair(im_q, im_k, perm):
        q = _moco_fwd(q_net, im_q)
        with torch.no_grad():
            if perm is not None:
                k = _moco_fwd(k_net, im_k[perm])[torch.argsort(perm)]
            else:
                k = _moco_fwd(k_net, im_k)
        l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", [q, queue.clone().detach()])
        logits = torch.cat([l_pos, l_neg], dim=1) / T
        labels = torch.zeros(logits.shape[0], dtype=torch.long)
        return F.cross_entropy(logits, labels), k

    loss, k2 = pair(x1, x2, perms[0])
    keys = k2
    if symmetric:
        loss21, k1 = pair(x2, x1, perms[1])
        loss = loss + loss21
        keys = torch.cat([k1, k2], dim=0)
    loss.backward()
    K = queue.shape[1]
    q = queue.clone()
    for i in range(keys.shape[0]):
        q[:, (ptr + i) % K] = keys[i]
    return loss.item(), q.numpy(), (ptr + keys.shape[0]) % K


MOCO_CASES = [
    # preset, head, K, ptr, shuffle, splits, symmetric, T
    ("moco-v2", [12, 16], 10, 8, 1, 2, 0, 0.2),
    ("moco-v1", [16], 12, 0, 0, 1, 0, 0.07),
    ("moco-cifar", [16], 11, 5, 1, 2, 1, 0.1),
    ("moco-cifar", [16], 11, 5, 0, 1, 1, 0.1),
    ("moco-cifar", [16], 11, 5, 1, 1, 1, 0.1),
    ("moco-cifar", [16], 11, 5, 0, 2, 1, 0.1),
    # the recipe's T 0.05 makes this tiny net's loss ~1e-6 (q.k ~ 1), where float32 rounding of softmax
    # dominates the gradients on both sides: a larger T keeps the comparison meaningful
    ("moco-lowcompute", [10, 8, 6], 9, 3, 0, 1, 0, 0.5),
]


@pytest.mark.parametrize("preset,head,K,ptr,shuffle,splits,symmetric,T", MOCO_CASES)
def test_moco_step_matches_pytorch(build_dir, tmp_path, tiny_onnx, preset, head, K, ptr, shuffle, splits, symmetric,
                                   T):
    import torch
    m = 0.9  # far from 1 so that the momentum update is visible
    rng = np.random.default_rng(5)
    x1, x2 = _views(11)
    perms = [rng.permutation(B).astype(np.int64), rng.permutation(B).astype(np.int64)]
    q_net = _MoCoNet.make(head, splits=splits)
    k_net = _MoCoNet.make(head, splits=splits)
    # query values from torch; key values perturbed (so the momentum update is tested); queue random
    sets = {}
    for k, v in _moco_named(q_net):
        sets[k] = v.detach().numpy().copy()
    for k, v in list(sets.items()):
        sets["key/" + k] = _rand_like(rng, v)
    for k, v in _buffers(q_net).items():
        sets["key/" + k] = _rand_like(rng, v, 0.05) if k.endswith("mean") else np.abs(_rand_like(rng, v, 0.05))
    D = head[-1]
    queue = rng.standard_normal((D, K)).astype(np.float32)
    queue /= np.linalg.norm(queue, axis=0, keepdims=True)
    sets["queue"] = queue
    sets["queue_ptr"] = np.array([ptr], dtype=np.int64)
    ins = {"view1": x1, "view2": x2}
    opts = dict(batch=B, queue=K, momentum=m, temperature=T, shuffle=shuffle, splits=splits, symmetric=symmetric,
                head=",".join(map(str, head)))
    if shuffle:
        ins["shuffle_perm"] = perms[0]
        if symmetric:
            ins["shuffle_perm2"] = perms[1]
    r = _run(build_dir, tmp_path, tiny_onnx, preset, opts, ins, sets)

    assert _moco_load(q_net, sets) >= 7
    assert _moco_load(k_net, sets, "key/") >= 7
    q_net.train()
    k_net.train()
    loss, new_queue, new_ptr = _moco_reference(
        q_net, k_net, torch.from_numpy(queue), ptr, torch.from_numpy(x1), torch.from_numpy(x2),
        [torch.from_numpy(p) for p in perms] if shuffle else [None, None], T, m, symmetric)
    _check_loss(r["loss"][0], loss)
    _check_grads(r["grad"], _moco_named(q_net))
    ref_states = {"key/" + k: v.detach().numpy() for k, v in _moco_named(k_net)}
    ref_states.update(_buffers(q_net))
    ref_states.update(_buffers(k_net, "key/"))
    ref_states["queue"] = new_queue
    _check_states(r["state"], ref_states)
    assert int(r["state"]["queue_ptr"][0]) == new_ptr
    # the key parameters did move towards the query ones, and not to them
    moved = _rel(r["state"]["key/conv1.weight"], sets["key/conv1.weight"])
    assert moved > 1e-3


def _named_values(net):
    return {_cname(k): v.detach().numpy().copy() for k, v in net.state_dict().items()
            if not k.endswith("num_batches_tracked")}


# ---------------------------------------------------------------- SimCLR and SupCon

def _supcon_loss(features, labels=None, T=0.07, contrast_mode="all", base_T=0.07, mask=None):
    """SupContrast's SupConLoss: features [B, V, D] (normalised), labels [B] or a mask [B, B] or neither."""
    import torch
    bsz = features.shape[0]
    if mask is not None:
        mask = mask.float()
    elif labels is None:
        mask = torch.eye(bsz, dtype=torch.float32)
    else:
        labels = labels.contiguous().view(-1, 1)
        mask = torch.eq(labels, labels.T).float()
    contrast_count = features.shape[1]
    contrast_feature = torch.cat(torch.unbind(features, dim=1), dim=0)
    if contrast_mode == "one":
        anchor_feature, anchor_count = features[:, 0], 1
    else:
        anchor_feature, anchor_count = contrast_feature, contrast_count
    anchor_dot_contrast = torch.div(torch.matmul(anchor_feature, contrast_feature.T), T)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = mask.repeat(anchor_count, contrast_count)
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(bsz * anchor_count).view(-1, 1), 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    loss = -(T / base_T) * mean_log_prob_pos
    return loss.view(anchor_count, bsz).mean()


def _simclr_loss(z, T):
    """NT-Xent (SimCLR): z [2B, D] normalised, view-major; the diagonal excluded."""
    import torch
    n = z.shape[0] // 2
    sim = z @ z.T / T
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return torch.nn.functional.cross_entropy(sim, labels)


SUPCON_CASES = [  # method, views, labels, contrast mode, T, base T
    ("simclr", 2, None, "all", 0.5, None),
    ("supcon", 2, [1, 0, 1, 2], "all", 0.07, 0.07),
    ("supcon", 3, [1, 1, 0, 0], "one", 0.1, 0.07),
    ("supcon", 2, None, "all", 0.2, 0.2),  # no labels: SimCLR's loss
    ("supcon", 2, "mask", "all", 0.1, 0.07),  # an explicit mask
]


@pytest.mark.parametrize("preset,views,labels,mode,T,base_T", SUPCON_CASES)
def test_simclr_supcon_step_matches_pytorch(build_dir, tmp_path, tiny_onnx, preset, views, labels, mode, T, base_T):
    import torch
    F = torch.nn.functional
    head = [12, 8]
    net = _net(head=(head, False, True, True, 0))
    xs = _views(21, views)
    opts = dict(batch=B, temperature=T, head=",".join(map(str, head)))
    ins = {f"view{i + 1}": x for i, x in enumerate(xs)}
    if preset == "supcon":
        opts.update(views=views, contrast=mode, base_temperature=base_T, labels=int(isinstance(labels, list)))
        if isinstance(labels, list):
            ins["labels"] = np.array(labels, dtype=np.int64)
        elif labels == "mask":
            opts["mask"] = 1
            mask = np.array([[1, 0, 1, 1], [0, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]], dtype=np.float32)
            ins["mask"] = mask
    sets = {k: v for k, v in _named_values(net).items() if k.startswith("head.")}
    r = _run(build_dir, tmp_path, tiny_onnx, preset, opts, ins, sets)
    net.train()
    z = F.normalize(net.head(net.enc(torch.from_numpy(np.concatenate(xs)))), dim=1)
    if preset == "simclr":
        loss = _simclr_loss(z, T)
    else:
        feats = torch.stack(torch.split(z, B, dim=0), dim=1)
        if labels == "mask":
            loss = _supcon_loss(feats, None, T, mode, base_T, mask=torch.from_numpy(mask))
        else:
            loss = _supcon_loss(feats, None if labels is None else torch.tensor(labels), T, mode, base_T)
        if labels is None and views == 2 and T == base_T:
            assert abs(loss.item() - _simclr_loss(z, T).item()) <= 1e-5 * loss.item()  # reduces to SimCLR
    loss.backward()
    _check_loss(r["loss"][0], loss.item())
    _check_grads(r["grad"], _moco_named(net))
    _check_states(r["state"], _buffers(net))


# ---------------------------------------------------------------- BYOL and SimSiam

def _byol_loss_fn(x, y):
    import torch
    F = torch.nn.functional
    x = F.normalize(x, dim=-1, p=2)
    y = F.normalize(y, dim=-1, p=2)
    return 2 - 2 * (x * y).sum(dim=-1)


@pytest.mark.parametrize("use_momentum", [1, 0])
def test_byol_step_matches_pytorch(build_dir, tmp_path, tiny_onnx, use_momentum):
    """byol-pytorch's forward: both views through the online network as one batch, the target
    (an EMA copy, or the online network itself under no-grad) on the same batch, the symmetric
    normalised-MSE loss; the EMA update of the target's parameters after the step."""
    import torch
    beta = 0.9
    hid, proj = 16, 8
    if use_momentum:
        pspec = ([hid, proj], True, True, True, 0)
    else:  # byol-pytorch's SimSiamMLP projector
        pspec = ([hid, hid, proj], True, False, False, 2)
    online = _net(projector=pspec, predictor=([hid, proj], True, True, True, 0))
    x1, x2 = _views(31)
    rng = np.random.default_rng(7)
    opts = dict(batch=B, momentum=beta, use_momentum=use_momentum, head=f"{hid},{proj}", pred=f"{hid},{proj}")
    sets = {k: v for k, v in _named_values(online).items() if k.startswith(("projector.", "predictor."))}
    target = None
    if use_momentum:
        target = _net(projector=pspec)
        tv = {k: v for k, v in _named_values(online).items() if not k.startswith("predictor.")}
        for k, v in tv.items():
            sets["target/" + k] = _rand_like(rng, v) if "running_var" not in k else np.abs(_rand_like(rng, v))
        _moco_load(target, sets, "target/")
    r = _run(build_dir, tmp_path, tiny_onnx, "byol", opts, {"view1": x1, "view2": x2}, sets)

    # float64 reference: the projector's first bias feeds a BatchNorm, so its exact gradient is 0
    # and a float32 reference's is rounding noise (seen 1.2e-3 of the floor on some CPUs)
    online.double()
    if target is not None:
        target.double()
    online.train()
    images = torch.from_numpy(np.concatenate([x1, x2])).double()
    proj_o = online.projector(online.enc(images))
    pred = online.predictor(proj_o)
    p1, p2 = pred.chunk(2, dim=0)
    with torch.no_grad():
        if use_momentum:
            target.train()
            tp = target.projector(target.enc(images))
        else:
            tp = online.projector(online.enc(images))
        t1, t2 = tp.detach().chunk(2, dim=0)
    loss = (_byol_loss_fn(p1, t2) + _byol_loss_fn(p2, t1)).mean()
    loss.backward()
    _check_loss(r["loss"][0], loss.item())
    _check_grads(r["grad"], _moco_named(online))
    ref = _buffers(online)
    if use_momentum:
        with torch.no_grad():  # update_moving_average: parameters only
            for po, pt in zip(online.enc.parameters(), target.enc.parameters()):
                pt.data = pt.data * beta + (1 - beta) * po.data
            for po, pt in zip(online.projector.parameters(), target.projector.parameters()):
                pt.data = pt.data * beta + (1 - beta) * po.data
        ref.update({"target/" + _cname(k): v.detach().numpy() for k, v in target.named_parameters()})
        ref.update(_buffers(target, "target/"))
        assert not any(k.startswith("target/predictor") for k in r["state"])
    _check_states(r["state"], ref)


def test_simsiam_step_matches_pytorch(build_dir, tmp_path, tiny_onnx):
    """SimSiam: each view through encoder + projector separately, predictor on each, the symmetric
    negative cosine with stop-gradient; BatchNorm statistics move once per view."""
    import torch
    F = torch.nn.functional
    h, p = 16, 6
    net = _net(projector=([h, h, h], True, False, False, 2), predictor=([p, h], True, False, True, 0))
    x1, x2 = _views(41)
    sets = {k: v for k, v in _named_values(net).items() if k.startswith(("projector.", "predictor."))}
    opts = dict(batch=B, head=f"{h},{h},{h}", pred=f"{p},{h}")
    r = _run(build_dir, tmp_path, tiny_onnx, "simsiam", opts, {"view1": x1, "view2": x2}, sets)
    net.train()
    z1 = net.projector(net.enc(torch.from_numpy(x1)))
    z2 = net.projector(net.enc(torch.from_numpy(x2)))
    p1, p2 = net.predictor(z1), net.predictor(z2)
    loss = -(F.cosine_similarity(p1, z2.detach(), dim=-1).mean() +
             F.cosine_similarity(p2, z1.detach(), dim=-1).mean()) * 0.5
    loss.backward()
    _check_loss(r["loss"][0], loss.item())
    _check_grads(r["grad"], _moco_named(net))
    _check_states(r["state"], _buffers(net))


# ---------------------------------------------------------------- several steps, with the optimizer

class _Lars(object):
    """LARS as SimCLR uses it (ops.def's LarsStep): d = g + wd*p; d *= trust*|p|/|d| (1 when a norm is 0);
    buf = momentum*buf + d; p -= lr*buf. Parameters of rank <= 1 (BatchNorm, biases): no decay, no adaptation."""

    def __init__(self, params, lr, momentum, weight_decay, trust=0.001):
        self.params, self.lr, self.m, self.wd, self.trust = list(params), lr, momentum, weight_decay, trust
        self.bufs = [None] * len(self.params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        import torch
        with torch.no_grad():
            for i, p in enumerate(self.params):
                if p.grad is None:
                    continue
                d = p.grad.clone()
                if p.dim() > 1:
                    d = d + self.wd * p
                    pn, dn = torch.norm(p), torch.norm(d)
                    if pn > 0 and dn > 0:
                        d = d * (self.trust * pn / dn)
                self.bufs[i] = d if self.bufs[i] is None else self.m * self.bufs[i] + d
                p -= self.lr * self.bufs[i]


def _torch_opt(kind, params, lr, momentum, wd):
    import torch
    if kind == "lars":
        return _Lars(params, lr, momentum, wd)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    raise ValueError(kind)


STEPS = 5
MOCO_MULTI = [  # preset, head, K, shuffle, splits, T, optimizer, lr, momentum, wd
    ("moco-v2", [12, 16], 10, 1, 2, 0.2, "sgd", 0.03, 0.9, 1e-4),
    ("moco-lowcompute", [10, 8, 6], 9, 0, 1, 0.5, "adam", 1e-3, 0.0, 1e-6),
    ("moco-v1", [16], 6, 0, 1, 0.07, None, 0.0, 0.0, 0.0),  # no optimizer: the queue ring over 3 wraps
]


@pytest.mark.parametrize("preset,head,K,shuffle,splits,T,optim,lr,mom,wd", MOCO_MULTI)
def test_moco_steps_match_pytorch(build_dir, tmp_path, tiny_onnx, preset, head, K, shuffle, splits, T, optim, lr, mom,
                                  wd):
    import torch
    m = 0.9
    rng = np.random.default_rng(9)
    xs = np.stack([np.stack(_views(100 + s)) for s in range(STEPS)])  # [steps, 2, B, 3, H, W]
    perms = np.stack([rng.permutation(B) for _ in range(STEPS)]).astype(np.int64)
    q_net = _MoCoNet.make(head, splits=splits)
    k_net = _MoCoNet.make(head, splits=splits)
    sets = {k: v.detach().numpy().copy() for k, v in _moco_named(q_net)}
    for k, v in list(sets.items()):
        sets["key/" + k] = _rand_like(rng, v)
    D = head[-1]
    queue = rng.standard_normal((D, K)).astype(np.float32)
    queue /= np.linalg.norm(queue, axis=0, keepdims=True)
    sets["queue"] = queue
    opts = dict(batch=B, queue=K, momentum=m, temperature=T, shuffle=shuffle, splits=splits,
                head=",".join(map(str, head)))
    ins = {"view1": np.ascontiguousarray(xs[:, 0]), "view2": np.ascontiguousarray(xs[:, 1])}
    if shuffle:
        ins["shuffle_perm"] = perms
    if optim:
        opts.update(optimizer=optim, lr=lr, opt_momentum=mom, wd=wd, attach_optimizer=1)
        ins["lr"] = np.full(STEPS, lr, dtype=np.float32)
    r = _run(build_dir, tmp_path, tiny_onnx, preset, opts, ins, sets, steps=STEPS)

    _moco_load(q_net, sets)
    _moco_load(k_net, sets, "key/")
    q_net.train()
    k_net.train()
    opt = _torch_opt(optim, q_net.parameters(), lr, mom, wd) if optim else None
    tq, ptr, losses = torch.from_numpy(queue), 0, []
    for s in range(STEPS):
        if opt:
            opt.zero_grad()
        perm = [torch.from_numpy(perms[s]), None] if shuffle else [None, None]
        loss, newq, ptr = _moco_reference(q_net, k_net, tq, ptr, torch.from_numpy(xs[s, 0]),
                                          torch.from_numpy(xs[s, 1]), perm, T, m, False)
        tq = torch.from_numpy(newq)
        losses.append(loss)
        if opt:
            opt.step()
    _check_losses(r["loss"], losses)
    ref = {"key/" + k: v.detach().numpy() for k, v in _moco_named(k_net)}
    if opt:
        ref.update({k: v.detach().numpy() for k, v in _moco_named(q_net)})
    ref.update(_buffers(q_net))
    ref.update(_buffers(k_net, "key/"))
    ref["queue"] = tq.numpy()
    _check_states(r["state"], ref)
    assert int(r["state"]["queue_ptr"][0]) == ptr == (STEPS * B) % K
    if opt:
        assert _rel(r["state"]["head.0.weight"], sets["head.0.weight"]) > 1e-4  # the optimizer did move it


MULTI = [  # preset, optimizer, lr, momentum, wd
    ("simclr", "sgd", 0.05, 0.9, 1e-4),
    ("simclr", "lars", 0.3, 0.9, 1e-6),  # SimCLR's recipe optimizer
    ("supcon", "sgd", 0.05, 0.9, 1e-4),
    ("simsiam", "sgd", 0.05, 0.9, 1e-4),
    # byol's recipe is Adam, but the biases feeding a BatchNorm have a zero gradient in exact arithmetic,
    # and Adam turns the float32 noise of those gradients into lr-sized steps of random sign on either
    # side: with SGD everything is compared at 1e-4
    ("byol", "sgd", 0.05, 0.9, 1e-4),
    ("byol", "adam", 3e-4, 0.0, 0.0),  # the recipe; those biases are held to |error| <= 2 lr per step
]


@pytest.mark.parametrize("preset,optim,lr,mom,wd", MULTI)
def test_method_steps_match_pytorch(build_dir, tmp_path, tiny_onnx, preset, optim, lr, mom, wd):
    import torch
    F = torch.nn.functional
    beta, T = 0.9, 0.2
    xs = np.stack([np.stack(_views(200 + s)) for s in range(STEPS)])
    labels = np.array([[0, 1, 0, 1], [2, 2, 1, 0], [0, 0, 0, 1], [1, 2, 3, 1], [0, 1, 1, 0]], dtype=np.int64)
    opts = dict(batch=B, optimizer=optim, lr=lr, opt_momentum=mom, wd=wd, attach_optimizer=1)
    ins = {"view1": np.ascontiguousarray(xs[:, 0]), "view2": np.ascontiguousarray(xs[:, 1]),
           "lr": np.full(STEPS, lr, dtype=np.float32)}
    target = None
    if preset in ("simclr", "supcon"):
        net = _net(head=([12, 8], False, True, True, 0))
        opts.update(head="12,8", temperature=T)
        if preset == "supcon":
            opts.update(base_temperature=T)
            ins["labels"] = labels
    elif preset == "simsiam":
        net = _net(projector=([16, 16, 16], True, False, False, 2), predictor=([6, 16], True, False, True, 0))
        opts.update(head="16,16,16", pred="6,16")
    else:
        pspec = ([16, 8], True, True, True, 0)
        net = _net(projector=pspec, predictor=([16, 8], True, True, True, 0))
        target = _net(projector=pspec)
        # the decay as a graph input, raised towards 1 on a cosine (BYOL's schedule)
        opts.update(head="16,8", pred="16,8", momentum=beta, momentum_input=1)
        betas = np.array([1 - (1 - beta) * (np.cos(np.pi * s / STEPS) + 1) / 2 for s in range(STEPS)], np.float32)
        ins["momentum"] = betas
    sets = {k: v for k, v in _named_values(net).items() if k.startswith(("head.", "projector.", "predictor."))}
    if target is not None:
        for k, v in _named_values(net).items():
            if not k.startswith("predictor."):
                sets["target/" + k] = v
        _moco_load(target, sets, "target/")
    r = _run(build_dir, tmp_path, tiny_onnx, preset, opts, ins, sets, steps=STEPS)

    # the reference runs in float64, the exact trajectory: PyTorch's own float32 sums depend on its thread
    # count, which other tests change, and drift from it by more than 1e-4 in SimSiam's running means
    net.double().train()
    if target is not None:
        target.double()
    opt = _torch_opt(optim, net.parameters(), lr, mom, wd)
    losses = []
    for s in range(STEPS):
        opt.zero_grad()
        x1, x2 = torch.from_numpy(xs[s, 0]).double(), torch.from_numpy(xs[s, 1]).double()
        if preset in ("simclr", "supcon"):
            z = F.normalize(net.head(net.enc(torch.cat([x1, x2]))), dim=1)
            if preset == "simclr":
                loss = _simclr_loss(z, T)
            else:
                loss = _supcon_loss(torch.stack(torch.split(z, B), dim=1), torch.from_numpy(labels[s]), T, "all", T)
        elif preset == "simsiam":
            z1, z2 = net.projector(net.enc(x1)), net.projector(net.enc(x2))
            p1, p2 = net.predictor(z1), net.predictor(z2)
            loss = -(F.cosine_similarity(p1, z2.detach(), dim=-1).mean() +
                     F.cosine_similarity(p2, z1.detach(), dim=-1).mean()) * 0.5
        else:
            images = torch.cat([x1, x2])
            p1, p2 = net.predictor(net.projector(net.enc(images))).chunk(2, dim=0)
            with torch.no_grad():
                target.train()
                t1, t2 = target.projector(target.enc(images)).detach().chunk(2, dim=0)
            loss = (_byol_loss_fn(p1, t2) + _byol_loss_fn(p2, t1)).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if target is not None:  # byol-pytorch: update_moving_average() after optimizer.step()
            with torch.no_grad():
                b_s = float(betas[s])
                for part in ("enc", "projector"):
                    for po, pt in zip(getattr(net, part).parameters(), getattr(target, part).parameters()):
                        pt.data = pt.data * b_s + (1 - b_s) * po.data
    _check_losses(r["loss"], losses, 1.0 if preset == "simsiam" else 0.0)
    ref = {k: v.detach().numpy() for k, v in _moco_named(net)}
    ref.update(_buffers(net))
    if target is not None:
        ref.update({"target/" + k: v.detach().numpy() for k, v in _moco_named(target)})
        ref.update(_buffers(target, "target/"))
    if preset == "byol" and optim == "adam":
        # biases whose gradient is 0 in exact arithmetic (each feeds a BatchNorm, directly or through a Linear)
        # (and the running means of the BatchNorms they feed, which carry those biases)
        for k in ("projector.0.bias", "projector.3.bias", "predictor.0.bias", "target/projector.0.bias",
                  "target/projector.3.bias", "projector.1.running_mean", "predictor.1.running_mean",
                  "target/projector.1.running_mean"):
            err = float(np.max(np.abs(r["state"][k] - ref.pop(k))))
            assert err <= 2 * lr * STEPS, (k, err)
    _check_states(r["state"], ref)


# ---------------------------------------------------------------- representation layer, bad input

def _moco_inputs(shuffle=False):
    x1, x2 = _views(3)
    ins = {"view1": x1, "view2": x2}
    if shuffle:
        ins["shuffle_perm"] = np.arange(B, dtype=np.int64)[::-1].copy()
    return ins


def test_representation_layer(build_dir, tmp_path, tiny_onnx):
    """The default cut (the classifier's input), the same value by name and as byol-pytorch's
    hidden_layer -2 give the same graph; -1 (the logits) is a different representation."""
    import onnx
    flat = [n.output[0] for n in onnx.load(str(tiny_onnx)).graph.node if n.op_type == "Flatten"][0]
    opts = dict(batch=B, queue=8, shuffle=0, head="12,8")
    losses = {}
    for layer in (None, flat, "-2", "pool", "-1"):  # "pool": the module, as byol-pytorch's hidden_layer
        o = dict(opts)
        if layer is not None:
            o["layer"] = layer
        sub = tmp_path / f"l{len(losses)}"
        sub.mkdir()
        r = _run(build_dir, sub, tiny_onnx, "moco-v2", o, _moco_inputs(), {})
        losses[layer] = r["loss"][0]
        if layer != "-1":
            assert "fc.weight" not in r["init"] and "fc.bias" not in r["init"]  # the classifier is dropped
    assert losses[None] == losses[flat] == losses["-2"] == losses["pool"]
    assert losses["-1"] != losses[None]


BAD = [
    ("moco-v2", dict(layer="-99"), "representation layer -99 does not exist"),
    ("moco-v2", dict(layer="no_such_value"), "representation layer 'no_such_value' does not exist"),
    ("moco-v2", dict(temperature=0), "temperature must be > 0"),
    ("simclr", dict(temperature=-0.5), "temperature must be > 0"),
    ("moco-v2", dict(momentum=1.5), "momentum must be in [0, 1]"),
    ("byol", dict(momentum=-0.1), "momentum must be in [0, 1]"),
    ("moco-v2", dict(queue=3), "do not fit the queue"),
    ("moco-cifar", dict(queue=6, symmetric=1), "do not fit the queue"),
    ("byol", dict(head="16,8", pred="16,7"), "head size mismatch"),
    ("moco-v2", dict(head_in=512), "head size mismatch: the head expects 512 features but the representation"),
    ("supcon", dict(have_labels=0), "needs a labelled dataset"),
    ("supcon", dict(views=1), "n_views >= 2"),
    ("supcon", dict(mask=1), "labels or a mask, not both"),
    ("moco-v2", dict(splits=3), "not divisible by 3 BatchNorm splits"),
    ("moco-v1", dict(optimizer="rmsprop"), "unknown optimizer"),
]


@pytest.mark.parametrize("preset,opts,msg", BAD)
def test_bad_options(build_dir, tmp_path, tiny_onnx, preset, opts, msg):
    o = dict(batch=B, queue=8)
    o.update(opts)
    p = _run(build_dir, tmp_path, tiny_onnx, preset, o, {}, {}, expect_fail=True)
    assert p.returncode == 1, p.stderr
    assert msg in p.stderr, p.stderr


WARN = [
    ("byol", dict(optimizer="adam", lr=4.8), "Adam usually wants"),
    ("moco-v2", dict(queue=8, dataset_size=6), "larger than the dataset"),
]


@pytest.mark.parametrize("preset,opts,msg", WARN)
def test_incoherent_options_warn(build_dir, tmp_path, tiny_onnx, preset, opts, msg):
    o = dict(batch=B, shuffle=0, head="12,8", pred="16,8")
    o.update(opts)
    if preset == "byol":
        o["head"] = "16,8"
    p = _run(build_dir, tmp_path, tiny_onnx, preset, o, {}, {}, expect_fail=True)
    assert "warning" in p.stderr and msg in p.stderr, p.stderr
    assert "is not bound" in p.stderr  # the graph was built; only the views are missing


# ---------------------------------------------------------------- a real encoder

# ~60 s under the sanitizers, so in the long run; by default the tiny-encoder
# MOCO_CASES cover every MoCo option and test_method_trainer runs the compiled
# trainer on this encoder.
@pytest.mark.long
def test_moco_v2_cifar_resnet18(build_dir, tmp_path):
    """MoCo v2 with shuffle BN (2 splits) on the exported CIFAR ResNet-18 at 16x16: loss, gradients,
    key parameters, BatchNorm statistics of both encoders, queue and pointer."""
    import onnx
    import torch
    from onnx import numpy_helper
    import models
    path = models.export("cifar_resnet18", "bn_rand", 13, batch=B, size=16)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    rng = np.random.default_rng(13)
    m, T, K, ptr, splits = 0.9, 0.2, 10, 7, 2
    x1, x2 = (rng.standard_normal((B, 3, 16, 16)).astype(np.float32) for _ in range(2))
    perm = rng.permutation(B).astype(np.int64)

    def make():
        net = torch.nn.Module()
        net.enc = models._build("cifar_resnet18", "bn_rand")
        net.enc.fc = torch.nn.Identity()
        _split_bn(net.enc, splits)
        net.head = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 16))
        return net

    q_net, k_net = make(), make()
    assert _moco_load(q_net, inits) >= 60
    sets = {k: v.detach().numpy().copy() for k, v in _moco_named(q_net) if k.startswith("head.")}
    for k, v in _moco_named(q_net):
        sets["key/" + k] = _rand_like(rng, v.detach().numpy(), 0.01)
    queue = rng.standard_normal((16, K)).astype(np.float32)
    queue /= np.linalg.norm(queue, axis=0, keepdims=True)
    sets["queue"], sets["queue_ptr"] = queue, np.array([ptr], dtype=np.int64)
    opts = dict(batch=B, queue=K, momentum=m, temperature=T, shuffle=1, splits=splits, head="512,16")
    r = _run(build_dir, tmp_path, path, "moco-v2", opts, {"view1": x1, "view2": x2, "shuffle_perm": perm}, sets)
    _moco_load(q_net, sets)
    _moco_load(k_net, inits)
    _moco_load(k_net, sets, "key/")
    q_net.train()
    k_net.train()
    loss, new_queue, new_ptr = _moco_reference(q_net, k_net, torch.from_numpy(queue), ptr, torch.from_numpy(x1),
                                               torch.from_numpy(x2), [torch.from_numpy(perm), None], T, m, False)
    _check_loss(r["loss"][0], loss)
    _check_grads(r["grad"], _moco_named(q_net))
    ref = {"key/" + k: v.detach().numpy() for k, v in _moco_named(k_net)}
    ref.update(_buffers(q_net))
    ref.update(_buffers(k_net, "key/"))
    ref["queue"] = new_queue
    _check_states(r["state"], ref)
    assert int(r["state"]["queue_ptr"][0]) == new_ptr


def test_moco_initial_state_and_passes(build_dir, tmp_path, tiny_onnx):
    """The key encoder starts equal to the query encoder, the queue's columns are unit Gaussian
    directions from the seed, the pointer is 0; the default passes (folding, DCE, CSE) on the
    training graph change none of the results."""
    opts = dict(batch=B, queue=24, shuffle=1, splits=2, head="12,8", seed=5)
    r = _run(build_dir, tmp_path, tiny_onnx, "moco-v2", opts, _moco_inputs(True), {})
    init = r["init"]
    for k in ("conv1.weight", "bn2.bias", "head.0.weight", "head.2.bias", "bn1.running_var"):
        assert np.array_equal(init[k], init["key/" + k]), k
    q = init["queue"]
    assert q.shape == (8, 24)
    assert np.allclose(np.linalg.norm(q, axis=0), 1, atol=1e-5)
    assert abs(float(np.mean(q))) < 0.1 and np.std(q) > 0.2  # spread directions, not a constant
    assert int(init["queue_ptr"][0]) == 0
    sub = tmp_path / "p"
    sub.mkdir()
    out = sub / "out"
    out.mkdir()
    cmd = [str(_exe(build_dir)), str(tiny_onnx), str(out), "--preset", "moco-v2", "--pipeline"]
    cmd += [f"{k}={v}" for k, v in opts.items()]
    for k, v in _moco_inputs(True).items():
        np.save(sub / f"{k}.npy", v)
        cmd += ["--in", k, str(sub / f"{k}.npy")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert abs(float(np.load(out / "loss0.npy")) - r["loss"][0]) <= 1e-6 * abs(r["loss"][0])
    for line in p.stdout.split("\n"):
        f = line.split()
        if f and f[0] in ("grad", "state"):
            a = np.load(out / f"{f[0]}{f[1]}.npy")
            b = r[f[0]][f[2]]
            assert np.allclose(a, b, rtol=1e-5, atol=1e-7), f[2]
    # a different seed gives a different queue
    sub2 = tmp_path / "s2"
    sub2.mkdir()
    r2 = _run(build_dir, sub2, tiny_onnx, "moco-v2", dict(opts, seed=6), _moco_inputs(True), {})
    assert not np.allclose(r2["init"]["queue"], q)


def _preset(build_dir, name):
    p = subprocess.run([str(_exe(build_dir)), "--preset-dump", name], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return dict(line.split("=", 1) for line in p.stdout.split("\n") if "=" in line)


# METHODS.md "Defaults" and the recipes
PRESETS = {
    "moco-v1": dict(temperature="0.07", queue="65536", momentum="0.999", optimizer="sgd", lr="0.03",
                    wd="0.0001", opt_momentum="0.9", epochs="200", schedule="step", milestones="120,160",
                    head="128", splits="8", shuffle="1", augment="moco-v1"),
    "moco-v2": dict(temperature="0.2", queue="65536", momentum="0.999", optimizer="sgd", lr="0.03",
                    schedule="cosine", head="0,128", splits="8", augment="moco-v2"),
    "moco-cifar": dict(temperature="0.1", queue="4096", momentum="0.99", batch="512", lr="0.06", wd="0.0005",
                       splits="8", schedule="cosine", epochs="200"),
    "moco-lowcompute": dict(temperature="0.05", queue="8192", momentum="0.999", batch="256", optimizer="adam",
                            lr="0.001", lr_final="1e-05", wd="1e-06", head="100,50,25"),
    "simclr": dict(optimizer="lars", head="0,128", augment="simclr"),
    "supcon": dict(temperature="0.07", base_temperature="0.07", use_labels="1", head="0,128"),
    "byol": dict(momentum="0.99", head="4096,256", pred="4096,256", head_bn="1,1,1,0", use_momentum="1",
                 augment="byol"),
    "simsiam": dict(head="2048,2048,2048", head_bn="1,0,0,2", pred="512,2048", pred_bn="1,0,1,0"),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets(build_dir, name):
    got = _preset(build_dir, name)
    bad = {k: (got.get(k), v) for k, v in PRESETS[name].items() if got.get(k) != v}
    assert not bad, bad


def test_unknown_preset(build_dir):
    for name in ("moco-v9", "nope"):
        p = subprocess.run([str(_exe(build_dir)), "--preset-dump", name], capture_output=True, text=True)
        assert p.returncode == 1 and "unknown method preset" in p.stderr and "moco-lowcompute" in p.stderr
