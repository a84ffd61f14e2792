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


# ------------------------------------------------- the questions of notebooks 01-04 and 06 --

def _question_id(cell):
    """``"02.1"`` for the graded check cell of question 02.1, else None."""
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
    return grade_id[1:].replace("_", ".") if re.fullmatch(r"q\d\d_\d", grade_id) else None


def questions_answered(release, answers):
    """A release notebook of the questions assignment with each ``answer = ...`` line replaced by ``answers[qid]``."""
    notebook = nbformat.from_dict(release)
    for before, cell in zip(notebook.cells, notebook.cells[1:]):
        qid = _question_id(cell)
        if qid:
            before.source = re.sub(r"(?m)^answer = \.\.\..*$", lambda _: answers[qid], before.source)
    return notebook


def question_check_passed(release, qid):
    """The release notebook, unanswered, with question ``qid``'s locked check cell edited to ``pass``."""
    notebook = nbformat.from_dict(release)
    for cell in notebook.cells:
        if _question_id(cell) == qid:
            cell.source = "pass"
    return notebook
