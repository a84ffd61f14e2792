"""The compression frontier: many encoders, one training setup, what each saves and costs.

- :data:`METHODS`: method name -> a no-argument function returning a
  ``te.core.Encoder``. Every method is applied with the course's threshold
  policy (variables with more than 10,000 elements; identity below).
- :data:`SWEEP`: the sweep's rows, ``(broadcast method, aggregation method)``;
  ``None`` for the broadcast means "uncompressed", i.e. aggregation only.
- :func:`encoder_fns` turns a row into :class:`helpers.compression.EncoderFns`.
- :func:`run_sweep` trains every row with the same seed, clients, optimizers
  and rounds, each cached on disk under a key of its configuration.
- :func:`results_table` and :func:`pareto_front` summarise the runs.
"""
import functools

import numpy as np
import pandas as pd
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import compression, stages, training
from helpers import research_stages as research

PARAMETERS = 1_663_370  # the CNN's values, so bits per value = bits per client / PARAMETERS
IDENTITY = "identity"

METHODS = {
    IDENTITY: te.encoders.identity,
    "uniform 8-bit": functools.partial(te.encoders.uniform_quantization, bits=8),
    "uniform 4-bit": functools.partial(te.encoders.uniform_quantization, bits=4),
    "uniform 2-bit": functools.partial(te.encoders.uniform_quantization, bits=2),
    "uniform 1-bit": functools.partial(te.encoders.uniform_quantization, bits=1),
    "Hadamard 4-bit": functools.partial(te.encoders.hadamard_quantization, bits=4),
    "Kashin 4-bit": functools.partial(research.kashin_quantization_encoder, bits=4),
    "non-uniform 4-bit (05a)": functools.partial(stages.non_uniform_quantization_encoder, bits=4),
    "8-bit + Huffman (05b)": functools.partial(stages.huffman_encoder, bits=8),
    "adaptive 4-bit (05c)": functools.partial(stages.adaptive_quantization_encoder, bits=4),
    "rotated 2-bit, tight": functools.partial(research.rotated_quantization_encoder, bits=2),
    "rotated 1-bit sign (DRIVE)": research.rotated_sign_encoder,
    "top-1% values + indices": functools.partial(research.top_k_encoder, fraction=0.01),
    "nearest 4-bit, tight": functools.partial(research.tight_quantization_encoder, bits=4,
                                              stochastic=False),
}

AGGREGATION_ONLY = "aggregation only"
BOTH = "both directions"

# Every method compresses the aggregation alone; a few pairs also compress the
# broadcast, from safe (8-bit) to one that should break (1-bit model).
SWEEP = [(None, name) for name in METHODS if name != "nearest 4-bit, tight"] + [
    ("uniform 8-bit", "uniform 8-bit"),
    ("uniform 4-bit", "uniform 4-bit"),
    ("nearest 4-bit, tight", "rotated 1-bit sign (DRIVE)"),
    ("rotated 1-bit sign (DRIVE)", "rotated 1-bit sign (DRIVE)"),
]
VERSION = 1  # bump when a method's code changes, so cached runs are not reused


def _check_method(name):
    if name is not None and name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)} "
                         "(or None for an uncompressed broadcast).")


def encoder_fns(broadcast, aggregation, threshold=compression.DEFAULT_THRESHOLD):
    """:class:`helpers.compression.EncoderFns` for a row: method names (or ``None`` = identity)."""
    _check_method(broadcast)
    _check_method(aggregation)

    def policy(name):
        return compression.threshold_policy(METHODS[name or IDENTITY], threshold)

    return compression.EncoderFns(broadcast=policy(broadcast).broadcast, mean=policy(aggregation).mean)


def row_name(broadcast, aggregation):
    """A run's label: ``"<aggregation>"`` or ``"<broadcast> / <aggregation>"`` when both are set."""
    return aggregation if broadcast is None else f"{broadcast} / {aggregation}"


def run_sweep(model_fn, settings, train, evaluate_fn, rows=SWEEP, verbose=False):
    """Train every row with ``settings``; returns ``{(broadcast, aggregation): History}``.

    Each run is loaded from ``outputs/runs/`` when one with exactly the same
    configuration (settings, methods, data, :data:`VERSION`) was saved, and
    trained and saved otherwise.
    """
    histories = {}
    for broadcast, aggregation in rows:
        name = row_name(broadcast, aggregation)
        key = dict(settings, broadcast=broadcast, aggregation=aggregation, sweep_version=VERSION)
        encoders = encoder_fns(broadcast, aggregation)
        histories[(broadcast, aggregation)], _ = training.cached_history(
            "sweep-" + name.replace("/", "+").replace(" ", "_"), key,
            lambda encoders=encoders, name=name: training.train_fed_avg(
                model_fn, encoders, settings, train, evaluate_fn, name=name, verbose=verbose))
        histories[(broadcast, aggregation)].name = name
    return histories


COLUMNS = ["direction", "broadcast", "aggregation", "broadcast bits per value",
           "aggregated bits per value", "broadcast bits", "aggregated bits", "reduction (aggregated)",
           "reduction (total)", "test accuracy (%)", "accuracy change (points)", "seconds per round"]


def results_table(histories):
    """A ``DataFrame`` with one row per run and the :data:`COLUMNS`, against the identity run.

    Bits are totals over all rounds and clients; bits per value divide one
    client's bits of one round by the CNN's 1,663,370 values.
    """
    reference = histories.get((None, IDENTITY))
    if reference is None:
        raise ValueError("the sweep needs the identity row (None, 'identity') as its reference.")
    rows = []
    for (broadcast, aggregation), history in histories.items():
        client_rounds = sum(len(r["clients"]) for r in history.rounds)
        bits = {key: history.total_bits(key) for key in training.BITS_KEYS}
        rows.append({
            "direction": AGGREGATION_ONLY if broadcast is None else BOTH,
            "broadcast": broadcast or IDENTITY,
            "aggregation": aggregation,
            "broadcast bits per value": bits["broadcast_bits"] / client_rounds / PARAMETERS,
            "aggregated bits per value": bits["aggregated_bits"] / client_rounds / PARAMETERS,
            "broadcast bits": bits["broadcast_bits"],
            "aggregated bits": bits["aggregated_bits"],
            "reduction (aggregated)": reference.total_bits("aggregated_bits") / bits["aggregated_bits"],
            "reduction (total)": _total(reference) / sum(bits.values()),
            "test accuracy (%)": 100 * history.final_accuracy(),
            "accuracy change (points)": 100 * (history.final_accuracy() - reference.final_accuracy()),
            "seconds per round": float(np.median(history.column("seconds"))),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def _total(history):
    return sum(history.total_bits(key) for key in training.BITS_KEYS)


def pareto_front(bits, accuracy):
    """Boolean mask of the points no other point beats: fewer or equal bits and higher or equal accuracy.

    ``bits`` and ``accuracy`` are equal-length sequences; a point is on the
    front unless another has ``bits <=`` and ``accuracy >=`` with one strict.
    """
    bits, accuracy = np.asarray(bits, float), np.asarray(accuracy, float)
    if bits.shape != accuracy.shape:
        raise ValueError(f"bits and accuracy differ in length: {bits.shape} vs {accuracy.shape}.")
    front = np.ones(len(bits), bool)
    for i in range(len(bits)):
        better = (bits <= bits[i]) & (accuracy >= accuracy[i]) & ((bits < bits[i]) | (accuracy > accuracy[i]))
        front[i] = not better.any()
    return front


def best_within(table, direction, bits_column, min_reduction, max_drop):
    """The row of ``direction`` with the largest reduction in ``bits_column`` at most ``max_drop`` points below identity and ``min_reduction``x or more; ``None`` if none."""
    rows = table[(table["direction"] == direction) & (table[bits_column] >= min_reduction)
                 & (table["accuracy change (points)"] >= -max_drop)]
    return None if rows.empty else rows.sort_values(bits_column).iloc[-1]
