# test_fashion_mnist.py — the main job, small: the bundled small ResNet-18
# (width 8) compiled with MoCo v2 (the CIFAR demo's K/m/T scaled to the
# subset) and trained on a Fashion-MNIST subset from Debian's
# dataset-fashion-mnist must lift the weighted-kNN accuracy (k 200, t 0.1) on
# held-out test images clearly above that of the same encoder at
# initialisation. Training is seeded and single-threaded, so the margin is a
# fixed number for this build (measured: 48.5% at initialisation, 58.1% after
# 2 epochs); the assertion leaves room for compiler and libm differences.
# About 1.5 minutes on 2 cores under the sanitizers.
import json
import pathlib
import subprocess

import pytest

DATA = pathlib.Path("/usr/share/datasets/fashion-mnist")
TRAIN = DATA / "train-images-idx3-ubyte.gz"
VAL = DATA / "t10k-images-idx3-ubyte.gz"
LIMIT, VAL_LIMIT, EPOCHS = 3072, 1000, 2
MARGIN = 0.04  # kNN accuracy points (as a fraction) the trained encoder must gain


@pytest.mark.skipif(not TRAIN.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_moco_v2_lifts_knn_accuracy_on_fashion_mnist(contra_bin, tmp_path):
    trainer = tmp_path / "trainer"
    cmd = [str(contra_bin), "compile", "--model", "resnet18_small_w8", "--method", "moco-v2", "--batch", "64",
           "--queue", "1024", "--ema", "0.99", "--temperature", "0.1", "--lr", "0.06", "--epochs", str(EPOCHS),
           "--dataset-size", str(LIMIT), "-o", str(trainer), "-q"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stderr[-4000:]}"

    run = tmp_path / "run"
    cmd = [str(trainer / "trainer"), "--data", str(TRAIN), "--limit", str(LIMIT), "--val", str(VAL),
           "--val-limit", str(VAL_LIMIT), "--epochs", str(EPOCHS), "--knn-init", "--threads", "1",
           "--workers", "1", "--progress", "plain", "--out", str(run)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stderr[-4000:]}"
    assert "kNN accuracy at initialisation" in p.stderr

    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["type"] == "epoch"]
    assert [e["epoch"] for e in epochs] == list(range(EPOCHS + 1))
    init, last = epochs[0]["knn_acc"], epochs[-1]["knn_acc"]
    print(f"kNN accuracy on {VAL_LIMIT} Fashion-MNIST test images: initialisation {100 * init:.1f}%, "
          f"after {EPOCHS} epochs of MoCo v2 {100 * last:.1f}% ({100 * (last - init):+.1f} points)")
    assert 0.1 <= init < 0.9, f"the kNN monitor at initialisation reads {init}"
    assert last - init >= MARGIN, f"MoCo v2 moved kNN accuracy from {init:.3f} to {last:.3f}"
    # Every epoch's loss is a number, and the run left its checkpoint and curves.
    assert all(isinstance(e["loss"], float) for e in epochs[1:])
    assert (run / "checkpoint.safetensors").exists() and (run / "knn.svg").exists()
