# test_trainer_data.py — the contrastive trainer on real data
# (runtime/trainer_method.c): a bundled small ResNet compiled with MoCo v2,
# trained from IDX files and image folders through the prefetching loader.
# Stopping with SIGTERM and resuming equals an uninterrupted run bit for bit;
# SIGKILL while checkpoints are written never leaves one that loads wrongly;
# the exported ONNX encoder agrees with the trainer's own features
# (onnxruntime); metrics and curves are written; bad input is refused
# clearly without touching a good checkpoint.
import gzip
import os
import random
import signal
import struct
import subprocess
import time

import numpy as np
import pytest

SIZE = 16
B = 8


def _write_idx(path_images, path_labels, n, seed=0, classes=4, hw=20):
    """Synthetic IDX data (gzipped): class c is a bright bar at a class-specific
    orientation/position on noise, so features can separate the classes."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 60, size=(n, hw, hw), dtype=np.uint8)
    labels = rng.integers(0, classes, size=n, dtype=np.uint8)
    for i, c in enumerate(labels):
        k = int(c)
        if k == 0:
            imgs[i, hw // 2 - 2:hw // 2 + 2, :] = 230
        elif k == 1:
            imgs[i, :, hw // 2 - 2:hw // 2 + 2] = 230
        elif k == 2:
            np.fill_diagonal(imgs[i], 240)
        else:
            imgs[i, 2:8, 2:8] = 250
    with gzip.open(path_images, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, hw, hw) + imgs.tobytes())
    with gzip.open(path_labels, "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels.tobytes())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("idx")
    _write_idx(d / "train-images-idx3-ubyte.gz", d / "train-labels-idx1-ubyte.gz", 96, seed=1)
    _write_idx(d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte.gz", 40, seed=2)
    return d


@pytest.fixture(scope="module")
def trainer(contra_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("tr") / "moco"
    p = subprocess.run([str(contra_bin), "compile", "--model", "resnet18_small_w8", "--size", str(SIZE), "--method",
                        "moco-v2", "--batch", str(B), "--queue", "40", "--bn-splits", "2", "--lr", "0.05", "--ema",
                        "0.99", "-o", str(out), "-q"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return out / "trainer"


def _args(data, run, *extra):
    return ["--data", str(data / "train-images-idx3-ubyte.gz"), "--out", str(run), "--workers", "2",
            "--threads", "1", "--progress", "plain", *map(str, extra)]


def _load_dir(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            out[os.path.relpath(os.path.join(root, f), d)] = np.load(os.path.join(root, f))
    return out


def test_help_documents_every_option(trainer):
    p = subprocess.run([str(trainer), "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    for opt in ["--data", "--val", "--epochs", "--batch", "--lr", "--workers", "--seed", "--out", "--resume",
                "--export", "--ckpt-every", "--knn-k", "--views", "--augment", "--limit", "--max-bad"]:
        assert opt in p.stdout, opt


def _file_id(path):
    """What changes when path is replaced (inode, modification time), None while it is missing."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def test_sigterm_then_resume_is_bit_exact(trainer, data, tmp_path):
    total = 24  # two epochs of 96 / 8 = 12 steps
    ref = subprocess.run([str(trainer), *_args(data, tmp_path / "a", "--steps", total, "--save-params",
                                               tmp_path / "pa")], capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    # interrupted: SIGTERM once a few checkpoints exist, at a random moment
    run = tmp_path / "b"
    proc = subprocess.Popen([str(trainer), *_args(data, run, "--steps", total, "--ckpt-every", 1)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ck = run / "checkpoint.safetensors"
    t0 = time.time()
    while not ck.exists() and time.time() - t0 < 120:
        time.sleep(0.005)
    # a random moment in the first half of the steps left, in units of this machine's step time (the
    # checkpoint is replaced after every step): a fixed 0-0.5 s let a fast machine finish first
    first, t1 = _file_id(ck), time.time()
    while _file_id(ck) == first and proc.poll() is None and time.time() - t1 < 120:
        time.sleep(0.002)
    step_s = time.time() - t1
    time.sleep(random.uniform(0.0, step_s * (total - 2) / 2))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived (machine too fast for this test's timing)")
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by signal" in err and "--resume" in err
    res = subprocess.run([str(trainer), *_args(data, run, "--steps", total, "--resume", run, "--save-params",
                                               tmp_path / "pb")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    a, b = _load_dir(tmp_path / "pa"), _load_dir(tmp_path / "pb")
    assert a.keys() == b.keys() and len(a) > 50
    diff = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not diff, f"{len(diff)} tensors differ after resume, e.g. {diff[:5]}"
    # the resumed metrics hold every step once
    import json
    steps = [json.loads(l)["step"] for l in open(run / "metrics.jsonl") if '"type":"step"' in l]
    assert steps == list(range(1, total + 1))


def _ckpt_step(path):
    import json
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return int(json.loads(f.read(n))["__metadata__"]["step"])


def test_sigkill_never_leaves_a_bad_checkpoint(trainer, data, tmp_path):
    """Kill -9 at random moments of a run that checkpoints every step; each
    time, the checkpoint left behind loads (a resumed run takes one more step
    from it) and the run goes on from there."""
    run = tmp_path / "k"
    rng = random.Random(7)
    loaded, last = 0, -1
    for trial in range(8):
        ck = run / "checkpoint.safetensors"
        resume = ["--resume", run] if ck.exists() else []
        proc = subprocess.Popen([str(trainer), *_args(data, run, "--steps", 400, "--ckpt-every", 1, "--progress",
                                                      "none", *resume)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 1.2))
        proc.kill()
        proc.wait()
        if not ck.exists():
            continue
        step = _ckpt_step(ck)
        assert step >= last, "the checkpoint went backwards"
        p = subprocess.run([str(trainer), *_args(data, run, "--steps", step + 1, "--resume", run, "--progress",
                                                 "none")], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"trial {trial}: the checkpoint at step {step} does not load: {p.stderr}"
        assert _ckpt_step(ck) == step + 1
        last = step + 1
        loaded += 1
    assert loaded >= 4, f"only {loaded} of 8 trials left a checkpoint"
    assert not [f for f in os.listdir(run) if ".tmp." in f], "stale temporary checkpoint files were left"


def test_export_and_metrics(trainer, data, tmp_path):
    """A short run with a kNN monitor: metrics.jsonl has every step and an
    epoch record with the kNN accuracy, the curves are drawn, and the exported
    ONNX encoder (onnxruntime) gives the trainer's own features."""
    import json
    ort = pytest.importorskip("onnxruntime")
    run = tmp_path / "r"
    x = np.random.default_rng(3).standard_normal((11, 3, SIZE, SIZE)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    p = subprocess.run([str(trainer), *_args(data, run, "--epochs", 2, "--val", data / "t10k-images-idx3-ubyte.gz",
                                             "--knn-k", 10, "--knn-init", "--export", tmp_path / "enc.onnx",
                                             "--embed", f"{tmp_path / 'x.npy'}:{tmp_path / 'f.npy'}")],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "kNN accuracy at initialisation" in p.stderr and "epoch 2: mean loss" in p.stderr
    recs = [json.loads(l) for l in open(run / "metrics.jsonl")]
    steps = [r for r in recs if r["type"] == "step"]
    epochs = [r for r in recs if r["type"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(1, 25))
    assert [r["epoch"] for r in epochs] == [0, 1, 2]
    assert all(0 <= r["knn_acc"] <= 1 for r in epochs)
    assert all(np.isfinite(r["loss"]) and r["lr"] > 0 for r in steps)
    for svg in ["loss.svg", "knn.svg"]:
        assert (run / svg).read_text().lstrip().startswith("<svg") or "<svg" in (run / svg).read_text()[:200]
    sess = ort.InferenceSession(str(tmp_path / "enc.onnx"), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0].reshape(len(x), -1)
    own = np.load(tmp_path / "f.npy")
    assert own.shape == ref.shape == (11, 64)
    assert np.abs(own - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    # the export holds the trained values, not the initial ones
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(tmp_path / "enc.onnx"))
    names = {i.name for i in m.graph.initializer}
    assert "conv1.weight" in names and "bn1.running_mean" in names and "layer4.1.bn2.running_var" in names
    rm = numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == "bn1.running_mean"))
    assert np.abs(rm).max() > 0, "BatchNorm statistics were not exported"


def test_bad_input(trainer, data, tmp_path):
    def run(*args, timeout=300):
        return subprocess.run([str(trainer), *map(str, args)], capture_output=True, text=True, timeout=timeout)

    empty = tmp_path / "empty"
    empty.mkdir()
    p = run("--data", empty, "--steps", 1, "--out", tmp_path / "r0")
    assert p.returncode == 1 and str(empty) in p.stderr, p.stderr
    cls = tmp_path / "cls"
    (cls / "a").mkdir(parents=True)
    (cls / "b").mkdir()
    from PIL import Image
    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(cls / "a" / f"{i}.png")
    p = run("--data", cls, "--steps", 1, "--out", tmp_path / "r1")
    assert p.returncode == 1 and "b" in p.stderr and "no images" in p.stderr.lower(), p.stderr
    p = run("--data", data / "nope.gz", "--steps", 1)
    assert p.returncode == 1 and "nope.gz" in p.stderr
    p = run("--data", data / "train-images-idx3-ubyte.gz", "--views", "x.npy", "--steps", 1)
    assert p.returncode == 2 and "exactly one of --data and --views" in p.stderr
    p = run("--data", data / "train-images-idx3-ubyte.gz", "--batch", 3, "--steps", 1)
    assert p.returncode == 1 and "compiled for batch 8" in p.stderr

    # a good checkpoint, then: a corrupt copy, a checkpoint of another method, a full disk
    good = tmp_path / "good"
    p = run(*_args(data, good, "--steps", 3))
    assert p.returncode == 0, p.stderr
    ck = good / "checkpoint.safetensors"
    before = ck.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    raw = bytearray(before)
    raw[len(raw) // 2] ^= 0xFF
    (bad / "checkpoint.safetensors").write_bytes(bytes(raw))
    p = run(*_args(data, bad, "--steps", 5, "--resume", bad))
    assert p.returncode == 1 and "checksum" in p.stderr.lower(), p.stderr
    assert (bad / "checkpoint.safetensors").read_bytes() == bytes(raw), "a refused checkpoint was overwritten"
    (bad / "checkpoint.safetensors").write_bytes(before[:100])
    p = run(*_args(data, bad, "--steps", 5, "--resume", bad))
    assert p.returncode == 1 and "checkpoint.safetensors" in p.stderr

    # full disk: RLIMIT_FSIZE makes the checkpoint write fail (EFBIG) part way
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    p = subprocess.run([str(trainer), *_args(data, good, "--steps", 6, "--resume", good, "--progress", "none")],
                       capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert p.returncode == 1, p.stderr
    assert "checkpoint.safetensors" in p.stderr and ("too large" in p.stderr.lower() or "space" in p.stderr.lower()), p.stderr
    assert ck.read_bytes() == before, "the good checkpoint was damaged by a failed write"
    assert not [f for f in os.listdir(good) if ".tmp." in f]


def test_checkpoint_of_another_method_is_refused(contra_bin, trainer, data, tmp_path):
    other = tmp_path / "simclr"
    p = subprocess.run([str(contra_bin), "compile", "--model", "resnet18_small_w8", "--size", str(SIZE), "--method",
                        "simclr", "--batch", str(B), "--optimizer", "sgd", "--lr", "0.05", "-o", str(other), "-q"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    good = tmp_path / "run"
    p = subprocess.run([str(trainer), *_args(data, good, "--steps", 2)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    before = (good / "checkpoint.safetensors").read_bytes()
    p = subprocess.run([str(other / "trainer"), *_args(data, good, "--steps", 4, "--resume", good)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "fingerprint" in p.stderr.lower(), p.stderr
    assert (good / "checkpoint.safetensors").read_bytes() == before


def test_export_loads_into_torchvision(contra_bin, tmp_path):
    """A bundled resnet18_small trained one step and exported: the ONNX
    initializers carry torchvision's state_dict names, so the README's lines
    load them into torchvision's resnet18 (3x3 stem, no max-pool) and it gives
    onnxruntime's features."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    ort = pytest.importorskip("onnxruntime")
    import onnx
    from onnx import numpy_helper
    tr = tmp_path / "tr"
    p = subprocess.run([str(contra_bin), "compile", "--model", "resnet18_small", "--method", "moco-v2", "--batch", "2",
                        "--queue", "8", "--no-shuffle-bn", "-o", str(tr), "-q"], capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr
    rng = np.random.default_rng(0)
    for v in (1, 2):
        np.save(tmp_path / f"v{v}.npy", rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    p = subprocess.run([str(tr / "trainer"), "--views", f"{tmp_path / 'v1.npy'},{tmp_path / 'v2.npy'}", "--steps", "1",
                        "--out", str(tmp_path / "run"), "--export", str(tmp_path / "enc.onnx"), "-q"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    # the README's lines
    m = onnx.load(str(tmp_path / "enc.onnx"))
    state = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
    net = torchvision.models.resnet18()
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = torch.nn.Identity()
    net.fc = torch.nn.Identity()
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "enc.onnx"), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = net.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
