"""``make frontier``'s script in fast mode: a results file of paired runs that resumes, and clear errors."""
import json
import os
import subprocess
import sys

import pytest

from helpers import config
from helpers.frontier import from_scratch

pytestmark = pytest.mark.slow
SCRIPT = config.repo_root() / "scripts" / "frontier_from_scratch.py"


def run_script(output, *arguments):
    env = dict(os.environ, COURSE_FAST="1", COURSE_OUTPUT_DIR=str(output), COURSE_HEADLESS="1")
    env.pop("COURSE_SEEDS", None)
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], env=env, capture_output=True,
                          text=True, timeout=600)


def test_make_frontier_writes_a_paired_results_file_and_resumes(tmp_path):
    first = run_script(tmp_path, "--rows", "identity--topk1pct")
    assert first.returncode == 0, first.stderr[-2000:]
    path = tmp_path / "results" / "frontier_from_scratch.json"  # fast mode never writes into results/
    results = from_scratch.load_results(path)
    assert sorted((e["row"], e["seed"]) for e in results["runs"]) == [
        ("identity--identity", 0), ("identity--identity", 1), ("identity--topk1pct", 0), ("identity--topk1pct", 1)]
    topk = next(r for r in results["summary"] if r["row"] == "identity--topk1pct")
    assert topk["paired_seeds"] == [0, 1] and "change_low" in topk
    assert all(e["commit"] and e["machine"]["cores"] and e["rounds"] == 2 for e in results["runs"])
    assert (tmp_path / "results" / "frontier_from_scratch.csv").exists()
    again = run_script(tmp_path, "--rows", "identity--topk1pct")
    assert again.returncode == 0 and "kept 4 runs already in" in again.stdout, again.stdout  # nothing trained twice
    assert json.loads(path.read_text())["runs"] == results["runs"]


def test_make_frontier_names_an_unknown_row(tmp_path):
    result = run_script(tmp_path, "--rows", "identity--uniform3")
    assert result.returncode == 2
    assert "unknown rows ['identity--uniform3']; choose slugs or labels of:" in result.stderr
