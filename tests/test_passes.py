"""Runs the C unit test of the core passes (tests/c/test_passes.c: shape
inference of every op, folding, DCE, CSE, the pass manager), built by meson
into $CONTRA_BUILD/tests (default: build/)."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _build_dir() -> Path:
    b = Path(os.environ.get("CONTRA_BUILD", "build"))
    return b if b.is_absolute() else ROOT / b


def test_passes_c_unit():
    exe = _build_dir() / "tests" / "test_passes"
    assert exe.exists(), f"{exe} not built (run ninja -C {_build_dir()})"
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    lines = r.stdout.strip().splitlines()
    last = lines[-1] if lines else ""
    assert r.returncode == 0, r.stdout + r.stderr
    assert last.endswith(" 0 failed"), r.stdout + r.stderr
    assert int(last.split()[0]) >= 100, r.stdout
