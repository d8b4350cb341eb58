# test_ops.py — per-op tests: small single-node ONNX models built with
# onnx.helper (random and awkward shapes: 1, 3, 7 and 13 channels; strides,
# paddings, dilations, groups incl. depthwise; ceil_mode pooling;
# broadcasting), each run by onnxruntime (the oracle), by the reference
# interpreter (tests/c/eval_model.c over passes/eval.c) and by the generated
# C kernels (`contra run`), and compared: max abs diff <= 1e-4 * max(1, max|ref|)
# for float outputs, exact equality for integer and bool outputs.
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import build_path

ort = pytest.importorskip("onnxruntime")

NP2ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
           np.dtype(np.int64): TensorProto.INT64, np.dtype(np.int32): TensorProto.INT32,
           np.dtype(np.bool_): TensorProto.BOOL, np.dtype(np.uint8): TensorProto.UINT8,
           np.dtype(np.int8): TensorProto.INT8, np.dtype(np.float16): TensorProto.FLOAT16}


class Case:
    """One single-node model: inputs fed at run time, initializers baked in."""

    def __init__(self, op, inputs, attrs=None, inits=None, outputs=1, opset=17, out_types=None,
                 input_order=None, lowered=True):
        self.op, self.attrs, self.opset = op, attrs or {}, opset
        # False: the inference backend is allowed to refuse this node (it must
        # then say so, naming the node); the reference interpreter must not.
        self.lowered = lowered
        self.inputs = inputs            # dict name -> array (graph inputs)
        self.inits = inits or {}        # dict name -> array (initializers)
        self.n_out = outputs
        self.out_types = out_types      # list of ONNX element types, None: as first input
        # node input names, in order ("" for an omitted optional input)
        self.input_order = input_order or (list(inputs) + list(self.inits))

    def model(self):
        ins = [helper.make_tensor_value_info(k, NP2ONNX[v.dtype], list(v.shape)) for k, v in self.inputs.items()]
        types = self.out_types or [NP2ONNX[next(iter(self.inputs.values())).dtype]] * self.n_out
        outs = [helper.make_tensor_value_info(f"y{i}", types[i], None) for i in range(self.n_out)]
        node = helper.make_node(self.op, self.input_order, [f"y{i}" for i in range(self.n_out)], name=f"the_{self.op}",
                                **self.attrs)
        inits = [numpy_helper.from_array(v, k) for k, v in self.inits.items()]
        g = helper.make_graph([node], f"test_{self.op}", ins, outs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="test_ops")
        m.ir_version = 8
        return m


def rnd(*shape, lo=-2.0, hi=2.0, seed=0):
    r = np.random.default_rng(seed + 7919 * len(shape) + int(np.prod(shape)))
    return np.asarray(r.uniform(lo, hi, size=shape), dtype=np.float32)


def ints(*vals):
    return np.array(vals, dtype=np.int64)


CASES = []


def case(name, *a, **k):
    CASES.append(pytest.param(Case(*a, **k), id=name))


# ---------------------------------------------------------------- convolution
for (n, c, m, h, w, k, s, p, d, g, bias) in [
        (1, 1, 1, 5, 5, 3, 1, 1, 1, 1, False),
        (1, 3, 7, 13, 13, 3, 2, 1, 1, 1, True),
        (2, 7, 13, 7, 9, 3, 1, 0, 1, 1, True),
        (1, 13, 3, 14, 14, 5, 2, 2, 1, 1, True),
        (1, 3, 7, 11, 11, 3, 1, 2, 2, 1, False),     # dilation
        (1, 7, 7, 13, 13, 3, 1, 1, 1, 7, True),      # depthwise
        (2, 13, 13, 7, 7, 3, 2, 1, 1, 13, False),    # depthwise, stride 2
        (1, 6, 9, 8, 8, 3, 1, 1, 1, 3, True),        # grouped
        (1, 3, 7, 1, 1, 1, 1, 0, 1, 1, True),        # 1x1 spatial
        (1, 13, 7, 7, 7, 1, 1, 0, 1, 1, False),      # pointwise
        (1, 3, 4, 224 // 8, 224 // 8, 7, 2, 3, 1, 1, False),  # resnet stem-like
]:
    inits = {"w": rnd(m, c // g, k, k, seed=1)}
    if bias:
        inits["b"] = rnd(m, seed=2)
    case(f"conv_n{n}c{c}m{m}_{h}x{w}_k{k}s{s}p{p}d{d}g{g}{'_bias' if bias else ''}", "Conv",
         {"x": rnd(n, c, h, w)}, dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, dilations=[d, d], group=g),
         inits)
case("conv_asym_pads_strides", "Conv", {"x": rnd(1, 3, 9, 8)},
     dict(kernel_shape=[3, 2], strides=[2, 1], pads=[0, 1, 2, 0]), {"w": rnd(5, 3, 3, 2, seed=3)})
for ap in ("SAME_UPPER", "SAME_LOWER", "VALID"):
    case(f"conv_auto_pad_{ap}", "Conv", {"x": rnd(1, 3, 8, 7)}, dict(auto_pad=ap, strides=[2, 2]),
         {"w": rnd(4, 3, 3, 3, seed=4)})

# ---------------------------------------------------------------- pooling
for (c, h, k, s, p, ceil, d) in [(1, 5, 2, 2, 0, 0, 1), (3, 7, 3, 2, 1, 0, 1), (7, 13, 3, 2, 0, 1, 1),
                                 (13, 8, 3, 2, 1, 1, 1), (3, 9, 2, 1, 0, 0, 2), (7, 112, 3, 2, 1, 0, 1)]:
    attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, ceil_mode=ceil)
    if d != 1:
        attrs["dilations"] = [d, d]
    case(f"maxpool_c{c}_{h}_k{k}s{s}p{p}_ceil{ceil}_d{d}", "MaxPool", {"x": rnd(2, c, h, h)}, attrs)
    for cip in (0, 1):
        if d == 1:
            case(f"avgpool_c{c}_{h}_k{k}s{s}p{p}_ceil{ceil}_cip{cip}", "AveragePool", {"x": rnd(2, c, h, h)},
                 dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, ceil_mode=ceil, count_include_pad=cip))
case("maxpool_indices", "MaxPool", {"x": rnd(1, 3, 7, 7)}, dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
     outputs=2, out_types=[TensorProto.FLOAT, TensorProto.INT64], lowered=False)
case("maxpool_same_upper", "MaxPool", {"x": rnd(1, 3, 7, 7)}, dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"))
for op in ("GlobalAveragePool", "GlobalMaxPool"):
    for shape in [(1, 1, 1, 1), (2, 3, 7, 7), (1, 13, 5, 3)]:
        case(f"{op}_{'x'.join(map(str, shape))}", op, {"x": rnd(*shape)})

# ---------------------------------------------------------------- normalisation
for c, shape in [(1, (2, 1, 5, 5)), (3, (1, 3, 7, 7)), (7, (2, 7, 3, 3)), (13, (4, 13)), (13, (1, 13, 1, 1))]:
    stats = {"scale": rnd(c, seed=5), "bias": rnd(c, seed=6), "mean": rnd(c, seed=7),
             "var": rnd(c, lo=0.1, hi=2.0, seed=8)}
    case(f"batchnorm_{'x'.join(map(str, shape))}", "BatchNormalization", {"x": rnd(*shape)}, dict(epsilon=1e-3), stats,
         opset=15)
    if len(shape) == 4:
        case(f"batchnorm_train_{'x'.join(map(str, shape))}", "BatchNormalization", {"x": rnd(*shape)},
             dict(epsilon=1e-5, momentum=0.9, training_mode=1), stats, outputs=3, opset=15, lowered=False)

# ---------------------------------------------------------------- linear algebra
for (M, K, N, ta, tb, cshape, alpha, beta) in [
        (1, 7, 13, 0, 1, (13,), 1.0, 1.0), (3, 13, 7, 0, 0, (3, 7), 1.0, 1.0), (7, 3, 1, 1, 0, None, 1.0, 1.0),
        (13, 7, 3, 1, 1, (1, 3), 0.5, 2.0), (4, 512, 10, 0, 1, (10,), 1.0, 1.0), (2, 5, 3, 0, 0, (2, 1), 1.0, -1.0),
        # one row: a matrix-vector product in the C backend, every transpose
        (1, 9, 5, 1, 0, (1, 5), 0.5, 2.0), (1, 6, 4, 0, 0, None, 1.0, 1.0), (1, 8, 3, 1, 1, (3,), -1.5, 1.0)]:
    A = rnd(K, M) if ta else rnd(M, K)
    inits = {"b": rnd(N, K, seed=9) if tb else rnd(K, N, seed=9)}
    if cshape:
        inits["c"] = rnd(*cshape, seed=10)
    case(f"gemm_{M}x{K}x{N}_tA{ta}_tB{tb}_C{cshape}", "Gemm", {"a": A},
         dict(transA=ta, transB=tb, alpha=alpha, beta=beta), inits)
for sa, sb in [((3, 7), (7, 13)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 6)), ((7,), (7, 3)), ((3, 7), (7,)),
               ((1, 13), (13, 1)), ((4, 1, 7), (7, 2))]:
    case(f"matmul_{sa}_{sb}", "MatMul", {"a": rnd(*sa), "b": rnd(*sb, seed=11)})

# ---------------------------------------------------------------- elementwise
for op in ("Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Exp", "Erf", "Floor", "Ceil", "HardSwish", "Identity"):
    case(f"{op}", op, {"x": rnd(2, 7, 3, 5, lo=-4, hi=4)})
for op in ("Sqrt", "Reciprocal", "Log"):
    case(f"{op}", op, {"x": rnd(3, 13, lo=0.1, hi=5)})
case("HardSigmoid", "HardSigmoid", {"x": rnd(2, 13, lo=-4, hi=4)}, dict(alpha=0.25, beta=0.4))
case("LeakyRelu", "LeakyRelu", {"x": rnd(2, 13, lo=-4, hi=4)}, dict(alpha=0.1))
case("Not", "Not", {"x": rnd(3, 7) > 0})
case("clip_min_max", "Clip", {"x": rnd(2, 7, 3, lo=-8, hi=8)},
     inits={"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)})
case("clip_max_only", "Clip", {"x": rnd(2, 7, lo=-8, hi=8)}, inits={"hi": np.array(1.5, np.float32)},
     input_order=["x", "", "hi"])
for op in ("Softmax", "LogSoftmax"):
    for shape, axis in [((3, 13), -1), ((2, 7, 5), 1), ((4, 10), 0), ((1, 1000), 1)]:
        case(f"{op}_{'x'.join(map(str, shape))}_axis{axis}", op, {"x": rnd(*shape, lo=-5, hi=5)}, dict(axis=axis))
case("Dropout_inference", "Dropout", {"x": rnd(2, 13)}, opset=13)

BCAST = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (1, 3, 1)), ((1, 7, 1, 1), (2, 7, 5, 5)),
         ((13,), ()), ((), (3, 1)), ((2, 13, 7, 7), (1, 13, 1, 1))]
for op in ("Add", "Sub", "Mul", "Div"):
    for sa, sb in BCAST:
        b = rnd(*sb, seed=12)
        if op == "Div":
            b = np.where(np.abs(b) < 0.2, 0.5, b).astype(np.float32)
        case(f"{op}_{sa}_{sb}", op, {"a": rnd(*sa), "b": b})
case("Pow", "Pow", {"a": rnd(2, 7, lo=0.1, hi=3), "b": rnd(7, seed=13)})
case("Pow_square", "Pow", {"a": rnd(3, 5)}, inits={"e": np.array(2.0, np.float32)})
for op in ("Max", "Min", "Sum"):
    case(f"{op}_three", op, {"a": rnd(2, 1, 7), "b": rnd(3, 1, seed=14), "c": rnd(7, seed=15)})
    case(f"{op}_one", op, {"a": rnd(3, 5)})
for op in ("Equal", "Less", "Greater"):
    case(f"{op}_int", op, {"a": np.random.default_rng(1).integers(-3, 3, (3, 7)).astype(np.int64),
                           "b": np.random.default_rng(2).integers(-3, 3, (7,)).astype(np.int64)},
         out_types=[TensorProto.BOOL])
    if op != "Equal":
        case(f"{op}_float", op, {"a": rnd(2, 3, 4), "b": rnd(4, seed=16)}, out_types=[TensorProto.BOOL])
for op in ("And", "Or"):
    case(op, op, {"a": rnd(3, 4) > 0, "b": rnd(4, seed=17) > 0})
case("Where", "Where", {"c": rnd(2, 1, 4) > 0, "a": rnd(3, 4, seed=18), "b": rnd(2, 3, 1, seed=19)},
     out_types=[TensorProto.FLOAT])
case("Add_int64", "Add", {"a": ints(1, -5, 1 << 40), "b": ints(3)})
case("Mul_int32", "Mul", {"a": np.array([[1, -7], [3, 9]], np.int32), "b": np.array([5, -2], np.int32)})
case("Div_int64", "Div", {"a": ints(7, -7, 9, 100), "b": ints(2, 2, -4, 7)})

# ---------------------------------------------------------------- casts
for src, dst, x in [(np.float32, TensorProto.INT64, rnd(3, 7, lo=-50, hi=50)),
                    (np.float32, TensorProto.BOOL, np.array([0, 1.5, -2, 0], np.float32)),
                    (np.int64, TensorProto.FLOAT, ints(1, -3, 1 << 20)),
                    (np.bool_, TensorProto.FLOAT, np.array([True, False])),
                    (np.int32, TensorProto.INT64, np.array([-5, 7], np.int32)),
                    (np.float32, TensorProto.DOUBLE, rnd(13)),
                    (np.int64, TensorProto.INT32, ints(3, -4)),
                    (np.float32, TensorProto.FLOAT16, rnd(7))]:
    case(f"Cast_{np.dtype(src).name}_to_{TensorProto.DataType.Name(dst)}", "Cast", {"x": x}, dict(to=dst),
         out_types=[dst], lowered=dst != TensorProto.FLOAT16)

# ---------------------------------------------------------------- reductions
for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2"):
    for shape, axes, keep in [((2, 7, 5, 5), [2, 3], 1), ((3, 13), [-1], 0), ((2, 3, 4), [0, 2], 1),
                              ((3, 7), None, 1), ((13, 1, 3), [1], 0)]:
        x = rnd(*shape, lo=0.5, hi=1.5) if op == "ReduceProd" else rnd(*shape)
        inits = {"axes": ints(*axes)} if axes else {}
        case(f"{op}_{'x'.join(map(str, shape))}_axes{axes}_keep{keep}", op, {"x": x}, dict(keepdims=keep), inits,
             opset=18)
case("ReduceSum_noop_empty_axes", "ReduceSum", {"x": rnd(3, 4)}, dict(noop_with_empty_axes=1), opset=18)
case("ReduceMean_opset13_attr_axes", "ReduceMean", {"x": rnd(2, 7, 3, 3)}, dict(axes=[2, 3], keepdims=1), opset=13)
for axis, keep, last in [(1, 1, 0), (0, 0, 0), (-1, 0, 1)]:
    case(f"ArgMax_axis{axis}_keep{keep}_last{last}", "ArgMax",
         {"x": np.round(rnd(3, 7, 5), 0).astype(np.float32)}, dict(axis=axis, keepdims=keep, select_last_index=last),
         out_types=[TensorProto.INT64])

# ---------------------------------------------------------------- data movement
case("Flatten_axis1", "Flatten", {"x": rnd(2, 3, 4, 5)}, dict(axis=1))
case("Flatten_axis0", "Flatten", {"x": rnd(2, 3, 4)}, dict(axis=0))
case("Flatten_axis-2", "Flatten", {"x": rnd(2, 3, 4, 5)}, dict(axis=-2))
case("Reshape", "Reshape", {"x": rnd(2, 3, 4)}, inits={"s": ints(4, -1)})
case("Reshape_zero", "Reshape", {"x": rnd(2, 3, 4)}, inits={"s": ints(0, 12)})
case("Transpose_default", "Transpose", {"x": rnd(2, 3, 4)})
case("Transpose_perm", "Transpose", {"x": rnd(2, 3, 4, 5)}, dict(perm=[0, 2, 3, 1]))
case("Concat_axis1", "Concat", {"a": rnd(2, 3, 4), "b": rnd(2, 1, 4, seed=20), "c": rnd(2, 7, 4, seed=21)}, dict(axis=1))
case("Concat_axis-1", "Concat", {"a": rnd(2, 3), "b": rnd(2, 13, seed=22)}, dict(axis=-1))
case("Concat_int64", "Concat", {"a": ints(1, 2), "b": ints(-1)}, dict(axis=0))
case("Split_input", "Split", {"x": rnd(2, 13, 3)}, dict(axis=1), {"split": ints(3, 7, 3)}, outputs=3, opset=13)
case("Split_equal_attr", "Split", {"x": rnd(6, 5)}, dict(axis=0), outputs=3, opset=11)
case("Split_num_outputs", "Split", {"x": rnd(2, 7)}, dict(axis=1, num_outputs=3), outputs=3, opset=18)
for name, st, en, ax, sp, shape in [("basic", [1], [3], [1], None, (2, 5, 3)),
                                    ("neg_step", [-1, 0], [-100, 7], [2, 1], [-2, 2], (2, 7, 5)),
                                    ("clamp", [0, -3], [100, 1000], [0, 3], None, (3, 2, 2, 7)),
                                    ("int64_max", [1], [9223372036854775807], [0], None, (13, 2))]:
    inits = {"st": ints(*st), "en": ints(*en), "ax": ints(*ax)}
    if sp:
        inits["sp"] = ints(*sp)
    case(f"Slice_{name}", "Slice", {"x": rnd(*shape)}, inits=inits)
case("Squeeze", "Squeeze", {"x": rnd(1, 3, 1, 7)}, inits={"axes": ints(0, 2)})
case("Squeeze_all", "Squeeze", {"x": rnd(1, 3, 1, 7)})
case("Unsqueeze", "Unsqueeze", {"x": rnd(3, 7)}, inits={"axes": ints(0, -1)})
case("Squeeze_opset11_attr", "Squeeze", {"x": rnd(1, 3, 1)}, dict(axes=[0]), opset=11)
case("Gather_axis0", "Gather", {"x": rnd(7, 3)}, dict(axis=0), {"i": ints(0, 6, -1, 2)})
case("Gather_axis1_2d", "Gather", {"x": rnd(2, 7, 3)}, dict(axis=1), {"i": np.array([[1, 0], [6, -7]], np.int64)})
case("Gather_scalar_int32", "Gather", {"x": rnd(5, 4)}, dict(axis=1), {"i": np.array(3, np.int32)})
case("Gather_int64_data", "Gather", {"x": ints(5, 6, 7)}, dict(axis=0), {"i": ints(2, 0)})
case("Shape", "Shape", {"x": rnd(2, 3, 7)}, out_types=[TensorProto.INT64])
case("Shape_start_end", "Shape", {"x": rnd(2, 3, 7, 1)}, dict(start=1, end=-1), out_types=[TensorProto.INT64])
case("Size", "Size", {"x": rnd(2, 3, 7)}, out_types=[TensorProto.INT64])
case("ConstantOfShape", "ConstantOfShape", {}, dict(value=numpy_helper.from_array(np.array([1.5], np.float32))),
     {"s": ints(2, 3)}, out_types=[TensorProto.FLOAT])
case("ConstantOfShape_int64", "ConstantOfShape", {}, dict(value=numpy_helper.from_array(np.array([7], np.int64))),
     {"s": ints(3)}, out_types=[TensorProto.INT64])
case("Expand", "Expand", {"x": rnd(3, 1)}, inits={"s": ints(2, 1, 4)})
case("Expand_smaller_shape", "Expand", {"x": rnd(2, 1, 5)}, inits={"s": ints(3, 1)})
case("Tile", "Tile", {"x": rnd(2, 3)}, inits={"r": ints(2, 3)})
case("Range_int64", "Range", {}, inits={"a": np.array(10, np.int64), "b": np.array(-3, np.int64),
                                        "c": np.array(-4, np.int64)}, out_types=[TensorProto.INT64])
case("Range_float", "Range", {}, inits={"a": np.array(0.5, np.float32), "b": np.array(3, np.float32),
                                        "c": np.array(0.75, np.float32)}, out_types=[TensorProto.FLOAT])
for mode in ("constant", "reflect", "edge"):
    case(f"Pad_{mode}", "Pad", {"x": rnd(1, 3, 5, 4)}, dict(mode=mode),
         {"p": ints(0, 0, 2, 1, 0, 0, 1, 3)} | ({"v": np.array(0.5, np.float32)} if mode == "constant" else {}))
case("Pad_negative", "Pad", {"x": rnd(2, 7)}, inits={"p": ints(0, -2, 1, 3)})
case("Pad_opset10_attr", "Pad", {"x": rnd(3, 4)}, dict(pads=[1, 0, 0, 2], value=-1.0), opset=10)

# integer and mixed-type corners
case("Pad_axes_opset18", "Pad", {"x": rnd(2, 3, 4)}, dict(mode="reflect"), {"p": ints(1, 2, 1, 1), "ax": ints(-1, 1)},
     input_order=["x", "p", "", "ax"], opset=18)
case("Clip_int64", "Clip", {"x": ints(-9, -1, 0, 4, 12)}, inits={"lo": np.array(-2, np.int64), "hi": np.array(5, np.int64)})
case("ReduceMax_int64", "ReduceMax", {"x": np.arange(-6, 6, dtype=np.int64).reshape(3, 4)}, dict(keepdims=0),
     {"axes": ints(1)}, opset=18)
case("Slice_int32_indices", "Slice", {"x": rnd(5, 6)},
     inits={"st": np.array([1, -1], np.int32), "en": np.array([4, 0], np.int32), "ax": np.array([0, 1], np.int32),
            "sp": np.array([2, -1], np.int32)})
case("Equal_bool", "Equal", {"a": rnd(3, 4) > 0, "b": rnd(4, seed=23) > 0}, out_types=[TensorProto.BOOL])
case("Neg_int64", "Neg", {"x": ints(3, -4, 0)})
case("Abs_int32", "Abs", {"x": np.array([-3, 4, 0], np.int32)})
case("Where_int64", "Where", {"c": rnd(4) > 0, "a": ints(1, 2, 3, 4), "b": ints(-1)}, out_types=[TensorProto.INT64])
case("Transpose_int64", "Transpose", {"x": np.arange(24, dtype=np.int64).reshape(2, 3, 4)}, dict(perm=[1, 0, 2]))


# ---------------------------------------------------------------- running


def _run_ort(c, model_path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    return s.run(None, dict(c.inputs))


def _compare(name, got, ref):
    assert got.shape == ref.shape, f"{name}: shape {got.shape}, reference {ref.shape}"
    if ref.dtype.kind == "f":
        got64, ref64 = got.astype(np.float64), ref.astype(np.float64)
        assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype}, reference {ref.dtype}"
        tol = 1e-4 * max(1.0, float(np.max(np.abs(ref64))) if ref.size else 1.0)
        if ref.dtype == np.float16:
            tol = max(tol, 1e-3 * max(1.0, float(np.max(np.abs(ref64)))))
        diff = float(np.max(np.abs(got64 - ref64))) if ref.size else 0.0
        assert diff <= tol, f"{name}: max abs diff {diff:.3g} > {tol:.3g}"
    else:
        assert got.dtype == ref.dtype or (ref.dtype == np.bool_ and got.dtype == np.uint8), \
            f"{name}: dtype {got.dtype}, reference {ref.dtype}"
        assert np.array_equal(got.astype(ref.dtype), ref), f"{name}: integer outputs differ\n{got}\n{ref}"


def _write_inputs(c, tmp_path):
    args = []
    for k, v in c.inputs.items():
        p = tmp_path / f"in_{k}.npy"
        np.save(p, v)
        args.append(f"{k}={p}")
    return args


@pytest.fixture(scope="module")
def eval_model_bin():
    exe = build_path() / "tests" / "eval_model"
    if not exe.exists():
        pytest.fail(f"{exe} is not built (ninja -C {build_path()})")
    return exe


@pytest.mark.parametrize("c", CASES)
def test_reference_vs_onnxruntime(c, tmp_path, eval_model_bin):
    mp = tmp_path / "model.onnx"
    onnx.save(c.model(), str(mp))
    refs = _run_ort(c, mp)
    out = tmp_path / "ref"
    out.mkdir()
    p = subprocess.run([str(eval_model_bin), str(mp), str(out)] + _write_inputs(c, tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for i, r in enumerate(refs):
        _compare(f"{c.op} output {i}", np.load(out / f"out{i}.npy"), np.asarray(r))


def _contra_run_available(contra):
    p = subprocess.run([str(contra), "run"], capture_output=True, text=True, timeout=60)
    return "not built yet" not in (p.stdout + p.stderr)


@pytest.mark.parametrize("c", CASES)
def test_generated_c_vs_onnxruntime(c, tmp_path, contra_bin):
    if not _contra_run_available(contra_bin):
        pytest.skip("`contra run` is not built yet")
    mp = tmp_path / "model.onnx"
    onnx.save(c.model(), str(mp))
    refs = _run_ort(c, mp)
    args = [str(contra_bin), "run", str(mp)]
    for a in _write_inputs(c, tmp_path):
        args += ["--input", a]
    outs = [tmp_path / f"out{i}.npy" for i in range(len(refs))]
    for o in outs:
        args += ["--output", str(o)]
    env = dict(os.environ, OMP_NUM_THREADS="2")
    p = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    if p.returncode != 0 and not c.lowered:
        # refused: the message must name the op and the node, and no output may be left behind
        assert "cannot lower" in p.stderr and f"the_{c.op}" in p.stderr and c.op in p.stderr, p.stderr
        assert not any(o.exists() for o in outs)
        return
    assert p.returncode == 0, p.stderr[-3000:]
    for i, r in enumerate(refs):
        _compare(f"{c.op} output {i} (generated C)", np.load(outs[i]), np.asarray(r))
