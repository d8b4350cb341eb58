#!/usr/bin/env python3
"""bench/methods.py — one SimCLR and one BYOL training step of the CIFAR
ResNet-18 (3x3 stem, no max-pool, 32x32 views, batch B per view) for contra
(`contra compile --method simclr|byol`, timed in-process by the trainer's
--time-steps) and PyTorch, same threads, same initial state (PyTorch loads
the trainer's parameters, BatchNorm statistics and target copy), same views,
side by side in one run, each in its own process (peak RSS from wait4).

  SimCLR: both views through the encoder as one batch of 2B, head Linear(512,
          512)-ReLU-Linear(512, 128), NT-Xent at T 0.5 (the SimCLR paper);
          SGD lr 0.3 momentum 0.9 wd 1e-6 on both sides (contra's preset uses
          LARS; the optimizer is well under 1% of the step).
  BYOL:   byol-pytorch: online encoder + projector (4096 with BatchNorm, 256)
          + predictor (same shape) on both views as one batch, target = EMA
          copy (decay raised from 0.99 towards 1 on a cosine, as contra's
          trainer feeds it) run in training mode without gradients, the
          symmetric normalised-MSE loss, Adam lr 3e-4.

    .venv/bin/python bench/methods.py [--methods simclr,byol] [--threads 2] [--batch 256]
                                      [--steps 5] [--warmup 2] [--torch-python PY] [--compile]

--compile also times the PyTorch step under torch.compile (default mode; its
compilation happens in the warm-up steps). Writes bench/results/methods.json.
The build dir is $CONTRA_BUILD (default build/)."""
import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import moco as mb  # noqa: E402  (run_child, summarize, build_dir: the MoCo bench's helpers)
from workdir import add_keep_option, work_folder  # noqa: E402  (bench/: the scratch folder)

SIMCLR_T, SIMCLR_LR, SIMCLR_MOM, SIMCLR_WD = 0.5, 0.3, 0.9, 1e-6
BYOL_LR, BYOL_TAU = 3e-4, 0.99


# ---------------------------------------------------------------- the PyTorch side
def torch_worker(a):
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torchvision

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    def encoder():
        m = torchvision.models.resnet18(weights=None)
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
        m.fc = nn.Identity()
        return m

    class Net(nn.Module):
        """contra's module names: the encoder's torchvision names at the top level, head/projector/predictor."""

        def __init__(self, method):
            super().__init__()
            self.enc = encoder()
            if method == "simclr":
                self.head = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
            else:
                self.projector = nn.Sequential(nn.Linear(512, 4096), nn.BatchNorm1d(4096), nn.ReLU(),
                                               nn.Linear(4096, 256))
                self.predictor = nn.Sequential(nn.Linear(256, 4096), nn.BatchNorm1d(4096), nn.ReLU(),
                                               nn.Linear(4096, 256))

    def load(module, prefix, p0):
        """module's state from contra's saved tensors (prefix + contra name)."""
        sd = module.state_dict()
        n = 0
        for k in sd:
            if k.endswith("num_batches_tracked"):
                continue
            name = k[4:] if k.startswith("enc.") else k
            src = np.load(Path(p0) / (prefix + name + ".npy"))
            sd[k] = torch.from_numpy(np.array(src, dtype=np.float32).reshape(sd[k].shape))
            n += 1
        module.load_state_dict(sd)
        return n

    net = Net(a.method)
    loaded = load(net, "", a.params)
    target = None
    if a.method == "byol":
        target = Net("byol")
        del target.predictor
        loaded += load(target, "target/", a.params)
        for p in target.parameters():
            p.requires_grad_(False)
    net.train()
    if target is not None:
        target.train()
    if a.method == "simclr":
        opt = torch.optim.SGD(net.parameters(), SIMCLR_LR, momentum=SIMCLR_MOM, weight_decay=SIMCLR_WD)
    else:
        opt = torch.optim.Adam(net.parameters(), BYOL_LR)
    B = a.batch
    total = a.warmup + a.steps

    def step_fn(x):
        if a.method == "simclr":
            z = F.normalize(net.head(net.enc(x)), dim=1)
            sim = z @ z.t() / SIMCLR_T
            sim = sim - 1e9 * torch.eye(2 * B)
            labels = (torch.arange(2 * B) + B) % (2 * B)
            return F.cross_entropy(sim, labels)
        p = net.predictor(net.projector(net.enc(x)))
        with torch.no_grad():
            t = target.projector(target.enc(x)).detach()
        p1, p2 = p.chunk(2)
        t1, t2 = t.chunk(2)

        def lf(u, v):
            return 2 - 2 * (F.normalize(u, dim=-1) * F.normalize(v, dim=-1)).sum(dim=-1)
        return (lf(p1, t2) + lf(p2, t1)).mean()

    fn = torch.compile(step_fn) if a.compile else step_fn
    v1 = np.load(Path(a.work) / "v1.npy", mmap_mode="r")
    v2 = np.load(Path(a.work) / "v2.npy", mmap_mode="r")
    times, losses = [], []
    for s in range(total):
        t0 = time.perf_counter()
        rows = slice((s * B) % v1.shape[0], (s * B) % v1.shape[0] + B)
        x = torch.from_numpy(np.concatenate([v1[rows], v2[rows]]))
        loss = fn(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if target is not None:  # byol-pytorch: update_moving_average() after the optimizer step
            tau = 1 - (1 - BYOL_TAU) * (np.cos(np.pi * s / total) + 1) / 2
            with torch.no_grad():
                for part in ("enc", "projector"):
                    for po, pt in zip(getattr(net, part).parameters(), getattr(target, part).parameters()):
                        pt.mul_(tau).add_(po, alpha=1 - tau)
        losses.append(loss.item())
        times.append(time.perf_counter() - t0)
    json.dump({"times": times, "losses": losses, "loaded": loaded, "torch": torch.__version__,
               "compiled": bool(a.compile)}, open(a.result, "w"))


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="simclr,byol")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256, help="images per view")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median over them)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--torch-python", default=sys.executable, help="the Python that runs the PyTorch side")
    ap.add_argument("--compile", action="store_true", help="also time PyTorch under torch.compile")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "methods.json"))
    add_keep_option(ap)
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        return torch_worker(a)
    import subprocess

    import numpy as np

    import models

    contra = mb.build_dir() / "tools" / "contra"
    if not contra.exists():
        sys.exit(f"methods.py: {contra} missing: build contra first")
    B, T = a.batch, a.threads
    total = a.warmup + a.steps
    env = dict(os.environ, OMP_NUM_THREADS=str(T), OPENBLAS_NUM_THREADS=str(T), MKL_NUM_THREADS=str(T))
    work = work_folder("contra-bench-methods-", a.keep)
    rng = np.random.default_rng(0)
    np.save(work / "v1.npy", rng.standard_normal((total * B, 3, 32, 32)).astype(np.float32))
    np.save(work / "v2.npy", rng.standard_normal((total * B, 3, 32, 32)).astype(np.float32))
    model = models.export("cifar_resnet18", "bn", 17, dynamic=True)
    info = {"threads": T, "batch_per_view": B, "input": [3, 32, 32], "warmup_steps": a.warmup, "timed_steps": a.steps,
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                        None),
            "cores": os.cpu_count(), "torch_python": a.torch_python,
            "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    results = {}
    for method in a.methods.split(","):
        if method not in ("simclr", "byol"):
            sys.exit(f"methods.py: unknown method '{method}' (simclr, byol)")
        opts = (["--optimizer", "sgd", "--lr", str(SIMCLR_LR), "--momentum", str(SIMCLR_MOM), "--weight-decay",
                 str(SIMCLR_WD), "--temperature", str(SIMCLR_T)] if method == "simclr" else
                ["--optimizer", "adam", "--lr", str(BYOL_LR), "--ema", str(BYOL_TAU), "--ema-schedule", "cosine"])
        tdir = work / f"trainer-{method}"
        print(f"{method}: contra compile ...", file=sys.stderr, flush=True)
        p = subprocess.run([str(contra), "compile", str(model), "--method", method, "--batch", str(B), *opts,
                            "-o", str(tdir), "-q"], capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(f"methods.py: contra compile failed:\n{p.stderr[-3000:]}")
        views = f"{work / 'v1.npy'},{work / 'v2.npy'}"
        p0 = work / f"p0-{method}"
        p = subprocess.run([str(tdir / "trainer"), "--views", views, "--steps", "0", "--progress", "none",
                            "--out", str(work / "run"), "--save-params", str(p0)], capture_output=True, text=True,
                           env=env)
        if p.returncode != 0:
            sys.exit(f"methods.py: trainer --steps 0 failed:\n{p.stderr[-3000:]}")
        print(f"{method}: contra, {total} steps ...", file=sys.stderr, flush=True)
        log = work / f"contra-{method}.log"
        rc, rss, proc = mb.run_child([str(tdir / "trainer"), "--views", views, "--steps", str(total), "--threads",
                                      str(T), "--time-steps", "--progress", "plain", "--out", str(work / "run")],
                                     env, log)
        text = log.read_text()
        if rc != 0:
            sys.exit(f"methods.py: trainer failed:\n{text[-3000:]}")
        times = [float(l.split()[2]) for l in text.splitlines() if l.startswith("time ")]
        losses = [float(l.split()[-1]) for l in text.splitlines() if l.startswith("step ")]
        c = mb.summarize(times[a.warmup:], B)
        c.update(peak_rss_mib=rss, **proc, losses=losses)
        r = {"contra": c}
        for compiled in ([False, True] if a.compile else [False]):
            tag = "compiled" if compiled else "eager"
            print(f"{method}: PyTorch {tag}, {total} steps ...", file=sys.stderr, flush=True)
            res = work / f"torch-{method}-{tag}.json"
            rc, rss, proc = mb.run_child([a.torch_python, __file__, "--torch-worker", "--method", method, "--work",
                                          str(work), "--params", str(p0), "--result", str(res), "--threads", str(T),
                                          "--batch", str(B), "--steps", str(a.steps), "--warmup", str(a.warmup),
                                          *(["--compile"] if compiled else [])], env, work / f"torch-{tag}.log")
            if rc != 0:
                r[f"pytorch_{tag}"] = {"error": (work / f"torch-{tag}.log").read_text()[-3000:]}
                continue
            tj = json.loads(res.read_text())
            t = mb.summarize(tj["times"][a.warmup:], B)
            t.update(peak_rss_mib=rss, **proc, losses=tj["losses"], torch=tj["torch"], loaded=tj["loaded"],
                     warmup_s=tj["times"][:a.warmup],
                     loss_rel_diff_step1=abs(losses[0] - tj["losses"][0]) / abs(tj["losses"][0]))
            r[f"pytorch_{tag}"] = t
        results[method] = r
    info["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    out = {"env": info, "unit": "median wall seconds of one step; images/s = batch per view / step time",
           "results": results}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.out + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(a.out)

    print(f"\nOne training step, CIFAR ResNet-18, batch {B} per view (2 views), {T} threads, {info['cpu']} (load "
          f"average at start {' '.join(info['loadavg_at_start'])}, at end {' '.join(info['loadavg_at_end'])}; "
          f"median of {a.steps} steps after {a.warmup} warm-up)\n")
    print("| method | implementation | ms/step | images/s | peak RSS MiB | contra speed-up | step-1 loss rel. diff |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for method, r in results.items():
        c = r["contra"]
        print(f"| {method} | contra | {c['ms_per_step']:.0f} | {c['images_per_s']:.1f} | {c['peak_rss_mib']:.0f} | "
              f"| |")
        for tag in ("eager", "compiled"):
            t = r.get(f"pytorch_{tag}")
            if t is None:
                continue
            if "error" in t:
                print(f"| {method} | PyTorch {tag} | failed | | | | |")
                continue
            print(f"| {method} | PyTorch {t['torch']} {tag} | {t['ms_per_step']:.0f} | {t['images_per_s']:.1f} | "
                  f"{t['peak_rss_mib']:.0f} | {t['median_s'] / c['median_s']:.2f}x | {t['loss_rel_diff_step1']:.1e} |")
    print(f"\nwritten {a.out}")


if __name__ == "__main__":
    main()
