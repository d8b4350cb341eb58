# test_codegen_golden.py — the C backend's generated source for small graphs
# (tests/golden/*.onnxtxt) against committed golden files (tests/golden/*.c),
# byte-identical output when generating twice, and the compiled programs
# against onnxruntime. CONTRA_UPDATE_GOLDEN=1 rewrites the golden files.
import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
GRAPHS = sorted(p.stem for p in GOLDEN.glob("*.onnxtxt"))
BATCH = 2


def compile_to(run_contra, graph, outdir):
    run_contra("compile", GOLDEN / f"{graph}.onnxtxt", "--infer", "-o", outdir,
               "--batch", BATCH, "-q")
    return (outdir / "model.c").read_bytes()


def without_libraries(src):
    """The generated source with the text of the shared kernel libraries (codegen/c_gemm_lib.c,
    c_train_lib.inc: tested on their own) reduced to their names: the golden files hold what
    codegen generates for the graph."""
    out, skip = [], False
    for line in src.decode().splitlines(True):
        if line.startswith("/* ---- library: "):
            out.append(line)
            skip = True
        elif line.startswith("/* ---- end of library ---- */"):
            skip = False
        elif not skip:
            out.append(line)
    return "".join(out).encode()


def test_golden_graphs_exist():
    assert len(GRAPHS) >= 3, GRAPHS


@pytest.mark.parametrize("graph", GRAPHS)
def test_generated_c_matches_golden(run_contra, tmp_path, graph):
    src = without_libraries(compile_to(run_contra, graph, tmp_path / "a"))
    golden = GOLDEN / f"{graph}.c"
    if os.environ.get("CONTRA_UPDATE_GOLDEN") == "1":
        golden.write_bytes(src)
    assert golden.exists(), f"{golden} missing: run with CONTRA_UPDATE_GOLDEN=1"
    want = golden.read_bytes()
    if src != want:
        import difflib
        diff = "".join(difflib.unified_diff(
            want.decode().splitlines(True), src.decode().splitlines(True),
            str(golden), "generated", n=2))
        pytest.fail(f"generated C for {graph} differs from {golden} "
                    f"(CONTRA_UPDATE_GOLDEN=1 to accept):\n{diff[:6000]}")
    # every kernel names its op, node and shapes
    text = src.decode()
    assert text.count("/* ") > 3 and ", node \"" in text and " -> y0(" in text


@pytest.mark.parametrize("graph", GRAPHS)
def test_generation_is_deterministic(run_contra, tmp_path, graph):
    a = compile_to(run_contra, graph, tmp_path / "a")
    b = compile_to(run_contra, graph, tmp_path / "b")
    assert a == b
    assert (tmp_path / "a" / "params.bin").read_bytes() == (tmp_path / "b" / "params.bin").read_bytes()


@pytest.mark.parametrize("graph", GRAPHS)
def test_golden_graph_matches_onnxruntime(run_contra, tmp_path, graph):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = tmp_path / f"{graph}.onnx"
    run_contra("convert", GOLDEN / f"{graph}.onnxtxt", model)
    m = onnx.load(str(model))
    inits = {i.name for i in m.graph.initializer}
    rng = np.random.default_rng(7)
    feeds, args = {}, []
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else BATCH
                 for d in vi.type.tensor_type.shape.dim]
        x = rng.standard_normal(shape).astype(np.float32)
        feeds[vi.name] = x
        np.save(tmp_path / f"in_{vi.name}.npy", x)
        args += ["--input", f"{vi.name}={tmp_path / f'in_{vi.name}.npy'}"]
    outs = [o.name for o in m.graph.output]
    for i, o in enumerate(outs):
        args += ["--output", f"{o}={tmp_path / f'out{i}.npy'}"]
    env = dict(os.environ, CONTRA_CACHE=str(tmp_path / "cache"))
    run_contra("run", model, "--batch", BATCH, *args, env=env)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    for i, (o, r) in enumerate(zip(outs, ref)):
        got = np.load(tmp_path / f"out{i}.npy")
        assert got.shape == r.shape, o
        assert got.dtype == r.dtype, o
        err = np.abs(got - r).max()
        assert err <= 1e-5 * max(1.0, np.abs(r).max()), f"{graph}:{o} max abs diff {err}"
