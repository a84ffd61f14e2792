"""Peak memory of notebooks run headless: the kernel (Python) and TFF's worker_binary, as on Binder.

    .venv/bin/python scripts/notebook_memory.py notebooks/01_data.ipynb [more notebooks...]
    .venv/bin/python scripts/notebook_memory.py --shared-outputs --json outputs/bench/memory-fast.json notebooks/0*.ipynb
    .venv/bin/python scripts/notebook_memory.py --full --shared-outputs notebooks/03_fedavg_baseline.ipynb

Each notebook is executed headless in its own kernel (COURSE_FAST=1 unless --full; a temporary
COURSE_OUTPUT_DIR unless one is set), one after the other; --shared-outputs gives them one output
folder, as in a session where notebook 04 reuses notebook 03's baseline. Every 0.2 s the resident
memory (RSS) and the proportional set size (PSS, each shared page split among its users) of every
process this script started is read, split into the kernel (Python) and TFF's worker_binary (any
other child counts with the kernel). Summed RSS counts the shared libraries of the kernel and the
worker twice; summed PSS is closer to what a container's memory limit counts. The peaks, in MiB,
are printed per notebook and, with --cells, per code cell; --json writes them (and each cell's
peaks) to a file. mybinder.org gives a session 1-2 GB, so the README says which notebooks fit.
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile
import threading
import time

import nbformat
import psutil
from nbclient import NotebookClient

from helpers.config import KERNEL_NAME as KERNEL

MIB = 2 ** 20
PARTS = ("kernel", "worker")


def tree_memory():
    """``{'kernel': (rss, pss), 'worker': (rss, pss)}`` in bytes, summed over every process below this one.

    Processes whose command line names ``worker_binary`` count as ``worker``; the rest (the kernel
    and anything else it started) as ``kernel``.
    """
    memory = {part: [0, 0] for part in PARTS}
    for child in psutil.Process().children(recursive=True):
        try:
            info = child.memory_full_info()
            part = "worker" if "worker_binary" in " ".join(child.cmdline()) else "kernel"
        except psutil.Error:
            continue
        memory[part][0] += info.rss
        memory[part][1] += info.pss
    return {part: tuple(values) for part, values in memory.items()}


class Peaks:
    """Largest values seen, in bytes: summed RSS and PSS, and each part's own RSS and PSS."""

    KEYS = ("rss", "pss", "kernel_rss", "kernel_pss", "worker_rss", "worker_pss")

    def __init__(self):
        self.values = dict.fromkeys(self.KEYS, 0)

    def add(self, memory):
        sample = dict(rss=sum(m[0] for m in memory.values()), pss=sum(m[1] for m in memory.values()),
                      kernel_rss=memory["kernel"][0], kernel_pss=memory["kernel"][1],
                      worker_rss=memory["worker"][0], worker_pss=memory["worker"][1])
        for key, value in sample.items():
            self.values[key] = max(self.values[key], value)

    def mib(self):
        """The peaks in MiB, rounded to 1 MiB."""
        return {key: round(value / MIB) for key, value in self.values.items()}


def run(path, kernel_name, timeout):
    """Execute the notebook at ``path``; returns (notebook :class:`Peaks`, [per code cell Peaks], seconds)."""
    nb = nbformat.read(path, as_version=4)
    total, cells, stop = Peaks(), [], threading.Event()

    def on_cell_start(cell, cell_index, **_):
        cells.append((cell_index, Peaks()))

    def sample():
        while not stop.is_set():
            memory = tree_memory()
            total.add(memory)
            if cells:
                cells[-1][1].add(memory)
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.monotonic()
    sampler.start()
    try:
        NotebookClient(nb, kernel_name=kernel_name, timeout=timeout, on_cell_start=on_cell_start,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        stop.set()
        sampler.join()
    return total, cells, time.monotonic() - started


def describe(name, peaks, seconds=None):
    """One line: summed RSS and PSS peaks, and each part's PSS peak, in MiB."""
    m = peaks.mib()
    line = (f"{name}: peak {m['rss']:,} MiB summed RSS, {m['pss']:,} MiB summed PSS "
            f"(kernel {m['kernel_pss']:,} MiB PSS / {m['kernel_rss']:,} RSS, "
            f"worker_binary {m['worker_pss']:,} MiB PSS / {m['worker_rss']:,} RSS)")
    return line + (f", {seconds:.0f} s" if seconds is not None else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=pathlib.Path)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--shared-outputs", action="store_true",
                        help="one COURSE_OUTPUT_DIR for all notebooks (default: a fresh one per notebook)")
    parser.add_argument("--full", action="store_true", help="full size (COURSE_FAST=0) instead of fast mode")
    parser.add_argument("--cells", action="store_true", help="also print each code cell's peaks")
    parser.add_argument("--json", type=pathlib.Path, help="write the peaks (MiB) to this file, per notebook")
    args = parser.parse_args()
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        sys.exit(f"error: no such notebook: {', '.join(missing)}")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
        kernel_name = KERNEL
    except NoSuchKernel:
        sys.exit(f"error: the Jupyter kernel '{KERNEL}' is not installed in this environment: run `make env` "
                 "(or binder/postBuild), then this script with that environment's python.")
    os.environ["COURSE_FAST"] = "0" if args.full else "1"
    os.environ["COURSE_HEADLESS"] = "1"
    fixed = os.environ.get("COURSE_OUTPUT_DIR")
    shared = fixed or (tempfile.mkdtemp(prefix="course-memory-") if args.shared_outputs else None)
    size = "full size" if args.full else "fast mode"
    print(f"{size}, kernel {kernel_name}, outputs in {shared or 'a fresh folder per notebook'}")
    results = {}
    for path in args.notebooks:
        os.environ["COURSE_OUTPUT_DIR"] = shared or tempfile.mkdtemp(prefix="course-memory-")
        peaks, cells, seconds = run(path.resolve(), kernel_name, args.timeout)
        print(describe(path.name, peaks, seconds), flush=True)
        if args.cells:
            for index, cell_peaks in cells:
                print("  " + describe(f"cell {index}", cell_peaks))
        results[path.name] = dict(peaks.mib(), seconds=round(seconds, 1),
                                  cells={str(index): p.mib() for index, p in cells})
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(dict(size=size, notebooks=results), indent=1))


if __name__ == "__main__":
    main()
