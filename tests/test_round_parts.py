"""Where the costliest methods' time goes (helpers.frontier.round_parts): the parts, their file and what docs quote."""
import json
import re

import pytest

from helpers import config
from helpers.frontier import round_parts
from tests.test_fetchsgd import tiny_model_fn

COMMITTED = config.repo_root() / "results" / f"{round_parts.RESULTS_NAME}.json"
WHERE = dict(commit="abc", date="2026-12-07T00:00:00+00:00", machine={"cores": 2}, versions={})


def test_a_part_is_called_once_untimed_then_timed_and_summarised():
    calls = []
    seconds = round_parts.seconds_of(lambda: calls.append(1), 3)
    assert len(calls) == 4 and len(seconds) == 3 and all(s >= 0 for s in seconds)
    assert round_parts.summary([0.3, 0.1, 0.2]) == dict(seconds=[0.3, 0.1, 0.2], median=0.2, min=0.1, max=0.3)


def test_every_part_runs_on_a_small_model_and_the_file_loads_back(tmp_path):
    entries = round_parts.time_parts(tiny_model_fn, clients=2, repeats=1)
    names = [e["part"] for e in entries]
    assert names == ["fetchsgd: a client's count sketch", "control: a client's update passed in and summed",
                     "fetchsgd: the server's step", "error feedback: 2 residuals into TFF and back out",
                     "error feedback: 2 residual files written and read",
                     "control: a client's feedback step without a compressor",
                     "error feedback: a client's feedback step, top-1% values + indices",
                     "error feedback: a client's feedback step, 1-bit sign, mean scale"]
    assert all(e["min"] <= e["median"] <= e["max"] and len(e["seconds"]) == 1 for e in entries)
    path = round_parts.save_parts(entries, WHERE, tmp_path / "round_parts.json")
    assert [p.name for p in tmp_path.iterdir()] == ["round_parts.json"]  # no .partial left
    loaded = round_parts.load_parts(path)
    assert loaded["parts"] == json.loads(json.dumps(entries)) and loaded["commit"] == "abc"
    assert round_parts.part_of(loaded, names[0]) == loaded["parts"][0]
    with pytest.raises(KeyError, match="it holds"):
        round_parts.part_of(loaded, "nothing")


def test_a_missing_broken_or_foreign_parts_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="make bench-rounds"):
        round_parts.load_parts(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="invalid JSON"):
        round_parts.load_parts(tmp_path / "broken.json")
    (tmp_path / "foreign.json").write_text(json.dumps(dict(format=99)))
    with pytest.raises(ValueError, match="format 1"):
        round_parts.load_parts(tmp_path / "foreign.json")


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed results/round_parts.json yet")
def test_docs_quote_the_committed_parts():
    results = round_parts.load_parts(COMMITTED)
    text = (config.repo_root() / "docs" / "benchmarks.md").read_text()
    section = text.split("## Cost of a round", 1)[1].split("\n## ", 1)[0]
    quoted = re.findall(r"^\| (.+?) \| ([\d,.]+) ms \(([\d,.]+)-([\d,.]+)\) \|", section, re.M)
    assert len(quoted) == len(results["parts"])
    for name, median, low, high in quoted:
        entry = round_parts.part_of(results, name)
        assert (median, low, high) == tuple(f"{1000 * entry[k]:,.0f}" for k in ("median", "min", "max")), name
