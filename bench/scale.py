#!/usr/bin/env python3
"""bench/scale.py — data-parallel scaling of a MoCo v2 step (CIFAR ResNet-18
encoder, 32x32, K 4096) on this machine: one process with the global batch G
against 2 ranks (mpirun -np 2, Open MPI's shared-memory transport) with G/2
each, same total thread count, side by side in one run. Reports images/s of
each, the bytes each rank sends into the step's collectives (the gradient
all-reduce, the keys' all-gather, SyncBN's or shuffle BN's traffic; counted
by the trainer), and writes bench/results/scale.json.

    .venv/bin/python bench/scale.py [--batch 128] [--threads 2] [--steps 6] [--warmup 2]
                                    [--bn sync|shuffle|both]
    .venv/bin/python bench/scale.py --quick      # batch 32, 3 steps: a smoke test

A step is timed in the trainer (--time-steps: from launching the step to its
loss being known on every rank); steady state = median over --steps after
--warmup. On 2 cores, the 1-rank run uses 2 threads and each rank 1 thread:
the comparison is what the collectives and the smaller per-rank GEMMs cost,
not more hardware. The build dir is $CONTRA_BUILD (default build/)."""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_dir():
    b = Path(os.environ.get("CONTRA_BUILD", "build"))
    return b if b.is_absolute() else ROOT / b


def env():
    e = dict(os.environ)
    e.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    e.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return e


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env())
    if p.returncode != 0:
        sys.exit(f"bench/scale: {' '.join(map(str, cmd))} exited {p.returncode}\n{p.stderr[-3000:]}")
    return p


def compile_trainer(contra, out, batch, ranks, bn):
    cmd = [contra, "compile", "--model", "resnet18_small", "--method", "moco-v2", "--batch", batch, "--queue", 4096,
           "-o", out, "-q"]
    if ranks > 1:
        cmd += ["--ranks", ranks] + (["--sync-bn"] if bn == "sync" else [])
    else:
        cmd += ["--no-shuffle-bn"] if bn == "sync" else ["--shuffle-bn", "--bn-splits", 2]
    run(cmd)
    return Path(out) / "trainer"


def timed(trainer, ranks, threads, views, steps, warmup):
    args = [trainer, "--views", views, "--steps", steps + warmup, "--threads", threads, "--time-steps",
            "--progress", "plain", "--out", Path(trainer).parent / "run"]
    if ranks > 1:
        mpirun = shutil.which("mpirun")
        if not mpirun:
            sys.exit("bench/scale: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)")
        args = [mpirun, "-np", ranks, "--oversubscribe", "--bind-to", "none"] + args
    p = run(args)
    times = [float(l.split()[2]) for l in p.stdout.splitlines() if l.startswith("time ")]
    assert len(times) == steps + warmup, p.stdout[-2000:]
    m = re.search(r"each sent ([0-9.]+) MiB per step", p.stderr)
    return statistics.median(times[warmup:]), float(m.group(1)) if m else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128, help="global batch per view (default 128)")
    ap.add_argument("--threads", type=int, default=2, help="threads in all (default 2: one per rank)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bn", choices=["sync", "shuffle", "both"], default="both")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.batch, a.steps, a.warmup = 32, 3, 1
    if a.batch % 2:
        sys.exit("bench/scale: --batch must be even (split over 2 ranks)")
    import numpy as np
    contra = build_dir() / "tools" / "contra"
    if not contra.exists():
        sys.exit(f"bench/scale: {contra} is missing (bash scripts/build {build_dir().name})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="contra-scale-") as tmp:
        tmp = Path(tmp)
        r = np.random.default_rng(0)
        files = []
        n = a.batch * (a.steps + a.warmup)
        for v in (1, 2):
            f = tmp / f"v{v}.npy"
            np.save(f, r.standard_normal((n, 3, 32, 32)).astype(np.float32))
            files.append(str(f))
        views = ",".join(files)
        for bn in (["sync", "shuffle"] if a.bn == "both" else [a.bn]):
            one = compile_trainer(contra, tmp / f"one-{bn}", a.batch, 1, bn)
            two = compile_trainer(contra, tmp / f"two-{bn}", a.batch // 2, 2, bn)
            t1, _ = timed(one, 1, a.threads, views, a.steps, a.warmup)
            t2, mib = timed(two, 2, max(1, a.threads // 2), views, a.steps, a.warmup)
            rows.append({"bn": bn, "global_batch": a.batch, "one_rank_ms": 1e3 * t1, "two_ranks_ms": 1e3 * t2,
                         "one_rank_img_s": 2 * a.batch / t1, "two_ranks_img_s": 2 * a.batch / t2,
                         "speedup": t1 / t2, "mib_per_step_per_rank": mib})
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                        "?"), "cores": os.cpu_count(), "threads": a.threads, "steps": a.steps, "warmup": a.warmup,
            "command": "bench/scale.py " + " ".join(sys.argv[1:]), "rows": rows}
    print(f"MoCo v2, CIFAR ResNet-18, K 4096, global batch {a.batch} per view x 2 views, {a.threads} threads in all")
    print(f"{'BatchNorm':<22}{'1 rank img/s':>14}{'2 ranks img/s':>15}{'2 ranks / 1':>13}{'MiB/step/rank':>15}")
    for r_ in rows:
        what = "SyncBN" if r_["bn"] == "sync" else "shuffle BN (2 groups)"
        print(f"{what:<22}{r_['one_rank_img_s']:>14.1f}{r_['two_ranks_img_s']:>15.1f}{r_['speedup']:>12.2f}x"
              f"{r_['mib_per_step_per_rank']:>15.2f}")
    out = ROOT / "bench" / "results" / ("scale-quick.json" if a.quick else "scale.json")
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
