#!/usr/bin/env python
"""Write the self-study student notebooks from the solution notebooks, with nbgrader's own preprocessors.

Every notebook ``notebooks/solutions/NAME.ipynb`` is the single source, marked
the nbgrader way: ``### BEGIN SOLUTION`` / ``### END SOLUTION`` regions in
solution cells, autograded check cells (``metadata.nbgrader``: grade id,
points, locked) with ``### BEGIN HIDDEN TESTS`` parts. It becomes
``notebooks/NAME.ipynb`` through:

- :class:`StudentSource`: a cell whose metadata has ``student_source`` gets
  that text as its source (an introduction that differs between the solved and
  the student copy);
- nbgrader's ``ClearSolutions`` (each region becomes ``# YOUR CODE HERE`` /
  ``raise NotImplementedError()``: signatures and docstrings stay),
  ``ClearHiddenTests`` and ``ClearOutput``.

The graded release (``scripts/grading.py assignment``, ``make assignment``)
runs nbgrader's ``generate_assignment`` on the same source after the same
:class:`StudentSource`, so the two copies cannot drift.

``--check`` writes nothing and exits with status 1 if a committed student
notebook differs from what would be generated.

    python scripts/make_exercises.py [--check] [notebooks/solutions/NAME.ipynb ...]
"""
import argparse
import pathlib
import sys

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
STUDENT_SOURCE = "student_source"


class StudentSource(Preprocessor):
    """A cell with ``metadata.student_source`` takes that text as its source (and loses the key)."""

    def preprocess_cell(self, cell, resources, index):
        if STUDENT_SOURCE in cell.metadata:
            cell.source = cell.metadata.pop(STUDENT_SOURCE)
        return cell, resources


def student_notebook(solution):
    """The self-study student copy (a new ``NotebookNode``) of a solution notebook ``NotebookNode``."""
    notebook = nbformat.from_dict(solution)  # a deep copy
    resources = {"language": notebook.metadata.get("kernelspec", {}).get("language", "python")}
    for preprocessor in (StudentSource(), ClearSolutions(), ClearHiddenTests(), ClearOutput()):
        notebook, resources = preprocessor.preprocess(notebook, resources)
    notebook.metadata["exercises"] = {
        "generated_by": "scripts/make_exercises.py",
        "note": "Do not edit: generated from notebooks/solutions/ with nbgrader's preprocessors.",
    }
    return notebook


def render(notebook):
    return nbformat.writes(notebook, version=4) + "\n"


def shown(path):
    """``path`` relative to the repository when it is inside it."""
    path = pathlib.Path(path).resolve()
    try:
        return path.relative_to(ROOT)
    except ValueError:
        return path


def target_for(solution_path):
    return solution_path.parent.parent / solution_path.name


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write the student notebooks from notebooks/solutions/.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a student notebook is out of date")
    parser.add_argument("solutions", nargs="*", type=pathlib.Path,
                        help="solution notebooks (default: notebooks/solutions/*.ipynb)")
    args = parser.parse_args(argv)
    paths = args.solutions or sorted(SOLUTIONS.glob("*.ipynb"))
    if not paths:
        print(f"no solution notebooks in {SOLUTIONS}", file=sys.stderr)
        return 1
    stale = []
    for path in paths:
        if not path.exists():
            print(f"{path} does not exist: name a notebook under notebooks/solutions/.", file=sys.stderr)
            return 1
        text = render(student_notebook(nbformat.read(str(path), as_version=4)))
        target = target_for(path.resolve())
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(target)
        else:
            target.write_text(text)
            print(f"wrote {shown(target)} from {shown(path)}")
    if stale:
        for target in stale:
            print(f"{shown(target)} is out of date: run make exercises (python scripts/make_exercises.py)",
                  file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(paths)} student notebook(s) up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
