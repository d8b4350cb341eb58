# test_fuse_loss.py — the fused normalize + logits + cross-entropy of MoCo
# (passes/fuse_loss.c, ContrastiveLoss/ContrastiveLossGrad): (a) a whole MoCo
# step of the reference interpreter with the fusion on and off agrees on the
# loss, every gradient and every state update; (c) the C backend's tiled
# kernels agree with the reference (a K that is not a multiple of the tile,
# batches that are not powers of two); (d) the fused program's arena does not
# grow with K, while the unfused graph's does; and `contra dump --method`
# shows the fused node with what it replaced. tests/test_methods.py checks the
# fused default against PyTorch.
import re
import subprocess

import numpy as np
import pytest

from test_methods import SIZE, _run, _tiny, _views

TOL = 1e-5


def _tool(build_dir):
    exe = build_dir / "tests" / "fuse_loss_tool"
    if not exe.exists():
        pytest.skip(f"{exe} is missing: build it first")
    return exe


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    import torch
    path = tmp_path_factory.mktemp("enc") / "tiny.onnx"
    m = _tiny().eval()
    with torch.no_grad():
        torch.onnx.export(m, torch.zeros(2, 3, SIZE, SIZE), str(path), opset_version=13, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    return path


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


# ---------------------------------------------------------------- (a) fused vs unfused, whole MoCo steps

MOCO_CASES = [
    # preset, head, batch, K, T, shuffle, symmetric, steps
    ("moco-v2", "12,16", 3, 10, 0.2, 0, 0, 1),
    ("moco-v1", "16", 5, 37, 0.07, 0, 0, 2),
    ("moco-cifar", "16", 6, 700, 0.1, 1, 1, 1),  # K > the default tile of 512 and not a multiple of it
    ("moco-lowcompute", "10,8,6", 7, 19, 0.5, 0, 0, 3),
]


@pytest.mark.parametrize("preset,head,batch,K,T,shuffle,symmetric,steps", MOCO_CASES)
def test_fused_matches_unfused(build_dir, tmp_path, tiny_onnx, preset, head, batch, K, T, shuffle, symmetric, steps):
    rng = np.random.default_rng(K)
    views = [np.concatenate([v for _ in range(steps)]) for v in _views(batch + K, batch=batch)]
    ins = {"view1": views[0], "view2": views[1]}
    if shuffle:
        ins["shuffle_perm"] = rng.permutation(batch).astype(np.int64)
        if symmetric:
            ins["shuffle_perm2"] = rng.permutation(batch).astype(np.int64)
    opts = dict(batch=batch, queue=K, temperature=T, head=head, shuffle=shuffle, symmetric=symmetric, momentum=0.9)
    runs = {}
    for fuse in (0, 1):
        d = tmp_path / f"fuse{fuse}"
        d.mkdir()
        runs[fuse] = _run(build_dir, d, tiny_onnx, preset, dict(opts, fuse_loss=fuse), ins, {}, steps=steps)
    u, f = runs[0], runs[1]
    assert len(u["loss"]) == len(f["loss"]) == steps
    for s in range(steps):
        assert abs(f["loss"][s] - u["loss"][s]) <= TOL * abs(u["loss"][s]), (s, f["loss"][s], u["loss"][s])
    assert set(u["grad"]) == set(f["grad"]) and len(u["grad"]) >= 7
    worst = max((_rel(f["grad"][k], u["grad"][k]), k) for k in u["grad"])
    print(f"{preset} B {batch} K {K}: loss {max(abs(f['loss'][s] / u['loss'][s] - 1) for s in range(steps)):.3g}, "
          f"worst gradient {worst[1]} {worst[0]:.3g}")
    assert worst[0] <= TOL, f"gradient {worst[1]}: relative difference {worst[0]:.3g}"
    assert set(u["state"]) == set(f["state"]) and "queue" in u["state"]
    worst = max((_rel(f["state"][k], u["state"][k]), k) for k in u["state"])
    assert worst[0] <= TOL, f"state {worst[1]}: relative difference {worst[0]:.3g}"


INBATCH_CASES = [
    # preset, batch, views, labels, contrast mode, T, base T
    ("simclr", 3, 2, None, "all", 0.5, None),
    ("supcon", 5, 2, [1, 0, 1, 2, 1], "all", 0.07, 0.07),
    ("supcon", 4, 3, [1, 1, 0, 0], "one", 0.1, 0.07),
    ("supcon", 3, 2, None, "all", 0.2, 0.2),  # no labels: SimCLR's loss through SupConLoss
    ("supcon", 4, 2, "mask", "all", 0.1, 0.07),
]


@pytest.mark.parametrize("preset,batch,views,labels,mode,T,base_T", INBATCH_CASES)
def test_inbatch_fused_matches_unfused(build_dir, tmp_path, tiny_onnx, preset, batch, views, labels, mode, T, base_T):
    xs = _views(batch * views, views, batch=batch)
    ins = {f"view{i + 1}": x for i, x in enumerate(xs)}
    opts = dict(batch=batch, temperature=T, head="12,8")
    if preset == "supcon":
        opts.update(views=views, contrast=mode, base_temperature=base_T, labels=int(isinstance(labels, list)))
        if isinstance(labels, list):
            ins["labels"] = np.array(labels, dtype=np.int64)
        elif labels == "mask":
            opts["mask"] = 1
            ins["mask"] = np.array([[1, 0, 1, 1], [0, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]], dtype=np.float32)
    runs = {}
    for fuse in (0, 1):
        d = tmp_path / f"fuse{fuse}"
        d.mkdir()
        runs[fuse] = _run(build_dir, d, tiny_onnx, preset, dict(opts, fuse_loss=fuse), ins, {})
    u, f = runs[0], runs[1]
    assert abs(f["loss"][0] - u["loss"][0]) <= TOL * abs(u["loss"][0]), (f["loss"], u["loss"])
    assert set(u["grad"]) == set(f["grad"]) and len(u["grad"]) >= 7
    worst = max((_rel(f["grad"][k], u["grad"][k]), k) for k in u["grad"])
    print(f"{preset} B {batch} V {views} {mode}: loss {abs(f['loss'][0] / u['loss'][0] - 1):.3g}, "
          f"worst gradient {worst[1]} {worst[0]:.3g}")
    assert worst[0] <= TOL, f"gradient {worst[1]}: relative difference {worst[0]:.3g}"
    worst = max((_rel(f["state"][k], u["state"][k]), k) for k in u["state"])
    assert worst[0] <= TOL, f"state {worst[1]}: relative difference {worst[0]:.3g}"


@pytest.mark.parametrize("preset,op,parts", [
    ("moco-v2", "ContrastiveLoss", ("moco/q_norm/l2", "moco/q_norm/clamp", "moco/l_pos", "moco/l_neg", "moco/logits",
                                    "moco/logits_T", "moco/ce")),
    ("simclr", "InBatchContrastiveLoss", ("z/l2", "z/clamp", "zT", "zzT", "sim", "sim_masked", "loss")),
    ("supcon", "InBatchContrastiveLoss", ("z/l2", "supcon/dot", "supcon/logits_max", "supcon/mask_tiled",
                                          "supcon/log_prob", "supcon/mean_log_prob_pos", "loss")),
])
def test_dump_shows_fused_node(run_contra, tiny_onnx, preset, op, parts):
    out = run_contra("dump", tiny_onnx, "--method", preset, "--batch", "8").stdout
    assert op in out and op + "Grad" in out
    m = re.search(r"\(fused: ([^)]*)\)", out)
    assert m, "no fused node in the dump"
    replaced = m.group(1)
    for part in parts:
        assert part + "/op" in replaced, (part, replaced)
    # neither the loss nor its backward is left (op types; the fused list holds node names)
    for gone in ("SoftmaxCrossEntropy", "ReduceMax", "LogSoftmaxGrad", "Tile"):
        assert gone not in out, gone


# ---------------------------------------------------------------- (c) the C kernels

KERNEL_CASES = [
    # N, D, K, T, tile, pos
    (6, 16, 1000, 0.2, 256, 0.3),   # 1000 = 3 x 256 + 232
    (5, 8, 37, 0.5, 16, 0.3),       # tiny tiles, a ragged last one
    (37, 128, 4100, 0.07, 512, 0.3),
    (37, 128, 4100, 0.07, 512, 1.0),  # positives dominate: loss ~0.01, the saved row loss keeps 1 - p0 exact
    (3, 24, 100, 0.1, 0, 0.3),      # K below the default tile
]


@pytest.mark.parametrize("N,D,K,T,tile,pos", KERNEL_CASES)
def test_c_kernels_match_reference(build_dir, tmp_path, N, D, K, T, tile, pos):
    p = subprocess.run([str(_tool(build_dir)), str(N), str(D), str(K), str(T), str(tile), str(tmp_path / "prog"),
                        "--pos", str(pos), "--tol", str(TOL)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    r = {line.split()[0]: line.split()[1:] for line in p.stdout.splitlines() if line.strip()}
    assert r["fused"] == ["1"]
    ref = [float(x) for x in r["ref"]]
    c = [float(x) for x in r["c"]]
    assert ref[2] <= TOL and ref[3] <= TOL, ref  # fused vs unfused, reference interpreter
    assert max(c) <= TOL, c                        # C kernels vs the references
    f64 = [float(x) for x in r["f64"]]
    assert f64[3] <= 2e-6, f64                     # the fused result is float32-exact (vs float64)


INBATCH_KERNEL_CASES = [
    # B, V, D, T, base T, tile, flags
    (3, 2, 8, 0.5, 0.5, 0, []),              # SimCLR's NT-Xent, one tile
    (6, 2, 16, 0.2, 0.2, 5, []),             # 12 columns in tiles of 5, 5, 2
    (5, 2, 16, 0.07, 0.07, 4, ["--mask"]),   # SupCon with labels
    (4, 3, 12, 0.1, 0.07, 5, ["--one", "--mask"]),  # contrast_mode one, 3 views
    (7, 3, 24, 0.1, 0.07, 0, ["--one"]),
    (40, 2, 128, 0.07, 0.07, 48, ["--mask"]),
]


@pytest.mark.parametrize("B,V,D,T,base_T,tile,flags", INBATCH_KERNEL_CASES)
def test_inbatch_c_kernels_match_reference(build_dir, tmp_path, B, V, D, T, base_T, tile, flags):
    p = subprocess.run([str(_tool(build_dir)), "inbatch", str(B), str(V), str(D), str(T), str(base_T), str(tile),
                        str(tmp_path / "prog")] + flags + ["--tol", str(TOL)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    r = {line.split()[0]: line.split()[1:] for line in p.stdout.splitlines() if line.strip()}
    c = [float(x) for x in r["c"]]
    assert max(c) <= TOL, c


# ---------------------------------------------------------------- (c) whole compiled trainers

TRAINER_CASES = [
    # preset, batch, compile options, method_ref options, trainer lr
    ("moco-v2", 6, ["--head", "12,16", "--queue", "700", "--no-shuffle-bn", "--bn-splits", "1"],
     dict(head="12,16", queue=700, shuffle=0, splits=1), 0.03),
    ("simclr", 5, ["--head", "12,8"], dict(head="12,8"), 0.1),
    ("supcon", 4, ["--head", "12,8", "--temperature", "0.1"], dict(head="12,8", temperature=0.1, labels=1), 0.05),
]


@pytest.mark.parametrize("preset,batch,copts,ropts,lr", TRAINER_CASES)
def test_compiled_trainer_matches_unfused_reference(build_dir, run_contra, tmp_path, tiny_onnx, preset, batch, copts,
                                                    ropts, lr):
    """The trainer of `contra compile --method` (fused loss kernels, default) against the reference
    interpreter on the unfused graph: two SGD/LARS steps, every parameter, optimizer slot and state."""
    steps = 2
    rng = np.random.default_rng(batch)
    views = [rng.standard_normal((steps * batch, 3, SIZE, SIZE)).astype(np.float32) for _ in range(2)]
    labels = rng.integers(0, 3, steps * batch).astype(np.int64)
    files = []
    for i, v in enumerate(views):
        files.append(tmp_path / f"v{i + 1}.npy")
        np.save(files[-1], v)
    np.save(tmp_path / "labels.npy", labels)
    tr = tmp_path / "trainer"
    run_contra("compile", tiny_onnx, "--method", preset, "--batch", batch, *copts, "--lr", lr, "--schedule",
               "constant", "-o", tr, "-q")
    args = [str(tr / "trainer"), "--views", ",".join(map(str, files)), "--steps", str(steps), "--lr", str(lr),
            "--schedule", "constant", "--threads", "1", "--out", str(tmp_path / "run"), "--save-params",
            str(tmp_path / "params"), "-q"]
    if preset == "supcon":
        args += ["--view-labels", str(tmp_path / "labels.npy")]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    import json
    c_loss = [json.loads(l)["loss"] for l in open(tmp_path / "run" / "metrics.jsonl") if '"step"' in l.split(",")[0]]
    ins = {"view1": views[0], "view2": views[1], "lr": np.full(steps, lr, np.float32)}
    if preset == "supcon":
        ins["labels"] = labels
    ref = tmp_path / "ref"
    ref.mkdir()
    r = _run(build_dir, ref, tiny_onnx, preset, dict(ropts, batch=batch, attach_optimizer=1, fuse_loss=0), ins, {},
             steps=steps)
    assert len(c_loss) == steps
    for s in range(steps):
        assert abs(c_loss[s] - r["loss"][s]) <= 1e-5 * abs(r["loss"][s]), (s, c_loss, r["loss"])
    worst = (0.0, "")
    for name, ref_v in r["state"].items():
        got = np.load(tmp_path / "params" / (name + ".npy"))
        worst = max(worst, (_rel(got, ref_v), name))
    print(f"{preset}: losses {c_loss} vs {r['loss']}, worst state {worst[1]} {worst[0]:.3g}")
    assert len(r["state"]) >= 10 and worst[0] <= 1e-5, worst


# ---------------------------------------------------------------- (d) memory

def test_arena_does_not_grow_with_K(build_dir, tmp_path):
    arena = {}
    for K in (4096, 65536):
        p = subprocess.run([str(_tool(build_dir)), "256", "128", str(K), "0.2", "0", str(tmp_path / "prog"),
                            "--no-eval"], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        line = [l for l in p.stdout.splitlines() if l.startswith("arena ")][0]
        arena[K] = [int(x) for x in line.split()[1:]]  # unfused plan, fused arena, fused scratch
    print("arena bytes (unfused plan, fused arena, fused scratch):", arena)
    assert arena[4096][1] == arena[65536][1]  # the fused program: independent of K
    assert arena[4096][2] == arena[65536][2]
    # the unfused graph keeps [N, K+1] logits and log-probabilities: it grows with K
    assert arena[65536][0] - arena[4096][0] >= 2 * 256 * (65536 - 4096) * 4
    assert arena[4096][1] < arena[4096][0] / 4
