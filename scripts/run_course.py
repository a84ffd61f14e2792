"""Execute the course's notebooks in order, headless, and keep the executed copies.

Usage: python scripts/run_course.py notebooks/01_data.ipynb ...
Executed copies go to outputs/notebooks/, with the seconds each took in
outputs/notebooks/timings.json. Stops at the first notebook that fails and names
it; copies already written are kept. At the end it writes the one-page report
outputs/report.md (helpers/report.py). `make site` (which `make course` runs
next) turns them into the course's website, to read without running anything.
"""
import json
import os
import pathlib
import sys
import time

import nbformat
from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

from helpers import config
from helpers import report


def main(paths):
    os.environ["COURSE_HEADLESS"] = "1"  # notebooks skip interactive TensorBoard
    out_dir = config.output_dir("notebooks")
    timings = {}
    for path in map(pathlib.Path, paths):
        start = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        executor = ExecutePreprocessor(timeout=3600, kernel_name="python3")
        target = out_dir / path.name
        try:
            executor.preprocess(notebook, {"metadata": {"path": str(path.parent)}})
        except CellExecutionError as error:
            nbformat.write(notebook, target)
            print(f"FAILED: {path} (partial copy in {target})\n{error}", file=sys.stderr)
            return 1
        nbformat.write(notebook, target)
        timings[path.name] = time.perf_counter() - start
        (out_dir / "timings.json").write_text(json.dumps(timings, indent=1))
        print(f"{path.name}: {timings[path.name]:.0f} s -> {target}", flush=True)
    print(f"all notebooks: {sum(timings.values()):.0f} s; report: {report.write_report()}; "
          "the website: `make site` (make course builds it next)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
