#!/usr/bin/env python3
"""bench/report.py — the CPU performance targets (the CPU performance issue) against the
latest measurements in bench/results/*.json, as one table of ratios: prints it,
writes bench/results/report.json, and with --readme regenerates the block of
README.md between the markers <!-- bench/report.py --> and <!-- end bench/report.py -->.

    .venv/bin/python bench/report.py [--readme]

It measures nothing itself: run bench/moco.py, bench/methods.py [--compile],
bench/conv.py and bench/infer.py first (each writes its JSON, with the machine
and load averages of its run). A target whose measurement is missing reads
"not measured"."""
import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RES = ROOT / "bench" / "results"
BEGIN, END = "<!-- bench/report.py -->", "<!-- end bench/report.py -->"


def load(name):
    p = RES / name
    return json.loads(p.read_text()) if p.exists() else None


def row(target, measured, bar, met, source):
    return {"target": target, "measured": measured, "bar": bar, "met": met, "source": source}


def rows():
    out = []
    moco, methods, conv, infer = load("moco.json"), load("methods.json"), load("conv.json"), load("infer.json")
    # training steps: speed-up = PyTorch time / contra time
    if moco:
        c = moco["contra"]
        best = moco["pytorch"][moco["pytorch_best"]]
        s = best["median_s"] / c["median_s"]
        out.append(row(f"MoCo v2 step vs PyTorch {best.get('torch', '')} eager ({moco['pytorch_best']})",
                       f"{s:.2f}x", ">= 1.5x", s >= 1.5, "moco.json"))
        pc = moco.get("pytorch_compiled")
        if pc and "error" in pc:
            out.append(row("MoCo v2 step vs torch.compile", "torch.compile failed", ">= 1.0x", None, "moco.json"))
        elif pc:
            s = pc["median_s"] / c["median_s"]
            out.append(row(f"MoCo v2 step vs torch.compile (default mode, on the encoders, {pc['memory_format']})", f"{s:.2f}x",
                           ">= 1.0x", s >= 1.0, "moco.json"))
        else:
            out.append(row("MoCo v2 step vs torch.compile", "not measured", ">= 1.0x", None,
                           "bench/moco.py --compile"))
        out.append(row("MoCo v2 peak RSS vs PyTorch", f"{c['peak_rss_mib']:.0f} / {best['peak_rss_mib']:.0f} MiB",
                       "<=", c["peak_rss_mib"] <= best["peak_rss_mib"], "moco.json"))
    for method in ("simclr", "byol"):
        r = (methods or {}).get("results", {}).get(method)
        if not r:
            out.append(row(f"{method} step", "not measured", ">= 1.5x", None, "bench/methods.py"))
            continue
        c = r["contra"]
        for tag, bar, want in (("eager", ">= 1.5x", 1.5), ("compiled", ">= 1.0x", 1.0)):
            t = r.get(f"pytorch_{tag}")
            name = f"{'SimCLR' if method == 'simclr' else 'BYOL'} step vs PyTorch " + \
                ("eager" if tag == "eager" else "torch.compile (default mode)")
            if t is None:
                out.append(row(name, "not measured", bar, None, "bench/methods.py --compile"))
            elif "error" in t:
                out.append(row(name, "torch.compile failed", bar, None, "methods.json"))
            else:
                s = t["median_s"] / c["median_s"]
                out.append(row(name + f" ({t.get('torch', '')})", f"{s:.2f}x", bar, s >= want, "methods.json"))
        t = r.get("pytorch_eager")
        if t and "error" not in t:
            out.append(row(f"{'SimCLR' if method == 'simclr' else 'BYOL'} peak RSS vs PyTorch",
                           f"{c['peak_rss_mib']:.0f} / {t['peak_rss_mib']:.0f} MiB", "<=",
                           c["peak_rss_mib"] <= t["peak_rss_mib"], "methods.json"))
    # convolutions: GFLOP/s against 70% of the best sgemm of the same run
    if conv:
        best = max(v["gflops"] for v in conv["sgemm_2048"].values())
        bar = 0.7 * best
        for L in conv["layers"]:
            for d in ("fwd", "dx", "dw"):
                v = L.get(d, {})
                if "gflops" not in v:
                    continue
                name = f"conv {L['layer']} ({L['C']}->{L['M']}) {d}"
                algo = v.get("algo", "direct")
                shown = f"{v['gflops']:.0f} GFLOP/s" + ("" if algo == "direct" else f" ({algo}, effective)")
                out.append(row(name, shown, f">= {bar:.0f} (70% of sgemm {best:.0f})", v["gflops"] >= bar,
                               "conv.json"))
    # inference: images/s against onnxruntime
    if infer:
        for r in infer["results"]:
            if "error" in r.get("contra", {}) or "error" in r.get("onnxruntime", {}):
                continue
            s = r["contra"]["images_per_s"] / r["onnxruntime"]["images_per_s"]
            out.append(row(f"inference {r['model']} batch {r['batch']} vs onnxruntime", f"{s:.2f}x", ">= 1.0x",
                           s >= 1.0, "infer.json"))
    return out


def table(rs):
    lines = ["| target | measured | bar | met |", "|---|---:|---:|:---:|"]
    for r in rs:
        met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['target']} | {r['measured']} | {r['bar']} | {met} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readme", action="store_true", help="regenerate the README block")
    a = ap.parse_args()
    rs = rows()
    if not rs:
        sys.exit("bench/report.py: no results in bench/results (run the benchmarks first)")
    met = sum(1 for r in rs if r["met"])
    known = sum(1 for r in rs if r["met"] is not None)
    t = table(rs)
    print(t)
    print(f"\n{met} of {known} measured targets met; {len(rs) - known} not measured")
    envs = {n: (load(n) or {}).get("env", {}) for n in ("moco.json", "methods.json", "conv.json", "infer.json")}
    (RES / "report.json").write_text(json.dumps({"rows": rs, "met": met, "measured": known, "sources": {
        n: {"date": e.get("date"), "cpu": e.get("cpu"), "threads": e.get("threads")} for n, e in envs.items()}},
        indent=2) + "\n")
    print("wrote bench/results/report.json")
    if a.readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        block = (f"{BEGIN}\nEvery target of the CPU performance issue against the latest run of each benchmark "
                 f"(`.venv/bin/python bench/report.py --readme` regenerates this table from "
                 f"`bench/results/*.json`; the sections below give each run's command, machine and date). "
                 f"{met} of {known} measured targets are met.\n\n{t}\n{END}")
        if BEGIN in text:
            text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block, text, flags=re.S)
        else:
            text = text.replace("## Performance\n", "## Performance\n\n" + block + "\n", 1)
        readme.write_text(text)
        print("regenerated the table in README.md")


if __name__ == "__main__":
    main()
