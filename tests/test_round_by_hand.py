"""Notebook 03's round by hand (Keras: copy, one local epoch, deltas, weighted average, apply) is FedAvg.

Executes 03 in fast mode up to its exact check, in a kernel of this environment, and reads what the cells
printed: steps 3-5 by hand (each client's update, the average weighted by examples, the server's step) on the
clients' trained models must give `fed_avg.next`'s model to 1e-6, and the local training by hand must match
TFF's to float32 rounding (1e-4; notebook 03 says where the rest comes from).
"""
import os
import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "03_fedavg_baseline.ipynb"
LAST_CELL = "round-exact"


def printed(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.fixture(scope="module")
def executed():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    ids = [cell.get("id") for cell in notebook.cells]
    assert LAST_CELL in ids, f"notebook 03 has no cell {LAST_CELL!r}"
    notebook.cells = notebook.cells[:ids.index(LAST_CELL) + 1]
    assert os.environ["COURSE_FAST"] == "1" or pytest.skip("runs in fast mode only")
    NotebookClient(notebook, timeout=900, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return {cell.get("id"): cell for cell in notebook.cells}


def number(pattern, text):
    match = re.search(pattern + r"\s*([0-9.]+e[-+][0-9]+)", text)
    assert match, f"no line matching {pattern!r} in:\n{text}"
    return float(match.group(1))


def test_the_round_by_hand_is_fed_avg_next(executed):
    text = printed(executed[LAST_CELL])
    server_step = number(r"steps 3-5 by hand against fed_avg.next: largest difference", text)
    local = number(r"steps 1-2, local training, Keras by hand against TFF: largest difference", text)
    per_client = [float(d) for d in re.search(r"\(per client: ([^)]*)\)", text).group(1).split(", ")]
    assert len(per_client) == 3 and max(per_client) == local, text
    assert server_step < 1e-6, f"the weighted average by hand is {server_step} away from fed_avg.next"
    assert local < 1e-4, f"the local epoch by hand is {local} away from TFF's"
    errors = [o for cell in executed.values() for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0]["evalue"][:500]


def test_the_whole_round_by_hand_lands_on_fed_avg_next(executed):
    text = printed(executed["round-by-tff"])
    whole = number(r"the whole round, Keras by hand against fed_avg.next: largest difference", text)
    moved = number(r"moved the weights by up to", text)
    assert whole < 1e-4 < moved, (whole, moved)
    assert re.search(r"training accuracy of the round: ([0-9.]+)% \(TFF\), \1% \(by hand\)", text), text
