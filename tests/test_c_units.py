# test_c_units.py — runs every C unit test that meson registers (tests/meson.build)
# in $CONTRA_BUILD, so the C tests report in the same pytest summary. A test
# binary that another tests/test_*.py already runs by name is skipped here.
import json
import os
import re
import subprocess

import pytest

from conftest import ROOT, build_path


def _registered():
    info = build_path() / "meson-info" / "intro-tests.json"
    if not info.exists():
        return []
    try:
        tests = json.loads(info.read_text())
    except (OSError, ValueError):
        return []
    # binaries other pytest files wrap themselves
    wrapped = set()
    for f in (ROOT / "tests").glob("test_*.py"):
        if f.name == "test_c_units.py":
            continue
        wrapped |= set(re.findall(r"[\"'](test_[A-Za-z0-9_]+)[\"']", f.read_text(errors="replace")))
    return [t for t in tests if os.path.basename(t["cmd"][0]) not in wrapped]


_TESTS = _registered()


@pytest.mark.skipif(not (build_path() / "meson-info").exists(),
                    reason="no configured build dir (bash scripts/build)")
@pytest.mark.parametrize("t", _TESTS, ids=[t["name"] for t in _TESTS])
def test_c_unit(t):
    exe = t["cmd"][0]
    if not os.path.exists(exe):
        pytest.fail(f"{exe} is not built (ninja -C {build_path()})")
    env = dict(os.environ)
    env.update(t.get("env") or {})
    timeout = t.get("timeout") or 30
    if timeout <= 0:
        timeout = 600
    p = subprocess.run(t["cmd"], capture_output=True, text=True, env=env,
                       cwd=t.get("workdir") or None, timeout=max(timeout, 60) * 4)
    assert p.returncode == 0, (f"{' '.join(t['cmd'])} exited {p.returncode}\n"
                               f"{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
