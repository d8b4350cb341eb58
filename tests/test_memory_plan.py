# test_memory_plan.py — the memory plan of torchvision models as shown by
# `contra dump --after memory_plan --stats --format json`: every intermediate
# placed, 64-byte aligned, no two values live at the same time sharing bytes
# unless one is a legal in-place alias of the other, and for resnet50 the
# planned arena is at most 40% of the naive sum of all intermediates.
import json

import numpy as np
import pytest

import models

DTYPE_BYTES = {"float": 4, "float16": 2, "bfloat16": 2, "double": 8, "int64": 8, "int32": 4, "int8": 1,
               "uint8": 1, "bool": 1}
VIEW_OPS = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout"}
INPLACE_OPS = VIEW_OPS | {"Relu", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh", "Sqrt", "Reciprocal",
                          "Neg", "Abs", "Exp", "Log", "Erf", "Floor", "Ceil", "Not", "Clip", "BatchNormalization",
                          "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum"}


def nbytes(v):
    return int(np.prod(v["shape"], dtype=np.int64)) * DTYPE_BYTES[v["dtype"]]


def check_plan(d):
    """Checks the plan in a dump; returns (arena, naive sum of intermediates)."""
    values = {v["name"]: v for v in d["values"]}
    temps = [v for v in d["values"] if v["kind"] == "temp"]
    n_nodes = len(d["nodes"])
    arena = d["arena_bytes"]
    assert arena % 64 == 0
    for v in d["values"]:
        if v["kind"] != "temp":
            assert "offset" not in v, f"{v['name']} ({v['kind']}) must stay out of the arena"
    for v in temps:
        assert "offset" in v, f"{v['name']} was not planned"
        assert v["offset"] % 64 == 0, f"{v['name']}: offset {v['offset']} not 64-byte aligned"
        assert 0 <= v["offset"] and v["offset"] + nbytes(v) <= arena, f"{v['name']} outside the arena"
        assert 0 <= v["first_use"] <= v["last_use"] <= n_nodes
    outputs = {o["name"] for o in d["outputs"]}
    for v in temps:
        if v["name"] in outputs:
            assert v["last_use"] == n_nodes, f"graph output {v['name']} must live to the end"

    # Legal aliases: an output of an in-place-capable node at its input's offset, same size.
    alias = {}
    for n in d["nodes"]:
        if n["op"] not in INPLACE_OPS or not n["outputs"] or not n["outputs"][0]:
            continue
        o = values[n["outputs"][0]]
        for i in n["inputs"]:
            if i and values[i]["kind"] == "temp" and values[i]["offset"] == o["offset"] and nbytes(values[i]) == nbytes(o):
                alias[o["name"]] = i
    # Storage groups: chains of aliases.
    def root(name):
        while name in alias:
            name = alias[name]
        return name

    by_node_reads = {}
    for n in d["nodes"]:
        for i in n["inputs"]:
            if i:
                by_node_reads.setdefault(i, []).append(n["index"])
    order = sorted(temps, key=lambda v: v["offset"])
    for a_i, a in enumerate(order):
        a_end = a["offset"] + nbytes(a)
        for b in order[a_i + 1:]:
            if b["offset"] >= a_end:
                break
            if nbytes(a) == 0 or nbytes(b) == 0:
                continue
            if a["first_use"] > b["last_use"] or b["first_use"] > a["last_use"]:
                continue
            # overlapping in time and bytes: must be one storage group, and a write
            # in place may only happen when the other name is dead afterwards
            assert root(a["name"]) == root(b["name"]), \
                f"{a['name']} [{a['first_use']},{a['last_use']}] and {b['name']} " \
                f"[{b['first_use']},{b['last_use']}] share bytes while both live"
            assert a["offset"] == b["offset"] and nbytes(a) == nbytes(b)
    # An in-place write (not a view) at node k: no other member of the group is read after k.
    groups = {}
    for v in temps:
        groups.setdefault(root(v["name"]), []).append(v)
    prod = {o: n for n in d["nodes"] for o in n["outputs"] if o}
    for o, i in alias.items():
        n = prod[o]
        if n["op"] in VIEW_OPS:
            continue
        k = n["index"]
        for m in groups[root(o)]:
            if m["name"] == o or m["first_use"] > k:
                continue
            later = [r for r in by_node_reads.get(m["name"], []) if r > k]
            assert not later and m["last_use"] <= k, \
                f"{n['name']} writes {o} in place while {m['name']} is still read at {later or m['last_use']}"
    naive = sum(nbytes(v) for v in temps)
    return arena, naive, len(alias)


@pytest.mark.parametrize("name,mode", [("resnet50", "bn"), ("resnet18", "eval"), ("mobilenet_v2", "bn")])
def test_memory_plan(name, mode, run_contra):
    path = models.export(name, mode, 17)
    p = run_contra("dump", path, "--after", "memory_plan", "--stats", "--format", "json")
    d = json.loads(p.stdout)
    arena, naive, n_alias = check_plan(d)
    print(f"{name} ({mode}): planned arena {arena} bytes, naive sum of intermediates {naive} bytes "
          f"({100.0 * arena / naive:.1f}%), {n_alias} in-place aliases")
    assert arena <= naive
    assert n_alias > 0
    if name == "resnet50":
        assert arena <= 0.40 * naive, f"arena {arena} is more than 40% of the naive sum {naive}"
    # The text dump reports the same peak beside the naive sum.
    t = run_contra("dump", path, "--after", "memory_plan", "--stats").stdout
    assert f"{arena:,}" in t and "naive sum of intermediates" in t


def test_memory_plan_batch32(run_contra):
    path = models.export("resnet18", "bn", 17, dynamic=True)
    d = json.loads(run_contra("dump", path, "--batch", "32", "--after", "memory_plan", "--format", "json").stdout)
    arena, naive, _ = check_plan(d)
    assert arena <= 0.40 * naive
    # without a fixed batch, planning is refused and names a value
    p = run_contra("dump", path, "--after", "memory_plan", "--format", "json", check=False)
    assert p.returncode != 0 and "memory_plan" in p.stderr and "batch" in p.stderr
