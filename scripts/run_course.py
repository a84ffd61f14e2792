"""Execute the course's notebooks in order, headless, and keep the executed copies.

Usage: python scripts/run_course.py notebooks/01_data.ipynb ...
Executed copies go to outputs/notebooks/, with the seconds each took in
outputs/notebooks/timings.json, and as HTML to outputs/html/ with an index.html
that links them, so the results can be read in a browser without running
anything. Stops at the first notebook that fails and names it; copies already
written are kept. At the end it writes the one-page report outputs/report.md
(helpers/report.py).
"""
import html
import json
import os
import pathlib
import sys
import time

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

from helpers import config, report


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
        write_html(notebook, path.stem)
        timings[path.name] = time.perf_counter() - start
        (out_dir / "timings.json").write_text(json.dumps(timings, indent=1))
        print(f"{path.name}: {timings[path.name]:.0f} s -> {target}", flush=True)
    print(f"all notebooks: {sum(timings.values()):.0f} s; report: {report.write_report()}; "
          f"HTML: {config.output_dir('html') / 'index.html'}")
    return 0


def write_html(notebook, stem):
    """Write ``notebook`` as outputs/html/<stem>.html and refresh the index page that links every copy."""
    html_dir = config.output_dir("html")
    body, _ = HTMLExporter().from_notebook_node(notebook)
    (html_dir / f"{stem}.html").write_text(body, encoding="utf-8")
    links = "\n".join(f'<li><a href="{p.name}">{html.escape(p.stem)}</a></li>'
                      for p in sorted(html_dir.glob("[0-9]*.html")))
    (html_dir / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>The course, executed</title>\n"
        "<h1>Communication-efficient federated learning with TFF: the executed notebooks</h1>\n"
        f"<ul>\n{links}\n</ul>\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
