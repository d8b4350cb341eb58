# test_cuda_backend.py — the CUDA backend (codegen/cuda_backend.c): every
# generated .cu is built with --target cuda-emu (gcc against runtime/cuda_emu,
# run on the CPU) and compared with the C backend's program on the same inputs:
# the single-node models of tests/test_ops.py and the training ops of
# tests/test_train_ops.py (awkward sizes included), whole ResNets, and MoCo v2
# training steps. With nvcc present the generated sources also build for
# sm_80/sm_90 and elementwise/reduction kernels must not spill (the binary is
# never run: CI proves the GPU path on the emulator, not on hardware).
import functools
import os
import re
import shutil
import subprocess

import numpy as np
import onnx
import pytest

from conftest import build_path

import test_ops
import test_train_ops as tto

ENV = dict(os.environ, OMP_NUM_THREADS="2")


def _prog_run():
    exe = build_path() / "tests" / "prog_run"
    if not exe.exists():
        pytest.skip(f"{exe} is missing: build it first")
    return exe


def _compile(contra_bin, model, out, target, *extra, check=True):
    p = subprocess.run([str(contra_bin), "compile", str(model), "--infer", "--target", target, "-q", "-o", str(out),
                        *map(str, extra)], capture_output=True, text=True, timeout=300, env=ENV)
    if check:
        assert p.returncode == 0, p.stderr[-4000:]
    return p


def _run(prog, outprefix, inputs):
    p = subprocess.run([str(_prog_run()), str(prog), str(outprefix), *map(str, inputs)], capture_output=True,
                       text=True, timeout=600, env=ENV)
    assert p.returncode == 0, p.stderr[-4000:]
    outs, i = [], 0
    while os.path.exists(f"{outprefix}{i}.npy"):
        outs.append(np.load(f"{outprefix}{i}.npy"))
        i += 1
    return outs


def _emu_and_c(contra_bin, model, tmp_path, inputs):
    """Compile model with both backends, run both on the same inputs: (emu outputs, C outputs)."""
    _compile(contra_bin, model, tmp_path / "c", "c")
    _compile(contra_bin, model, tmp_path / "emu", "cuda-emu")
    return _run(tmp_path / "emu", tmp_path / "e", inputs), _run(tmp_path / "c", tmp_path / "r", inputs)


def _agree(got, ref, rel=1e-5, what=""):
    assert len(got) == len(ref) and ref, f"{what}: {len(got)} outputs, C has {len(ref)}"
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.shape == b.shape and a.dtype == b.dtype, (what, i, a.shape, b.shape, a.dtype, b.dtype)
        if b.dtype.kind == "f":
            assert np.isfinite(a).all() == np.isfinite(b).all() or np.array_equal(np.isnan(a), np.isnan(b)), what
            fin = np.isfinite(b)
            scale = max(1.0, float(np.max(np.abs(b[fin]))) if fin.any() else 1.0)
            diff = float(np.max(np.abs(a[fin].astype(np.float64) - b[fin]))) if fin.any() else 0.0
            assert diff <= rel * scale, f"{what} output {i}: max abs diff {diff:.3g} > {rel * scale:.3g}"
        else:
            assert np.array_equal(a, b), f"{what} output {i}: integer outputs differ\n{a}\n{b}"


# ---------------------------------------------------------------- per op (tests/test_ops.py)

OPS = [c for c in test_ops.CASES if c.values[0].lowered]
# a quick subset (one or two of each kind); the whole list is marked slow
QUICK = {"conv_n2c13m13_7x7_k3s2p1d1g13", "conv_n2c7m13_7x9_k3s1p0d1g1_bias", "Relu", "Softmax_2x7x5_axis1", "LogSoftmax_1x1000_axis1",
         "Add_(2, 1, 4)_(1, 3, 1)", "ReduceSum_2x7x5x5_axes[2, 3]_keep1", "ReduceMax_int64", "GlobalAveragePool_2x3x7x7",
         "Transpose_perm", "Concat_axis1", "Split_input", "Gather_axis1_2d", "Pad_reflect", "Slice_neg_step",
         "ArgMax_axis-1_keep0_last1", "ReduceL2_3x13_axes[-1]_keep0", "Where", "Cast_float32_to_INT64"}


# and the first case of each convolution/pooling/normalisation/GEMM family
QUICK_PREFIXED = set()
for _p in OPS:
    _fam = _p.id.split("_")[0]
    if _fam in ("conv", "maxpool", "avgpool", "batchnorm", "gemm", "matmul") and \
            not any(q.split("_")[0] == _fam for q in QUICK_PREFIXED):
        QUICK_PREFIXED.add(_p.id)


def _ops_params():
    out = []
    for p in OPS:
        marks = () if p.id in QUICK or p.id in QUICK_PREFIXED else (pytest.mark.slow,)
        out.append(pytest.param(p.values[0], id=p.id, marks=marks))
    return out


@pytest.mark.parametrize("c", _ops_params())
def test_op_emu_matches_c(c, tmp_path, contra_bin):
    mp = tmp_path / "model.onnx"
    onnx.save(c.model(), str(mp))
    ins = test_ops._write_inputs(c, tmp_path)
    got, ref = _emu_and_c(contra_bin, mp, tmp_path, [a.split("=", 1)[1] for a in ins])
    _agree(got, ref, what=c.op)


def test_unsupported_op_is_named(tmp_path, contra_bin):
    """Ops the backend does not lower are reported with their node names, like the C backend."""
    c = next(p.values[0] for p in test_ops.CASES if p.id == "maxpool_indices")
    mp = tmp_path / "model.onnx"
    onnx.save(c.model(), str(mp))
    p = _compile(contra_bin, mp, tmp_path / "emu", "cuda-emu", check=False)
    assert p.returncode != 0 and "CUDA backend cannot lower" in p.stderr and "the_MaxPool" in p.stderr, p.stderr


# ---------------------------------------------------------------- training ops (tests/test_train_ops.py)

def _train_emu_vs_c(contra_bin, build_dir, tmp_path, op, inputs, n_out, attrs):
    model = tmp_path / "m.onnx"
    tto._model(model, op, inputs, [f"y{i}" for i in range(n_out)], attrs)
    paths = []
    for n, a in inputs:
        np.save(tmp_path / f"{n}.npy", a)
        paths.append(tmp_path / f"{n}.npy")
    got, ref = _emu_and_c(contra_bin, model, tmp_path, paths)
    # the test bodies compare got with ref (relative 2e-5) and, for the
    # optimizers, got with torch
    return got, ref


@pytest.fixture
def emu_vs_c(monkeypatch):
    monkeypatch.setattr(tto, "_run_both", _train_emu_vs_c)


def _wrap(fn):
    # a new function (marks added to it do not touch test_train_ops' own tests)
    @functools.wraps(fn)
    def test(*a, **k):
        return fn(*a, **k)
    test.pytestmark = list(getattr(fn, "pytestmark", [])) + [pytest.mark.usefixtures("emu_vs_c")]
    if fn.__name__ not in QUICK_TRAIN:
        test.pytestmark.append(pytest.mark.slow)
    return test


QUICK_TRAIN = {"test_conv_grads", "test_pool_grads", "test_batch_norm_train_and_grad", "test_lars_step",
               "test_adam_step", "test_softmax_cross_entropy"}
for _name in ("test_conv_grads", "test_unary_grads", "test_clip_grad_bounds_as_inputs", "test_softmax_grads",
              "test_pool_grads", "test_batch_norm_train_and_grad", "test_softmax_cross_entropy", "test_stop_gradient",
              "test_sgd_step", "test_adam_step", "test_lars_step"):
    if hasattr(tto, _name):
        globals()[_name + "_emu"] = _wrap(getattr(tto, _name))


# ---------------------------------------------------------------- nvcc: sm_80 and sm_90, no spills

def _nvcc():
    exe = os.environ.get("NVCC") or shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    return exe if os.path.exists(exe) or shutil.which(exe) else None


def _spills(report):
    """{(kernel, arch): (spill store bytes, spill load bytes)} from a -Xptxas -v report."""
    out, cur = {}, None
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for 'sm_(\d+)'", line)
        if m:
            cur = (m.group(1), m.group(2))
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and cur:
            out[cur] = (int(m.group(1)), int(m.group(2)))
            cur = None
    return out


NVCC_MODELS = ["conv_n2c7m13_7x9_k3s1p0d1g1_bias", "Softmax_2x7x5_axis1", "ReduceSum_2x7x5x5_axes[2, 3]_keep1",
               "Pad_reflect", "Gather_axis1_2d", "matmul_(2, 1, 3, 4)_(5, 4, 6)"]


def _check_nvcc_dir(out):
    report = (out / "ptxas.log").read_text()
    spills = _spills(report)
    for arch in ("80", "90"):
        ks = [k for k, a in spills if a == arch]
        assert ks, f"no kernel compiled for sm_{arch}:\n{report[-2000:]}"
    bad = {k: v for k, v in spills.items() if v != (0, 0)}
    assert not bad, f"kernels spill: {bad}"
    assert (out / "model.so").exists()
    art = build_path() / "cuda_ptxas"
    art.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "ptxas.log", art / f"backend_{out.parent.name}.txt")
    return spills


# ~11 s of nvcc each: two by default, the rest in the long run
@pytest.mark.parametrize("name", [n if i < 2 else pytest.param(n, marks=pytest.mark.long)
                                  for i, n in enumerate(NVCC_MODELS)])
def test_generated_cu_builds_with_nvcc(name, tmp_path, contra_bin):
    if not _nvcc():
        pytest.skip("nvcc not found (install the CUDA toolkit)")
    c = next(p.values[0] for p in test_ops.CASES if p.id == name)
    mp = tmp_path / "model.onnx"
    onnx.save(c.model(), str(mp))
    _compile(contra_bin, mp, tmp_path / "gpu", "cuda")
    spills = _check_nvcc_dir(tmp_path / "gpu")
    # the node's own kernels (k<id>_...) and the library's are all there, for both targets
    assert any(k.startswith("_Z") and "ct_block_reduce" not in k for k, _ in spills)


# ---------------------------------------------------------------- whole models

def _model_tool():
    exe = build_path() / "tests" / "model_tool"
    if not exe.exists():
        pytest.skip(f"{exe} is missing: build it first")
    return exe


@pytest.mark.parametrize("name,batch,size", [("resnet18_small_w16", 2, 16), pytest.param("resnet18_small", 2, 32,
                                                                                       marks=pytest.mark.slow)])
def test_resnet_inference_emu_matches_c(name, batch, size, tmp_path, contra_bin):
    """CIFAR ResNet-18 (3x3 stem, no max-pool; _w16: a quarter of the width) for inference."""
    mp = tmp_path / "model.onnx"
    p = subprocess.run([str(_model_tool()), name, "--classes", "10", "--batch", str(batch), "--random-bn",
                        "--size", f"{size}x{size}", "--onnx", str(mp)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    x = np.random.default_rng(3).standard_normal((batch, 3, size, size)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    got, ref = _emu_and_c(contra_bin, mp, tmp_path, [tmp_path / "x.npy"])
    assert ref[0].shape == (batch, 10) and np.abs(ref[0]).max() > 0
    _agree(got, ref, what=name)


def test_fused_conv_inference_emu_matches_c(tmp_path, contra_bin):
    """torchvision's ResNet-18 exported in eval mode (BatchNorm folded into the convolutions): its Conv + ReLU
    and Conv + residual Add + ReLU are FusedConv nodes, which the CUDA backend runs as the convolution and
    then ct_add_relu_k."""
    import models
    mp = models.export("resnet18", "eval", 13, batch=2, size=32)
    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    got, ref = _emu_and_c(contra_bin, mp, tmp_path, [tmp_path / "x.npy"])
    src = (tmp_path / "emu" / "model.cu").read_text()
    assert src.count("CT_LAUNCH(ct_add_relu_k") == 17  # the stem and both convolutions of the 8 blocks
    assert ref[0].shape == (2, 1000) and np.abs(ref[0]).max() > 0
    _agree(got, ref, what="resnet18 eval")


def _moco(contra_bin, tmp_path, model, size, batch, target, lr):
    out = tmp_path / target
    p = subprocess.run([str(contra_bin), "compile", "--model", model, "--size", str(size), "--method", "moco-v2",
                        "--batch", str(batch), "--queue", "64", "--bn-splits", "1", "--no-shuffle-bn", "--lr", str(lr),
                        "--target", target, "-q", "-o", str(out)], capture_output=True, text=True, timeout=600,
                       env=ENV)
    assert p.returncode == 0, p.stderr[-4000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model,size,batch", [("resnet18_small_w16", 16, 8),
                                              pytest.param("resnet18_small", 32, 8, marks=pytest.mark.long)])
def test_moco_v2_steps_emu_match_c(model, size, batch, tmp_path, contra_bin):
    """5 MoCo v2 steps of the CIFAR ResNet-18 trainer: --target cuda-emu against the C
    backend, relative error <= 1e-4 on every loss and every parameter/state tensor.
    The full-width net at 32x32 takes about 6 minutes in the emulator (a "long" test,
    CONTRA_LONG_TESTS=1); the default run takes the quarter-width one at 16x16.
    lr 1e-3, not the preset's 0.03: at batch 8 the BatchNorm nets amplify the last-bit
    differences of any two float32 implementations step by step (measured on the
    full-width net: step-1 losses agree to 6e-8, and at lr 0.03 the step-4 losses
    differ by 1.1e-4; at lr 1e-3 by 1.4e-6), which would test the conditioning of
    the net, not the kernels."""
    lr = 1e-3
    rng = np.random.default_rng(0)
    views = []
    for v in range(2):
        views.append(tmp_path / f"v{v}.npy")
        np.save(views[-1], rng.standard_normal((batch, 3, size, size)).astype(np.float32))
    res = {}
    for target in ("c", "cuda-emu"):
        d = _moco(contra_bin, tmp_path, model, size, batch, target, lr)
        p = subprocess.run([str(d / "trainer"), "--views", ",".join(map(str, views)), "--steps", "5", "--save-params",
                            str(tmp_path / f"p_{target}"), "--out", str(tmp_path / f"run_{target}"), "--progress",
                            "plain"], capture_output=True, text=True, timeout=900, env=ENV)
        assert p.returncode == 0, p.stderr[-4000:]
        res[target] = [float(m) for m in re.findall(r"^step \d+ .* loss (\S+)$", p.stdout, re.M)]
        assert len(res[target]) == 5, p.stdout
    for a, b in zip(res["cuda-emu"], res["c"]):
        assert abs(a - b) <= 1e-4 * abs(b), (res["cuda-emu"], res["c"])
    names = sorted(os.path.relpath(q, tmp_path / "p_c") for q in (tmp_path / "p_c").rglob("*.npy"))
    assert len(names) > 100
    # Normwise relative errors per group of tensors (max |a - b| over the group / max |b|): a
    # BatchNorm bias starts at 0 and after 5 steps at lr 1e-3 is ~1e-5, so its own relative
    # error says nothing about the kernels. The optimizer slots are sums of raw gradients,
    # where a ReLU input within rounding of 0 flipping sign shows at full size (the C backend
    # against itself with 1 and 2 threads: 0.6% in one momentum buffer), so they get 5e-2.
    groups = {}
    for n in names:
        a, b = np.load(tmp_path / "p_cuda-emu" / n), np.load(tmp_path / "p_c" / n)
        if b.dtype.kind != "f":
            assert np.array_equal(a, b), n
            continue
        g = ("optimizer slots" if n.startswith("optim/") else "BatchNorm statistics" if "running_" in n else
             "key encoder" if n.startswith("key/") else "queue" if n.startswith("queue") else "parameters")
        groups.setdefault(g, []).append((n, a.astype(np.float64), b.astype(np.float64)))
    assert set(groups) == {"optimizer slots", "BatchNorm statistics", "key encoder", "queue", "parameters"}, set(groups)
    for g, ts in groups.items():
        scale = max(float(np.max(np.abs(b))) for _, _, b in ts)
        err, n = max((float(np.max(np.abs(a - b))), n) for n, a, b in ts)
        tol = 5e-2 if g == "optimizer slots" else 1e-4
        print(f"{model}: {g}: normwise relative error {err / scale:.3g} (worst in {n})")
        assert err <= tol * scale, f"{g}: largest error {err:.3g} in {n}, {err / scale:.3g} of the group's scale"


def test_cuda_trainer_graph_replay_staging_and_resume(tmp_path, contra_bin):
    """The CUDA trainer's step path (program ABI 3): inputs staged through pinned memory on a
    stream of their own, the first step eager, every later one a replay of the step captured once
    as a CUDA graph per staging slot. Replays equal the eager steps bit for bit
    (CONTRA_CUDA_GRAPHS=0), and a run stopped after 2 steps and resumed from its checkpoint equals
    the 4-step run bit for bit: the state read from the checkpoint into the host image reaches the
    device, and the device's state reaches the checkpoint."""
    size, batch = 16, 8
    d = _moco(contra_bin, tmp_path, "resnet18_small_w16", size, batch, "cuda-emu", 1e-3)
    rng = np.random.default_rng(0)
    views = []
    for v in range(2):
        views.append(tmp_path / f"v{v}.npy")
        np.save(views[-1], rng.standard_normal((4 * batch, 3, size, size)).astype(np.float32))

    def run(tag, steps, *extra, env=None):
        p = subprocess.run([str(d / "trainer"), "--views", ",".join(map(str, views)), "--steps", str(steps),
                            "--schedule", "constant", "--progress", "plain", *map(str, extra)],
                           capture_output=True, text=True, timeout=900, env=dict(ENV, **(env or {})))
        assert p.returncode == 0, p.stderr[-4000:]
        return p

    p = run("graph", 4, "--save-params", tmp_path / "p_graph", "--out", tmp_path / "r_graph",
            env={"CONTRA_CUDA_VERBOSE": "1"})
    captured = re.findall(r"captured as a CUDA graph \(staging slot (\d)\)", p.stderr)
    assert sorted(captured) == ["0", "1"], p.stderr[-2000:]  # once per slot, then replayed
    losses = re.findall(r"^step \d+ .* loss (\S+)$", p.stdout, re.M)
    run("eager", 4, "--save-params", tmp_path / "p_eager", "--out", tmp_path / "r_eager",
        env={"CONTRA_CUDA_GRAPHS": "0"})
    run("first", 2, "--ckpt-every", 1, "--out", tmp_path / "r_res")
    q = run("resumed", 4, "--resume", tmp_path / "r_res", "--out", tmp_path / "r_res", "--save-params",
            tmp_path / "p_res")
    assert re.findall(r"^step \d+ .* loss (\S+)$", q.stdout, re.M) == losses[2:], (q.stdout, losses)
    names = sorted(str(f.relative_to(tmp_path / "p_graph")) for f in (tmp_path / "p_graph").rglob("*.npy"))
    assert len(names) > 100
    for other in ("p_eager", "p_res"):
        bad = [n for n in names if np.load(tmp_path / "p_graph" / n).tobytes() !=
               np.load(tmp_path / other / n).tobytes()]
        assert not bad, f"{other}: {len(bad)} tensors differ, e.g. {bad[:5]}"
