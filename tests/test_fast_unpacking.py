"""The faster unpacking of 8-bit values gives exactly what tfmot's own gives."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te
from tensorflow_model_optimization.python.core.internal.tensor_encoding.utils import tf_utils

from helpers import compression, fast_unpacking

# 1-14 values cover every padding of the last group of 7 (and an odd or even number of
# words); 51,200 and 1,605,632 are the sizes of the CNN's two compressed variables.
LENGTHS = list(range(1, 15)) + [51_200, 1_605_632]


def values_0_to_255(length, seed=0):
    values = np.random.default_rng(seed).integers(0, 256, length, dtype=np.int32)
    values[:2] = [255, 0][:length]
    return tf.constant(values)


@pytest.mark.parametrize("length", LENGTHS)
def test_same_values_as_tfmot_for_every_padding(length):
    values = values_0_to_255(length)
    packed = tf_utils.pack_into_int(values, 8, 28)
    shape = tf.constant([length])
    ours = fast_unpacking.unpack_8_from_28(packed, shape)
    tfmot = fast_unpacking.TFMOT_UNPACK(packed, 8, 28, shape)
    assert ours.dtype == tfmot.dtype == tf.int32
    np.testing.assert_array_equal(ours.numpy(), tfmot.numpy())
    np.testing.assert_array_equal(ours.numpy(), values.numpy())


def test_keeps_the_shape_and_works_when_lengths_are_known_only_at_run_time():
    values = tf.reshape(values_0_to_255(3 * 5 * 7), [3, 5, 7])
    packed = tf_utils.pack_into_int(values, 8, 28)

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.int32), tf.TensorSpec([3], tf.int32)])
    def unpack(words, shape):
        return fast_unpacking.unpack_8_from_28(words, shape)

    np.testing.assert_array_equal(unpack(packed, tf.constant([3, 5, 7])).numpy(), values.numpy())


def test_other_bit_widths_still_use_tfmot():
    values = values_0_to_255(40) // 2  # 7-bit values
    packed = tf_utils.pack_into_int(values, 7, 28)
    ours = fast_unpacking.unpack_from_int(packed, 7, 28, tf.constant([40]))
    np.testing.assert_array_equal(ours.numpy(), values.numpy())


def test_compression_installs_it_and_the_tutorial_encoder_decodes_as_before(monkeypatch):
    assert compression.fast_unpacking is fast_unpacking and fast_unpacking.installed()
    spec = tf.TensorSpec([200, 60], tf.float32)
    encoder = te.encoders.as_gather_encoder(te.encoders.uniform_quantization(bits=8), spec)
    encode_params, decode_params, _ = encoder.get_params(encoder.initial_state())
    x = tf.random.stateless_normal(spec.shape, seed=[1, 2])
    encoded, _ = encoder.encode(x, encode_params)
    ours = encoder.decode_before_sum(encoded, decode_params)
    monkeypatch.setattr(tf_utils, "unpack_from_int", tf_utils.unpack_from_int)  # restored after the test
    fast_unpacking.uninstall()
    assert not fast_unpacking.installed() and tf_utils.unpack_from_int is fast_unpacking.TFMOT_UNPACK
    tfmot = encoder.decode_before_sum(encoded, decode_params)
    np.testing.assert_array_equal(tf.nest.flatten(ours)[0].numpy(), tf.nest.flatten(tfmot)[0].numpy())


def test_install_after_uninstall_puts_it_back(monkeypatch):
    monkeypatch.setattr(tf_utils, "unpack_from_int", tf_utils.unpack_from_int)  # restored after the test
    fast_unpacking.uninstall()
    assert not fast_unpacking.installed()
    assert fast_unpacking.install() and fast_unpacking.installed()
