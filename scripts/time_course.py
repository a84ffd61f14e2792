"""Time every notebook the way INSTRUCTOR.md's schedule quotes it, into ``results/course_timings.json``.

Usage: python -m scripts.time_course [--scratch DIR]   (``make course-timings``, about 50 minutes)

Five timed runs, each through ``scripts/run_course.py`` (as ``make course`` runs the notebooks), each in its own
output folder under DIR, which starts empty:

- ``full size``: the six notebooks from an empty output folder, as a first ``make course``;
- ``full size, solved 05``: the solved copy of notebook 05, with the full-size runs above in place;
- ``fast, empty``: the six notebooks in fast mode (``COURSE_FAST=1``, as ``make test`` and Binder run them);
- ``fast, saved runs``: the same again, with the fast runs of the line above in place;
- ``fast, solved 05``: the solved copy of 05 in fast mode, with the fast runs in place.

Each run is saved with the commit, date, machine and load average as soon as it ends, so a cut-off session
keeps the runs it finished. ``tests/test_quoted_timings.py`` checks INSTRUCTOR.md's schedule against the file.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from helpers.frontier import from_scratch
from helpers.runs import files

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "course_timings.json"
NOTEBOOKS = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
SOLVED_05 = "notebooks/solutions/05_custom_encoding_stages.ipynb"
RUNS = (  # label, output folder, fast mode, notebooks
    ("full size", "full", False, NOTEBOOKS),
    ("full size, solved 05", "full", False, [SOLVED_05]),
    ("fast, empty", "fast", True, NOTEBOOKS),
    ("fast, saved runs", "fast", True, NOTEBOOKS),
    ("fast, solved 05", "fast", True, [SOLVED_05]),
)


def timed_run(scratch, folder, fast, notebooks):
    """Seconds per notebook name of one ``run_course.py`` run with output folder ``scratch/folder``."""
    env = dict(os.environ, COURSE_OUTPUT_DIR=str(scratch / folder), COURSE_FAST="1" if fast else "0")
    subprocess.run([sys.executable, "scripts/run_course.py", *notebooks], cwd=ROOT, env=env, check=True)
    return json.loads((scratch / folder / "notebooks" / "timings.json").read_text())


def read_results():
    """The runs saved so far in ``results/course_timings.json``, by label (empty when there is no file)."""
    return json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else {}


def save(runs):
    """Write ``runs`` (label -> run) to ``results/course_timings.json``."""
    files.write_json(RESULTS, {"about": __doc__.split("\n\n")[0], "runs": runs})


def _seconds(runs, label, prefix):
    """Seconds of the notebook whose name starts with ``prefix`` in the run ``label``."""
    return next(s for name, s in runs[label]["seconds"].items() if name.startswith(prefix))


def schedule_cells(runs):
    """INSTRUCTOR.md's schedule cells by notebook number: (full size, "fast, empty / saved runs"), rounded seconds."""
    cells = {}
    for number in ("01", "02", "03", "04", "05", "06"):
        full = f"{_seconds(runs, 'full size', number):,.0f} s"
        fast = f"{_seconds(runs, 'fast, empty', number):,.0f} s / {_seconds(runs, 'fast, saved runs', number):,.0f} s"
        cells[number] = (full, fast)
    solved_full = f"{_seconds(runs, 'full size, solved 05', '05'):,.0f} s"
    solved_fast = f"{_seconds(runs, 'fast, solved 05', '05'):,.0f} s"
    cells["05"] = (f"student copy {cells['05'][0]}, solved {solved_full}", f"student {cells['05'][1]}, solved {solved_fast}")
    return cells


def full_size_sentence(runs):
    """INSTRUCTOR.md's words for the full-size run: each notebook's seconds and the whole minutes in all."""
    seconds = runs["full size"]["seconds"]
    each = ", ".join(f"{name[:2]} {s:,.0f} s" for name, s in sorted(seconds.items()))
    return f"the notebooks took {each}: {round(sum(seconds.values()) / 60)} minutes in all"


def paired_minutes(runs):
    """INSTRUCTOR.md's words for the full-size minutes of notebooks 04 and 06, which hold the paired runs."""
    return f"{round(_seconds(runs, 'full size', '04') / 60)} and {round(_seconds(runs, 'full size', '06') / 60)} minutes"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scratch", type=pathlib.Path, help="an empty folder for the runs' outputs (default: a new "
                        "temporary folder)")
    scratch = parser.parse_args(argv).scratch or pathlib.Path(tempfile.mkdtemp(prefix="course-timings-"))
    if scratch.exists() and not scratch.is_dir():
        parser.error(f"{scratch} is a file: name a new or empty folder for the runs' outputs, or leave --scratch out.")
    if scratch.exists() and any(scratch.iterdir()):
        parser.error(f"{scratch} is not empty: the first run must start from an empty output folder. "
                     "Name a new folder, or leave --scratch out.")
    runs = {}
    for label, folder, fast, notebooks in RUNS:
        seconds = timed_run(scratch, folder, fast, notebooks)
        runs[label] = dict(seconds=seconds, load_average=os.getloadavg(), **from_scratch.provenance())
        save({**read_results(), **runs})
        print(f"{label}: {sum(seconds.values()):.0f} s, saved to {RESULTS}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
