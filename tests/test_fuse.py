# test_fuse.py — the fuse pass (passes/fuse.c): the momentum-encoder EMA of MoCo/BYOL
# becomes one FusedEMA node and the per-parameter optimizer steps one FusedSGDStep /
# FusedAdamStep, each listing the nodes it replaced; the fused training graph computes
# bit for bit what the unfused one does, in the reference interpreter (method_ref
# --fuse against --pipeline) and in compiled code (the C backend lays every role out as
# one flat buffer, so each fused kernel is one loop; CT_DEBUG_NO_FUSE=1 compiles the
# unfused program to compare with).
import glob
import json
import os
import re
import subprocess

import numpy as np
import pytest

from test_methods import B, _views, tiny_onnx  # noqa: F401  (tiny_onnx is a fixture)

STEPS = 3


def _method_ref(build_dir, tmp_path, enc, preset, opts, ins, flag):
    exe = build_dir / "tests" / "method_ref"
    if not exe.exists():
        pytest.skip(f"{exe} is missing: build it first")
    out = tmp_path / flag.strip("-")
    out.mkdir()
    cmd = [str(exe), str(enc), str(out), "--preset", preset] + [f"{k}={v}" for k, v in opts.items()]
    for k, v in ins.items():
        f = out / f"in_{k}.npy"
        np.save(f, v)
        cmd += ["--in", k, str(f)]
    cmd += ["--steps", str(STEPS), flag]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = {"loss": [], "grad": {}, "state": {}, "init": {}}
    for line in p.stdout.split("\n"):
        f = line.split()
        if f and f[0] == "loss":
            r["loss"].append(np.load(out / f"loss{f[1]}.npy"))
        elif f and f[0] in ("grad", "state", "init"):
            r[f[0]][f[2]] = np.load(out / f"{f[0]}{f[1]}.npy")
    return r


def _views_steps(seed):
    xs = np.stack([np.stack(_views(seed + s)) for s in range(STEPS)])  # [steps, 2, B, 3, H, W]
    return {"view1": np.ascontiguousarray(xs[:, 0]), "view2": np.ascontiguousarray(xs[:, 1])}


REF = [  # preset, options, extra inputs
    ("moco-v2", dict(queue=16, splits=1, head="12,8", momentum=0.9, optimizer="sgd", lr=0.05, opt_momentum=0.9,
                     wd=1e-4), {}),
    ("moco-v1", dict(queue=12, splits=1, momentum=0.99, optimizer="adam", lr=1e-3, wd=1e-4), {}),
    ("byol", dict(head="16,8", pred="16,8", momentum=0.9, momentum_input=1, optimizer="adam", lr=3e-4),
     {"momentum": np.array([0.9, 0.95, 0.99], np.float32)}),
    ("simsiam", dict(head="16,16,16", pred="6,16", optimizer="sgd", lr=0.05, opt_momentum=0.0, wd=0.0), {}),
]


@pytest.mark.parametrize("preset,opts,extra", REF, ids=[r[0] + "-" + r[1]["optimizer"] for r in REF])
def test_reference_fused_equals_unfused(build_dir, tmp_path, tiny_onnx, preset, opts, extra):
    """Several steps through the reference interpreter: the fused graph's losses, gradients and
    every updated parameter, slot, key/target tensor and statistic equal the unfused graph's bit
    for bit."""
    opts = dict(opts, batch=B, attach_optimizer=1)
    ins = dict(_views_steps(300), lr=np.full(STEPS, opts["lr"], np.float32), **extra)
    if preset.startswith("moco"):  # the key batch shuffled around the key encoder
        rng = np.random.default_rng(7)
        ins["shuffle_perm"] = np.stack([rng.permutation(B) for _ in range(STEPS)]).astype(np.int64)
    a = _method_ref(build_dir, tmp_path, tiny_onnx, preset, opts, ins, "--pipeline")
    b = _method_ref(build_dir, tmp_path, tiny_onnx, preset, opts, ins, "--fuse")
    assert len(a["loss"]) == STEPS and np.array_equal(np.array(a["loss"]), np.array(b["loss"]))
    assert a["state"].keys() == b["state"].keys() and len(a["state"]) > 10
    assert a["grad"].keys() == b["grad"].keys()
    for kind in ("grad", "state"):
        for k, v in a[kind].items():
            assert np.array_equal(v, b[kind][k]), (kind, k, float(np.max(np.abs(v - b[kind][k]))))
    # the steps did move the parameters and the key/target encoder
    tracked = ["conv1.weight", "bn2.bias"] + {"moco-v2": ["key/conv1.weight", "key/head.2.weight"],
                                              "moco-v1": ["key/conv1.weight"], "byol": ["target/conv1.weight"],
                                              "simsiam": []}[preset]
    for k in tracked:
        assert not np.array_equal(a["state"][k], a["init"][k]), k


def test_reference_resnet_residual(build_dir, tmp_path, repo_root):
    """The CIFAR-style ResNet (models/cifar_resnet_tiny.onnxtxt): BatchNorm + identity/downsample
    residual Add + ReLU fused too; MoCo v2 steps in the reference interpreter bit for bit."""
    enc = repo_root / "models" / "cifar_resnet_tiny.onnxtxt"
    rng = np.random.default_rng(11)
    ins = {"view1": rng.standard_normal((2, B, 3, 32, 32)).astype(np.float32),
           "view2": rng.standard_normal((2, B, 3, 32, 32)).astype(np.float32),
           "lr": np.full(2, 0.05, np.float32),
           "shuffle_perm": np.stack([rng.permutation(B) for _ in range(2)]).astype(np.int64)}
    opts = dict(batch=B, queue=16, splits=1, head="16,8", optimizer="sgd", lr=0.05, opt_momentum=0.9, wd=1e-4,
                attach_optimizer=1)
    global STEPS
    steps, STEPS = STEPS, 2
    try:
        a = _method_ref(build_dir, tmp_path, enc, "moco-v2", opts, ins, "--pipeline")
        b = _method_ref(build_dir, tmp_path, enc, "moco-v2", opts, ins, "--fuse")
    finally:
        STEPS = steps
    assert np.array_equal(np.array(a["loss"]), np.array(b["loss"])) and len(a["state"]) > 30
    for kind in ("grad", "state"):
        for k, v in a[kind].items():
            assert np.array_equal(v, b[kind][k]), (kind, k)


def _dump(run_contra, enc, preset, after="fuse", batch=8):
    r = run_contra("dump", str(enc), "--method", preset, "--batch", str(batch), "--after", after, "--format", "json")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _nodes(doc):
    return doc["nodes"]


def _attr(node, name):
    return node["attrs"].get(name)


@pytest.mark.parametrize("preset,opt", [("moco-v2", "FusedSGDStep"), ("byol", "FusedAdamStep")])
def test_dump_after_fuse(run_contra, tiny_onnx, preset, opt):
    """contra dump --method PRESET --after fuse: one FusedEMA replacing every Mul, Mul, Add of the
    EMA and one fused optimizer node replacing every per-parameter step, each naming them."""
    before = _nodes(_dump(run_contra, tiny_onnx, preset, after="cse"))
    after = _nodes(_dump(run_contra, tiny_onnx, preset))
    ops = [n["op"] for n in after]
    assert ops.count("FusedEMA") == 1 and ops.count(opt) == 1, ops
    assert "SGDStep" not in ops and "AdamStep" not in ops
    steps = [n["name"] for n in before if n["op"] in ("SGDStep", "AdamStep")]
    ema_adds = [n["name"] for n in before if n["op"] == "Add" and re.match(r"(key|target)/.*/(momentum|ema)(/op)?$", n["name"])]
    assert len(steps) >= 10 and len(ema_adds) >= 8
    ema = next(n for n in after if n["op"] == "FusedEMA")
    fopt = next(n for n in after if n["op"] == opt)
    rep_ema, rep_opt = _attr(ema, "replaced"), _attr(fopt, "replaced")
    assert sorted(rep_opt) == sorted(steps)
    assert set(ema_adds) <= set(rep_ema) and len(rep_ema) == 3 * len(ema_adds)
    assert len(ema["outputs"]) == len(ema_adds)
    kept = {n["name"] for n in after}
    assert not kept & (set(rep_ema) | set(rep_opt))
    # BatchNormTrain + Relu pairs into one node each: bn1, bn2 of the tiny encoder in the query
    # and key passes (MoCo); in the online and target passes, plus the projectors' and the
    # predictor's hidden BatchNorm + ReLU (BYOL)
    bns = [n for n in after if n["op"] == "FusedBatchNormTrainRelu"]
    assert len(bns) == {"moco-v2": 4, "byol": 7}[preset], [n["op"] for n in after]
    for n in bns:
        rep = _attr(n, "replaced")
        assert len(rep) == 2 and {x["op"] for x in before if x["name"] in rep} == {"BatchNormTrain", "Relu"}
        assert len(n["outputs"]) == 5
    assert "BatchNormTrain" not in ops or all(
        not any(m["op"] == "Relu" and set(m["inputs"]) & set(b["outputs"][:1]) for m in after)
        for b in after if b["op"] == "BatchNormTrain")
    assert len(after) == len(before) - len(rep_ema) - len(rep_opt) + 2 - len(bns)
    # the table shows them too
    r = run_contra("dump", str(tiny_onnx), "--method", preset, "--batch", "8", "--after", "fuse")
    assert r.returncode == 0 and "replaced=" in r.stdout and "(fused:" in r.stdout


def _compile(run_contra, enc, out, args, fuse=True):
    env = None
    if not fuse:
        env = dict(os.environ, CT_DEBUG_NO_FUSE="1")
    cmd = ["compile", str(enc), *args, "-o", str(out)]
    r = run_contra(*cmd, env=env) if env else run_contra(*cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _kernels(src, op):
    """The bodies of the generated kernels of one op (from the comment that opens each)."""
    out = []
    for m in re.finditer(r"\n/\* %s, node [^\n]*\*/\n(.*?)\n}\n" % op, src, re.S):
        out.append(m.group(0))
    return out


def _op_counts(src):
    """Kernels per op, from the comment opening each."""
    c = {}
    for op in re.findall(r"\n/\* ([A-Za-z]+), node ", src):
        c[op] = c.get(op, 0) + 1
    return c


def _params(d):
    return {os.path.relpath(p, d): np.load(p) for p in glob.glob(str(d) + "/**/*.npy", recursive=True)}


def _trainer(tdir, *args):
    p = subprocess.run([str(tdir / "trainer"), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


METHODS = [  # method, compile options, expected fused optimizer op
    ("moco-v2", ["--batch", "8", "--bn-splits", "1", "--queue", "32", "--head", "16,8"], "FusedSGDStep"),
    ("byol", ["--batch", "8", "--head", "32,8", "--predictor", "16,8", "--optimizer", "adam", "--lr", "1e-3"],
     "FusedAdamStep"),
]


@pytest.mark.parametrize("method,args,opt", METHODS, ids=[m[0] for m in METHODS])
def test_compiled_method_fused_equals_unfused(run_contra, tiny_onnx, tmp_path, method, args, opt):
    _compiled_method(run_contra, tiny_onnx, tmp_path, method, args, opt, 8)


def test_compiled_resnet_residual(run_contra, repo_root, tmp_path):
    """MoCo v2 on the CIFAR-style ResNet: also BatchNorm + residual Add + ReLU kernels, and the
    trainer still computes what the unfused one does, bit for bit."""
    src = _compiled_method(run_contra, repo_root / "models" / "cifar_resnet_tiny.onnxtxt", tmp_path, "moco-v2",
                           ["--batch", "8", "--bn-splits", "1", "--queue", "32", "--head", "16,8"], "FusedSGDStep", 32)
    bn = _kernels(src, "FusedBatchNormTrainRelu")
    assert len(bn) == 10 and sum("+ residual" in k for k in bn) == 4


def _compiled_method(run_contra, enc, tmp_path, method, args, opt, size):
    """The compiled trainer, fused and unfused (CT_DEBUG_NO_FUSE=1): the same parameters, key/target
    encoder, optimizer slots, statistics and queue after several steps, bit for bit; the fused
    program has exactly one EMA kernel and one optimizer kernel, each a single loop over the
    flat buffers, and fewer kernels in all."""
    tf = _compile(run_contra, enc, tmp_path / "fused", ["--method", method, *args])
    tu = _compile(run_contra, enc, tmp_path / "unfused", ["--method", method, *args], fuse=False)
    src, src0 = (tf / "model.c").read_text(), (tu / "model.c").read_text()
    ema, step = _kernels(src, "FusedEMA"), _kernels(src, opt)
    assert len(ema) == 1 and len(step) == 1
    for k in ema + step:
        assert "one loop over the flat buffers" in k
        assert len(re.findall(r"\bfor \(", k)) == 1, k
    assert not _kernels(src, "SGDStep") and not _kernels(src, "AdamStep")
    assert not _kernels(src, "Mul") or len(_kernels(src, "Mul")) < len(_kernels(src0, "Mul"))
    n_f = int(re.search(r"(\d+) kernels", src).group(1))
    n_u = int(re.search(r"(\d+) kernels", src0).group(1))
    assert n_f < n_u
    # every Mul, Mul, Add of the EMA gone (3 kernels per tensor), every per-parameter step too
    n_ema = len(re.findall(r"/\* Add, node \"(key|target)/[^\"]*/(momentum|ema)(/op)?\"", src0))
    n_step = len(_kernels(src0, "SGDStep")) + len(_kernels(src0, "AdamStep"))
    assert n_ema >= 8 and n_step >= 10
    cf, cu = _op_counts(src), _op_counts(src0)
    assert cf.pop("FusedEMA") == 1 and cf.pop(opt) == 1
    n_res = sum("+ residual" in k for k in _kernels(src, "FusedBatchNormTrainRelu"))  # BN + Add + ReLU
    assert cf.pop("Add", 0) == cu.pop("Add") - n_ema - n_res and cf.pop("Mul", 0) == cu.pop("Mul") - 2 * n_ema
    assert cu.pop("SGDStep", 0) + cu.pop("AdamStep", 0) == n_step
    views = ("Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze", "StopGradient")
    for v in views:  # a gradient that was a view of another value is copied into its flat buffer
        assert cf.pop(v, 0) <= cu.pop(v, 0) + n_step
    n_bn = cf.pop("FusedBatchNormTrainRelu")  # BatchNormTrain + Relu pairs, one kernel each
    assert n_bn >= 4 and cf.pop("BatchNormTrain", 0) == cu.pop("BatchNormTrain") - n_bn
    assert cf.pop("Relu", 0) == cu.pop("Relu") - n_bn
    assert cf == cu  # every other kernel as before
    rng = np.random.default_rng(4)
    views = []
    for i in range(2):
        v = rng.standard_normal((16, 3, size, size)).astype(np.float32)
        np.save(tmp_path / f"v{i}.npy", v)
        views.append(str(tmp_path / f"v{i}.npy"))
    res = []
    for t in (tf, tu):
        _trainer(t, "--views", ",".join(views), "--steps", STEPS, "--save-params", t / "p", "--out", t / "run",
                 "--threads", 2, "-q")
        res.append(_params(t / "p"))
        res[-1]["losses"] = np.array([json.loads(x)["loss"] for x in (t / "run" / "metrics.jsonl").read_text().split("\n")
                                      if x and json.loads(x)["type"] == "step"])
    a, b = res
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:
        assert np.array_equal(a[k], b[k]), (k, float(np.max(np.abs(a[k] - b[k]))))
    assert len(a["losses"]) == STEPS
    prefix = "key/" if method.startswith("moco") else "target/"
    assert any(k.startswith(prefix) for k in a)
    return src


@pytest.mark.parametrize("opt", [["--optimizer", "sgd", "--momentum", "0.9", "--weight-decay", "5e-4", "--nesterov"],
                                 ["--optimizer", "adamw", "--weight-decay", "0.01"]], ids=["sgd-nesterov", "adamw"])
def test_compiled_supervised_fused_equals_unfused(run_contra, tiny_onnx, tmp_path, opt):
    """The supervised trainer: one multi-tensor optimizer kernel over flat buffers, parameters and
    slots after three steps bit for bit those of the unfused program."""
    args = ["--method", "supervised", "--classes", "5", "--batch", "8", "--lr", "0.05", *opt]
    tf = _compile(run_contra, tiny_onnx, tmp_path / "fused", args)
    tu = _compile(run_contra, tiny_onnx, tmp_path / "unfused", args, fuse=False)
    src = (tf / "model.c").read_text()
    name = "FusedSGDStep" if opt[1] == "sgd" else "FusedAdamStep"
    ks = _kernels(src, name)
    assert len(ks) == 1 and "one loop over the flat buffers" in ks[0] and len(re.findall(r"\bfor \(", ks[0])) == 1
    rng = np.random.default_rng(5)
    np.save(tmp_path / "x.npy", rng.standard_normal((16, 3, 8, 8)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 5, 16).astype(np.int64))
    res = []
    for t in (tf, tu):
        _trainer(t, "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--steps", STEPS, "--save-params", t / "p",
                 "--threads", 2)
        res.append(_params(t / "p"))
    a, b = res
    assert a.keys() == b.keys() and any(k.startswith("optim") for k in a)
    for k in a:
        assert np.array_equal(a[k], b[k]), (k, float(np.max(np.abs(a[k] - b[k]))))
    p0 = np.load(glob.glob(str(tf / "p") + "/**/conv1.weight.npy", recursive=True)[0]) if glob.glob(
        str(tf / "p") + "/**/conv1.weight.npy", recursive=True) else None
    assert p0 is not None


def test_inference_conv_relu_fused(run_contra, build_dir, tmp_path):
    """An inference graph (torchvision ResNet-18 exported in eval mode, so BatchNorm is folded into
    the convolutions): every Conv + Relu and Conv + residual Add + Relu becomes one FusedConv; the
    fused graph evaluates bit for bit like the unfused one in the reference interpreter, and so
    does the compiled program (the residual and the ReLU are added in the convolution's stores in
    the order the Add and Relu kernels round them)."""
    import models
    enc = models.export("resnet18", "eval", 13, batch=2, size=32)
    nodes = _nodes(json.loads(run_contra("dump", str(enc), "--after", "fuse", "--format", "json").stdout))
    ops = [n["op"] for n in nodes]
    fc = [n for n in nodes if n["op"] == "FusedConv"]
    # the stem, both convolutions of the 8 basic blocks; the 3 downsample convolutions feed an Add only
    assert len(fc) == 17 and ops.count("Conv") == 3 and "Relu" not in ops and "Add" not in ops, ops
    with_res = [n for n in fc if len(n["inputs"]) == 4]
    assert len(with_res) == 8 and all(_attr(n, "relu") == 1 for n in fc)
    assert all(len(_attr(n, "replaced")) == (3 if len(n["inputs"]) == 4 else 2) for n in fc)

    x = np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    outs = {}
    for flag in ("", "--fuse"):
        d = tmp_path / ("ref" + flag)
        d.mkdir()
        p = subprocess.run([str(build_dir / "tests" / "eval_model"), str(enc), str(d), *([flag] if flag else []),
                            str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        outs[flag] = np.load(d / "out0.npy")
    assert np.array_equal(outs[""], outs["--fuse"]) and np.abs(outs[""]).max() > 0

    got = {}
    for fuse in (True, False):
        prog = _compile(run_contra, enc, tmp_path / f"prog{int(fuse)}", ["--infer", "--batch", "2"], fuse)
        src = (prog / "model.c").read_text()
        assert (_op_counts(src).get("FusedConv", 0) == 17) == fuse
        p = subprocess.run([str(build_dir / "tests" / "prog_run"), str(prog), str(tmp_path / f"y{int(fuse)}_"),
                            str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        got[fuse] = np.load(tmp_path / f"y{int(fuse)}_0.npy")
    assert np.array_equal(got[True], got[False])
    assert np.max(np.abs(got[True] - outs[""])) <= 1e-4 * np.max(np.abs(outs[""]))


def test_depthwise_fused_conv_matches_onnxruntime(run_contra, tmp_path):
    """A depthwise convolution (the C backend's direct loop, not the GEMM engine) with a bias, then a residual
    Add and a Relu, as one FusedConv; and a grouped one (the engine) with only the Relu: both against
    onnxruntime on the unfused graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import models
    r = np.random.default_rng(9)
    C, G = 8, 2
    inits = [numpy_helper.from_array(r.standard_normal((C, 1, 3, 3)).astype(np.float32), "wd"),
             numpy_helper.from_array(r.standard_normal((C,)).astype(np.float32), "bd"),
             numpy_helper.from_array(r.standard_normal((C, C // G, 3, 3)).astype(np.float32), "wg")]
    nodes = [helper.make_node("Conv", ["x", "wd", "bd"], ["d"], group=C, pads=[1, 1, 1, 1], name="dw"),
             helper.make_node("Add", ["d", "x"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["h"], name="relu1"),
             helper.make_node("Conv", ["h", "wg"], ["g"], group=G, pads=[1, 1, 1, 1], strides=[2, 2], name="grouped"),
             helper.make_node("Relu", ["g"], ["y"], name="relu2")]
    graph = helper.make_graph(nodes, "dwres", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, C, 9, 11])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    mp = tmp_path / "dw.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), mp)
    nodes = _nodes(json.loads(run_contra("dump", str(mp), "--after", "fuse", "--format", "json").stdout))
    assert [n["op"] for n in nodes] == ["FusedConv", "FusedConv"] and len(nodes[0]["inputs"]) == 4
    x = r.standard_normal((2, C, 9, 11)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run_contra("run", str(mp), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
               env=dict(os.environ, CONTRA_CACHE=str(tmp_path / "cache")))
    got, ref = np.load(tmp_path / "y.npy"), models.ort_run(mp, {"x": x})[0]
    assert got.shape == ref.shape and (ref == 0).any() and (ref > 0).any()
    assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))
