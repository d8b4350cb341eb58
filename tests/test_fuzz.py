# test_fuzz.py — a bounded libFuzzer smoke run of the ONNX loader (ASan +
# UBSan) seeded with skeletons of exported models and hand-made ones; fails
# if the fuzzer reports any crash, leak, timeout or sanitizer error.
# Long runs: tests/fuzz/build.sh, then build-fuzz/fuzz_onnx_load CORPUS -max_total_time=600.
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ_SECONDS = int(os.environ.get("CONTRA_FUZZ_SECONDS", "20"))
# The fuzzer's -rss_limit_mb reads its peak RSS (getrusage), and Linux carries the peak of the
# process that exec'd it into that number: started straight from a pytest process that had grown
# past 2 GB (torch oracles in the same worker), the fuzzer reported an out-of-memory on its empty
# input. A shell that forks the fuzzer gives it a peak of its own.
FRESH = ["sh", "-c", '"$@"; exit $?', "sh"]


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory):
    if not shutil.which("clang-14") or not shutil.which("protoc-c"):
        pytest.skip("clang-14 or protoc-c is missing: no fuzz smoke run")
    out = tmp_path_factory.mktemp("fuzz-build")
    p = subprocess.run(["sh", os.path.join(ROOT, "tests", "fuzz", "build.sh"), str(out)],
                       capture_output=True, text=True, timeout=600)
    if p.returncode == 3:
        pytest.skip(p.stderr.strip())
    assert p.returncode == 0, f"tests/fuzz/build.sh failed:\n{p.stderr[-3000:]}"
    return out / "fuzz_onnx_load"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    pytest.importorskip("onnx")
    sys.path.insert(0, os.path.join(ROOT, "tests", "fuzz"))
    import seeds
    exported = []
    try:
        import models
        exported = [models.export("cifar_resnet18", "bn", 13), models.export("cifar_resnet18", "eval", 17)]
    except Exception as e:  # torch missing: hand-made seeds only
        print(f"no exported seeds: {e}")
    d = tmp_path_factory.mktemp("fuzz-corpus")
    files = seeds.write(d, exported)
    assert len(files) >= 10
    return d


@pytest.mark.slow
def test_fuzz_smoke(fuzzer, corpus, tmp_path):
    # Every seed loads or fails cleanly on its own first.
    p = subprocess.run([*FRESH, str(fuzzer), "-runs=0", str(corpus)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    p = subprocess.run([*FRESH, str(fuzzer), str(corpus), f"-max_total_time={FUZZ_SECONDS}", "-rss_limit_mb=2048",
                        "-max_len=131072", "-timeout=20", "-print_final_stats=1", "-seed=1",
                        f"-dict={os.path.join(ROOT, 'tests', 'fuzz', 'onnx.dict')}",
                        f"-artifact_prefix={tmp_path}/"],
                       capture_output=True, text=True, timeout=FUZZ_SECONDS + 300)
    log = p.stderr
    crashes = [f for f in os.listdir(tmp_path) if re.match(r"(crash|leak|timeout|oom|slow-unit)-", f)]
    assert p.returncode == 0 and not crashes and "ERROR: libFuzzer" not in log and "SUMMARY:" not in log, \
        f"the fuzzer found a problem (artifacts: {crashes}):\n{log[-6000:]}"
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    assert m and int(m.group(1)) > 1000, log[-2000:]
