# test_method_trainer.py — the compiled trainer of 'contra compile --method'
# (tools/cmd_compile_method.c, runtime/trainer_method.c) against the PyTorch
# references of test_methods.py (facebookresearch/moco's builder, SupContrast's
# SupConLoss, byol-pytorch, the SimCLR and SimSiam papers). The trainer's
# initial tensors (--steps 0 --save-params: encoder, heads, key/target copies,
# queue) are loaded into the reference, which computes in float64; both run
# 5 steps on the same view batches (and shuffle-BN permutations, labels,
# learning rates, EMA decays), and must agree on the loss of every step and on
# every tensor the trainer saves: parameters, key/target parameters, BatchNorm
# statistics, optimizer slots, queue and pointer (relative error <= 1e-4 for
# the trainer's float32). The CIFAR ResNet-18 case runs 3 steps (see there).
import subprocess

import numpy as np
import pytest

from test_methods import (B, SIZE, _buffers, _byol_loss_fn, _cname, _Lars, _moco_named, _moco_reference, _MoCoNet,
                          _net, _simclr_loss, _supcon_loss, _tiny)

STEPS = 5
TOL = 1e-4


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """test_methods.py's small encoder (conv-BN-ReLU twice, pool, fc), exported for training."""
    import torch
    path = tmp_path_factory.mktemp("enc") / "tiny.onnx"
    m = _tiny().eval()
    with torch.no_grad():
        torch.onnx.export(m, torch.zeros(2, 3, SIZE, SIZE), str(path), opset_version=13, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    return path


# ---------------------------------------------------------------- running the trainer

def _load_dir(d):
    """Every OUT/<name>.npy written by --save-params, by tensor name ('key/conv1.weight')."""
    return {str(p.relative_to(d))[:-4]: np.load(p) for p in sorted(d.rglob("*.npy"))}


class _Trainer(object):
    """A compiled trainer folder and its runs on .npy views."""

    def __init__(self, contra_bin, tmp_path, enc, method, opts, views, labels=None, perm=None, size=SIZE):
        self.tmp = tmp_path
        self.dir = tmp_path / "trainer"
        cmd = [str(contra_bin), "compile", str(enc), "--method", method, "--batch", str(B), "--seed", "7"]
        cmd += [str(o) for o in opts] + ["-o", str(self.dir), "-q"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stderr[-4000:]}"
        self.args = []
        files = []
        for i, v in enumerate(views):
            assert v.shape == (STEPS * B, 3, size, size) and v.dtype == np.float32
            f = tmp_path / f"view{i + 1}.npy"
            np.save(f, v)
            files.append(str(f))
        self.args += ["--views", ",".join(files)]
        if labels is not None:
            np.save(tmp_path / "labels.npy", labels)
            self.args += ["--view-labels", str(tmp_path / "labels.npy")]
        if perm is not None:
            np.save(tmp_path / "perm.npy", perm)
            self.args += ["--perm", str(tmp_path / "perm.npy")]

    def run(self, steps, *extra):
        """-> (losses, lrs, tensors) after `steps` steps."""
        tag = f"s{steps}"
        out = self.tmp / f"params_{tag}"
        cmd = [str(self.dir / "trainer")] + self.args + ["--steps", str(steps), "--threads", "1", "--out",
                                                        str(self.tmp / f"run_{tag}"), "--save-params", str(out)]
        cmd += [str(e) for e in extra]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stderr[-4000:]}"
        losses, lrs = [], []
        for line in p.stdout.split("\n"):
            f = line.split()
            if f and f[0] == "step":
                assert int(f[1]) == len(losses) + 1 and f[2] == "lr" and f[4] == "loss", line
                lrs.append(float(f[3]))
                losses.append(float(f[5]))
        assert len(losses) == steps, p.stdout[-2000:]
        return losses, lrs, _load_dir(out)


def _sync(module, init, prefix=""):
    """Load the trainer's initial tensors into a torch module, which then computes in float64 (the
    reference: the trainer's float32 results must be within 1e-4 of the exact ones); every parameter and
    BatchNorm statistic of the module must be among them."""
    import torch
    sd = module.state_dict()
    keys = [k for k in sd if not k.endswith("num_batches_tracked")]
    missing = [prefix + _cname(k) for k in keys if prefix + _cname(k) not in init]
    assert not missing, f"the trainer has no initial value for {missing}"
    for k in keys:
        a = init[prefix + _cname(k)]
        assert a.shape == tuple(sd[k].shape), (k, a.shape, tuple(sd[k].shape))
        sd[k] = torch.from_numpy(np.array(a))
    module.load_state_dict(sd)
    module.double()


def _views(seed, n=2, size=SIZE):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((STEPS * B, 3, size, size)).astype(np.float32) for _ in range(n)]


def _batch(views, s):
    import torch
    return [torch.from_numpy(v[s * B:(s + 1) * B]).double() for v in views]


def _cosine(lr, s, total=STEPS):
    """CosineAnnealingLR to 0 over the run (the presets' default schedule)."""
    return lr * (1 + np.cos(np.pi * s / total)) / 2


def _opt_slots(opt, named):
    """The optimizer's state under contra's names: optim/momentum_buffer/<p>, optim/exp_avg/<p>, ..."""
    ref = {}
    if isinstance(opt, _Lars):
        for (k, p), buf in zip(named, opt.bufs):
            ref["optim/momentum_buffer/" + k] = buf.numpy()
        return ref
    for k, p in named:
        for slot, v in opt.state[p].items():
            if slot == "step":
                ref["optim/step"] = np.array(int(v), dtype=np.int64)
            else:
                ref[f"optim/{slot}/{k}"] = v.numpy()
    return ref


def _make_opt(kind, params, lr, momentum, wd):
    import torch
    if kind == "lars":
        return _Lars(params, lr, momentum, wd)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    raise ValueError(kind)


def _set_lr(opt, lr):
    if isinstance(opt, _Lars):
        opt.lr = lr
    else:
        for g in opt.param_groups:
            g["lr"] = lr


def _rel(a, b, floor):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), floor)


def _compare(name, got_losses, ref_losses, got, ref, loss_scale=0.0):
    """Losses per step and every saved tensor. The tensor error is the largest absolute difference relative to
    the tensor's largest value; the floor 1e-3 (as test_methods.py) covers the BatchNorm means that are 0 in
    exact arithmetic (~1e-9 of float32 noise). Optimizer slots are measured against at least 1e-2 of the largest
    slot of their kind instead: the momentum buffers of biases that feed a BatchNorm (BYOL's projector) hold
    gradients that are 0 in exact arithmetic, ~3e-7 of float32 noise beside O(1) gradients elsewhere (their
    parameters, moved by lr times that, are compared at the usual floor). Returns the worst errors."""
    assert len(got_losses) == len(ref_losses)
    loss_err = [abs(g - r) / max(abs(r), loss_scale, 1e-2) for g, r in zip(got_losses, ref_losses)]
    bad = [s for s, (g, r) in enumerate(zip(got_losses, ref_losses))
           if abs(g - r) > TOL * max(abs(r), loss_scale) + 1e-6]
    assert not bad, f"{name}: losses differ at steps {bad}: trainer {got_losses}, PyTorch {ref_losses}"
    extra, missing = sorted(set(got) - set(ref)), sorted(set(ref) - set(got))
    assert not extra, f"{name}: the reference does not cover the trainer's tensors {extra}"
    assert not missing, f"{name}: the trainer did not save {missing}"
    slot_scale = {}
    for k, v in ref.items():
        if k.startswith("optim/") and k != "optim/step":
            kind = k.split("/")[1]
            slot_scale[kind] = max(slot_scale.get(kind, 0.0), float(np.max(np.abs(v))))
    errs = {}
    for k in ref:
        if got[k].dtype.kind == "i":  # queue_ptr, optim/step
            assert np.array_equal(got[k], np.asarray(ref[k]).astype(got[k].dtype)), (name, k, got[k], ref[k])
            continue
        assert got[k].shape == np.shape(ref[k]), (name, k, got[k].shape, np.shape(ref[k]))
        floor = 1e-2 * slot_scale[k.split("/")[1]] if k.startswith("optim/") else 1e-3
        errs[k] = _rel(got[k], ref[k], max(floor, 1e-12))
    worst = max(errs.items(), key=lambda kv: kv[1])
    groups = {}
    for k, e in errs.items():
        g = "optim" if k.startswith("optim/") else "queue" if k == "queue" else \
            "bn" if k.endswith(("running_mean", "running_var")) else \
            "key" if k.startswith(("key/", "target/")) else "param"
        groups[g] = max(groups.get(g, 0.0), e)
    print(f"\n{name}: max loss rel err {max(loss_err):.2e}, tensors: " +
          ", ".join(f"{g} {e:.2e}" for g, e in sorted(groups.items())) + f" (worst {worst[0]})")
    assert worst[1] <= TOL, f"{name}: worst tensor {worst[0]}: relative error {worst[1]:.3g} (all: " + \
        ", ".join(f"{k} {e:.2g}" for k, e in sorted(errs.items(), key=lambda kv: -kv[1])[:8]) + ")"
    return max(loss_err), worst


# ---------------------------------------------------------------- MoCo

def _shuffle(rng):
    """A shuffle-BN permutation of B = 4 that changes the BatchNorm groups of 2 splits (a sample's split is its
    position mod 2; one that keeps {0, 2} and {1, 3} together gives the unshuffled statistics)."""
    while True:
        p = rng.permutation(B)
        if sorted(p[0::2]) not in ([0, 2], [1, 3]):
            return p


MOCO = [
    # id, method, preset, head, K, T, m, compile options, shuffle, splits, symmetric, optimizer, lr, momentum, wd,
    # schedule (None: the preset's cosine over the run, replicated in the reference)
    ("moco-v2", "moco-v2", None, [12, 16], 10, 0.2, 0.9, ["--bn-splits", "2"], 1, 2, 0, "sgd", 0.03, 0.9, 1e-4, None),
    ("moco-cifar-symmetric", "moco-v2", "moco-cifar", [16], 11, 0.1, 0.9, ["--bn-splits", "2", "--symmetric"], 1, 2,
     1, "sgd", 0.06, 0.9, 5e-4, "constant"),
    ("moco-v1", "moco-v1", None, [16], 6, 0.07, 0.9, ["--no-shuffle-bn"], 0, 1, 0, "sgd", 0.03, 0.9, 1e-4,
     "constant"),
    # the recipe's T 0.05 makes this tiny net's loss ~1e-6 (see test_methods.py): T 0.5; weight decay 1e-2, not
    # the recipe's 1e-6, which is invisible in 5 steps
    ("moco-lowcompute", "moco-v2", "moco-lowcompute", [10, 8, 6], 9, 0.5, 0.9, [], 0, 1, 0, "adam", 1e-3, 0.0,
     1e-2, "constant"),
]


@pytest.mark.parametrize("case", MOCO, ids=[c[0] for c in MOCO])
def test_moco_trainer_matches_pytorch(contra_bin, tmp_path, tiny_onnx, case):
    import torch
    name, method, preset, head, K, T, m, extra, shuffle, splits, symmetric, optim, lr, mom, wd, sched = case
    xs = _views(100)
    rng = np.random.default_rng(9)
    perms = None
    if shuffle:
        perms = np.stack([np.stack([_shuffle(rng) for _ in range(2)]) if symmetric else _shuffle(rng)
                          for _ in range(STEPS)]).astype(np.int64)
    opts = (["--preset", preset] if preset else []) + ["--head", ",".join(map(str, head)), "--queue", K,
                                                        "--temperature", T, "--ema", m, "--optimizer", optim,
                                                        "--momentum", mom, "--weight-decay", wd] + extra
    tr = _Trainer(contra_bin, tmp_path, tiny_onnx, method, opts, xs, perm=perms)
    sched_args = ["--lr", lr] + (["--schedule", sched] if sched else [])
    _, _, init = tr.run(0, *sched_args)
    losses, lrs, final = tr.run(STEPS, *sched_args)

    # the initial state: the key encoder is a copy of the query encoder, the queue holds unit columns
    for k in ("conv1.weight", "bn2.running_var", "head.0.weight"):
        assert np.array_equal(init[k], init["key/" + k]), k
    assert init["queue"].shape == (head[-1], K)
    assert np.allclose(np.linalg.norm(init["queue"], axis=0), 1, atol=1e-5)
    assert int(init["queue_ptr"][0]) == 0

    q_net = _MoCoNet.make(head, splits=splits)
    k_net = _MoCoNet.make(head, splits=splits)
    _sync(q_net, init)
    _sync(k_net, init, "key/")
    q_net.train()
    k_net.train()
    opt = _make_opt(optim, q_net.parameters(), lr, mom, wd)
    queue, ptr, ref_losses, ref_lrs = torch.from_numpy(init["queue"]).double(), 0, [], []
    for s in range(STEPS):
        cur = _cosine(lr, s) if sched is None else lr
        ref_lrs.append(cur)
        _set_lr(opt, cur)
        opt.zero_grad()
        x1, x2 = _batch(xs, s)
        if not shuffle:
            p = [None, None]
        elif symmetric:
            p = [torch.from_numpy(perms[s, 0]), torch.from_numpy(perms[s, 1])]
        else:
            p = [torch.from_numpy(perms[s]), None]
        loss, newq, ptr = _moco_reference(q_net, k_net, queue, ptr, x1, x2, p, T, m, symmetric)
        queue = torch.from_numpy(newq)
        ref_losses.append(loss)
        opt.step()
    assert np.allclose(lrs, ref_lrs, rtol=1e-6, atol=1e-12), (lrs, ref_lrs)
    ref = {k: v.detach().numpy() for k, v in _moco_named(q_net)}
    ref.update({"key/" + k: v.detach().numpy() for k, v in _moco_named(k_net)})
    ref.update(_buffers(q_net))
    ref.update(_buffers(k_net, "key/"))
    ref.update(_opt_slots(opt, _moco_named(q_net)))
    ref["queue"] = queue.numpy()
    ref["queue_ptr"] = np.array([ptr], dtype=np.int64)
    assert ptr == (STEPS * B * (2 if symmetric else 1)) % K
    _compare(name, losses, ref_losses, final, ref)
    # the run did move the query and key encoders, and the key lags the query
    assert _rel(final["conv1.weight"], init["conv1.weight"], 1e-12) > 1e-4
    assert _rel(final["key/conv1.weight"], init["conv1.weight"], 1e-12) > 1e-5
    assert not np.allclose(final["key/conv1.weight"], final["conv1.weight"], rtol=1e-5, atol=0)


# ---------------------------------------------------------------- SimCLR and SupCon

CON = [  # id, method, views, labels, contrast mode, T, base T, optimizer, lr, momentum, wd
    ("simclr-lars", "simclr", 2, False, "all", 0.2, None, "lars", 0.3, 0.9, 1e-3),  # the recipe's wd 1e-6 is invisible
    ("simclr-sgd", "simclr", 2, False, "all", 0.5, None, "sgd", 0.05, 0.9, 1e-4),
    ("supcon-2views", "supcon", 2, True, "all", 0.1, 0.07, "sgd", 0.05, 0.9, 1e-4),
    ("supcon-3views-one", "supcon", 3, True, "one", 0.2, 0.07, "sgd", 0.05, 0.9, 1e-4),
]


@pytest.mark.parametrize("case", CON, ids=[c[0] for c in CON])
def test_simclr_supcon_trainer_matches_pytorch(contra_bin, tmp_path, tiny_onnx, case):
    import torch
    F = torch.nn.functional
    name, method, nv, use_labels, mode, T, base_T, optim, lr, mom, wd = case
    xs = _views(200, nv)
    labels = np.random.default_rng(4).integers(0, 3, STEPS * B).astype(np.int64) if use_labels else None
    opts = ["--head", "12,8", "--temperature", T, "--optimizer", optim, "--momentum", mom, "--weight-decay", wd]
    if method == "supcon":
        opts += ["--views", nv, "--contrast-mode", mode, "--base-temperature", base_T, "--labels"]
    tr = _Trainer(contra_bin, tmp_path, tiny_onnx, method, opts, xs, labels=labels)
    _, _, init = tr.run(0, "--lr", lr, "--schedule", "constant")
    losses, _, final = tr.run(STEPS, "--lr", lr, "--schedule", "constant")

    net = _net(head=([12, 8], False, True, True, 0))
    _sync(net, init)
    net.train()
    opt = _make_opt(optim, net.parameters(), lr, mom, wd)
    ref_losses = []
    for s in range(STEPS):
        opt.zero_grad()
        z = F.normalize(net.head(net.enc(torch.cat(_batch(xs, s)))), dim=1)
        if method == "simclr":
            loss = _simclr_loss(z, T)
        else:
            y = torch.from_numpy(labels[s * B:(s + 1) * B])
            loss = _supcon_loss(torch.stack(torch.split(z, B), dim=1), y, T, mode, base_T)
        loss.backward()
        opt.step()
        ref_losses.append(loss.item())
    ref = {k: v.detach().numpy() for k, v in _moco_named(net)}
    ref.update(_buffers(net))
    ref.update(_opt_slots(opt, _moco_named(net)))
    _compare(name, losses, ref_losses, final, ref)
    assert _rel(final["head.0.weight"], init["head.0.weight"], 1e-12) > 1e-5  # the optimizer moved it


# ---------------------------------------------------------------- BYOL and SimSiam

@pytest.mark.parametrize("use_momentum", [1, 0], ids=["byol", "byol-no-momentum"])
def test_byol_trainer_matches_pytorch(contra_bin, tmp_path, tiny_onnx, use_momentum):
    """byol-pytorch: both views through the online network as one batch, the target (an EMA copy whose decay
    rises to 1 on a cosine, or the online network itself under no-grad) on the same batch, the symmetric
    normalised-MSE loss, the optimizer step, then update_moving_average()."""
    import torch
    # SGD: see test_methods.py for Adam and the zero-gradient biases. lr 0.01 without momentum: the SimSiamMLP
    # projector (BatchNorm over 4 samples, affine-free at the output) amplifies rounding from step to step; at
    # lr 0.05 PyTorch's own float32 run is ~4e-4 away from its float64 run after 5 steps (as is the trainer)
    base, lr, mom, wd = 0.9, 0.05 if use_momentum else 0.01, 0.9, 1e-4
    xs = _views(300)
    opts = ["--head", "16,8", "--predictor", "16,8", "--ema", base, "--optimizer", "sgd", "--lr", lr,
            "--momentum", mom, "--weight-decay", wd]
    opts += ["--ema-schedule", "cosine"] if use_momentum else ["--no-momentum"]
    tr = _Trainer(contra_bin, tmp_path, tiny_onnx, "byol", opts, xs)
    _, _, init = tr.run(0, "--schedule", "constant")
    losses, lrs, final = tr.run(STEPS, "--schedule", "constant")
    assert np.allclose(lrs, lr, rtol=1e-7)

    if use_momentum:
        pspec = ([16, 8], True, True, True, 0)
    else:  # byol-pytorch's SimSiamMLP projector when use_momentum is False
        pspec = ([16, 16, 8], True, False, False, 2)
    net = _net(projector=pspec, predictor=([16, 8], True, True, True, 0))
    _sync(net, init)
    target = None
    if use_momentum:
        target = _net(projector=pspec)
        _sync(target, init, "target/")
        for k in ("conv1.weight", "projector.0.weight", "bn1.running_mean"):
            assert np.array_equal(init[k], init["target/" + k]), k
        target.train()
    else:
        assert not any(k.startswith("target/") for k in final)
    net.train()
    opt = _make_opt("sgd", net.parameters(), lr, mom, wd)
    ref_losses = []
    for s in range(STEPS):
        opt.zero_grad()
        images = torch.cat(_batch(xs, s))
        p1, p2 = net.predictor(net.projector(net.enc(images))).chunk(2, dim=0)
        with torch.no_grad():
            t = target if use_momentum else net
            t1, t2 = t.projector(t.enc(images)).detach().chunk(2, dim=0)
        loss = (_byol_loss_fn(p1, t2) + _byol_loss_fn(p2, t1)).mean()
        loss.backward()
        opt.step()
        ref_losses.append(loss.item())
        if use_momentum:  # tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, as the trainer feeds it
            tau = float(np.float32(1 - (1 - base) * (np.cos(np.pi * s / STEPS) + 1) / 2))
            with torch.no_grad():
                for part in ("enc", "projector"):
                    for po, pt in zip(getattr(net, part).parameters(), getattr(target, part).parameters()):
                        pt.data = pt.data * tau + (1 - tau) * po.data
    ref = {k: v.detach().numpy() for k, v in _moco_named(net)}
    ref.update(_buffers(net))
    ref.update(_opt_slots(opt, _moco_named(net)))
    if use_momentum:
        ref.update({"target/" + k: v.detach().numpy() for k, v in _moco_named(target)})
        ref.update(_buffers(target, "target/"))
    _compare("byol" if use_momentum else "byol-no-momentum", losses, ref_losses, final, ref)
    if use_momentum:
        assert not np.allclose(final["target/conv1.weight"], final["conv1.weight"], rtol=1e-5, atol=0)


def test_simsiam_trainer_matches_pytorch(contra_bin, tmp_path, tiny_onnx):
    """SimSiam: each view through encoder + projector separately, the predictor on each, the symmetric negative
    cosine with stop-gradient."""
    import torch
    F = torch.nn.functional
    # lr 0.01: at 0.05 this tiny SimSiam amplifies float32 rounding from step to step (PyTorch's own float32 run
    # is ~4e-4 away from its float64 run after 5 steps, as is the trainer)
    h, p, lr, mom, wd = 16, 6, 0.01, 0.9, 1e-4
    xs = _views(400)
    opts = ["--head", f"{h},{h},{h}", "--predictor", f"{p},{h}", "--optimizer", "sgd", "--momentum", mom,
            "--weight-decay", wd]
    tr = _Trainer(contra_bin, tmp_path, tiny_onnx, "simsiam", opts, xs)
    _, _, init = tr.run(0, "--lr", lr, "--schedule", "constant")
    losses, _, final = tr.run(STEPS, "--lr", lr, "--schedule", "constant")
    net = _net(projector=([h, h, h], True, False, False, 2), predictor=([p, h], True, False, True, 0))
    _sync(net, init)
    net.train()
    opt = _make_opt("sgd", net.parameters(), lr, mom, wd)
    ref_losses = []
    for s in range(STEPS):
        opt.zero_grad()
        x1, x2 = _batch(xs, s)
        z1, z2 = net.projector(net.enc(x1)), net.projector(net.enc(x2))
        p1, p2 = net.predictor(z1), net.predictor(z2)
        loss = -(F.cosine_similarity(p1, z2.detach(), dim=-1).mean() +
                 F.cosine_similarity(p2, z1.detach(), dim=-1).mean()) * 0.5
        loss.backward()
        opt.step()
        ref_losses.append(loss.item())
    ref = {k: v.detach().numpy() for k, v in _moco_named(net)}
    ref.update(_buffers(net))
    ref.update(_opt_slots(opt, _moco_named(net)))
    # the loss is a mean of cosines (in [-1, 1]) and may cross 0: its error is measured against max(|loss|, 1)
    _compare("simsiam", losses, ref_losses, final, ref, loss_scale=1.0)


# ---------------------------------------------------------------- a real encoder

# 2 steps, not 5: with 4 images per view in 2 BatchNorm splits, this trajectory comes within float32 rounding
# of ReLU kinks: at step 3 a pre-activation at the output of layer3.0 is 7.2e-6 from 0 (1.3e-6 of the block's
# largest), at step 4 others are. Which side a float32 computation lands on depends on its rounding: direct
# convolutions and PyTorch's float32 run happen to stay within 1e-5 of the float64 run through step 3, the
# trainer's Winograd F(2x2, 3x3) convolutions (about 2x the direct rounding) cross at step 3 (1.8e-2 in
# layer3.0's momentum buffers), and from step 4 on PyTorch's own float32 run is 1e-4 (parameters) to 5e-2
# (momentum buffers) away from float64. Through step 2 every one of them is within 1e-5.
RN_STEPS = 2


@pytest.mark.slow
def test_moco_v2_trainer_cifar_resnet18(contra_bin, tmp_path):
    """MoCo v2 with shuffle BN (2 splits) on the exported CIFAR ResNet-18 at 16x16, 2 steps of SGD."""
    import torch
    import models
    from test_methods import _split_bn
    size, K, T, m, lr, mom, wd, splits = 16, 10, 0.2, 0.9, 0.03, 0.9, 1e-4, 2
    path = models.export("cifar_resnet18", "bn_rand", 13, batch=B, size=size)
    xs = _views(500, size=size)
    rng = np.random.default_rng(13)
    perms = np.stack([_shuffle(rng) for s in range(STEPS)]).astype(np.int64)
    opts = ["--head", "512,16", "--queue", K, "--temperature", T, "--ema", m, "--bn-splits", splits,
            "--momentum", mom, "--weight-decay", wd]
    tr = _Trainer(contra_bin, tmp_path, path, "moco-v2", opts, xs, perm=perms, size=size)
    _, _, init = tr.run(0, "--lr", lr, "--schedule", "constant")
    losses, _, final = tr.run(RN_STEPS, "--lr", lr, "--schedule", "constant")

    def make():
        net = torch.nn.Module()
        net.enc = models._build("cifar_resnet18", "bn_rand")
        net.enc.fc = torch.nn.Identity()
        _split_bn(net.enc, splits)
        net.head = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 16))
        return net

    q_net, k_net = make(), make()
    _sync(q_net, init)
    _sync(k_net, init, "key/")
    q_net.train()
    k_net.train()
    opt = _make_opt("sgd", q_net.parameters(), lr, mom, wd)
    queue, ptr, ref_losses = torch.from_numpy(init["queue"]).double(), 0, []
    for s in range(RN_STEPS):
        opt.zero_grad()
        x1, x2 = _batch(xs, s)
        loss, newq, ptr = _moco_reference(q_net, k_net, queue, ptr, x1, x2, [torch.from_numpy(perms[s]), None], T,
                                          m, False)
        queue = torch.from_numpy(newq)
        ref_losses.append(loss)
        opt.step()
    ref = {k: v.detach().numpy() for k, v in _moco_named(q_net)}
    ref.update({"key/" + k: v.detach().numpy() for k, v in _moco_named(k_net)})
    ref.update(_buffers(q_net))
    ref.update(_buffers(k_net, "key/"))
    ref.update(_opt_slots(opt, _moco_named(q_net)))
    ref["queue"] = queue.numpy()
    ref["queue_ptr"] = np.array([ptr], dtype=np.int64)
    _compare("moco-v2 cifar_resnet18", losses, ref_losses, final, ref)
