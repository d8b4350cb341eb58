# test_data_loader.py — IDX files (Debian's Fashion-MNIST), image folders in
# torchvision ImageFolder's order, clear errors for empty folders, and the
# prefetching loader: identical bytes for 1 and 4 workers, bad-image
# accounting, and its output against a torchvision pipeline.
import gzip
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import torchvision.datasets as D
import torchvision.transforms as T

from conftest import build_path, run_tool  # noqa: F401 (data_tool is a fixture there)

FMNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def natural_image(h, w, seed, gray=False):
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, size=(max(2, h // 20), max(2, w // 20), 3)).astype(np.uint8)
    img = np.array(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.float32)
    img += rng.normal(0, 5, size=img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return Image.fromarray(img).convert("L") if gray else Image.fromarray(img)


# ---------------------------------------------------------------- IDX

def read_idx_numpy(path):
    raw = gzip.open(path).read() if str(path).endswith(".gz") else open(path, "rb").read()
    nd = raw[3]
    dims = np.frombuffer(raw[4:4 + 4 * nd], dtype=">u4")
    return np.frombuffer(raw[4 + 4 * nd:], dtype=np.uint8).reshape(dims)


@pytest.mark.skipif(not FMNIST.exists(), reason="dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("split", ["t10k", "train"])
def test_idx_fashion_mnist(data_tool, split, tmp_path):
    img = FMNIST / f"{split}-images-idx3-ubyte.gz"
    lbl = FMNIST / f"{split}-labels-idx1-ubyte.gz"
    ref_i, ref_l = read_idx_numpy(img), read_idx_numpy(lbl)
    out = run_tool(data_tool, "idx", img, lbl).stdout.split("\n")
    first = out[0].split()
    assert int(first[1]) == ref_i.shape[0] and int(first[3]) == 28 and int(first[5]) == 28
    assert int(first[7]) == int(ref_i.astype(np.int64).sum())
    assert int(first[9]) == int(ref_l[0])
    assert list(map(int, out[1].split()[1:])) == np.bincount(ref_l, minlength=10).tolist()
    if split == "t10k":  # uncompressed files read the same
        (tmp_path / "i").write_bytes(gzip.open(img).read())
        (tmp_path / "l").write_bytes(gzip.open(lbl).read())
        assert run_tool(data_tool, "idx", tmp_path / "i", tmp_path / "l").stdout.split("\n")[:2] == out[:2]
        # mismatched counts are an error naming both files
        (tmp_path / "l2").write_bytes(gzip.open(lbl).read()[:-5])
        p = run_tool(data_tool, "idx", tmp_path / "i", tmp_path / "l2", check=False)
        assert p.returncode == 1 and "l2" in p.stderr


# ---------------------------------------------------------------- folders

def make_tree(root):
    layout = {
        "b": ["z.png", "a.JPG", "sub/x.jpeg", "sub y/k.png", "sub/deeper/q.jpg", "notes.txt"],
        "A": ["1.jpg", "10.jpg", "2.PNG"],
        "a_c": ["img.jpeg", "Img.jpeg"],
        "Z z": ["only.png"],
    }
    for cls, files in layout.items():
        for f in files:
            p = root / cls / f
            p.parent.mkdir(parents=True, exist_ok=True)
            if f.endswith(".txt"):
                p.write_text("not an image")
            else:
                natural_image(40, 50, hash(f) % 1000).save(p, format="PNG" if f.lower().endswith("png") else "JPEG")


def tool_folder(tool, root, mode="auto"):
    out = run_tool(tool, "folder", root, mode).stdout.split("\n")
    n_classes = int(out[0].split()[1])
    classes = [l[6:] for l in out[1:1 + n_classes]]
    samples = [(l.split("\t")[1], int(l.split("\t")[0])) for l in out[1 + n_classes:] if l]
    return classes, samples


def test_folder_order_matches_imagefolder(data_tool, tmp_path):
    make_tree(tmp_path)
    ds = D.ImageFolder(str(tmp_path))
    classes, samples = tool_folder(data_tool, tmp_path)
    assert classes == ds.classes
    assert samples == [(p, c) for p, c in ds.samples]


def test_flat_folder(data_tool, tmp_path):
    for k, name in enumerate(["b.jpg", "a.png", "C.jpeg", "readme.md"]):
        if name.endswith(".md"):
            (tmp_path / name).write_text("x")
        else:
            natural_image(30, 30, k).save(tmp_path / name)
    classes, samples = tool_folder(data_tool, tmp_path)
    assert classes == []
    assert samples == [(str(tmp_path / n), -1) for n in ["C.jpeg", "a.png", "b.jpg"]]


def test_folder_link_loop_terminates(data_tool, tmp_path):
    (tmp_path / "c" / "a").mkdir(parents=True)
    natural_image(20, 20, 3).save(tmp_path / "c" / "a" / "x.png")
    (tmp_path / "c" / "a" / "up1").symlink_to(tmp_path / "c")
    (tmp_path / "c" / "a" / "up2").symlink_to(tmp_path / "c")
    classes, samples = tool_folder(data_tool, tmp_path)
    assert classes == ["c"] and samples == [(str(tmp_path / "c" / "a" / "x.png"), 0)]


def test_folder_errors(data_tool, tmp_path):
    (tmp_path / "empty").mkdir()
    p = run_tool(data_tool, "folder", tmp_path / "empty", check=False)
    assert p.returncode == 1 and "no images" in p.stderr and "empty" in p.stderr
    (tmp_path / "cls" / "cat").mkdir(parents=True)
    (tmp_path / "cls" / "dog").mkdir(parents=True)
    natural_image(20, 20, 1).save(tmp_path / "cls" / "cat" / "a.png")
    (tmp_path / "cls" / "dog" / "x.txt").write_text("x")
    p = run_tool(data_tool, "folder", tmp_path / "cls", check=False)
    assert p.returncode == 1 and "'dog' has no images" in p.stderr
    p = run_tool(data_tool, "folder", tmp_path / "missing", check=False)
    assert p.returncode == 1 and "not a folder" in p.stderr


# ---------------------------------------------------------------- loader

@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader_imgs")
    for c in range(3):
        (root / f"class{c}").mkdir()
        for k in range(9):
            h, w = [(375, 500), (240, 320), (97, 131)][k % 3]
            im = natural_image(h, w, 10 * c + k, gray=(k == 4))
            ext = "png" if k == 7 else "jpg"
            im.save(root / f"class{c}" / f"im{k}.{ext}")
    (root / "class1" / "zz_broken.jpg").write_bytes(
        (root / "class1" / "im0.jpg").read_bytes()[:2000])
    return root


def load(tool, out, *args):
    return run_tool(tool, "load", *args, "--out", out)


def test_loader_same_bytes_for_1_and_4_workers(data_tool, jpeg_folder, tmp_path):
    common = ["--folder", jpeg_folder, "--preset", "mocov2", "--views", "2", "--size", "64",
              "--batch", "6", "--epochs", "2", "--seed", "7", "--max-bad", "0.1"]
    p1 = load(data_tool, tmp_path / "w1.bin", *common, "--workers", "1")
    p4 = load(data_tool, tmp_path / "w4.bin", *common, "--workers", "4", "--prefetch", "2")
    a, b = (tmp_path / "w1.bin").read_bytes(), (tmp_path / "w4.bin").read_bytes()
    # 28 files, one broken: 4 full batches of 6 per epoch (drop-last)
    per_batch = 2 * 6 * 3 * 64 * 64 * 4 + 2 * 6 * 8
    assert len(a) == 2 * 4 * per_batch
    assert a == b
    for p in (p1, p4):
        assert " bad 1" in p.stdout and "zz_broken.jpg" in p.stdout
    # another seed gives other crops
    load(data_tool, tmp_path / "s8.bin", *common[:-4], "--seed", "8", "--max-bad", "0.1")
    assert (tmp_path / "s8.bin").read_bytes() != a
    # labels and indices agree with the folder order
    classes, samples = tool_folder(data_tool, jpeg_folder)
    arr = np.frombuffer(a, dtype=np.uint8).reshape(8, per_batch)
    seen = []
    for b in arr:
        tail = b[2 * 6 * 3 * 64 * 64 * 4:].view(np.int64)
        labels, idx = tail[:6], tail[6:]
        assert [samples[i][1] for i in idx] == labels.tolist()
        seen.append(idx)
    e0, e1 = np.concatenate(seen[:4]), np.concatenate(seen[4:])
    broken = [i for i, (path, _) in enumerate(samples) if path.endswith("zz_broken.jpg")][0]
    # a bad image is replaced by the next good one in the epoch's order, so
    # at most one sample repeats; the broken file itself never shows up
    assert len(set(e0.tolist())) >= 23 and broken not in e0 and broken not in e1
    assert not np.array_equal(e0, e1)  # reshuffled


def test_loader_keep_last_and_no_shuffle(data_tool, jpeg_folder, tmp_path):
    p = load(data_tool, tmp_path / "k.bin", "--folder", jpeg_folder, "--preset", "supcon", "--views", "3",
             "--size", "32", "--batch", "5", "--keep-last", "--no-shuffle", "--max-bad", "0.1")
    assert "batches 6 images 28" in p.stdout


def test_loader_too_many_bad(data_tool, jpeg_folder, tmp_path):
    p = run_tool(data_tool, "load", "--folder", jpeg_folder, "--batch", "4", "--size", "32",
                 "--max-bad", "0.01", "--workers", "2", check=False)
    assert p.returncode == 1
    assert "images are bad" in p.stderr and "zz_broken.jpg" in p.stderr


@pytest.mark.parametrize("preset", ["none", "eval"])
@pytest.mark.parametrize("scaled", [False, True])
def test_loader_matches_torchvision_pipeline(data_tool, jpeg_folder, tmp_path, scaled, preset):
    """The deterministic presets through the whole loader vs torchvision:
    'none' is RandomResizedCrop(S, scale (1, 1), ratio (1, 1)) (the central
    square), 'eval' is Resize(S * 256 / 224) + CenterCrop(S)."""
    S = 48
    args = ["--folder", jpeg_folder, "--preset", preset, "--views", "1", "--size", S, "--batch", "1",
            "--no-shuffle", "--max-bad", "0.1", "--workers", "2"]
    if not scaled:
        args.append("--no-scaled")
    load(data_tool, tmp_path / "n.bin", *args)
    raw = (tmp_path / "n.bin").read_bytes()
    rec = 3 * S * S * 4 + 16
    classes, samples = tool_folder(data_tool, jpeg_folder)
    first = (T.RandomResizedCrop(S, scale=(1, 1), ratio=(1, 1)) if preset == "none"
             else T.Compose([T.Resize(round(S * 256 / 224)), T.CenterCrop(S)]))
    tf = T.Compose([first, T.ToTensor(), T.Normalize(MEAN, STD)])
    worst_max, worst_mean = 0.0, 0.0
    for k in range(len(raw) // rec):
        b = raw[k * rec:(k + 1) * rec]
        ours = np.frombuffer(b[:3 * S * S * 4], dtype=np.float32).reshape(3, S, S)
        idx = int(np.frombuffer(b[-8:], dtype=np.int64)[0])
        ref = tf(Image.open(samples[idx][0]).convert("RGB")).numpy()
        d = np.abs(ours - ref)
        worst_max, worst_mean = max(worst_max, float(d.max())), max(worst_mean, float(d.mean()))
    assert len(raw) // rec == 28  # 27 good files + the broken one's stand-in
    if scaled:
        # DCT-scaled decoding (1/2..1/8 for 375x500 -> 48) changes pixels a little
        print("scaled decode: worst mean abs diff", worst_mean, "worst max", worst_max)
        assert worst_mean < 0.03, worst_mean
    else:
        assert worst_max <= 2 / 255 / min(STD) + 1e-5, worst_max


@pytest.mark.skipif(not FMNIST.exists(), reason="dataset-fashion-mnist is not installed")
def test_loader_idx_workers(data_tool, tmp_path):
    args = ["--idx", FMNIST / "t10k-images-idx3-ubyte.gz", FMNIST / "t10k-labels-idx1-ubyte.gz",
            "--limit", "300", "--preset", "simclr", "--size", "28", "--channels", "1", "--batch", "32"]
    p1 = load(data_tool, tmp_path / "a.bin", *args, "--workers", "1")
    load(data_tool, tmp_path / "b.bin", *args, "--workers", "4")
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    assert "samples 300 classes 10 batches 9" in p1.stdout
