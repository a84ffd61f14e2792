"""Notebooks share one setup cell, are committed without stray outputs, and the student notebook matches its solution."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_setup_cells_identical():
    result = subprocess.run([sys.executable, "scripts/notebook_cells.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_notebooks_committed_without_outputs_except_kept_references():
    for path in ROOT.glob("notebooks/**/*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code" and cell.get("outputs"):
                assert "keep_output" in cell["metadata"].get("tags", []), f"{path.name}: stray outputs"
