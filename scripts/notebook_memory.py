"""Peak memory of notebooks run headless: the kernel (Python) and TFF's worker_binary, as on Binder.

    .venv/bin/python scripts/notebook_memory.py notebooks/01_data.ipynb [more notebooks...]
    .venv/bin/python scripts/notebook_memory.py --shared-outputs --json outputs/bench/memory-fast.json notebooks/0*.ipynb
    .venv/bin/python scripts/notebook_memory.py --full --shared-outputs notebooks/03_fedavg_baseline.ipynb
    .venv/bin/python scripts/notebook_memory.py --growth --bench      # growth per round and per sweep row
    .venv/bin/python scripts/notebook_memory.py --readme              # docs/hosted.md's Binder table from memory.json
    make memory                                                        # all of it, into outputs/bench/memory.*

Each notebook is executed headless in its own kernel (COURSE_FAST=1 unless --full; a temporary
COURSE_OUTPUT_DIR unless one is set), one after the other; --shared-outputs gives them one output
folder, as in a session where notebook 04 reuses notebook 03's baseline. Every 0.2 s the resident
memory (RSS) and the proportional set size (PSS, each shared page split among its users) of every
process this script started is read, split into the kernel (Python) and TFF's worker_binary (any
other child counts with the kernel). Summed RSS counts the shared libraries of the kernel and the
worker twice; summed PSS is closer to what a container's memory limit counts. The peaks, in MiB,
are printed per notebook and, with --cells, per code cell; --json writes them (and each cell's
peaks) to a file. mybinder.org gives a session 1-2 GB, so docs/hosted.md says which notebooks fit.

--growth measures, in this process rather than in a kernel, what each round and each sweep row adds:
one FedAvg process trained for --rounds rounds (the peaks of each round), and the first --rows rows of
notebook 06's sweep at fast size, one seed (the peaks of each row), in this process; --clients a round (10,
as at full size) on the fast-mode data. --no-release leaves out
helpers.workers.runtime.release_finished_runs, to show what it saves.

--bench records the results in outputs/bench/memory.json (sections "fast", "full", "growth", each
replaced by a new measurement of the same kind, notebook by notebook) and rewrites
outputs/bench/memory.md from it. docs/memory.md explains the figures.
"""
import argparse
import json
import os
import platform
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
        if cell.cell_type == "code":
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


def _slope(values):
    """Least-squares slope of ``values`` against their index (units per step); 0.0 for fewer than 2."""
    import numpy as np
    return float(np.polyfit(np.arange(len(values)), values, 1)[0]) if len(values) > 1 else 0.0


def growth(rounds, rows, clients=10, release=True):
    """Peaks (MiB) of each round of one process (``clients`` a round) and of each of the first ``rows`` sweep rows.

    Returns ``{'rounds': [peaks per round], 'rows': [{'row', peaks} per row], 'per_round': {key: MiB per
    round}, 'per_row': {key: MiB per row}}``; the slopes are fitted over the rounds after the first
    five (the worker fills its caches in the first rounds) and over all rows.
    """
    os.environ["COURSE_FAST"] = "1"
    os.environ["COURSE_OUTPUT_DIR"] = tempfile.mkdtemp(prefix="course-memory-")  # train, never load saved runs
    from helpers import setup
    setup.quiet_logs()
    from helpers import compression, data, frontier, model, runs, training
    from helpers.workers import memory, runtime
    runtime.start()
    if not release:
        runtime.release_finished_runs = lambda: 0
    train, test = data.load_emnist(only_digits=True)
    evaluate = training.keras_evaluator(model.create_original_fedavg_cnn_model,
                                        data.preprocess_test(test.create_tf_dataset_from_all_clients()))
    model_fn = model.build_model_fn()
    process = training.build_fed_avg(model_fn, compression.identity(), runs.TUTORIAL.replace(client_lr=0.1))
    state, per_round = process.initialize(), []
    for round_num in range(1, rounds + 1):
        picked = training.sample_clients(train.client_ids, clients, runs_rng(round_num))
        with memory.PeakSampler() as peaks:
            state = process.next(state, data.make_federated_data(train, picked)).state
        per_round.append({key: round(value, 1) for key, value in peaks.mib().items()})
        print(f"round {round_num}: {_mib_line(peaks.mib())}", flush=True)
    del process, state
    settings = frontier.sweep_settings(clients=len(train.client_ids))
    per_row = []
    for broadcast, aggregation in frontier.sweep_rows()[:rows]:
        with memory.PeakSampler() as peaks:
            frontier.run_sweep(model_fn, settings, train, evaluate, rows=[(broadcast, aggregation)], run_seeds=(0,))
        name = frontier.row_name(broadcast, aggregation)
        per_row.append(dict(row=name, **{key: round(value, 1) for key, value in peaks.mib().items()}))
        print(f"row {name}: {_mib_line(peaks.mib())}", flush=True)
    keys = memory.KEYS
    return dict(release=release, clients=clients, rounds=per_round, rows=per_row,
                per_round={k: round(_slope([r[k] for r in per_round[5:]]), 2) for k in keys},
                per_row={k: round(_slope([r[k] for r in per_row]), 1) for k in keys})


def runs_rng(round_num):
    """The numpy Generator of round ``round_num``'s clients (the course's seeded sampling)."""
    from helpers import config
    from helpers.runs import seeds
    return seeds.sampling_rng(config.SEED, round_num)


def _mib_line(mib):
    return ", ".join(f"{key} {value:,.0f}" for key, value in mib.items()) + " MiB"


BENCH_KEYS = ("pss", "rss", "kernel_pss", "worker_pss")


def markdown(record):
    """``outputs/bench/memory.md``: the notebooks' peaks at both sizes, and the growth, from ``record``."""
    names = sorted(set(record.get("fast", {}).get("notebooks", {})) | set(record.get("full", {}).get("notebooks", {})))
    lines = ["# Peak memory of the notebooks", "",
             "Summed over the kernel and TFF's `worker_binary` (`scripts/notebook_memory.py`, sampled every "
             "0.2 s); MiB. PSS splits shared pages among the processes (close to what a container's limit "
             "counts); RSS counts them in every process. `docs/memory.md` explains the figures.", "",
             "| notebook | size | peak PSS | peak RSS | kernel PSS | worker PSS | fits 1 GB / 2 GB (PSS) | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for name in names:
        for size in ("fast", "full"):
            found = record.get(size, {}).get("notebooks", {}).get(name)
            if found is None:
                lines.append(f"| {name} | {size} | not measured | | | | | |")
                continue
            verdict = " / ".join(fits(found["pss"], limit) for limit in (1e9, 2e9))
            lines.append(f"| {name} | {size} | {found['pss']:,} | {found['rss']:,} | {found['kernel_pss']:,} | "
                         f"{found['worker_pss']:,} | {verdict} | {found['seconds']:.0f} |")
    for size in ("fast", "full"):
        if size in record:
            lines.append(f"\n{size}: measured {record[size]['when']} on {record[size]['machine']}.")
    for label, key in (("with the release step", "growth"), ("without the release step", "growth_no_release")):
        found = record.get(key)
        if not found:
            continue
        lines += ["", f"## Growth {label} (this process, fast-mode data; MiB)", "",
                  f"Per round (slope over rounds 6-{len(found['rounds'])} of one process, {found.get('clients', 10)} clients a round): "
                  + ", ".join(f"{k} {v:+.2f}" for k, v in found["per_round"].items()) + ".",
                  "Peak of rounds 1-5 against the last 5 rounds: " + ", ".join(
                      f"{k} {max(r[k] for r in found['rounds'][:5]):,.0f} / {max(r[k] for r in found['rounds'][-5:]):,.0f}"
                      for k in found["per_round"]) + ".",
                  f"Per sweep row (slope over {len(found['rows'])} rows, one seed): "
                  + ", ".join(f"{k} {v:+.1f}" for k, v in found["per_row"].items()) + ".", "",
                  "| row | Python PSS | Python RSS | worker PSS | worker RSS |", "|---|---|---|---|---|"]
        lines += [f"| {r['row']} | {r['python_pss']:,.0f} | {r['python_rss']:,.0f} | {r['worker_pss']:,.0f} | "
                  f"{r['worker_rss']:,.0f} |" for r in found["rows"]]
    return "\n".join(lines) + "\n"


def _gb(mib):
    return f"{mib * MIB / 1e9:.2f} GB"


def readme_table(record):
    """The Binder section's table (docs/hosted.md): each notebook's peaks in GB (10^9 bytes), fast and full size."""
    names = sorted(record.get("fast", {}).get("notebooks", {}))
    lines = ["| notebook | " + " | ".join(name[:2] for name in names) + " |", "|---" * (len(names) + 1) + "|"]
    for size, label in (("fast", "fast mode"), ("full", "full size")):
        found = record.get(size, {}).get("notebooks", {})
        lines.append(f"| {label}: peak PSS (RSS) | " + " | ".join(
            f"{_gb(found[n]['pss'])} ({_gb(found[n]['rss'])})" if n in found else "not measured"
            for n in names) + " |")
        if size == "fast":
            lines.append("| fast mode fits in 1 GB / 2 GB | " + " | ".join(
                " / ".join(fits(found[n]["pss"], limit) for limit in (1e9, 2e9)) for n in names) + " |")
    return lines


MARGIN = 0.95  # a peak within 5% of a limit is "at the limit": another run's peak moves by that much


def fits(mib, limit):
    """'yes', 'at the limit' (within 5% below it) or 'no': does a peak of ``mib`` MiB fit ``limit`` bytes?"""
    return "yes" if mib * MIB <= MARGIN * limit else "at the limit" if mib * MIB <= limit else "no"


def fast_verdicts(record):
    """``{'01': (fits 1 GB, fits 2 GB), ...}``: :func:`fits` for each notebook's fast-mode peak PSS."""
    found = record.get("fast", {}).get("notebooks", {})
    return {name[:2]: (fits(peak["pss"], 1e9), fits(peak["pss"], 2e9)) for name, peak in sorted(found.items())}


def binder_line(verdicts):
    """One sentence for the README from :func:`fast_verdicts`: which notebooks fit mybinder's 1 GB and 2 GB."""
    groups = {("fit", "the 1 GB it guarantees"): [n for n, v in verdicts.items() if v[0] == "yes"],
              ("fit", "its 2 GB limit"): [n for n, v in verdicts.items() if v[0] != "yes" and v[1] == "yes"],
              ("sit", "at the 2 GB limit (within 5%)"): [n for n, v in verdicts.items() if v[1] == "at the limit"],
              ("need", "more than 2 GB"): [n for n, v in verdicts.items() if v[1] == "no"]}
    return ("Binder (fast mode, peak PSS of `make memory`): "
            + "; ".join(f"{', '.join(names)} {verb if len(names) > 1 else verb + 's'} {what}"
                        for (verb, what), names in groups.items() if names) + "."
            + " <!-- make memory's figures; scripts/notebook_memory.py --readme rewrites this line -->")


def update_readme_line(record, path):
    """Replace the README's line that ends with ``--readme rewrites this line -->`` by :func:`binder_line`."""
    lines = pathlib.Path(path).read_text().split("\n")
    index = next(i for i, line in enumerate(lines) if line.endswith("--readme rewrites this line -->"))
    indent = lines[index][:len(lines[index]) - len(lines[index].lstrip())]
    lines[index] = indent + binder_line(fast_verdicts(record))
    pathlib.Path(path).write_text("\n".join(lines))


def update_readme(record, path):
    """Replace the table of the Binder section of docs/hosted.md (lines from ``| notebook | 01``): :func:`readme_table`."""
    text = pathlib.Path(path).read_text().split("\n")
    start = next(i for i, line in enumerate(text) if line.strip().startswith("| notebook | 01"))
    end = start
    while end < len(text) and text[end].strip().startswith("|"):
        end += 1
    indent = text[start][:len(text[start]) - len(text[start].lstrip())]
    text[start:end] = [indent + line for line in readme_table(record)]
    pathlib.Path(path).write_text("\n".join(text))


def bench_dir():
    """outputs/bench (under ``COURSE_OUTPUT_DIR`` when set): read it before the notebooks' outputs move."""
    from helpers import config
    return config.output_dir("bench")


def save_bench(folder, section, value):
    """Put ``value`` under ``section`` of ``folder``/memory.json (notebooks merged) and rewrite memory.md."""
    path = folder / "memory.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    if "notebooks" in value and section in record:
        value = dict(value, notebooks=dict(record[section].get("notebooks", {}), **value["notebooks"]))
    record[section] = value
    path.write_text(json.dumps(record, indent=1))
    (folder / "memory.md").write_text(markdown(record))
    return path


def _stamp():
    return dict(when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                machine=f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2 ** 30:.0f} GiB, "
                        f"{platform.platform(terse=True)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--shared-outputs", action="store_true",
                        help="one COURSE_OUTPUT_DIR for all notebooks (default: a fresh one per notebook)")
    parser.add_argument("--full", action="store_true", help="full size (COURSE_FAST=0) instead of fast mode")
    parser.add_argument("--cells", action="store_true", help="also print each code cell's peaks")
    parser.add_argument("--json", type=pathlib.Path, help="write the peaks (MiB) to this file, per notebook")
    parser.add_argument("--bench", action="store_true", help="record in outputs/bench/memory.{json,md}")
    parser.add_argument("--growth", action="store_true", help="measure the growth per round and per sweep row")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of --growth's process")
    parser.add_argument("--rows", type=int, default=5, help="sweep rows of --growth")
    parser.add_argument("--clients", type=int, default=10, help="clients a round of --growth's process")
    parser.add_argument("--no-release", action="store_true", help="--growth without the release step")
    parser.add_argument("--readme", action="store_true",
                        help="rewrite the Binder memory table of docs/hosted.md and the README's Binder line "
                             "from outputs/bench/memory.json")
    args = parser.parse_args()
    folder = bench_dir() if args.bench or args.readme else None
    if args.readme:
        hosted = pathlib.Path(__file__).parent.parent / "docs" / "hosted.md"
        record = json.loads((folder / "memory.json").read_text())
        update_readme(record, hosted)
        update_readme_line(record, hosted.parent.parent / "README.md")
        print("\n".join(readme_table(record)))
        return
    if args.growth:
        result = dict(growth(args.rounds, args.rows, args.clients, release=not args.no_release), **_stamp())
        print("per round:", result["per_round"], "\nper row:", result["per_row"])
        if args.bench:
            print("saved", save_bench(folder, "growth_no_release" if args.no_release else "growth", result))
        return
    if not args.notebooks:
        parser.error("name the notebooks to measure, or --growth")
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
        if args.bench:
            save_bench(folder, "full" if args.full else "fast", dict(notebooks=results, **_stamp()))


if __name__ == "__main__":
    main()
