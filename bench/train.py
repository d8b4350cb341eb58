#!/usr/bin/env python3
"""bench/train.py — one supervised training step (forward, backward, SGD with
momentum and weight decay) of the CIFAR ResNet-18 at batch 128, 32x32 inputs,
10 classes, for contra (`contra compile --method supervised`, the trainer timing
each step in-process with --time-steps) and PyTorch eager, with the same thread
count, the same weights (PyTorch loads the trainer's initial parameters) and the
same batches, side by side in one run. Prints a table and writes
bench/results/train.json.

    .venv/bin/python bench/train.py [--threads 2] [--batch 128] [--steps 5] [--warmup 2]

The model is what `--method supervised` trains: the exported CIFAR ResNet-18
(BatchNorm kept, switched to training mode; its fc 512->10) followed by the
trainer's Linear head (10->classes) and cross-entropy; PyTorch runs the same
module stack. Each implementation runs in its own child process (peak RSS from
wait4). Steady state = median over --steps timed steps after --warmup untimed
ones. The build dir is $CONTRA_BUILD (default build/)."""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from workdir import add_keep_option, work_folder  # noqa: E402  (bench/: the scratch folder)

LR, MOMENTUM, WD = 0.1, 0.9, 5e-4


def build_dir():
    b = Path(os.environ.get("CONTRA_BUILD", "build"))
    return b if b.is_absolute() else ROOT / b


def run_child(cmd, env, log):
    """Run cmd with stdout+stderr to log; return (rc, peak RSS in MiB, wall s) from wait4."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_maxrss / 1024.0, time.perf_counter() - t0


def summarize(times, batch):
    s = sorted(times)
    med = s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])
    return {"timed_steps": len(s), "step_s": times, "median_s": med, "min_s": s[0], "max_s": s[-1],
            "ms_per_step": 1e3 * med, "images_per_s": batch / med}


# ---------------------------------------------------------------- PyTorch side
def torch_worker(a):
    """Child process: the same model and batches in PyTorch eager, timing each step."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    import models

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    work = Path(a.work)
    enc = models._build("cifar_resnet18", "bn")
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(a.model).graph.initializer}
    p0 = {str(f.relative_to(work / "p0"))[:-4]: np.load(f) for f in (work / "p0").rglob("*.npy")}
    sd = enc.state_dict()
    loaded = 0
    for k in sd:
        src = p0.get(k, inits.get(k))  # the trainer's initial state first, else the export's
        if src is not None and src.shape == tuple(sd[k].shape):
            sd[k] = torch.from_numpy(np.array(src, dtype=sd[k].numpy().dtype))
            loaded += 1
    enc.load_state_dict(sd)
    head = torch.nn.Linear(p0["head.weight"].shape[1], p0["head.weight"].shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(p0["head.weight"]))
        head.bias.copy_(torch.from_numpy(p0["head.bias"]))
    model = torch.nn.Sequential(enc, head).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    x = np.load(work / "x.npy")
    y = np.load(work / "y.npy")
    n, B = x.shape[0], a.batch
    times, losses = [], []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        idx = [(s * B + b) % n for b in range(B)]
        xb = torch.from_numpy(x[idx])
        yb = torch.from_numpy(y[idx])
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        lv = loss.item()
        times.append(time.perf_counter() - t0)
        losses.append(lv)
    json.dump({"times": times, "losses": losses, "loaded": loaded, "state_tensors": len(sd),
               "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
              open(work / "torch.json", "w"))


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median over them)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train.json"))
    add_keep_option(ap)
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        return torch_worker(a)
    if a.steps < 1 or a.warmup < 0:
        sys.exit("train.py: --steps must be >= 1 and --warmup >= 0")
    T, B = a.threads, a.batch

    import numpy as np
    import torch

    import models

    contra = build_dir() / "tools" / "contra"
    if not contra.exists():
        sys.exit(f"train.py: {contra} missing: build contra first (ninja -C {build_dir()})")
    work = work_folder("contra-bench-train-", a.keep)
    env = dict(os.environ, OMP_NUM_THREADS=str(T), OPENBLAS_NUM_THREADS=str(T), MKL_NUM_THREADS=str(T))
    info = {
        "threads": T, "batch": B, "classes": a.classes, "input": [3, 32, 32],
        "optimizer": f"SGD lr {LR} momentum {MOMENTUM} weight decay {WD}",
        "warmup_steps": a.warmup, "timed_steps": a.steps,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OMP_NUM_THREADS": str(T), "OPENBLAS_NUM_THREADS": str(T),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None),
        "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    model = models.export("cifar_resnet18", "bn", 17, dynamic=True)
    info["model"] = str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model)

    # data: distinct batches for every step, the same for both
    total = a.warmup + a.steps
    rng = np.random.default_rng(0)
    np.save(work / "x.npy", rng.standard_normal((total * B, 3, 32, 32)).astype(np.float32))
    np.save(work / "y.npy", rng.integers(0, a.classes, total * B).astype(np.int64))

    # contra: compile, save the initial state, then time the steps
    tdir = work / "trainer"
    t0 = time.perf_counter()
    p = subprocess.run([str(contra), "compile", str(model), "--method", "supervised", "--classes", str(a.classes),
                        "--optimizer", "sgd", "--lr", str(LR), "--momentum", str(MOMENTUM), "--weight-decay", str(WD),
                        "--batch", str(B), "-o", str(tdir)], capture_output=True, text=True, env=env)
    compile_s = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"train.py: contra compile failed:\n{p.stderr[-3000:]}")
    compile_msg = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    data = ["--x", str(work / "x.npy"), "--y", str(work / "y.npy")]
    p = subprocess.run([str(tdir / "trainer"), *data, "--steps", "0", "--save-params", str(work / "p0")],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"train.py: trainer --steps 0 failed:\n{p.stderr[-3000:]}")
    print(f"contra: {total} steps ({a.warmup} warm-up) ...", file=sys.stderr, flush=True)
    rc, c_rss, c_wall = run_child([str(tdir / "trainer"), *data, "--steps", str(total), "--threads", str(T),
                                   "--time-steps"], env, work / "contra.log")
    log = (work / "contra.log").read_text()
    if rc != 0:
        sys.exit(f"train.py: trainer failed (exit {rc}):\n{log[-3000:]}")
    c_times = [float(l.split()[2]) for l in log.splitlines() if l.startswith("time ")]
    c_losses = [float(l.split()[-1]) for l in log.splitlines() if l.startswith("step ")]
    assert len(c_times) == total and len(c_losses) == total, log[-2000:]
    contra_r = summarize(c_times[a.warmup:], B)
    contra_r.update(peak_rss_mib=c_rss, process_wall_s=c_wall, compile_s=compile_s, compile=compile_msg,
                    losses=c_losses, warmup_step_s=c_times[:a.warmup])

    # PyTorch eager in its own process
    print(f"PyTorch: {total} steps ({a.warmup} warm-up) ...", file=sys.stderr, flush=True)
    rc, t_rss, t_wall = run_child([sys.executable, __file__, "--torch-worker", "--work", str(work), "--model",
                                   str(model), "--threads", str(T), "--batch", str(B), "--steps", str(a.steps),
                                   "--warmup", str(a.warmup)], env, work / "torch.log")
    if rc != 0:
        sys.exit(f"train.py: PyTorch worker failed (exit {rc}):\n{(work / 'torch.log').read_text()[-3000:]}")
    tj = json.loads((work / "torch.json").read_text())
    torch_r = summarize(tj["times"][a.warmup:], B)
    torch_r.update(peak_rss_mib=t_rss, process_wall_s=t_wall, losses=tj["losses"], warmup_step_s=tj["times"][:a.warmup],
                   torch=tj["torch"], torch_threads=tj["torch_threads"],
                   state_tensors_loaded=f"{tj['loaded']}/{tj['state_tensors']}")

    # same model, same data: the losses must agree (first step exactly up to float32 sums)
    rel = [abs(x - y) / abs(y) for x, y in zip(c_losses, tj["losses"])]
    info["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    ratio_time = contra_r["median_s"] / torch_r["median_s"]
    out = {"env": info, "unit": "median wall seconds of one training step (batch copy, forward, backward, optimizer)",
           "contra": contra_r, "pytorch": torch_r,
           "contra_over_pytorch_time": ratio_time, "contra_over_pytorch_images_per_s": 1 / ratio_time,
           "loss_rel_diff_per_step": rel}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.out + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(a.out)

    print(f"\nOne supervised training step, CIFAR ResNet-18 (+ Linear head), batch {B}, 3x32x32, {a.classes} classes, "
          f"SGD momentum; {T} threads, {info['cpu']}\n(OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']}; load average "
          f"at start {' '.join(info['loadavg_at_start'])}, at end {' '.join(info['loadavg_at_end'])}; "
          f"median of {a.steps} steps after {a.warmup} warm-up)\n")
    print("| implementation | ms/step | images/s | min ms/step | peak RSS MiB | step time vs PyTorch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in ((f"contra", contra_r), (f"PyTorch {torch_r['torch']} eager", torch_r)):
        print(f"| {name} | {r['ms_per_step']:.0f} | {r['images_per_s']:.1f} | {1e3 * r['min_s']:.0f} | "
              f"{r['peak_rss_mib']:.0f} | {r['median_s'] / torch_r['median_s']:.2f}x |")
    print(f"\ncontra/PyTorch: {ratio_time:.2f}x the time per step ({1 / ratio_time:.2f}x the images/s); "
          f"loss relative difference per step: max {max(rel):.1e} (step 1: {rel[0]:.1e})")
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
