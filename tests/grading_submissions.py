"""Submissions of notebook 05 as students would hand them in, made from the release and the solutions.

Used by tests/test_grading.py: each function takes the release notebook (a
``NotebookNode``) and the solutions notebook and returns a new notebook.
"""
import re

import nbformat

ROUNDING = "        rounded_up = tf.random.uniform(tf.shape(x), dtype=x.dtype) < scaled - floor\n"


def _solution_cells(solution):
    """``{grade_id: source}`` of the solution cells of the solutions notebook, without nbgrader's markers."""
    cells = {}
    for cell in solution.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cells[meta["grade_id"]] = re.sub(r"\n *### (BEGIN|END) SOLUTION", "", cell.source)
    return cells


def solved(release, solution, change=None):
    """The release with every exercise answered by the reference; ``change(grade_id, source) -> source``."""
    notebook = nbformat.from_dict(release)
    answers = _solution_cells(solution)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id] if change is None else change(grade_id, answers[grade_id])
    return notebook


def untouched(release, solution):
    """The release as handed out."""
    return nbformat.from_dict(release)


def biased_rounding(release, solution):
    """Solved, but exercise (c) rounds to the nearest level with ``tf.round`` (biased between levels)."""
    def change(grade_id, source):
        if grade_id != "c_stage":
            return source
        assert ROUNDING in source, "the reference's stochastic rounding line moved: update tests/grading_submissions.py"
        return source.replace(ROUNDING, "        rounded_up = tf.round(scaled) > floor  # round to nearest\n")
    return solved(release, solution, change)


def check_cell_passed(release, solution):
    """The untouched release, but the check cell of exercise (a) replaced by ``pass``."""
    notebook = nbformat.from_dict(release)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "a_check":
            cell.source = "pass"
    return notebook


def endless_loop(release, solution):
    """Solved, but exercise (c)'s encode loops forever (in Python, while TensorFlow traces it)."""
    def change(grade_id, source):
        if grade_id != "c_stage":
            return source
        return source.replace(ROUNDING, ROUNDING + "        while True:  # a bug: never ends\n            pass\n")
    return solved(release, solution, change)
