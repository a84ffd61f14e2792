"""`pytest --nbval`, typed from the repository root, collects what the README says it does.

Each test runs pytest's collection in a fresh process, as a user would type it, in a copy of
the repository's test configuration and notebooks, so that files planted where `make course`
and JupyterLab write notebooks cannot touch the real tree.
"""
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def course_notebooks():
    """Every notebook a user expects `pytest --nbval` to check: numbered ones and solutions."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("**/*.ipynb")
                  if not any(part.startswith(".") for part in p.parts))


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """A copy of the configuration and notebooks, with executed and checkpoint copies planted."""
    copy = tmp_path_factory.mktemp("repo")
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "notebooks", copy / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (copy / "tests").mkdir()
    (copy / "tests" / "test_unit.py").write_text("def test_unit():\n    pass\n")
    planted = [copy / "outputs" / "notebooks" / "01_data.ipynb",
               copy / "notebooks" / ".ipynb_checkpoints" / "01_data-checkpoint.ipynb"]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "notebooks" / "01_data.ipynb", path)
    return copy


def collected_files(repo, *args):
    """The files pytest collects (sorted, unique) for ``pytest *args --collect-only -q`` in ``repo``."""
    result = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q"],
                            cwd=repo, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    ids = [line.split("::")[0] for line in result.stdout.splitlines() if "::" in line]
    return sorted(set(ids))


def test_bare_nbval_collects_every_notebook_and_no_generated_copy(repo_copy):
    files = collected_files(repo_copy, "--nbval")
    assert [f for f in files if f.endswith(".ipynb")] == course_notebooks()
    assert "tests/test_unit.py" in files
    assert len(course_notebooks()) >= 7  # six numbered notebooks and the solutions


def test_one_notebook_alone(repo_copy):
    assert collected_files(repo_copy, "--nbval", "notebooks/03_fedavg_baseline.ipynb") == [
        "notebooks/03_fedavg_baseline.ipynb"]


def test_plain_pytest_collects_no_notebook(repo_copy):
    assert collected_files(repo_copy) == ["tests/test_unit.py"]


def test_outside_the_course_environment_one_sentence(tmp_path, repo_copy):
    """A Python without TFF (pytest alone on its path) stops at once with one line naming what to do."""
    bare = tmp_path / "site"
    bare.mkdir()
    for module in ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py.py"):
        source = pathlib.Path(pytest.__file__).parent.parent / module
        if source.exists():
            (bare / module).symlink_to(source)
    result = subprocess.run([sys.executable, "-S", "-m", "pytest", "--nbval"], cwd=repo_copy,
                            capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(bare), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 4, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "outside the course environment" in lines[0]
    assert "lacks tensorflow_federated" in lines[0] and "make test" in lines[0]
