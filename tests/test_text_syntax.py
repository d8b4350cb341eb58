# test_text_syntax.py — the ONNX text syntax (frontend/onnx_text.c): the test
# graphs in tests/graphs round trip through contra's parser and printer, agree
# with onnx.parser where ONNX 1.12 reads them, torchvision models survive
# ONNX -> text -> ONNX with the same onnxruntime outputs, and bad text gives
# a line:column message and a non-zero exit, never a crash.
import filecmp
import json
import random
import subprocess

import numpy as np
import pytest

import models
from conftest import ROOT

GRAPH_DIR = ROOT / "tests" / "graphs"
GRAPHS = sorted(GRAPH_DIR.glob("*.onnxtxt"))
IDS = [p.stem for p in GRAPHS]

# Graphs written in the grammar ONNX 1.12's onnx.parser reads; the others use
# contra's extensions (quoted names, node names, inf/nan, empty typed lists,
# string escapes) or element types onnx.parser 1.12 cannot give data to
# (float16, bfloat16).
ONNX_COMPATIBLE = {
    "constants", "conv_bn_relu", "identity_fanout", "init_as_input", "kinds", "mlp_softmax",
    "mobile_block", "optional_inputs", "reduce_transpose", "shape_chain",
    "split_concat", "training_bn",
}


def test_enough_graphs():
    assert len(GRAPHS) >= 10, f"expected at least 10 test graphs in {GRAPH_DIR}"
    assert ONNX_COMPATIBLE <= set(IDS)


def test_c_parser_round_trip_and_fuzz(build_dir):
    """The C test: every graph parses, prints, reparses to an equal graph and
    prints identically; mutated texts never crash; error messages carry
    line:column."""
    exe = build_dir / "tests" / "test_onnx_text"
    if not exe.exists():
        pytest.skip(f"{exe} is not built")
    p = subprocess.run([str(exe), str(GRAPH_DIR), "1000"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:] + p.stdout[-2000:]
    assert f"{len(GRAPHS)}/{len(GRAPHS)} graphs round trip" in p.stdout


def _dump_json(run_contra, path):
    return json.loads(run_contra("dump", path, "--format", "json").stdout)


@pytest.mark.parametrize("path", GRAPHS, ids=IDS)
def test_graph_round_trips(run_contra, path, tmp_path):
    # print -> parse -> print is identical
    t1, t2 = tmp_path / "a.onnxtxt", tmp_path / "b.onnxtxt"
    run_contra("convert", path, t1)
    run_contra("convert", t1, t2)
    assert t1.read_text() == t2.read_text()
    # the reparsed graph is the same graph: values (names, kinds, dtypes,
    # shapes), nodes (ops, names, attributes, inputs, outputs), inputs, outputs
    j0, j1 = _dump_json(run_contra, path), _dump_json(run_contra, t1)
    for key in ("name", "opset", "inputs", "outputs", "nodes"):
        assert j0[key] == j1[key], key
    by_name = lambda vs: sorted(vs, key=lambda v: v["name"])  # noqa: E731
    assert by_name(j0["values"]) == by_name(j1["values"])
    # dump --format text (after shape inference: value infos included) reads back identically
    d1 = run_contra("dump", path, "--format", "text").stdout
    (tmp_path / "c.onnxtxt").write_text(d1)
    d2 = run_contra("dump", tmp_path / "c.onnxtxt", "--format", "text").stdout
    assert d1 == d2
    assert d1 == run_contra("dump", t1, "--format", "text").stdout


def test_kinds(run_contra, tmp_path):
    """Kinds normalisation derives (BatchNorm statistics: state) and kinds
    only the text can say (metadata contra.kind.*) survive a round trip."""
    for name, want in (("kinds", {"x": "input", "w": "param", "queue": "state", "scale": "const",
                                  "bias": "param"}),
                       ("conv_bn_relu", {"mean": "state", "var": "state", "gamma": "param", "w": "param"})):
        t = tmp_path / f"{name}.onnxtxt"
        run_contra("convert", GRAPH_DIR / f"{name}.onnxtxt", t)
        for src in (GRAPH_DIR / f"{name}.onnxtxt", t):
            kinds = {v["name"]: v["kind"] for v in _dump_json(run_contra, src)["values"]}
            assert {k: kinds.get(k) for k in want} == want, src
    text = (tmp_path / "kinds.onnxtxt").read_text()
    assert '"contra.kind.w" : "param-frozen"' in text  # frozen is not in the JSON: check the text
    bad = tmp_path / "bad.onnxtxt"
    bad.write_text(GRAPH_DIR.joinpath("kinds.onnxtxt").read_text().replace('"state"', '"stat"'))
    r = run_contra("dump", bad, check=False)
    assert r.returncode == 1 and "bad.onnxtxt:8:5:" in r.stderr and "'stat'" in r.stderr, r.stderr
    bad.write_text(GRAPH_DIR.joinpath("kinds.onnxtxt").read_text().replace('contra.kind.scale', 'contra.kind.h'))
    r = run_contra("dump", bad, check=False)
    assert r.returncode == 1 and "'h' is given kind const but is not an initializer" in r.stderr, r.stderr


# ---------------------------------------------------------------- onnx.parser as the oracle

def _dims(vi):
    return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]


def _attr_value(a):
    import onnx
    from onnx import numpy_helper
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v).tolist()
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [x.decode() if isinstance(x, bytes) else x for x in v]
    return v


def _close(a, b):
    return np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize("path", GRAPHS, ids=IDS)
def test_agrees_with_onnx_parser(run_contra, path, tmp_path):
    import onnx
    import onnx.parser
    from onnx import numpy_helper

    try:
        ref = onnx.parser.parse_model(path.read_text())
    except Exception as e:  # noqa: BLE001 - onnx raises its own ParseError type
        if path.stem in ONNX_COMPATIBLE:
            pytest.fail(f"onnx.parser rejects {path.name}: {e}")
        pytest.skip(f"uses contra extensions onnx.parser 1.12 does not read: {str(e)[:120]}")
    out = tmp_path / "contra.onnx"
    run_contra("convert", path, out)
    got = onnx.load(str(out))
    rg, gg = ref.graph, got.graph

    assert gg.name == rg.name
    ref_inits = {t.name: numpy_helper.to_array(t) for t in rg.initializer}
    got_inits = {t.name: numpy_helper.to_array(t) for t in gg.initializer}
    # graph inputs (initializers listed as inputs are parameters, not inputs)
    ref_in = [(v.name, v.type.tensor_type.elem_type, _dims(v)) for v in rg.input if v.name not in ref_inits]
    got_in = [(v.name, v.type.tensor_type.elem_type, _dims(v)) for v in gg.input if v.name not in got_inits]
    assert got_in == ref_in
    assert [(v.name, v.type.tensor_type.elem_type) for v in gg.output] == \
           [(v.name, v.type.tensor_type.elem_type) for v in rg.output]
    opset = {o.domain or "ai.onnx": o.version for o in ref.opset_import}
    assert _dump_json(run_contra, path)["opset"] == opset.get("ai.onnx")

    # every initializer keeps its data (one read only by Identity copies may go: ONNX-NOTES 1)
    read = {i for n in rg.node if n.op_type != "Identity" for i in n.input} | {v.name for v in rg.output}
    for name, arr in ref_inits.items():
        if name not in read and name not in got_inits:
            continue
        assert name in got_inits, f"initializer {name} lost"
        assert got_inits[name].shape == arr.shape and _close(got_inits[name], arr), name
    # Constant nodes and Identity-of-initializer copies become initializers (ONNX-NOTES 1)
    kept = []
    for n in rg.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                want = _attr_value(a)
                if n.output[0] in got_inits:
                    assert _close(got_inits[n.output[0]].reshape(-1), np.asarray(want).reshape(-1))
            continue
        if n.op_type == "Identity" and n.input[0] in ref_inits:
            assert n.output[0] in got_inits and _close(got_inits[n.output[0]], ref_inits[n.input[0]])
            continue
        kept.append(n)
    got_nodes = [n for n in gg.node if n.op_type != "Constant"]
    assert [n.op_type for n in got_nodes] == [n.op_type for n in kept]
    for r, g in zip(kept, got_nodes):
        want_out = list(r.output)
        while want_out and not want_out[-1]:  # trailing omitted outputs need not be written
            want_out.pop()
        assert list(g.output)[:len(want_out)] == want_out, r.op_type
        want_in = list(r.input)
        while want_in and not want_in[-1]:  # trailing omitted inputs need not be written
            want_in.pop()
        assert list(g.input)[:len(want_in)] == want_in, r.op_type
        gattrs = {a.name: _attr_value(a) for a in g.attribute}
        for a in r.attribute:
            if a.name in gattrs:  # absent: moved to an input by normalisation (axes, split, ...)
                want, have = _attr_value(a), gattrs[a.name]
                if isinstance(want, (int, float)) or (isinstance(want, list) and want and
                                                       not isinstance(want[0], str)):
                    assert _close(have, want), (r.op_type, a.name)
                else:
                    assert have == want, (r.op_type, a.name)

    # and both compute the same thing
    ref_path = tmp_path / "ref.onnx"
    onnx.save(ref, str(ref_path))
    try:
        feeds = models.inputs(ref_path, batch=2)
        want = models.ort_run(ref_path, feeds)
    except Exception as e:  # noqa: BLE001 - onnxruntime's own error types
        pytest.skip(f"onnxruntime cannot run onnx.parser's model: {str(e)[:160]}")
    have = models.ort_run(out, feeds)
    for w, h in zip(want, have):
        assert w.shape == h.shape
        assert np.allclose(w, h, rtol=0, atol=1e-6, equal_nan=True)


# Graphs whose printed form (after dump's passes) needs none of contra's
# extensions (no node names other than the defaults, plain names, no
# ONNX-1.12-unreadable types) and whose normalised, optimised ops are valid
# ONNX at the graph's opset.
PRINTED_ONNX_COMPATIBLE = ["conv_bn_relu", "kinds", "mlp_softmax", "mobile_block", "optional_inputs",
                           "split_concat"]


@pytest.mark.parametrize("stem", PRINTED_ONNX_COMPATIBLE)
def test_printed_text_read_by_onnx_parser(run_contra, tmp_path, stem):
    import onnx
    import onnx.parser
    text = run_contra("dump", GRAPH_DIR / f"{stem}.onnxtxt", "--format", "text").stdout
    ref = onnx.parser.parse_model(text)
    onnx.checker.check_model(ref)
    ref_path, out = tmp_path / "ref.onnx", tmp_path / "contra.onnx"
    onnx.save(ref, str(ref_path))
    run_contra("convert", GRAPH_DIR / f"{stem}.onnxtxt", out)
    feeds = models.inputs(ref_path, batch=3)
    for w, h in zip(models.ort_run(ref_path, feeds), models.ort_run(out, feeds)):
        assert w.shape == h.shape and np.allclose(w, h, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- torchvision models

TORCHVISION = [
    # ~40 s each under the sanitizers (the text carries 11M weights): one by
    # default, the other opset/mode pairs in the long run
    pytest.param("resnet18", "eval", 13, marks=pytest.mark.long),
    pytest.param("resnet18", "eval", 17, marks=pytest.mark.long),
    pytest.param("resnet18", "bn", 13, marks=pytest.mark.long),
    pytest.param("resnet18", "bn", 17, marks=pytest.mark.slow),
    ("mobilenet_v3_small", "eval", 13),
    pytest.param("mobilenet_v3_small", "bn", 17, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,mode,opset", TORCHVISION)
def test_torchvision_round_trip(run_contra, tmp_path, name, mode, opset):
    import onnx
    src = models.export(name, mode, opset)
    txt, back, txt2 = tmp_path / "m.onnxtxt", tmp_path / "back.onnx", tmp_path / "m2.onnxtxt"
    try:
        run_contra("convert", src, txt)
        run_contra("convert", txt, back)
        run_contra("convert", txt, txt2)
        assert filecmp.cmp(txt, txt2, shallow=False), "print -> parse -> print differs"
        onnx.checker.check_model(str(back))
        feeds = models.inputs(src)
        want = models.ort_run(src, feeds)
        have = models.ort_run(back, feeds)
        assert len(want) == len(have)
        for w, h in zip(want, have):
            assert w.shape == h.shape
            assert float(np.abs(w - h).max()) <= 1e-5
        # the text gives the graph the ONNX import gives: same values (names,
        # kinds, dtypes, shapes), nodes, attributes, inputs and outputs;
        # BatchNorm statistics come back as state, weights as parameters
        j_src, j_txt = _dump_json(run_contra, src), _dump_json(run_contra, txt)
        for key in ("name", "producer", "producer_version", "opset", "ir_version", "inputs", "outputs", "nodes"):
            assert j_src[key] == j_txt[key], key
        by_name = lambda vs: sorted(vs, key=lambda v: v["name"])  # noqa: E731
        assert by_name(j_src["values"]) == by_name(j_txt["values"])
        kinds = {v["name"]: v["kind"] for v in j_txt["values"]}
        bn = [n for n in j_txt["nodes"] if n["op"] == "BatchNormalization"]
        assert bool(bn) == (mode == "bn")
        for n in bn:
            assert kinds[n["inputs"][1]] == "param" and kinds[n["inputs"][3]] == "state", n["name"]
    finally:
        for p in (txt, back, txt2):
            if p.exists():
                p.unlink()


# ---------------------------------------------------------------- bad input

BAD = [
    ("", "1:1", "graph name"),
    ('<ir_version: 8, opset_import: ["" : 17]>\ng (float[2] x) => (float[2] y) {\n  y = Relu(x\n}', "4:1",
     "expected ')'"),
    ("g (float[2] x) => (y) {\n  y = Relu <alpha = > (x)\n}", "2:21", "attribute value"),
    ("g (float[2] x) => (y) {\n  y = Relu(q)\n}", "2:3", "'q', which is not defined"),
    ("g (float[2, N] x) => (y) {\n  y = Relu(x)\n}", "1:13", "batch"),
    ("g (x) => (y) {\n  y = Relu(x)\n}", "1:4", "needs a type"),
    ("g (float[2] x) => (y)\n<float[3] w = {1.0, 2.0}>\n{\n  y = Add(x, w)\n}", "2:15", "2 values"),
    ("g (float[2] x) => (y) {\n  y = Relu(x)\n  y = Relu(x)\n}", "3:3", "already defined"),
    ("g (float[2] x) => (y) {\n  y = Softmax <axis = 1.5> (x)\n}", "2:16", "expected int"),
    ("g (float[2] x) => (y) {\n  y = Relu(x)\n", "3:1", "expected a node or '}'"),
    ('g (float[2] x) => (y) {\n  y = Relu("open)\n}', "2:12", "unterminated string"),
    ("g (float[2] x) => (y)\n<int8[1] w = {300}>\n{\n  y = Relu(x)\n}", "2:15", "does not fit in int8"),
    ("g (float[2] x) => (y) {\n  y = Relu(x)\n}\ntrailing", "4:1", "after the graph"),
    ("g (float[2] x) => (y) {\n  y = Relu(x)\n} # fine\n\x00\x01", "4:1", ""),
]


@pytest.mark.parametrize("text,where,what", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_syntax_error_message(run_contra, tmp_path, text, where, what):
    p = tmp_path / "bad.onnxtxt"
    p.write_bytes(text.encode())
    out = tmp_path / "out.onnx"
    r = run_contra("convert", p, out, check=False)
    assert r.returncode == 1, r.stderr
    assert f"bad.onnxtxt:{where}:" in r.stderr, r.stderr
    assert what in r.stderr, r.stderr
    assert not out.exists(), "no partial output on failure"


def test_unknown_ops_listed_at_once(run_contra, tmp_path):
    p = tmp_path / "ops.onnxtxt"
    p.write_text("g (float[2] x) => (w) {\n  y = Frobnicate(x)\n  z = com.acme.Wibble(y)\n"
                 "  [named] w = Frobnicate(z)\n}\n")
    r = run_contra("dump", p, check=False)
    assert r.returncode == 1
    err = r.stderr
    assert "3 nodes with unsupported ops" in err, err
    assert "Frobnicate" in err and "Wibble" in err and "com.acme" in err and "'named'" in err
    assert "line 2" in err and "line 3" in err and "line 4" in err
    assert "'y'" in err and "'z'" in err  # unnamed nodes are identified by their outputs


def test_garbage_never_crashes(run_contra, tmp_path):
    rng = random.Random(1234)
    texts = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) for _ in range(15)]
    texts.append(b"<" * 5000)
    texts.append(b"g (" + b"float[1] x, " * 2000)
    texts.append(b"\xef\xbb\xbf" + GRAPHS[0].read_bytes())
    for src in GRAPHS:
        data = bytearray(src.read_bytes())
        for _ in range(4):
            m = bytearray(data)
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(m))
                op = rng.randrange(3)
                if op == 0:
                    m[i] = rng.randrange(256)
                elif op == 1:
                    del m[i:i + rng.randrange(1, 20)]
                else:
                    m[i:i] = rng.choice([b"<", b">", b"{", b"}", b"(", b",", b"=", b'"', b"-inf", b"N", b"1e999"])
            texts.append(bytes(m))
    for i, t in enumerate(texts):
        p = tmp_path / f"g{i}.onnxtxt"
        p.write_bytes(t)
        r = run_contra("dump", p, "--format", "text", check=False, timeout=60)
        assert r.returncode in (0, 1), f"input {i}: exit {r.returncode}\n{r.stderr[-2000:]}"
        if r.returncode == 1:
            assert r.stderr.strip(), f"input {i}: no message"
        else:  # accepted: what it prints reads back to the same text
            q = tmp_path / f"g{i}.again.onnxtxt"
            q.write_text(r.stdout)
            assert run_contra("dump", q, "--format", "text").stdout == r.stdout


def test_legacy_softmax_normalises_once(run_contra, tmp_path):
    """Below opset 13 Softmax coerces its input to 2-D; the importer makes
    that explicit (Flatten, Softmax, Reshape) exactly once, so a reparse of
    the printed graph does not wrap it again."""
    src = tmp_path / "sm.onnxtxt"
    src.write_text('<ir_version: 6, opset_import: ["" : 11]>\n'
                   'g (float[2,3,4] x) => (float[2,3,4] y) {\n'
                   '  y = Softmax <axis = 1> (x)\n}\n')
    a, b = tmp_path / "a.onnxtxt", tmp_path / "b.onnxtxt"
    run_contra("convert", src, a)
    run_contra("convert", a, b)
    assert a.read_text() == b.read_text()
    ops = [n["op"] for n in _dump_json(run_contra, a)["nodes"]]
    assert ops.count("Softmax") == 1 and ops.count("Flatten") <= 1
