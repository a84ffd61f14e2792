"""What notebook 06 reads from the committed from-scratch frontier (helpers.frontier.scratch_results)."""
import pandas as pd
import pytest

from helpers.frontier import from_scratch, scratch_results, sweep
from helpers.runs import intervals
from tests.test_from_scratch_results import WHERE, history, results_with

TOPK = "top-1% values + indices"
PLAIN = {cohort: from_scratch.Row(sweep.IDENTITY, TOPK, cohort) for cohort in from_scratch.COHORTS}
EF = {cohort: from_scratch.Row(sweep.IDENTITY, TOPK, cohort, trainer="error_feedback")
      for cohort in from_scratch.COHORTS}


def entries(row, accuracies, bits=4):
    return [from_scratch.run_entry(row, seed, history(a, [bits] * 3), WHERE) for seed, a in enumerate(accuracies)]


def test_error_feedback_is_paired_with_the_same_compressor_in_the_same_cohort():
    results = results_with(entries(PLAIN["cross-device"], [.90, .92, .91]) + entries(EF["cross-device"], [.93, .94])
                           + entries(PLAIN["cross-silo"], [.70, .72]) + entries(EF["cross-silo"], [.71, .75]))
    assert [r.slug for r in from_scratch.HEADLINE if r.trainer == "error_feedback"][:2] == [
        EF["cross-device"].slug, EF["cross-silo"].slug]  # the headline rows this reads
    table = scratch_results.error_feedback_table(results).set_index("cohort")
    device = intervals.paired_difference([93, 94], [90, 92])  # seed 2 has no EF run: left out of the pair
    silo = intervals.paired_difference([71, 75], [70, 72])
    assert table.loc["cross-device", "EF change (points)"] == pytest.approx(device.mean)
    assert (table.loc["cross-device", "CI low"], table.loc["cross-device", "CI high"]) == pytest.approx(
        (device.low, device.high))
    assert table.loc["cross-silo", "EF change (points)"] == pytest.approx(silo.mean) and silo.mean == 2.0
    assert table.loc["cross-device", "without EF (%)"] == pytest.approx(91.0)  # the mean of all its seeds
    assert table.loc["cross-device", "seeds"] == 2


def test_a_row_with_one_paired_seed_has_no_interval():
    results = results_with(entries(PLAIN["cross-device"], [.90]) + entries(EF["cross-device"], [.93, .94]))
    assert scratch_results.paired_change(results, EF["cross-device"].slug, PLAIN["cross-device"].slug) is None
    assert scratch_results.error_feedback_table(results).empty


def test_warm_and_scratch_changes_line_up_by_method_not_by_trainer():
    identity = from_scratch.IDENTITY_ROW
    results = results_with(entries(identity, [.90, .92], bits=100) + entries(PLAIN["cross-device"], [.88, .89])
                           + entries(EF["cross-device"], [.91, .93]))
    scratch = from_scratch.summary_table(results)
    warm = pd.DataFrame({"broadcast": [sweep.IDENTITY, sweep.IDENTITY], "aggregation": [sweep.IDENTITY, TOPK],
                         "accuracy change (points)": [0.0, -0.5], "change CI low": [0.0, -0.9],
                         "change CI high": [0.0, -0.1]})
    both = scratch_results.warm_against_scratch(warm, scratch)
    assert list(both["label"]) == [TOPK]  # neither identity nor the EF row
    assert both["accuracy change (points) warm"].item() == -0.5
    assert both["accuracy change (points) scratch"].item() == pytest.approx(-2.5)


def test_the_provenance_line_names_commits_dates_and_machine():
    results = results_with(entries(PLAIN["cross-device"], [.90, .92]))
    for entry in results["runs"]:
        entry["machine"] = {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5}
    line = scratch_results.provenance_line(results)
    assert line.startswith("2 runs of 1 rows, trained at commit abc from 2026-12-07 00:00 to 2026-12-07 00:00 UTC")
    assert "AMD EPYC (2 cores, 23.5 GiB)" in line and line.endswith("data: EMNIST source: test")


def test_the_committed_file_is_the_one_read_in_fast_mode_too(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    results = scratch_results.committed_results()
    assert results["settings"]["rounds"] == 100 and results["settings"]["fast"] is False
    identity = [e for e in results["runs"] if e["row"] == from_scratch.IDENTITY_ROW.slug]
    assert sorted(e["seed"] for e in identity) == [0, 1, 2, 3, 4]
