"""FetchSGD (helpers.frontier.fetchsgd): the count-sketch stage, the server state in sketch space, bits, the row.

The mechanism is tested on small vectors and a tiny bias-free linear model (7,840 weights), against an
independent NumPy version of the server's step; one round of the course CNN gives its exact bits. The
row's fast-mode run through ``scripts/frontier_from_scratch.py`` is not repeated here (it is the smoke
run of ``make frontier``), to keep ``make test`` short.
"""
import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from helpers import data, model, runs
from helpers.frontier import fetchsgd, from_scratch
from helpers.runs import checkpoints
from tests import stage_tests
from tests.synthetic import client_datasets

CNN_PARAMETERS = 1_663_370
CNN_SKETCH_BITS = 5_322_880  # 5 x 33,268 float32 cells, what one client sends per round
CNN_UPDATE_BITS = 53_227_840  # 1,663,370 float32 values, the identity broadcast per client
ROW = next(row for row in from_scratch.HEADLINE if row.trainer == "fetchsgd")


def sketch(stage, x):
    return stage.encode(tf.constant(x, tf.float32), {})[stage.SKETCH_KEY].numpy()


# ------------------------------------------------------------------ stage --

class CountSketchStageTest(stage_tests.StageTest):
    """tfmot's own tests of an encoding stage (graph mode, one-to-many and many-to-one, commutes with sum)."""

    def default_encoding_stage(self):
        return fetchsgd.CountSketchEncodingStage(rows=3, columns=16, seed=7)

    def default_input(self):
        return tf.random.normal([4, 10])

    @property
    def is_lossless(self):
        return False

    def common_asserts_for_test_data(self, data):
        table = data.encoded_x[fetchsgd.CountSketchEncodingStage.SKETCH_KEY]
        self.assertEqual(table.shape, (3, 16))
        self.assertEqual(data.decoded_x.shape, data.x.shape)
        # Each row holds every value once, with a sign: no row can hold more than the input's L1 mass.
        self.assertTrue(np.all(np.abs(table).sum(axis=1) <= np.abs(data.x).sum() + 1e-4))


def test_two_clients_sketches_sum_to_the_sketch_of_their_sum_with_the_shared_seed():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=1000), rng.normal(size=1000)
    client_a = fetchsgd.CountSketchEncodingStage(rows=5, columns=64, seed=3)
    client_b = fetchsgd.CountSketchEncodingStage(rows=5, columns=64, seed=3)  # another client, the same seed
    np.testing.assert_allclose(sketch(client_a, a) + sketch(client_b, b), sketch(client_a, a + b), atol=1e-5)
    other_seed = fetchsgd.CountSketchEncodingStage(rows=5, columns=64, seed=4)
    assert np.abs(sketch(other_seed, a) - sketch(client_a, a)).max() > 0.1  # other hashes, not summable


def test_unsketching_recovers_a_few_heavy_coordinates_when_the_sketch_is_large_enough():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.001, 10_000)
    heavy = np.array([17, 512, 4_000, 7_777, 9_998])
    x[heavy] = [10.0, -7.0, 5.0, -3.0, 2.0]
    large = fetchsgd.CountSketchEncodingStage(rows=5, columns=200, seed=38)
    indices, values = large.top_k(tf.constant(sketch(large, x)), 10_000, 5)
    order = np.argsort(indices.numpy())
    assert indices.numpy()[order].tolist() == heavy.tolist()
    np.testing.assert_allclose(values.numpy()[order], x[heavy], atol=0.02)
    small = fetchsgd.CountSketchEncodingStage(rows=5, columns=4, seed=38)  # 20 cells for 10,000 values
    indices, _ = small.top_k(tf.constant(sketch(small, x)), 10_000, 5)
    assert sorted(indices.numpy().tolist()) != heavy.tolist()


def test_unsketching_a_k_sparse_vector_without_collisions_is_exact():
    stage = fetchsgd.CountSketchEncodingStage(rows=5, columns=200, seed=38)
    heavy = np.array([17, 512, 4_000, 7_777, 9_998])
    cells = stage.hashes(10_000)[0].numpy()[:, heavy]
    assert all(len(set(row)) == len(heavy) for row in cells)  # no two heavy coordinates share a cell in any row
    x = np.zeros(10_000, np.float32)
    x[heavy] = [10.0, -7.0, 5.0, -3.0, 2.0]
    indices, values = stage.top_k(tf.constant(sketch(stage, x)), 10_000, 5)
    order = np.argsort(indices.numpy())
    np.testing.assert_array_equal(indices.numpy()[order], heavy)
    np.testing.assert_array_equal(values.numpy()[order], x[heavy])  # sign * sign * x, exactly


@pytest.mark.parametrize("make, message", [
    (lambda: fetchsgd.CountSketchEncodingStage(rows=0), "rows must be an integer of at least 1"),
    (lambda: fetchsgd.CountSketchEncodingStage(columns=2.5), "columns must be an integer"),
    (lambda: fetchsgd.FetchSGDFactory(fraction=0), r"fraction .* must be a number in \(0, 1\]"),
    (lambda: fetchsgd.FetchSGDFactory(momentum=1), r"momentum must be a number in \[0, 1\)"),
    (lambda: fetchsgd.FetchSGDFactory(lr_drop=(70,)), "server_lr_drop must be"),
    (lambda: fetchsgd.build_fetchsgd(model.build_model_fn(), {"server_lr": 0.5}), "must be a helpers.runs.RunSettings"),
])
def test_bad_settings_are_refused(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# --------------------------------------------------------- server state --

def reference_rounds(stage, rounds, k, lr, rho, lr_drop):
    """FetchSGD's server in NumPy (np.add.at, np.median, argsort): each round's Delta from the clients' values."""
    d = len(rounds[0][0][0])
    cells, signs = (t.numpy() for t in stage.hashes(d))
    momentum = error = np.zeros(stage.rows * stage.columns)
    deltas = []
    for number, (values, weights) in enumerate(rounds):
        mean = sum(w * v for v, w in zip(values, weights)) / sum(weights)
        table = np.zeros(stage.rows * stage.columns)
        np.add.at(table, cells.ravel(), (signs * mean).ravel())
        momentum = rho * momentum + table
        error = error + (lr if number < lr_drop[0] else lr_drop[1]) * momentum
        estimate = np.median(signs * error[cells], axis=0)
        top = np.argsort(-np.abs(estimate), kind="stable")[:k]  # ties: the lower index, as tf.math.top_k
        delta = np.zeros(d)
        delta[top] = estimate[top]
        deltas.append(delta)
        touched = cells[:, top].ravel()
        momentum, error = momentum.copy(), error.copy()
        momentum[touched] = error[touched] = 0
    return deltas


def test_server_state_carries_momentum_and_error_a_zero_round_still_applies_the_error():
    stage = fetchsgd.CountSketchEncodingStage(rows=3, columns=16, seed=5)
    factory = fetchsgd.FetchSGDFactory(stage, fraction=0.1, learning_rate=0.5, momentum=0.9, lr_drop=(2, 0.1))
    process = factory.create(tff.TensorType(np.float32, [60]), tff.TensorType(np.float32))
    rng = np.random.default_rng(2)
    zeros = np.zeros(60, np.float32)
    rounds = [([rng.normal(size=60).astype(np.float32) for _ in range(2)], [3.0, 1.0]),
              ([rng.normal(size=60).astype(np.float32) for _ in range(2)], [1.0, 2.0]),
              ([zeros, zeros], [1.0, 1.0])]  # nothing sent but zeros: the state alone moves the model
    state, deltas = process.initialize(), []
    for values, weights in rounds:
        output = process.next(state, values, weights)
        state = output.state
        deltas.append(output.result)
        assert output.measurements["aggregated_bits"] == 2 * 3 * 16 * 32  # two clients' sketches, 48 float32 each
    expected = reference_rounds(stage, rounds, k=6, lr=0.5, rho=0.9, lr_drop=(2, 0.1))
    for got, want in zip(deltas, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.count_nonzero(deltas[2]) == 6 and state["sketches"]["round"] == 3
    assert np.abs(state["sketches"]["error"]).sum() > 0 and np.abs(state["sketches"]["momentum"]).sum() > 0
    applied = stage.hashes(60)[0].numpy()[:, np.flatnonzero(deltas[2])].ravel()  # the cells Delta hashes to
    assert np.all(state["sketches"]["error"].ravel()[applied] == 0)
    assert np.all(state["sketches"]["momentum"].ravel()[applied] == 0)
    untouched = np.setdiff1d(np.arange(3 * 16), applied)
    assert np.count_nonzero(state["sketches"]["error"].ravel()[untouched]) > 0  # the rest waits for later rounds


def tiny_model_fn():
    """A bias-free linear model of the digits (7,840 weights): all-zero images give exactly zero updates."""
    return tff.learning.models.from_keras_model(
        tf.keras.Sequential([tf.keras.layers.InputLayer(input_shape=model.INPUT_SHAPE), tf.keras.layers.Flatten(),
                             tf.keras.layers.Dense(10, use_bias=False), tf.keras.layers.Softmax()]),
        input_spec=model.input_spec(), loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])


def test_as_fed_avg_the_server_applies_delta_sends_exact_bits_and_zero_updates_still_move_the_model():
    settings = runs.RunSettings(rounds=2, clients_per_round=3, client_lr=0.1, server_lr=0.5, server_momentum=0.9)
    process = fetchsgd.build_fetchsgd(tiny_model_fn, settings, rows=3, columns=500, fraction=0.01)  # k = 79
    state = process.initialize()
    before = process.get_model_weights(state).trainable[0]
    trained = process.next(state, client_datasets(3))
    after = process.get_model_weights(trained.state).trainable[0]
    assert trained.metrics["aggregator"]["aggregated_bits"] == 3 * 3 * 500 * 32  # 48,000 bits a client
    assert trained.metrics["distributor"]["broadcast_bits"] == 3 * 7_840 * 32
    assert 0 < np.count_nonzero(after - before) <= 79  # the server optimizer applies the sparse Delta as it is
    blank = [tf.data.Dataset.from_tensor_slices((np.zeros((20, 28, 28, 1), np.float32),
                                                 np.arange(20, dtype=np.int32) % 10)).batch(20)] * 3
    idle = process.next(trained.state, blank)
    assert idle.metrics["client_work"]["train"]["loss"] == pytest.approx(np.log(10), rel=1e-3)
    moved = process.get_model_weights(idle.state).trainable[0] - after
    assert 0 < np.count_nonzero(moved) <= 79  # zero updates: momentum and error in the state move it
    assert idle.state.aggregator["sketches"]["round"] == 2


def test_the_cnn_sends_exactly_rows_times_columns_float32_cells_per_client():
    model_fn = model.build_model_fn()
    process = fetchsgd.build_fetchsgd(model_fn, runs.RunSettings(rounds=1, clients_per_round=2))
    weights = process.get_model_weights(process.initialize()).trainable
    assert sum(np.size(w) for w in weights) == CNN_PARAMETERS
    assert fetchsgd.uplink_bits_per_client() == 5 * 33_268 * 32 == CNN_SKETCH_BITS
    output = process.next(process.initialize(), client_datasets(2))
    assert int(output.metrics["aggregator"]["aggregated_bits"]) == 2 * CNN_SKETCH_BITS
    assert int(output.metrics["distributor"]["broadcast_bits"]) == 2 * CNN_UPDATE_BITS
    moved = [np.count_nonzero(a - b) for a, b in zip(process.get_model_weights(output.state).trainable, weights)]
    assert 0 < sum(moved) <= 3_327  # k = ceil(0.2% of 1,663,370)


# ------------------------------------------------------------ the row --

def test_the_row_is_registered_last_and_keyed_by_the_code_of_fetchsgd():
    assert from_scratch.HEADLINE[-1] == ROW and ROW.slug == "identity--count_sketch--fetchsgd"
    assert from_scratch.TRAINERS["fetchsgd"] is fetchsgd.train_fetchsgd
    key = from_scratch.run_key(ROW, runs.RunSettings(rounds=2, clients_per_round=2), seed=0)
    assert key["trainer_code"] == checkpoints.code_digests(("frontier/fetchsgd", "compression", "training"))
    with pytest.raises(ValueError, match="a FetchSGD row has the broadcast 'identity'"):
        fetchsgd.train_fetchsgd(tiny_model_fn, from_scratch.IDENTITY_ROW, None, None, seed=0)


def tiny_clients(count):
    rng = np.random.default_rng(0)
    return tff.simulation.datasets.TestClientData({
        f"w{i}": collections.OrderedDict(label=rng.integers(0, 10, 30).astype(np.int32),
                                         pixels=rng.random((30, 28, 28), dtype=np.float32)) for i in range(count)})


class Stopped(Exception):
    """Raised to stop a run mid-way."""


def test_a_resumed_fetchsgd_run_is_bit_identical(tmp_path, monkeypatch, capfd):  # capfd: TFF starts its worker
    train = tiny_clients(4)
    settings = runs.RunSettings(rounds=3, clients_per_round=2, client_lr=0.1, server_lr=0.5, server_momentum=0.9,
                                server_lr_drop=(1, 0.1), eval_every=1)

    def evaluate(weights):  # the model's exact bits, through the History
        return dict(loss=0.0, accuracy=0.0, digest=checkpoints.array_digest(weights))

    def run(root):
        with checkpoints.enabled(root, every=1):
            return from_scratch.TRAINERS["fetchsgd"](tiny_model_fn, ROW, settings, train, evaluate, seed=1,
                                                     name="fetchsgd-resume", verbose=False)

    uninterrupted = run(tmp_path / "a")
    make_federated_data, calls = data.make_federated_data, []

    def stop_in_round_2(*args, **kwargs):  # after round 1's checkpoint, as a killed run would stop
        calls.append(1)
        if len(calls) == 2:
            raise Stopped
        return make_federated_data(*args, **kwargs)

    monkeypatch.setattr(data, "make_federated_data", stop_in_round_2)
    with pytest.raises(Stopped):
        run(tmp_path / "b")
    monkeypatch.setattr(data, "make_federated_data", make_federated_data)
    capfd.readouterr()
    resumed = run(tmp_path / "b")
    assert "resuming after round 1" in capfd.readouterr().out
    assert [dict(r, seconds=0) for r in resumed.rounds] == [dict(r, seconds=0) for r in uninterrupted.rounds]
    assert resumed.evals == uninterrupted.evals and len(uninterrupted.evals) == 3
    assert len({e["digest"] for e in uninterrupted.evals}) == 3  # the model moved every round
    assert all(r["aggregated_bits"] == 2 * CNN_SKETCH_BITS for r in uninterrupted.rounds)  # the default sketch


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 6])
def test_the_median_network_sorts_each_coordinate_as_sort_does(rows):
    values = np.random.default_rng(rows).integers(-3, 4, size=(rows, 500)).astype(np.float32)  # many ties
    ordered = fetchsgd._sorted_rows(tf.unstack(tf.constant(values), num=rows))
    np.testing.assert_array_equal(np.stack([r.numpy() for r in ordered]), np.sort(values, axis=0))
