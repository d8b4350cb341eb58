# models.py — torchvision models exported to ONNX for the tests, cached in
# tests/_artifacts/models/ (keyed by model, mode, opset, batch, size and the
# torch version), plus deterministic inputs and an onnxruntime reference run.
"""Test models.

    export(name, mode="eval", opset=13, batch=1, size=None, dynamic=False)
        -> pathlib.Path of a cached .onnx file

names: resnet18 resnet34 resnet50 mobilenet_v2 mobilenet_v3_small
       efficientnet_b0 cifar_resnet18
modes:
    eval     model.eval(), default export, do_constant_folding=True
             (BatchNorm folded into Conv, ONNX-NOTES section 2)
    bn       eval mode, TrainingMode.PRESERVE, no folding: BatchNormalization
             kept with training_mode=0; default init (BN ones/zeros), so the
             exporter's Identity dedup fan-out is present (ONNX-NOTES section 1)
    bn_rand  like bn but BN running stats and affine params randomised
    train    TrainingMode.TRAINING, no folding: BN with training_mode=1

Exports run once per key; a file lock (fcntl) keeps two processes from
exporting the same file at once and a temp file + rename means a reader never
sees a partial file.
"""
import fcntl
import os
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
# CONTRA_TEST_CACHE moves the cache (e.g. to time a cold run).
CACHE = pathlib.Path(os.environ.get("CONTRA_TEST_CACHE", ROOT / "tests" / "_artifacts" / "models"))

NAMES = ("resnet18", "resnet34", "resnet50", "mobilenet_v2",
         "mobilenet_v3_small", "efficientnet_b0", "cifar_resnet18")
MODES = ("eval", "bn", "bn_rand", "train")


def default_size(name):
    return 32 if name.startswith("cifar") else 224


def _torch_version():
    import torch
    return torch.__version__.replace("+", "_")


def _build(name, mode):
    import torch
    import torchvision

    torch.manual_seed(0)
    if name == "cifar_resnet18":
        m = torchvision.models.resnet18(weights=None, num_classes=10)
        m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = torch.nn.Identity()
    elif name in NAMES:
        m = getattr(torchvision.models, name)(weights=None)
    else:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(NAMES)}")
    if mode == "bn_rand":
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    n = mod.num_features
                    mod.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                    mod.running_var.copy_(1.0 + 0.2 * torch.rand(n, generator=g))
                    mod.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=g))
                    mod.bias.copy_(0.1 * torch.randn(n, generator=g))
    if mode == "train":
        m.train()
    else:
        m.eval()
    return m


def _export_to(path, name, mode, opset, batch, size, dynamic):
    import torch

    m = _build(name, mode)
    x = torch.zeros(batch, 3, size, size)
    kw = dict(opset_version=opset, input_names=["input"], output_names=["output"])
    if dynamic:
        kw["dynamic_axes"] = {"input": {0: "N"}, "output": {0: "N"}}
    if mode == "eval":
        kw.update(do_constant_folding=True)
    elif mode in ("bn", "bn_rand"):
        kw.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    elif mode == "train":
        kw.update(training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    else:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    with torch.no_grad():
        torch.onnx.export(m, x, str(path), **kw)


def export(name, mode="eval", opset=13, batch=1, size=None, dynamic=False):
    """Return the path of the cached ONNX export, exporting it if needed."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if name not in NAMES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(NAMES)}")
    size = size or default_size(name)
    CACHE.mkdir(parents=True, exist_ok=True)
    b = "N" if dynamic else str(batch)
    key = f"{name}-{mode}-op{opset}-b{b}-s{size}-torch{_torch_version()}"
    path = CACHE / f"{key}.onnx"
    if path.exists():
        return path
    with open(CACHE / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():
                return path
            tmp = CACHE / f".{key}.{os.getpid()}.tmp.onnx"
            try:
                _export_to(tmp, name, mode, opset, batch, size, dynamic)
                os.replace(tmp, path)
            finally:
                if tmp.exists():
                    tmp.unlink()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def _np_dtype(elem_type):
    import onnx
    if not elem_type:
        return np.float32
    if hasattr(onnx.helper, "tensor_dtype_to_np_dtype"):  # onnx >= 1.13
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    from onnx import mapping
    return mapping.TENSOR_TYPE_TO_NP_TYPE[elem_type]


def inputs(path, seed=0, batch=None):
    """A deterministic input dict {name: ndarray} for the model's graph
    inputs (initializers listed as inputs are skipped). Symbolic dims take
    `batch` (default 1)."""
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                shape.append(d.dim_value)
            else:
                shape.append(batch or 1)
        dt = _np_dtype(tt.elem_type)
        if np.issubdtype(dt, np.floating):
            feeds[vi.name] = rng.standard_normal(shape).astype(dt)
        else:
            feeds[vi.name] = rng.integers(0, 10, size=shape).astype(dt)
    return feeds


def ort_run(path, feeds, threads=1):
    """Run the model with onnxruntime (CPU, 1 or 2 threads); returns the list
    of outputs in graph order."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


if __name__ == "__main__":
    import sys
    args = sys.argv[1:]
    if not args:
        print("usage: python tests/models.py NAME [MODE [OPSET [BATCH]]]")
        sys.exit(2)
    name = args[0]
    mode = args[1] if len(args) > 1 else "eval"
    opset = int(args[2]) if len(args) > 2 else 13
    batch = int(args[3]) if len(args) > 3 else 1
    print(export(name, mode, opset, batch))
