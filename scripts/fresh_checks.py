"""nbgrader preprocessors that keep a submission from grading itself (``scripts/grading.py`` configures them).

nbgrader's autograde runs every cell in the student's kernel, so a student's
cell can rebind the checks, patch the libraries they use, or have IPython run
something else than the locked test cells. These two preprocessors go in
nbgrader's ``Autograde.autograde_preprocessors``:

- :class:`ExecuteToTheEnd`: nbgrader's ``Execute``, except that a kernel that
  ends (``os._exit``, a crash) fails the cells after it instead of stopping the
  grading of every submission;
- :class:`FreshProcessChecks` (after it): every graded check cell whose locked
  source calls ``exercises.check(NAME, "k")`` or ``hidden.hidden_check(NAME, "k",
  seed=N)`` gets its output from :mod:`helpers.exercises.fresh_check` instead:
  a fresh Python process, in a clean copy of the assignment's source folder,
  that runs the instructor's imports, the student's solution cells and the
  course's own checks, and refuses to check when something they use was
  changed. nbgrader then scores the cell from that output as usual.
"""
import ast
import json
import os
import pathlib
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading

import nbformat
from nbclient.exceptions import DeadKernelError
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Integer, Unicode

CALLS = {("exercises", "check"): "check", ("hidden", "hidden_check"): "hidden_check"}
STARTUP = 300  # seconds the fresh process may take to import TensorFlow and the notebook's imports
KERNEL_ENDED = ("The notebook's kernel ended before this cell ran (a cell called os._exit, or the kernel "
                "crashed): restart the kernel and run all cells.")


def error_output(sentence):
    """An nbformat error output whose message is ``sentence`` (nbgrader scores its cell 0)."""
    return nbformat.v4.new_output("error", ename="AssertionError", evalue=sentence, traceback=[sentence])


class ExecuteToTheEnd(Execute):
    """nbgrader's ``Execute``; a kernel that ends fails the remaining cells with :data:`KERNEL_ENDED`."""

    def preprocess(self, nb, resources=None, km=None):
        self._kernel_ended = False
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not self._kernel_ended:
            try:
                return super().preprocess_cell(cell, resources, index)
            except DeadKernelError:
                self._kernel_ended = True
        cell.outputs = [error_output(KERNEL_ENDED)]
        return cell, self.resources


def check_call(source):
    """``{"call", "stage", "exercise", "seed"}`` of the first graded call in a locked cell's ``source``, or None."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in CALLS:
            if len(node.args) < 2 or not isinstance(node.args[0], ast.Name):
                continue
            seed = next((k.value.value for k in node.keywords if k.arg == "seed"), None)
            return {"call": CALLS[node.func.value.id, node.func.attr], "stage": node.args[0].id,
                    "exercise": ast.literal_eval(node.args[1]), "seed": seed}
    return None


def notebook_imports(notebook):
    """The top-level import statements of ``notebook``'s code cells that are neither solutions nor graded."""
    lines = []
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("solution") or meta.get("grade"):
            continue
        tree = ast.parse(cell.source)
        lines += [ast.get_source_segment(cell.source, node) for node in tree.body
                  if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines) + "\n"


def steps_of(notebook):
    """The fresh process's steps: the student's solution cells and the graded checks, in notebook order."""
    steps = []
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            steps.append({"cell": meta["grade_id"], "source": cell.source})
        elif meta.get("grade") and check_call(cell.source):
            steps.append(dict(check_call(cell.source), check=meta["grade_id"]))
    return steps


def _read_lines(stream, lines):
    """Put every line of ``stream`` on the queue ``lines``, then None."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_fresh(folder, prelude, steps, timeout, env=None):
    """Run ``steps`` in a fresh process in ``folder``; returns ``{grade_id: (passed, line)}`` of the checks it reported.

    A process that ends, or takes more than ``timeout`` seconds for one check,
    leaves its remaining checks out of the result.
    """
    token = secrets.token_hex(16)
    job = pathlib.Path(folder) / "fresh_check_job.json"
    job.write_text(json.dumps({"prelude": prelude, "steps": steps}))
    process = subprocess.Popen([sys.executable, "-m", "helpers.exercises.fresh_check", str(job)], cwd=folder,
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, start_new_session=True)
    process.stdin.write(token + "\n")
    process.stdin.close()
    lines = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    verdicts, wait = {}, STARTUP + timeout
    try:
        while True:
            line = lines.get(timeout=wait)
            if line is None:
                break
            if line.startswith(token + " "):
                fields = json.loads(line[len(token) + 1:])
                if "grade_id" in fields:
                    verdicts[fields["grade_id"]] = (fields["passed"], fields["line"])
                wait = timeout
    except queue.Empty:
        pass
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
        process.wait()
    return verdicts


def grade_fresh(folder, prelude, steps, timeout, env=None):
    """Like :func:`run_fresh`, but a check the process did not report fails, and the steps after it run again."""
    verdicts = {}
    while True:
        left = [s for s in steps if "cell" in s or s["check"] not in verdicts]
        checks = [s["check"] for s in left if "check" in s]
        if not checks:
            return verdicts
        reported = run_fresh(folder, prelude, left, timeout, env)
        verdicts.update(reported)
        missing = next((s for s in left if "check" in s and s["check"] not in reported), None)
        if missing is not None:
            verdicts[missing["check"]] = (
                False, f"Exercise ({missing['exercise']}) not graded: before its check finished, a cell or the check "
                       f"ended the process (os._exit, a crash), or it ran longer than {timeout} s.")


class FreshProcessChecks(NbGraderPreprocessor):  # nbgrader's base: enabled by default, unlike nbconvert's
    """The graded check cells' outputs, from :mod:`helpers.exercises.fresh_check` (see the module's docstring)."""

    source = Unicode("", help="The course's source folder (source/<assignment>/ holds each assignment)").tag(config=True)
    timeout = Integer(60, help="Seconds one check may take in the fresh process").tag(config=True)

    def preprocess(self, nb, resources):
        steps = steps_of(nb)
        if not any("check" in s for s in steps):
            return nb, resources
        assignment = pathlib.Path(self.source) / resources["nbgrader"]["assignment"]
        original = nbformat.read(str(assignment / f"{resources['nbgrader']['notebook']}.ipynb"), as_version=4)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
        with tempfile.TemporaryDirectory(prefix="fresh_check_") as folder:
            shutil.copytree(assignment, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.ipynb"))
            verdicts = grade_fresh(folder, notebook_imports(original), steps, self.timeout, env)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in verdicts:
                cell.outputs = outputs_for(*verdicts[grade_id], cell.outputs)
        return nb, resources


def outputs_for(passed, line, kernel_outputs):
    """A graded cell's outputs from a fresh verdict; says so when the student's kernel had found otherwise."""
    kernel_passed = not any(o.get("output_type") == "error" for o in kernel_outputs)
    text = f"Graded in a fresh Python process: {line}\n"
    if kernel_passed and not passed:
        text += ("(In this notebook's own kernel the cell raised no error: the notebook changed how its checks ran "
                 "there, so the grade is the fresh process's.)\n")
    outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    return outputs if passed else outputs + [error_output(line)]
