"""Every method of the frontier sweep: decodes to the right shape and dtype, and is measured exactly.

The measured bits come from a real aggregation round of
:func:`helpers.compression.build_encoded_mean_factory`; the independent count
is a formula from how each method writes its output.
"""
import math
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import compression, runs, training
from helpers.frontier import sweep
from helpers.frontier import research_stages
from helpers.runs.history import History

BIG = (200, 64)   # 12,800 values: above the 10,000 threshold, so encoded
SMALL = (10,)     # below the threshold: sent as 320 bits
N = 12_800
SMALL_BITS = 10 * 32
MIN_MAX = 64      # two float32 sent by uniform quantization
SEED = 64         # two int32: the seed of a client's own rotation


def tfmot_packed(values, bits):
    """tfmot's bitpacking: 28 of every 32 bits used."""
    return math.ceil(values * bits / 28) * 32


def independent_bits(method):
    """Bits one client sends for the BIG tensor, counted from how the method writes it."""
    blocks = math.ceil(N / 1024)
    counts = {
        "identity": 32 * N,
        "uniform 8-bit": tfmot_packed(N, 8) + MIN_MAX,
        "uniform 4-bit": tfmot_packed(N, 4) + MIN_MAX,
        "uniform 2-bit": tfmot_packed(N, 2) + MIN_MAX,
        "uniform 1-bit": tfmot_packed(N, 1) + MIN_MAX,
        "Hadamard 4-bit": tfmot_packed(16_384, 4) + MIN_MAX,   # padded to a power of two
        "Kashin 4-bit": tfmot_packed(16_384, 4) + MIN_MAX,
        "non-uniform 4-bit (05a)": tfmot_packed(N, 4) + 16 * 32,  # indices + level table
        "adaptive 4-bit (05c)": tfmot_packed(N, 4) + 32,         # + the client's max |x| statistic
        "rotated 2-bit, tight": blocks * 1024 * 2 + MIN_MAX + SEED,
        "rotated 1-bit sign (DRIVE)": blocks * 1024 + blocks * 32 + SEED,
        "rotated 1-bit sign, one shared rotation": blocks * 1024 + blocks * 32,  # no seed sent
        "top-1% values + indices": math.ceil(0.01 * N) * 64,
        "nearest 4-bit, tight": N * 4 + MIN_MAX,
        "1-bit sign, mean scale": N + 32,                       # one bit per value, one float32 scale
        "QSGD 4-bit": 25 * 512 * 4 + 25 * 32,                   # 25 buckets of 512: 4-bit levels + a norm each
        "QSGD 2-bit": 25 * 512 * 2 + 25 * 32,
        "TernGrad": N * 2 + 32,                                 # 2-bit levels, one max |x|
    }
    return counts.get(method)


def huffman_bits(encoded):
    """Huffman output is data dependent: count the numpy bytes of an eager encoding instead."""
    return sum(np.asarray(t).nbytes * 8 for t in tf.nest.flatten(encoded))


@pytest.fixture(scope="module")
def client_values():
    rng = np.random.default_rng(0)
    # Values on an 8-bit grid with min and max present, so stochastic rounding
    # is exact and the Huffman output is the same in the round and eagerly.
    levels = rng.binomial(255, 0.5, size=[2, N]).astype(np.float32)
    levels[:, 0], levels[:, 1] = 0.0, 255.0
    big = (levels * 1e-4).reshape([2, *BIG])
    small = rng.normal(size=[2, *SMALL]).astype(np.float32)
    return [[big[i], small[i]] for i in range(2)]


def mean_round(encoder_fn, client_values):
    value_type = tff.types.to_type([(np.float32, BIG), (np.float32, SMALL)])
    process = compression.build_encoded_mean_factory(encoder_fn).create(
        value_type, tff.TensorType(np.float32))
    output = process.next(process.initialize(), client_values, [1.0, 1.0])
    return output.result, int(output.measurements["aggregated_bits"])


@pytest.mark.parametrize("method", sorted(sweep.METHODS))
def test_measured_aggregated_bits_match_an_independent_count(method, client_values):
    encoders = sweep.encoder_fns(sweep.IDENTITY, method)
    result, bits = mean_round(encoders.aggregation, client_values)
    assert [r.shape for r in result] == [BIG, SMALL]
    assert [np.asarray(r).dtype for r in result] == [np.float32, np.float32]
    expected = independent_bits(method)
    if expected is None:  # Huffman: count an eager encoding of the same values
        encoder = te.encoders.as_gather_encoder(sweep.METHODS[method](), tf.TensorSpec(BIG))
        params = encoder.get_params(encoder.initial_state())[0]
        sent = [huffman_bits(encoder.encode(tf.constant(big), params)[0]) for big, _ in client_values]
        assert all(0 < s < tfmot_packed(N, 8) for s in sent), sent
        assert bits == sum(sent) + 2 * SMALL_BITS, (method, bits, sent)
        return
    assert bits == 2 * (expected + SMALL_BITS), (method, bits, 2 * (expected + SMALL_BITS))


@pytest.mark.parametrize("method", sorted(sweep.METHODS))
def test_broadcast_encoder_decodes_to_shape_and_dtype(method):
    spec = tf.TensorSpec(BIG, tf.float32)
    encoder = sweep.encoder_fns(method, sweep.IDENTITY).broadcast(spec)
    x = tf.random.normal(BIG, stddev=0.01, seed=1)
    state = encoder.initial_state()
    for _ in range(3):  # a few rounds, so that adaptive encoders have adapted
        encoded, state = encoder.encode(x, state)
    decoded = encoder.decode(encoded)
    assert decoded.shape == BIG and decoded.dtype == tf.float32
    # Lossy (1-bit stochastic rounding is very noisy), but pointing the right way.
    cosine = float(tf.reduce_sum(decoded * x) / (tf.norm(decoded) * tf.norm(x)))
    assert cosine > 0.2, (method, cosine)


def test_lossless_and_rotation_stages_invert_exactly():
    x = tf.random.normal([3, 700], seed=2)
    block = research_stages.BlockReshapeEncodingStage(256)
    blocks = block.encode(x, {})[block.ENCODED_VALUES_KEY]
    assert blocks.shape == (9, 256)  # 2,100 values -> 9 rows of 256
    np.testing.assert_array_equal(block.decode({block.ENCODED_VALUES_KEY: blocks}, {},
                                               shape=tf.shape(x)), x)
    ints = tf.constant(np.arange(64) % 4, tf.float32)
    pack = research_stages.TightBitpackingEncodingStage(2)
    packed = pack.encode(ints, {})[pack.ENCODED_VALUES_KEY]
    assert packed.dtype == tf.uint8 and packed.shape == (16,)
    np.testing.assert_array_equal(pack.decode({pack.ENCODED_VALUES_KEY: packed}, {},
                                              shape=tf.shape(ints)), ints)


@pytest.mark.parametrize("d", [1, 2, 8, 1024])
def test_hadamard_rows_matches_tfmot_and_inverts(d):
    x = tf.random.normal([3, d], seed=4)
    np.testing.assert_allclose(research_stages.hadamard_rows(x), te.utils.fast_walsh_hadamard_transform(x),
                               atol=1e-5)
    np.testing.assert_allclose(research_stages.hadamard_rows(research_stages.hadamard_rows(x)), x, atol=1e-5)


@pytest.mark.parametrize("shared_seed", [None, 5])
def test_rotation_stage_inverts_and_draws_a_rotation_per_client_unless_shared(shared_seed):
    stage = research_stages.ClientRotationEncodingStage(shared_seed)
    clients = [tf.random.normal([4, 256], seed=s) for s in (1, 2)]
    encoded = [stage.encode(x, {}) for x in clients]
    for x, e in zip(clients, encoded):
        np.testing.assert_allclose(stage.decode(e, {}), x, atol=1e-5)
    if shared_seed is None:
        assert [sorted(e) for e in encoded] == [[stage.ENCODED_VALUES_KEY, stage.SEED_KEY]] * 2
        assert encoded[0][stage.SEED_KEY].numpy().tolist() != encoded[1][stage.SEED_KEY].numpy().tolist()
    else:  # the same rotation: rotating the sum equals summing the rotations
        assert [sorted(e) for e in encoded] == [[stage.ENCODED_VALUES_KEY]] * 2
        both = stage.encode(clients[0] + clients[1], {})[stage.ENCODED_VALUES_KEY]
        np.testing.assert_allclose(both, sum(e[stage.ENCODED_VALUES_KEY] for e in encoded), atol=1e-4)


def test_sign_stage_keeps_signs_and_the_drive_scale():
    x = tf.constant([[3.0, -1.0, 0.5, -0.5, 2.0, -2.0, 1.0, -1.0]])
    stage = research_stages.OneBitSignEncodingStage()
    decoded = stage.decode(stage.encode(x, {}), {})
    scale = float(tf.reduce_sum(x ** 2) / tf.reduce_sum(tf.abs(x)))
    np.testing.assert_allclose(decoded, np.sign(x) * scale, rtol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: research_stages.BlockReshapeEncodingStage(1000), "power of two"),
    (lambda: research_stages.TightBitpackingEncodingStage(3), "one of"),
    (lambda: research_stages.TopKEncodingStage(0), r"\(0, 1\]"),
    (lambda: research_stages.ClientRotationEncodingStage("7"), "shared_seed must be None or an int"),
    (lambda: sweep.encoder_fns(sweep.IDENTITY, "uniform 3-bit"), "unknown method 'uniform 3-bit'"),
    (lambda: sweep.encoder_fns(None, sweep.IDENTITY), "unknown method None.*'identity' for an uncompressed"),
])
def test_bad_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def fake_history(name, bits, accuracy, rounds=2, clients=3, seed=0):
    history = History(name, dict(seed=seed))
    for r in range(1, rounds + 1):
        history.rounds.append(dict(round=r, clients=list(range(clients)), seconds=1.0 + r,
                                   broadcast_bits=bits[0] * clients, aggregated_bits=bits[1] * clients,
                                   cumulative_broadcast_bits=bits[0] * clients * r,
                                   cumulative_aggregated_bits=bits[1] * clients * r))
    history.evals.append(dict(round=rounds, loss=0.1, accuracy=accuracy))
    return history


def seed_runs(name, bits, accuracies):
    """One fake History per seed 0, 1, ... with these final accuracies."""
    return [fake_history(name, bits, accuracy, seed=seed) for seed, accuracy in enumerate(accuracies)]


FULL = 53_227_840
DRIVE_BITS = 1_917_824


def sweep_histories():
    """Three seeds of three rows: the sign row's differences to identity are -0.4, -0.5, -0.6 points."""
    return {
        ("identity", "identity"): seed_runs("identity", (FULL, FULL), [0.900, 0.910, 0.920]),
        ("identity", "rotated 1-bit sign (DRIVE)"): seed_runs("sign", (FULL, DRIVE_BITS), [0.896, 0.905, 0.914]),
        ("uniform 8-bit", "uniform 8-bit"): seed_runs("8/8", (15_357_536, 15_357_536), [0.880, 0.920, 0.900]),
    }


def test_results_table_has_every_row_and_column_against_identity():
    histories = sweep_histories()
    table = sweep.results_table(histories)
    assert list(table.columns) == sweep.COLUMNS and len(table) == 3
    sign = table.iloc[1]
    assert sign["direction"] == sweep.AGGREGATION_ONLY
    assert sign["aggregated bits"] == DRIVE_BITS * 3 * 2
    assert sign["reduction (aggregated)"] == pytest.approx(FULL / DRIVE_BITS)
    assert sign["aggregated bits per value"] == pytest.approx(DRIVE_BITS / 1_663_370)
    assert sign["test accuracy (%)"] == pytest.approx(90.5)
    # differences -0.4, -0.5, -0.6: mean -0.5, sd 0.1, t(0.975, 2) = 4.302653
    assert sign["accuracy change (points)"] == pytest.approx(-0.5)
    half = 4.302652729911275 * 0.1 / 3 ** 0.5
    assert (sign["change CI low"], sign["change CI high"]) == pytest.approx((-0.5 - half, -0.5 + half))
    assert sign["seeds"] == 3
    assert table.iloc[2]["reduction (total)"] == pytest.approx(FULL / 15_357_536)
    assert table.iloc[0]["seconds per round"] == 2.5
    best = sweep.best_within(table, sweep.AGGREGATION_ONLY, "reduction (aggregated)", 25, 1.0)
    assert best["aggregation"] == "rotated 1-bit sign (DRIVE)"
    # Its mean (-0.5) is within 0.6 points, but its interval reaches -0.75: not shown to be within.
    assert sweep.best_within(table, sweep.AGGREGATION_ONLY, "reduction (aggregated)", 25, 0.6) is None
    with pytest.raises(ValueError, match="identity row"):
        sweep.results_table({k: v for k, v in histories.items() if k != ("identity", "identity")})


def test_results_table_refuses_rows_of_other_seeds():
    histories = sweep_histories()
    histories[("identity", "uniform 1-bit")] = seed_runs("1-bit", (FULL, 100), [0.9, 0.9])
    with pytest.raises(ValueError, match=r"runs \[\('identity', 'uniform 1-bit'\)\] used other seeds"):
        sweep.results_table(histories)


def test_pareto_front():
    front = sweep.pareto_front([10, 5, 5, 1], [0.9, 0.9, 0.8, 0.5])
    assert front.tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match="differ in length"):
        sweep.pareto_front([1, 2], [0.5])


def test_warm_start_loads_the_long_runs_snapshot_instead_of_training(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    settings = sweep.sweep_settings(clients=12)
    path = sweep.warm_start_path(settings)
    assert path.parent == tmp_path / "runs"
    assert path != sweep.warm_start_path(settings.replace(clients=13))  # another dataset, another file
    weights = [np.full((2, 3), 0.5, np.float32), np.arange(4, dtype=np.float32)]
    training.save_weights(tff.learning.models.ModelWeights(trainable=weights, non_trainable=[]), path)

    def no_training(*args, **kwargs):
        raise AssertionError("warm_start trained although the snapshot was saved")

    monkeypatch.setattr(training, "train_fed_avg", no_training)
    loaded = sweep.warm_start(None, settings, train=None).trainable
    assert [a.tolist() for a in loaded] == [a.tolist() for a in weights]


@pytest.mark.parametrize("fast", ["1", "0"])
def test_the_sweep_starts_where_notebook_03s_long_run_keeps_its_model(monkeypatch, tmp_path, fast):
    """Notebook 03 keeps the long run's model with runs.kept_models; the sweep finds it there."""
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_FAST", fast)
    long_settings = runs.run_settings("long", clients=12)  # as notebook 03 builds it
    settings = sweep.sweep_settings(clients=12)
    assert sweep.warm_start_path(settings) == runs.kept_models(long_settings)[settings.warm_rounds]
    assert settings.warm_rounds <= long_settings.rounds


def test_warm_start_must_end_before_the_long_runs_drop():
    warm = sweep.warm_start_settings(sweep.SWEEP_RUN)
    assert warm.server_lr_drop is None and warm.server_lr == runs.LONG_RUN.server_lr
    assert warm.rounds == sweep.SWEEP_RUN.warm_rounds
    late = runs.LONG_RUN.server_lr_drop[0] + 1
    with pytest.raises(ValueError, match=f"warm start \\({late} rounds\\) must end before"):
        sweep.warm_start_settings(sweep.SWEEP_RUN.replace(warm_rounds=late))


def test_target_lines_name_the_best_row_or_say_not_shown():
    rows = sweep_histories()
    table = sweep.results_table({row: rows[row] for row in list(rows)[:2]})
    lines = sweep.target_lines(table)
    assert len(lines) == len(sweep.TARGETS) == 3
    assert lines[0].endswith("met by identity / rotated 1-bit sign (DRIVE) (27.8x, "
                             "-0.50 points (95% CI -0.75 to -0.25, 3 paired seeds))")
    assert lines[1].endswith("not shown by any row") and lines[2].endswith("not shown by any row")


def test_every_method_has_a_unique_short_slug_for_keys_and_file_names():
    assert set(sweep.SLUGS) == set(sweep.METHODS)
    assert len(set(sweep.SLUGS.values())) == len(sweep.SLUGS)
    assert all(re.fullmatch(r"[a-z0-9-]{2,16}", slug) for slug in sweep.SLUGS.values())
    assert sweep.row_slug("uniform 8-bit", "rotated 1-bit sign (DRIVE)") == "uniform8--drive1"
    with pytest.raises(ValueError, match="unknown method"):
        sweep.row_slug("uniform 3-bit", "identity")
