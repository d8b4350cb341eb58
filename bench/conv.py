#!/usr/bin/env python3
"""bench/conv.py — GFLOP/s of contra's convolution kernels (the GEMM engine of
generated programs, codegen/c_gemm_lib.c) on the convolution layers of the
CIFAR ResNet-18 at batch 256, forward, input gradient and weight gradient:
the kernel a generated program runs (Winograd F(2x2, 3x3) for the 3x3
stride-1 layers, the direct implicit GEMM elsewhere), counted as the direct
convolution's multiply-adds ("effective" GFLOP/s where Winograd runs fewer),
beside the direct kernel and Winograd F(4x4, 3x3) (CONTRA_WINOGRAD=4), all
against the best large sgemm measured on the machine in the same run:
OpenBLAS on a 2048^3 product with its own kernel choice (OPENBLAS_CORETYPE
unset) and with the AVX2 kernels (OPENBLAS_CORETYPE=Haswell), same threads.
The bar of the CPU performance issue is 70% of the better of the two.
Prints a table and writes bench/results/conv.json.

    python3 bench/conv.py [--threads 2] [--batch 256] [--reps 5]

The layers' share of a MoCo v2 step comes from `trainer --profile` (see
bench/moco.py); this measures the kernels alone."""
import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from workdir import add_keep_option, work_folder  # noqa: E402  (bench/: the scratch folder)

ROOT = Path(__file__).resolve().parent.parent

# (name, C, H=W, M, k, stride, pad) of the CIFAR ResNet-18 (3x3 stem, no max-pool)
LAYERS = [("stem", 3, 32, 64, 3, 1, 1), ("layer1 3x3", 64, 32, 64, 3, 1, 1),
          ("layer2.0 3x3 s2", 64, 32, 128, 3, 2, 1), ("layer2 3x3", 128, 16, 128, 3, 1, 1),
          ("layer2 down 1x1 s2", 64, 32, 128, 1, 2, 0), ("layer3 3x3", 256, 8, 256, 3, 1, 1),
          ("layer4 3x3", 512, 4, 512, 3, 1, 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=20, help="timed runs per kernel (the best counts), after one warm-up")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "conv.json"))
    add_keep_option(ap)
    a = ap.parse_args()
    work = work_folder("contra-bench-conv-", a.keep)
    exe = work / "conv_runner"
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-std=c17", "-O2", "-march=native", "-fopenmp", "-D_GNU_SOURCE",
                    "-I", str(ROOT / "codegen"), str(ROOT / "bench" / "conv_runner.c"), "-o", str(exe),
                    "-lopenblas", "-lm"], check=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    env.pop("OPENBLAS_CORETYPE", None)

    def run(*args, extra=None):
        p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=dict(env, **(extra or {})))
        if p.returncode != 0:
            sys.exit(f"conv.py: {exe.name} {' '.join(map(str, args))} failed:\n{p.stderr}")
        return json.loads(p.stdout)

    info = {"threads": a.threads, "batch": a.batch,
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None),
            "cores": os.cpu_count(), "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    sgemm = {"default": run("sgemm", 2048, a.reps), "Haswell": run("sgemm", 2048, a.reps,
                                                                   extra={"OPENBLAS_CORETYPE": "Haswell"})}
    bar = max(s["gflops"] for s in sgemm.values())
    rows = []
    for name, C, H, M, k, s, p in LAYERS:
        r = {"layer": name, "C": C, "H": H, "M": M, "k": k, "stride": s, "pad": p}
        # what codegen/c_backend.c's winograd_tile picks by default (these layers all pass its tile count test)
        wino = k == 3 and s == 1 and C >= 16 and M >= 16
        for what in ("fwd", "dx", "dw"):
            if what == "dx" and name == "stem":  # the images need no gradient: never computed in training
                r[what] = {"error": "not computed: the stem's input is the images"}
                continue
            direct = run("conv", what, a.batch, C, H, H, M, k, s, p, a.reps, "direct")
            if wino:
                r[what] = dict(run("conv", what, a.batch, C, H, H, M, k, s, p, a.reps, "wino2"),
                               algo="winograd F(2x2,3x3)", direct=direct,
                               winograd4=run("conv", what, a.batch, C, H, H, M, k, s, p, a.reps, "wino4"))
            else:
                r[what] = dict(direct, algo="direct")
        rows.append(r)
        print(f"{name:20s} " + "  ".join(f"{w} {r[w].get('gflops', float('nan')):6.1f}" for w in ("fwd", "dx", "dw")),
              file=sys.stderr, flush=True)
    info["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    out = {"env": info, "sgemm_2048": sgemm, "bar_gflops": bar, "layers": rows,
           "unit": "GFLOP/s (2 per multiply-add of the direct convolution; effective where Winograd runs), "
                   "best of --reps runs"}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.out + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(a.out)

    print(f"\nConvolution kernels, GFLOP/s, CIFAR ResNet-18 layers at batch {a.batch}, {a.threads} threads, "
          f"{info['cpu']}; OpenBLAS sgemm 2048^3: {sgemm['default']['gflops']:.1f} (default kernels), "
          f"{sgemm['Haswell']['gflops']:.1f} (OPENBLAS_CORETYPE=Haswell); bar = 70% of {bar:.1f} = {0.7 * bar:.1f}\n")
    print("| layer | C→M, k, stride | kernel | forward | input grad | weight grad | worst / best sgemm | "
          "direct kernel fwd / dx / dw | F(4x4,3x3) fwd / dx / dw |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")

    def g(v):
        return f"{v['gflops']:.1f}" if v and "gflops" in v else "—"
    for r in rows:
        vals = [r[w].get("gflops") for w in ("fwd", "dx", "dw")]
        shown = [f"{v:.1f}" if v is not None else "—" for v in vals]
        worst = min(v for v in vals if v is not None)
        algo = r["fwd"].get("algo", "direct")
        direct = " / ".join(g(r[w].get("direct")) for w in ("fwd", "dx", "dw")) if algo != "direct" else "(same)"
        f4 = " / ".join(g(r[w].get("winograd4")) for w in ("fwd", "dx", "dw")) if algo != "direct" else "—"
        print(f"| {r['layer']} | {r['C']}→{r['M']}, {r['k']}x{r['k']}, s{r['stride']} | {algo} | {shown[0]} | "
              f"{shown[1]} | {shown[2]} | {worst / bar:.2f} | {direct} | {f4} |")
    print("\n—: the stem's input gradient is never computed; strided input gradients run im2col's transpose "
          "(a GEMM into columns, then col2im) with OpenBLAS, not on the engine")
    print(f"\nwritten {a.out}")


if __name__ == "__main__":
    main()
