"""Notebook 03's round by hand (copy, one local epoch, deltas, weighted average, apply) is FedAvg.

Executes 03 in fast mode up to its check, in a kernel of this environment, and reads what the cells printed:
the clients' local training (a TF computation written by hand, run by TFF's runtime) and the server's step (in
NumPy) must give `fed_avg.next`'s model to 1e-6, and the same training accuracy.
"""
import os
import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "03_fedavg_baseline.ipynb"
LAST_CELL = "round-by-tff"


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


def test_the_round_by_hand_is_fed_avg_next_to_1e_6(executed):
    errors = [o for cell in executed.values() for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0]["evalue"][:500]
    text = printed(executed[LAST_CELL])
    whole = number(r"the whole round, by hand against fed_avg.next: largest difference", text)
    moved = number(r"moved the weights by up to", text)
    assert whole < 1e-6 and moved > 1e-4, (whole, moved)
    assert re.search(r"training accuracy of the round: ([0-9.]+)% \(TFF\), \1% \(by hand\)", text), text


def test_the_local_training_is_written_out_not_called_from_tff(executed):
    source = "".join(executed["local-training"].source)
    for step in ("tff.tensorflow.computation", "tf.GradientTape()", "forward_pass(batch", "assign_sub(",
                 "settings.client_lr"):
        assert step in source, f"notebook 03's local training no longer shows {step!r}"
    assert "build_model_delta_client_work" not in source and "fed_avg" not in source.split("def local_training")[1]
