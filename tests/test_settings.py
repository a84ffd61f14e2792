"""Fast-mode and seed parsing, the runs' settings, and the keys that saved runs are found by."""
import dataclasses
import functools
import hashlib
import importlib.util
import json
import pathlib

import pytest

from helpers import config, runs, training
from helpers.frontier import sweep
from helpers.runs import checkpoints
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


@pytest.mark.parametrize("value, fast, seeds", [("", "0", (0, 1, 2)), ("", "1", (0, 1)), ("5", "0", (0, 1, 2, 3, 4)),
                                               (" 2 ", "1", (0, 1))])
def test_course_seeds_sets_how_many_paired_seeds(monkeypatch, value, fast, seeds):
    monkeypatch.setenv("COURSE_SEEDS", value)
    monkeypatch.setenv("COURSE_FAST", fast)
    assert config.seeds() == seeds


@pytest.mark.parametrize("value", ["1", "0", "three", "-3", "2.5"])
def test_course_seeds_refuses_what_gives_no_interval(monkeypatch, value):
    monkeypatch.setenv("COURSE_SEEDS", value)
    with pytest.raises(ValueError, match=f"COURSE_SEEDS='{value}' is not understood.*2 or more"):
        config.seeds()


def test_full_size_settings(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    assert runs.run_settings("tutorial") == runs.RunSettings(
        rounds=10, clients_per_round=10, client_epochs=1, client_lr=0.02, server_lr=1.0, eval_every=5)
    long = runs.run_settings("long")
    assert (long.rounds, long.clients_per_round, long.server_lr_drop, long.keep_model_after) == (100, 10, (70, 0.1), (70,))
    row = sweep.sweep_settings()
    assert (row.warm_rounds, row.rounds, row.clients_per_round, row.eval_every) == (70, 20, 5, None)
    scratch = sweep.from_scratch_settings(clients=500)
    assert (scratch.warm_rounds, scratch.rounds, scratch.server_lr_drop, scratch.clients) == (0, 100, (70, 0.1), 500)


def test_fast_mode_shrinks_the_size_and_keeps_the_learning_rates(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    long = runs.run_settings("long")
    assert (long.rounds, long.clients_per_round, long.eval_every, long.fast) == (2, 3, 1, True)
    assert (long.client_lr, long.server_lr, long.server_momentum) == (0.1, 0.5, 0.9)
    row = sweep.sweep_settings()
    assert (row.warm_rounds, row.rounds, row.clients_per_round, row.fast) == (1, 1, 2, True)
    assert runs.LONG_RUN.rounds == 100  # the course's settings never change


def test_settings_are_frozen_and_changed_only_by_copy():
    long = runs.LONG_RUN
    with pytest.raises(dataclasses.FrozenInstanceError):
        long.rounds = 7
    shorter = long.replace(rounds=7, keep_model_after=())
    assert (shorter.rounds, long.rounds) == (7, 100)
    assert runs.run_settings("long", clients=12).clients == 12


@pytest.mark.parametrize("changes, message", [
    (dict(rounds=0), "rounds must be an integer of at least 1, got 0"),
    (dict(clients_per_round=2.5), "clients_per_round must be an integer"),
    (dict(client_lr=0), "client_lr must be a number above 0"),
    (dict(server_momentum=1.0), r"server_momentum must be in \[0, 1\)"),
    (dict(server_lr_drop=(70,)), "server_lr_drop must be"),
    (dict(eval_every=0), "eval_every must be None or an integer"),
    (dict(keep_model_after=(101,)), r"keep_model_after rounds \[101\] are outside rounds 1..100"),
    (dict(warm_rounds=-1), "warm_rounds must be an integer of at least 0"),
])
def test_bad_settings_are_refused_with_what_is_wrong(changes, message):
    with pytest.raises(ValueError, match="bad run settings: " + message):
        runs.LONG_RUN.replace(**changes)


def test_unknown_run_is_named():
    with pytest.raises(ValueError, match=r"unknown run 'sweep'; choose one of \['long', 'tutorial'\]"):
        runs.run_settings("sweep")  # the sweep's settings are sweep.sweep_settings()


def test_settings_key_hashes_the_settings_in_any_order():
    key = runs.settings_key(dict(rounds=2, lr=0.1))
    assert key == hashlib.sha256(b'{"lr": 0.1, "rounds": 2}').hexdigest()[:12]
    assert key == runs.settings_key(dict(lr=0.1, rounds=2))
    assert key != runs.settings_key(dict(rounds=3, lr=0.1))
    tutorial = runs.TUTORIAL
    assert runs.settings_key(tutorial) == runs.settings_key(json.loads(json.dumps(tutorial.as_dict())))
    assert runs.settings_key(tutorial) != runs.settings_key(tutorial.replace(client_lr=0.03))


def test_cached_history_trains_once_per_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    calls = []

    def train():
        calls.append(len(calls))
        return fake_history("run", (10, 5), 0.5)

    first, path = runs.cached_history("run", dict(rounds=2), train)
    again, same_path = runs.cached_history("run", dict(rounds=2), train)
    assert calls == [0] and same_path == path
    assert path == tmp_path / "runs" / f"run-{runs.settings_key(dict(rounds=2))}.json"
    assert again.rounds == first.rounds and again.config["rounds"] == 2
    assert f"loaded run from {path}" in capsys.readouterr().out
    runs.cached_history("run", dict(rounds=3), train)
    assert calls == [0, 1]
    assert capsys.readouterr().out == f"training run: its saved run ({path.name}) had other settings or code\n"


def test_cached_history_trains_again_when_the_code_it_trains_with_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    calls = []

    def train():
        calls.append(len(calls))
        return fake_history("run", (10, 5), 0.5)

    def eight_bit(spec):
        return 8

    def four_bit(spec):
        return 4

    runs.cached_history("run", dict(rounds=2), train, code=eight_bit)
    runs.cached_history("run", dict(rounds=2), train, code=eight_bit)
    assert calls == [0]
    runs.cached_history("run", dict(rounds=2), train, code=four_bit)  # same settings, other source
    assert calls == [0, 1]


def test_sweep_rows_are_cached_under_their_settings_methods_and_code(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    trained = []

    def train_fed_avg(model_fn, encoders, settings, train, evaluate_fn=None, seed=None, outputs=None, **kwargs):
        trained.append((outputs.name, seed))
        return fake_history(outputs.name, (1, 1), 0.5, seed=seed)

    monkeypatch.setattr(sweep, "warm_start", lambda *args, **kwargs: None)
    monkeypatch.setattr(training, "train_fed_avg", train_fed_avg)
    monkeypatch.setattr(training, "build_fed_avg", lambda *args: "a built process")
    settings = sweep.sweep_settings(clients=12)
    sign = "rotated 1-bit sign (DRIVE)"
    rows = [(sweep.IDENTITY, sweep.IDENTITY), (sweep.IDENTITY, sign)]

    def run(settings=settings, rows=rows):
        return sweep.run_sweep(None, settings, None, None, rows=rows, run_seeds=(0, 1))

    run()
    histories = run()
    identity, drive = "sweep-identity--identity", "sweep-identity--drive1"
    assert trained == [(identity, 0), (identity, 1), (drive, 0), (drive, 1)]  # the second sweep loaded all
    assert [[h.name for h in seed_runs] for seed_runs in histories.values()] == [[sweep.IDENTITY] * 2, [sign] * 2]
    assert [[h.config["seed"] for h in seed_runs] for seed_runs in histories.values()] == [[0, 1], [0, 1]]
    monkeypatch.setitem(sweep.METHODS, sign, functools.partial(sweep.METHODS[sign], block_size=512))
    run()
    assert trained[4:] == [(drive, 0), (drive, 1)]  # only the changed method trains again
    run(settings.replace(rounds=settings.rounds + 1), rows[:1])
    assert trained[6:] == [(identity, 0), (identity, 1)]
    sweep.run_sweep(None, settings, None, None, rows=rows[:1], run_seeds=(0, 1, 2))
    assert trained[8:] == [(identity, 2)]  # a third seed trains that seed alone


def test_method_code_follows_the_methods_source(monkeypatch):
    sign, eight = "rotated 1-bit sign (DRIVE)", "uniform 8-bit"
    before = {name: sweep.method_code(name) for name in (sign, eight)}
    assert before == {name: sweep.method_code(name) for name in (sign, eight)}  # stable
    real = sweep.checkpoints.code_digests

    def edited(files):  # as if research_stages.py had been edited
        return {f: (d + "x" if "research_stages" in f else d) for f, d in real(files).items()}

    monkeypatch.setattr(sweep.checkpoints, "code_digests", edited)
    assert sweep.method_code(sign) != before[sign]
    assert sweep.method_code(eight) == before[eight]  # tfmot's own method: only compression counts


def test_the_code_that_keys_saved_runs_and_checkpoints_exists():
    """A renamed module in CODE_MODULES or METHOD_SOURCES would hash as empty source: saved runs would not follow it."""
    root = pathlib.Path(checkpoints.__file__).resolve().parent.parent
    named = list(checkpoints.CODE_MODULES) + [m for files in sweep.METHOD_SOURCES.values() for m in files]
    assert [m for m in named if not (root / f"{m}.py").is_file()] == []
    assert [m for m in sweep.METHOD_SOURCES if importlib.util.find_spec(m) is None] == []
