# test_bundled_models.py — models/resnet through tests/c/model_tool: the
# bundled ResNets have torchvision's parameter counts, state_dict names and
# shapes; saved as ONNX they pass onnx.checker, run in onnxruntime, and the
# ONNX initializers loaded into torchvision's own model (eval mode) give the
# same outputs.
import json
import subprocess

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from conftest import build_path


@pytest.fixture(scope="module")
def tool():
    exe = build_path() / "tests" / "model_tool"
    if not exe.exists():
        pytest.skip(f"{exe} is not built")
    return str(exe)


def build(tool, name, *args, onnx_path=None):
    cmd = [tool, name] + [str(a) for a in args]
    if onnx_path:
        cmd += ["--onnx", str(onnx_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in p.stdout.splitlines()]
    return recs[:-1], recs[-1]


class SmallResNet(ResNet):
    """torchvision's ResNet with a 3x3 stride-1 stem, no max-pool, a base width
    and an optional fc: the reference for the small-image variants."""

    def __init__(self, block, layers, width=64, num_classes=10, in_ch=3, with_fc=True):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(in_ch, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes) if with_fc else nn.Identity()


ARCH = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}


def reference(depth, small, width=64, num_classes=1000, in_ch=3, with_fc=True):
    if small:
        return SmallResNet(*ARCH[depth], width=width, num_classes=num_classes, in_ch=in_ch, with_fc=with_fc)
    m = getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
    if in_ch != 3:
        m.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
    if not with_fc:
        m.fc = nn.Identity()
    return m


@pytest.mark.parametrize("name,args,count", [
    ("resnet18", [], 11_689_512),
    ("resnet34", [], 21_797_672),
    ("resnet50", [], 25_557_032),
    ("resnet18_small", ["--classes", 10], 11_173_962),
])
def test_parameter_counts(tool, name, args, count):
    _, summary = build(tool, name, *args)
    assert summary["params"] == count
    assert summary["first_node"] == "/conv1/Conv" and summary["last_node"] == "/fc/Gemm"


@pytest.mark.parametrize("name,depth,small,width,classes,in_ch,with_fc", [
    ("resnet18", 18, False, 64, 1000, 3, True),
    ("resnet34", 34, False, 64, 1000, 3, True),
    ("resnet50", 50, False, 64, 1000, 3, True),
    ("resnet18_small", 18, True, 64, 10, 3, True),
    ("resnet50_small_w16", 50, True, 16, 10, 1, False),
    ("resnet18_small_w32", 18, True, 32, 7, 1, True),
])
def test_state_dict_names_and_shapes(tool, name, depth, small, width, classes, in_ch, with_fc):
    args = ["--classes", classes, "--in-ch", in_ch] + ([] if with_fc else ["--no-fc"])
    tensors, summary = build(tool, name, *args)
    ref = reference(depth, small, width, classes, in_ch, with_fc)
    want = {k: list(v.shape) for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = {t["name"]: t["shape"] for t in tensors}
    assert got == want
    for t in tensors:
        is_stat = t["name"].endswith("running_mean") or t["name"].endswith("running_var")
        assert t["kind"] == ("state" if is_stat else "param"), t
    assert summary["params"] == sum(p.numel() for p in ref.parameters())


def load_into_torchvision(model, onnx_path):
    """The few lines a user needs: ONNX initializers -> torchvision state_dict."""
    m = onnx.load(str(onnx_path))
    sd = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    return model.eval()


ONNX_CASES = [
    pytest.param("resnet18", 18, False, 64, 1000, 3, True, 224, id="resnet18"),
    pytest.param("resnet18_small", 18, True, 64, 10, 3, True, 32, id="resnet18_small"),
    pytest.param("resnet18_small_w16", 18, True, 16, 10, 1, False, 28, id="resnet18_small_w16-gray-nofc"),
    pytest.param("resnet50_small_w16", 50, True, 16, 10, 3, False, 32, id="resnet50_small_w16-nofc"),
    pytest.param("resnet50", 50, False, 64, 1000, 3, True, 224, id="resnet50", marks=[pytest.mark.slow]),
]


@pytest.mark.parametrize("name,depth,small,width,classes,in_ch,with_fc,size", ONNX_CASES)
def test_onnx_matches_torchvision(tool, tmp_path, name, depth, small, width, classes, in_ch, with_fc, size):
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / f"{name}.onnx"
    args = ["--classes", classes, "--in-ch", in_ch, "--seed", 7, "--random-bn", "--size", f"{size}x{size}"]
    build(tool, name, *args, *([] if with_fc else ["--no-fc"]), onnx_path=path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    nodes = {n.name: n for n in model.graph.node}
    assert "/layer1/layer1.0/conv1/Conv" in nodes and "/avgpool/GlobalAveragePool" in nodes
    assert "/layer2/layer2.0/downsample/downsample.0/Conv" in nodes
    bn = nodes["/layer1/layer1.0/bn1/BatchNormalization"]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in bn.attribute}.get("training_mode", 0) == 0
    assert [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}] == ["input"]
    x = np.random.default_rng(0).normal(size=(3, in_ch, size, size)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y_ort,) = sess.run(None, {"input": x})
    ref = load_into_torchvision(reference(depth, small, width, classes, in_ch, with_fc), path)
    with torch.no_grad():
        y_pt = ref(torch.from_numpy(x)).numpy()
    assert y_ort.shape == y_pt.shape == (3, classes if with_fc else width * 8 * (4 if depth == 50 else 1))
    # 1e-4 absolute for outputs of order 1; relative to the largest output beyond
    # (an untrained ResNet-50's features reach a few hundred: float32 rounding)
    scale = max(1.0, float(np.abs(y_pt).max()))
    assert np.abs(y_ort - y_pt).max() <= 1e-4 * scale, (np.abs(y_ort - y_pt).max(), scale)
    # the random BatchNorm statistics really are in the file (the comparison covers them)
    rv = onnx.numpy_helper.to_array([t for t in model.graph.initializer if t.name == "bn1.running_var"][0])
    assert not np.allclose(rv, 1.0)


def test_initialisation_follows_torchvision(tool, tmp_path):
    path = tmp_path / "r18.onnx"
    build(tool, "resnet18", "--seed", 3, onnx_path=path)
    w = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    # kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (out * k * k))
    for k in ("conv1.weight", "layer3.1.conv2.weight", "layer4.0.downsample.0.weight"):
        o, _, kh, kw = w[k].shape
        assert w[k].std() == pytest.approx(np.sqrt(2 / (o * kh * kw)), rel=0.05), k
        assert abs(w[k].mean()) < 0.1 * w[k].std()
    assert (w["bn1.weight"] == 1).all() and (w["bn1.bias"] == 0).all()
    assert (w["layer1.0.bn1.running_mean"] == 0).all() and (w["layer1.0.bn1.running_var"] == 1).all()
    bound = 1 / np.sqrt(512)
    assert np.abs(w["fc.weight"]).max() <= bound and np.abs(w["fc.weight"]).max() > 0.99 * bound
    assert w["fc.weight"].std() == pytest.approx(bound / np.sqrt(3), rel=0.02)
    assert np.abs(w["fc.bias"]).max() <= bound
    # the seed decides the weights
    path2 = tmp_path / "r18b.onnx"
    build(tool, "resnet18", "--seed", 4, onnx_path=path2)
    w2 = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path2)).graph.initializer}
    assert not np.array_equal(w["conv1.weight"], w2["conv1.weight"])
    path3 = tmp_path / "r18c.onnx"
    build(tool, "resnet18", "--seed", 3, onnx_path=path3)
    w3 = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path3)).graph.initializer}
    assert all(np.array_equal(w[k], w3[k]) for k in w)


@pytest.mark.parametrize("name,msg", [
    ("resnet19", "unknown bundled model 'resnet19'"),
    ("resnet18_w16", "unknown bundled model"),
    ("resnet18_small_w0", "unknown bundled model"),
])
def test_bad_names(tool, name, msg):
    p = subprocess.run([tool, name], capture_output=True, text=True)
    assert p.returncode == 1 and msg in p.stderr


def test_bad_options(tool):
    p = subprocess.run([tool, "resnet18", "--size", "-1x5"], capture_output=True, text=True)
    assert p.returncode == 1 and "input size -1x5 is out of range" in p.stderr
    p = subprocess.run([tool, "resnet18", "--in-ch", "2"], capture_output=True, text=True)
    assert p.returncode == 1 and "in_channels must be 1 or 3" in p.stderr


@pytest.mark.parametrize("ours,theirs", [
    ("resnet18", "resnet18"),
    ("resnet18_small", "cifar_resnet18"),
    pytest.param("resnet50", "resnet50", marks=[pytest.mark.slow]),
])
def test_node_names_match_torch_export(tool, tmp_path, ours, theirs):
    """Same nodes, in the same order, with the same names and output names as
    torch.onnx.export (BatchNorm kept, opset 17), Identity fan-out aside."""
    import models
    ref = onnx.load(str(models.export(theirs, mode="bn", opset=17)))
    path = tmp_path / f"{ours}.onnx"
    build(tool, ours, "--classes", 10 if theirs.startswith("cifar") else 1000, onnx_path=path)
    got = onnx.load(str(path))
    final = {ref.graph.output[0].name}
    want = [(n.name, n.op_type, [o for o in n.output if o not in final])
            for n in ref.graph.node if n.op_type not in ("Identity", "Constant")]
    have = [(n.name, n.op_type, [o for o in n.output if o != "output"]) for n in got.graph.node]
    assert have == want
