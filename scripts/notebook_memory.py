"""Peak memory of notebooks run in fast mode: the kernel plus TFF's worker_binary, as on Binder.

    .venv/bin/python scripts/notebook_memory.py notebooks/01_data.ipynb [more notebooks...]

Each notebook is executed headless in its own kernel (COURSE_FAST=1, a temporary COURSE_OUTPUT_DIR unless
one is set), one after the other; --shared-outputs gives them one output folder, as in a session where
notebook 04 reuses notebook 03's baseline. Every 0.2 s the resident memory (RSS) of every process this
script started (the kernel and its children, TFF's worker_binary among them) is summed; the largest sum is
the notebook's peak. Summed RSS counts the shared libraries of the kernel and the worker twice, so the
proportional set size (PSS, each shared page split among its users) is summed too: it is closer to what a
container's memory limit counts. mybinder.org gives a session 1-2 GB, so docs/hosted.md says which notebooks fit.
"""
import argparse
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



def tree_memory():
    """Summed (RSS, PSS) in bytes of every process below this one (the kernel, the worker_binary, ...)."""
    rss = pss = 0
    for child in psutil.Process().children(recursive=True):
        try:
            info = child.memory_full_info()
        except psutil.Error:
            continue
        rss, pss = rss + info.rss, pss + info.pss
    return rss, pss


def run(path, kernel_name, timeout):
    nb = nbformat.read(path, as_version=4)
    peak, stop = [0, 0], threading.Event()

    def sample():
        while not stop.is_set():
            rss, pss = tree_memory()
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.monotonic()
    sampler.start()
    try:
        NotebookClient(nb, kernel_name=kernel_name, timeout=timeout,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        stop.set()
        sampler.join()
    return tuple(peak), time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=pathlib.Path)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--shared-outputs", action="store_true",
                        help="one COURSE_OUTPUT_DIR for all notebooks (default: a fresh one per notebook)")
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
    os.environ["COURSE_FAST"] = "1"
    fixed = os.environ.get("COURSE_OUTPUT_DIR")
    shared = fixed or (tempfile.mkdtemp(prefix="course-memory-") if args.shared_outputs else None)
    print(f"fast mode, kernel {kernel_name}, outputs in {shared or 'a fresh folder per notebook'}")
    for path in args.notebooks:
        os.environ["COURSE_OUTPUT_DIR"] = shared or tempfile.mkdtemp(prefix="course-memory-")
        (rss, pss), seconds = run(path.resolve(), kernel_name, args.timeout)
        print(f"{path.name}: peak {rss / 2**20:,.0f} MiB summed RSS, {pss / 2**20:,.0f} MiB summed PSS "
              f"(kernel + worker_binary), {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
