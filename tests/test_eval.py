"""Runs the C unit tests of the reference interpreter (tests/c/test_eval.c)
and of the memory planner (tests/c/test_memory_plan.c), built by meson into
$CONTRA_BUILD/tests (default: build/)."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build_dir() -> Path:
    b = Path(os.environ.get("CONTRA_BUILD", "build"))
    return b if b.is_absolute() else ROOT / b


@pytest.mark.parametrize("name", ["test_eval", "test_memory_plan"])
def test_c_unit(name):
    exe = _build_dir() / "tests" / name
    if not exe.exists():
        pytest.fail(f"{exe} not built (run ninja -C {_build_dir()})")
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, r.stdout + r.stderr
    assert last.endswith(" 0 failed"), r.stdout
    passed = int(last.split()[0])
    assert passed > 0, r.stdout
