# test_autodiff.py — autodiff and training-mode BatchNorm on a whole model:
# one supervised step (cross-entropy on the logits) of the CIFAR ResNet-18
# (and torchvision resnet18 and mobilenet_v2 at a small input size)
# exported with BatchNorm kept, run by the reference interpreter
# (tests/c/train_ref.c), against PyTorch autograd: the loss, every parameter
# gradient and every updated BatchNorm running statistic; also with MoCo's
# SplitBatchNorm. Also the C finite-difference suite (tests/c/test_autodiff.c).
import subprocess

import numpy as np
import pytest

import models

BATCH = 4


def _exe(build_dir, name):
    exe = build_dir / "tests" / name
    if not exe.exists():
        pytest.skip(f"{exe} is missing: build it first")
    return exe


def test_finite_differences(build_dir):
    p = subprocess.run([str(_exe(build_dir, "test_autodiff"))], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert " 0 failed" in p.stdout


class SplitBatchNorm(object):
    """MoCo CIFAR demo's SplitBatchNorm (facebookresearch/moco colab), built lazily
    so torch is only imported by the tests that need it."""

    @staticmethod
    def make(bn, num_splits):
        import torch

        class _Split(torch.nn.BatchNorm2d):
            def __init__(self, num_features, num_splits, **kw):
                super().__init__(num_features, **kw)
                self.num_splits = num_splits

            def forward(self, input):
                N, C, H, W = input.shape
                assert self.training
                running_mean_split = self.running_mean.repeat(self.num_splits)
                running_var_split = self.running_var.repeat(self.num_splits)
                outcome = torch.nn.functional.batch_norm(
                    input.view(-1, C * self.num_splits, H, W), running_mean_split, running_var_split,
                    self.weight.repeat(self.num_splits), self.bias.repeat(self.num_splits),
                    True, self.momentum, self.eps).view(N, C, H, W)
                self.running_mean.data.copy_(running_mean_split.view(self.num_splits, C).mean(dim=0))
                self.running_var.data.copy_(running_var_split.view(self.num_splits, C).mean(dim=0))
                return outcome

        s = _Split(bn.num_features, num_splits, eps=bn.eps, momentum=bn.momentum)
        s.load_state_dict(bn.state_dict())
        return s


def _swap_split_bn(module, splits):
    import torch
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            setattr(module, name, SplitBatchNorm.make(child, splits))
        else:
            _swap_split_bn(child, splits)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _to_float64(src, dst):
    """The ONNX model with every float tensor (initializers, constants, inputs,
    outputs) in float64: gradients of an ill-conditioned net (BatchNorm over a
    few values per channel) compared without float32 rounding noise."""
    import onnx
    from onnx import TensorProto, numpy_helper
    m = onnx.load(str(src))
    g = m.graph
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float64), a.t.name))
    for v in list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.DOUBLE
    del g.value_info[:]
    onnx.save(m, str(dst))


# (model, input size, BatchNorm splits, dtype, gradient tolerance). mobilenet_v2
# runs in float64: at a small input its last BatchNorms see 16 values per
# channel and float32 rounding alone moves some gradients by ~2% in PyTorch too.
# Mode "bn_rand" exports BatchNormalization in inference form (training_mode=0)
# with random statistics; "train" exports training_mode=1 with default init.
# The CIFAR ResNet-18 cases take ~33 s each under the sanitizers; the
# unsplit inference-form one runs in the long run (the 3-step supervised test
# covers that export by default).
CASES = [pytest.param("cifar_resnet18", "bn_rand", 16, 1, "float32", 1e-3, marks=pytest.mark.long),
         ("cifar_resnet18", "bn_rand", 16, 2, "float32", 1e-3),
         ("cifar_resnet18", "train", 16, 1, "float32", 1e-3), ("resnet18", "bn_rand", 32, 1, "float32", 1e-3),
         ("mobilenet_v2", "bn_rand", 64, 1, "float64", 1e-6)]


@pytest.mark.slow
@pytest.mark.parametrize("name,mode,size,splits,dtype,tol", CASES)
def test_model_step_matches_pytorch(build_dir, tmp_path, name, mode, size, splits, dtype, tol):
    import onnx
    import torch
    from onnx import numpy_helper

    exe = _exe(build_dir, "train_ref")
    path = models.export(name, mode, 13, batch=BATCH, size=size)
    model = path
    if dtype == "float64":
        model = tmp_path / "model64.onnx"
        _to_float64(path, model)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((BATCH, 3, size, size)).astype(dtype)
    y = np.array([1, 7, 3, 9], dtype=np.int64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.run([str(exe), str(model), str(out), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
                        "--splits", str(splits)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    grads, states = {}, {}
    for line in p.stdout.split("\n"):
        f = line.split()
        if f and f[0] == "grad":
            grads[f[2]] = np.load(out / f"grad{f[1]}.npy")
        elif f and f[0] == "state":
            states[f[2]] = np.load(out / f"state{f[1]}.npy")
    loss = float(np.load(out / "loss.npy"))

    # PyTorch, from the exported weights (so both start from the same bytes).
    m = models._build(name, mode)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    sd = m.state_dict()
    loaded = 0
    for k in sd:
        if k in inits:
            sd[k] = torch.from_numpy(inits[k].copy())
            loaded += 1
    m.load_state_dict(sd)
    assert loaded >= 20, f"only {loaded} tensors matched the export's initializers by name"
    if splits > 1:
        _swap_split_bn(m, splits)
    if dtype == "float64":
        m.double()
    m.train()
    for mod in m.modules():  # dropout is exported in its inference form: keep PyTorch's off too
        if isinstance(mod, torch.nn.Dropout):
            mod.eval()
    bufs = {k: v for k, v in m.named_buffers() if k.endswith("running_mean") or k.endswith("running_var")}
    before = {k: v.detach().numpy().copy() for k, v in bufs.items()}
    logits = m(torch.from_numpy(x))
    ref_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    ref_loss.backward()

    assert abs(loss - ref_loss.item()) <= 1e-5 * abs(ref_loss.item()), (loss, ref_loss.item())
    params = dict(m.named_parameters())
    assert set(grads) == set(params), (sorted(set(params) - set(grads)), sorted(set(grads) - set(params)))
    # Relative to the tensor's largest gradient; tensors whose gradient is zero
    # in exact arithmetic (a BatchNorm bias followed by another BatchNorm)
    # are measured against 1e-3 of the largest gradient of the model.
    floor = 1e-3 * max(float(np.max(np.abs(v.grad.numpy()))) for v in params.values())
    worst = max((float(np.max(np.abs(grads[k] - v.grad.numpy()))) /
                 max(float(np.max(np.abs(v.grad.numpy()))), floor), k) for k, v in params.items())
    print(f"{name} splits {splits} {dtype}: loss {loss:.7f} (PyTorch {ref_loss.item():.7f}), worst gradient {worst}")
    assert worst[0] <= tol, f"worst gradient: {worst[1]} relative error {worst[0]:.3g}"
    assert set(states) == set(bufs), (sorted(set(bufs) - set(states)), sorted(set(states) - set(bufs)))
    worst = max((_rel(states[k], bufs[k].numpy()), k) for k in bufs)
    moved = min(_rel(bufs[k].numpy(), before[k]) for k in bufs)  # the statistics did move
    print(f"{name} splits {splits}: worst running statistic {worst}, smallest move {moved:.3g}")
    assert moved > 1e-3
    assert worst[0] <= 1e-4, f"worst running statistic: {worst[1]} relative error {worst[0]:.3g}"
