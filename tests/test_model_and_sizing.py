"""The CNN's size and the bit arithmetic every later figure rests on."""
import numpy as np
import pytest
import tensorflow as tf

from helpers import model, sizing

FLOAT32_BITS_PER_CLIENT = 53_227_840


def test_original_cnn_has_the_papers_parameter_counts():
    assert model.create_original_fedavg_cnn_model(only_digits=True).count_params() == 1_663_370
    assert model.create_original_fedavg_cnn_model(only_digits=False).count_params() == 1_690_046


def test_variable_table_counts_float32_bits_per_variable():
    rows = sizing.variable_table(model.create_original_fedavg_cnn_model())
    assert [r["parameters"] for r in rows] == [800, 32, 51_200, 64, 1_605_632, 512, 5_120, 10]
    assert sum(r["bits"] for r in rows) == FLOAT32_BITS_PER_CLIENT
    assert rows[4]["variable"].endswith("kernel:0") and rows[4]["shape"] == (3136, 512)
    assert rows[4]["bits"] == 1_605_632 * 32


def test_format_bits_uses_bit_units():
    assert sizing.format_bits(10 * FLOAT32_BITS_PER_CLIENT) == "507.62 Mibit"
    assert sizing.format_bits(10 * 15_357_536) == "146.46 Mibit"
    assert sizing.format_bits(0) == "0 bit"
    assert sizing.format_bits(1023) == "1023 bit"
    assert sizing.format_bits(1024) == "1.00 Kibit"
    assert sizing.format_bits(3 * 2**30) == "3.00 Gibit"
    with pytest.raises(ValueError, match="negative"):
        sizing.format_bits(-1)


def test_bits_per_element_by_dtype():
    assert sizing.bits_per_element(tf.float32) == 32
    assert sizing.bits_per_element(tf.int8) == 8
    assert sizing.bits_per_element(tf.float16) == 16
    with pytest.raises(TypeError, match="string"):
        sizing.bits_per_element(tf.string)


def test_tensor_bits_counts_sizes_known_only_at_run_time():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def bits_of_positive(x):
        kept = tf.boolean_mask(x, x > 0)  # the size depends on the data
        return sizing.tensor_bits((kept, tf.zeros([3], tf.int8)))

    assert int(bits_of_positive(tf.constant([1.0, -1.0, 2.0, 3.0]))) == 3 * 32 + 3 * 8
    assert int(bits_of_positive(tf.constant([-1.0]))) == 3 * 8


def test_spec_bits_match_the_run_time_count():
    structure = {"a": np.zeros([4, 5], np.float32), "b": [np.zeros([7], np.int32)]}
    assert sum(sizing.spec_bits(leaf) for leaf in tf.nest.flatten(structure)) == 20 * 32 + 7 * 32
    assert int(sizing.tensor_bits(structure)) == 20 * 32 + 7 * 32
