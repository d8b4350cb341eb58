# conftest.py — shared pytest fixtures: the repository root, the build dir
# (env CONTRA_BUILD, default "build"), the contra binary and a runner for it.
# Marker "slow": long tests, run by default, deselect with -m "not slow".
# Marker "long": tests of several minutes each, skipped unless CONTRA_LONG_TESTS=1.
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long test (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "long: minutes per test; skipped unless CONTRA_LONG_TESTS=1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CONTRA_LONG_TESTS", "") not in ("", "0"):
        return
    skip = pytest.mark.skip(reason="a long test: set CONTRA_LONG_TESTS=1 to run it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


def build_path():
    b = pathlib.Path(os.environ.get("CONTRA_BUILD", "build"))
    return b if b.is_absolute() else ROOT / b


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


@pytest.fixture(scope="session")
def build_dir():
    return build_path()


@pytest.fixture(scope="session")
def contra_bin(build_dir):
    exe = build_dir / "tools" / "contra"
    if not exe.exists():
        pytest.skip(f"{exe} is missing: build it first (bash scripts/build, "
                    f"or set CONTRA_BUILD to your build dir)")
    return exe


@pytest.fixture
def run_contra(contra_bin):
    """run_contra(*args, check=True, timeout=600, input=None, cwd=None, env=None)
    -> subprocess.CompletedProcess with text stdout/stderr. With check=True
    a non-zero exit fails the test, showing the command and its stderr."""
    def run(*args, check=True, timeout=600, input=None, cwd=None, env=None):
        cmd = [str(contra_bin)] + [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           input=input, cwd=cwd, env=env)
        if check and p.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {p.returncode}\n"
                        f"--- stderr ---\n{p.stderr[-4000:]}\n"
                        f"--- stdout ---\n{p.stdout[-2000:]}")
        return p
    return run


@pytest.fixture(scope="session")
def data_tool():
    """The data pipeline's test tool (tests/c/data_tool.c)."""
    exe = build_path() / "tests" / "data_tool"
    if not exe.exists():
        pytest.skip(f"{exe} is missing: build it first (ninja -C BUILD tests/data_tool)")
    return str(exe)


def run_tool(tool, *args, check=True, timeout=300):
    """Run a test tool; with check=True a non-zero exit fails the test."""
    p = subprocess.run([tool] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        pytest.fail(f"{pathlib.Path(tool).name} {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p
