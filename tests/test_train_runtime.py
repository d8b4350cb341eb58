# test_train_runtime.py — runtime/train's kNN monitor against a NumPy
# re-implementation of the MoCo CIFAR demo's knn_predict, metrics.jsonl
# records, the SVG curves (valid XML, one polyline point per record) and the
# progress line (in place with \r on a terminal, plain lines otherwise).
import json
import os
import pty
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import build_path


@pytest.fixture(scope="module")
def tool():
    exe = build_path() / "tests" / "train_tool"
    if not exe.exists():
        pytest.skip(f"{exe} is not built")
    return str(exe)


def knn_predict(feature, feature_bank, feature_labels, classes, knn_k, knn_t):
    """The demo's knn_predict (moco/colab demo), in NumPy. feature_bank is (D, N)."""
    sim_matrix = feature @ feature_bank                              # (B, N)
    idx = np.argsort(-sim_matrix, axis=-1, kind="stable")[:, :knn_k]  # topk
    sim_weight = np.take_along_axis(sim_matrix, idx, axis=-1)
    sim_labels = feature_labels[idx]
    sim_weight = np.exp(sim_weight / knn_t)
    one_hot = np.zeros((feature.shape[0] * knn_k, classes))
    one_hot[np.arange(one_hot.shape[0]), sim_labels.reshape(-1)] = 1.0
    pred_scores = (one_hot.reshape(feature.shape[0], -1, classes) * sim_weight[..., None]).sum(axis=1)
    return pred_scores.argmax(axis=-1), pred_scores


def normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@pytest.mark.parametrize("n,m,d,classes,k", [(2000, 700, 64, 10, 200), (300, 50, 16, 7, 200), (150, 40, 8, 3, 20)])
def test_knn_matches_demo(tool, tmp_path, n, m, d, classes, k):
    rng = np.random.default_rng(n + m)
    centers = rng.normal(size=(classes, d))
    bl = rng.integers(0, classes, n)
    ql = rng.integers(0, classes, m)
    bank = (centers[bl] + 2.5 * rng.normal(size=(n, d))).astype(np.float32)
    q = (centers[ql] + 2.5 * rng.normal(size=(m, d))).astype(np.float32)
    bank.tofile(tmp_path / "bank.f32")
    bl.astype(np.int64).tofile(tmp_path / "bank_labels.i64")
    q.tofile(tmp_path / "queries.f32")
    ql.astype(np.int64).tofile(tmp_path / "query_labels.i64")
    p = subprocess.run([tool, "knn", str(tmp_path), str(n), str(m), str(d), str(classes), str(k), "0.1"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    pred = np.fromfile(tmp_path / "pred.i64", dtype=np.int64)
    scores = np.fromfile(tmp_path / "scores.f32", dtype=np.float32).reshape(m, classes)
    fb = normalize(bank.astype(np.float64))
    fq = normalize(q.astype(np.float64))
    want, want_scores = knn_predict(fq, fb.T, bl, classes, min(k, n), 0.1)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4)
    assert (pred == want).all(), f"{(pred != want).sum()} predictions differ"
    acc = float(p.stdout)
    assert abs(acc - (want == ql).mean()) < 1e-6
    # clustered features: kNN must beat chance clearly (the test can fail)
    assert acc > 1.5 / classes, acc


def test_knn_bad_labels(tool, tmp_path):
    np.ones((4, 2), np.float32).tofile(tmp_path / "bank.f32")
    np.array([0, 1, 5, 0], np.int64).tofile(tmp_path / "bank_labels.i64")
    np.ones((1, 2), np.float32).tofile(tmp_path / "queries.f32")
    np.zeros(1, np.int64).tofile(tmp_path / "query_labels.i64")
    p = subprocess.run([tool, "knn", str(tmp_path), "4", "1", "2", "3", "200", "0.1"], capture_output=True, text=True)
    assert p.returncode == 1 and "bank label 5 at 2 is outside [0, 3)" in p.stderr


def polyline_points(svg_path):
    root = ET.parse(svg_path).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    lines = root.findall(f".//{ns}polyline")
    assert len(lines) == 1
    pts = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    texts = [t.text for t in root.iter(f"{ns}text")]
    return pts, texts, root


def test_metrics_jsonl_and_curves(tool, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    p = subprocess.run([tool, "metrics", str(run), "100", "5"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in open(run / "metrics.jsonl")]
    steps = [r for r in recs if r["type"] == "step"]
    epochs = [r for r in recs if r["type"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(1, 101))
    assert steps[0]["loss"] == pytest.approx(5 * np.exp(-1 / 50) + 1, rel=1e-8)
    assert set(steps[0]) == {"type", "epoch", "step", "loss", "lr", "images_per_s"}
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4, 5]
    assert epochs[1]["knn_acc"] is None  # NaN is written as null
    assert recs[-1] == {"type": "eval", "linear_acc": 0.42, "epoch": 5}
    pts, texts, root = polyline_points(run / "loss.svg")
    assert len(pts) == 100
    assert "step" in texts and "loss" in texts and "Training loss" in texts
    # the loss decreases: y in SVG grows downwards
    assert pts[-1][1] > pts[0][1] and pts[-1][0] > pts[0][0]
    assert all(0 <= x <= 640 and 0 <= y <= 400 for x, y in pts)
    kpts, ktexts, _ = polyline_points(run / "knn.svg")
    assert len(kpts) == 4  # epoch 2 had no accuracy
    assert "epoch" in ktexts and "accuracy (%)" in ktexts
    assert len([t for t in ktexts if t and t.replace(".", "").isdigit()]) >= 4  # tick labels
    assert not [f for f in os.listdir(run) if ".tmp" in f]


def test_metrics_resume_drops_later_records(tool, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert subprocess.run([tool, "metrics", str(run), "100", "5"]).returncode == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"type":"step","epoch":5,"st')  # a torn line from a killed run
    # resume from the checkpoint at step 60: records after it are dropped, then re-logged
    assert subprocess.run([tool, "metrics", str(run), "100", "5", "60"]).returncode == 0
    recs = [json.loads(line) for line in open(run / "metrics.jsonl")]
    steps = [r["step"] for r in recs if r["type"] == "step"]
    assert steps == list(range(1, 101))
    assert [r["epoch"] for r in recs if r["type"] == "epoch"] == [1, 2, 3, 4, 5]
    pts, _, _ = polyline_points(run / "loss.svg")
    assert len(pts) == 100
    kpts, _, _ = polyline_points(run / "knn.svg")
    assert len(kpts) == 4


def test_progress_plain_lines(tool):
    p = subprocess.run([tool, "progress", "50", "10", "auto"], capture_output=True, text=True)
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert "\r" not in p.stdout
    prog = [ln for ln in lines if ln.startswith("epoch")]
    assert [ln.split()[3] for ln in prog] == ["10/50", "20/50", "30/50", "40/50", "50/50"]
    assert "checkpoint written at step 25" in lines
    for field in ("loss", "lr", "img/s", "ETA"):
        assert field in prog[0]


def test_progress_terminal_in_place(tool):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(tool, [tool, "progress", "30", "10", "auto"])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    text = out.decode()
    # every step redraws the one line (\r, then clear to end of line)
    assert text.count("\x1b[K") == 30
    assert "step 30/30" in text
    assert "checkpoint written at step 15" in text
    # only the note and the end break the line
    assert text.replace("\r\n", "\n").count("\n") == 3
