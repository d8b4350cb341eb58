# test_checkpoint.py — runtime/train/checkpoint through tests/c/ckpt_tool:
# safetensors layout readable by plain Python/NumPy (and the safetensors
# package when installed), validation errors that say what is wrong, a full
# disk (RLIMIT_FSIZE and a tiny tmpfs) that leaves the old checkpoint intact,
# and SIGKILL at random moments never leaving a checkpoint that loads wrongly.
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import time

import numpy as np
import pytest

from conftest import build_path

FP = "fp-resnet18_small-moco-v2-0123abcd"


@pytest.fixture(scope="module")
def tool():
    exe = build_path() / "tests" / "ckpt_tool"
    if not exe.exists():
        pytest.skip(f"{exe} is not built")
    return str(exe)


def run(tool, *args, check=None):
    p = subprocess.run([tool] + [str(a) for a in args], capture_output=True, text=True, timeout=60)
    if check is not None:
        assert p.returncode == check, f"{args}: rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def expected(ver):
    """The tensors ckpt_tool writes for version `ver`, as NumPy arrays."""
    cols = 512 + (ver % 7) * 16
    w = ((ver * 7919 + np.arange(256 * cols, dtype=np.int64)) % 100003).astype(np.float32).reshape(256, cols)
    q = (np.float32(ver) + np.float32(0.5) * np.arange(128 * 64, dtype=np.float32)).reshape(128, 64)
    nr = ver % 13 + 1
    rng = ((ver * 31 + np.arange(nr)) % 256).astype(np.uint8)
    return {"encoder_q.conv1.weight": w, "step": np.array(ver, dtype=np.int64), "queue": q, "rng_state": rng}


def read_plain(path):
    """A safetensors file read with json + numpy only."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__")
    body = data[8 + n:]
    dt = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "?"}
    out = {k: np.frombuffer(body[v["data_offsets"][0]:v["data_offsets"][1]], dtype=dt[v["dtype"]])
           .reshape(v["shape"]) for k, v in header.items()}
    return meta, out, n


def rewrite_header(path, mutate):
    """Re-encode the header after mutate(header_dict), keeping the data."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    mutate(header)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - (8 + len(hb)) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + data[8 + n:])


def test_round_trip_and_plain_numpy(tool, tmp_path):
    path = tmp_path / "ckpt.safetensors"
    run(tool, "write", path, 9, check=0)
    assert run(tool, "verify", path, check=0).stdout.strip() == "ok 9"
    meta, tensors, hlen = read_plain(path)
    assert (8 + hlen) % 8 == 0
    assert meta["format"] == "contra-checkpoint" and meta["format_version"] == "1"
    assert meta["fingerprint"] == FP and meta["step"] == "9"
    assert meta["note"] == 'quote " backslash \\ newline \n tab \t done'
    body = open(path, "rb").read()[8 + hlen:]
    import zlib
    assert meta["checksum"] == "crc32:%08x" % zlib.crc32(body)
    want = expected(9)
    assert set(tensors) == set(want)
    for k, v in want.items():
        assert tensors[k].dtype == v.dtype and tensors[k].shape == v.shape, k
        np.testing.assert_array_equal(tensors[k], v, err_msg=k)
    # a file PyTorch can read too
    import torch
    t = torch.from_numpy(tensors["encoder_q.conv1.weight"].copy())
    assert t.shape == (256, 512 + (9 % 7) * 16)


def test_safetensors_package_reads_it(tool, tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "ckpt.safetensors"
    run(tool, "write", path, 4, check=0)
    loaded = st.load_file(str(path))
    want = expected(4)
    assert set(loaded) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(loaded[k], v, err_msg=k)
        assert loaded[k].dtype == v.dtype


def test_verify_option_errors(tool, tmp_path):
    path = tmp_path / "ckpt.safetensors"
    run(tool, "write", path, 3, check=0)
    p = run(tool, "verify", path, "--fingerprint", "fp-resnet50-simclr", check=1)
    assert "different model or method" in p.stderr and "resnet18_small" in p.stderr and "moco_v2" in p.stderr
    assert str(path) in p.stderr
    p = run(tool, "verify", path, "--drop", "queue", check=1)
    assert "holds tensor 'queue' that this program does not have" in p.stderr
    p = run(tool, "verify", path, "--extra", check=1)
    assert "lacks tensor 'encoder_k.fc.bias'" in p.stderr
    p = run(tool, "verify", path, "--wrong-shape", check=1)
    assert "F32[256,560] in the checkpoint but F32[256,561]" in p.stderr


@pytest.mark.parametrize("case,message", [
    ("flip_data", "checksum mismatch"),
    ("truncate", "truncated checkpoint"),
    ("truncate_header", "truncated checkpoint"),
    ("tiny", "truncated?"),
    ("huge_header_len", "out of bounds"),
    ("bad_json", "corrupt checkpoint header"),
    ("not_json", "does not start with '{'"),
    ("version", "format version 2 is not supported (this build reads version 1)"),
    ("no_format", "not a contra checkpoint"),
    ("overlap", "overlaps another tensor"),
    ("gap", "gap of unused bytes"),
    ("offsets_beyond", "truncated checkpoint: tensor"),
    ("dtype", "unsupported dtype \"Q7\""),
    ("size_mismatch", "data_offsets span"),
    ("trailing", "bytes after the last tensor"),
    ("missing", "cannot open checkpoint: No such file"),
])
def test_bad_files_are_refused(tool, tmp_path, case, message):
    path = tmp_path / "ckpt.safetensors"
    run(tool, "write", path, 2, check=0)
    data = bytearray(open(path, "rb").read())
    (n,) = struct.unpack("<Q", data[:8])
    names = lambda h: [k for k in h if k != "__metadata__"]  # noqa: E731
    if case == "flip_data":
        data[8 + n + 1000] ^= 0x01
        open(path, "wb").write(data)
    elif case == "truncate":
        open(path, "wb").write(data[:-100])
    elif case == "truncate_header":
        open(path, "wb").write(data[:8 + n // 2])
    elif case == "tiny":
        open(path, "wb").write(data[:5])
    elif case == "huge_header_len":
        open(path, "wb").write(struct.pack("<Q", 1 << 40) + data[8:])
    elif case == "bad_json":
        i = data.index(b'"data_offsets":', 8)
        data[i + len(b'"data_offsets"')] = ord(";")
        open(path, "wb").write(data)
    elif case == "not_json":
        data[8] = ord("x")
        open(path, "wb").write(data)
    elif case == "version":
        rewrite_header(path, lambda h: h["__metadata__"].update(format_version="2"))
    elif case == "no_format":
        rewrite_header(path, lambda h: h["__metadata__"].pop("format"))
    elif case == "overlap":
        def f(h):
            a, b = names(h)[0], names(h)[2]
            h[b]["data_offsets"] = [h[a]["data_offsets"][0] + 4,
                                    h[a]["data_offsets"][0] + 4 + h[b]["data_offsets"][1] - h[b]["data_offsets"][0]]
        rewrite_header(path, f)
    elif case == "gap":
        def f(h):
            last = max(names(h), key=lambda k: h[k]["data_offsets"][0])
            b, e = h[last]["data_offsets"]
            h[last]["data_offsets"] = [b + 1, e + 1]
        rewrite_header(path, f)
        open(path, "ab").write(b"\0")
    elif case == "offsets_beyond":
        def f(h):
            last = max(names(h), key=lambda k: h[k]["data_offsets"][0])
            b, e = h[last]["data_offsets"]
            h[last]["shape"] = [e - b + 64]
            h[last]["data_offsets"] = [b, e + 64]
        rewrite_header(path, f)
    elif case == "dtype":
        rewrite_header(path, lambda h: h["queue"].update(dtype="Q7"))
    elif case == "size_mismatch":
        rewrite_header(path, lambda h: h["queue"].update(shape=[128, 65]))
    elif case == "trailing":
        open(path, "ab").write(b"junk")
    elif case == "missing":
        os.unlink(path)
    p = run(tool, "verify", path)
    assert p.returncode == 1, (case, p.stdout, p.stderr)
    assert message in p.stderr, (case, p.stderr)
    assert str(path) in p.stderr


def test_full_disk_rlimit_keeps_old_checkpoint(tool, tmp_path):
    path = tmp_path / "ckpt.safetensors"
    run(tool, "write", path, 1, check=0)
    before = open(path, "rb").read()
    p = run(tool, "fsize", path, 2, 200000, check=1)
    assert str(path) in p.stderr and "File too large" in p.stderr and "previous checkpoint" in p.stderr
    assert open(path, "rb").read() == before
    assert run(tool, "verify", path, check=0).stdout.strip() == "ok 1"
    assert sorted(os.listdir(tmp_path)) == ["ckpt.safetensors"], "the temporary file was left behind"


def test_full_disk_tmpfs_keeps_old_checkpoint(tool, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # a 1 MiB filesystem: one checkpoint (~560 KB) fits, a second beside it does not
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        path = mnt / "ckpt.safetensors"
        run(tool, "write", path, 0, check=0)
        before = open(path, "rb").read()
        p = run(tool, "write", path, 6, check=1)
        assert str(path) in p.stderr and "No space left on device" in p.stderr, p.stderr
        assert open(path, "rb").read() == before
        assert run(tool, "verify", path, check=0).stdout.strip() == "ok 0"
        assert sorted(os.listdir(mnt)) == ["ckpt.safetensors"]
    finally:
        subprocess.run(["umount", str(mnt)])


def test_sigkill_never_leaves_a_bad_checkpoint(tool, tmp_path):
    path = tmp_path / "ckpt.safetensors"
    run(tool, "write", path, 0, check=0)
    rnd = random.Random(1234)
    last = 0
    versions = {0}
    temps_seen = 0
    trials = 80
    # calibrate: how long one checkpoint write takes here (sanitizer builds are slower)
    cal = subprocess.Popen([tool, "loop", str(tmp_path / "cal.safetensors"), "0"], stdout=subprocess.PIPE)
    cal.stdout.readline()
    t = time.monotonic()
    n = 0
    while time.monotonic() - t < 0.3:
        cal.stdout.readline()
        n += 1
    cal.kill()
    cal.wait()
    cal.stdout.close()
    for f in os.listdir(tmp_path):
        if f.startswith("cal."):
            os.unlink(tmp_path / f)
    t_write = 0.3 / max(n, 1)
    t0 = time.monotonic()
    for trial in range(trials):
        proc = subprocess.Popen([tool, "loop", str(path), str(last + 1)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        first = []
        if rnd.random() < 0.2:
            time.sleep(rnd.uniform(0.0, 0.01))  # at any moment from the start
        else:
            first = [proc.stdout.readline().decode()]  # once it is writing: within the next few writes
            time.sleep(rnd.uniform(0.0, 4 * t_write))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out = "".join(first).split() + proc.stdout.read().decode().split()
        proc.stdout.close()
        proc.stderr.close()
        p = run(tool, "verify", path)
        assert p.returncode == 0, f"trial {trial}: the checkpoint does not load: {p.stderr}"
        v = int(p.stdout.split()[1])
        # the file is the last version the writer reported done, or the one after (renamed, not yet reported)
        done = [int(x) for x in out]
        assert v >= last, f"trial {trial}: went back from version {last} to {v}"
        if done:
            assert v in (done[-1], done[-1] + 1), f"trial {trial}: version {v}, writer reported {done[-3:]}"
        last = v
        versions.add(v)
        for name in os.listdir(tmp_path):
            if name == "ckpt.safetensors":
                continue
            assert name.startswith("ckpt.safetensors.tmp."), name
            temps_seen += 1
            # a temp file is never mistaken for a checkpoint: torn ones fail the checksum or bounds
            q = run(tool, "verify", tmp_path / name)
            assert q.returncode in (0, 1), f"a torn temporary file loaded: {q.stderr}"
    elapsed = time.monotonic() - t0
    assert len(versions) > trials // 4, f"only {len(versions)} versions written: the kills came too early"
    assert temps_seen > 0, "no kill ever landed inside a write: the test did not exercise torn writes"
    # stale temporary files from killed writers are removed
    run(tool, "clean", path, check=0)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.safetensors"]
    print(f"{trials} kills in {elapsed:.1f}s (one write: {1e3 * t_write:.1f} ms), {len(versions)} versions, {temps_seen} torn temp files seen")
