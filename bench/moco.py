#!/usr/bin/env python3
"""bench/moco.py — one MoCo v2 training step (CIFAR ResNet-18 encoder, 2-layer
MLP head 512-512-128, T 0.2, m 0.999, SGD lr 0.03 momentum 0.9 wd 1e-4, batch
256 per view, queue K 4096) for contra (`contra compile --method moco-v2`, the
trainer timing each step in-process with --time-steps) and the PyTorch
reference in eager mode (the class MoCo below: facebookresearch/moco's
moco/builder.py without the distributed parts, shuffle BN emulated on one
process with the MoCo CIFAR demo's SplitBatchNorm), same threads, same initial
state (PyTorch loads the trainer's parameters, key encoder and queue), same
views and same shuffle permutations, side by side in one run. Then the peak
memory of a step at K 4096 and K 65536 (contra and PyTorch), against the bytes
of the queue itself. Prints tables and writes bench/results/moco.json.

    .venv/bin/python bench/moco.py [--threads 2] [--batch 256] [--queue 4096] [--queue-big 65536]
                                   [--steps 5] [--warmup 2] [--mem-steps 2]
                                   [--no-shuffle-bn | --bn-splits 8] [--channels-last off|on|both]
                                   [--torch-python PY]
    .venv/bin/python bench/moco.py --quick      # batch 32, 2 timed steps: a smoke test, < 2 minutes

Every implementation runs in its own child process (peak RSS from wait4's
ru_maxrss). Steady state = median over --steps timed steps after --warmup
untimed ones; a step is the batch copy, the key encoder's momentum update,
both forward passes, the loss, backward, the SGD step and the enqueue. The
build dir is $CONTRA_BUILD (default build/). --compile also times PyTorch's step under torch.compile (default mode;
its first --warmup steps compile). --torch-python runs the PyTorch
side under another interpreter (one with the newest torch from PyPI, say:
python3 -m venv peer && peer/bin/pip install torch torchvision numpy)."""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from workdir import add_keep_option, work_folder  # noqa: E402  (bench/: the scratch folder)

DIM, T, M, LR, MOMENTUM, WD = 128, 0.2, 0.999, 0.03, 0.9, 1e-4


def build_dir():
    b = Path(os.environ.get("CONTRA_BUILD", "build"))
    return b if b.is_absolute() else ROOT / b


def run_child(cmd, env, log):
    """Run cmd with stdout+stderr to log; return (rc, peak RSS in MiB, process info) from wait4: wall s, CPU s
    (user + system) and CPU/wall, which is about the thread count on an idle machine and lower when other
    processes took the cores (a sign the timings are disturbed), and the load average before and after."""
    la0 = open("/proc/loadavg").read().split()[0]
    # Linux carries the peak RSS of the process that exec's a program into the program's own, so a
    # child's peak reads at least this process's: recorded beside it (it should be far below)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
    wall, cpu = time.perf_counter() - t0, ru.ru_utime + ru.ru_stime
    return os.waitstatus_to_exitcode(status), ru.ru_maxrss / 1024.0, {
        "process_wall_s": wall, "process_cpu_s": cpu, "cpu_per_wall": cpu / wall, "launcher_peak_rss_mib": own,
        "loadavg_1min_before": float(la0), "loadavg_1min_after": float(open("/proc/loadavg").read().split()[0])}


def summarize(times, batch):
    s = sorted(times)
    med = s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])
    return {"timed_steps": len(s), "step_s": times, "median_s": med, "min_s": s[0], "max_s": s[-1],
            "ms_per_step": 1e3 * med, "images_per_s": batch / med}


# ---------------------------------------------------------------- the PyTorch reference
def torch_reference():
    """The reference classes (defined lazily: the parent process does not need torch for them)."""
    import torch
    import torch.nn as nn
    import torchvision

    class SplitBatchNorm(nn.BatchNorm2d):
        """The MoCo CIFAR demo's single-device shuffle-BN emulation (reshape instead of view so
        that a channels_last input works; identical for a contiguous one)."""

        def __init__(self, num_features, num_splits, **kw):
            super().__init__(num_features, **kw)
            self.num_splits = num_splits

        def forward(self, input):
            N, C, H, W = input.shape
            if self.training or not self.track_running_stats:
                running_mean_split = self.running_mean.repeat(self.num_splits)
                running_var_split = self.running_var.repeat(self.num_splits)
                outcome = nn.functional.batch_norm(
                    input.reshape(-1, C * self.num_splits, H, W), running_mean_split, running_var_split,
                    self.weight.repeat(self.num_splits), self.bias.repeat(self.num_splits),
                    True, self.momentum, self.eps).reshape(N, C, H, W)
                self.running_mean.data.copy_(running_mean_split.view(self.num_splits, C).mean(dim=0))
                self.running_var.data.copy_(running_var_split.view(self.num_splits, C).mean(dim=0))
                return outcome
            return nn.functional.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                                            False, self.momentum, self.eps)

    def cifar_resnet18(num_classes, bn_splits):
        """torchvision resnet18 with the CIFAR stem (3x3 stride-1 conv, no max-pool): tests/models.py's."""
        norm = (lambda c: SplitBatchNorm(c, bn_splits)) if bn_splits > 1 else nn.BatchNorm2d
        m = torchvision.models.resnet18(weights=None, num_classes=num_classes, norm_layer=norm)
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
        return m

    class MoCo(nn.Module):
        """moco/builder.py (MoCo v1/v2) without the distributed parts: the key batch shuffle is
        the single-process one of the CIFAR demo, with the permutation given from outside."""

        def __init__(self, base_encoder, dim=128, K=65536, m=0.999, T=0.07, mlp=False):
            super().__init__()
            self.K, self.m, self.T = K, m, T
            self.encoder_q = base_encoder(num_classes=dim)
            self.encoder_k = base_encoder(num_classes=dim)
            if mlp:  # hack: brute-force replacement
                dim_mlp = self.encoder_q.fc.weight.shape[1]
                self.encoder_q.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), self.encoder_q.fc)
                self.encoder_k.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), self.encoder_k.fc)
            for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
                param_k.data.copy_(param_q.data)  # initialize
                param_k.requires_grad = False  # not update by gradient
            self.register_buffer("queue", torch.randn(dim, K))
            self.queue = nn.functional.normalize(self.queue, dim=0)
            self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

        @torch.no_grad()
        def _momentum_update_key_encoder(self):
            for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
                param_k.data = param_k.data * self.m + param_q.data * (1.0 - self.m)

        @torch.no_grad()
        def _dequeue_and_enqueue(self, keys):
            batch_size = keys.shape[0]
            ptr = int(self.queue_ptr)
            assert self.K % batch_size == 0  # for simplicity
            self.queue[:, ptr:ptr + batch_size] = keys.T
            self.queue_ptr[0] = (ptr + batch_size) % self.K

        def forward(self, im_q, im_k, idx_shuffle=None):
            q = nn.functional.normalize(self.encoder_q(im_q), dim=1)  # queries: NxC
            with torch.no_grad():
                self._momentum_update_key_encoder()
                if idx_shuffle is not None:  # shuffle BN (single process)
                    im_k = im_k[idx_shuffle]
                k = nn.functional.normalize(self.encoder_k(im_k), dim=1)  # keys: NxC
                if idx_shuffle is not None:
                    k = k[torch.argsort(idx_shuffle)]
            l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
            l_neg = torch.einsum("nc,ck->nk", [q, self.queue.clone().detach()])
            logits = torch.cat([l_pos, l_neg], dim=1)
            logits /= self.T
            labels = torch.zeros(logits.shape[0], dtype=torch.long)
            self._dequeue_and_enqueue(k)
            return logits, labels

    return MoCo, cifar_resnet18


def torch_worker(a):
    """Child process: the reference MoCo from contra's initial state, timing each step."""
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    MoCo, cifar_resnet18 = torch_reference()
    work, p0 = Path(a.work), Path(a.params)
    model = MoCo(lambda num_classes: cifar_resnet18(num_classes, a.bn_splits), dim=DIM, K=a.queue, m=M, T=T, mlp=True)
    # contra's names: torchvision's for the encoder, head.N.* for the MLP, key/ for the key copy
    loaded = 0
    sd = model.state_dict()
    for k in sd:
        if k.endswith("num_batches_tracked"):
            continue
        enc, _, rest = k.partition(".")
        name = "head" + rest[2:] if rest.startswith("fc.") else rest
        f = p0 / (("key/" if enc == "encoder_k" else "") + name + ".npy") if enc.startswith("encoder") else p0 / (k + ".npy")
        src = np.load(f)
        if tuple(src.shape) != tuple(sd[k].shape) and src.size == sd[k].numel():
            src = src.reshape(sd[k].shape)
        assert tuple(src.shape) == tuple(sd[k].shape), (k, f, src.shape, sd[k].shape)
        sd[k] = torch.from_numpy(np.array(src, dtype=sd[k].numpy().dtype))
        loaded += 1
    model.load_state_dict(sd)
    model.train()
    cl = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=cl)
    optimizer = torch.optim.SGD(model.parameters(), LR, momentum=MOMENTUM, weight_decay=WD)
    if a.compile:
        # torch.compile (default mode) on the two encoders (with their heads); the queue's in-place
        # enqueue stays eager: compiling the whole MoCo forward fails in AOT autograd (the queue saved
        # for backward is modified in place by the enqueue of the same step)
        model.encoder_q = torch.compile(model.encoder_q)
        model.encoder_k = torch.compile(model.encoder_k)
    fwd = model
    criterion = torch.nn.CrossEntropyLoss()
    v1 = np.load(work / "v1.npy", mmap_mode="r")
    v2 = np.load(work / "v2.npy", mmap_mode="r")
    perm = torch.from_numpy(np.load(work / "perm.npy")) if a.bn_splits > 1 else None
    B = a.batch
    times, losses = [], []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        rows = slice((s * B) % v1.shape[0], (s * B) % v1.shape[0] + B)
        im_q = torch.from_numpy(np.ascontiguousarray(v1[rows])).contiguous(memory_format=cl)
        im_k = torch.from_numpy(np.ascontiguousarray(v2[rows])).contiguous(memory_format=cl)
        output, target = fwd(im_q, im_k, perm[s] if perm is not None else None)
        loss = criterion(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lv = loss.item()
        times.append(time.perf_counter() - t0)
        losses.append(lv)
    json.dump({"times": times, "losses": losses, "loaded": f"{loaded}/{len(sd)}", "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "channels_last": bool(a.channels_last),
               "compiled": bool(a.compile)},
              open(a.result, "w"))


# ---------------------------------------------------------------- main
def contra_compile(contra, model, a, K, outdir, env):
    bn = ["--shuffle-bn", "--bn-splits", str(a.bn_splits)] if a.bn_splits > 1 else ["--no-shuffle-bn"]
    cmd = [str(contra), "compile", str(model), "--method", "moco-v2", "--batch", str(a.batch), "--queue", str(K),
           "--head", "0,128", "--temperature", str(T), "--ema", str(M), "--optimizer", "sgd", "--lr", str(LR),
           "--momentum", str(MOMENTUM), "--weight-decay", str(WD), *bn, "-o", str(outdir)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"moco.py: contra compile failed:\n{p.stderr[-3000:]}")
    msg = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    m = re.search(r"arena ([\d.]+) MiB, persistent ([\d.]+) MiB", msg)
    return {"compile_s": time.perf_counter() - t0, "compile": msg, "command": " ".join(cmd[1:]),
            "arena_mib": float(m.group(1)) if m else None, "persistent_mib": float(m.group(2)) if m else None}


def program_tensors(tdir):
    """name -> (kind, region, bytes, offset) of every tensor in the generated program's descriptor table (model.c)."""
    pat = r'\{"([^"]+)", CT_PT_(\w+), CT_PT_\w+, \d+, \{[^}]*\}, CT_PT_REGION_(\w+), (\d+), (\d+)\}'
    return {n: (kind.lower(), region.lower(), int(nb), int(off)) for n, kind, region, off, nb in
            re.findall(pat, (tdir / "model.c").read_text())}


def contra_run(tdir, work, steps, a, env, log):
    perm = ["--perm", str(work / "perm.npy")] if a.bn_splits > 1 else []
    rc, rss, proc = run_child([str(tdir / "trainer"), "--views", f"{work / 'v1.npy'},{work / 'v2.npy'}", *perm,
                               "--steps", str(steps), "--schedule", "constant", "--threads", str(a.threads),
                               "--time-steps", "--progress", "plain", "--out", str(work / "run")], env, log)
    text = log.read_text()
    if rc != 0:
        sys.exit(f"moco.py: trainer failed (exit {rc}):\n{text[-3000:]}")
    times = [float(l.split()[2]) for l in text.splitlines() if l.startswith("time ")]
    losses = [float(l.split()[-1]) for l in text.splitlines() if l.startswith("step ")]
    assert len(times) == steps and len(losses) == steps, text[-2000:]
    return times, losses, rss, proc


def torch_run(work, p0, K, steps, warmup, cl, a, env, tag, compiled=False, fatal=True):
    res = work / f"torch-{tag}.json"
    rc, rss, proc = run_child([a.torch_python, __file__, "--torch-worker", "--work", str(work), "--params", str(p0),
                               "--result", str(res), "--threads", str(a.threads), "--batch", str(a.batch),
                               "--queue", str(K), "--bn-splits", str(a.bn_splits), "--steps", str(steps),
                               "--warmup", str(warmup), *(["--channels-last", "on"] if cl else []),
                               *(["--compile"] if compiled else [])],
                              env, work / f"torch-{tag}.log")
    if rc != 0:
        msg = f"PyTorch worker failed (exit {rc}):\n{(work / f'torch-{tag}.log').read_text()[-3000:]}"
        if not fatal:
            print(f"moco.py: {msg}", file=sys.stderr)
            return None, msg, None
        sys.exit(f"moco.py: {msg}")
    return json.loads(res.read_text()), rss, proc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None, help="images per view (default 256; --quick 32)")
    ap.add_argument("--queue", type=int, default=4096, help="K of the timed comparison")
    ap.add_argument("--queue-big", type=int, default=65536, help="K of the memory comparison (0: skip it)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps, median over them (default 5; --quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; --quick 1)")
    ap.add_argument("--mem-steps", type=int, default=None, help="steps of each peak-memory run (default 2; --quick 1)")
    ap.add_argument("--bn-splits", type=int, default=8, help="shuffle BN with S BatchNorm splits (default 8)")
    ap.add_argument("--no-shuffle-bn", action="store_true", help="plain BatchNorm, no key shuffle, on both sides")
    ap.add_argument("--channels-last", choices=("off", "on", "both"), default=None,
                    help="PyTorch memory format (both: time both, compare with the faster; default both, --quick off)")
    ap.add_argument("--quick", action="store_true", help="smoke test: batch 32, 2 timed steps after 1, contiguous "
                                                         "PyTorch only, 1-step memory runs")
    add_keep_option(ap)
    ap.add_argument("--torch-python", default=sys.executable,
                    help="the Python that runs the PyTorch side (default: this one)")
    ap.add_argument("--out", default=None, help="result JSON (default bench/results/moco.json; --quick: "
                                                "bench/results/moco-quick.json)")
    ap.add_argument("--compile", action="store_true",
                    help="also time PyTorch's step under torch.compile (default mode) in the faster memory format")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        a.channels_last = a.channels_last == "on"
        return torch_worker(a)
    a.batch = a.batch or (32 if a.quick else 256)
    a.steps = a.steps if a.steps is not None else (2 if a.quick else 5)
    a.warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    a.mem_steps = a.mem_steps if a.mem_steps is not None else (1 if a.quick else 2)
    a.channels_last = a.channels_last or ("off" if a.quick else "both")
    a.out = a.out or str(ROOT / "bench" / "results" / ("moco-quick.json" if a.quick else "moco.json"))
    if a.no_shuffle_bn:
        a.bn_splits = 1
    if a.steps < 1 or a.warmup < 0 or a.mem_steps < 1:
        sys.exit("moco.py: --steps and --mem-steps must be >= 1 and --warmup >= 0")
    if a.bn_splits < 1 or a.batch % a.bn_splits:
        sys.exit(f"moco.py: --bn-splits {a.bn_splits} must divide the batch {a.batch}")
    for K in (a.queue, a.queue_big):
        if K and K % a.batch:
            sys.exit(f"moco.py: the queue length {K} must be a multiple of the batch {a.batch} (as in the reference)")
    Tn, B = a.threads, a.batch

    import numpy as np
    import torch

    import models

    contra = build_dir() / "tools" / "contra"
    if not contra.exists():
        sys.exit(f"moco.py: {contra} missing: build contra first (ninja -C {build_dir()})")
    work = work_folder("contra-bench-moco-", a.keep)
    env = dict(os.environ, OMP_NUM_THREADS=str(Tn), OPENBLAS_NUM_THREADS=str(Tn), MKL_NUM_THREADS=str(Tn))
    bn_text = (f"shuffle BN emulated with SplitBatchNorm, {a.bn_splits} splits, in both encoders"
               if a.bn_splits > 1 else "no shuffle BN, plain BatchNorm")
    info = {
        "threads": Tn, "batch_per_view": B, "queue": a.queue, "queue_big": a.queue_big, "input": [3, 32, 32],
        "method": f"MoCo v2: head 512-512-{DIM}, T {T}, key momentum {M}, {bn_text}",
        "optimizer": f"SGD lr {LR} (constant) momentum {MOMENTUM} weight decay {WD}",
        "warmup_steps": a.warmup, "timed_steps": a.steps, "mem_steps": a.mem_steps, "quick": a.quick,
        "OMP_NUM_THREADS": str(Tn), "OPENBLAS_NUM_THREADS": str(Tn),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None),
        "cores": os.cpu_count(), "python": platform.python_version(), "torch_python": a.torch_python,
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    model = models.export("cifar_resnet18", "bn", 17, dynamic=True)
    info["model"] = str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model)

    # views and shuffle permutations: distinct for every step, the same for both sides
    total = a.warmup + a.steps
    nrows = max(total, a.mem_steps) * B
    rng = np.random.default_rng(0)
    np.save(work / "v1.npy", rng.standard_normal((nrows, 3, 32, 32)).astype(np.float32))
    np.save(work / "v2.npy", rng.standard_normal((nrows, 3, 32, 32)).astype(np.float32))
    np.save(work / "perm.npy", np.stack([rng.permutation(B) for _ in range(max(total, a.mem_steps))]).astype(np.int64))

    # contra: compile, save the initial state (PyTorch starts from it), time the steps
    print(f"contra: compile (K {a.queue}) ...", file=sys.stderr, flush=True)
    tdir = work / f"trainer-{a.queue}"
    comp = contra_compile(contra, model, a, a.queue, tdir, env)
    p0 = work / "p0"
    p = subprocess.run([str(tdir / "trainer"), "--views", f"{work / 'v1.npy'},{work / 'v2.npy'}", "--steps", "0",
                        "--schedule", "constant", "--progress", "none", "--out", str(work / "run"),
                        "--save-params", str(p0)], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"moco.py: trainer --steps 0 failed:\n{p.stderr[-3000:]}")
    print(f"contra: {total} steps ({a.warmup} warm-up) ...", file=sys.stderr, flush=True)
    c_times, c_losses, c_rss, c_proc = contra_run(tdir, work, total, a, env, work / "contra.log")
    contra_r = summarize(c_times[a.warmup:], B)
    contra_r.update(peak_rss_mib=c_rss, **c_proc, losses=c_losses, warmup_step_s=c_times[:a.warmup],
                    **comp)

    # PyTorch eager, each memory format in its own process
    torch_rs = {}
    for cl in {"off": [False], "on": [True], "both": [False, True]}[a.channels_last]:
        tag = "channels_last" if cl else "contiguous"
        print(f"PyTorch ({tag}): {total} steps ({a.warmup} warm-up) ...", file=sys.stderr, flush=True)
        tj, t_rss, t_proc = torch_run(work, p0, a.queue, a.steps, a.warmup, cl, a, env, tag)
        r = summarize(tj["times"][a.warmup:], B)
        r.update(peak_rss_mib=t_rss, **t_proc, losses=tj["losses"], warmup_step_s=tj["times"][:a.warmup],
                 torch=tj["torch"], torch_threads=tj["torch_threads"], state_tensors_loaded=tj["loaded"],
                 memory_format=tag, loss_rel_diff_per_step=[abs(x - y) / abs(y) for x, y in zip(c_losses, tj["losses"])])
        torch_rs[tag] = r
    best = min(torch_rs, key=lambda k: torch_rs[k]["median_s"])
    torch_r = torch_rs[best]
    compiled_r = None
    if a.compile:
        tag = "compiled_" + best
        print(f"PyTorch torch.compile ({best}): {total} steps ({a.warmup} warm-up, which compile) ...",
              file=sys.stderr, flush=True)
        tj, t_rss, t_proc = torch_run(work, p0, a.queue, a.steps, a.warmup, best == "channels_last", a, env, tag,
                                      compiled=True, fatal=False)
    if a.compile and tj is None:
        compiled_r = {"error": t_rss}
    elif a.compile:
        compiled_r = summarize(tj["times"][a.warmup:], B)
        compiled_r.update(peak_rss_mib=t_rss, **t_proc, losses=tj["losses"], warmup_step_s=tj["times"][:a.warmup],
                          torch=tj["torch"], memory_format=best,
                          loss_rel_diff_per_step=[abs(x - y) / abs(y) for x, y in zip(c_losses, tj["losses"])])
    ratio = contra_r["median_s"] / torch_r["median_s"]

    # peak memory at K small and K big: the same views, --mem-steps steps each
    mem = None
    if a.queue_big:
        mem = {"steps": a.mem_steps, "contra": {}, "pytorch": {"memory_format": "contiguous"}}
        for K in (a.queue, a.queue_big):
            d = tdir if K == a.queue else work / f"trainer-{K}"
            if K != a.queue:
                print(f"contra: compile (K {K}) ...", file=sys.stderr, flush=True)
                mem["contra"][f"compile_{K}"] = contra_compile(contra, model, a, K, d, env)
            print(f"memory at K {K}: contra, PyTorch ({a.mem_steps} steps each) ...", file=sys.stderr, flush=True)
            _, ml, rss, _ = contra_run(d, work, a.mem_steps, a, env, work / f"contra-mem-{K}.log")
            mem["contra"][str(K)] = {"peak_rss_mib": rss, "losses": ml}
            # PyTorch at K: the trainer's queue does not exist for K big; p0 holds K small: use a fresh queue
            pk = p0 if K == a.queue else work / f"p0-{K}"
            if K != a.queue:
                p = subprocess.run([str(d / "trainer"), "--views", f"{work / 'v1.npy'},{work / 'v2.npy'}",
                                    "--steps", "0", "--schedule", "constant", "--progress", "none",
                                    "--out", str(work / "run"), "--save-params", str(pk)],
                                   capture_output=True, text=True, env=env)
                if p.returncode != 0:
                    sys.exit(f"moco.py: trainer --steps 0 failed:\n{p.stderr[-3000:]}")
            tj, rss, _ = torch_run(work, pk, K, a.mem_steps, 0, False, a, env, f"mem-{K}")
            mem["pytorch"][str(K)] = {"peak_rss_mib": rss, "losses": tj["losses"]}
        ks, kb = str(a.queue), str(a.queue_big)
        queue_mib = DIM * (a.queue_big - a.queue) * 4 / 1048576.0
        logits_mib = B * (a.queue_big - a.queue) * 4 / 1048576.0
        cb = mem["contra"][f"compile_{kb}"]
        mem.update(
            queue_bytes_diff_mib=queue_mib, logits_bytes_diff_mib=logits_mib,
            contra_peak_rss_diff_mib=mem["contra"][kb]["peak_rss_mib"] - mem["contra"][ks]["peak_rss_mib"],
            pytorch_peak_rss_diff_mib=mem["pytorch"][kb]["peak_rss_mib"] - mem["pytorch"][ks]["peak_rss_mib"],
            contra_arena_diff_mib=cb["arena_mib"] - comp["arena_mib"],
            contra_persistent_diff_mib=cb["persistent_mib"] - comp["persistent_mib"])
        # which tensors of the compiled step grow with K (from the generated descriptor table)
        ts, tb = program_tensors(tdir), program_tensors(work / f"trainer-{a.queue_big}")
        # (a tensor written in place of another shares its region and offset: "on" names that one)
        mem["contra_tensors_growing_with_k"] = [
            {"name": n, "kind": tb[n][0], "region": tb[n][1], "mib_small": ts[n][2] / 1048576.0,
             "mib_big": tb[n][2] / 1048576.0,
             "on": next((o for o in tb if o != n and tb[o][1] == tb[n][1] and tb[o][3] == tb[n][3] and
                         tb[o][0] != "temp"), None)}
            for n in tb if n in ts and tb[n][2] != ts[n][2]]

    info["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    out = {"env": info, "unit": "median wall seconds of one MoCo step (batch copy, key momentum update, both "
                                "forwards, loss, backward, SGD, enqueue); images/s = batch per view / step time",
           "contra": contra_r, "pytorch": torch_rs, "pytorch_best": best, "pytorch_compiled": compiled_r,
           "contra_over_pytorch_time": ratio, "contra_over_pytorch_images_per_s": 1 / ratio, "memory": mem}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.out + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(a.out)

    print(f"\nOne MoCo v2 step, CIFAR ResNet-18 + MLP head, batch {B} per view (2 views), 3x32x32, K {a.queue}, "
          f"{bn_text}; {Tn} threads, {info['cpu']}, {info['cores']} cores\n(OPENBLAS_CORETYPE="
          f"{info['OPENBLAS_CORETYPE']}; load average at start {' '.join(info['loadavg_at_start'])}, at end "
          f"{' '.join(info['loadavg_at_end'])}; median of {a.steps} steps after {a.warmup} warm-up; PyTorch "
          f"{torch_r['torch']} from {a.torch_python})\n")
    print("| implementation | ms/step | images/s | min ms/step | peak RSS MiB | step time vs PyTorch | CPU/wall |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = [("contra", contra_r)] + [(f"PyTorch {r['torch']} eager, {k}", r) for k, r in torch_rs.items()]
    if compiled_r and "error" not in compiled_r:
        rows.append((f"PyTorch {compiled_r['torch']} torch.compile (encoders), {best}", compiled_r))
    for name, r in rows:
        print(f"| {name} | {r['ms_per_step']:.0f} | {r['images_per_s']:.1f} | {1e3 * r['min_s']:.0f} | "
              f"{r['peak_rss_mib']:.0f} | {r['median_s'] / torch_r['median_s']:.2f}x | {r['cpu_per_wall']:.2f} |")
    rel = torch_r["loss_rel_diff_per_step"]
    print(f"\ncontra/PyTorch ({best}): {ratio:.2f}x the time per step ({1 / ratio:.2f}x the images/s); "
          f"loss relative difference per step: max {max(rel):.1e} (step 1: {rel[0]:.1e})")
    if mem:
        ks, kb = str(a.queue), str(a.queue_big)
        cs, cb = comp, mem["contra"][f"compile_{kb}"]
        print(f"\nPeak memory of a MoCo step ({a.mem_steps} steps, peak RSS of the process), K {ks} vs K {kb}; "
              f"the queue grows by {DIM}x{a.queue_big - a.queue}x4 B = {mem['queue_bytes_diff_mib']:.1f} MiB, "
              f"one (B, K) float tensor by {mem['logits_bytes_diff_mib']:.1f} MiB\n")
        print(f"| | K {ks} | K {kb} | difference MiB |")
        print("|---|---:|---:|---:|")
        print(f"| contra peak RSS MiB | {mem['contra'][ks]['peak_rss_mib']:.1f} | {mem['contra'][kb]['peak_rss_mib']:.1f}"
              f" | {mem['contra_peak_rss_diff_mib']:.1f} |")
        print(f"| contra arena MiB (compile) | {cs['arena_mib']:.2f} | {cb['arena_mib']:.2f} | "
              f"{mem['contra_arena_diff_mib']:.2f} |")
        print(f"| contra persistent MiB (compile) | {cs['persistent_mib']:.2f} | {cb['persistent_mib']:.2f} | "
              f"{mem['contra_persistent_diff_mib']:.2f} |")
        print(f"| PyTorch {torch_r['torch']} peak RSS MiB | {mem['pytorch'][ks]['peak_rss_mib']:.1f} | "
              f"{mem['pytorch'][kb]['peak_rss_mib']:.1f} | {mem['pytorch_peak_rss_diff_mib']:.1f} |")
        print(f"| queue itself ({DIM} x K x 4 B) | {DIM * a.queue * 4 / 1048576:.2f} | "
              f"{DIM * a.queue_big * 4 / 1048576:.2f} | {mem['queue_bytes_diff_mib']:.2f} |")
        print("\ntensors of the compiled contra step that grow with K: " + ", ".join(
            f"{t['name']} ({t['kind']}, {t['region']} region, {t['mib_small']:.1f} -> {t['mib_big']:.1f} MiB"
            + (f", on the bytes of {t['on']})" if t["on"] else ")")
            for t in mem["contra_tensors_growing_with_k"]))
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
