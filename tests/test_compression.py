"""The measured processes: exact bits from real rounds, decode error, bad encoders, TFF's own encoded mean.

Building a FedAvg process of the full CNN is the expensive part, so the module
builds three and shares them: identity, the seed's 8-bit policy both ways, and
8-bit on the broadcast only.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import compression, model, runs, sizing, training
from tests.synthetic import client_datasets

IDENTITY_BITS = 53_227_840       # 1,663,370 float32 values
EIGHT_BIT_BITS = 15_357_536      # 8-bit uniform quantization above 10,000 elements
CLIENTS = 10


@pytest.fixture(scope="module")
def model_fn():
    return model.build_model_fn()


@pytest.fixture(scope="module")
def datasets():
    return client_datasets(CLIENTS)


@pytest.fixture(scope="module")
def identity_process(model_fn):
    return training.build_fed_avg(model_fn, compression.identity())


@pytest.fixture(scope="module")
def eight_bit_process(model_fn):
    return training.build_fed_avg(model_fn, compression.uniform_quantization(8))


def one_round(process, datasets):
    """(broadcast bits, aggregated bits) of one round of ``process`` from its initial state."""
    output = process.next(process.initialize(), datasets)
    return output.metrics["distributor"]["broadcast_bits"], output.metrics["aggregator"]["aggregated_bits"]


@pytest.fixture(scope="module")
def identity_round(identity_process, datasets):
    return one_round(identity_process, datasets)


@pytest.fixture(scope="module")
def eight_bit_round(eight_bit_process, datasets):
    return one_round(eight_bit_process, datasets)


def test_identity_round_sends_the_whole_model_each_way(identity_round):
    broadcast, aggregated = identity_round
    assert broadcast == CLIENTS * IDENTITY_BITS
    assert aggregated == CLIENTS * IDENTITY_BITS
    assert sizing.format_bits(broadcast) == "507.62 Mibit"


def test_eight_bit_policy_round(eight_bit_round, identity_round):
    broadcast, aggregated = eight_bit_round
    assert broadcast == CLIENTS * EIGHT_BIT_BITS
    assert aggregated == CLIENTS * EIGHT_BIT_BITS
    assert sizing.format_bits(aggregated) == "146.46 Mibit"
    assert round(int(identity_round[1]) / int(aggregated), 2) == 3.47


def test_broadcast_compressed_and_the_aggregation_plain(model_fn, datasets):
    q8 = compression.uniform_quantization(8)
    encoders = compression.EncoderFns(broadcast=q8.broadcast, aggregation=compression.identity().aggregation)
    process = training.build_fed_avg(model_fn, encoders)
    assert one_round(process, datasets[:3]) == (3 * EIGHT_BIT_BITS, 3 * IDENTITY_BITS)


def test_bits_scale_with_clients_sampled(eight_bit_process, datasets):
    assert one_round(eight_bit_process, datasets[:2]) == (2 * EIGHT_BIT_BITS, 2 * EIGHT_BIT_BITS)


def test_decoded_broadcast_is_within_one_quantization_step(model_fn):
    process = compression.build_encoded_broadcast_process(model_fn, compression.uniform_quantization(8).broadcast)
    weights_type = tff.learning.models.weights_type_from_model(model_fn)

    @tff.federated_computation(process.initialize.type_signature.result,
                               tff.FederatedType(weights_type, tff.SERVER),
                               tff.FederatedType(np.int32, tff.CLIENTS))
    def broadcast(state, weights, _):
        return process.next(state, weights).result

    keras_model = model.create_original_fedavg_cnn_model()
    sent = [v.numpy() for v in keras_model.trainable_variables]
    weights = tff.learning.models.ModelWeights(trainable=sent, non_trainable=[])
    received = broadcast(process.initialize(), weights, [0, 0])
    assert len(received) == 2
    for client in received:
        for original, decoded in zip(sent, client.trainable):
            error = np.max(np.abs(original - decoded))
            if original.size > compression.DEFAULT_THRESHOLD:
                step = (original.max() - original.min()) / (2**8 - 1)
                assert 0 < error <= step * (1 + 1e-5)
            else:
                assert error == 0


def deterministic_eight_bit(spec):
    """The seed's policy as a GatherEncoder function, with round-to-nearest instead of stochastic rounding."""
    if spec.shape.num_elements() > compression.DEFAULT_THRESHOLD:
        return te.encoders.as_gather_encoder(te.encoders.uniform_quantization(bits=8, stochastic=False), spec)
    return te.encoders.as_gather_encoder(te.encoders.identity(), spec)


def test_encoded_mean_equals_tffs_mean_of_an_encoded_sum():
    """The course's encoded mean computes what TFF's own MeanFactory(EncodedSumFactory) computes."""
    value_type = tff.types.to_type([(np.float32, (200, 64)), (np.float32, (10,))])
    weight_type = tff.TensorType(np.float32)
    ours = compression.build_encoded_mean_factory(deterministic_eight_bit).create(value_type, weight_type)
    tffs = tff.aggregators.MeanFactory(tff.aggregators.EncodedSumFactory(deterministic_eight_bit)).create(
        value_type, weight_type)
    rng = np.random.default_rng(3)
    weights = [1.0, 2.0, 5.0]
    our_state, tff_state = ours.initialize(), tffs.initialize()
    for _ in range(2):  # two rounds, each from the state the previous one returned
        values = [[rng.normal(size=(200, 64)).astype(np.float32), rng.normal(size=10).astype(np.float32)]
                  for _ in weights]
        our_output, tff_output = ours.next(our_state, values, weights), tffs.next(tff_state, values, weights)
        our_state, tff_state = our_output.state, tff_output.state
        for got, expected in zip(our_output.result, tff_output.result):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        exact = [sum(w * v[i] for w, v in zip(weights, values)) / sum(weights) for i in range(2)]
        assert np.abs(our_output.result[0] - exact[0]).max() > 1e-4  # the big tensor really was quantized
        np.testing.assert_allclose(our_output.result[1], exact[1], rtol=1e-6)  # the small one was not
        # 12,800 values in 8 bits, 28 per int32 word, plus min and max; 10 float32: per client
        assert our_output.measurements["aggregated_bits"] == 3 * (3658 * 32 + 64 + 320)


def test_same_seed_same_clients_and_bits(eight_bit_process):
    process = eight_bit_process
    ids = [f"c{i}" for i in range(12)]
    by_id = dict(zip(ids, client_datasets(12)))
    settings = runs.TUTORIAL.replace(rounds=2, clients_per_round=3)
    histories = [training.run_rounds(process, lambda c: [by_id[i] for i in c], ids, settings, seed=7,
                                     outputs=runs.RunOutputs(verbose=False))[1] for _ in range(2)]
    first, second = histories
    assert [r["clients"] for r in first.rounds] == [r["clients"] for r in second.rounds]
    assert first.rounds[0]["clients"] != first.rounds[1]["clients"]
    for key in ("broadcast_bits", "aggregated_bits", "cumulative_aggregated_bits"):
        assert list(first.column(key)) == list(second.column(key))
    assert first.rounds[-1]["cumulative_broadcast_bits"] == 2 * 3 * EIGHT_BIT_BITS


# ------------------------------------------------------------- bad inputs --

def test_encoder_fn_returning_a_core_encoder_is_refused(model_fn):
    with pytest.raises(TypeError, match=r"needs a te.core.SimpleEncoder.*as_simple_encoder"):
        compression.build_encoded_broadcast_process(model_fn, lambda spec: te.encoders.identity())


def test_encoder_fn_returning_none_names_the_variable(model_fn):
    def forgot_return(spec):
        te.encoders.as_simple_encoder(te.encoders.identity(), spec)

    with pytest.raises(TypeError, match=r"returned None for variable \S*conv2d\S*/kernel .*forget `return`"):
        compression.build_encoded_broadcast_process(model_fn, forgot_return)


def test_encoder_built_for_another_shape_names_the_variable(model_fn):
    wrong = tf.TensorSpec([10], tf.float32)
    with pytest.raises(ValueError, match=r"built for float32 \[10\] for variable \S*kernel \(float32 \[5, 5, 1, 32\]\)"):
        compression.build_encoded_broadcast_process(
            model_fn, lambda spec: te.encoders.as_simple_encoder(te.encoders.identity(), wrong))


def test_gather_encoder_for_another_dtype_is_refused():
    factory = compression.build_encoded_mean_factory(
        lambda spec: te.encoders.as_gather_encoder(te.encoders.identity(), tf.TensorSpec(spec.shape, tf.float64)))
    with pytest.raises(ValueError, match=r"built for float64 \[3\] for variable #0 \(float32 \[3\]\)"):
        factory.create(tff.TensorType(np.float32, [3]), tff.TensorType(np.float32))


def test_mean_process_refuses_a_simple_encoder():
    factory = compression.build_encoded_mean_factory(compression.identity().broadcast)
    with pytest.raises(TypeError, match="needs a te.core.GatherEncoder"):
        factory.create(tff.TensorType(np.float32, [3]), tff.TensorType(np.float32))


def test_non_float_variable_is_refused():
    factory = compression.build_encoded_mean_factory(compression.identity().aggregation)
    value_type = tff.StructWithPythonType([tff.TensorType(np.float32, [3]), tff.TensorType(np.int32, [2])], list)
    with pytest.raises(TypeError, match=r"variable #1 \(int32 \[2\]\) is not floating point"):
        factory.create(value_type, tff.TensorType(np.float32))


@pytest.mark.parametrize("bits", [0, 17, 8.0, True])
def test_bits_outside_one_to_sixteen(bits):
    with pytest.raises(ValueError, match="bits must be an integer from 1 to 16"):
        compression.uniform_quantization(bits)


@pytest.mark.parametrize("count, message", [(0, "at least 1"), (13, "only 12 clients")])
def test_bad_clients_per_round(count, message):
    with pytest.raises(ValueError, match=message):
        training.sample_clients([f"c{i}" for i in range(12)], count, np.random.default_rng(0))


def test_server_learning_rate_drops_after_the_given_rounds():
    optimizer = training._with_lr_drop(
        tff.learning.optimizers.build_sgdm(learning_rate=0.5, momentum=0.9), 0.5, (2, 0.1))
    specs = [tf.TensorSpec([3], tf.float32)]
    state = optimizer.initialize(specs)
    weights, rates = [tf.zeros([3])], []
    for _ in range(4):
        state, weights = optimizer.next(state, weights, [tf.ones([3])])
        rates.append(round(float(state["optimizer"]["learning_rate"]), 6))
    # The rate stored after round i is the one round i + 1 uses: rounds 1-2 at 0.5, then 0.1.
    assert rates == [0.5, 0.1, 0.1, 0.1]


@pytest.mark.parametrize("drop", [(-1, 0.1), (10, 0), (2.5, 0.1), ("10", 0.1)])
def test_bad_server_lr_drop_is_refused(model_fn, drop):
    """RunSettings refuses it, so no process is built with it."""
    with pytest.raises(ValueError, match="server_lr_drop must be"):
        training.build_fed_avg(model_fn, settings=runs.TUTORIAL.replace(server_lr_drop=drop))


def test_snapshots_save_the_model_after_those_rounds(identity_process, tmp_path):
    process = identity_process
    ids = [f"c{i}" for i in range(6)]
    by_id = dict(zip(ids, client_datasets(6)))
    paths = {1: tmp_path / "after-1.npz", 2: tmp_path / "after-2.npz"}
    settings = runs.TUTORIAL.replace(rounds=2, clients_per_round=2)
    state, _ = training.run_rounds(process, lambda c: [by_id[i] for i in c], ids, settings,
                                   outputs=runs.RunOutputs(verbose=False, snapshots=paths))
    final = process.get_model_weights(state).trainable
    after_two, after_one = (training.load_weights(paths[r]).trainable for r in (2, 1))
    assert len(after_two) == len(final) == 8
    for saved, expected in zip(after_two, final):
        np.testing.assert_array_equal(saved, expected)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after_one, after_two))
    with pytest.raises(ValueError, match=r"snapshot rounds \[3\] are outside this run's rounds 1..2"):
        training.run_rounds(process, lambda c: [by_id[i] for i in c], ids, settings,
                            outputs=runs.RunOutputs(verbose=False, snapshots={3: tmp_path / "x.npz"}))


def test_tfmot_bitpacking_notice_is_silenced_and_other_warnings_are_not(caplog):
    import logging
    from helpers import setup
    setup.quiet_logs()
    setup.quiet_logs()  # twice: still one filter
    assert logging.getLogger().filters.count(setup._not_tfmot_bitpacking_notice) == 1
    with caplog.at_level(logging.WARNING):
        te.utils.pack_into_int(tf.zeros([56], tf.int32), 2, 28)  # tfmot warns here
        logging.warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]
