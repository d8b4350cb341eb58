#!/usr/bin/env python3
# bench/data.py — decode + augment throughput for MoCo v2 views (two 224x224
# views per image) from a folder of JPEGs: contra's loader (one worker
# thread, through tests' data_tool) beside torchvision with PIL (one process,
# one torch thread), in one run. Prints a table, writes bench/results/data.json.
#
#   CONTRA_BUILD=build .venv/bin/python bench/data.py [--images 200] [--repeat 2]
import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent


def natural_image(h, w, seed):
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, size=(h // 20, w // 20, 3)).astype(np.uint8)
    img = np.array(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(3):
        a, b, t = rng.normal(size=3)
        mask = (a * (yy - h / 2) + b * (xx - w / 2) + t * 20) > 0
        img[mask] = img[mask] * 0.6 + rng.uniform(0, 255, size=3) * 0.4
    img += rng.normal(0, 6, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_folder(d, n):
    for k in range(n):
        w, h = (500, 375) if k % 2 == 0 else (375, 500)
        natural_image(h, w, k).save(d / f"img{k:04d}.jpg", quality=90)


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_contra(tool, folder, n, repeat, scaled):
    args = [str(tool), "load", "--folder", str(folder), "--mode", "flat", "--preset", "mocov2",
            "--views", "2", "--size", "224", "--batch", "20", "--workers", "1",
            "--epochs", str(repeat), "--seed", "1"]
    if not scaled:
        args.append("--no-scaled")
    cpu0, t0 = child_cpu(), time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True, check=True)
    wall, cpu = time.perf_counter() - t0, child_cpu() - cpu0
    fields = p.stdout.split()
    images = int(fields[fields.index("images") + 1])
    loop_s = float(fields[fields.index("seconds") + 1])
    return {"images": images, "wall_s": loop_s, "cpu_s": cpu, "images_per_s": images / loop_s,
            "images_per_cpu_s": images / cpu, "process_wall_s": wall}


def bench_torchvision(folder, n, repeat):
    import torch
    import torchvision.transforms as T
    torch.set_num_threads(1)
    aug = T.Compose([
        T.RandomResizedCrop(224, scale=(0.2, 1.0)),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    paths = sorted(folder.glob("*.jpg"))
    torch.manual_seed(1)
    images = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        batch = []
        for p in paths:
            with open(p, "rb") as f:
                img = Image.open(f).convert("RGB")
            batch.append((aug(img), aug(img)))
            images += 1
            if len(batch) == 20:
                torch.stack([a for a, _ in batch]), torch.stack([b for _, b in batch])
                batch = []
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"images": images, "wall_s": wall, "cpu_s": cpu, "images_per_s": images / wall,
            "images_per_cpu_s": images / cpu}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=2, help="epochs over the folder")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "data.json"))
    a = ap.parse_args()
    build = pathlib.Path(os.environ.get("CONTRA_BUILD", "build"))
    tool = (build if build.is_absolute() else ROOT / build) / "tests" / "data_tool"
    if not tool.exists():
        sys.exit(f"{tool} is missing: build it (ninja -C BUILD tests/data_tool) or set CONTRA_BUILD")
    import torchvision
    with tempfile.TemporaryDirectory() as td:
        folder = pathlib.Path(td)
        make_folder(folder, a.images)
        rows = {
            "contra (1 worker, scaled JPEG decode)": bench_contra(tool, folder, a.images, a.repeat, True),
            "contra (1 worker, full decode)": bench_contra(tool, folder, a.images, a.repeat, False),
            "torchvision + PIL (1 process)": bench_torchvision(folder, a.images, a.repeat),
        }
    ref = rows["torchvision + PIL (1 process)"]["images_per_cpu_s"]
    print(f"MoCo v2 views (2 x 224x224 per image), {a.images} JPEGs of 500x375, {a.repeat} epochs")
    print(f"{'pipeline':40s} {'images/s':>9s} {'images/cpu-s':>13s} {'vs torchvision':>15s}")
    for name, r in rows.items():
        r["speedup_vs_torchvision_per_cpu"] = r["images_per_cpu_s"] / ref
        print(f"{name:40s} {r['images_per_s']:9.1f} {r['images_per_cpu_s']:13.1f} "
              f"{r['speedup_vs_torchvision_per_cpu']:14.2f}x")
    result = {"bench": "data", "what": "decode + MoCo v2 augment, 2 views 224x224 per image",
              "images": a.images, "image_size": [500, 375], "epochs": a.repeat,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "torchvision": torchvision.__version__, "pillow": Image.__version__},
              "rows": rows}
    pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
