"""workdir.py — the benchmarks' scratch folder (compiled trainers, inputs, logs: up to a GiB or
more): made under $TMPDIR and removed when the benchmark exits, on an error too, unless --keep
asks to keep it for inspection."""

import atexit
import shutil
import tempfile
from pathlib import Path


def add_keep_option(ap):
    ap.add_argument("--keep", action="store_true", help="keep the work folder (compiled programs, inputs, logs)")


def work_folder(prefix, keep):
    work = Path(tempfile.mkdtemp(prefix=prefix))

    def done():
        if keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    atexit.register(done)
    return work
