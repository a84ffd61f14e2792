#!/usr/bin/env python
"""The course as nbgrader assignments: write the releases, autograde submissions, give feedback and grades.

    python scripts/grading.py assignment [--course DIR]                                (make assignment)
    python scripts/grading.py grade SUBMISSIONS [--assignment ps05|questions] [--course DIR]
                                                           (make grade SUBMISSIONS=... [ASSIGNMENT=questions])

``assignment`` builds an nbgrader course in ``DIR`` (default
``outputs/course``, a real gradebook in ``DIR/gradebook.db``) with two assignments:

- ``source/ps05/``: the solutions notebook with the student introduction
  (the same :class:`make_exercises.StudentSource` as the self-study copy), a
  copy of ``helpers/`` whose ``exercises/solutions.py`` is a stub raising
  ``ImportError`` (the reference solutions are withheld: ``exercises.solution``
  says so, and the checks raise, as nbgrader's test cells must), the committed
  ``results/`` and the two lock inputs its setup cell reads;
- ``source/questions/``: notebooks 01-04 and 06 whose "Check your understanding"
  checks are locked nbgrader test cells worth one point each
  (:func:`graded_questions`), beside the same helpers and lock inputs;
- ``release/<assignment>/``: what students get, from ``nbgrader generate_assignment``
  (nbgrader's LockCells, ClearSolutions, ClearHiddenTests, ClearOutput, ...),
  without ``helpers/exercises/hidden.py``, ``fresh_check.py`` and ``integrity.py``
  (:data:`GRADER_ONLY`): what the hidden tests try, and how the graded checks
  run, stay with the grader (``autograde`` runs beside the source's copy).

``grade`` takes a folder with one student's work each (``SUBMISSIONS/<student
id>/`` holding the assignment's notebooks; for ps05 also ``SUBMISSIONS/<student
id>.ipynb``), copies them into the course's ``submitted/`` folder and runs
``nbgrader autograde`` (one student at a time, timed; locked cells a student
changed are restored; every graded check's verdict comes from a fresh Python
process that runs the student's exercise cells and the course's own checks,
``scripts/fresh_checks.py``), ``nbgrader generate_feedback``
(``feedback/<student>/<assignment>/*.html``) and ``nbgrader export``
(``grades.csv``: total and per-cell scores of every assignment graded so far).
The notebooks run on the course's kernel (``helpers.config.KERNEL_NAME``), in
fast mode unless ``COURSE_FAST=0``, with a per-cell timeout of ``--timeout``
seconds (the slowest cell of the solved notebook in fast mode, measured, with a margin).
"""
import argparse
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent

from helpers import config, setup  # noqa: E402
from scripts.make_exercises import StudentSource  # noqa: E402

ASSIGNMENT = "ps05"
NOTEBOOK = "05_custom_encoding_stages.ipynb"
# The "Check your understanding" questions of the other notebooks, graded: one assignment of five notebooks.
QUESTIONS = "questions"
QUESTION_NOTEBOOKS = ("01_data.ipynb", "02_model.ipynb", "03_fedavg_baseline.ipynb", "04_fedavg_compressed.ipynb",
                      "06_compression_frontier.ipynb")
QUESTION_POINTS = 1
NOTEBOOKS = {ASSIGNMENT: (NOTEBOOK,), QUESTIONS: QUESTION_NOTEBOOKS}
UNGRADED_SENTENCE = "Nothing here is graded, and a cell with `...` only says that it is not answered yet."
GRADED_SENTENCE = ("In this graded copy each question is worth one point: its check cell is locked, and the "
                   "instructor's grader runs it again on your submitted notebook.")
SOURCE = ROOT / "notebooks" / "solutions" / NOTEBOOK
COURSE = ROOT / "outputs" / "course"
LOCK_INPUTS = ("requirements.in", *setup.LOCK_INPUTS)  # helpers.setup reads the version bounds there
# The release's helpers/exercises/solutions.py: it shadows the reference solutions, even where the repository's helpers
# are installed (editable) in the same Python, so that no import reaches them.
WITHHELD_STUB = (
    '"""Withheld: the reference solutions of notebook 05 are not part of this graded release."""\n'
    'raise ImportError("The instructor withheld the reference solutions in this graded release: write your own "\n'
    '                  "stages in notebook 05.")\n')
# Per-cell timeout (s): the slowest cell of the solved notebook (FedAvg with exercise (a)'s encoder) took
# 12 s in fast mode on 2 shared cores (INSTRUCTOR.md, "Grading"); 60 s leaves room for a loaded machine.
# Full size (COURSE_FAST=0) trains longer: measure, and pass --timeout.
TIMEOUT = 60
# The questions assignment runs notebooks 03, 04 and 06, whose training cells are longer: 06's sweep cell took
# more than 60 s in fast mode on the same machine (a grading run stopped it there), so 300 s.
TIMEOUTS = {ASSIGNMENT: TIMEOUT, QUESTIONS: 300}
NBGRADER_CONFIG = """\
# Written by scripts/grading.py: the course's nbgrader settings.
c = get_config()
c.CourseDirectory.course_id = "fl-compression-course"
c.CourseDirectory.root = {root!r}
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "outputs", "*.egg-info"]
c.Execute.timeout = {timeout}
c.Execute.kernel_name = {kernel!r}
c.ExportApp.plugin_class = "grade_export.ExerciseScoresExport"
# The graded checks' verdicts come from a fresh process, not from the student's kernel (scripts/fresh_checks.py).
c.Autograde.autograde_preprocessors = [
    "fresh_checks.ExecuteToTheEnd", "fresh_checks.FreshProcessChecks",
    "nbgrader.preprocessors.IgnorePattern", "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput", "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties", "nbgrader.preprocessors.CheckCellMetadata"]
c.FreshProcessChecks.source = {source!r}
c.FreshProcessChecks.timeout = {timeout}
"""
# What the grader keeps to itself: the hidden tests, and the fresh process that runs the graded checks.
GRADER_ONLY = ("hidden.py", "fresh_check.py", "integrity.py")


def write_config(course, timeout):
    """Write ``course/nbgrader_config.py`` (course id, kernel, per-cell ``timeout`` in seconds)."""
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG.format(
        root=str(course), timeout=int(timeout), kernel=config.KERNEL_NAME, source=str(course / "source")))


def nbgrader(course, *args, env=None):
    """Run ``nbgrader *args`` in ``course``; raise ``RuntimeError`` with its last lines if it fails."""
    environment = dict(os.environ, **(env or {}))
    # nbgrader runs this environment's `alembic` (the gradebook's migrations) by name
    environment["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), environment.get("PATH", "")])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "scripts"),
                                                              environment.get("PYTHONPATH")]))
    # Its output goes to a file, not a pipe: a process a submission's kernel left behind (a TFF worker after
    # os._exit) would hold a pipe open, and the wait for its end would never return.
    with tempfile.TemporaryFile("w+") as log:
        result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=environment,
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        log.seek(0)
        output = log.read()
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise RuntimeError(f"nbgrader {' '.join(args)} failed (exit {result.returncode}):\n{tail}")
    return output


def stop_left_workers(marker):
    """Stop the TFF ``worker_binary`` processes whose environment holds ``marker``; returns their pids.

    A submission whose kernel ends without stopping its workers (``os._exit``)
    leaves them running; :func:`grade` gives each autograde its own marker.
    """
    stopped = []
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() == "worker_binary" and \
                    marker.encode() in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
                stopped.append(int(proc.name))
        except OSError:  # gone in between, or not ours to read
            continue
    return stopped


def copy_support(folder):
    """Put beside an assignment's notebooks in ``folder``: ``helpers/`` without the solutions, the committed
    ``results/`` (notebook 06 reads its from-scratch frontier there) and the lock inputs."""
    shutil.copytree(ROOT / "helpers", folder / "helpers", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "results", folder / "results")
    (folder / "helpers" / "exercises" / "solutions.py").write_text(WITHHELD_STUB)
    for name in LOCK_INPUTS:
        shutil.copy2(ROOT / name, folder / name)


def write_source(course):
    """Fill ``course/source/ps05/``: the notebook, helpers/ without the solutions, the lock inputs."""
    source = course / "source" / ASSIGNMENT
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    notebook = nbformat.read(str(SOURCE), as_version=4)
    notebook, _ = StudentSource().preprocess(notebook, {})
    nbformat.write(notebook, str(source / NOTEBOOK))
    copy_support(source)
    return source


def graded_questions(notebook):
    """``notebook`` (a NotebookNode) with its "Check your understanding" graded: one locked test cell per question.

    Each question's cell is split in two: the student's cell (everything up to
    ``understanding.check``, ``answer = ...`` included) and the check, an
    nbgrader test cell worth :data:`QUESTION_POINTS`. The section's intro says so.
    """
    cells, found = [], 0
    for cell in notebook.cells:
        ungraded = re.compile(r"\s+".join(map(re.escape, UNGRADED_SENTENCE.split())))  # across line breaks
        if cell.cell_type == "markdown" and ungraded.search(cell.source):
            cell.source = ungraded.sub(GRADED_SENTENCE, cell.source)
            found += 1
        match = re.search(r'^understanding\.check\("(\d\d\.\d)"', cell.source, re.M) if cell.cell_type == "code" else None
        if match is None:
            cells.append(cell)
            continue
        answer, check = cell.source[:match.start()].rstrip("\n"), cell.source[match.start():]
        grade_id = "q" + match[1].replace(".", "_")  # nbgrader ids: letters, digits, _ and -
        cells.append(nbformat.v4.new_code_cell(answer))
        cells.append(nbformat.v4.new_code_cell(check, metadata={"nbgrader": {
            "grade": True, "solution": False, "locked": True, "points": QUESTION_POINTS, "grade_id": grade_id,
            "schema_version": 3}}))
    if found != 1 or not any("nbgrader" in c.metadata for c in cells):
        raise ValueError(f"{notebook.metadata.get('name', 'a notebook')}: its \"Check your understanding\" no longer "
                         f"reads {UNGRADED_SENTENCE!r} once, or checks nothing: update scripts/grading.py.")
    notebook.cells = cells
    return notebook


def write_questions_source(course):
    """Fill ``course/source/questions/``: notebooks 01-04 and 06 with graded questions, helpers/, the lock inputs."""
    source = course / "source" / QUESTIONS
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    for name in QUESTION_NOTEBOOKS:
        notebook = nbformat.read(str(ROOT / "notebooks" / name), as_version=4)
        notebook.metadata["name"] = name
        nbformat.write(graded_questions(notebook), str(source / name))
    copy_support(source)
    return source


def assignment(course=COURSE, timeout=TIMEOUT):
    """Write the nbgrader sources and releases (ps05 and the questions) in ``course``; returns ps05's release folder."""
    course = pathlib.Path(course).resolve()
    write_config(course, timeout)
    write_source(course)
    write_questions_source(course)
    for assignment_id in (ASSIGNMENT, QUESTIONS):
        nbgrader(course, "generate_assignment", assignment_id, "--force")
        release = course / "release" / assignment_id
        for name in GRADER_ONLY:  # what the hidden tests try, and how the checks are run, stay with the grader
            (release / "helpers" / "exercises" / name).unlink()
        print(f"release: {release} (give students this folder; its helpers/ withholds the solutions)")
    return course / "release" / ASSIGNMENT


def submissions_in(folder, notebooks=(NOTEBOOK,)):
    """``{student id: {notebook name: path}}`` from ``folder``: ``<id>/`` folders holding ``notebooks`` (any of them).

    With one notebook (ps05), ``<id>.ipynb`` files count too, as that notebook.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not a folder: pass a folder of submissions (SUBMISSIONS=<folder>), with "
                         f"one {'<student id>.ipynb or ' if len(notebooks) == 1 else ''}<student id>/ holding "
                         f"{', '.join(notebooks)} per student.")
    found = {}
    for entry in sorted(folder.iterdir()):
        if entry.suffix == ".ipynb" and len(notebooks) == 1:
            found[entry.stem] = {notebooks[0]: entry}
        elif entry.is_dir():
            paths = [next(iter(sorted(entry.rglob(name))), None) for name in notebooks]
            if not any(paths):
                raise SystemExit(f"{entry} holds none of {', '.join(notebooks)}: put each student's notebooks "
                                 "under those names.")
            found[entry.name] = {name: path for name, path in zip(notebooks, paths) if path}
    if not found:
        raise SystemExit(f"{folder} holds no submissions: expected <student id>/ folders holding "
                         f"{', '.join(notebooks)}.")
    return found


def grade(submissions, course=COURSE, timeout=None, assignment_id=ASSIGNMENT):
    """Autograde every submission of ``assignment_id`` in ``submissions``; write feedback and ``grades.csv``.

    ``timeout``: seconds a cell may run (default :data:`TIMEOUTS` of the assignment).
    Returns ``{student id: seconds its autograde took}``.
    """
    course = pathlib.Path(course).resolve()
    timeout = timeout or TIMEOUTS[assignment_id]
    notebooks = NOTEBOOKS[assignment_id]
    if not (course / "release" / assignment_id / notebooks[0]).exists():
        raise SystemExit(f"{course} has no release of {assignment_id}: run `make assignment` (or "
                         "scripts/grading.py assignment --course ...) first.")
    write_config(course, timeout)
    students = submissions_in(submissions, notebooks)
    env = {"COURSE_FAST": os.environ.get("COURSE_FAST", "1"), "COURSE_HEADLESS": "1",
           "COURSE_OUTPUT_DIR": str(course / "outputs")}
    seconds = {}
    for student, paths in students.items():
        target = course / "submitted" / student / assignment_id
        target.mkdir(parents=True, exist_ok=True)
        for name, path in paths.items():
            shutil.copy2(path, target / name)
        start = time.monotonic()
        marker = f"COURSE_GRADING_ID={secrets.token_hex(8)}"
        nbgrader(course, "autograde", assignment_id, f"--student={student}", "--create", "--force",
                 env=dict(env, COURSE_GRADING_ID=marker.split("=", 1)[1]))
        seconds[student] = time.monotonic() - start
        left = stop_left_workers(marker)
        if left:
            print(f"stopped {len(left)} TFF worker(s) that {student}'s kernel left running (pids {left})")
        print(f"autograded {student} ({assignment_id}) in {seconds[student]:.0f} s")
    nbgrader(course, "generate_feedback", assignment_id, "--force")
    nbgrader(course, "export", "--to", str(course / "grades.csv"))
    for student, paths in students.items():
        for name in paths:
            print(f"feedback: {course / 'feedback' / student / assignment_id / name.replace('.ipynb', '.html')}")
    print(f"grades: {course / 'grades.csv'}; {sum(seconds.values()) / len(seconds):.0f} s per submission "
          f"(per-cell timeout {timeout} s, {'fast' if env['COURSE_FAST'] != '0' else 'full'} mode)")
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description="Notebook 05 and the questions of the others as nbgrader assignments.")
    parser.add_argument("command", choices=("assignment", "grade"))
    parser.add_argument("submissions", nargs="?", help="grade: a folder of submissions")
    parser.add_argument("--course", type=pathlib.Path, default=COURSE,
                        help=f"the nbgrader course folder (default {COURSE.relative_to(ROOT)})")
    parser.add_argument("--timeout", type=int, default=None,
                        help=f"seconds a cell may run (default {', '.join(f'{k} {v}' for k, v in TIMEOUTS.items())})")
    parser.add_argument("--assignment", choices=sorted(NOTEBOOKS), default=ASSIGNMENT,
                        help="grade: which assignment the submissions are (default %(default)s)")
    args = parser.parse_args(argv)
    if args.timeout is not None and args.timeout < 1:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}.")
    if args.command == "assignment":
        assignment(args.course, args.timeout or TIMEOUT)
    elif not args.submissions:
        parser.error("grade needs a folder of submissions: scripts/grading.py grade SUBMISSIONS "
                     "(make grade SUBMISSIONS=<folder>).")
    else:
        grade(args.submissions, args.course, args.timeout, args.assignment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
