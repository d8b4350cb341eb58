# test_dump.py — 'contra dump' formats (table, text, json, dot, svg), --stats,
# --after, --batch, -o atomicity and usage errors, and 'contra convert', on the
# bundled tiny ResNet and a small torchvision export.
import json
import os
import re

import numpy as np
import onnx
import onnx.parser
import pytest

import models

TINY = models.ROOT / "models" / "cifar_resnet_tiny.onnxtxt"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """The bundled tiny model as parsed by onnx itself (the reference)."""
    m = onnx.parser.parse_model(TINY.read_text())
    onnx.checker.check_model(m)
    p = tmp_path_factory.mktemp("tiny") / "tiny_ref.onnx"
    onnx.save(m, str(p))
    return p


def _dump_json(run_contra, *args):
    p = run_contra("dump", *args, "--format", "json")
    return json.loads(p.stdout)


def _leftovers(d, keep):
    return sorted(f for f in os.listdir(d) if f not in keep)


# ---------------------------------------------------------------- table


def test_table_default(run_contra):
    out = run_contra("dump", TINY).stdout
    head = out.split("\n\n")[0]
    for key in ("model:", "producer:", "graph:", "inputs:", "outputs:", "params:", "ops:"):
        assert key in head, key
    assert "cifar_resnet_tiny" in head
    assert "input float[N,3,32,32]" in head
    assert "Conv x6" in head and "BatchNormalization x6" in head
    lines = [l for l in out.splitlines() if l[:3].strip().isdigit()]
    assert len(lines) == 22
    conv0 = lines[0].split()
    assert conv0[:2] == ["0", "Conv"]
    assert "k=3x3" in lines[0] and "p=1,1,1,1" in lines[0] and "p[4,3,3,3]" in lines[0]
    # the downsampling conv shows its stride; stride-1 convs do not
    assert any("Conv" in l and "s=2" in l and "[N,8,16,16]" in l for l in lines)
    assert not re.search(r"(^|\s)s=1\b", out)
    # BN: two params and two statistics as counts
    assert any("BatchNormalization" in l and "+2p +2s" in l for l in lines)


def test_table_same_as_format_table(run_contra):
    assert run_contra("dump", TINY).stdout == run_contra("dump", TINY, "--format", "table").stdout


def test_table_stats(run_contra):
    out = run_contra("dump", TINY, "--stats", "--batch", "2").stdout
    assert "1,454 trainable in 20 tensors" in out
    assert "72 in 12 tensors" in out  # BN statistics are state
    assert "FLOPs" in out and "multiply-adds" in out
    assert "batch 2" in out and "input float[2,3,32,32]" in out


def test_table_short_names_resnet18(run_contra):
    p = models.export("resnet18", "bn", 13)
    out = run_contra("dump", p).stdout
    # /layer1/layer1.0/conv1/Conv -> layer1.0/conv1 (prefix components and the op type dropped)
    assert " layer1.0/conv1 " in out
    assert "/layer1/layer1.0" not in out
    assert "25,557,032" not in out  # not resnet50
    assert "11,689,512 trainable" in out  # torchvision resnet18


# ---------------------------------------------------------------- json


def test_json_structure(run_contra, tiny_onnx):
    d = _dump_json(run_contra, TINY)
    for k in ("name", "producer", "opset", "ir_version", "batch", "inputs", "outputs", "values", "nodes"):
        assert k in d, k
    assert d["name"] == "cifar_resnet_tiny" and d["opset"] == 13 and d["ir_version"] == 8
    assert d["batch"] is None
    assert d["inputs"] == [{"name": "input", "dtype": "float", "shape": ["N", 3, 32, 32]}]
    assert d["outputs"][0]["name"] == "logits" and d["outputs"][0]["shape"] == ["N", 10]
    assert "stats" not in d
    ref = onnx.load(str(tiny_onnx))
    assert [n["op"] for n in d["nodes"]] == [n.op_type for n in ref.graph.node]
    assert [n["index"] for n in d["nodes"]] == list(range(len(d["nodes"])))
    vals = {v["name"]: v for v in d["values"]}
    for init in ref.graph.initializer:
        v = vals[init.name]
        assert v["shape"] == list(init.dims)
        assert v["kind"] == ("state" if "running" in init.name else "param")
    conv = d["nodes"][0]
    assert conv["attrs"]["kernel_shape"] == [3, 3] and conv["attrs"]["pads"] == [1, 1, 1, 1]
    assert conv["inputs"] == ["input", "conv1_weight"]
    # 2 * N*Cout*H*W * Cin*kh*kw with N = 1
    assert conv["flops"] == 2 * 4 * 32 * 32 * 3 * 3 * 3


def test_json_stats_match_reference(run_contra, tiny_onnx):
    d = _dump_json(run_contra, TINY, "--stats", "--batch", "3")
    s = d["stats"]
    ref = onnx.load(str(tiny_onnx))
    params = sum(int(np.prod(i.dims)) for i in ref.graph.initializer if "running" not in i.name)
    state = sum(int(np.prod(i.dims)) for i in ref.graph.initializer if "running" in i.name)
    assert s["params"] == params == 1454
    assert s["param_bytes"] == 4 * params
    assert s["state"] == state == 72
    assert s["op_counts"] == {"Conv": 6, "BatchNormalization": 6, "Relu": 5, "Add": 2,
                              "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}
    # multiply-adds from the conv and gemm shapes, batch 3
    vals = {v["name"]: v for v in d["values"]}
    macs = 0
    for n in d["nodes"]:
        if n["op"] == "Conv":
            out = vals[n["outputs"][0]]["shape"]
            w = vals[n["inputs"][1]]["shape"]
            macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif n["op"] == "Gemm":
            macs += 3 * 10 * 8
    assert s["macs"] == macs
    assert s["flops"] == sum(n["flops"] for n in d["nodes"])
    assert s["flops"] >= 2 * macs
    assert not s["per_sample"] and d["batch"] == 3
    temps = [v for v in d["values"] if v["kind"] == "temp"]
    assert s["activation_bytes"] == sum(4 * int(np.prod(v["shape"])) for v in temps)


def test_json_escaping(run_contra, tmp_path):
    weird = 'a"b\\c\nd\te/\u00e9\u4e2d\x01'
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])
    y = onnx.helper.make_tensor_value_info(weird, onnx.TensorProto.FLOAT, [1, 2])
    node = onnx.helper.make_node("Relu", ["x"], [weird], name=weird + "_node")
    g = onnx.helper.make_graph([node], 'g"\\', [x], [y])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 13)])
    p = tmp_path / "weird.onnx"
    onnx.save(m, str(p))
    d = _dump_json(run_contra, p, "--stats")
    assert d["name"] == 'g"\\'
    assert d["nodes"][0]["name"] == weird + "_node"
    assert d["nodes"][0]["outputs"] == [weird]
    assert d["outputs"][0]["name"] == weird
    # the dot output escapes too: quotes are backslashed
    dot = run_contra("dump", p, "--format", "dot").stdout
    assert 'a\\"b' in dot


def test_after_import_and_passes(run_contra, tmp_path):
    # a graph with dead code and a duplicate subexpression
    src = """<ir_version: 8, opset_import: ["" : 13]>
g (float[1,4] x) => (float[1,4] y) {
  a = Relu(x)
  b = Relu(x)
  dead = Sigmoid(x)
  y = Add(a, b)
}"""
    p = tmp_path / "g.onnxtxt"
    p.write_text(src)
    imp = _dump_json(run_contra, p, "--after", "import")
    assert [n["op"] for n in imp["nodes"]] == ["Relu", "Relu", "Sigmoid", "Add"]
    full = _dump_json(run_contra, p)
    ops = [n["op"] for n in full["nodes"]]
    assert "Sigmoid" not in ops and ops.count("Relu") == 1 and ops.count("Add") == 1
    inf = _dump_json(run_contra, p, "--after", "infer_shapes")
    assert len(inf["nodes"]) == 4
    assert all(v["shape"] == [1, 4] for v in inf["values"])


def test_memory_plan_section(run_contra):
    helptext = run_contra("dump", "--help").stdout
    if "memory_plan" not in helptext:
        pytest.skip("memory_plan pass not registered yet")
    out = run_contra("dump", TINY, "--batch", "2", "--after", "memory_plan", "--stats").stdout
    assert "memory plan: arena peak" in out
    d = _dump_json(run_contra, TINY, "--batch", "2", "--after", "memory_plan")
    planned = [v for v in d["values"] if "offset" in v]
    assert planned and all(v["kind"] == "temp" for v in planned)
    assert all(0 <= v["first_use"] <= v["last_use"] for v in planned)
    assert d["arena_bytes"] > 0


# ---------------------------------------------------------------- text, dot, svg


def test_text_round_trip(run_contra, tmp_path):
    out = run_contra("dump", TINY, "--format", "text").stdout
    assert out.lstrip().startswith("<") and "=>" in out
    p = tmp_path / "again.onnxtxt"
    p.write_text(out)
    a = _dump_json(run_contra, TINY, "--stats")
    b = _dump_json(run_contra, p, "--stats")
    assert [(n["op"], n["attrs"]) for n in a["nodes"]] == [(n["op"], n["attrs"]) for n in b["nodes"]]
    assert a["stats"]["params"] == b["stats"]["params"]
    assert a["stats"]["state"] == b["stats"]["state"]


def test_dot(run_contra):
    out = run_contra("dump", TINY, "--format", "dot", "--batch", "2").stdout
    assert out.startswith("digraph")
    assert out.rstrip().endswith("}")
    assert '[label="float[2,4,32,32]"]' in out  # shapes on the edges
    assert "in0 -> n0" in out and "-> out0" in out
    # weights are labels on their node, not boxes of their own
    assert "conv1_weight" not in out and "p[4,3,3,3]" in out
    assert out.count(" -> ") == 1 + 21 + 2 + 1  # input edge, one per data input, skip edges, output


def test_svg(run_contra, tmp_path):
    if not any(os.access(os.path.join(d, "dot"), os.X_OK) for d in os.environ.get("PATH", "").split(":")):
        pytest.skip("graphviz 'dot' not installed")
    out = run_contra("dump", TINY, "--format", "svg").stdout
    assert "<svg" in out and "</svg>" in out and "Conv" in out
    f = tmp_path / "g.svg"
    run_contra("dump", TINY, "--format", "svg", "-o", f)
    assert "<svg" in f.read_text()


def test_svg_without_dot(run_contra, tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))
    target = tmp_path / "g.svg"
    p = run_contra("dump", TINY, "--format", "svg", "-o", target, check=False, env=env)
    assert p.returncode == 1
    assert p.stderr.startswith("contra: ") and "graphviz" in p.stderr.lower()
    assert not target.exists()
    assert _leftovers(tmp_path, set()) == []


# ---------------------------------------------------------------- -o


def test_output_file_atomic(run_contra, tmp_path):
    target = tmp_path / "out.json"
    p = run_contra("dump", TINY, "--format", "json", "-o", target)
    assert p.stdout == ""
    assert json.loads(target.read_text())["name"] == "cifar_resnet_tiny"
    assert _leftovers(tmp_path, {"out.json"}) == []
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)  # not mkstemp's 0600
    # a failing run leaves the old file alone and no temporary behind
    target.write_text("old")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07\x12\xff\xff\xff\xff garbage")
    p = run_contra("dump", bad, "-o", target, check=False)
    assert p.returncode == 1 and p.stderr.startswith("contra: ")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path, {"out.json", "bad.onnx"}) == []
    # a folder that does not exist
    p = run_contra("dump", TINY, "-o", tmp_path / "nope" / "x.txt", check=False)
    assert p.returncode == 1 and "nope" in p.stderr
    assert _leftovers(tmp_path, {"out.json", "bad.onnx"}) == []


def test_missing_model(run_contra, tmp_path):
    p = run_contra("dump", tmp_path / "missing.onnx", check=False)
    assert p.returncode == 1
    assert p.stderr.startswith("contra: ") and "missing.onnx" in p.stderr
    assert p.stdout == ""


# ---------------------------------------------------------------- usage


def test_help_documents_every_option(run_contra):
    p = run_contra("dump", "--help")
    for opt in ("--after", "--format", "--stats", "--batch", "-o", "table", "text", "json", "dot", "svg",
                "import", "infer_shapes"):
        assert opt in p.stdout, opt
    p = run_contra("convert", "--help")
    for opt in ("--batch", "--optimize", ".onnxtxt"):
        assert opt in p.stdout, opt


@pytest.mark.parametrize("args", [
    [],
    ["--bogus"],
    ["--format", "png"],
    ["--format"],
    ["--batch", "0"],
    ["--batch", "x"],
    ["--batch", "-3"],
    ["--after", "no_such_pass"],
    ["-o"],
    ["two.onnx"],
])
def test_dump_usage_errors(run_contra, args):
    full = ["dump"] + ([TINY] if args != [] else []) + args
    p = run_contra(*full, check=False)
    assert p.returncode == 2, p.stderr
    assert "usage: contra dump" in p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("args", [[], ["only_in.onnx"], ["a", "b", "c"], ["a", "b", "--batch", "0"],
                                  ["a", "b", "--frobnicate"]])
def test_convert_usage_errors(run_contra, args):
    p = run_contra("convert", *args, check=False)
    assert p.returncode == 2
    assert "usage: contra convert" in p.stderr


# ---------------------------------------------------------------- convert


def _ort_equal(a, b, batch=None):
    feeds = models.inputs(a, seed=1, batch=batch)
    ra, rb = models.ort_run(a, feeds), models.ort_run(b, feeds)
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb):
        assert x.shape == y.shape
        assert np.max(np.abs(x - y)) <= 1e-5


def test_convert_text_to_onnx_and_back(run_contra, tmp_path, tiny_onnx):
    out = tmp_path / "tiny.onnx"
    run_contra("convert", TINY, out)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    _ort_equal(tiny_onnx, out, batch=2)
    txt = tmp_path / "tiny.onnxtxt"
    run_contra("convert", out, txt)
    assert txt.read_text().lstrip().startswith("<")
    back = tmp_path / "back.onnx"
    run_contra("convert", txt, back)
    _ort_equal(tiny_onnx, back, batch=2)
    assert _leftovers(tmp_path, {"tiny.onnx", "tiny.onnxtxt", "back.onnx"}) == []


def test_convert_optimize_and_batch(run_contra, tmp_path, tiny_onnx):
    out = tmp_path / "opt.onnx"
    run_contra("convert", TINY, out, "--optimize", "--batch", "4")
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [4, 3, 32, 32]
    _ort_equal(tiny_onnx, out, batch=4)


def test_convert_error_leaves_nothing(run_contra, tmp_path):
    bad = tmp_path / "bad.onnxtxt"
    bad.write_text("<ir_version: 8, opset_import: [\"\" : 13]>\ng (float[1] x) => (float[1] y) { y = NoSuchOp(x) }\n")
    for out in ("o.onnx", "o.onnxtxt"):
        p = run_contra("convert", bad, tmp_path / out, check=False)
        assert p.returncode == 1 and p.stderr.startswith("contra: ")
        assert "NoSuchOp" in p.stderr
    assert _leftovers(tmp_path, {"bad.onnxtxt"}) == []


def test_convert_cifar_resnet18(run_contra, tmp_path):
    src = models.export("cifar_resnet18", "bn_rand", 13)
    out = tmp_path / "c.onnx"
    run_contra("convert", src, out, "--optimize")
    onnx.checker.check_model(onnx.load(str(out)))
    _ort_equal(src, out)


def test_batch_dynamic_and_fixed(run_contra, tmp_path):
    dyn = models.export("cifar_resnet18", "eval", 13, dynamic=True)
    d = _dump_json(run_contra, dyn, "--batch", "4")
    assert d["batch"] == 4
    assert d["inputs"][0]["shape"] == [4, 3, 32, 32]
    assert d["outputs"][0]["shape"] == [4, 10]
    out = tmp_path / "b4.onnx"
    run_contra("convert", dyn, out, "--batch", "4")
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    assert [x.dim_value for x in m.graph.output[0].type.tensor_type.shape.dim] == [4, 10]
    _ort_equal(dyn, out, batch=4)
    # a fixed-batch export: the same batch is fine, another one is refused clearly
    fixed = models.export("cifar_resnet18", "eval", 13)
    assert _dump_json(run_contra, fixed, "--batch", "1")["inputs"][0]["shape"] == [1, 3, 32, 32]
    p = run_contra("dump", fixed, "--batch", "4", check=False)
    assert p.returncode == 1 and "symbolic batch" in p.stderr and p.stdout == ""
    p = run_contra("convert", fixed, tmp_path / "x.onnx", "--batch", "4", check=False)
    assert p.returncode == 1 and not (tmp_path / "x.onnx").exists()


def test_table_names_unique(run_contra):
    """Shortened names stay unambiguous: SiLU's Sigmoid and Mul share a path."""
    p = models.export("efficientnet_b0", "bn", 13)
    out = run_contra("dump", p).stdout
    rows = [l.split() for l in out.splitlines() if l[:3].strip().isdigit()]
    names = [r[2] for r in rows]
    assert len(rows) > 200
    assert len(set(names)) == len(names)
    assert "features.0.2/Sigmoid" in names and "features.0.2/Mul" in names
    assert not any(n.startswith("/") for n in names)


@pytest.mark.parametrize("preset,batch,expect", [
    ("moco-v2", 8, {"QueuePush", "SGDStep", "ContrastiveLoss", "StopGradient", "ConvGradWeight"}),  # fused loss
    ("simclr", 4, {"LarsStep", "InBatchContrastiveLoss", "ConvGradInput"}),
    ("byol", 4, {"BatchNormTrain", "BatchNormGrad"}),
])
def test_dump_method_training_graph(run_contra, preset, batch, expect):
    """--method shows the whole training graph: encoder, heads, loss,
    backward, optimizer and state updates."""
    d = _dump_json(run_contra, TINY, "--method", preset, "--batch", str(batch))
    ops = {n["op"] for n in d["nodes"]}
    assert expect <= ops, expect - ops
    kinds = {v["name"]: v["kind"] for v in d["values"]}
    assert any(n.startswith("grad/") for n in kinds)
    if preset == "moco-v2":
        assert kinds["queue"] == "state" and kinds["queue_ptr"] == "state"
        assert any(n.startswith("key/") and k == "state" for n, k in kinds.items())


def test_dump_method_errors(run_contra):
    p = run_contra("dump", TINY, "--method", "nosuch", check=False)
    assert p.returncode == 1 and "unknown method preset 'nosuch'" in p.stderr and "moco-v2" in p.stderr
    # MoCo v2's 8 BatchNorm splits need a batch divisible by 8
    p = run_contra("dump", TINY, "--method", "moco-v2", "--batch", "4", check=False)
    assert p.returncode == 1 and "not divisible by 8" in p.stderr
    p = run_contra("dump", TINY, "--method", check=False)
    assert p.returncode == 2


@pytest.mark.parametrize("preset,sync", [("moco-v2", False), ("moco-v2", True), ("simclr", False)])
def test_dump_method_data_parallel(run_contra, preset, sync):
    """--ranks shows one rank's graph with its collectives: the gradient buckets (AllReduce, mean), MoCo's
    key gathers (and shuffle BN across ranks, or SyncBatchNorm), SimCLR's embedding gathers and the
    ReduceScatter of their gradient."""
    args = ["--method", preset, "--batch", "8", "--ranks", "2"] + (["--sync-bn"] if sync else [])
    d = _dump_json(run_contra, TINY, *args)
    nodes = d["nodes"]
    ops = {n["op"] for n in nodes}
    assert {"AllReduce", "AllGather"} <= ops
    for n in nodes:
        if n["op"] in ("AllReduce", "AllGather", "ReduceScatter"):
            assert n["attrs"]["world"] == 2, n
    names = {v["name"] for v in d["values"]}
    bns = [n for n in nodes if n["op"] == "BatchNormTrain"]
    assert bns and all((n["attrs"].get("world", 1) == 2) == sync for n in bns)
    if preset == "simclr":
        assert "ReduceScatter" in ops
    elif not sync:
        assert "rank_rows" in names  # this rank's block of the shuffled global batch
    p = run_contra("dump", TINY, "--sync-bn", "--method", preset, check=False)
    assert p.returncode == 2 and "--sync-bn needs --ranks" in p.stderr
