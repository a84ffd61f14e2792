"""The hidden tests of notebook 05's graded release: each exercise's stage inside TFF's ``GatherEncoder``.

The visible checks (:mod:`helpers.exercises.checks`) run a stage on fixed
shapes, bits and seeds, which a student could tune a stage to. The hidden
tests run it the way FedAvg does, inside the course's encoder wrapped as a
``te.encoders.as_gather_encoder``, with other bits, other shapes and
another seed:

- (a) 3 bits on a [6, 7, 50] tensor: at most 8 levels, every value decoded
  to its nearest level, a lower MSE than uniform quantization;
- (b) 6-bit symbols (64 of them) in a [3, 41, 17] tensor: decoded exactly, in
  fewer bits than 6 a value;
- (c) 4 bits: the range adapts over two rounds, and 3,000 encodings of
  values between two levels decode to those values on average (unbiased).

:func:`hidden_check` prints one line and raises ``AssertionError`` with the
same sentence when a test fails (nbgrader scores the cell 0). The references
the stages are held to (uniform quantization's MSE, the bits sent) are computed
here with NumPy, from nothing a student's notebook can reach.
"""
import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers.exercises import stages
from helpers.exercises.runner import Fault, check_sends_only_tensors, describe_error, independent_bits, update_like

SEED = 2026  # another seed than the visible checks'
TITLES = {"a": "Exercise (a)", "b": "Exercise (b)", "c": "Exercise (c)"}


class HiddenFault(Exception):
    """What a hidden test found wrong, in one sentence."""


def hidden_check(stage_cls, kind, seed=SEED):
    """Run the hidden test of exercise ``kind`` ("a", "b", "c") on ``stage_cls``; print one line.

    Returns the line; raises ``AssertionError`` with it if the stage fails.
    """
    tests = {"a": _nonuniform, "b": _lossless, "c": _adaptive}
    if kind not in tests:
        raise ValueError(f"exercise {kind!r} has no hidden test; the hidden tests are for a, b and c.")
    title = TITLES[kind]
    rng = np.random.default_rng(seed)
    try:
        summary = tests[kind](stage_cls, rng)
    except (HiddenFault, Fault) as fault:
        line = f"{title}, hidden test not passed: {fault}"
    except NotImplementedError:
        line = f"{title}, hidden test not passed: the stage still raises NotImplementedError."
    except Exception as error:  # the student's code failed in a way not foreseen: say how
        line = f"{title}, hidden test not passed: running the stage raised {describe_error(error)}."
    else:
        print(f"{title}, hidden test passed: {summary}")
        return f"{title}, hidden test passed: {summary}"
    print(line)
    raise AssertionError(line)


def gather_roundtrip(encoder, shape):
    """A function ``(x, state) -> (decoded, state_updates, bits)`` through TFF's ``GatherEncoder``.

    It encodes ``x`` (float32, ``shape``) as one client, in one graph, and
    decodes it on the server, in another graph that sees the encoded tensors
    only. ``state``: the encoder's state (``None``: its initial state).
    Returns numpy arrays, the encoder's state updates and the bits of the
    encoded arrays, counted here from their sizes and dtypes. Also returns the
    ``GatherEncoder``. Encode and decode may not pass values beside the encoded
    tensors (:func:`helpers.exercises.runner.check_sends_only_tensors`).
    """
    spec = tf.TensorSpec(shape, tf.float32)
    gather = te.encoders.as_gather_encoder(encoder, spec)
    initial = gather.initial_state()

    @tf.function(autograph=False)
    def encode(value, state):
        encode_params, _, _ = gather.get_params(state)
        return gather.encode(value, encode_params)

    state_spec = tf.nest.map_structure(tf.TensorSpec.from_tensor, initial)
    concrete = encode.get_concrete_function(spec, state_spec)
    check_sends_only_tensors(concrete, "encode, inside the GatherEncoder,")
    encoded_spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), concrete.structured_outputs[0])

    @tf.function(autograph=False, input_signature=[encoded_spec, state_spec])
    def decode(encoded, state):  # in its own graph, from the encoded tensors only, as on the server
        _, before_sum_params, after_sum_params = gather.get_params(state)
        part = gather.decode_before_sum(encoded, before_sum_params)
        return gather.decode_after_sum(part, after_sum_params, 1)

    check_sends_only_tensors(decode.get_concrete_function(), "decode, inside the GatherEncoder,", decode=True)

    def roundtrip(x, state=None):
        state = initial if state is None else state
        encoded, updates = concrete(tf.constant(x), state)
        bits = independent_bits({k: v.numpy() for k, v in encoded.items()})  # counted here, from the arrays
        decoded = decode(encoded, state).numpy()
        if decoded.shape != x.shape:
            raise HiddenFault(f"a {list(x.shape)} tensor decodes to shape {list(decoded.shape)} inside the "
                              "GatherEncoder: decode must restore the input's shape.")
        return decoded, updates, int(bits)

    return roundtrip, gather


def uniform_mse(x, bits):
    """MSE of uniform quantization of ``x`` to ``2**bits`` levels from its min to its max, rounding to nearest.

    The reference exercise (a) must beat, computed here with NumPy from its
    definition (tfmot's ``UniformQuantizationEncodingStage``, deterministic),
    so that nothing a student's notebook can reach enters it.
    """
    x = np.asarray(x, np.float64)
    low, high = x.min(), x.max()
    top = 2**bits - 1
    levels = np.floor((x - low) / (high - low) * top + 0.5) if high > low else np.zeros_like(x)
    return float(np.mean((levels / top * (high - low) + low - x) ** 2))


def _nonuniform(stage_cls, rng):
    bits = 3
    x = update_like((6, 7, 50), rng=rng)
    roundtrip, _ = gather_roundtrip(stages.non_uniform_quantization_encoder(bits, stage_cls=stage_cls), x.shape)
    decoded, _, _ = roundtrip(x)
    levels = np.unique(decoded)
    if levels.size > 2**bits:
        raise HiddenFault(f"at {bits} bits the values decode to {levels.size} different levels, more than "
                          f"2**{bits} = {2**bits}.")
    nearest = np.min(np.abs(x.reshape(-1, 1) - levels.reshape(1, -1)), axis=1).reshape(x.shape)
    if np.any(np.abs(decoded - x) > nearest + 1e-6 * np.max(np.abs(x))):
        raise HiddenFault(f"at {bits} bits some value decodes to a level that is not the nearest one.")
    mse, uniform = float(np.mean((decoded - x) ** 2)), uniform_mse(x, bits)
    if not mse < uniform:
        raise HiddenFault(f"at {bits} bits the MSE {mse:.3g} is not lower than uniform quantization's "
                          f"{uniform:.3g}.")
    return f"at {bits} bits on a [6, 7, 50] tensor: {levels.size} levels, MSE {mse:.3g} < {uniform:.3g} uniform."


def _lossless(stage_cls, rng):
    input_bits = 6
    symbols = np.minimum(rng.geometric(0.3, (3, 41, 17)) - 1, 2**input_bits - 1).astype(np.float32)
    encoder = (te.core.EncoderComposer(stage_cls(input_bits=input_bits))
               .add_parent(te.stages.FlattenEncodingStage(), te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY)
               .make())
    roundtrip, _ = gather_roundtrip(encoder, symbols.shape)
    decoded, _, bits = roundtrip(symbols)
    wrong = int(np.count_nonzero(decoded != symbols))
    if wrong:
        raise HiddenFault(f"with input_bits={input_bits}, {wrong} of {symbols.size} symbols decode to "
                          "another symbol: the stage must be exact for any input_bits.")
    if bits >= input_bits * symbols.size:
        raise HiddenFault(f"with input_bits={input_bits} a skewed stream takes {bits / symbols.size:.2f} bits "
                          f"per value, not fewer than {input_bits}.")
    return (f"with input_bits={input_bits} on a [3, 41, 17] tensor: exact, "
            f"{bits / symbols.size:.2f} bits per value.")


def _adaptive(stage_cls, rng):
    bits, copies = 4, 3000
    encoder = stages.adaptive_quantization_encoder(bits, stage_cls=stage_cls)
    first = update_like((7, copies), scale=0.05, rng=rng)
    roundtrip, gather = gather_roundtrip(encoder, first.shape)
    state = gather.initial_state()
    for _ in range(2):  # two rounds of one client: the range moves to what it observed
        _, updates, _ = roundtrip(first, state)
        state = gather.update_state(state, updates)
    top = float(np.max(np.abs(first)))
    step = 2 * top / (2**bits - 1)
    values = (0.3 * top + np.arange(7) * step / 7).astype(np.float32)
    between = np.repeat(values[:, None], copies, axis=1)
    decoded, _, _ = roundtrip(between, state)
    mean = decoded.astype(np.float64).mean(axis=1)
    bias = np.abs(mean - values) / step
    tolerance = 5 / (2 * np.sqrt(copies))  # 5 standard deviations of a mean of `copies` roundings, in steps
    if np.max(bias) > 0.5:
        raise HiddenFault(f"after two rounds on values up to {top:.3g} a value decodes {np.max(bias):.2f} steps "
                          "away on average: the range must adapt to what the clients observed.")
    if np.max(bias) > tolerance:
        i = int(np.argmax(bias))
        raise HiddenFault(f"rounding is biased: {copies:,} encodings of {values[i]:.6g} inside the GatherEncoder "
                          f"decode to {mean[i]:.6g} on average, {bias[i]:.2f} steps off (more than "
                          f"{tolerance:.3f}): round up with probability equal to the fraction of the step.")
    return (f"at {bits} bits inside the GatherEncoder: adapts over two rounds, unbiased within "
            f"{np.max(bias):.3f} steps.")
