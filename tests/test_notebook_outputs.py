"""No cell shows a student a wall of output: at most 40 lines, in fast mode and at full size.

- Fast mode: conftest.py checks every cell that `pytest --nbval` runs (tests/notebook_outputs.py).
- Full size: the executed copies that `make course` keeps in outputs/notebooks/, when they are there.
- By construction: the loops that print per round and per row stay short at full size (100 rounds, 18 sweep rows).
"""
import json
import os
import pathlib
import types

import pytest

from helpers import config, frontier, runs, training
from helpers.frontier import sweep
from tests import notebook_outputs

ROOT = pathlib.Path(__file__).resolve().parent.parent


def executed_copies():
    folders = {pathlib.Path(os.environ.get("COURSE_OUTPUT_DIR", ROOT / "outputs")), ROOT / "outputs"}
    return sorted({p for folder in folders for p in (folder / "notebooks").glob("0*.ipynb")})


@pytest.mark.parametrize("path", executed_copies() or [None], ids=lambda p: p.name if p else "none")
def test_executed_copies_have_no_wall_of_output(path):
    if path is None:
        pytest.skip("no executed copies in outputs/notebooks/ (make course writes them)")
    cells = json.loads(path.read_text())["cells"]
    for number, cell in enumerate(cells):
        lines = notebook_outputs.cell_lines(cell.get("outputs"))
        assert lines <= notebook_outputs.MAX_LINES, (
            f"{path.name}, cell {number} prints {lines} lines: {''.join(cell['source'])[:80]!r}")


class _Process:
    """A stand-in for a FedAvg process: every round reports the same metrics."""

    def __init__(self, broadcast, aggregated):
        self.bits = broadcast, aggregated

    def initialize(self):
        return 0

    def next(self, state, datasets):
        metrics = {"client_work": {"train": {"loss": 0.25, "sparse_categorical_accuracy": 0.9}},
                   "distributor": {"broadcast_bits": self.bits[0]}, "aggregator": {"aggregated_bits": self.bits[1]}}
        return types.SimpleNamespace(state=state + 1, metrics=metrics)

    def get_model_weights(self, state):
        return state


@pytest.mark.parametrize("settings", [runs.LONG_RUN, runs.TUTORIAL], ids=["long", "tutorial"])
def test_a_full_size_run_prints_a_line_every_tenth_round(settings, capsys):
    _, history = training.run_rounds(
        _Process(53_227_840 * 10, 53_227_840 * 10), lambda ids: ids, [f"c{i}" for i in range(20)],
        settings, evaluate_fn=lambda w: {"loss": 0.3, "accuracy": 0.95},
        outputs=runs.RunOutputs(name="baseline"))
    lines = capsys.readouterr().out.splitlines()
    assert len(history.rounds) == settings.rounds
    assert lines[0].startswith("baseline: ") and "test split" in lines[0]  # which run prints the lines
    round_lines = [line for line in lines if "training loss" in line]
    assert len(round_lines) == min(settings.rounds, 10), round_lines
    assert len(lines) <= notebook_outputs.MAX_LINES, lines
    assert all(len(line) <= 125 for line in lines), max(lines, key=len)
    assert all(line.count("each way") == 1 and " up " not in line for line in round_lines), round_lines[0]


def test_a_round_line_names_both_directions_only_when_they_differ():
    record = dict(round=3, loss=0.5, accuracy=0.5, seconds=1.0, broadcast_bits=2**20, aggregated_bits=2**21,
                  cumulative_broadcast_bits=3 * 2**20, cumulative_aggregated_bits=3 * 2**21)
    line = training.format_round(record)
    assert "1.00 Mibit down, 2.00 Mibit up" in line and "each way" not in line, line


def test_a_sweep_of_saved_runs_prints_one_line_for_all_of_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    for number in range(30):
        runs.cached_history(f"run{number}", {"n": number}, lambda: runs_history(), code=None)
    capsys.readouterr()
    with runs.one_line_for_loaded_runs():
        for number in range(30):
            runs.cached_history(f"run{number}", {"n": number}, lambda: pytest.fail("trained again"))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"loaded 30 saved runs from {config.output_dir('runs')} (delete a file to train that run "
                     "again)"], lines


def runs_history():
    from helpers.runs.history import History
    return History("run", {})


def test_the_sweep_prints_a_line_per_row_not_per_seed(monkeypatch, capsys):
    from helpers.runs.history import History

    def paired(*args, outputs, **kwargs):
        assert not outputs.verbose, "the sweep's row line already gives every seed's accuracy"
        return [History("row", {}, [], [{"round": 20, "accuracy": 0.95, "loss": 0.2}]) for _ in range(3)]

    monkeypatch.setattr(sweep.training, "train_paired", paired)
    settings = sweep.SWEEP_RUN.replace(warm_rounds=0)
    frontier.run_sweep(None, settings, None, None, run_seeds=(0, 1, 2))
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if line.startswith("row ")]) == len(frontier.sweep_rows())
    assert len(lines) + 3 <= notebook_outputs.MAX_LINES, lines  # and the cell's few lines around them
