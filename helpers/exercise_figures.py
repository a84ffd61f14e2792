"""The numbers behind notebook 05's figures: a real client update, and what the solution stages make of it.

:func:`client_update` trains the FedAvg CNN on one client's data and returns
the update; :func:`dense_update` picks its largest tensor; :func:`mse_figures`
and :func:`huffman_figures` compare a stage with tfmot's uniform quantization
and bit packing on it.
"""
import collections

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import sizing, stages
from helpers.exercise_checks import entropy_bits, uniform_mse
from helpers.exercise_runner import independent_bits, to_numpy


def client_update(dataset, epochs=1, learning_rate=0.02, seed=0):
    """A real client update of the FedAvg CNN: weights after minus before local SGD.

    Builds the CNN (:func:`helpers.model.create_original_fedavg_cnn_model`)
    with seed ``seed``, trains it with Keras SGD (the FedAvg client's learning
    rate 0.02) for ``epochs`` passes over ``dataset`` (batches of ``(x, y)``,
    e.g. one client's preprocessed data) and returns an ``OrderedDict`` from
    variable name to the update (numpy float32).
    """
    from helpers import model as course_model

    tf.keras.utils.set_random_seed(seed)
    keras_model = course_model.compile_for_keras(course_model.create_original_fedavg_cnn_model(),
                                                 learning_rate)
    before = [v.numpy().copy() for v in keras_model.trainable_variables]
    keras_model.fit(dataset, epochs=epochs, verbose=0)
    return collections.OrderedDict(
        (v.name, v.numpy() - b) for v, b in zip(keras_model.trainable_variables, before))


def dense_update(update):
    """The update of the 3,136 x 512 dense kernel (1,605,632 values) from :func:`client_update`."""
    for name, value in update.items():
        if value.shape == (3136, 512):
            return value
    raise ValueError("no (3136, 512) dense kernel in this update.")


def _stage_roundtrip(stage, x):
    @tf.function(autograph=False)
    def roundtrip(v):
        encode_params, decode_params = stage.get_params()
        encoded = stage.encode(v, encode_params)
        return stage.decode(encoded, decode_params, shape=tf.shape(v)), sizing.tensor_bits(encoded)

    decoded, bits = roundtrip(tf.constant(x))
    return decoded.numpy(), int(bits)


def mse_figures(x, bits=8, stage_cls=stages.NonUniformQuantizationEncodingStage):
    """MSE of ``stage_cls(bits)`` vs tfmot's uniform quantization of ``x`` at the same ``bits``.

    Returns a dict: ``non_uniform`` (MSE), ``uniform`` (deterministic rounding),
    ``uniform_stochastic`` (tfmot's default), ``ratio`` = uniform / non_uniform
    and ``levels`` (distinct decoded values).
    """
    x = np.asarray(x, np.float32).reshape(-1)
    decoded, _ = _stage_roundtrip(stage_cls(bits=bits), x)
    stochastic, _ = _stage_roundtrip(te.stages.UniformQuantizationEncodingStage(bits), x)
    non_uniform = float(np.mean((decoded - x) ** 2))
    uniform = uniform_mse(x, bits)
    return dict(bits=bits, non_uniform=non_uniform, uniform=uniform,
                uniform_stochastic=float(np.mean((stochastic - x) ** 2)),
                ratio=uniform / non_uniform if non_uniform else float("inf"),
                levels=int(np.unique(decoded).size))


def huffman_figures(x, bits=8, stage_cls=stages.HuffmanEncodingStage):
    """Bits per value of Huffman coding of ``x``'s ``bits``-bit uniform quantization.

    Quantizes ``x`` with tfmot's ``UniformQuantizationEncodingStage(bits)``
    (deterministic rounding, so the symbols are reproducible), codes the
    symbols with ``stage_cls``, decodes and checks exactness. Returns a dict:
    ``bits_per_value`` (all encoded tensors counted), ``stream_bits_per_value``
    (the code words alone), ``packed_bits_per_value`` (tfmot's bitpacking of
    the same symbols, 9.14 for 8 bits), ``entropy`` (empirical entropy of the
    symbols, bits) and ``exact``.
    """
    x = np.asarray(x, np.float32).reshape(-1)
    quantizer = te.stages.UniformQuantizationEncodingStage(bits, stochastic=False)

    @tf.function(autograph=False)
    def quantize(v):
        return quantizer.encode(v, quantizer.get_params()[0])[quantizer.ENCODED_VALUES_KEY]

    symbols = quantize(tf.constant(x)).numpy()
    stage = stage_cls(input_bits=bits)

    @tf.function(autograph=False)
    def encode(v):
        return stage.encode(v, stage.get_params()[0])

    encoded = to_numpy(encode(tf.constant(symbols)))

    @tf.function(autograph=False)
    def decode(e):
        return stage.decode(e, stage.get_params()[1], shape=tf.constant([x.size]))

    decoded = decode(encoded).numpy()
    packer = te.stages.BitpackingEncodingStage(bits)

    @tf.function(autograph=False)
    def pack(v):
        return sizing.tensor_bits(packer.encode(v, packer.get_params()[0]))

    total = independent_bits(encoded)
    stream = next((np.asarray(v).size * 32 for k, v in encoded.items() if "word" in k), total)
    return dict(bits=bits, values=int(x.size), bits_per_value=total / x.size,
                stream_bits_per_value=stream / x.size,
                packed_bits_per_value=int(pack(tf.constant(symbols))) / x.size,
                entropy=entropy_bits(symbols), exact=bool(np.array_equal(decoded, symbols)))
