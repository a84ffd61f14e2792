#!/usr/bin/env python
"""Notebook 05 as an nbgrader assignment: write the release, autograde submissions, give feedback and grades.

    python scripts/grading.py assignment [--course DIR]             (make assignment)
    python scripts/grading.py grade SUBMISSIONS [--course DIR]      (make grade SUBMISSIONS=...)

``assignment`` builds an nbgrader course in ``DIR`` (default
``outputs/course``, a real gradebook in ``DIR/gradebook.db``):

- ``source/ps05/``: the solutions notebook with the student introduction
  (the same :class:`make_exercises.StudentSource` as the self-study copy), a
  copy of ``helpers/`` whose ``exercises/solutions.py`` is a stub raising
  ``ImportError`` (the reference solutions are withheld: ``exercises.solution``
  says so, and the checks raise, as nbgrader's test cells must) and the two
  lock inputs its setup cell reads;
- ``release/ps05/``: what students get, from ``nbgrader generate_assignment``
  (nbgrader's LockCells, ClearSolutions, ClearHiddenTests, ClearOutput, ...).

``grade`` takes a folder with one notebook per student (``SUBMISSIONS/<student
id>.ipynb``, or ``SUBMISSIONS/<student id>/`` holding
``05_custom_encoding_stages.ipynb``), copies them into the course's
``submitted/`` folder and runs ``nbgrader autograde`` (one student at a time,
timed; locked cells a student changed are restored), ``nbgrader
generate_feedback`` (``feedback/<student>/ps05/*.html``) and ``nbgrader
export`` (``grades.csv``: total and per-exercise scores). The notebooks run
on the course's kernel (``helpers.config.KERNEL_NAME``), in fast mode unless
``COURSE_FAST=0``, with a per-cell timeout of ``--timeout`` seconds (the
slowest cell of the solved notebook in fast mode, measured, with a margin).
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import time

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from helpers import config, setup  # noqa: E402
from make_exercises import StudentSource  # noqa: E402

ASSIGNMENT = "ps05"
NOTEBOOK = "05_custom_encoding_stages.ipynb"
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
NBGRADER_CONFIG = """\
# Written by scripts/grading.py: the course's nbgrader settings.
c = get_config()
c.CourseDirectory.course_id = "fl-compression-course"
c.CourseDirectory.root = {root!r}
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "outputs", "*.egg-info"]
c.Execute.timeout = {timeout}
c.Execute.kernel_name = {kernel!r}
c.ExportApp.plugin_class = "grade_export.ExerciseScoresExport"
"""


def write_config(course, timeout):
    """Write ``course/nbgrader_config.py`` (course id, kernel, per-cell ``timeout`` in seconds)."""
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG.format(
        root=str(course), timeout=int(timeout), kernel=config.KERNEL_NAME))


def nbgrader(course, *args, env=None):
    """Run ``nbgrader *args`` in ``course``; raise ``RuntimeError`` with its last lines if it fails."""
    environment = dict(os.environ, **(env or {}))
    # nbgrader runs this environment's `alembic` (the gradebook's migrations) by name
    environment["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), environment.get("PATH", "")])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "scripts"),
                                                              environment.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=environment,
                            capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        raise RuntimeError(f"nbgrader {' '.join(args)} failed (exit {result.returncode}):\n{tail}")
    return result.stdout + result.stderr


def write_source(course):
    """Fill ``course/source/ps05/``: the notebook, helpers/ without the solutions, the lock inputs."""
    source = course / "source" / ASSIGNMENT
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    notebook = nbformat.read(str(SOURCE), as_version=4)
    notebook, _ = StudentSource().preprocess(notebook, {})
    nbformat.write(notebook, str(source / NOTEBOOK))
    shutil.copytree(ROOT / "helpers", source / "helpers", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (source / "helpers" / "exercises" / "solutions.py").write_text(WITHHELD_STUB)
    for name in LOCK_INPUTS:
        shutil.copy2(ROOT / name, source / name)
    return source


def assignment(course=COURSE, timeout=TIMEOUT):
    """Write the nbgrader source and release of notebook 05 in ``course``; returns the release folder."""
    course = pathlib.Path(course).resolve()
    write_config(course, timeout)
    write_source(course)
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    release = course / "release" / ASSIGNMENT
    print(f"release: {release} (give students this folder; its helpers/ withholds the solutions)")
    return release


def submissions_in(folder):
    """``{student id: notebook path}`` from ``folder`` (``<id>.ipynb`` files or ``<id>/`` folders)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not a folder: pass a folder of submissions (SUBMISSIONS=<folder>), with "
                         f"one <student id>.ipynb or <student id>/{NOTEBOOK} per student.")
    found = {}
    for entry in sorted(folder.iterdir()):
        if entry.suffix == ".ipynb":
            found[entry.stem] = entry
        elif entry.is_dir():
            notebooks = sorted(entry.rglob(NOTEBOOK))
            if not notebooks:
                raise SystemExit(f"{entry} holds no {NOTEBOOK}: put each student's notebook under that name.")
            found[entry.name] = notebooks[0]
    if not found:
        raise SystemExit(f"{folder} holds no submissions: expected <student id>.ipynb files or "
                         f"<student id>/{NOTEBOOK}.")
    return found


def grade(submissions, course=COURSE, timeout=TIMEOUT):
    """Autograde every submission in ``submissions``; write feedback and ``grades.csv``.

    Returns ``{student id: seconds its autograde took}``.
    """
    course = pathlib.Path(course).resolve()
    if not (course / "release" / ASSIGNMENT / NOTEBOOK).exists():
        raise SystemExit(f"{course} has no release of {ASSIGNMENT}: run `make assignment` (or "
                         "scripts/grading.py assignment --course ...) first.")
    write_config(course, timeout)
    students = submissions_in(submissions)
    env = {"COURSE_FAST": os.environ.get("COURSE_FAST", "1"), "COURSE_HEADLESS": "1",
           "COURSE_OUTPUT_DIR": str(course / "outputs")}
    seconds = {}
    for student, path in students.items():
        target = course / "submitted" / student / ASSIGNMENT
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / NOTEBOOK)
        start = time.monotonic()
        nbgrader(course, "autograde", ASSIGNMENT, f"--student={student}", "--create", "--force", env=env)
        seconds[student] = time.monotonic() - start
        print(f"autograded {student} in {seconds[student]:.0f} s")
    nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    nbgrader(course, "export", "--to", str(course / "grades.csv"))
    for student in students:
        print(f"feedback: {course / 'feedback' / student / ASSIGNMENT / NOTEBOOK.replace('.ipynb', '.html')}")
    print(f"grades: {course / 'grades.csv'}; {sum(seconds.values()) / len(seconds):.0f} s per submission "
          f"(per-cell timeout {timeout} s, {'fast' if env['COURSE_FAST'] != '0' else 'full'} mode)")
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description="Notebook 05 as an nbgrader assignment.")
    parser.add_argument("command", choices=("assignment", "grade"))
    parser.add_argument("submissions", nargs="?", help="grade: a folder of submissions")
    parser.add_argument("--course", type=pathlib.Path, default=COURSE,
                        help=f"the nbgrader course folder (default {COURSE.relative_to(ROOT)})")
    parser.add_argument("--timeout", type=int, default=TIMEOUT, help="seconds a cell may run (default %(default)s)")
    args = parser.parse_args(argv)
    if args.timeout < 1:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}.")
    if args.command == "assignment":
        assignment(args.course, args.timeout)
    elif not args.submissions:
        parser.error("grade needs a folder of submissions: scripts/grading.py grade SUBMISSIONS "
                     "(make grade SUBMISSIONS=<folder>).")
    else:
        grade(args.submissions, args.course, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
