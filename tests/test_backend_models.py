# test_backend_models.py — torchvision encoders exported by torch.onnx, run by
# 'contra run' (the C backend) and compared with onnxruntime at batch 1 and 8:
# max abs diff <= 1e-4 * max |output|. Exports have a dynamic batch axis so
# one file serves both batches (ONNX-NOTES.md section 3).
import os
import pathlib
import subprocess

import numpy as np
import pytest

import models


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # one compile cache per test session (a program holds the model's
    # parameters, ~100 MB for resnet50, so no cache outlives pytest's tmp dirs)
    return tmp_path_factory.mktemp("contra-cache")


NAMES = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small",
         "efficientnet_b0", "cifar_resnet18"]

CASES = []
for name in NAMES:
    for mode in ("eval", "bn"):
        for batch in (1, 8):
            marks = [pytest.mark.slow] if batch == 8 or name in ("resnet50", "efficientnet_b0") else []
            CASES.append(pytest.param(name, mode, batch, marks=marks, id=f"{name}-{mode}-b{batch}"))
# Default initialisation makes the MobileNet/EfficientNet outputs tiny; also
# check them with randomised BatchNorm statistics, where the values are O(1).
for name in ("mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"):
    CASES.append(pytest.param(name, "bn_rand", 2, marks=[pytest.mark.slow], id=f"{name}-bn_rand-b2"))


def contra_run(contra_bin, model, batch, x, out, cache, extra=()):
    env = dict(os.environ, CONTRA_CACHE=str(cache))
    cmd = [str(contra_bin), "run", str(model), "--batch", str(batch),
           "--input", str(x), "--output", str(out), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stderr[-4000:]}"
    return p


@pytest.mark.parametrize("name,mode,batch", CASES)
def test_model_matches_onnxruntime(contra_bin, tmp_path, cache_dir, name, mode, batch):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    path = models.export(name, mode, 13, dynamic=True)
    feeds = models.inputs(path, seed=batch, batch=batch)
    assert len(feeds) == 1
    (iname, x), = feeds.items()
    np.save(tmp_path / "x.npy", x)
    contra_run(contra_bin, path, batch, tmp_path / "x.npy", tmp_path / "y.npy", cache_dir)
    got = np.load(tmp_path / "y.npy")
    ref = models.ort_run(path, feeds, threads=2)[0]
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert np.all(np.isfinite(got))
    scale = np.abs(ref).max()
    err = np.abs(got - ref).max()
    assert scale > 0
    assert err <= 1e-4 * scale, f"{name} {mode} batch {batch}: max abs diff {err}, max |ref| {scale}"
    # per-image agreement (a batch bug would show in some image)
    for i in range(batch):
        assert np.abs(got[i] - ref[i]).max() <= 1e-4 * scale, f"image {i}"


@pytest.mark.slow
def test_resnet50_arena_report(contra_bin, tmp_path):
    """The planned arena beside the naive sum of intermediates (printed by
    'contra compile'); the plan must be at most 40% of the naive sum."""
    pytest.importorskip("torch")
    path = models.export("resnet50", "bn", 13, dynamic=True)
    p = subprocess.run([str(contra_bin), "compile", str(path), "--infer", "--batch", "8",
                        "-o", str(tmp_path / "r50")], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    print(p.stdout)
    import re
    m = re.search(r"arena ([0-9.]+) MiB \(intermediates without reuse ([0-9.]+) MiB, ([0-9.]+)%; "
                  r"im2col scratch ([0-9.]+) MiB\)", p.stdout)
    assert m, p.stdout
    arena, naive, pct, scratch = (float(v) for v in m.groups())
    assert naive > 100
    assert arena - scratch <= 0.40 * naive


@pytest.mark.parametrize("tile", ["", "0", "2", "4"])
def test_winograd_tiles_match_onnxruntime(contra_bin, tmp_path, tile):
    """CONTRA_WINOGRAD picks the 3x3 stride-1 convolutions' kernel (0: direct GEMM, 2: F(2x2,3x3), 4: F(4x4,3x3);
    unset, an inference program's fixed weights take F(4x4) where it fits, else F(2x2)); each choice is what the
    generated program calls, and each agrees with onnxruntime on the CIFAR ResNet-18 (whose 3x3 layers all
    qualify at batch 8)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    path = models.export("cifar_resnet18", "bn", 13, dynamic=True)
    env = dict(os.environ, CONTRA_WINOGRAD=tile, CONTRA_CACHE=str(tmp_path / "cache"))
    p = subprocess.run([str(contra_bin), "compile", str(path), "--infer", "--batch", "8", "-o", str(tmp_path / "p")],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr
    src = (tmp_path / "p" / "model.c").read_text()
    calls = {m: src.count(f"ct_conv_winograd_packed({m}, &g, x0") for m in (2, 4)}
    # 3x3 stride-1 with >= 16 channels: layer1 4, layer2..4 3 each; at 4x4 (layer4) F(4x4) has 8 tiles in the
    # batch, fewer than the 32 Winograd needs, and the default takes F(2x2) there
    want = {"": {2: 3, 4: 10}, "0": {2: 0, 4: 0}, "2": {2: 13, 4: 0}, "4": {2: 0, 4: 10}}[tile]
    assert calls == want, f"Winograd convolutions per tile size {calls}, expected {want}"
    feeds = models.inputs(path, seed=3, batch=8)
    (iname, x), = feeds.items()
    np.save(tmp_path / "x.npy", x)
    p = subprocess.run([str(contra_bin), "run", str(path), "--batch", "8", "--input", str(tmp_path / "x.npy"),
                        "--output", str(tmp_path / "y.npy")], capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr
    got, ref = np.load(tmp_path / "y.npy"), models.ort_run(path, feeds, threads=2)[0]
    err, scale = np.abs(got - ref).max(), np.abs(ref).max()
    print(f"CONTRA_WINOGRAD={tile}: max abs diff {err:.3g} of max |ref| {scale:.3g}")
    assert err <= 1e-4 * scale
