"""The Colab route, on a stand-in for Colab's Python 3.11 runtime (2025.07) built from Colab's package list.

Run with `make test-colab` (``pytest --colab tests/colab``). As a student on Colab would, it opens a notebook
alone, with the repository not yet cloned: the setup cell clones the repository (``COURSE_REPO_URL`` points it
at a local copy of this working tree), installs the course from the Colab lock, restarts the session because
numpy was already imported, and goes straight on when run again. Then notebooks 01, 03 and the student's 05 run
in fast mode on the stand-in's own kernel (ipykernel 6.17.1, IPython 7.34): no error, nothing on stderr,
figures as images, training progress as a widget. Colab's kernel stack and every package the lock does not
mark ``replace:`` must keep Colab's versions. The install's time and download size and each notebook's time
go to ``outputs/colab/standin.json``. Colab's own web page cannot be tested here.
"""
import json
import os
import pathlib
import shutil
import subprocess
import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.colab import standin

ROOT = standin.ROOT
NOTEBOOKS = ["01_data.ipynb", "03_fedavg_baseline.ipynb", "05_custom_encoding_stages.ipynb"]
CELL_TIMEOUT_SECONDS = 900
REPORT = ROOT / "outputs" / "colab" / "standin.json"
WIDGET = "application/vnd.jupyter.widget-view+json"
RESTART = "restarting the session once"


def publish_working_tree(folder):
    """A git repository in ``folder`` holding this working tree's tracked files as one commit; its file:// URL."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-C", str(folder)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the course as Colab clones it"], check=True)
    return folder.as_uri()


@pytest.fixture(scope="module")
def colab_runtime(tmp_path_factory):
    """The stand-in's python, a kernelspec for it, and the folder Colab starts in (/content on Colab)."""
    home = tmp_path_factory.mktemp("colab")
    REPORT.unlink(missing_ok=True)
    start = time.perf_counter()
    python = standin.build(home / "standin")
    built = time.perf_counter() - start
    kernels = home / "jupyter"
    name = standin.kernelspec(python, kernels)
    content = home / "content"
    content.mkdir()
    url = publish_working_tree(home / "origin")
    old = {key: os.environ.get(key) for key in ("JUPYTER_PATH", "COURSE_REPO_URL", "COURSE_HEADLESS",
                                                 "COURSE_OUTPUT_DIR", "COURSE_FAST", "VIRTUAL_ENV")}
    os.environ.update(JUPYTER_PATH=str(kernels), COURSE_REPO_URL=url, COURSE_FAST="1")
    for key in ("COURSE_HEADLESS", "COURSE_OUTPUT_DIR", "VIRTUAL_ENV"):  # as on Colab: widgets, default outputs
        os.environ.pop(key, None)
    yield {"python": python, "kernel": name, "content": content, "built_seconds": built}
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def execute(nb, runtime, allow_errors=False):
    """Execute ``nb`` on the stand-in's kernel, in Colab's start folder; returns the executed notebook."""
    client = NotebookClient(nb, kernel_name=runtime["kernel"], timeout=CELL_TIMEOUT_SECONDS,
                            allow_errors=allow_errors, resources={"metadata": {"path": str(runtime["content"])}})
    client.execute()
    return nb


def problems(nb):
    """What a student would see go wrong: error outputs, stderr boxes, figures shown as text."""
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if output.output_type == "error":
                found.append(f"cell {index}: {output.ename}: {output.evalue}")
            elif output.output_type == "stream" and output.name == "stderr":
                found.append(f"cell {index} wrote to stderr: {output.text[:500]}")
            elif "image/png" not in data and str(data.get("text/plain", "")).startswith("<Figure size"):
                found.append(f"cell {index}: a figure shown as text")
    return found


def outputs_with(nb, mime):
    return [o for cell in nb.cells for o in cell.get("outputs", []) if mime in o.get("data", {})]


def stdout_text(nb):
    return "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", [])
                   if o.output_type == "stream" and o.name == "stdout")


def opened_from_github(name):
    """The notebook as Colab opens it from its badge: the file alone, with no repository around it."""
    return nbformat.read(ROOT / "notebooks" / name, as_version=4)


def test_setup_cell_installs_the_course_and_keeps_colabs_kernel(colab_runtime):
    python, report = colab_runtime["python"], {"standin_build_seconds": round(colab_runtime["built_seconds"], 1)}
    before = standin.installed(python)
    colab_versions = standin.colab_packages.colab_versions()
    for name in standin.colab.KERNEL_STACK:
        assert before[name] == colab_versions[name], f"the stand-in's {name} is not Colab's"
    assert before["tensorflow"] == "2.18.0" and before["numpy"] == "2.0.2" and "jedi" not in before

    nb = opened_from_github("01_data.ipynb")
    setup_index = next(i for i, c in enumerate(nb.cells) if "setup" in c.metadata.get("tags", []))
    first = nbformat.v4.new_notebook(metadata=nb.metadata, cells=[
        nbformat.v4.new_code_cell("import numpy  # a cell the student ran first (Colab may import it too)"),
        nb.cells[setup_index]])
    start = time.perf_counter()
    with pytest.raises(CellExecutionError):  # the install ends with the restart
        execute(first, colab_runtime)
    report["install_seconds"] = round(time.perf_counter() - start, 1)
    errors = [o for o in first.cells[1].outputs if o.output_type == "error"]
    assert len(errors) == 1 and len(errors[0].traceback) == 1, errors  # one line, no traceback
    assert errors[0].traceback[0].startswith("Colab: " + RESTART), errors[0].traceback

    course = colab_runtime["content"] / "fl-compression-course"
    log = (course / "colab-install.log").read_text()
    report["download_megabytes"] = round(standin.download_megabytes(log), 1)
    after = standin.installed(python)
    moved = {name: (before.get(name), after.get(name)) for name in standin.colab.KERNEL_STACK
             if before.get(name) != after.get(name)}
    assert not moved, f"the install changed Colab's kernel stack: {moved}"
    held = standin.colab_packages.held()
    moved = {name: (before[name], after.get(name)) for name in before
             if name in held and before[name] != after.get(name)}
    assert not moved, f"the install changed Colab packages that colab/requirements.in does not replace: {moved}"
    assert after["tensorflow"].startswith("2.14.") and after["numpy"].startswith("1.")
    assert after["tensorflow-federated"] == "0.87.0" and after["tensorflow-model-optimization"] == "0.7.5"
    assert "jedi" not in after
    report["packages_replaced_or_added"] = sorted(n for n in after if before.get(n) != after[n])
    write_report(report)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_colab(colab_runtime, name):
    """After the install and the restart, each notebook runs top to bottom on a fresh kernel, as after Run all."""
    nb = opened_from_github(name)
    start = time.perf_counter()
    try:
        execute(nb, colab_runtime)
    finally:
        seconds = round(time.perf_counter() - start, 1)
        nbformat.write(nb, REPORT.parent / name)
    assert not problems(nb), "\n".join(problems(nb))
    assert "Colab: installing" not in stdout_text(nb)  # the second run goes straight on
    assert outputs_with(nb, "image/png"), "no figure came out as an image"
    if name.startswith("03"):
        assert outputs_with(nb, WIDGET), "training progress did not show as a widget"
    write_report({f"seconds_{name[:2]}": seconds})


def test_tensorboard_opens_inline_on_colab(colab_runtime, tmp_path):
    """`%tensorboard` takes Colab's route (its page through Colab's port proxy) with the course's TensorBoard."""
    code = ("%load_ext tensorboard\n"
            f"%tensorboard --logdir {tmp_path} --port 0")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code), nbformat.v4.new_code_cell(
        "from tensorboard import manager\nimport os, signal\n"
        "for info in manager.get_all():\n    os.kill(info.pid, signal.SIGTERM)")])
    execute(nb, colab_runtime)
    scripts = [o["data"]["application/javascript"] for o in outputs_with(nb, "application/javascript")]
    assert any("google.colab.kernel.proxyPort" in s for s in scripts), nb.cells[0].outputs


def other_python():
    """A Python 3.12 or 3.13 on this machine (Colab's default runtimes), or None."""
    found = [shutil.which(f"python3.{minor}") for minor in (13, 12)]
    found += sorted(map(str, pathlib.Path.home().glob(".pyenv/versions/3.1[23]*/bin/python3")), reverse=True)
    for python in filter(None, found):
        if subprocess.run([python, "-c", "import sys; assert sys.version_info[:2] >= (3, 12)"]).returncode == 0:
            return python
    return None


def test_setup_cell_on_colabs_default_python_says_what_to_do_in_one_sentence(tmp_path):
    python = other_python()
    if python is None:
        pytest.skip("no Python 3.12 or 3.13 on this machine to stand in for Colab's default runtime")
    venv = tmp_path / "venv"
    subprocess.run([standin.uv(), "venv", "--quiet", "--python", python, str(venv)], check=True)
    subprocess.run([standin.uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                    "ipykernel"], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    standin.add_google_colab(site)
    name = standin.kernelspec(venv / "bin" / "python", tmp_path / "jupyter", "colab-default")
    content = tmp_path / "content"
    content.mkdir()
    nb = opened_from_github("01_data.ipynb")
    nb.cells = [c for c in nb.cells if "setup" in c.metadata.get("tags", [])]
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(tmp_path / "jupyter")
    try:
        execute(nb, {"kernel": name, "content": content}, allow_errors=True)
    finally:
        os.environ.pop("JUPYTER_PATH") if old is None else os.environ.update(JUPYTER_PATH=old)
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["error"], outputs  # nothing else: no stderr, no warning
    assert len(outputs[0].traceback) == 1, outputs[0].traceback  # the sentence alone, no traceback
    sentence = outputs[0].traceback[0]
    assert sentence.startswith("Colab runs Python 3.1") and "Runtime version 2025.07" in sentence, sentence
    assert "Binder or Codespaces" in sentence and not (content / "fl-compression-course").exists()


def write_report(values):
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    REPORT.write_text(json.dumps({**report, **values}, indent=1) + "\n")
