# test_train_ops.py — the C backend's kernels for the training ops of ir/ops.def
# (domain ai.contra: backward kernels, BatchNormTrain/Grad with splits,
# softmax cross-entropy, the optimizer steps), each as a one-node ONNX model,
# compiled and run by `contra run` against the reference interpreter
# (tests/eval_model) on small random shapes, awkward ones included (odd
# sizes, strides, dilations, asymmetric pads, groups, depthwise, 1-D). The
# optimizer steps are also checked against torch.optim on identical inputs.
import subprocess

import numpy as np
import pytest

F = np.float32


def _model(path, op, inputs, outputs, attrs):
    import onnx
    from onnx import TensorProto, helper
    ty = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}
    vi = [helper.make_tensor_value_info(n, ty[a.dtype], list(a.shape)) for n, a in inputs]
    vo = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs]
    node = helper.make_node(op, [n for n, _ in inputs], outputs, domain="ai.contra", **attrs)
    g = helper.make_graph([node], "t", vi, vo)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.contra", 1)])
    onnx.save(m, str(path))


def _run_both(contra_bin, build_dir, tmp_path, op, inputs, n_out, attrs):
    eval_model = build_dir / "tests" / "eval_model"
    if not eval_model.exists():
        pytest.skip(f"{eval_model} is missing: build it first")
    outs = [f"y{i}" for i in range(n_out)]
    model = tmp_path / "m.onnx"
    _model(model, op, inputs, outs, attrs)
    args = []
    for n, a in inputs:
        np.save(tmp_path / f"{n}.npy", a)
        args.append(str(tmp_path / f"{n}.npy"))
    run = [str(contra_bin), "run", str(model)]
    for a in args:
        run += ["--input", a]
    for i in range(n_out):
        run += ["--output", str(tmp_path / f"c{i}.npy")]
    env = dict(__import__("os").environ, CONTRA_CACHE=str(tmp_path / "cache"))
    p = subprocess.run(run, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    (tmp_path / "ref").mkdir()
    p = subprocess.run([str(eval_model), str(model), str(tmp_path / "ref"), *args], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    got = [np.load(tmp_path / f"c{i}.npy") for i in range(n_out)]
    ref = [np.load(tmp_path / "ref" / f"out{i}.npy") for i in range(n_out)]
    return got, ref


def _check(got, ref, tol=2e-5):
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.shape == b.shape, (i, a.shape, b.shape)
        err = float(np.max(np.abs(a.astype(np.float64) - b))) / max(float(np.max(np.abs(b))), 1e-30) if b.size else 0
        assert err <= tol, f"output {i}: relative error {err:.3g}"


rng = np.random.default_rng(11)


def _r(*s):
    return rng.standard_normal(s).astype(F)


def _conv_out(n, k, s, d, p0, p1):
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


# (N, C, spatial, M, kernel, strides, dilations, pads, group)
CONV = [
    (2, 3, (7, 5), 4, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 1),
    (1, 4, (9, 8), 6, (3, 2), (1, 2), (2, 1), (2, 0, 1, 1), 2),
    (2, 6, (6, 6), 6, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 6),   # depthwise
    (3, 5, (4, 3), 7, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1),   # pointwise
    (2, 4, (5, 5), 8, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 4),   # depthwise x2 multiplier
    (2, 3, (11,), 5, (4,), (3,), (1,), (2, 1), 1),                 # 1-D
]


@pytest.mark.parametrize("case", range(len(CONV)))
@pytest.mark.parametrize("op", ["ConvGradInput", "ConvGradWeight"])
def test_conv_grads(contra_bin, build_dir, tmp_path, case, op):
    N, C, sp, M, k, s, d, p, G = CONV[case]
    r = len(sp)
    out_sp = tuple(_conv_out(sp[i], k[i], s[i], d[i], p[i], p[i + r]) for i in range(r))
    dy = _r(N, M, *out_sp)
    x = _r(N, C, *sp)
    w = _r(M, C // G, *k)
    attrs = dict(kernel_shape=list(k), strides=list(s), dilations=list(d), pads=list(p), group=G)
    if op == "ConvGradInput":
        attrs["input_shape"] = list(x.shape)
        got, ref = _run_both(contra_bin, build_dir, tmp_path, op, [("dy", dy), ("w", w)], 1, attrs)
    else:
        attrs["weight_shape"] = list(w.shape)
        got, ref = _run_both(contra_bin, build_dir, tmp_path, op, [("dy", dy), ("x", x)], 1, attrs)
    _check(got, ref)


UNARY = [("ReluGrad", {}), ("SigmoidGrad", {}), ("TanhGrad", {}), ("HardSigmoidGrad", dict(alpha=0.3, beta=0.4)),
         ("HardSwishGrad", {}), ("LeakyReluGrad", dict(alpha=0.07)), ("AbsGrad", {}),
         ("ClipGrad", dict(min=-0.5, max=0.8))]


@pytest.mark.parametrize("op,attrs", UNARY, ids=[u[0] for u in UNARY])
def test_unary_grads(contra_bin, build_dir, tmp_path, op, attrs):
    dy, y = _r(3, 5, 7), 4 * _r(3, 5, 7)
    if op in ("SigmoidGrad",):
        y = 1 / (1 + np.exp(-y))
    got, ref = _run_both(contra_bin, build_dir, tmp_path, op, [("dy", dy), ("y", y)], 1, attrs)
    _check(got, ref)


def test_clip_grad_bounds_as_inputs(contra_bin, build_dir, tmp_path):
    dy, x = _r(4, 33), 2 * _r(4, 33)
    got, ref = _run_both(contra_bin, build_dir, tmp_path, "ClipGrad",
                         [("dy", dy), ("x", x), ("lo", np.array(-0.3, F)), ("hi", np.array(1.1, F))], 1, {})
    _check(got, ref)


@pytest.mark.parametrize("op,axis", [("SoftmaxGrad", 1), ("LogSoftmaxGrad", -1), ("SoftmaxGrad", 0)])
def test_softmax_grads(contra_bin, build_dir, tmp_path, op, axis):
    z = _r(3, 5, 4)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    if op == "LogSoftmaxGrad":
        y = np.log(y)
    got, ref = _run_both(contra_bin, build_dir, tmp_path, op, [("dy", _r(3, 5, 4)), ("y", y.astype(F))], 1,
                         dict(axis=axis))
    _check(got, ref)


POOL = [((2, 3, 7, 6), (3, 3), (2, 2), (1, 1, 1, 1), 0), ((1, 2, 8, 5), (2, 3), (2, 1), (0, 1, 1, 0), 1),
        ((2, 2, 5, 5), (2, 2), (2, 2), (0, 0, 0, 0), 0)]


@pytest.mark.parametrize("case", range(len(POOL)))
@pytest.mark.parametrize("op", ["MaxPoolGrad", "AveragePoolGrad"])
def test_pool_grads(contra_bin, build_dir, tmp_path, case, op):
    xs, k, s, p, cip = POOL[case]
    out = tuple(_conv_out(xs[2 + i], k[i], s[i], 1, p[i], p[i + 2]) for i in range(2))
    dy = _r(xs[0], xs[1], *out)
    attrs = dict(kernel_shape=list(k), strides=list(s), pads=list(p))
    if op == "MaxPoolGrad":
        x = _r(*xs)
        x[0, 0, 0, :2] = 1.5  # ties: the first maximum takes the gradient
        got, ref = _run_both(contra_bin, build_dir, tmp_path, op, [("dy", dy), ("x", x)], 1, attrs)
    else:
        attrs.update(count_include_pad=cip, input_shape=list(xs))
        got, ref = _run_both(contra_bin, build_dir, tmp_path, op, [("dy", dy)], 1, attrs)
    _check(got, ref)


@pytest.mark.parametrize("shape,splits", [((4, 3, 5, 3), 1), ((6, 4, 3, 2), 2), ((8, 5), 1), ((6, 3, 7), 3)])
def test_batch_norm_train_and_grad(contra_bin, build_dir, tmp_path, shape, splits):
    C = shape[1]
    x = _r(*shape) * 2 + 0.5
    scale, bias = _r(C) + 1, _r(C)
    rm, rv = _r(C) * 0.1, (np.abs(_r(C)) + 0.5).astype(F)
    got, ref = _run_both(contra_bin, build_dir, tmp_path, "BatchNormTrain",
                         [("x", x), ("s", scale), ("b", bias), ("rm", rm), ("rv", rv)], 5,
                         dict(epsilon=1e-5, momentum=0.1, splits=splits))
    _check(got, ref)
    smean, sinv = ref[1], ref[2]
    d2 = tmp_path / "grad"
    d2.mkdir()
    got, ref = _run_both(contra_bin, build_dir, d2, "BatchNormGrad",
                         [("dy", _r(*shape)), ("x", x), ("s", scale), ("m", smean), ("i", sinv)], 3,
                         dict(splits=splits))
    _check(got, ref, tol=5e-5)


@pytest.mark.parametrize("n,c", [(5, 7), (1, 3), (16, 10)])
def test_softmax_cross_entropy(contra_bin, build_dir, tmp_path, n, c):
    z = 3 * _r(n, c)
    lab = rng.integers(0, c, n).astype(np.int64)
    got, ref = _run_both(contra_bin, build_dir, tmp_path, "SoftmaxCrossEntropy", [("z", z), ("l", lab)], 2, {})
    _check(got, ref)
    d2 = tmp_path / "grad"
    d2.mkdir()
    got, ref = _run_both(contra_bin, build_dir, d2, "SoftmaxCrossEntropyGrad",
                         [("d", np.array(1.7, F)), ("lp", ref[1]), ("l", lab)], 1, {})
    _check(got, ref)


def test_stop_gradient(contra_bin, build_dir, tmp_path):
    x = _r(3, 4)
    got, ref = _run_both(contra_bin, build_dir, tmp_path, "StopGradient", [("x", x)], 1, {})
    assert np.array_equal(got[0], x) and np.array_equal(ref[0], x)


# ---- optimizers: against the reference interpreter and torch.optim


def _slots(shape):
    return _r(*shape), (np.abs(_r(*shape)) * 0.01).astype(F)


@pytest.mark.parametrize("mom,nest,wd", [(0.9, 0, 5e-4), (0.8, 1, 0.0), (0.0, 0, 1e-2)])
def test_sgd_step(contra_bin, build_dir, tmp_path, mom, nest, wd):
    import torch
    p, g, buf, lr = _r(37, 5), _r(37, 5), _r(37, 5), np.array(0.05, F)
    ins = [("p", p), ("g", g), ("lr", lr)] + ([("buf", buf)] if mom else [])
    got, ref = _run_both(contra_bin, build_dir, tmp_path, "SGDStep", ins, 2 if mom else 1,
                         dict(momentum=mom, nesterov=nest, weight_decay=wd))
    _check(got, ref, tol=1e-6)
    t = torch.nn.Parameter(torch.from_numpy(p.copy()))
    o = torch.optim.SGD([t], lr=float(lr), momentum=mom, nesterov=bool(nest), weight_decay=wd)
    if mom:
        o.state[t]["momentum_buffer"] = torch.from_numpy(buf.copy())
    t.grad = torch.from_numpy(g.copy())
    o.step()
    np.testing.assert_allclose(got[0], t.detach().numpy(), rtol=1e-6, atol=1e-7)
    if mom:
        np.testing.assert_allclose(got[1], o.state[t]["momentum_buffer"].numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("decoupled,step,wd", [(1, 1, 0.01), (1, 5, 0.05), (0, 3, 0.01), (0, 1, 0.0)])
def test_adam_step(contra_bin, build_dir, tmp_path, decoupled, step, wd):
    import torch
    p, g = _r(8, 3, 3, 3), _r(8, 3, 3, 3)
    m, v = _slots(p.shape)
    if step == 1:
        m[:] = 0
        v[:] = 0
    lr = np.array(1e-3, F)
    ins = [("p", p), ("g", g), ("lr", lr), ("m", m), ("v", v), ("t", np.array(step, np.int64))]
    got, ref = _run_both(contra_bin, build_dir, tmp_path, "AdamStep", ins, 3,
                         dict(beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=wd, decoupled=decoupled))
    _check(got, ref, tol=1e-6)
    t = torch.nn.Parameter(torch.from_numpy(p.copy()))
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    o = cls([t], lr=1e-3, weight_decay=wd)
    o.state[t] = {"step": torch.tensor(float(step - 1)), "exp_avg": torch.from_numpy(m.copy()),
                  "exp_avg_sq": torch.from_numpy(v.copy())}
    t.grad = torch.from_numpy(g.copy())
    o.step()
    # the parameter moves by ~lr: compare the update, relative to its size
    upd, ref_upd = got[0] - p, t.detach().numpy() - p
    assert float(np.max(np.abs(upd - ref_upd))) <= 1e-4 * float(np.max(np.abs(ref_upd)))
    np.testing.assert_allclose(got[1], o.state[t]["exp_avg"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2], o.state[t]["exp_avg_sq"].numpy(), rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("exclude", [0, 1])
def test_lars_step(contra_bin, build_dir, tmp_path, exclude):
    p, g, buf = _r(16, 9), _r(16, 9), _r(16, 9)
    lr, mom, wd, eta = 0.3, 0.9, 1e-4, 0.001
    ins = [("p", p), ("g", g), ("lr", np.array(lr, F)), ("buf", buf)]
    got, ref = _run_both(contra_bin, build_dir, tmp_path, "LarsStep", ins, 2,
                         dict(momentum=mom, weight_decay=wd, trust_coefficient=eta, exclude=exclude))
    _check(got, ref, tol=1e-6)
    d = g.astype(np.float64)
    if not exclude:
        d = d + wd * p
        d = d * (eta * np.linalg.norm(p.astype(np.float64)) / np.linalg.norm(d))
    b = mom * buf + d
    np.testing.assert_allclose(got[1], b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0], p - lr * b, rtol=1e-5, atol=1e-6)
