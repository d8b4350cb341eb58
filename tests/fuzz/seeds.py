# seeds.py — seed corpus for the ONNX loader fuzzer: "skeletons" of
# torchvision exports (every initializer shrunk to one element per axis, so
# the graph structure stays and the file stays small) plus hand-made models
# covering the op-version forms the importer normalises.
"""python tests/fuzz/seeds.py OUT_DIR [MODEL.onnx ...]"""
import os
import pathlib
import sys

import numpy as np


def skeleton(path):
    """The model at `path` with each initializer shrunk to shape [1]*rank."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(path))
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        small = np.ones([1] * a.ndim, dtype=a.dtype) if a.size > 8 else a
        t.CopyFrom(numpy_helper.from_array(small, t.name))
    return m


def hand_made():
    """Small models, one per import path worth exercising."""
    import onnx
    from onnx import TensorProto as T, helper as h, numpy_helper as nh

    def model(nodes, inits, opset, inputs=None, outputs=None, ir=7):
        g = h.make_graph(nodes, "g",
                         inputs or [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 4, 4])],
                         outputs or [h.make_tensor_value_info("y", T.FLOAT, None)],
                         initializer=inits)
        return h.make_model(g, opset_imports=[h.make_opsetid("", opset)], ir_version=ir)

    f32 = lambda name, shape: nh.from_array(np.arange(np.prod(shape), dtype=np.float32).reshape(shape), name)
    i64 = lambda name, vals: nh.from_array(np.array(vals, dtype=np.int64), name)
    out = {}
    out["squeeze_attr_op11"] = model([
        h.make_node("Unsqueeze", ["x"], ["u"], axes=[0], name="unsq"),
        h.make_node("Squeeze", ["u"], ["y"], axes=[0], name="sq")], [], 11)
    out["squeeze_input_op13"] = model([
        h.make_node("Unsqueeze", ["x", "ax"], ["u"], name="unsq"),
        h.make_node("Squeeze", ["u", "ax"], ["y"], name="sq")], [i64("ax", [0])], 13)
    out["clip_attr_op10"] = model([h.make_node("Clip", ["x"], ["y"], min=0.0, max=6.0, name="clip")], [], 10)
    out["pad_slice_op9"] = model([
        h.make_node("Pad", ["x"], ["p"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.5, name="pad"),
        h.make_node("Slice", ["p"], ["y"], starts=[1], ends=[3], axes=[2], name="slice")], [], 9)
    out["softmax_op11"] = model([h.make_node("Softmax", ["x"], ["y"], axis=1, name="sm")], [], 11)
    out["dropout_reduce_op10"] = model([
        h.make_node("Dropout", ["x"], ["d"], ratio=0.1, name="drop"),
        h.make_node("ReduceMean", ["d"], ["y"], axes=[2, 3], keepdims=1, name="mean")], [], 10)
    out["split_op11"] = model([
        h.make_node("Split", ["x"], ["a", "b"], axis=1, split=[1, 2], name="split"),
        h.make_node("Concat", ["b", "a"], ["y"], axis=1, name="cat")], [], 11)
    out["bn_op9_outputs"] = model([
        h.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv", "sm", "sv"],
                    epsilon=1e-5, momentum=0.9, name="bn")],
        [f32("s", [3]), f32("b", [3]), f32("m", [3]), f32("v", [3])], 9)
    out["identity_fanout_op13"] = model([
        h.make_node("Identity", ["ones"], ["bn.running_var"], name="id1"),
        h.make_node("Identity", ["bn.running_var"], ["bn.weight"], name="id2"),
        h.make_node("BatchNormalization", ["x", "bn.weight", "zeros", "zeros", "bn.running_var"], ["y"],
                    name="bn")],
        [f32("ones", [3]), f32("zeros", [3])], 13)
    out["constants_op13"] = model([
        h.make_node("Constant", [], ["c1"], value=nh.from_array(np.ones([1, 3, 1, 1], np.float32))),
        h.make_node("Constant", [], ["c2"], value_float=2.0),
        h.make_node("Constant", [], ["c3"], value_ints=[1, 3, 16]),
        h.make_node("Constant", [], ["c4"], value_int=1),
        h.make_node("Mul", ["x", "c1"], ["m"]),
        h.make_node("Pow", ["m", "c2"], ["p"]),
        h.make_node("Reshape", ["p", "c3"], ["r"]),
        h.make_node("Flatten", ["r"], ["y"], axis=1)], [], 13)
    out["gemm_typed_old_ir"] = model([
        h.make_node("Flatten", ["x"], ["f"], axis=1),
        h.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1, alpha=1.0, beta=1.0)],
        [h.make_tensor("w", T.FLOAT, [2, 48], np.ones(96, np.float32).tolist()),
         h.make_tensor("b", T.FLOAT, [2], [0.5, 0.25])], 9,
        inputs=[h.make_tensor_value_info("x", T.FLOAT, [1, 3, 4, 4]),
                h.make_tensor_value_info("w", T.FLOAT, [2, 48]),
                h.make_tensor_value_info("b", T.FLOAT, [2])], ir=3)
    out["shape_chain_op17"] = model([
        h.make_node("Shape", ["x"], ["s"]),
        h.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        h.make_node("Unsqueeze", ["n", "ax"], ["nu"]),
        h.make_node("Concat", ["nu", "minus1"], ["shp"], axis=0),
        h.make_node("Reshape", ["x", "shp"], ["y"])],
        [i64("zero", 0), i64("ax", [0]), i64("minus1", [-1])], 17)
    out["external_data"] = model([h.make_node("Add", ["x", "w"], ["y"])], [f32("w", [1, 3, 4, 4])], 13)
    ext = out["external_data"].graph.initializer[0]
    ext.ClearField("raw_data")
    ext.data_location = T.EXTERNAL
    for k, v in (("location", "w.bin"), ("offset", "0"), ("length", "192")):
        e = ext.external_data.add()
        e.key, e.value = k, v
    return out


def write(out_dir, models=()):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, m in hand_made().items():
        (out_dir / f"{name}.onnx").write_bytes(m.SerializeToString())
    for p in models:
        (out_dir / f"skel-{pathlib.Path(p).stem}.onnx").write_bytes(skeleton(p).SerializeToString())
    return sorted(out_dir.iterdir())


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    for p in write(sys.argv[1], sys.argv[2:]):
        print(p, os.path.getsize(p))
