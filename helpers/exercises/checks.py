"""What each of notebook 05's exercises must do: one check per exercise, on model-update-like inputs.

Each check takes a :class:`helpers.exercises.runner.Runner` around the
student's stage, the stage and its class name; it returns what passed as a
phrase, or raises :class:`helpers.exercises.runner.Fault` with one sentence
saying what is wrong. :mod:`helpers.exercises` lists which check belongs to
which exercise.
"""
import collections

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers.exercises.runner import Fault, seeded_rng, update_like

NONUNIFORM_BITS = 4  # exercise (a) is checked at 4 bits: at most 16 levels
ADAPTIVE_BITS = 8  # exercise (c) is checked at 8 bits
ROUNDINGS = 20_000  # exercise (c): decodes of one value whose mean must be that value


def check_warmup(runner, stage, label):
    x = update_like((40, 50), scale=1.0)
    decoded, _, _, bits = runner.roundtrip(x)
    error = np.abs(decoded - x)
    bound = np.abs(x) * 2.0**-10 + 1e-7
    if np.any(error > bound):
        i = int(np.argmax(error - bound))
        raise Fault(f"value {x.flat[i]:.6g} decodes to {decoded.flat[i]:.6g}, further than float16 "
                    "rounding allows.")
    if bits >= 32 * x.size:
        raise Fault(f"the encoding uses {bits / x.size:.1f} bits per value, not fewer than float32's 32.")
    return f"keeps shape and dtype, error within float16 rounding, {bits / x.size:.0f} bits/value"


def check_nonuniform(runner, stage, label):
    bits = NONUNIFORM_BITS
    x = update_like((40, 500))
    decoded, _, _, _ = runner.roundtrip(x)
    levels = np.unique(decoded)
    if levels.size > 2**bits:
        raise Fault(f"decoded values take {levels.size} different values; with bits={bits} there "
                    f"may be at most {2**bits} levels.")
    error = np.abs(decoded - x)
    nearest = np.min(np.abs(x.reshape(-1, 1) - levels.reshape(1, -1)), axis=1).reshape(x.shape)
    slack = 1e-6 * np.max(np.abs(x))
    if np.any(error > nearest + slack):
        i = int(np.argmax(error - nearest))
        better = levels[np.argmin(np.abs(levels - x.flat[i]))]
        raise Fault(f"x={x.flat[i]:.4g} decodes to {decoded.flat[i]:.4g} but level {better:.4g} "
                    "is nearer: encode must pick the nearest level.")
    mse = float(np.mean((decoded - x) ** 2))
    uniform = uniform_mse(x, bits)
    if not mse < uniform:
        raise Fault(f"MSE {mse:.3g} is not lower than uniform quantization's {uniform:.3g} at "
                    f"{bits} bits: place the levels where the values are (spaced by the cube root of "
                    "their density; see hint('a')).")
    return (f"keeps shape and dtype, rounds to the nearest of at most {2**bits} levels, "
            f"MSE {mse:.3g} < {uniform:.3g} uniform at {bits} bits")


def uniform_mse(x, bits):
    """MSE of tfmot's uniform quantization (deterministic rounding) of ``x`` at ``bits``."""
    uniform = te.stages.UniformQuantizationEncodingStage(bits, stochastic=False)

    @tf.function(autograph=False)
    def roundtrip(v):
        encode_params, decode_params = uniform.get_params()
        return uniform.decode(uniform.encode(v, encode_params), decode_params)

    return float(np.mean((roundtrip(tf.constant(x)).numpy() - x) ** 2))


def _symbol_streams():
    rng = seeded_rng()
    return collections.OrderedDict([
        ("random", rng.integers(0, 256, 5000)),
        ("skewed", np.minimum(rng.geometric(0.25, 20000) - 1, 255)),
        ("all equal", np.full(1000, 17)),
        ("a single element", np.array([200])),
        ("two symbols", rng.choice([3, 250], size=3000, p=[0.9, 0.1])),
        ("2-D", rng.integers(0, 256, (30, 40))),
    ])


def entropy_bits(symbols):
    counts = np.bincount(np.ravel(symbols).astype(np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def check_lossless(runner, stage, label):
    skewed = None
    for name, symbols in _symbol_streams().items():
        x = symbols.astype(np.float32)
        decoded, _, _, bits = runner.roundtrip(x)
        wrong = int(np.count_nonzero(decoded != x))
        if wrong:
            raise Fault(f"decode(encode(x)) differs from x in {wrong} of {x.size} symbols on a "
                        f"{name} stream: a lossless stage must return exactly its input.")
        if name == "skewed":
            skewed = (x.size, bits, entropy_bits(symbols))
            runner.check_same_in_a_session(x, runner.encode(x)[0])
    n, bits, entropy = skewed
    per_value = bits / n
    if per_value >= 8:
        raise Fault(f"on a skewed stream (entropy {entropy:.2f} bits) the encoding uses "
                    f"{per_value:.2f} bits per value, not fewer than 8-bit packing: use short codes "
                    "for frequent symbols.")
    if bits < n * entropy - 256 * np.log2(n):
        raise Fault(f"the encoding uses {per_value:.2f} bits per value, below the entropy "
                    f"{entropy:.2f} of the symbols: information must be travelling uncounted "
                    "(in params or on self).")
    return (f"is exact on random, skewed and degenerate streams, {per_value:.2f} bits/value on a skewed "
            f"stream of entropy {entropy:.2f}")


def _aggregate(updates_list, modes):
    combined = {}
    for key, mode in modes.items():
        values = [np.asarray(u[key]) for u in updates_list]
        if mode == te.core.StateAggregationMode.SUM:
            combined[key] = np.sum(values, axis=0).astype(values[0].dtype)
        elif mode == te.core.StateAggregationMode.MIN:
            combined[key] = np.min(values, axis=0)
        else:
            combined[key] = np.max(values, axis=0)
    return combined


def check_adaptive(runner, stage, label):
    bits = ADAPTIVE_BITS
    modes = stage.state_update_aggregation_modes
    initial = runner.initial_state
    changed = False
    for scale in (1e-3, 10.0):
        rng = seeded_rng()
        first = update_like((40, 50), scale, rng)
        second = -0.5 * first[::-1]  # a second client, with a smaller largest |x|
        state = initial
        for _ in range(2):  # two rounds of two clients
            _, updates_1, _, _ = runner.encode(first, state)
            _, updates_2, _, _ = runner.encode(second, state)
            if set(updates_1) != set(modes):
                raise Fault(f"encode returns state updates {sorted(updates_1)} but "
                            f"state_update_aggregation_modes has {sorted(modes)}: the keys must match.")
            state = runner.update_state(state, _aggregate([updates_1, updates_2], modes))
        changed |= any(not np.array_equal(np.asarray(state[k]), np.asarray(initial[k])) for k in initial)
        decoded, _, _, _ = runner.roundtrip(first, state)
        error = float(np.max(np.abs(decoded - first)))
        bound = 4 * float(np.max(np.abs(first))) / (2**bits - 1) * (1 + 1e-5)
        if error > bound:
            raise Fault(f"after two rounds on values of scale {scale:g} the largest error is "
                        f"{error:.3g}, more than 4·max|x|/(2**bits - 1) = {bound:.3g}: update_state "
                        "should move the parameter (e.g. the range) to what encode observed.")
        check_unbiased(runner, state, float(np.max(np.abs(first))), bits)
    if not changed:
        raise Fault("update_state returns the initial state after two rounds: the parameters "
                    "never adapt.")
    if not stage.commutes_with_sum:
        raise Fault(f"{label}.commutes_with_sum is False, but every client quantizes on the same range "
                    "from the server's state: can the server add their integers and decode the sum once?")
    return (f"keeps shape and dtype, adapts its state to values of scale 0.001 and 10 "
            f"(error within 4·max|x|/{2**bits - 1} after two rounds), rounds without bias")


def check_unbiased(runner, state, top, bits, samples=ROUNDINGS):
    """The mean of ``samples`` decodes of a value between two levels must be that value.

    ``top``: the largest ``|x|`` the state was adapted to, so the step between
    levels is ``2 * top / (2**bits - 1)``. One rounding is off by at most one
    step, so its standard deviation is at most ``step / 2`` and that of a mean
    of ``samples`` at most ``step / (2 * sqrt(samples))``; a mean further than
    5 of those from the value is flagged. Seven values a seventh of a step
    apart: round-to-nearest is within that of at most one of them.
    """
    step = 2 * top / (2**bits - 1)
    values = (0.3 * top + np.arange(7) * step / 7).astype(np.float32)
    x = np.repeat(values[:, None], samples, axis=1)
    decoded, _, _, _ = runner.roundtrip(x, state)
    mean = decoded.astype(np.float64).mean(axis=1)
    bias = np.abs(mean - values)
    tolerance = 5 * step / (2 * np.sqrt(samples))
    i = int(np.argmax(bias))
    if bias[i] > tolerance:
        raise Fault(f"rounding is biased: {samples:,} encodings of {values[i]:.6g} decode to "
                    f"{mean[i]:.6g} on average, {bias[i] / step:.2f} steps off, more than "
                    f"{tolerance / step:.3f} steps (5 standard deviations): round up with probability "
                    "equal to the fraction of the step above the level below, independently per value.")
