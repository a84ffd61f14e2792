"""``make frontier``'s script in fast mode: a table over paired seeds that notebook 06 can show, and resumable."""
import json
import os
import subprocess
import sys

import pytest

from helpers import config, frontier

pytestmark = pytest.mark.slow
SCRIPT = config.repo_root() / "scripts" / "frontier_from_scratch.py"


def run_script(output, *rows):
    env = dict(os.environ, COURSE_FAST="1", COURSE_SEEDS="2", COURSE_OUTPUT_DIR=str(output), COURSE_HEADLESS="1")
    return subprocess.run([sys.executable, str(SCRIPT), "--rows", *rows], env=env, capture_output=True,
                          text=True, timeout=600)


def test_make_frontier_writes_a_paired_table_and_plot_and_resumes(tmp_path):
    first = run_script(tmp_path, "identity/uniform 1-bit")
    assert first.returncode == 0, first.stderr[-2000:]
    folder = tmp_path / "frontier_from_scratch"
    table = frontier.check_results_file(folder / "results.json", rows=[("identity", "identity"),
                                                                        ("identity", "uniform 1-bit")])
    assert len(table) == 2 and table["seeds"].tolist() == [2, 2]  # identity was added as the reference
    assert table.loc[0, "change CI low"] == table.loc[0, "change CI high"] == 0  # identity against itself
    assert (folder / "frontier.png").stat().st_size > 10_000
    assert len(list((tmp_path / "runs").glob("scratch-identity--uniform1-seed*.json"))) == 2
    again = run_script(tmp_path, "identity/uniform 1-bit")
    assert again.returncode == 0 and "loaded 4 saved runs from" in again.stdout, again.stdout  # nothing trained twice
    rows = json.loads((folder / "results.json").read_text())
    assert [r["accuracy change (points)"] for r in rows] == table["accuracy change (points)"].tolist()


def test_make_frontier_names_an_unknown_method(tmp_path):
    result = run_script(tmp_path, "identity/uniform 3-bit")
    assert result.returncode == 2
    assert "unknown method 'uniform 3-bit'; choose one of" in result.stderr
