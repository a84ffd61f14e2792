"""Client-side error feedback: nothing is lost, bits are exact, a resumed run is bit-identical, staleness is measured.

A tiny model (one dense layer of 7,850 values, 7,840 of them in a kernel
compressed above a threshold of 1,000) on tiny synthetic clients, where the point
is the mechanism; one round of the course CNN for its exact bits.
"""
import collections
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from helpers import compression, data, model, runs, training
from helpers.frontier import error_feedback as ef
from helpers.frontier import sweep
from helpers.runs import checkpoints, seeds
from helpers.runs.history import History

QUIET = runs.RunOutputs(verbose=False)
from tests.synthetic import client_datasets

TOP_K, SIGN = "top-1% values + indices", "1-bit sign, mean scale"
THRESHOLD = 1_000
KERNEL, BIAS = 7_840, 10
SEED = 3


def tiny_keras():
    return tf.keras.Sequential([tf.keras.layers.InputLayer(input_shape=model.INPUT_SHAPE),
                                tf.keras.layers.Flatten(), tf.keras.layers.Dense(10), tf.keras.layers.Softmax()])


def tiny_model_fn():
    return tff.learning.models.from_keras_model(
        tiny_keras(), input_spec=model.input_spec(), loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])


def tiny_clients(count, examples=(30, 50)):
    rng = np.random.default_rng(0)
    return tff.simulation.datasets.TestClientData({
        f"w{i}": collections.OrderedDict(label=rng.integers(0, 10, n).astype(np.int32),
                                         pixels=rng.random((n, 28, 28), dtype=np.float32))
        for i, n in zip(range(count), rng.integers(*examples, count))})


def evaluate(model_weights):  # deterministic and cheap: a number of the weights alone
    kernel = np.asarray(model_weights.trainable[0], np.float64)
    return dict(loss=float(np.sum(kernel ** 2)), accuracy=float(np.mean(kernel > 0)))


def datasets_fn(train):
    return lambda ids: data.make_federated_data(train, ids)


@pytest.fixture(scope="module")
def train():
    return tiny_clients(4)


@pytest.fixture(scope="module")
def top_k_process():
    settings = runs.RunSettings(rounds=1, clients_per_round=1, client_lr=0.1, server_lr=1.0)
    return ef.build_error_feedback_process(tiny_model_fn, ef.encoders_for(sweep.IDENTITY, TOP_K, THRESHOLD), settings)


@pytest.fixture
def top_k_rounds(top_k_process, tmp_path):  # a run's residual files in a folder of its own
    return ef.ErrorFeedbackRounds(top_k_process, tmp_path / "residuals")


def start(rounds):
    return rounds.set_model_weights(rounds.initialize(), seeds.initial_model_weights(tiny_model_fn, SEED))


def weights_of(path):
    return [np.asarray(w, np.float64) for w in training.load_weights(path).trainable]


# ------------------------------------------------------ the compressors --

@pytest.mark.parametrize("method", [TOP_K, SIGN])
def test_the_compressors_are_scale_equivariant(method):
    spec = tf.TensorSpec([140, 64], tf.float32)
    encoder = ef.encoders_for(sweep.IDENTITY, method, THRESHOLD).aggregation(spec)
    x = tf.random.stateless_normal(spec.shape, seed=[1, 2])
    for weight in (0.5, 3.0, 17.0, 123.4):
        scaled, plain = ef._compress(encoder, weight * x), weight * ef._compress(encoder, x)
        if method == TOP_K:  # the same positions, and (w x)_i == w (x_i) exactly
            np.testing.assert_array_equal(scaled, plain)
        else:
            np.testing.assert_allclose(scaled, plain, rtol=1e-6)


def test_only_deterministic_stateless_compressors_are_accepted():
    with pytest.raises(ValueError, match="deterministic, stateless, scale-equivariant"):
        ef.encoders_for(sweep.IDENTITY, "uniform 8-bit")


# ------------------------------------------------------- the invariant --

def test_what_a_client_sent_plus_its_residual_is_the_sum_of_its_updates(top_k_rounds, train, tmp_path):
    """Per client: sum over its rounds of what the server received from it, plus its final residual.

    One client per round and server SGD at 1.0 without momentum, so the server's step is
    exactly what that client sent (decoded, in update units). Each update is recomputed
    independently: plain FedAvg's client work from the same model on the same shuffle.
    """
    settings = runs.RunSettings(rounds=8, clients_per_round=1, client_lr=0.1, server_lr=1.0)
    client_ids = train.client_ids[:3]
    snapshots = {r: tmp_path / f"after-{r}.npz" for r in range(1, settings.rounds + 1)}
    state, history = training.run_rounds(top_k_rounds, datasets_fn(train), client_ids, settings, seed=SEED,
                                         state=start(top_k_rounds),
                                         outputs=runs.RunOutputs(verbose=False, snapshots=snapshots))
    plain = training.build_fed_avg(tiny_model_fn, compression.identity(), settings)
    before = [np.asarray(w, np.float64) for w in seeds.initial_model_weights(tiny_model_fn, SEED).trainable]
    sent, updates = collections.defaultdict(list), collections.defaultdict(list)
    for record in history.rounds:
        (client,) = record["clients"]
        after = weights_of(snapshots[record["round"]])
        sent[client].append([b - a for b, a in zip(before, after)])
        with seeds.round_seeds(SEED, record["round"]):
            dataset = data.make_federated_data(train, [client])
        weights = tff.learning.models.ModelWeights(trainable=[w.astype(np.float32) for w in before],
                                                   non_trainable=[])
        output = plain.next(plain.set_model_weights(plain.initialize(), weights), dataset)
        updates[client].append([b - np.asarray(a, np.float64) for b, a in
                                zip(before, plain.get_model_weights(output.state).trainable)])
        assert np.count_nonzero(sent[client][-1][0]) <= 79  # top-1% of the kernel's 7,840 values
        before = after
    assert len(sent) >= 2 and max(len(v) for v in sent.values()) >= 3  # clients came back
    for client in sent:
        residual = top_k_rounds.residual_of(state, client)
        total_sent = [sum(variables) for variables in zip(*sent[client])]
        total_updates = [sum(variables) for variables in zip(*updates[client])]
        for s, e, u in zip(total_sent, residual, total_updates):
            np.testing.assert_allclose(s + e, u, atol=2e-7, rtol=1e-5)
        assert np.linalg.norm(residual[0]) > 0.3 * np.linalg.norm(total_updates[0])  # most of it still waits
    assert top_k_rounds.residual_of(state, train.client_ids[3]) is None  # never sampled: no residual
    assert len(list((tmp_path / "residuals").glob("*.npy"))) == settings.rounds  # a file per client and round


def test_with_identity_encoders_it_is_fedavg_bit_for_bit(train, tmp_path):
    settings = runs.RunSettings(rounds=3, clients_per_round=2, client_lr=0.1, server_lr=0.5, server_momentum=0.9)
    encoders = ef.encoders_for(sweep.IDENTITY, sweep.IDENTITY, THRESHOLD)
    rounds = ef.ErrorFeedbackRounds(ef.build_error_feedback_process(tiny_model_fn, encoders, settings),
                                    tmp_path / "residuals")
    state, history = training.run_rounds(rounds, datasets_fn(train), train.client_ids, settings, seed=SEED,
                                         state=start(rounds), evaluate_fn=evaluate, outputs=QUIET)
    path = tmp_path / "fedavg.npz"
    fedavg = training.train_fed_avg(tiny_model_fn, encoders, settings, train, evaluate, seed=SEED,
                                    outputs=runs.RunOutputs(verbose=False, snapshots={settings.rounds: path}))
    for ours, theirs in zip(rounds.get_model_weights(state).trainable, training.load_weights(path).trainable):
        np.testing.assert_array_equal(ours, theirs)
    for ours, theirs in zip(history.rounds, fedavg.rounds):
        extra = {"residual_age", "clients_seen_before"}
        assert {k: v for k, v in ours.items() if k not in extra | {"seconds"}} == \
            {k: v for k, v in theirs.items() if k != "seconds"}
    assert history.evals == fedavg.evals
    residuals = [rounds.residual_of(state, c) for c in json.loads(state.clients)]
    assert len(residuals) >= 3 and not any(np.any(r) for residual in residuals for r in residual)  # none kept


# ---------------------------------------------------------------- bits --

def test_bits_per_client_and_round_are_exact_on_the_tiny_model(top_k_rounds, train):
    settings = runs.RunSettings(rounds=2, clients_per_round=2, client_lr=0.1, server_lr=1.0)
    _, history = training.run_rounds(top_k_rounds, datasets_fn(train), train.client_ids, settings, seed=SEED,
                                     state=start(top_k_rounds), outputs=QUIET)
    assert [r["broadcast_bits"] for r in history.rounds] == [2 * (KERNEL + BIAS) * 32] * 2
    assert [r["aggregated_bits"] for r in history.rounds] == [2 * (79 * 64 + BIAS * 32)] * 2


@pytest.mark.parametrize("method, bits", [
    (TOP_K, 512 * 64 + 16_057 * 64 + 6_538 * 32),        # top-1% of 51,200 and 1,605,632; the rest as float32
    (SIGN, (51_200 + 32) + (1_605_632 + 32) + 6_538 * 32),  # a bit per value and a scale each; the rest
])
def test_the_cnn_rows_send_exactly(method, bits):
    settings = runs.RunSettings(rounds=1, clients_per_round=2)
    process = ef.build_error_feedback_process(model.build_model_fn(), ef.encoders_for(sweep.IDENTITY, method),
                                              settings)
    specs = ef.ErrorFeedbackRounds(process, "unused").specs
    residuals = [[np.zeros(s.shape, np.float32) for s in specs]] * 2
    output = process.next(process.initialize(), client_datasets(2), residuals)
    assert int(output.metrics["distributor"]["broadcast_bits"]) == 2 * 53_227_840
    assert int(output.metrics["aggregator"]["aggregated_bits"]) == 2 * bits
    assert [r.shape for r in output.residuals[0]] == [s.shape for s in specs]
    assert sum(s.shape.num_elements() for s in specs) == 1_663_370  # 6,653,480 bytes of float32 per residual


# -------------------------------------------------------------- resume --

class Interrupted(Exception):
    pass


def test_a_run_interrupted_and_resumed_is_bit_identical(top_k_process, train, tmp_path, capsys):
    settings = runs.RunSettings(rounds=5, clients_per_round=2, client_lr=0.1, server_lr=0.5, server_momentum=0.9,
                                eval_every=2)
    fingerprint = dict(test="resume", settings=settings.as_dict())

    def run(datasets, folder):  # as train_error_feedback: the residual files in the checkpoint's folder
        checkpoint = checkpoints.RunCheckpoints(folder, "ef-resume", fingerprint, every=2, verbose=False)
        rounds = ef.ErrorFeedbackRounds(top_k_process, checkpoint.folder / "residuals")
        return rounds, *training.run_rounds(rounds, datasets, train.client_ids, settings, seed=SEED,
                                            state=start(rounds), evaluate_fn=evaluate,
                                            outputs=runs.RunOutputs(verbose=False, checkpoint=checkpoint))

    whole_rounds, whole_state, whole = run(datasets_fn(train), tmp_path / "whole")
    built = []

    def dying(ids):
        built.append(ids)
        if len(built) == 4:  # round 3 wrote residual files after the checkpoint of round 2
            raise Interrupted("killed while building round 4")
        return data.make_federated_data(train, ids)

    with pytest.raises(Interrupted):
        run(dying, tmp_path / "resumed")
    built.clear()
    capsys.readouterr()
    rounds, state, history = run(lambda ids: built.append(ids) or data.make_federated_data(train, ids),
                                 tmp_path / "resumed")
    assert "resuming after round 2" in capsys.readouterr().out and len(built) == 3  # rounds 3, 4, 5 only
    for ours, theirs in zip(rounds.get_model_weights(state).trainable,
                            whole_rounds.get_model_weights(whole_state).trainable):
        np.testing.assert_array_equal(ours, theirs)
    clients = json.loads(state.clients)
    assert clients == json.loads(whole_state.clients) and len(clients) >= 3
    np.testing.assert_array_equal(state.last_round, whole_state.last_round)
    assert any(r > 0 for r in whole.rounds[2]["residual_age"] if r is not None)  # round 3 read round 1-2 files
    for client in clients:
        for ours, theirs in zip(rounds.residual_of(state, client), whole_rounds.residual_of(whole_state, client)):
            np.testing.assert_array_equal(ours, theirs)
    assert np.any(rounds.residual_of(state, clients[0])[0])
    drop = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert drop(history.rounds) == drop(whole.rounds) and history.evals == whole.evals
    for path in rounds.folder.glob("*.npy"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="residual of client .* is missing.*delete the run's checkpoint"):
        rounds.residual_of(state, clients[0])


# ----------------------------------------------------------- staleness --

def test_residual_ages_are_measured_per_sampled_client(top_k_rounds, train):
    settings = runs.RunSettings(rounds=6, clients_per_round=2, client_lr=0.1, server_lr=1.0)
    _, history = training.run_rounds(top_k_rounds, datasets_fn(train), train.client_ids, settings, seed=SEED,
                                     state=start(top_k_rounds), outputs=QUIET)
    last_seen = {}
    for record in history.rounds:  # the ages, recomputed from the clients sampled
        expected = [record["round"] - last_seen[c] if c in last_seen else None for c in record["clients"]]
        assert record["residual_age"] == expected
        assert record["clients_seen_before"] == sum(a is not None for a in expected)
        last_seen.update({c: record["round"] for c in record["clients"]})
    summary = ef.staleness_summary(history)
    returning = [a for r in history.rounds for a in r["residual_age"] if a is not None]
    assert summary["client_rounds"] == 12 and summary["seen_before"] == len(returning) / 12
    assert summary["median_age"] == np.median(returning) and summary["max_age"] == max(returning)
    assert summary["seen_before_by_round"][0] == 0.0


def test_the_same_clients_every_round_keep_fresh_residuals(top_k_rounds, train):
    settings = runs.RunSettings(rounds=3, clients_per_round=2, client_lr=0.1, server_lr=1.0)
    _, history = training.run_rounds(top_k_rounds, datasets_fn(train), train.client_ids[:2], settings, seed=SEED,
                                     state=start(top_k_rounds), outputs=QUIET)
    assert [r["residual_age"] for r in history.rounds] == [[None, None], [1, 1], [1, 1]]
    summary = ef.staleness_summary(history)
    assert (summary["seen_before"], summary["median_age"], summary["max_age"]) == (4 / 6, 1.0, 1)


def test_the_staleness_of_a_run_without_residuals_is_refused():
    with pytest.raises(ValueError, match="no residual ages"):
        ef.staleness_summary(History("plain", rounds=[dict(round=1, clients=["a"])]))


def test_the_sampling_alone_gives_the_ages_a_run_meets(top_k_rounds, train):
    settings = runs.RunSettings(rounds=6, clients_per_round=2, client_lr=0.1, server_lr=1.0)
    _, history = training.run_rounds(top_k_rounds, datasets_fn(train), train.client_ids, settings, seed=SEED,
                                     state=start(top_k_rounds), outputs=QUIET)
    assert ef.sampled_ages(train.client_ids, settings, SEED) == [r["residual_age"] for r in history.rounds]
    assert ef.sampled_staleness(train.client_ids, settings, SEED) == ef.staleness_summary(history)


def test_staleness_is_printed_for_a_known_sampling(capsys):
    silo = runs.RunSettings(rounds=100, clients_per_round=10)
    ids = [f"w{i}" for i in range(10)]  # the same 10 clients every round: every residual is one round old
    assert ef.sampled_ages(ids, silo) == [[None] * 10] + [[1] * 10] * 99
    line = ef.print_staleness(ef.sampled_staleness(ids, silo), "cross-silo")
    assert line == ("cross-silo: 99.0% of 1,000 sampled clients had been seen before; their residuals were "
                    "1 round old at the median (at most 1)")
    assert capsys.readouterr().out == line + "\n"
    history = History("known", rounds=[dict(round=1, clients=["a", "b"], residual_age=[None, None]),
                                       dict(round=2, clients=["a", "c"], residual_age=[1, None]),
                                       dict(round=3, clients=["b", "a"], residual_age=[2, 1])])
    summary = ef.staleness_summary(history)
    assert summary == dict(client_rounds=6, seen_before=0.5, median_age=1.0, max_age=2,
                           seen_before_by_round=[0.0, 0.5, 1.0])
    assert ef.print_staleness(summary, "by hand") == ("by hand: 50.0% of 6 sampled clients had been seen before; "
                                                      "their residuals were 1 round old at the median (at most 2)")
    new_only = ef.staleness_summary(History("new", rounds=[dict(round=1, clients=["a"], residual_age=[None])]))
    assert ef.print_staleness(new_only, "one round").endswith("0.0% of 1 sampled clients had been seen before, "
                                                             "so no residual was ever used")


def test_the_full_size_cross_device_sampling_of_seed_0(capsys):
    """500 writers, 10 a round for 100 rounds (make frontier's cross-device cohort): the figures of seed 0."""
    settings = runs.RunSettings(rounds=100, clients_per_round=10)
    ids = [f"w{i:03d}" for i in range(500)]
    summary = ef.sampled_staleness(ids, settings, seed=0)
    assert summary["client_rounds"] == 1000 and summary["seen_before"] == 0.567  # 567 returning, 433 distinct
    assert (summary["median_age"], summary["max_age"]) == (19.0, 88)
    assert len({c for r in range(1, 101) for c in training.sample_clients(ids, 10, seeds.sampling_rng(0, r))}) == 433
    ef.print_staleness(summary, "cross-device, seed 0")
    assert capsys.readouterr().out == ("cross-device, seed 0: 56.7% of 1,000 sampled clients had been seen before; "
                                       "their residuals were 19 rounds old at the median (at most 88)\n")
