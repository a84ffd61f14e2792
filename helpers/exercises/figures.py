"""Notebook 05's figures: a real client update, and what a stage makes of it, in numbers and plots.

:func:`client_update` trains the FedAvg CNN on one client's data and returns
the update; :func:`dense_update` picks its largest tensor; :func:`mse_figures`
and :func:`huffman_figures` compare a stage with tfmot's uniform quantization
and bit packing on it. :func:`plot_levels`, :func:`plot_code_lengths` and
:func:`plot_ranges` draw the update's histogram with quantization levels, code
length against symbol frequency, and an adaptive stage's range per round.
"""
import collections

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import sizing
from helpers.exercises import stages
from helpers.exercises.checks import entropy_bits, uniform_mse
from helpers.exercises.runner import independent_bits, to_numpy


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


def mse_figures(x, bits=8, stage_cls=None):
    """MSE of ``stage_cls(bits)`` vs tfmot's uniform quantization of ``x`` at the same ``bits``.

    Returns a dict: ``non_uniform`` (MSE), ``uniform`` (deterministic rounding),
    ``uniform_stochastic`` (tfmot's default), ``ratio`` = uniform / non_uniform
    and ``levels`` (distinct decoded values).
    """
    stage_cls = stage_cls or stages.reference("NonUniformQuantizationEncodingStage")
    x = np.asarray(x, np.float32).reshape(-1)
    decoded, _ = _stage_roundtrip(stage_cls(bits=bits), x)
    stochastic, _ = _stage_roundtrip(te.stages.UniformQuantizationEncodingStage(bits), x)
    non_uniform = float(np.mean((decoded - x) ** 2))
    uniform = uniform_mse(x, bits)
    return dict(bits=bits, non_uniform=non_uniform, uniform=uniform,
                uniform_stochastic=float(np.mean((stochastic - x) ** 2)),
                ratio=uniform / non_uniform if non_uniform else float("inf"),
                levels=int(np.unique(decoded).size))


def huffman_figures(x, bits=8, stage_cls=None):
    """Bits per value of Huffman coding of ``x``'s ``bits``-bit uniform quantization.

    Quantizes ``x`` with tfmot's ``UniformQuantizationEncodingStage(bits)``
    (deterministic rounding, so the symbols are reproducible), codes the
    symbols with ``stage_cls``, decodes and checks exactness. Returns a dict:
    ``bits_per_value`` (all encoded tensors counted), ``stream_bits_per_value``
    (the code words alone), ``packed_bits_per_value`` (tfmot's bitpacking of
    the same symbols, 9.14 for 8 bits), ``entropy`` (empirical entropy of the
    symbols, bits), ``exact``, and per symbol its ``counts`` and code
    ``lengths`` (from the stage's ``LENGTHS_KEY`` tensor, if it has one).
    """
    stage_cls = stage_cls or stages.reference("HuffmanEncodingStage")
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
    lengths = encoded.get(getattr(stage_cls, "LENGTHS_KEY", None))
    return dict(bits=bits, values=int(x.size), bits_per_value=total / x.size,
                stream_bits_per_value=stream / x.size,
                packed_bits_per_value=int(pack(tf.constant(symbols))) / x.size,
                entropy=entropy_bits(symbols), exact=bool(np.array_equal(decoded, symbols)),
                counts=np.bincount(symbols.astype(np.int64), minlength=2**bits),
                lengths=None if lengths is None else np.asarray(lengths, np.int64))


def plot_levels(x, levels, zoom_std=4.0):
    """Histogram of ``x`` (log counts) with ``levels`` and as many uniform levels overlaid.

    Uniform levels are evenly spaced from ``min(x)`` to ``max(x)`` (tfmot's
    uniform quantization). Left: the whole range; right: ``|x| < zoom_std``
    standard deviations. Returns the figure.
    """
    x = np.asarray(x, np.float32).reshape(-1)
    levels = np.sort(np.asarray(levels, np.float64))
    uniform = np.linspace(x.min(), x.max(), levels.size)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, limit in zip(axes, (None, zoom_std * x.std())):
        shown = x if limit is None else x[np.abs(x) < limit]
        ax.hist(shown, bins=200, color="0.75", log=True)
        for values, colour, label in ((uniform, "tab:red", "uniform"), (levels, "tab:blue", "non-uniform")):
            inside = values if limit is None else values[np.abs(values) < limit]
            for i, level in enumerate(inside):
                ax.axvline(level, color=colour, lw=0.9, label=f"{label} ({len(inside)} here)" if i == 0 else None)
        ax.set_xlabel("update value")
        ax.set_title("whole range" if limit is None else f"|x| < {zoom_std:g} standard deviations")
        ax.legend(loc="upper right", fontsize=8)
    axes[0].set_ylabel("values per bin")
    fig.tight_layout()
    return fig


def plot_code_lengths(counts, lengths, ax=None):
    """Code length (bits) of every occurring symbol against its frequency, with ``-log2(frequency)``."""
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.6))[1]
    counts, lengths = np.asarray(counts), np.asarray(lengths)
    used = counts > 0
    p = counts[used] / counts.sum()
    ax.scatter(p, lengths[used], s=12, label="code length")
    grid = np.geomspace(p.min(), p.max(), 100)
    ax.plot(grid, -np.log2(grid), color="tab:orange", label="-log2(frequency)")
    ax.set_xscale("log")
    ax.set_xlabel("symbol frequency")
    ax.set_ylabel("bits")
    ax.legend()
    return ax


def plot_ranges(table, ax=None):
    """Every ``range`` column of ``table`` (a DataFrame indexed by round) against the round, log scale."""
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.6))[1]
    for column in [c for c in table.columns if "range" in c]:
        ax.plot(table.index, table[column], marker="o", label=column)
    ax.set_yscale("log")
    ax.set_xticks(list(table.index))
    ax.set_xlabel("round")
    ax.set_ylabel("range used in the round")
    ax.legend(fontsize=8)
    return ax
