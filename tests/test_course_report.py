"""The one-page report of ``make course``: built from saved runs, with intervals, and honest about what is missing."""
import pytest

from helpers import config, frontier, report
from helpers.runs import intervals
from helpers.runs.history import History
from tests.test_frontier import FULL, fake_history, seed_runs, sweep_histories


def every_sweep_row():
    """Three seeds of every row of the sweep; the sign row is 0.5 points below identity (-0.75 to -0.25)."""
    given = sweep_histories()
    identity = [0.900, 0.910, 0.920]
    return {row: given.get(row) or seed_runs(frontier.row_name(*row), (FULL, FULL), identity)
            for row in frontier.sweep_rows()}


@pytest.fixture
def output(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    return tmp_path


def test_report_names_what_is_missing(output):
    text = report.write_report().read_text()
    assert "Missing: `baseline` (run notebook 03), `8-bit both ways` (run notebook 04)" in text
    assert "Missing: no comparisons saved (run notebook 04)" in text
    assert "(run notebook 06)" in text
    assert "from scratch" not in text  # make frontier has not run: no section, no complaint
    assert not (output / "frontier_from_scratch").exists()  # and the report creates no empty folder for it


def test_report_has_the_key_figures_with_their_intervals(output):
    full = 53_227_840
    for name, bits, accuracy in [("baseline", full, 0.956), ("8-bit both ways", 15_357_536, 0.951)]:
        history = fake_history(name, (bits, bits), accuracy, rounds=3, clients=10)
        history.config.update(rounds=3, clients_per_round=10, fast=False)
        history.save(config.output_dir("runs") / f"{name}-0123456789ab.json")
    change = intervals.paired_difference([90.1, 90.4, 89.9], [90.0, 90.0, 90.0])
    intervals.save({"8-bit both ways, tutorial settings": change}, config.output_dir("comparisons") / "04_tutorial.json")
    frontier.save_results(frontier.results_table(every_sweep_row()), config.output_dir("frontier"))
    text = report.write_report().read_text()
    assert "| baseline | 95.60% | 1.49 Gibit | 1.49 Gibit |" in text
    assert "8-bit both ways sends 3.47x fewer bits per direction" in text
    assert "target" not in text.split("## Paired")[0]  # no single-seed verdicts
    assert f"- 8-bit both ways, tutorial settings: {change.describe()}; no difference shown" in text
    assert text.count("| identity | rotated 1-bit sign (DRIVE) |") == 1
    assert "| -0.5 | -0.75 | -0.25 | 3 |" in text  # the sign row's change and its interval, 3 seeds
    assert ("- aggregation only, >= 25x fewer uploaded bits, at most 1 point below identity: met by identity / "
            "rotated 1-bit sign (DRIVE)") in text
    assert (output / "report_accuracy.png").stat().st_size > 0
    assert History.load(next(config.output_dir("runs").glob("baseline-*.json"))).name == "baseline"


def test_report_shows_the_from_scratch_frontier_when_make_frontier_ran(output):
    frontier.save_results(frontier.results_table(sweep_histories()), config.output_dir("frontier_from_scratch"))
    text = report.write_report().read_text()
    assert "## The frontier from scratch (make frontier)" in text
    assert "![frontier](frontier_from_scratch/frontier.png)" in text
