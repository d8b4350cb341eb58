# test_run_errors.py — 'contra compile' and 'contra run' on bad input: wrong
# shape or dtype, missing/extra inputs, unreadable .npy, ops the backend
# cannot lower, a failing C compiler. Each gives a clear message, a non-zero
# exit and no output file.
import os
import pathlib

import numpy as np
import pytest

GRAPH = """<ir_version: 8, opset_import: ["" : 13]>
two_in (float[N, 3] a, float[N, 3] b) => (float[N, 3] y, float[N, 3] z) {
  s = Add (a, b)
  y = Relu (s)
  z = Mul (s, b)
}
"""

UNLOWERABLE = """<ir_version: 8, opset_import: ["" : 15]>
bad (float[2, 3, 4, 4] x) => (float[2, 3, 2, 2] y, int64[2, 3, 2, 2] i, float[2, 3, 4, 4] t) {
  y, i = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (x)
  t = BatchNormalization <training_mode = 1> (x, sc, bi, mu, va)
}
"""


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, CONTRA_CACHE=str(tmp_path / "cache"))


@pytest.fixture
def graph(tmp_path):
    p = tmp_path / "two_in.onnxtxt"
    p.write_text(GRAPH)
    return p


def save(tmp_path, name, arr):
    p = tmp_path / name
    np.save(p, arr)
    return p


def test_run_ok_named_and_positional(run_contra, tmp_path, graph, env):
    a = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    b = np.ones((2, 3), np.float32)
    pa, pb = save(tmp_path, "a.npy", a), save(tmp_path, "b.npy", b)
    run_contra("run", graph, "--batch", 2, "--input", f"b={pb}", "--input", pa,
               "--output", f"z={tmp_path / 'z.npy'}", "--output", tmp_path / "y.npy", env=env)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.maximum(a + b, 0))
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), (a + b) * b)


def fails(run_contra, env, out, *args, expect):
    p = run_contra(*args, check=False, env=env)
    assert p.returncode != 0
    assert expect in p.stderr, p.stderr
    assert p.stderr.startswith("contra"), p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert not pathlib.Path(out).exists()
    return p


def test_wrong_shape(run_contra, tmp_path, graph, env):
    pa = save(tmp_path, "a.npy", np.zeros((3, 3), np.float32))
    pb = save(tmp_path, "b.npy", np.zeros((2, 3), np.float32))
    out = tmp_path / "y.npy"
    fails(run_contra, env, out, "run", graph, "--batch", 2, "--input", pa, "--input", pb,
          "--output", out, expect="must have shape [2,3], got [3,3]")


def test_wrong_dtype(run_contra, tmp_path, graph, env):
    pa = save(tmp_path, "a.npy", np.zeros((2, 3), np.float64))
    pb = save(tmp_path, "b.npy", np.zeros((2, 3), np.float32))
    out = tmp_path / "y.npy"
    fails(run_contra, env, out, "run", graph, "--batch", 2, "--input", pa, "--input", pb,
          "--output", out, expect="must be float32, got float64")


def test_missing_input(run_contra, tmp_path, graph, env):
    pa = save(tmp_path, "a.npy", np.zeros((2, 3), np.float32))
    out = tmp_path / "y.npy"
    fails(run_contra, env, out, "run", graph, "--batch", 2, "--input", pa, "--output", out,
          expect="missing input 'b'")


def test_extra_input(run_contra, tmp_path, graph, env):
    pa = save(tmp_path, "a.npy", np.zeros((2, 3), np.float32))
    out = tmp_path / "y.npy"
    fails(run_contra, env, out, "run", graph, "--batch", 2, "--input", pa, "--input", pa,
          "--input", pa, "--output", out, expect="extra input")
    fails(run_contra, env, out, "run", graph, "--batch", 2, "--input", f"a={pa}", "--input", f"q={pa}",
          "--output", out, expect="no input named 'q'")


def test_unreadable_npy(run_contra, tmp_path, graph, env):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not a numpy file at all")
    pb = save(tmp_path, "b.npy", np.zeros((2, 3), np.float32))
    out = tmp_path / "y.npy"
    fails(run_contra, env, out, "run", graph, "--batch", 2, "--input", bad, "--input", pb,
          "--output", out, expect="bad magic")
    fails(run_contra, env, out, "run", graph, "--batch", 2, "--input", tmp_path / "nope.npy",
          "--input", pb, "--output", out, expect="nope.npy: cannot read")
    trunc = tmp_path / "trunc.npy"
    trunc.write_bytes((tmp_path / "b.npy").read_bytes()[:-5])
    fails(run_contra, env, out, "run", graph, "--batch", 2, "--input", trunc, "--input", pb,
          "--output", out, expect="truncated")


def test_unlowerable_ops_are_all_named(run_contra, tmp_path, env):
    g = tmp_path / "bad.onnxtxt"
    g.write_text(UNLOWERABLE.replace("(x, sc, bi, mu, va)", "(x, sc, bi, mu, va)")
                 .replace("bad (float[2, 3, 4, 4] x)",
                          "bad (float[2, 3, 4, 4] x, float[3] sc, float[3] bi, float[3] mu, float[3] va)"))
    out = tmp_path / "outdir"
    p = run_contra("compile", g, "--infer", "-o", out, check=False, env=env)
    assert p.returncode == 1, p.stderr
    assert "cannot lower 2 nodes" in p.stderr, p.stderr
    assert "MaxPool (node" in p.stderr and "Indices" in p.stderr
    assert "BatchNormalization (node" in p.stderr and "training" in p.stderr
    assert not (out / "model.so").exists()


def test_failing_compiler(run_contra, tmp_path, graph, env):
    cc = tmp_path / "badcc"
    cc.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'badcc 1.0'; exit 0; fi\n"
                  "echo 'badcc: error: pretend the code is wrong' >&2\nexit 1\n")
    cc.chmod(0o755)
    out = tmp_path / "outdir"
    p = run_contra("compile", graph, "--infer", "-o", out, "--cc", cc, check=False, env=env)
    assert p.returncode == 1
    assert "pretend the code is wrong" in p.stderr
    assert str(out / "model.c") in p.stderr
    assert (out / "model.c").exists()          # kept for inspection
    assert not (out / "model.so").exists()
    pa = save(tmp_path, "a.npy", np.zeros((2, 3), np.float32))
    y = tmp_path / "y.npy"
    fails(run_contra, env, y, "run", graph, "--batch", 2, "--input", pa, "--input", pa,
          "--output", y, "--cc", cc, expect="pretend the code is wrong")


def test_fixed_batch_mismatch(run_contra, tmp_path, env):
    g = tmp_path / "fixed.onnxtxt"
    g.write_text(GRAPH.replace("float[N, 3]", "float[1, 3]"))
    p = run_contra("compile", g, "--infer", "-o", tmp_path / "o", "--batch", 4, check=False, env=env)
    assert p.returncode == 1
    assert "fixed batch of 1" in p.stderr


def test_help_and_usage(run_contra):
    p = run_contra("compile", "--help")
    for word in ("--infer", "--batch", "--cc", "-o"):
        assert word in p.stdout
    p = run_contra("run", "--help")
    for word in ("--input", "--output", "--batch", "--threads", "CONTRA_CACHE"):
        assert word in p.stdout
    assert run_contra("compile", "x.onnx", check=False).returncode == 2
    assert run_contra("run", "x.onnx", check=False).returncode == 2


def test_npy_formats(run_contra, tmp_path, graph, env):
    """Version 2 headers are read; fortran order and big-endian data are refused."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    pa = tmp_path / "a_v2.npy"
    with open(pa, "wb") as f:
        np.lib.format.write_array(f, a, version=(2, 0))
    pb = save(tmp_path, "b.npy", np.ones((2, 3), np.float32))
    y = tmp_path / "y.npy"
    run_contra("run", graph, "--batch", 2, "--input", pa, "--input", pb, "--output", y, env=env)
    np.testing.assert_array_equal(np.load(y), np.maximum(a + 1, 0))
    y.unlink()
    pf = save(tmp_path, "f.npy", np.asfortranarray(a))
    fails(run_contra, env, y, "run", graph, "--batch", 2, "--input", pf, "--input", pb,
          "--output", y, expect="fortran")
    pe = save(tmp_path, "e.npy", a.astype(">f4"))
    fails(run_contra, env, y, "run", graph, "--batch", 2, "--input", pe, "--input", pb,
          "--output", y, expect="big-endian")


def test_cache_is_bounded(run_contra, tmp_path, graph):
    cache = tmp_path / "cache"
    cache.mkdir()
    for i in range(40):
        d = cache / f"{i:016x}"
        d.mkdir()
        os.utime(d, (1000 + i, 1000 + i))
    keep = cache / "deadbeef.tmp.1"        # a failed build kept for inspection
    keep.mkdir()
    pa = save(tmp_path, "a.npy", np.zeros((2, 3), np.float32))
    env = dict(os.environ, CONTRA_CACHE=str(cache))
    run_contra("run", graph, "--batch", 2, "--input", pa, "--input", pa,
               "--output", tmp_path / "y.npy", env=env)
    entries = [p for p in cache.iterdir() if len(p.name) == 16]
    assert len(entries) == 32
    assert any((p / "model.so").exists() for p in entries)   # the new program stays
    assert not (cache / f"{0:016x}").exists()                # the oldest went first
    assert keep.exists()
