"""The round-cost benchmark's arithmetic and file (helpers.frontier.round_cost), without training anything."""
import json
import re

import pandas as pd
import pytest

from helpers import config, runs
from helpers.frontier import from_scratch, round_cost

SETTINGS = runs.RunSettings(rounds=3, clients_per_round=10, clients=500)
WHERE = dict(commit="abc", date="2026-12-07T00:00:00+00:00", machine={"cores": 2}, versions={})
COMMITTED = config.repo_root() / "results" / f"{round_cost.RESULTS_NAME}.json"


def entry(method="m", seconds=(2.0, 3.0, 8.0), identity=(1.0, 1.0, 2.0)):
    return dict(method=method, rows=[f"{method}-row", f"{method}-row--cross-silo"], trainer="fedavg",
                broadcast="identity", aggregation=method, **round_cost.compare(seconds, identity))


def test_the_ratio_is_taken_per_repeat_then_summarised():
    summary = round_cost.compare([2.0, 3.0, 8.0], [1.0, 1.0, 2.0])
    assert summary["ratios"] == [2.0, 3.0, 4.0]
    assert (summary["ratio_median"], summary["ratio_min"], summary["ratio_max"]) == (3.0, 2.0, 4.0)
    assert (summary["seconds_median"], summary["seconds_min"], summary["seconds_max"]) == (3.0, 2.0, 8.0)
    assert (summary["identity_seconds_median"], summary["identity_seconds_min"],
            summary["identity_seconds_max"]) == (1.0, 1.0, 2.0)
    assert summary["repeats"] == 3
    # The median of the per-repeat ratios (1 and 2), not the ratio of the medians (2.5 / 1.5):
    assert round_cost.compare([1.0, 4.0], [1.0, 2.0])["ratio_median"] == 1.5


def test_repeats_that_do_not_pair_up_are_refused():
    with pytest.raises(ValueError, match="same number of timed repeats"):
        round_cost.compare([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same number of timed repeats"):
        round_cost.compare([], [])
    with pytest.raises(ValueError, match="more than 0 seconds"):
        round_cost.compare([1.0], [0.0])


def test_the_headline_has_nine_distinct_methods_identity_first():
    found = round_cost.methods()
    assert [row.label for row, _ in found][:1] == ["identity"] and len(found) == 9
    slugs = {row.label: rows for row, rows in found}
    assert slugs["identity"] == ["identity--identity", "identity--identity--cross-silo"]
    assert slugs["top-1% + error feedback"] == ["identity--topk1pct--error_feedback",
                                                "identity--topk1pct--error_feedback--cross-silo"]
    assert sum(len(rows) for rows in slugs.values()) == len(from_scratch.HEADLINE)
    # Some rows only: identity comes first anyway, and is timed (as the control) but names no row.
    some = round_cost.methods([from_scratch.HEADLINE[-1]])
    assert [(row.trainer, rows) for row, rows in some] == [("fedavg", []), ("fetchsgd",
                                                                            ["identity--count_sketch--fetchsgd"])]


def test_the_file_saves_atomically_and_loads_back(tmp_path):
    path = tmp_path / "round_cost.json"
    results = round_cost.new_results([entry("identity", (1, 1, 1), (1, 1, 1)), entry("fetch")], SETTINGS,
                                     "EMNIST source: test", WHERE)
    json_path, csv_path = round_cost.save_results(results, path)
    assert (json_path, csv_path) == (path, tmp_path / "round_cost.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round_cost.csv", "round_cost.json"]  # no .partial left
    loaded = round_cost.load_results(path)
    assert loaded == json.loads(json.dumps(results)) and loaded["commit"] == "abc"
    assert loaded["settings"] == json.loads(json.dumps(SETTINGS.as_dict())) and loaded["clients_per_round"] == 10
    table = pd.read_csv(csv_path)
    assert list(table["method"]) == ["identity", "fetch"] and list(table["ratio_median"]) == [1.0, 3.0]
    assert table.loc[1, "rows"] == "fetch-row fetch-row--cross-silo" and set(table["commit"]) == {"abc"}
    assert round_cost.ratio_of(loaded, "fetch") == (3.0, 2.0, 4.0)
    assert round_cost.ratio_of(loaded, "fetch-row--cross-silo") == (3.0, 2.0, 4.0)
    with pytest.raises(KeyError, match="known"):
        round_cost.ratio_of(loaded, "nothing")


def test_a_missing_broken_or_foreign_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="make bench-rounds"):
        round_cost.load_results(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="invalid JSON"):
        round_cost.load_results(broken)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(dict(format=99)))
    with pytest.raises(ValueError, match="format 1"):
        round_cost.load_results(foreign)


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed results/round_cost.json yet")
def test_the_committed_file_holds_its_own_arithmetic_and_docs_quote_it():
    results = round_cost.load_results(COMMITTED)
    assert [e["method"] for e in results["methods"]][0] == "identity" and results["commit"]
    for e in results["methods"]:
        again = round_cost.compare(e["seconds"], e["identity_seconds"])
        assert {k: e[k] for k in again} == again, e["method"]
    # docs/benchmarks.md's round-cost table: every ratio it quotes is the file's, to 2 decimals.
    text = (config.repo_root() / "docs" / "benchmarks.md").read_text()
    section = text.split("## Cost of a round", 1)[1].split("\n## ", 1)[0]
    quoted = re.findall(r"^\| (.+?) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \(([\d.]+)-([\d.]+)x\) \|", section, re.M)
    assert len(quoted) == len(results["methods"])
    for method, seconds, identity, median, low, high in quoted:
        e = next(e for e in results["methods"] if e["method"] == method)
        assert (seconds, identity) == (f"{e['seconds_median']:.2f}", f"{e['identity_seconds_median']:.2f}")
        assert (median, low, high) == tuple(f"{e[k]:.2f}" for k in ("ratio_median", "ratio_min", "ratio_max"))
