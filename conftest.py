"""How `pytest` and `pytest --nbval` run this course (the one configuration `make test` uses too).

- Outside the course environment, pytest stops at once with one sentence saying what to do.
- Notebooks run in fast mode (``COURSE_FAST=1``) unless the caller set ``COURSE_FAST``, headless
  (``COURSE_HEADLESS=1``: plain-text progress, no TensorBoard) and with their outputs in a
  temporary folder unless ``COURSE_OUTPUT_DIR`` is set. The kernel is this Python's own.
- ``--browser`` adds the JupyterLab browser test (tests/browser/), which `make test-browser` runs;
  ``--site`` adds the website's browser test (tests/site/), which `make test-site` runs;
  ``--colab`` adds the Colab route on a stand-in for Colab's runtime (tests/colab/), which `make test-colab` runs;
  ``--slow`` adds the tests marked ``slow`` (training runs in fresh processes), which `make test-slow` runs.
- Every test runs with TFF's runtime started (the ``tff_runtime`` fixture), as after a notebook's setup cell.
"""
import importlib.util
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent
SUPPORTED_PYTHONS = ((3, 9), (3, 11))


def environment_problem():
    """One sentence naming what is wrong with this Python for the course, or None if it is the course's."""
    low, high = SUPPORTED_PYTHONS
    version = ".".join(map(str, sys.version_info[:3]))
    if not low <= sys.version_info[:2] <= high:
        return f"this Python ({sys.executable}) is {version}, but the course needs 3.9-3.11"
    missing = [name for name in ("tensorflow_federated", "nbval", "helpers")
               if importlib.util.find_spec(name) is None]
    if missing:
        return f"this Python ({sys.executable}) lacks {', '.join(missing)}"
    return None


_problem = environment_problem()
if _problem:
    sys.stderr.write(
        f"pytest runs outside the course environment: {_problem}. Activate it with "
        f"`source {ROOT / '.venv/bin/activate'}` (`make env` creates it), or run `make test`.\n")
    raise SystemExit(4)  # pytest's code for a usage error; a bare exit avoids a wall of tracebacks

os.environ.setdefault("COURSE_FAST", "1")
os.environ.setdefault("COURSE_HEADLESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_TEMP_OUTPUT = None
if not os.environ.get("COURSE_OUTPUT_DIR"):
    _TEMP_OUTPUT = tempfile.mkdtemp(prefix="course-pytest-")
    os.environ["COURSE_OUTPUT_DIR"] = _TEMP_OUTPUT

FAST_CELL_TIMEOUT_SECONDS = 900


def pytest_addoption(parser):
    parser.addoption("--browser", action="store_true",
                     help="also run the JupyterLab browser test in tests/browser/ (make test-browser)")
    parser.addoption("--site", action="store_true",
                     help="also run the website's browser test in tests/site/ (make test-site)")
    parser.addoption("--colab", action="store_true",
                     help="also run the Colab route on a stand-in for Colab's runtime in tests/colab/ (make test-colab)")
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow: training runs in fresh processes (make test-slow)")


def pytest_collection_modifyitems(config, items):
    """Leave out the tests marked ``slow`` unless ``--slow`` asks for them (CI runs them: make test-slow)."""
    if config.getoption("slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def pytest_configure(config):
    if config.getoption("nbval", False) or config.getoption("nbval_lax", False):
        if not config.option.nbval_kernel_name:
            config.option.nbval_current_env = True  # the kernel is this environment's Python
        if config.option.nbval_cell_timeout == 2000 and os.environ["COURSE_FAST"] == "1":
            config.option.nbval_cell_timeout = FAST_CELL_TIMEOUT_SECONDS  # nbval's default is 2000 s


def pytest_ignore_collect(collection_path, config):
    """Skip the browser, Colab and website tests unless ``--browser``, ``--colab`` or ``--site`` asks for them."""
    for option in ("browser", "colab", "site"):
        if collection_path.name == option and collection_path.parent == ROOT / "tests":
            return None if config.getoption(option) else True
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """After each notebook cell under nbval: every figure must be an image, nothing goes to stderr, and the
    cell prints at most tests/notebook_outputs.MAX_LINES lines."""
    yield
    outputs = getattr(item, "test_outputs", None) or []
    from tests import notebook_outputs
    lines = notebook_outputs.cell_lines(outputs)
    if lines > notebook_outputs.MAX_LINES:
        text = "".join(notebook_outputs.output_text(output) for output in outputs)
        raise AssertionError(f"{item.name} printed {lines} lines, more than a student reads "
                             f"({notebook_outputs.MAX_LINES}); it starts:\n{text[:1500]}")
    for output in outputs:
        data = output.get("data", {})
        if "image/png" not in data and str(data.get("text/plain", "")).startswith("<Figure size"):
            raise AssertionError(f"{item.name}: a figure came out as the text {data['text/plain']!r}, "
                                 "not an image (is helpers.setup.start() the first cell?)")
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            raise AssertionError(f"{item.name} wrote to stderr, which a student sees as a pink warning "
                                 f"box:\n{output.get('text', '')[:2000]}")


@pytest.fixture(scope="session", autouse=True)
def tff_runtime():
    """Start TFF's runtime once for the whole session, as a notebook's setup cell does
    (:func:`helpers.workers.runtime.start`: ``COURSE_WORKERS`` or one local worker, and the exit hook)."""
    from helpers.workers import runtime
    runtime.start()


def pytest_unconfigure(config):
    if _TEMP_OUTPUT:
        shutil.rmtree(_TEMP_OUTPUT, ignore_errors=True)
