# test_eval_cmd.py — 'contra eval knn|linear': kNN predictions against a
# NumPy re-implementation of the MoCo CIFAR demo's weighted kNN on features
# computed by onnxruntime from torchvision-preprocessed images; the linear
# protocol (main_lincls) above chance with its encoder sanity check; and
# every bad input (missing files, empty folders, no float output, class
# mismatch) failing with a message, a non-zero exit and no result.
import gzip
import os
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
PIL = pytest.importorskip("PIL.Image")
from PIL import Image  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"
SIZE = 32
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class SmallNet(torch.nn.Module):
    """Two strided convs with BatchNorm, global average pool: 32-d features."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.b1 = torch.nn.BatchNorm2d(16)
        self.c2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.b2 = torch.nn.BatchNorm2d(32)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    torch.manual_seed(0)
    m = SmallNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics, used in eval mode
        for b in (m.b1, m.b2):
            b.running_mean.uniform_(-0.2, 0.2)
            b.running_var.uniform_(0.5, 2.0)
            b.weight.uniform_(0.5, 1.5)
            b.bias.uniform_(-0.1, 0.1)
    m.eval()
    path = tmp_path_factory.mktemp("enc") / "enc.onnx"
    torch.onnx.export(m, torch.zeros(1, 3, SIZE, SIZE), str(path), opset_version=13, input_names=["input"],
                      output_names=["feat"], dynamic_axes={"input": {0: "N"}, "feat": {0: "N"}})
    return path


def synth_image(rng, cls, gray=False):
    """40x40 images: class c has channel c raised by N(40, 30) over a random gray
    level, with pixel noise: overlapping classes (kNN about 80%, not 100%)."""
    base = np.zeros((40, 40, 3), np.float32)
    base[..., cls] = rng.normal(40, 30)
    base += rng.uniform(20, 160)
    img = np.clip(base + rng.normal(0, 30, size=base.shape), 0, 255).astype(np.uint8)
    if gray:
        return Image.fromarray(img).convert("L")
    return Image.fromarray(img)


def write_folder(root, n_per_class, seed, classes=("a_red", "b_green", "c_blue"), gray_every=0):
    rng = np.random.default_rng(seed)
    k = 0
    for c, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n_per_class):
            k += 1
            synth_image(rng, c, gray=gray_every and k % gray_every == 0).save(d / f"img{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    train = write_folder(base / "train", 20, 1, gray_every=7)  # a few gray PNGs: expanded to RGB
    val = write_folder(base / "val", 15, 2)
    return train, val


def preprocess(img):
    """torchvision: Resize(SIZE * 256 / 224), CenterCrop(SIZE), ToTensor, Normalize(ImageNet)."""
    import torchvision.transforms as T
    t = T.Compose([T.Resize(int(SIZE * 256 / 224 + 0.5)), T.CenterCrop(SIZE), T.ToTensor(),
                   T.Normalize(MEAN.tolist(), STD.tolist())])
    return t(img.convert("RGB")).numpy()


def folder_samples(root):
    """ImageFolder order: sorted class folders, sorted files."""
    xs, ys = [], []
    for c, name in enumerate(sorted(os.listdir(root))):
        for f in sorted(os.listdir(root / name)):
            xs.append(preprocess(Image.open(root / name / f)))
            ys.append(c)
    return np.stack(xs), np.array(ys)


def ort_features(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(len(x), -1)


def moco_knn_predict(feature, bank, bank_labels, classes, k, t):
    """The MoCo CIFAR demo's knn_predict, in NumPy: feature (B, D), bank (D, N)."""
    sim = feature @ bank                                # (B, N)
    k = min(k, bank.shape[1])
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    sim_w = np.exp(np.take_along_axis(sim, idx, 1) / t)
    labels = bank_labels[idx]                           # (B, k)
    one_hot = np.zeros((len(feature), k, classes))
    np.put_along_axis(one_hot, labels[..., None], 1.0, 2)
    scores = (one_hot * sim_w[..., None]).sum(1)        # (B, C)
    return scores.argmax(1)


def normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def accuracy_of(stdout, what):
    m = re.search(what + r" top-1 accuracy: ([0-9.]+)%", stdout)
    assert m, stdout
    return float(m.group(1))


def check_knn(run_contra, encoder, tmp_path, args, train_xy, val_xy, classes, k, t):
    save = tmp_path / "feats"
    p = run_contra("eval", "knn", "--encoder", encoder, *args, "--k", k, "--t", t, "--batch", 8,
                   "--threads", 1, "--workers", 2, "--save-features", save, timeout=120)
    assert "sanity check passed" in p.stdout
    acc = accuracy_of(p.stdout, "kNN")
    (xt, yt), (xv, yv) = train_xy, val_xy
    ft, fv = ort_features(encoder, xt), ort_features(encoder, xv)
    # contra's features (compiled encoder, contra's decoding and transforms) vs onnxruntime on torchvision's
    ct_t, ct_v = np.load(save / "train_feats.npy"), np.load(save / "val_feats.npy")
    assert ct_t.shape == ft.shape and ct_v.shape == fv.shape
    np.testing.assert_array_equal(np.load(save / "train_labels.npy"), yt)
    np.testing.assert_array_equal(np.load(save / "val_labels.npy"), yv)
    diff = max(np.abs(ct_t - ft).max(), np.abs(ct_v - fv).max())
    assert diff <= 1e-4 * max(1.0, np.abs(ft).max()), f"features differ from onnxruntime by {diff}"
    ref = moco_knn_predict(normalize(fv), normalize(ft).T, yt, classes, k, t)
    pred = np.load(save / "val_pred.npy")
    agree = (pred == ref).mean()
    assert agree >= 0.99, f"kNN predictions agree on only {agree:.3f}"
    ref_acc = 100.0 * (ref == yv).mean()
    assert abs(acc - ref_acc) <= 100.0 / len(yv) + 1e-9, (acc, ref_acc)
    return acc, ref_acc


def test_knn_folders_match_reference(run_contra, encoder, folders, tmp_path):
    train, val = folders
    acc, ref_acc = check_knn(run_contra, encoder, tmp_path, ["--train", train, "--val", val],
                             folder_samples(train), folder_samples(val), 3, 15, 0.1)
    print(f"kNN (k 15) on synthetic folders: contra {acc:.2f}%, reference {ref_acc:.2f}%")
    assert acc > 60  # chance is 33%


def read_idx(path, n):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)
    return arr[:n]


@pytest.mark.skipif(not os.path.exists(FMNIST + "/t10k-images-idx3-ubyte.gz"),
                    reason="Fashion-MNIST (Debian dataset-fashion-mnist) is not installed")
def test_knn_fashion_mnist_idx_matches_reference(run_contra, encoder, tmp_path):
    ntr, nva = 300, 100
    tri, trl = FMNIST + "/train-images-idx3-ubyte.gz", FMNIST + "/train-labels-idx1-ubyte.gz"
    vai, val = FMNIST + "/t10k-images-idx3-ubyte.gz", FMNIST + "/t10k-labels-idx1-ubyte.gz"

    def samples(images, labels, n):
        x = np.stack([preprocess(Image.fromarray(im, "L")) for im in read_idx(images, n)])
        return x, read_idx(labels, n).astype(np.int64)

    acc, ref_acc = check_knn(run_contra, encoder, tmp_path,
                             ["--train", tri, "--train-labels", trl, "--limit", ntr,
                              "--val", vai, "--val-labels", val, "--val-limit", nva],
                             samples(tri, trl, ntr), samples(vai, val, nva), 10, 200, 0.1)
    print(f"kNN (k 200) on Fashion-MNIST {ntr}/{nva}: contra {acc:.2f}%, reference {ref_acc:.2f}%")
    assert acc > 20  # chance is 10%


def test_linear_above_chance_and_sanity_check(run_contra, encoder, folders):
    train, val = folders
    # main_lincls defaults (lr 30, momentum 0.9, wd 0, step schedule at 60%/80%)
    p = run_contra("eval", "linear", "--encoder", encoder, "--train", train, "--val", val, "--epochs", 30,
                   "--fc-batch", 16, "--batch", 8, "--threads", 1, "--workers", 2, timeout=120)
    epochs = re.findall(r"^epoch (\d+)/30 .*val top-1 ([0-9.]+)%", p.stdout, re.M)
    assert len(epochs) == 30
    assert re.search(r"epoch 19/30  lr 3 ", p.stdout) and re.search(r"epoch 25/30  lr 0.3 ", p.stdout)
    acc = accuracy_of(p.stdout, "linear")
    assert acc == float(epochs[-1][1])
    print(f"linear (30 epochs, lr 30) on synthetic folders: {acc:.2f}%")
    assert acc >= 65  # chance is 33%
    assert re.search(r"sanity check passed: \d+ encoder tensors", p.stdout)


def test_linear_sgd_matches_torch(run_contra, encoder, folders, tmp_path):
    """Full-batch fc training (so the shuffle order does not matter) against
    torch.nn.Linear + torch.optim.SGD from the same initial weight, on
    contra's own train features: the fc, softmax cross-entropy, momentum,
    weight decay and the cosine schedule."""
    train, val = folders
    save = tmp_path / "lin"
    epochs, lr, mom, wd = 8, 0.5, 0.9, 1e-3
    p = run_contra("eval", "linear", "--encoder", encoder, "--train", train, "--val", val, "--epochs", epochs,
                   "--lr", lr, "--momentum", mom, "--weight-decay", wd, "--schedule", "cosine",
                   "--fc-batch", 1000, "--batch", 8, "--threads", 1, "--workers", 2, "--save-features", save,
                   timeout=120)
    xt, yt = np.load(save / "train_feats.npy"), np.load(save / "train_labels.npy")
    xv, yv = np.load(save / "val_feats.npy"), np.load(save / "val_labels.npy")
    w0 = np.load(save / "fc_weight_init.npy")
    assert w0.shape == (3, xt.shape[1]) and 0.005 < w0.std() < 0.02  # N(0, 0.01)
    fc = torch.nn.Linear(xt.shape[1], 3)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(w0))
        fc.bias.zero_()
    opt = torch.optim.SGD(fc.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    x, y = torch.from_numpy(xt), torch.from_numpy(yt)
    for e in range(epochs):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * e / epochs))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(fc(x), y).backward()
        opt.step()
    w, b = fc.weight.detach().numpy(), fc.bias.detach().numpy()
    np.testing.assert_allclose(np.load(save / "fc_weight.npy"), w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.load(save / "fc_bias.npy"), b, rtol=1e-4, atol=1e-5)
    ref_acc = 100.0 * ((xv @ w.T + b).argmax(1) == yv).mean()
    assert abs(accuracy_of(p.stdout, "linear") - ref_acc) < 1e-6 + 100.0 / len(yv), (p.stdout, ref_acc)


def test_linear_augment_cosine(run_contra, encoder, folders):
    train, val = folders
    p = run_contra("eval", "linear", "--encoder", encoder, "--train", train, "--val", val, "--epochs", 6,
                   "--augment", "--schedule", "cosine", "--lr", 1, "--fc-batch", 16, "--batch", 8,
                   "--threads", 1, "--workers", 2, timeout=120)
    lrs = [float(x) for x in re.findall(r"^epoch \d+/6  lr ([0-9.e-]+)", p.stdout, re.M)]
    assert len(lrs) == 6 and lrs[0] == 1 and all(a > b for a, b in zip(lrs, lrs[1:]))
    acc = accuracy_of(p.stdout, "linear")
    print(f"linear (6 epochs, --augment, cosine, lr 1): {acc:.2f}%")
    assert acc > 50
    assert "sanity check passed" in p.stdout


def test_sanity_check_detects_a_changed_encoder(run_contra, encoder, folders):
    train, val = folders
    env = dict(os.environ, CT_EVAL_TEST_CORRUPT_ENCODER="1")
    p = run_contra("eval", "linear", "--encoder", encoder, "--train", train, "--val", val, "--epochs", 1,
                   "--batch", 8, check=False, env=env, timeout=120)
    assert p.returncode == 1
    assert "sanity check FAILED" in p.stderr and "changed" in p.stderr
    assert "top-1 accuracy" not in p.stdout


NO_FLOAT = """<ir_version: 8, opset_import: ["" : 13]>
argmax_enc (float[N, 3, 32, 32] input) => (int64[N, 1] idx) {
  pool = GlobalAveragePool (input)
  flat = Flatten <axis = 1> (pool)
  idx = ArgMax <axis = 1, keepdims = 1> (flat)
}
"""


def bad_run(run_contra, *args):
    p = run_contra("eval", *[str(a) for a in args], check=False, timeout=120)
    assert p.returncode != 0, p.stdout
    assert p.stdout == "", p.stdout  # no partial output
    return p.stderr


def test_errors(run_contra, encoder, folders, tmp_path):
    train, val = folders
    # missing encoder, missing folders
    err = bad_run(run_contra, "knn", "--encoder", tmp_path / "nope.onnx", "--train", train, "--val", val)
    assert "--encoder" in err and "nope.onnx" in err and "No such file" in err
    err = bad_run(run_contra, "knn", "--encoder", encoder, "--train", tmp_path / "missing", "--val", val)
    assert "--train" in err and "missing" in err and "No such file" in err
    err = bad_run(run_contra, "linear", "--encoder", encoder, "--train", train, "--val", tmp_path / "gone")
    assert "--val" in err and "gone" in err
    # an empty folder, and a class folder with no images
    (tmp_path / "empty").mkdir()
    err = bad_run(run_contra, "knn", "--encoder", encoder, "--train", tmp_path / "empty", "--val", val)
    assert "--train" in err and "empty" in err and "no class folders" in err
    hollow = write_folder(tmp_path / "hollow", 2, 3)
    for f in (hollow / "b_green").iterdir():
        f.unlink()
    err = bad_run(run_contra, "knn", "--encoder", encoder, "--train", train, "--val", hollow)
    assert "--val" in err and "b_green" in err and "no images" in err
    # an encoder with no float output
    nf = tmp_path / "argmax.onnxtxt"
    nf.write_text(NO_FLOAT)
    err = bad_run(run_contra, "knn", "--encoder", nf, "--train", train, "--val", val)
    assert "'idx'" in err and "int64" in err and "not float" in err
    err = bad_run(run_contra, "knn", "--encoder", encoder, "--repr", "no_such_value", "--train", train, "--val", val)
    assert "--repr" in err and "no_such_value" in err
    # class mismatch: 2 classes in val, 3 in train; and same count, different names
    two = write_folder(tmp_path / "two", 3, 4, classes=("a_red", "b_green"))
    err = bad_run(run_contra, "knn", "--encoder", encoder, "--train", train, "--val", two)
    assert "class mismatch" in err and "3 classes" in err and "2" in err
    renamed = write_folder(tmp_path / "renamed", 3, 5, classes=("a_red", "b_green", "z_other"))
    err = bad_run(run_contra, "linear", "--encoder", encoder, "--train", train, "--val", renamed)
    assert "class mismatch" in err and "z_other" in err
    # an IDX file without labels; a folder with labels
    if os.path.exists(FMNIST + "/t10k-images-idx3-ubyte.gz"):
        err = bad_run(run_contra, "knn", "--encoder", encoder, "--train", FMNIST + "/t10k-images-idx3-ubyte.gz",
                      "--val", val)
        assert "--train-labels" in err
        # IDX val labels (10 classes) against a 3-class train folder
        err = bad_run(run_contra, "knn", "--encoder", encoder, "--train", train,
                      "--val", FMNIST + "/t10k-images-idx3-ubyte.gz",
                      "--val-labels", FMNIST + "/t10k-labels-idx1-ubyte.gz", "--val-limit", 50)
        assert "class mismatch" in err
    # a corrupt encoder file
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 10)
    err = bad_run(run_contra, "knn", "--encoder", junk, "--train", train, "--val", val)
    assert "junk.onnx" in err
    # usage errors exit 2
    p = run_contra("eval", "knn", "--encoder", encoder, "--train", train, check=False)
    assert p.returncode == 2 and "--val is required" in p.stderr and p.stdout == ""
    p = run_contra("eval", "knn", "--encoder", encoder, "--train", train, "--val", val, "--epochs", 3, check=False)
    assert p.returncode == 2 and "linear option" in p.stderr
    p = run_contra("eval", "linear", "--encoder", encoder, "--train", train, "--val", val, "--schedule", "bogus",
                   check=False)
    assert p.returncode == 2 and "--schedule" in p.stderr and p.stdout == ""


def test_help_documents_options(run_contra):
    out = run_contra("eval", "--help").stdout
    for opt in ("--encoder", "--train-labels", "--repr", "--k", "--t", "--lr", "--momentum", "--weight-decay",
                "--schedule", "--augment", "--epochs", "--limit", "--save-features"):
        assert opt in out, opt
    assert "main_lincls" in out and "center-cropped" in out
