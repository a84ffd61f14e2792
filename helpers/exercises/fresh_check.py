"""Notebook 05's graded checks, run in a fresh Python process on the student's exercise cells only.

nbgrader runs every test cell in the student's own kernel, where the student's
cells may have rebound the checks, patched the libraries they use, or changed
how IPython runs the cells that follow. The grade therefore comes from here
(``scripts/fresh_checks.py`` starts it for each submission, from a clean copy
of the course's ``helpers/``):

    python -m helpers.exercises.fresh_check JOB.json    (a token on the first line of stdin)

``JOB.json`` holds ``prelude`` (the instructor's notebook's imports) and
``steps`` in notebook order: ``{"cell": grade_id, "source": ...}`` for a
student's cell, ``{"check": grade_id, "call": "check" or "hidden_check",
"stage": name, "exercise": "a", "seed": 4177}`` for a graded check. The checks
are this process's own, imported before any of the student's code runs, and
each one runs only if :func:`helpers.exercises.integrity.changes` finds
nothing changed since then (and again after it, since the stage's code runs
inside the check). Each verdict is printed as one line, ``<token> {json}``, on
a copy of stdout made before the student's code runs; lines without the token
are the student's own output.
"""
import contextlib
import inspect
import io
import json
import os
import pathlib
import sys

from helpers.exercises import hidden, integrity, records
from helpers.exercises.runner import describe_error

RESTART = ("Restart the kernel and run all cells without rebinding or patching the course's checks, NumPy, "
           "TensorFlow, tfmot or Python's built-ins.")


def verdict_channel(token):
    """A function ``(**fields) -> None`` that prints ``<token> {json}`` on a copy of this process's stdout."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)

    def report(**fields):
        channel.write(f"{token} {json.dumps(fields)}\n")
        channel.flush()

    return report


def without_magics(source):
    """``source`` with each IPython magic or shell line (``%time``, ``%%capture``, ``!ls``) replaced by ``pass``."""
    lines = source.splitlines()
    return "\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!"))
                     else line for line in lines)


def run_cell(source, grade_id, namespace):
    """Run a student's cell in ``namespace``; returns None, or the error it raised, in one phrase."""
    try:
        exec(compile(without_magics(source), f"<cell {grade_id}>", "exec"), namespace)
    except BaseException as error:  # a student's cell may raise anything, SystemExit included
        return f"your cell {grade_id} raised {describe_error(error)}"
    return None


def changed_sentence(changed):
    """The sentence a check gets when ``changed`` (paths from :func:`integrity.changes`) is not empty."""
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    return (f"your notebook changed {changed[0]}{more}, which the checks use, so the check was not run. "
            + RESTART)


def course_checks():
    """The functions a graded check calls, taken before any student code runs: (changes, evaluate, hidden_check,
    exercise, isclass)."""
    return integrity.changes, records.evaluate, hidden.hidden_check, records.exercise, inspect.isclass


def stages_in(encoder):
    """Every stage of a ``te.core.Encoder`` tree, as composed (not wrapped)."""
    # private API: tfmot wraps a non-adaptive stage in NoneStateAdaptiveEncodingStage, which keeps it in _wrapped_stage
    stage = getattr(encoder.stage, "__dict__", {}).get("_wrapped_stage", encoder.stage)
    return [stage] + [s for child in encoder.children.values() for s in stages_in(child)]


def encoder_fault(factory, cls, record, evaluate):
    """Why the encoder ``factory()`` does not earn the exercise's encoder point, or None.

    It must build its encoder around the student's own stage class ``cls``
    (bound to the exercise's class name), and that class must pass its check.
    """
    if not isinstance(cls, type):
        return f"{record.stage_class} is not a class defined by your cells."
    if not evaluate(cls, record.kind).passed:
        return f"{record.stage_class}, which the encoder must use, does not pass its check yet."
    if not any(isinstance(stage, cls) for stage in stages_in(factory())):
        return f"the encoder does not use your {record.stage_class}: compose your own stage."
    return None


def graded(step, namespace, baseline, cell_error, checks):
    """Run one graded check ``step`` on the student's stage in ``namespace``; returns (passed, line).

    ``checks``: what :func:`course_checks` returned before the student's cells ran.
    """
    changes, evaluate, hidden_check, exercise, isclass = checks
    record = exercise(step["exercise"])
    title = record.title
    changed = changes(baseline)
    if changed:
        return False, f"{title} not graded: {changed_sentence(changed)}"
    if step["stage"] not in namespace:
        why = f" ({cell_error})" if cell_error else ""
        return False, f"{title} not passed: {step['stage']} is not defined by your cells{why}."
    stage = namespace[step["stage"]]
    if step["stage"] == record.stage_class and not isclass(stage):
        return False, f"{title} not passed: {step['stage']} must be your stage class, not {type(stage).__name__}."
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            if step["call"] == "hidden_check":
                passed, line = True, hidden_check(stage, step["exercise"], seed=step["seed"])
            else:
                result = evaluate(stage, step["exercise"])
                passed, line = result.passed, result.line()
                fault = None if isclass(stage) or not passed else encoder_fault(
                    stage, namespace.get(record.stage_class), record, evaluate)
                if fault:
                    passed, line = False, f"{title} not passed: {fault}"
    except AssertionError as failed:
        passed, line = False, str(failed)
    except BaseException as error:  # the stage's code may raise anything, SystemExit included
        passed, line = False, f"{title} not passed: running the check raised {describe_error(error)}."
    changed = changes(baseline)
    if changed:
        return False, f"{title} not graded: while the check ran, {changed_sentence(changed)}"
    return passed, line


def main(argv=None):
    """Run the job named in ``argv`` (default ``sys.argv[1:]``); the token comes first on stdin."""
    token = sys.stdin.readline().strip()  # before any student code runs
    job = json.loads(pathlib.Path((argv or sys.argv[1:])[0]).read_text())
    report = verdict_channel(token)
    namespace = {"__name__": "__main__"}
    exec(compile(job["prelude"], "<the notebook's imports>", "exec"), namespace)
    # From here on, only references taken now: the student's cells may rebind any name, this module's too.
    checks, run, check_one = course_checks(), run_cell, graded
    baseline = integrity.snapshot()
    report(ready=True)
    cell_error = None
    for step in job["steps"]:
        if "cell" in step:
            cell_error = run(step["source"], step["cell"], namespace) or cell_error
        else:
            passed, line = check_one(step, namespace, baseline, cell_error, checks)
            report(grade_id=step["check"], passed=passed, line=line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
