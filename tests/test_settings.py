"""Fast-mode parsing, the runs' settings, and the keys that saved runs are found by."""
import functools
import hashlib

import pytest

from helpers import config, frontier, training
from tests.test_frontier import fake_history


@pytest.mark.parametrize("value, fast", [("1", True), ("true", True), (" YES ", True), ("on", True),
                                         ("", False), ("0", False), ("false", False), ("No", False),
                                         ("off", False)])
def test_fast_mode_reads_course_fast(monkeypatch, value, fast):
    monkeypatch.setenv("COURSE_FAST", value)
    assert config.fast_mode() is fast
    assert config.pick("full", "fast") == ("fast" if fast else "full")


def test_fast_mode_is_off_when_course_fast_is_unset(monkeypatch):
    monkeypatch.delenv("COURSE_FAST", raising=False)
    assert config.fast_mode() is False


@pytest.mark.parametrize("value", ["2", "fast", "y"])
def test_fast_mode_refuses_a_value_it_does_not_understand(monkeypatch, value):
    monkeypatch.setenv("COURSE_FAST", value)
    with pytest.raises(ValueError, match=f"COURSE_FAST='{value}' is not understood"):
        config.fast_mode()


def test_full_size_settings(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    assert training.run_settings("tutorial") == dict(rounds=10, clients_per_round=10, client_epochs=1,
                                                     client_lr=0.02, server_lr=1.0, eval_every=5, fast=False)
    long = training.run_settings("long")
    assert (long["rounds"], long["clients_per_round"], long["server_lr_drop"]) == (100, 10, [70, 0.1])
    sweep = frontier.sweep_settings()
    assert (sweep["warm_rounds"], sweep["rounds"], sweep["clients_per_round"]) == (70, 20, 5)


def test_fast_mode_shrinks_the_size_and_keeps_the_learning_rates(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    long = training.run_settings("long")
    assert (long["rounds"], long["clients_per_round"], long["eval_every"], long["fast"]) == (2, 3, 1, True)
    assert (long["client_lr"], long["server_lr"], long["server_momentum"]) == (0.1, 0.5, 0.9)
    sweep = frontier.sweep_settings()
    assert (sweep["warm_rounds"], sweep["rounds"], sweep["clients_per_round"]) == (1, 1, 2)
    long["rounds"] = 7  # a copy: the course's settings do not change
    assert training.run_settings("long")["rounds"] == 2 and training.LONG_RUN["rounds"] == 100


def test_unknown_run_is_named():
    with pytest.raises(ValueError, match=r"unknown run 'sweep'; choose one of \['long', 'tutorial'\]"):
        training.run_settings("sweep")  # the sweep's settings are frontier.sweep_settings()


def test_settings_key_hashes_the_settings_in_any_order():
    key = training.settings_key(dict(rounds=2, lr=0.1))
    assert key == hashlib.sha256(b'{"lr": 0.1, "rounds": 2}').hexdigest()[:12]
    assert key == training.settings_key(dict(lr=0.1, rounds=2))
    assert key != training.settings_key(dict(rounds=3, lr=0.1))


def test_cached_history_trains_once_per_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    calls = []

    def train():
        calls.append(len(calls))
        return fake_history("run", (10, 5), 0.5)

    first, path = training.cached_history("run", dict(rounds=2), train)
    again, same_path = training.cached_history("run", dict(rounds=2), train)
    assert calls == [0] and same_path == path
    assert path == tmp_path / "runs" / f"run-{training.settings_key(dict(rounds=2))}.json"
    assert again.rounds == first.rounds and again.config["rounds"] == 2
    assert f"loaded run from {path}" in capsys.readouterr().out
    training.cached_history("run", dict(rounds=3), train)
    assert calls == [0, 1]


def test_sweep_rows_are_cached_under_their_settings_methods_and_code(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    trained = []

    def train_fed_avg(model_fn, encoders, settings, train, evaluate_fn=None, name="run", **kwargs):
        trained.append(name)
        return fake_history(name, (1, 1), 0.5)

    monkeypatch.setattr(frontier, "warm_start", lambda *args, **kwargs: None)
    monkeypatch.setattr(training, "train_fed_avg", train_fed_avg)
    settings = dict(frontier.sweep_settings(), clients=12)
    sign = "rotated 1-bit sign (DRIVE)"
    rows = [(frontier.IDENTITY, frontier.IDENTITY), (frontier.IDENTITY, sign)]

    def sweep(settings=settings, rows=rows):
        return frontier.run_sweep(None, settings, None, None, rows=rows)

    sweep()
    histories = sweep()
    assert trained == [frontier.IDENTITY, sign]  # the second sweep loaded both rows
    assert [h.name for h in histories.values()] == [frontier.IDENTITY, sign]
    monkeypatch.setitem(frontier.METHODS, sign, functools.partial(frontier.METHODS[sign], block_size=512))
    sweep()
    assert trained[2:] == [sign]  # only the changed method trains again
    sweep(dict(settings, rounds=settings["rounds"] + 1), rows[:1])
    assert trained[3:] == [frontier.IDENTITY]


def test_method_code_follows_the_methods_source(monkeypatch):
    sign, eight = "rotated 1-bit sign (DRIVE)", "uniform 8-bit"
    before = {name: frontier.method_code(name) for name in (sign, eight)}
    assert before == {name: frontier.method_code(name) for name in (sign, eight)}  # stable
    real = frontier.checkpoints.code_digests

    def edited(files):  # as if research_stages.py had been edited
        return {f: (d + "x" if "research_stages" in f else d) for f, d in real(files).items()}

    monkeypatch.setattr(frontier.checkpoints, "code_digests", edited)
    assert frontier.method_code(sign) != before[sign]
    assert frontier.method_code(eight) == before[eight]  # tfmot's own method: only compression counts
