"""The one-page report of ``make course``: built from saved runs, and honest about what is missing."""
import pytest

from helpers import config, frontier, report, training
from tests.test_frontier import fake_history


@pytest.fixture
def output(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    return tmp_path


def test_report_names_what_is_missing(output):
    text = report.write_report().read_text()
    assert "Missing: `baseline` (run notebook 03), `8-bit both ways` (run notebook 04)" in text
    assert "(run notebook 06)" in text


def test_report_has_the_key_figures(output):
    full = 53_227_840
    for name, bits, accuracy in [("baseline", full, 0.956), ("8-bit both ways", 15_357_536, 0.951)]:
        history = fake_history(name, (bits, bits), accuracy, rounds=3, clients=10)
        history.config.update(rounds=3, clients_per_round=10, fast=False)
        history.save(config.output_dir("runs") / f"{name}-0123456789ab.json")
    histories = {row: fake_history(frontier.row_name(*row), (full, full), 0.93) for row in frontier.SWEEP}
    frontier.save_results(frontier.results_table(histories), config.output_dir("frontier"))
    text = report.write_report().read_text()
    assert "| baseline | 95.60% | 1.49 Gibit | 1.49 Gibit |" in text
    assert "(target 95%: met)" in text
    assert "3.47x fewer bits per direction, -0.50 accuracy points (target within 1 point: met)" in text
    assert text.count("| identity | rotated 1-bit sign (DRIVE) |") == 1
    assert "- aggregation only, >= 25x fewer uploaded bits, within 1 point: not met" in text
    assert (output / "report_accuracy.png").stat().st_size > 0
    assert training.History.load(next(config.output_dir("runs").glob("baseline-*.json"))).name == "baseline"
