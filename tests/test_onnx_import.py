# test_onnx_import.py — the ONNX protobuf loader on bad and unusual input,
# through `contra dump`: every bad file gives a message naming the file and
# what is wrong, exit status 1, no signal and no output; the unusual but
# valid forms (external data, typed fields, old IR versions) load.
import json
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402


def make_model(nodes, inits=(), opset=13, inputs=None, outputs=None, ir=8):
    g = h.make_graph(nodes, "g",
                     inputs if inputs is not None else [h.make_tensor_value_info("x", T.FLOAT, [1, 3])],
                     outputs if outputs is not None else [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)], ir_version=ir)


def save(tmp_path, model, name="model.onnx"):
    p = tmp_path / name
    p.write_bytes(model.SerializeToString())
    return p


def f32(name, shape, start=0.0):
    return nh.from_array((start + np.arange(int(np.prod(shape)), dtype=np.float32)).reshape(shape), name)


def expect_error(run_contra, path, *needles):
    """contra dump fails cleanly: exit 1 (no signal), no stdout, and stderr
    names the file and each of the needles (case-insensitive)."""
    p = run_contra("dump", path, check=False, timeout=60)
    assert p.returncode > 0, f"expected failure, got {p.returncode}\n{p.stderr}"
    assert p.returncode == 1, f"exit {p.returncode} (signal or usage?)\n{p.stderr}"
    assert p.stdout == "", f"partial output on failure:\n{p.stdout[:500]}"
    msg = p.stderr
    assert str(path) in msg, f"message does not name the file {path}:\n{msg}"
    for n in needles:
        assert n.lower() in msg.lower(), f"message lacks {n!r}:\n{msg}"
    assert "AddressSanitizer" not in msg and "runtime error" not in msg, msg
    return msg


def dump_json(run_contra, path, after="import"):
    p = run_contra("dump", path, "--format", "json", "--after", after, timeout=120)
    return json.loads(p.stdout)


def kinds(doc):
    return {v["name"]: v["kind"] for v in doc["values"]}


# ---------------------------------------------------------------- not ONNX at all

def test_truncated_protobuf(run_contra, tmp_path):
    m = make_model([h.make_node("Add", ["x", "w"], ["y"], name="add")], [f32("w", [1, 3000])],
                   inputs=[h.make_tensor_value_info("x", T.FLOAT, [1, 3000])])
    data = m.SerializeToString()
    p = tmp_path / "truncated.onnx"
    p.write_bytes(data[: len(data) // 2])  # cut inside the initializer's raw_data
    expect_error(run_contra, p, "truncated or corrupt")


@pytest.mark.parametrize("kind", ["random", "text", "empty"])
def test_not_onnx(run_contra, tmp_path, kind):
    p = tmp_path / f"{kind}.onnx"
    if kind == "random":
        p.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "text":
        p.write_text("this is a plain text file, not a model\n" * 20)
    else:
        p.write_bytes(b"")
    msg = expect_error(run_contra, p)
    assert "onnx" in msg.lower()


def test_unreadable_file(run_contra, tmp_path):
    expect_error(run_contra, tmp_path / "does-not-exist.onnx", "cannot open")


# ---------------------------------------------------------------- broken graphs

def test_missing_initializer(run_contra, tmp_path):
    m = make_model([h.make_node("Relu", ["x"], ["r"], name="relu"),
                    h.make_node("Add", ["r", "fc.bias"], ["y"], name="add_bias")])
    expect_error(run_contra, save(tmp_path, m), "add_bias", "fc.bias", "missing initializer")


def test_shape_mismatch(run_contra, tmp_path):
    m = make_model([h.make_node("Add", ["x", "w"], ["y"], name="bad_add")], [f32("w", [1, 4])])
    expect_error(run_contra, save(tmp_path, m), "bad_add")


def test_cycle(run_contra, tmp_path):
    m = make_model([h.make_node("Add", ["x", "c"], ["b"], name="loop_add"),
                    h.make_node("Relu", ["b"], ["c"], name="loop_relu"),
                    h.make_node("Relu", ["b"], ["y"], name="out")])
    msg = expect_error(run_contra, save(tmp_path, m), "cycle")
    assert "loop_add" in msg or "loop_relu" in msg, msg


def test_unknown_ops_listed_at_once(run_contra, tmp_path):
    m = make_model([h.make_node("FancyOp", ["x"], ["a"], name="fancy1"),
                    h.make_node("Relu", ["a"], ["b"], name="relu"),
                    h.make_node("FancyOp", ["b"], ["c"], name="fancy2"),
                    h.make_node("Frobnicate", ["c"], ["y"], name="frob", domain="com.example")])
    m.opset_import.append(h.make_opsetid("com.example", 3))
    msg = expect_error(run_contra, save(tmp_path, m), "FancyOp", "fancy1", "fancy2", "Frobnicate", "frob",
                       "com.example")
    assert "2 unsupported op types" in msg and "opset 13" in msg and "opset 3" in msg, msg


def test_dims_product_overflows_initializer(run_contra, tmp_path):
    w = T()
    w.name = "huge.weight"
    w.data_type = T.FLOAT
    w.dims.extend([2 ** 40, 2 ** 40])
    w.raw_data = b"\0" * 16
    m = make_model([h.make_node("Add", ["x", "huge.weight"], ["y"], name="add")], [w])
    expect_error(run_contra, save(tmp_path, m), "huge.weight", "overflows")


def test_dims_product_overflows_input(run_contra, tmp_path):
    m = make_model([h.make_node("Relu", ["x"], ["y"], name="relu")],
                   inputs=[h.make_tensor_value_info("x", T.FLOAT, [1, 2 ** 62, 2 ** 62])])
    expect_error(run_contra, save(tmp_path, m), "'x'", "overflows")


def test_raw_data_size_mismatch(run_contra, tmp_path):
    w = f32("w", [1, 3])
    w.dims[:] = [1, 4]
    m = make_model([h.make_node("Add", ["x", "w"], ["y"], name="add")], [w])
    expect_error(run_contra, save(tmp_path, m), "'w'", "raw_data")


@pytest.mark.parametrize("opset", [8, 22])
def test_unsupported_opset(run_contra, tmp_path, opset):
    m = make_model([h.make_node("Relu", ["x"], ["y"], name="relu")], opset=opset)
    expect_error(run_contra, save(tmp_path, m), f"opset {opset}", "9 to 21")


def test_attribute_type_mismatch(run_contra, tmp_path):
    m = make_model([h.make_node("Flatten", ["x"], ["y"], name="flat", axis=1.5)])
    expect_error(run_contra, save(tmp_path, m), "flat", "axis", "float", "expected int")


# ---------------------------------------------------------------- external data

def external(name, location, shape, offset=None, length=None):
    t = T()
    t.name = name
    t.data_type = T.FLOAT
    t.dims.extend(shape)
    t.data_location = T.EXTERNAL
    entries = [("location", location)]
    if offset is not None:
        entries.append(("offset", str(offset)))
    if length is not None:
        entries.append(("length", str(length)))
    for k, v in entries:
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def ext_model(t):
    return make_model([h.make_node("Add", ["x", t.name], ["y"], name="add")], [t])


def test_external_data_inside_folder_loads(run_contra, tmp_path):
    vals = np.array([[1.5, -2.0, 3.25]], dtype=np.float32)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w.bin").write_bytes(b"\0" * 16 + vals.tobytes())
    p = save(tmp_path, ext_model(external("w", "weights/w.bin", [1, 3], offset=16, length=12)))
    doc = dump_json(run_contra, p)
    w = [v for v in doc["values"] if v["name"] == "w"]
    assert w and w[0]["kind"] == "param" and w[0]["shape"] == [1, 3], doc["values"]


def test_external_data_parent_dir_refused(run_contra, tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\0" * 12)
    sub = tmp_path / "model"
    sub.mkdir()
    p = save(sub, ext_model(external("w", "../x.bin", [1, 3])))
    expect_error(run_contra, p, "'w'", "../x.bin", "leaves the model's folder")


def test_external_data_absolute_path_refused(run_contra, tmp_path):
    target = tmp_path / "abs.bin"
    target.write_bytes(b"\0" * 12)
    p = save(tmp_path, ext_model(external("w", str(target), [1, 3])))
    expect_error(run_contra, p, "'w'", "leaves the model's folder")


def test_external_data_symlink_escape_refused(run_contra, tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 12)
    sub = tmp_path / "model"
    sub.mkdir()
    os.symlink(outside, sub / "link.bin")
    p = save(sub, ext_model(external("w", "link.bin", [1, 3])))
    expect_error(run_contra, p, "'w'", "outside the model's folder")


def test_external_data_shorter_than_declared(run_contra, tmp_path):
    (tmp_path / "w.bin").write_bytes(b"\0" * 100)
    p = save(tmp_path, ext_model(external("w", "w.bin", [1, 48], offset=0, length=192)))
    expect_error(run_contra, p, "'w'", "w.bin", "shorter than declared")


def test_external_data_offset_past_end(run_contra, tmp_path):
    (tmp_path / "w.bin").write_bytes(b"\0" * 12)
    p = save(tmp_path, ext_model(external("w", "w.bin", [1, 3], offset=8)))
    expect_error(run_contra, p, "'w'", "shorter than declared")


# ---------------------------------------------------------------- valid but unusual

def test_typed_field_initializers(run_contra, tmp_path):
    w = h.make_tensor("w", T.FLOAT, [1, 3], [0.5, 1.5, 2.5])          # float_data
    shape = h.make_tensor("shape", T.INT64, [2], [3, 1])              # int64_data
    m = make_model([h.make_node("Mul", ["x", "w"], ["m"], name="mul"),
                    h.make_node("Reshape", ["m", "shape"], ["y"], name="reshape")], [w, shape])
    doc = dump_json(run_contra, save(tmp_path, m))
    k = kinds(doc)
    assert k["w"] == "param" and k["shape"] == "const", k
    full = dump_json(run_contra, save(tmp_path, m), after="infer_shapes")
    assert full["outputs"][0]["shape"] == [3, 1], full["outputs"]


def test_old_ir_initializers_listed_as_inputs_are_parameters(run_contra, tmp_path):
    m = make_model([h.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)],
                   [f32("fc.weight", [2, 3]), f32("fc.bias", [2])], opset=9, ir=3,
                   inputs=[h.make_tensor_value_info("x", T.FLOAT, [1, 3]),
                           h.make_tensor_value_info("fc.weight", T.FLOAT, [2, 3]),
                           h.make_tensor_value_info("fc.bias", T.FLOAT, [2])])
    doc = dump_json(run_contra, save(tmp_path, m))
    assert [i["name"] for i in doc["inputs"]] == ["x"], doc["inputs"]
    k = kinds(doc)
    assert k["fc.weight"] == "param" and k["fc.bias"] == "param", k


def test_symbolic_batch_and_bad_symbolic_dim(run_contra, tmp_path):
    ok = make_model([h.make_node("Relu", ["x"], ["y"], name="relu")],
                    inputs=[h.make_tensor_value_info("x", T.FLOAT, ["batch", 3])])
    doc = dump_json(run_contra, save(tmp_path, ok, "ok.onnx"))
    assert doc["inputs"][0]["shape"] == ["N", 3], doc["inputs"]
    bad = make_model([h.make_node("Relu", ["x"], ["y"], name="relu")],
                     inputs=[h.make_tensor_value_info("x", T.FLOAT, [1, "channels"])])
    expect_error(run_contra, save(tmp_path, bad, "bad.onnx"), "'x'", "channels")


def test_identity_of_initializer_becomes_own_tensor(run_contra, tmp_path):
    # The exporter's dedup fan-out (ONNX-NOTES.md 1): one tensor of ones feeds a
    # BatchNorm weight and a running variance through Identity nodes.
    m = make_model([h.make_node("Identity", ["ones"], ["bn.running_var"], name="id1"),
                    h.make_node("Identity", ["ones"], ["bn.weight"], name="id2"),
                    h.make_node("BatchNormalization", ["x", "bn.weight", "zeros", "zeros", "bn.running_var"],
                                ["y"], name="bn")],
                   [f32("ones", [3], 1.0), f32("zeros", [3])],
                   inputs=[h.make_tensor_value_info("x", T.FLOAT, [1, 3, 2, 2])])
    doc = dump_json(run_contra, save(tmp_path, m))
    k = kinds(doc)
    assert k["bn.running_var"] == "state" and k["bn.weight"] == "param", k
    assert not any(n["op"] == "Identity" for n in doc["nodes"]), doc["nodes"]
    # 'zeros' feeds both the bias (trainable) and the running mean: untied.
    bn = [n for n in doc["nodes"] if n["op"] == "BatchNormalization"][0]
    assert bn["inputs"][2] != bn["inputs"][3], bn
    assert k[bn["inputs"][2]] == "param" and k[bn["inputs"][3]] == "state", k


@pytest.mark.parametrize("opset", [9, 10, 11])
def test_old_opset_forms_load(run_contra, tmp_path, opset):
    nodes = [h.make_node("Clip", ["x"], ["c"], name="clip", min=0.0, max=6.0),
             h.make_node("Unsqueeze", ["c"], ["u"], name="unsq", axes=[0]),
             h.make_node("Squeeze", ["u"], ["s"], name="sq", axes=[0]),
             h.make_node("Softmax", ["s"], ["y"], name="softmax", axis=1)]
    doc = dump_json(run_contra, save(tmp_path, make_model(nodes, opset=opset)), after="infer_shapes")
    assert doc["outputs"][0]["shape"] == [1, 3], doc["outputs"]
    clip = [n for n in doc["nodes"] if n["op"] == "Clip"][0]
    assert len(clip["inputs"]) == 3 and "min" not in clip.get("attrs", {}), clip


# ---------------------------------------------------------------- export (ct_onnx_save)

def old_forms_model(opset):
    """Every attribute-vs-input form the importer normalises, at an old opset."""
    nodes = [h.make_node("Clip", ["x"], ["c"], name="clip", min=-1.0, max=2.0),
             h.make_node("Unsqueeze", ["c"], ["u"], name="unsq", axes=[0]),
             h.make_node("Squeeze", ["u"], ["s"], name="sq", axes=[0]),
             h.make_node("Pad", ["s"], ["p"], name="pad", pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.5),
             h.make_node("Slice", ["p"], ["sl"], name="slice", starts=[1], ends=[4], axes=[2]),
             h.make_node("ReduceMean", ["sl"], ["r"], name="mean", axes=[3], keepdims=1),
             h.make_node("Split", ["r"], ["a", "b"], name="split", axis=1, split=[1, 2]),
             h.make_node("Concat", ["b", "a"], ["cat"], name="cat", axis=1),
             h.make_node("Dropout", ["cat"], ["d"], name="drop", ratio=0.25),
             h.make_node("Softmax", ["d"], ["y"], name="softmax", axis=1)]
    if opset >= 10:
        nodes[4] = h.make_node("Slice", ["p", "st", "en", "ax"], ["sl"], name="slice")
    if opset >= 11:
        nodes[0] = h.make_node("Clip", ["x", "lo", "hi"], ["c"], name="clip")
        nodes[3] = h.make_node("Pad", ["s", "pads", "val"], ["p"], name="pad")
    if opset >= 12:
        nodes[8] = h.make_node("Dropout", ["cat", "ratio"], ["d"], name="drop")
    if opset >= 13:
        nodes[1] = h.make_node("Unsqueeze", ["c", "zero"], ["u"], name="unsq")
        nodes[2] = h.make_node("Squeeze", ["u", "zero"], ["s"], name="sq")
        nodes[6] = h.make_node("Split", ["r", "split"], ["a", "b"], name="split", axis=1)
    inits = [nh.from_array(np.array([1], np.int64), "st"), nh.from_array(np.array([4], np.int64), "en"),
             nh.from_array(np.array([2], np.int64), "ax"), nh.from_array(np.array(-1.0, np.float32), "lo"),
             nh.from_array(np.array(2.0, np.float32), "hi"),
             nh.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             nh.from_array(np.array(0.5, np.float32), "val"), nh.from_array(np.array(0.25, np.float32), "ratio"),
             nh.from_array(np.array([0], np.int64), "zero"), nh.from_array(np.array([1, 2], np.int64), "split")]
    used = {i for n in nodes for i in n.input}
    return make_model(nodes, [t for t in inits if t.name in used], opset=opset,
                      inputs=[h.make_tensor_value_info("x", T.FLOAT, [2, 3, 4, 4])],
                      outputs=[h.make_tensor_value_info("y", T.FLOAT, [2, 3, 3, 1])])


@pytest.mark.parametrize("opset", [9, 10, 11, 13, 17])
@pytest.mark.parametrize("optimize", [False, True])
def test_export_old_forms_roundtrip(run_contra, tmp_path, opset, optimize):
    ort = pytest.importorskip("onnxruntime")
    m = old_forms_model(opset)
    onnx.checker.check_model(m)
    src = save(tmp_path, m, "in.onnx")
    out = tmp_path / "out.onnx"
    run_contra("convert", src, out, *(["--optimize"] if optimize else []))
    back = onnx.load(str(out))
    onnx.checker.check_model(back)
    assert [o.version for o in back.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    x = np.random.default_rng(0).standard_normal([2, 3, 4, 4]).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    want = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert want.shape == got.shape == (2, 3, 3, 1)
    assert np.max(np.abs(want - got)) <= 1e-5


def test_export_failure_leaves_nothing(run_contra, tmp_path):
    m = make_model([h.make_node("Relu", ["x"], ["y"], name="relu")],
                   outputs=[h.make_tensor_value_info("y", T.FLOAT, [1, 3])])
    src = save(tmp_path, m, "in.onnx")
    missing = tmp_path / "no-such-dir" / "out.onnx"
    p = run_contra("convert", src, missing, check=False)
    assert p.returncode == 1 and str(missing) in p.stderr, p.stderr
    assert not (tmp_path / "no-such-dir").exists()
    # A successful write replaces the file and leaves no temporary beside it.
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old contents")
    run_contra("convert", src, out)
    onnx.checker.check_model(onnx.load(str(out)))
    assert sorted(os.listdir(tmp_path)) == ["in.onnx", "out.onnx"]
