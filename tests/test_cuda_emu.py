# test_cuda_emu.py — the CUDA emulation (runtime/cuda_emu): the tests/cuda kernels run on
# the CPU under several thread schedules and shared-memory modes, each deliberately broken
# kernel is caught (guard mode, AddressSanitizer, schedule check, shuffle checks), and the
# same sources build with nvcc for sm_80 and sm_90 without spills (the binary is not run).
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, build_path

EMU = ROOT / "runtime" / "cuda_emu"
SOURCES = [ROOT / "tests" / "c" / "test_cuda_emu.c", EMU / "cuda_emu.c", EMU / "cublas_emu.c"]


def _openblas_flags():
    try:
        cflags = subprocess.run(["pkg-config", "--cflags", "openblas"], capture_output=True, text=True,
                                check=True).stdout.split()
        libs = subprocess.run(["pkg-config", "--libs", "openblas"], capture_output=True, text=True,
                              check=True).stdout.split()
        return cflags, libs
    except (OSError, subprocess.CalledProcessError):
        return [], ["-lopenblas"]


def _gcc_build(out, extra):
    cflags, libs = _openblas_flags()
    cmd = (["gcc", "-std=c17", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-g", f"-I{EMU}"] + extra + cflags +
           [str(s) for s in SOURCES] + ["-o", str(out)] + libs + ["-lm", "-lpthread"])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return out


def _artifacts_dir():
    d = build_path() / "cuda_ptxas" if build_path().exists() else ROOT / "tests" / "_artifacts" / "cuda_ptxas"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def emu_exe(tmp_path_factory):
    exe = build_path() / "tests" / "test_cuda_emu"
    if exe.exists():
        return exe
    return _gcc_build(tmp_path_factory.mktemp("cuda_emu") / "test_cuda_emu", ["-O2"])


def _summary(stdout):
    m = re.search(r"^(\d+) passed, (\d+) failed$", stdout, re.M)
    assert m, f"no summary line in:\n{stdout}"
    return int(m.group(1)), int(m.group(2))


def test_cuda_emu_kernels_and_broken_kernels(emu_exe):
    r = subprocess.run([str(emu_exe)], capture_output=True, text=True, timeout=180)
    passed, failed = _summary(r.stdout)
    assert failed == 0 and r.returncode == 0, r.stdout + r.stderr[-4000:]
    # 6 kernel tests x 6 modes, 11 API checks, 9 broken-kernel checks
    assert passed >= 56, r.stdout
    # the broken kernels were caught by the emulator's own reports, naming kernel and thread
    for needle in [
        "kernel 'broken_oob_scale' block (3,0,0) thread (232,0,0): out-of-bounds access at byte offset 4000",
        "kernel 'broken_missing_sync_sum': results depend on the thread schedule",
        "kernel 'broken_shared_race' block (0,0,0) thread (1,0,0): shared-memory race: byte",
        "kernel 'broken_shfl_width'", "lane argument 16 is outside [0, width 16)",
        "kernel 'broken_shfl_mask'", "does not include the calling lane 16",
        "kernel 'broken_shfl_lane'", "reads lane 16, which is not in the mask 0x0000ffff",
        "kernel 'broken_shfl_divergent'", "waits for lane 16 (mask 0xffffffff), which has exited: deadlock",
    ]:
        assert needle in r.stderr, f"missing report {needle!r} in:\n{r.stderr[-4000:]}"
    # good kernels produce no reports at all
    assert "emulator reports" not in r.stderr, r.stderr[-4000:]


@pytest.fixture(scope="module")
def asan_exe(tmp_path_factory):
    return _gcc_build(tmp_path_factory.mktemp("cuda_emu_asan") / "test_cuda_emu_asan",
                      ["-O1", "-fsanitize=address", "-fno-omit-frame-pointer"])


def test_cuda_emu_asan_catches_out_of_bounds(asan_exe):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    r = subprocess.run([str(asan_exe), "--oob-no-guard"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "heap-buffer-overflow" in r.stderr, r.stderr[-4000:]
    assert "broken_oob_scale" in r.stderr, r.stderr[-4000:]


def test_cuda_emu_asan_good_kernels_clean(asan_exe):
    """The fibers are annotated for ASan: the good kernels run clean under it."""
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    r = subprocess.run([str(asan_exe), "--quick"], capture_output=True, text=True, timeout=180, env=env)
    passed, failed = _summary(r.stdout)
    assert r.returncode == 0 and failed == 0 and passed == 6, r.stdout + r.stderr[-4000:]
    assert "AddressSanitizer" not in r.stderr


def _nvcc():
    exe = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    return exe if os.path.exists(exe) else None


def _ptxas_spills(report, arch):
    """{kernel (mangled): (spill stores, spill loads)} from an -Xptxas -v report."""
    out, cur = {}, None
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for 'sm_(\d+)'", line)
        if m:
            cur = m.group(1) if m.group(2) == arch else None
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and cur:
            out[cur] = (int(m.group(1)), int(m.group(2)))
            cur = None
    return out


@pytest.mark.parametrize("arch", ["80", "90"])
def test_cuda_kernels_build_with_nvcc(arch, tmp_path):
    nvcc = _nvcc()
    if not nvcc:
        pytest.skip("nvcc not found (install the CUDA toolkit: /usr/local/cuda/bin/nvcc)")
    obj, exe = tmp_path / f"kernels_sm{arch}.o", tmp_path / f"test_kernels_sm{arch}"
    cmd = [nvcc, f"-arch=sm_{arch}", "-O3", "-Xptxas", "-v", f"-I{EMU}", "-c",
           str(ROOT / "tests" / "cuda" / "main_nvcc.cu"), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    report = r.stdout + r.stderr
    (_artifacts_dir() / f"ptxas_sm_{arch}.txt").write_text(" ".join(cmd) + "\n" + report)
    assert r.returncode == 0, report
    assert "warning" not in report.lower(), report
    spills = _ptxas_spills(report, arch)
    for kernel in ["tk_add", "tk_reduce_sum", "tk_reduce_tree", "tk_matmul", "tk_softmax", "tk_axpby"]:
        found = [k for k in spills if kernel in k]
        assert found, f"no ptxas entry for {kernel} in:\n{report}"
    for kernel in ["tk_add", "tk_reduce_sum", "tk_reduce_tree"]:
        for k in (k for k in spills if kernel in k):
            assert spills[k] == (0, 0), f"{k} spills on sm_{arch}: {spills[k]}"
    assert report.count("0 bytes spill stores, 0 bytes spill loads") >= 3
    link = [nvcc, f"-arch=sm_{arch}", str(obj), "-o", str(exe), "-lcudart", "-lcublas"]
    r = subprocess.run(link, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert exe.exists() and os.access(exe, os.X_OK)


def test_nvcc_main_builds_as_c_on_the_emulator(tmp_path):
    """The exact file nvcc compiles (tests/cuda/main_nvcc.cu) also compiles as C17 with gcc
    against the emulator, and its kernels pass there."""
    cflags, libs = _openblas_flags()
    exe = tmp_path / "main_emu"
    cmd = (["gcc", "-std=c17", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{EMU}"] + cflags +
           ["-x", "c", str(ROOT / "tests" / "cuda" / "main_nvcc.cu"), "-x", "none",
            str(EMU / "cuda_emu.c"), str(EMU / "cublas_emu.c"), "-o", str(exe)] + libs + ["-lm", "-lpthread"])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and _summary(r.stdout) == (6, 0), r.stdout + r.stderr
