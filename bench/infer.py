#!/usr/bin/env python3
"""bench/infer.py — inference throughput (images/s) of torchvision resnet18 and
resnet50 at batch 1 and 32 for contra (generated C, `contra compile --infer`,
timed by bench/infer_runner.c through runtime/runtime.h), onnxruntime and
PyTorch, with the same thread count, measured side by side in one run.
Prints a table and writes bench/results/infer.json.

    .venv/bin/python bench/infer.py [--threads 2] [--models resnet18,resnet50]
                                    [--batches 1,32] [--rounds 3] [--min-seconds 2] [--min-iters 2] [--warmup 1]

Each engine is timed in --rounds rounds taken in turn (contra, onnxruntime, PyTorch, contra, ...), so
that a slow spell of the machine falls on all of them alike; a result is the median of its rounds'
medians (each round's own median, min and iterations are recorded).

The build dir is $CONTRA_BUILD (default build/). Every contra result is also
checked against onnxruntime on the same input (max abs diff, recorded)."""
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


def build_dir():
    b = Path(os.environ.get("CONTRA_BUILD", "build"))
    return b if b.is_absolute() else ROOT / b


def build_runner(work):
    """Compile infer_runner.c against the build's runtime and ir libraries."""
    b = build_dir()
    exe = work / "infer_runner"
    libs = [b / "runtime" / "libct_runtime.a", b / "ir" / "libct_ir.a"]
    for lib in libs:
        if not lib.exists():
            sys.exit(f"infer.py: {lib} missing: build contra first (ninja -C {b})")
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-std=c17", "-O2", "-D_GNU_SOURCE", str(ROOT / "bench" / "infer_runner.c"), "-I", str(ROOT / "runtime"),
           "-I", str(ROOT / "ir"), "-o", str(exe)] + [str(x) for x in libs] + ["-ldl", "-lm"]
    subprocess.run(cmd, check=True)
    return exe


def timed_loop(fn, min_seconds, min_iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    t_start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - t_start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"iters": len(times), "median_s": times[len(times) // 2], "mean_s": sum(times) / len(times),
            "min_s": times[0]}


def bench_contra(contra, runner, model, batch, threads, x_path, work, args):
    out = work / f"{model.stem}-b{batch}"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    p = subprocess.run([str(contra), "compile", str(model), "--infer", "--batch", str(batch), "-o", str(out), "-q"],
                       capture_output=True, text=True, env=env)
    compile_s = time.perf_counter() - t0
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout).strip()[-2000:]}
    y_path = work / f"contra-{model.stem}-b{batch}.npy"

    def one_round():
        p = subprocess.run([str(runner), str(out), "--threads", str(threads), "--iters", str(args.min_iters),
                            "--warmup", str(args.warmup), "--min-seconds", str(args.min_seconds), "--input",
                            str(x_path), "--output", str(y_path)], capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise RuntimeError((p.stderr or p.stdout).strip()[-2000:])
        return json.loads(p.stdout.strip().splitlines()[-1])

    return {"compile_s": compile_s, "output_path": str(y_path), "round": one_round}


def rounds_summary(rounds):
    """One engine's rounds: the median of their medians, the best min, every round kept."""
    meds = sorted(r["median_s"] for r in rounds)
    return {"median_s": meds[len(meds) // 2], "min_s": min(r["min_s"] for r in rounds),
            "iters": sum(r["iters"] for r in rounds), "rounds": rounds}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per engine, taken in turn")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="time each round at least this long")
    ap.add_argument("--min-iters", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "infer.json"))
    add_keep_option(ap)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    T = args.threads
    os.environ["OMP_NUM_THREADS"] = str(T)

    import numpy as np
    import onnxruntime as ort
    import torch
    import torchvision

    import models as test_models

    torch.set_num_threads(T)
    contra = build_dir() / "tools" / "contra"
    if not contra.exists():
        sys.exit(f"infer.py: {contra} missing: build contra first")
    work = work_folder("contra-bench-", args.keep)
    runner = build_runner(work)

    env_info = {
        "threads": T,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OMP_NUM_THREADS": str(T),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    results = []
    for name in args.models.split(","):
        model = test_models.export(name, "eval", 17, dynamic=True)
        tm = getattr(torchvision.models, name)().eval()
        for batch in [int(b) for b in args.batches.split(",")]:
            rng = np.random.default_rng(0)
            x = rng.uniform(-1, 1, size=(batch, 3, 224, 224)).astype(np.float32)
            x_path = work / f"x-{batch}.npy"
            np.save(x_path, x)
            row = {"model": name, "batch": batch}

            c = bench_contra(contra, runner, model, batch, T, x_path, work, args)
            so = ort.SessionOptions()
            so.intra_op_num_threads = T
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
            feed = {sess.get_inputs()[0].name: x}
            y_ort = sess.run(None, feed)[0]
            xt = torch.from_numpy(x)
            c_rounds, o_rounds, t_rounds = [], [], []
            for _ in range(args.rounds):
                if "error" not in c:
                    try:
                        c_rounds.append(c["round"]())
                    except RuntimeError as e:
                        c = {"error": str(e)}
                o_rounds.append(timed_loop(lambda: sess.run(None, feed), args.min_seconds, args.min_iters,
                                           args.warmup))
                with torch.inference_mode():
                    t_rounds.append(timed_loop(lambda: tm(xt), args.min_seconds, args.min_iters, args.warmup))
            if "error" not in c:
                c = dict(rounds_summary(c_rounds), compile_s=c["compile_s"], output_path=c["output_path"])
            o, t = rounds_summary(o_rounds), rounds_summary(t_rounds)

            if "error" not in c:
                y_c = np.load(c.pop("output_path"))
                c["max_abs_diff_vs_ort"] = float(np.max(np.abs(y_c - y_ort)))
                c["max_abs_ort"] = float(np.max(np.abs(y_ort)))
                c["images_per_s"] = batch / c["median_s"]
            o["images_per_s"] = batch / o["median_s"]
            t["images_per_s"] = batch / t["median_s"]
            row.update(contra=c, onnxruntime=o, pytorch=t)
            results.append(row)
            cs = f"{c['images_per_s']:8.1f}" if "error" not in c else "   error"
            print(f"{name:9s} b{batch:<3d} contra {cs}  ort {o['images_per_s']:8.1f}  torch {t['images_per_s']:8.1f}",
                  file=sys.stderr, flush=True)
            if "error" in c:
                print(c["error"], file=sys.stderr)

    env_info["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    out = {"env": env_info, "unit": "images/s (batch / median seconds per forward pass)", "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.out)

    print(f"\nInference throughput, images/s, {T} threads, {env_info['cpu']} "
          f"(OPENBLAS_CORETYPE={env_info['OPENBLAS_CORETYPE']}; load average at start "
          f"{' '.join(env_info['loadavg_at_start'])}, at end {' '.join(env_info['loadavg_at_end'])})\n")
    print("| model | batch | contra | onnxruntime | PyTorch | contra/ORT | contra/PyTorch | contra vs ORT max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c, o, t = r["contra"], r["onnxruntime"], r["pytorch"]
        if "error" in c:
            print(f"| {r['model']} | {r['batch']} | error | {o['images_per_s']:.1f} | {t['images_per_s']:.1f} | - | - | - |")
            continue
        print(f"| {r['model']} | {r['batch']} | {c['images_per_s']:.1f} | {o['images_per_s']:.1f} | "
              f"{t['images_per_s']:.1f} | {c['images_per_s'] / o['images_per_s']:.2f} | "
              f"{c['images_per_s'] / t['images_per_s']:.2f} | {c['max_abs_diff_vs_ort']:.2e} |")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
