# test_models.py — issue 2's model-level acceptance: every torchvision model x
# export mode (eval: BN folded, bn: BN kept) x opset (13, 17) loads, its
# inferred shapes equal onnx.shape_inference's, and 'contra convert' round
# trips it (onnx.checker, onnxruntime outputs within 1e-5); resnet50's stats.
import json

import numpy as np
import onnx
import onnx.shape_inference
import pytest

import models

SLOW = {"resnet34", "resnet50", "mobilenet_v2", "efficientnet_b0"}
CASES = [pytest.param(name, mode, opset, id=f"{name}-{mode}-op{opset}",
                      marks=[pytest.mark.slow] if name in SLOW else [])
         for name in models.NAMES for mode in ("eval", "bn") for opset in (13, 17)]
# BatchNorm exported with TrainingMode.TRAINING (training_mode=1, extra outputs)
CASES += [pytest.param(name, "train", opset, id=f"{name}-train-op{opset}")
          for name in ("cifar_resnet18", "resnet18") for opset in (13, 17)]


def _onnx_shapes(path):
    """{value name: (elem_type, [dims] with None for symbolic)} from onnx's own
    shape inference, for every value it knows (inputs, outputs, intermediates,
    initializers)."""
    m = onnx.load(str(path))
    inf = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    out = {}
    for vi in list(inf.graph.value_info) + list(inf.graph.input) + list(inf.graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        out[vi.name] = (tt.elem_type, dims)
    for init in inf.graph.initializer:
        out[init.name] = (init.data_type, list(init.dims))
    return out, m


DTYPE = {"float": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64,
         "int32": onnx.TensorProto.INT32, "bool": onnx.TensorProto.BOOL,
         "double": onnx.TensorProto.DOUBLE, "float16": onnx.TensorProto.FLOAT16,
         "int8": onnx.TensorProto.INT8, "uint8": onnx.TensorProto.UINT8,
         "bfloat16": onnx.TensorProto.BFLOAT16}


@pytest.mark.parametrize("name,mode,opset", CASES)
def test_shapes_match_onnx(run_contra, name, mode, opset):
    path = models.export(name, mode, opset)
    p = run_contra("dump", path, "--format", "json", "--after", "infer_shapes")
    d = json.loads(p.stdout)
    ref, model = _onnx_shapes(path)
    ours = {v["name"]: v for v in d["values"]}
    compared, mismatches = 0, []
    for vname, v in ours.items():
        if vname not in ref:
            continue
        et, dims = ref[vname]
        assert v["shape"] is not None, f"{vname}: no inferred shape"
        if any(x is None for x in dims):
            continue
        compared += 1
        shape = [1 if x == "N" else x for x in v["shape"]]
        if shape != dims or DTYPE.get(v["dtype"]) != et:
            mismatches.append(f"{vname}: contra {v['dtype']}{v['shape']} onnx {et}{dims}")
    assert not mismatches, "\n".join(mismatches[:20])
    # every intermediate that both know was compared, and that is most of them
    temps = [v for v in d["values"] if v["kind"] == "temp"]
    assert all(v["shape"] is not None for v in temps)
    # onnx 1.12 infers nothing for BatchNormalization-9's training outputs
    bn_extra = {o for n in d["nodes"] if n["op"] == "BatchNormalization" for o in n["outputs"][1:]}
    temps = [v for v in temps if v["name"] not in bn_extra]
    known = [v for v in temps if v["name"] in ref]
    assert len(known) >= 0.8 * len(temps), f"only {len(known)} of {len(temps)} intermediates known to onnx"
    assert compared >= len(known)
    # the graph's output shapes
    for o in model.graph.output:
        assert o.name in ours


@pytest.mark.parametrize("name,mode,opset", CASES)
def test_convert_round_trip(run_contra, tmp_path, name, mode, opset):
    src = models.export(name, mode, opset)
    out = tmp_path / "out.onnx"
    run_contra("convert", src, out)
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    ref = onnx.load(str(src), load_external_data=False)
    assert [o.name for o in m.graph.output] == [o.name for o in ref.graph.output]
    feeds = models.inputs(src, seed=0)
    a = models.ort_run(src, feeds)
    b = models.ort_run(out, feeds)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype
        diff = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
        assert diff <= 1e-5, f"max abs diff {diff}"
    # BatchNorm stays when the export kept it, and parameters stay untied
    n_bn = sum(n.op_type == "BatchNormalization" for n in ref.graph.node)
    assert sum(n.op_type == "BatchNormalization" for n in m.graph.node) == n_bn
    if mode in ("bn", "train"):
        assert n_bn > 0


@pytest.mark.slow
def test_resnet50_stats(run_contra):
    path = models.export("resnet50", "bn", 13)
    d = json.loads(run_contra("dump", path, "--stats", "--format", "json").stdout)
    s = d["stats"]
    assert s["params"] == 25_557_032
    assert 4.0e9 <= s["macs"] <= 4.2e9
    assert s["flops"] >= 2 * s["macs"]
    assert 8.0e9 <= s["flops"] <= 8.5e9
    # BatchNorm statistics are state, counted apart: 2 per channel of 53 BNs
    assert s["state"] == 53_120 and s["state_tensors"] == 106
    assert s["op_counts"]["Conv"] == 53 and s["op_counts"]["BatchNormalization"] == 53
    table = run_contra("dump", path, "--stats").stdout
    assert "25,557,032 trainable" in table
    assert "G multiply-adds" in table


def test_cifar_resnet18_identity_dedup_untied(run_contra):
    """ONNX-NOTES 1: the default-init export deduplicates BN tensors through
    Identity; contra must give every state_dict name its own tensor."""
    path = models.export("cifar_resnet18", "bn", 13)
    ref = onnx.load(str(path))
    assert sum(n.op_type == "Identity" for n in ref.graph.node) > 0
    d = json.loads(run_contra("dump", path, "--stats", "--format", "json").stdout)
    s = d["stats"]
    # torchvision resnet18(num_classes=10) with a 3x3 stem: 62 trainable tensors, 40 statistics
    assert s["param_tensors"] == 62
    assert s["state_tensors"] == 40
    assert "Identity" not in s["op_counts"]
    names = {v["name"] for v in d["values"]}
    assert "layer4.1.bn2.running_var" in names and "layer4.1.bn2.weight" in names
