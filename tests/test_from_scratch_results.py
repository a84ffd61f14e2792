"""The from-scratch frontier's results file (helpers.frontier.from_scratch): entries, summary, intervals, guards."""
import json

import pytest

from helpers import runs
from helpers.frontier import from_scratch, sweep
from helpers.runs import checkpoints, intervals
from helpers.runs.history import History

SETTINGS = runs.RunSettings(rounds=3, clients_per_round=2, clients=40, fast=True)
WHERE = dict(commit="abc", date="2026-12-07T00:00:00+00:00", machine={"cores": 2}, versions={})
TOPK = from_scratch.Row(sweep.IDENTITY, "top-1% values + indices")


def history(accuracy, aggregated_bits, seconds=(1.0, 2.0, 3.0)):
    rounds = [dict(round=r, clients=["a", "b"], seconds=s, broadcast_bits=1000, aggregated_bits=bits)
              for r, (s, bits) in enumerate(zip(seconds, aggregated_bits), start=1)]
    return History("run", {}, rounds, [dict(round=3, loss=1.0, accuracy=accuracy)])


def results_with(entries):
    results = from_scratch.empty_results(SETTINGS, "EMNIST source: test")
    results["runs"] = entries
    return results


def test_an_entry_keeps_exact_bits_per_round_and_the_provenance():
    entry = from_scratch.run_entry(TOPK, 0, history(0.5, [10, 10, 10]), WHERE)
    assert entry["aggregated_bits_per_round"] == 10 and entry["broadcast_bits_per_round"] == 1000
    assert from_scratch.bits_per_round(entry, "aggregated") == [10, 10, 10]
    varying = from_scratch.run_entry(TOPK, 0, history(0.5, [10, 12, 11]), WHERE)
    assert from_scratch.bits_per_round(varying, "aggregated") == [10, 12, 11]
    assert entry["seconds_per_round_median"] == 2.0 and entry["commit"] == "abc" and entry["seed"] == 0


def test_the_summary_pairs_each_row_with_its_cohorts_identity_by_seed():
    identity, silo = from_scratch.IDENTITY_ROW, from_scratch.Row(sweep.IDENTITY, sweep.IDENTITY, "cross-silo")
    entries = [from_scratch.run_entry(identity, s, history(a, [100] * 3), WHERE) for s, a in [(0, .90), (1, .92), (2, .91)]]
    entries += [from_scratch.run_entry(TOPK, s, history(a, [4] * 3), WHERE) for s, a in [(0, .88), (1, .91)]]
    entries += [from_scratch.run_entry(silo, s, history(a, [100] * 3), WHERE) for s, a in [(0, .5), (1, .6)]]
    summary = {row["row"]: row for row in from_scratch.summarise(results_with(entries))}
    topk = summary[TOPK.slug]
    expected = intervals.paired_difference([88, 91], [90, 92])  # seed 2 has no top-k run: left out of the pair
    assert topk["paired_seeds"] == [0, 1] and topk["change"] == pytest.approx(expected.mean)
    assert (topk["change_low"], topk["change_high"]) == pytest.approx((expected.low, expected.high))
    assert topk["reduction_aggregated"] == 25.0 and topk["reference"] == "identity--identity"
    assert summary[silo.slug]["reference"] == silo.slug and summary[silo.slug]["change"] == 0
    table = from_scratch.summary_table(results_with(entries))
    assert set(table["label"]) == {"identity", "top-1% values + indices", "identity, cross-silo"}
    assert table.loc[table["label"] == "top-1% values + indices", "aggregated bits"].item() == 12  # 3 rounds x 4


def test_saving_writes_json_and_csvs_that_load_back(tmp_path):
    path = tmp_path / "frontier_from_scratch.json"
    entries = [from_scratch.run_entry(from_scratch.IDENTITY_ROW, s, history(.9, [7] * 3), WHERE) for s in (0, 1)]
    from_scratch.save_results(results_with(entries), path)
    loaded = from_scratch.load_results(path)
    assert loaded["runs"] == json.loads(json.dumps(entries)) and len(loaded["summary"]) == 1
    assert (tmp_path / "frontier_from_scratch.csv").read_text().count("\n") == 3  # a header and one line per run
    assert "identity--identity" in (tmp_path / "frontier_from_scratch_summary.csv").read_text()
    assert from_scratch.find_run(loaded, from_scratch.IDENTITY_ROW, 1)["seed"] == 1
    assert from_scratch.find_run(loaded, TOPK, 0) is None


def test_a_broken_or_foreign_file_is_refused_with_what_to_do(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="invalid JSON.*make frontier"):
        from_scratch.load_results(broken)
    broken.write_text("[]")
    with pytest.raises(ValueError, match="not a from-scratch results file"):
        from_scratch.load_results(broken)
    with pytest.raises(FileNotFoundError, match="run `make frontier`"):
        from_scratch.load_results(tmp_path / "missing.json")


def test_runs_of_other_settings_are_never_mixed_into_a_file(tmp_path):
    path = tmp_path / "frontier_from_scratch.json"
    from_scratch.save_results(results_with([]), path)
    other = SETTINGS.replace(rounds=4)
    with pytest.raises(ValueError, match="other settings or data"):
        from_scratch.train_rows(None, [TOPK], other, (None, None, "EMNIST source: test"), (0, 1), path)


def test_the_silo_pool_is_fixed_by_the_seed_and_the_device_cohort_is_everyone():
    ids = [f"w{i}" for i in range(40)]
    silo = from_scratch.Row(sweep.IDENTITY, sweep.IDENTITY, "cross-silo")
    pool = from_scratch.cohort_clients(ids, silo, SETTINGS, seed=0)
    assert len(pool) == SETTINGS.clients_per_round and pool == from_scratch.cohort_clients(ids, silo, SETTINGS, 0)
    assert pool != from_scratch.cohort_clients(ids, silo, SETTINGS, seed=1)
    assert from_scratch.cohort_clients(ids, TOPK, SETTINGS, seed=0) == ids
    with pytest.raises(ValueError, match="unknown cohort"):
        from_scratch.Row(sweep.IDENTITY, sweep.IDENTITY, "cross-planet")


def test_every_headline_row_has_a_trainer_and_a_distinct_slug():
    slugs = [row.slug for row in from_scratch.HEADLINE]
    assert len(set(slugs)) == len(slugs)
    assert all(row.trainer in from_scratch.TRAINERS for row in from_scratch.HEADLINE)
    assert all(row.reference in from_scratch.HEADLINE for row in from_scratch.HEADLINE)


def test_an_error_feedback_run_is_keyed_by_its_code_and_other_keys_are_as_before():
    ef_row = next(r for r in from_scratch.HEADLINE if r.slug == "identity--topk1pct--error_feedback")
    key = from_scratch.run_key(ef_row, SETTINGS, seed=0)
    assert key["trainer"] == "error_feedback" and key["code"]["aggregation"] == sweep.method_code(TOPK.aggregation)
    assert set(key["trainer_code"]) == {"helpers/frontier/error_feedback.py", "helpers/training.py"}
    assert key["trainer_code"] == checkpoints.code_digests(("frontier/error_feedback", "training"))
    assert "trainer_code" not in from_scratch.run_key(TOPK, SETTINGS, seed=0)  # FedAvg rows' keys unchanged
    assert {r.slug for r in from_scratch.HEADLINE if r.trainer == "error_feedback"} == {
        "identity--topk1pct--error_feedback", "identity--topk1pct--error_feedback--cross-silo",
        "identity--sign1-mean--error_feedback"}
