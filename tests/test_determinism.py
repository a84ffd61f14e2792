"""Runs repeat bit for bit, and a run killed mid-way resumes to the same end (issue 15).

The expensive part is one module fixture that trains a short run (the course
CNN, 3 rounds of 2 clients, fast-mode data, ``tests/determinism_run.py``) in
fresh processes: twice as it is, once after unrelated TF ops and a Keras
model (an "extra cell") with TF's global seed set as notebooks set it, once
killed with SIGKILL after its round-1 checkpoint and started again, once with
other settings next to that checkpoint, and once on a damaged checkpoint.
Identity encoding: tfmot's stochastic rounding cannot be seeded
(:mod:`helpers.runs.seeds`). History comparisons leave out ``seconds`` (wall time)
and compare the Keras test loss to 1e-7 (see ``_assert_same``).
"""
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import tensorflow as tf

from helpers import data, model, training
from helpers.runs import checkpoints, seeds

SCRIPT = pathlib.Path(__file__).with_name("determinism_run.py")
REPO = SCRIPT.parent.parent
TIMEOUT = 900


def _command(options):
    return [sys.executable, str(SCRIPT), json.dumps(options)]


def _env(folder):
    return dict(os.environ, COURSE_FAST="1", COURSE_OUTPUT_DIR=str(folder / "outputs"),
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _start(options, folder):
    # Its own session, so that killing its process group also kills the TFF worker it starts.
    return subprocess.Popen(_command(options), env=_env(folder), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _finish(process):
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the run did not finish in {TIMEOUT} s:\n{out}\n{err[-3000:]}")
    return dict(code=process.returncode, out=out, err=err)


def _result(prefix):
    with np.load(f"{prefix}.npz") as saved:
        weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    history = json.loads(pathlib.Path(f"{prefix}.json").read_text())
    for record in history["rounds"]:
        record.pop("seconds")
    return dict(weights=weights, history=history)


def _group_alive(pgid):
    alive = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return alive


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("determinism")
    ckpt = folder / "checkpoints"
    out = {}
    # Three independent runs at once: two plain, one after an "extra cell".
    started = {name: _start(dict(options, out=str(folder / name)), folder) for name, options in [
        ("first", {}), ("second", {}), ("extra_cell", dict(noise=True, setup=True))]}
    for name, process in started.items():
        out[name] = _finish(process)
        assert out[name]["code"] == 0, out[name]["err"][-3000:]
        out[name].update(_result(folder / name))

    # Killed with SIGKILL while paused after saving round 1, then started again.
    process = _start(dict(out=str(folder / "killed"), checkpoint_dir=str(ckpt), pause_after=1), folder)
    deadline = time.monotonic() + TIMEOUT
    line = ""
    while "saved round 1" not in line and time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
    assert "saved round 1" in line, _finish(process)["err"][-3000:]
    run_folders = [p for p in ckpt.iterdir() if p.is_dir()]
    out["versions_at_kill"] = sorted(p.name for f in run_folders for p in f.iterdir() if p.is_dir())
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    out["killed_code"] = process.returncode
    time.sleep(1)
    out["left_alive"] = _group_alive(process.pid)
    out["killed_wrote_result"] = (folder / "killed.npz").exists()

    out["resumed"] = _finish(_start(dict(out=str(folder / "resumed"), checkpoint_dir=str(ckpt)), folder))
    assert out["resumed"]["code"] == 0, out["resumed"]["err"][-3000:]
    out["resumed"].update(_result(folder / "resumed"))
    out["run_folders"] = run_folders

    # Other settings next to that checkpoint: reported, not used.
    out["other"] = _finish(_start(dict(out=str(folder / "other"), checkpoint_dir=str(ckpt), rounds=1,
                                       client_lr=0.05), folder))
    assert out["other"]["code"] == 0, out["other"]["err"][-3000:]
    out["other"].update(_result(folder / "other"))

    # A damaged latest checkpoint: a clear message, nothing deleted.
    (run_folder,) = run_folders
    latest = run_folder / "round_3"
    for data_file in (latest / "variables").glob("variables.data-*"):
        data_file.write_bytes(b"not a checkpoint")
    out["damaged_files_before"] = sorted(str(p.relative_to(run_folder)) for p in run_folder.rglob("*"))
    out["damaged"] = _finish(_start(dict(out=str(folder / "damaged"), checkpoint_dir=str(ckpt)), folder))
    out["damaged_files_after"] = sorted(str(p.relative_to(run_folder)) for p in run_folder.rglob("*"))
    out["latest"] = latest
    return out


def _assert_same(a, b):
    """Bit-identical weights; identical rounds (clients, training loss and accuracy, bits) and test accuracy.

    The test loss is computed by Keras in this Python process, not in TFF's worker: on a loaded
    machine its float32 forward pass has differed in the 10th digit between processes for the same
    weights, so it is compared to 1e-7 relative (the accuracy, a count, exactly).
    """
    assert len(a["weights"]) == len(b["weights"]) == 8
    for x, y in zip(a["weights"], b["weights"]):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert a["history"]["rounds"] == b["history"]["rounds"]
    assert a["history"]["config"] == b["history"]["config"]
    evals_a, evals_b = a["history"]["evals"], b["history"]["evals"]
    assert [(e["round"], e["accuracy"]) for e in evals_a] == [(e["round"], e["accuracy"]) for e in evals_b]
    np.testing.assert_allclose([e["loss"] for e in evals_a], [e["loss"] for e in evals_b], rtol=1e-7, atol=0)


@pytest.mark.slow
def test_two_fresh_processes_give_bit_identical_weights_and_history(runs):
    _assert_same(runs["first"], runs["second"])
    history = runs["first"]["history"]
    assert [r["round"] for r in history["rounds"]] == [1, 2, 3]
    assert [e["round"] for e in history["evals"]] == [2, 3]
    assert len({tuple(r["clients"]) for r in history["rounds"]}) == 3  # other clients each round
    initial = seeds.initial_model_weights(model.build_model_fn(), 0)
    assert any(not np.allclose(w, i) for w, i in zip(runs["first"]["weights"], initial.trainable))


@pytest.mark.slow
def test_an_extra_cell_and_tf_global_seed_do_not_change_the_result(runs):
    _assert_same(runs["first"], runs["extra_cell"])


@pytest.mark.slow
def test_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(runs):
    assert runs["killed_code"] == -signal.SIGKILL
    assert not runs["killed_wrote_result"]
    assert runs["versions_at_kill"] == ["round_1"]
    assert runs["left_alive"] == []  # no TFF worker of the killed run is left
    assert "determinism: resuming after round 1" in runs["resumed"]["out"]
    _assert_same(runs["first"], runs["resumed"])


@pytest.mark.slow
def test_checkpoint_of_other_settings_is_reported_and_not_used(runs):
    (run_folder,) = runs["run_folders"]
    out = runs["other"]["out"]
    assert f"checkpoint {run_folder} is of run 'determinism' with other settings" in out
    assert "client_lr" in out and "not used" in out
    assert "resuming" not in out
    history = runs["other"]["history"]
    assert [r["round"] for r in history["rounds"]] == [1]
    assert history["rounds"][0]["clients"] == runs["first"]["history"]["rounds"][0]["clients"]
    assert not np.array_equal(runs["other"]["weights"][0], runs["first"]["weights"][0])


@pytest.mark.slow
def test_damaged_checkpoint_gives_a_clear_message_and_deletes_nothing(runs):
    damaged = runs["damaged"]
    assert damaged["code"] != 0
    assert "CheckpointError: the checkpoint of round 3 of run 'determinism' at " \
           f"{runs['latest']} cannot be read" in damaged["err"]
    assert f"Nothing was deleted: delete {runs['latest']} to resume from round 2." in damaged["err"]
    assert runs["damaged_files_after"] == runs["damaged_files_before"]
    assert "round_2" in runs["damaged_files_after"] and "manifest.json" in runs["damaged_files_after"]


# ------------------------------------------------------ seeds, in process --

def _order(dataset):
    return [int(e["label"]) * 1000 + i for i, e in enumerate(dataset.as_numpy_iterator())]


def _elements(n=60):
    return tf.data.Dataset.from_tensor_slices({"label": np.arange(n, dtype=np.int32)})


def test_shuffle_depends_on_its_seeds_alone():
    pair = seeds.shuffle_seeds(0, 1, "writer_0001")
    labels = [int(e["label"]) for e in seeds.shuffle(_elements(), 418, pair).as_numpy_iterator()]
    tf.random.set_seed(123)
    tf.random.uniform([3])  # moves TF's op counter
    again = [int(e["label"]) for e in seeds.shuffle(_elements(), 418, pair).as_numpy_iterator()]
    assert labels == again and sorted(labels) == list(range(60)) and labels != list(range(60))
    other_round = seeds.shuffle(_elements(), 418, seeds.shuffle_seeds(0, 2, "writer_0001"))
    other_client = seeds.shuffle(_elements(), 418, seeds.shuffle_seeds(0, 1, "writer_0002"))
    assert [int(e["label"]) for e in other_round.as_numpy_iterator()] != labels
    assert [int(e["label"]) for e in other_client.as_numpy_iterator()] != labels
    two_epochs = [int(e["label"]) for e in seeds.shuffle(_elements(), 418, pair).repeat(2).as_numpy_iterator()]
    assert two_epochs[:60] == labels and two_epochs[60:] != labels  # each epoch its own order


def test_make_federated_data_takes_the_round_from_run_rounds_context():
    class Clients:
        def create_tf_dataset_for_client(self, client_id):
            return _elements().map(lambda e: dict(label=e["label"], pixels=tf.zeros([28, 28])))

    def labels(datasets):
        return [[int(v) for _, y in ds.as_numpy_iterator() for v in y] for ds in datasets]

    ids = ["a", "b"]
    with seeds.round_seeds(5, 3):
        first = labels(data.make_federated_data(Clients(), ids))
    with seeds.round_seeds(5, 3):
        again = labels(data.make_federated_data(Clients(), ids))
    with seeds.round_seeds(5, 4):
        next_round = labels(data.make_federated_data(Clients(), ids))
    assert first == again and first[0] != first[1] and next_round[0] != first[0]
    assert sorted(first[0]) == list(range(60))


def test_client_sampling_per_round():
    draws = [seeds.sampling_rng(7, r).choice(100, 5, replace=False).tolist() for r in (1, 2, 1)]
    assert draws[0] == draws[2] != draws[1]
    assert seeds.sampling_rng(8, 1).choice(100, 5, replace=False).tolist() != draws[0]
    with pytest.raises(ValueError, match="integer >= 0"):
        seeds.sampling_rng(-1, 1)


def test_initial_weights_from_the_seed_alone_and_global_state_untouched():
    model_fn = model.build_model_fn()
    first = seeds.initial_model_weights(model_fn, 0)
    random.seed(99)
    np.random.seed(99)
    tf.random.set_seed(99)
    tf.random.uniform([2])
    python_next, numpy_next = random.Random(), None
    python_next.setstate(random.getstate())
    numpy_next = np.random.get_state()[1].copy()
    again = seeds.initial_model_weights(model_fn, 0)
    assert random.random() == python_next.random()  # Python's random state restored
    assert np.array_equal(np.random.get_state()[1], numpy_next)
    other = seeds.initial_model_weights(model_fn, 1)
    assert len(first.trainable) == 8
    assert all(np.array_equal(a, b) for a, b in zip(first.trainable, again.trainable))
    assert not np.array_equal(first.trainable[0], other.trainable[0])


# ------------------------------------------------- checkpoints, in process --

def _state(value):
    return dict(model=[np.full([3], value, np.float32), np.float32(value)], optimizer=(), step=np.int64(value))


def test_checkpoints_resume_the_latest_and_keep_two(tmp_path, capsys):
    run = checkpoints.RunCheckpoints(tmp_path, "run", dict(settings=dict(rounds=5)), every=2)
    assert run.resume(_state(0)) is None
    for round_num in range(1, 6):
        if run.due(round_num, 5):
            run.save(round_num, _state(round_num), dict(rounds=list(range(round_num))))
    assert sorted(p.name for p in run.folder.glob("round_*")) == ["round_4", "round_5"]
    state, history, done = checkpoints.RunCheckpoints(tmp_path, "run", dict(settings=dict(rounds=5))).resume(
        _state(0))
    assert done == 5 and history == dict(rounds=[0, 1, 2, 3, 4])
    assert np.array_equal(state["model"][0], np.full([3], 5, np.float32)) and int(state["step"]) == 5
    assert state["optimizer"] == ()
    assert "run: resuming after round 5" in capsys.readouterr().out


def test_other_settings_and_a_changed_manifest_are_reported_and_not_loaded(tmp_path, capsys):
    old = checkpoints.RunCheckpoints(tmp_path, "run", dict(settings=dict(rounds=5, lr=0.1)))
    old.save(1, _state(1), {})
    new = checkpoints.RunCheckpoints(tmp_path, "run", dict(settings=dict(rounds=5, lr=0.2)))
    assert new.folder != old.folder
    assert f"checkpoint {old.folder} is of run 'run' with other settings (lr); not used" in capsys.readouterr().out
    assert new.resume(_state(0)) is None and old.folder.exists()
    manifest = old.folder / checkpoints.MANIFEST
    manifest.write_text(manifest.read_text().replace('"lr": 0.1', '"lr": 0.3'))
    again = checkpoints.RunCheckpoints(tmp_path, "run", dict(settings=dict(rounds=5, lr=0.1)))
    out = capsys.readouterr().out
    assert f"checkpoint {old.folder} was written for other settings or code: settings (lr); not used" in out
    assert f"moved to {old.folder}-ignored-1" in out
    assert again.resume(_state(0)) is None
    assert (tmp_path / f"{old.folder.name}-ignored-1" / "round_1").is_dir()


def test_describe_tells_encoder_policies_apart_and_is_stable():
    from helpers import compression
    eight, four = compression.uniform_quantization(8), compression.uniform_quantization(4)
    assert checkpoints.describe(eight) == checkpoints.describe(compression.uniform_quantization(8))
    assert checkpoints.describe(eight) != checkpoints.describe(four)
    assert checkpoints.describe(eight) != checkpoints.describe(compression.identity())
    assert " at 0x" not in checkpoints.describe(eight)


def test_describe_does_not_change_once_an_evaluator_has_run():
    test_set = tf.data.Dataset.from_tensor_slices(
        (np.zeros([4, 28, 28, 1], np.float32), np.arange(4, dtype=np.int32))).batch(2)
    evaluate = training.keras_evaluator(model.create_original_fedavg_cnn_model, test_set)
    before = checkpoints.describe(evaluate)
    evaluate(seeds.initial_model_weights(model.build_model_fn(), 0))
    assert checkpoints.describe(evaluate) == before


UNRELATED_CELL = ("import numpy as np, tensorflow as tf\n"
                  "tf.random.uniform([7]); tf.keras.layers.Dense(3)(tf.ones([1, 4])); np.random.rand(5)\n"
                  "print('an unrelated cell')")


def _printed_results(notebook_path, tmp_path, extra_cell):
    """Every printed line with a loss or an accuracy (wall times removed) after running the notebook in fast mode."""
    import re

    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(notebook_path, as_version=4)
    if extra_cell:
        setup = next(i for i, c in enumerate(nb.cells) if "setup" in c.metadata.get("tags", []))
        nb.cells.insert(setup + 1, nbformat.v4.new_code_cell(UNRELATED_CELL))
    old = os.environ.get("COURSE_OUTPUT_DIR")
    os.environ["COURSE_OUTPUT_DIR"] = str(tmp_path / ("extra" if extra_cell else "plain"))  # no saved runs shared
    try:
        NotebookClient(nb, kernel_name="python3", timeout=TIMEOUT,
                       resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
    finally:
        os.environ.pop("COURSE_OUTPUT_DIR") if old is None else os.environ.update(COURSE_OUTPUT_DIR=old)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stdout")
    lines = [re.sub(r"~?\d+(\.\d+)? (s|min)\b( left)?|\d+/\d+", "", line) for line in text.splitlines()
             if re.search(r"loss|accuracy", line, re.I)]
    return lines


@pytest.mark.slow
def test_an_unrelated_cell_changes_no_printed_accuracy_or_loss_of_notebook_03(tmp_path):
    """Every cell of 03 that initializes, trains or evaluates starts from the seed, whatever ran before it."""
    notebook = REPO / "notebooks" / "03_fedavg_baseline.ipynb"
    plain = _printed_results(notebook, tmp_path, extra_cell=False)
    extra = _printed_results(notebook, tmp_path, extra_cell=True)
    assert any("training accuracy" in line and "by hand" in line for line in plain) and len(plain) >= 5, plain
    assert plain == extra, "\n".join(f"{a}\n  vs {b}" for a, b in zip(plain, extra) if a != b)
