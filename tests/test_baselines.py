"""The literature's baselines: tfmot's own stage tests, what each decodes to, and the majority vote's sums and bits.

The exact bits of every method through a real aggregation round are in
tests/test_frontier.py (``independent_bits``).
"""
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal.tensor_encoding import stages
from tensorflow_model_optimization.python.core.internal.tensor_encoding.testing import test_utils

from helpers.frontier import baselines, sweep
from tests import stage_tests

SHAPE = (20, 30)  # 600 values: not a multiple of the buckets below, so padding is exercised


def _input(seed=0):
    x = tf.random.stateless_normal(SHAPE, seed=[seed, 7])
    return tf.where(tf.abs(x) < 0.1, tf.zeros_like(x), x)  # some exact zeros


# ------------------------------------------------ tfmot's stage tests --

class FlattenStageTest(stage_tests.StageTest):
    """A control: tfmot's own Flatten stage passes tfmot's tests through :class:`tests.stage_tests.StageTest`."""
    is_lossless = True

    def default_encoding_stage(self):
        return stages.FlattenEncodingStage()

    def default_input(self):
        return _input()

    def common_asserts_for_test_data(self, data):
        assert data.encoded_x[stages.FlattenEncodingStage.ENCODED_VALUES_KEY].shape == (data.x.size,)


def test_tfmots_unchanged_stage_test_fails_for_tfmots_own_stage_with_this_numpy():
    """Why tests.stage_tests exists: when this fails, tfmot (or numpy) fixed it; subclass tfmot's class again."""
    class Unfixed(test_utils.BaseEncodingStageTest):
        is_lossless = True
        default_encoding_stage = FlattenStageTest.default_encoding_stage
        default_input = FlattenStageTest.default_input
        common_asserts_for_test_data = FlattenStageTest.common_asserts_for_test_data

    with pytest.raises(ValueError, match="could not be broadcast"):
        Unfixed("test_one_to_many_encode_decode").test_one_to_many_encode_decode()


class ScaledSignStageTest(stage_tests.StageTest):
    is_lossless = False

    def default_encoding_stage(self):
        return baselines.SignEncodingStage(scaled=True)

    def default_input(self):
        return _input()

    def common_asserts_for_test_data(self, data):
        x = data.x
        expected = np.where(x >= 0, 1.0, -1.0) * np.mean(np.abs(x))
        np.testing.assert_allclose(data.decoded_x, expected, rtol=1e-6)
        assert data.encoded_x[baselines.SignEncodingStage.SIGNS_KEY].dtype == np.uint8
        assert data.encoded_x[baselines.SignEncodingStage.SIGNS_KEY].shape == (math.ceil(x.size / 8),)


class BareSignStageTest(stage_tests.StageTest):
    is_lossless = False

    def default_encoding_stage(self):
        return baselines.SignEncodingStage(scaled=False)

    def default_input(self):
        return _input(1)

    def common_asserts_for_test_data(self, data):
        np.testing.assert_array_equal(data.decoded_x, np.where(data.x >= 0, 1.0, -1.0))
        assert set(data.encoded_x) == {baselines.SignEncodingStage.SIGNS_KEY}


class QSGDStageTest(stage_tests.StageTest):
    is_lossless = False
    levels, bucket_size, norm = 7, 64, "l2"

    def default_encoding_stage(self):
        return baselines.QSGDEncodingStage(self.levels, self.bucket_size, self.norm)

    def default_input(self):
        return _input(2)

    def common_asserts_for_test_data(self, data):
        s, size = self.levels, self.bucket_size or data.x.size
        flat = np.pad(data.x.ravel(), (0, -data.x.size % size)).reshape(-1, size)
        norms = np.linalg.norm(flat, axis=1) if self.norm == "l2" else np.abs(flat).max(axis=1)
        levels = data.encoded_x[baselines.QSGDEncodingStage.LEVELS_KEY]
        np.testing.assert_allclose(data.encoded_x[baselines.QSGDEncodingStage.NORMS_KEY], norms, rtol=1e-6)
        assert levels.shape == (flat.size,) and np.all(levels == np.round(levels))
        assert levels.min() >= 0 and levels.max() <= 2 * s
        # every value is rounded to one of the two levels next to it, with its sign
        decoded = np.pad(data.decoded_x.ravel(), (0, -data.x.size % size)).reshape(-1, size)
        step = norms[:, None] / s
        assert np.all(np.abs(decoded - flat) <= step * (1 + 1e-5))
        assert np.all(np.sign(decoded) * np.sign(flat) >= 0)
        np.testing.assert_allclose(decoded / step, np.round(decoded / step), atol=1e-4)


class TernGradStageTest(QSGDStageTest):
    levels, bucket_size, norm = 1, None, "max"


# --------------------------------------------------- what they decode --

def test_qsgd_rounds_without_bias_and_repeats_for_the_same_values():
    stage, s = baselines.QSGDEncodingStage(levels=1, bucket_size=64), 1
    x = _input(3)
    decode = lambda v: stage.decode(stage.encode(v, {}), {}, shape=tf.shape(v))  # noqa: E731
    np.testing.assert_array_equal(decode(x), decode(x))  # the seed comes from the values
    # Rescaled copies draw other random numbers (other seeds) but decode to rescaled x on average.
    copies = [decode(x * (1 + k * 1e-4)) / (1 + k * 1e-4) for k in range(400)]
    mean = np.mean(copies, axis=0)
    assert np.abs(mean - x).max() < 0.25 * np.abs(x).max(), np.abs(mean - x).max()
    assert np.abs(copies[0] - x).max() > 0.2  # a single copy is far coarser, with one level per sign (s=1)
    assert len({np.asarray(c).tobytes() for c in copies[:10]}) == 10


@pytest.mark.parametrize("make, message", [
    (lambda: baselines.QSGDEncodingStage(levels=0), "levels must be an integer from 1 to 127"),
    (lambda: baselines.QSGDEncodingStage(levels=200), "levels must be an integer from 1 to 127"),
    (lambda: baselines.QSGDEncodingStage(bucket_size=0), "bucket_size must be a number of values >= 1"),
    (lambda: baselines.QSGDEncodingStage(norm="l1"), "norm must be one of"),
    (lambda: baselines.SignEncodingStage(scaled="yes"), "scaled must be True"),
    (lambda: baselines.MajorityVoteFactory(threshold=-1), "threshold must be a number of elements"),
])
def test_bad_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bits_per_value_for_the_levels():
    assert [baselines.packing_bits(s) for s in (1, 2, 3, 7, 8, 127)] == [2, 4, 4, 4, 8, 8]


def test_the_baselines_are_methods_but_not_in_the_warm_start_sweep():
    for name in sweep.BASELINES:
        assert name in sweep.METHODS and name in sweep.SLUGS
        assert all(name not in row for row in sweep.SWEEP)


# ------------------------------------------------------ majority vote --

BIG, SMALL = (100, 128), (10,)  # 12,800 values voted on; 10 averaged


def test_majority_vote_takes_the_sign_of_the_summed_signs_and_counts_what_is_sent():
    rng = np.random.default_rng(0)
    big = rng.normal(size=(3, *BIG)).astype(np.float32)
    big[:, 0, :3] = [[1, 1, -1], [1, -1, -1], [-1, 1, -1]]  # votes +1, +1, -3 (unscaled, in weight units)
    small = rng.normal(size=(3, *SMALL)).astype(np.float32)
    weights = np.array([1.0, 2.0, 5.0], np.float32)
    value_type = tff.types.to_type([(np.float32, BIG), (np.float32, SMALL)])
    process = baselines.MajorityVoteFactory().create(value_type, tff.TensorType(np.float32))
    values = [[big[i], small[i]] for i in range(3)]
    output = process.next(process.initialize(), values, list(weights))
    votes = np.sign(np.sum(np.where(big >= 0, 1.0, -1.0), axis=0))
    scale = np.sum(weights * np.abs(big).mean(axis=(1, 2))) / weights.sum()
    np.testing.assert_allclose(output.result[0], votes * scale, rtol=1e-5)
    np.testing.assert_array_equal(np.sign(output.result[0][0, :3]), [1, 1, -1])
    np.testing.assert_allclose(output.result[1], np.sum(weights[:, None] * small, axis=0) / weights.sum(), rtol=1e-5)
    # Each client: 12,800 sign bits and one float32 mean magnitude, plus the small variable as it is.
    assert int(output.measurements["aggregated_bits"]) == 3 * (12_800 + 32 + 10 * 32)


def test_a_tied_vote_moves_nothing():
    value_type = tff.types.to_type([(np.float32, BIG)])
    process = baselines.MajorityVoteFactory().create(value_type, tff.TensorType(np.float32))
    x = np.ones(BIG, np.float32)
    output = process.next(process.initialize(), [[x], [-x]], [1.0, 1.0])
    np.testing.assert_array_equal(output.result[0], np.zeros(BIG))
