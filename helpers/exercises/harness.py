"""Checks what every exercise of notebook 05 asks of a stage, and says what is wrong in one sentence.

:func:`run_checks` takes a stage (class, instance or a no-argument encoder
factory) and an exercise record from :mod:`helpers.exercises`, and checks
what every exercise shares: the interface (every member implemented, the
``tf_style`` decorator, the properties' types), ``decode(encode(x))`` with
encoding and decoding in separate graphs (:mod:`helpers.exercises.runner`),
that a stage claiming ``commutes_with_sum`` really does, and that its bits are
counted (``helpers.sizing.tensor_bits`` against the arrays' own sizes) inside
the course's encoder. In between it calls the exercise's own check
(:mod:`helpers.exercises.checks`). It returns a one-sentence summary, or
raises ``runner.Fault`` (what is wrong and what to do) or
:class:`NotAttempted` (every member is still a stub).
"""
import collections
import inspect

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import sizing
from helpers.exercises.runner import (Fault, Runner, check_shape_dtype, describe_error,
                                     independent_bits, seeded_rng, specs_of, stub_fault,
                                     stub_name, to_numpy, update_like)

DECORATED = ("TFStyleEncodingStage", "TFStyleAdaptiveEncodingStage")
_PROPERTIES = ("name", "compressible_tensors_keys", "commutes_with_sum", "decode_needs_input_shape")
_ADAPTIVE_PROPERTIES = ("state_update_aggregation_modes",)


class NotAttempted(Exception):
    """Every member of the stage is still a stub."""


def run_checks(stage, exercise):
    """Checks ``stage`` for ``exercise`` (a :class:`helpers.exercises.Exercise`); returns a summary.

    Raises :class:`Fault` or :class:`NotAttempted`.
    """
    if _is_encoder_factory(stage):
        return _check_encoder_factory(stage, exercise)
    instance, cls = _instantiate(stage, exercise)
    label = cls.__mro__[1].__name__ if cls.__name__ in DECORATED else cls.__name__
    _probe_interface(instance, exercise, label)
    runner = Runner(instance, adaptive=exercise.adaptive, dynamic=exercise.takes_symbols)
    details = exercise.check(runner, instance, label)
    _check_commutes(runner, instance, label, exercise)
    bits_per_value = _check_course_encoder(cls, exercise, label)
    return f"{label} {details}; bits counted: {bits_per_value:.2f} bits/value in the course's encoder."


def _is_encoder_factory(stage):
    return (callable(stage) and not inspect.isclass(stage)
            and not isinstance(stage, (te.core.EncodingStageInterface, te.core.AdaptiveEncodingStageInterface)))


def _instantiate(stage, exercise):
    interface = te.core.AdaptiveEncodingStageInterface if exercise.adaptive else te.core.EncodingStageInterface
    other = te.core.EncodingStageInterface if exercise.adaptive else te.core.AdaptiveEncodingStageInterface
    cls = stage if inspect.isclass(stage) else type(stage)
    name = cls.__mro__[1].__name__ if cls.__name__ in DECORATED else cls.__name__
    if not issubclass(cls, interface):
        if issubclass(cls, other):
            raise Fault(f"{name} subclasses te.core.{other.__name__}, but this exercise needs "
                        f"te.core.{interface.__name__}.")
        raise Fault(f"{name} must subclass te.core.{interface.__name__}.")
    if cls.__name__ not in DECORATED:
        decorator = "tf_style_adaptive_encoding_stage" if exercise.adaptive else "tf_style_encoding_stage"
        raise Fault(f"{name} needs the @te.core.{decorator} decorator: the Encoder calls "
                    "get_params, encode and decode with a `name` argument that it adds.")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise Fault(f"{name} does not define {', '.join(missing)}: every abstract method and "
                    "property of the interface must be implemented.")
    if not inspect.isclass(stage):
        return stage, cls
    kwargs = dict(exercise.stage_args)
    try:
        return stage(**kwargs), cls
    except NotImplementedError:
        raise NotAttempted(f"{name}() still raises NotImplementedError.") from None
    except TypeError as error:
        call = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise Fault(f"{name}({call}) failed ({error}): the constructor must accept "
                    f"{call or 'no arguments'}.") from None


def _members(exercise):
    props = _PROPERTIES + (_ADAPTIVE_PROPERTIES if exercise.adaptive else ())
    methods = (("initial_state",) if exercise.adaptive else ()) + ("get_params", "encode", "decode") + (
        ("update_state",) if exercise.adaptive else ())
    return props, methods


def _probe_interface(stage, exercise, label):
    """Find stub members (NotImplementedError or None), then check the properties' types."""
    props, methods = _members(exercise)
    outcome = collections.OrderedDict()
    values = {}

    def attempt(member, fn):
        outcome[member], values[member] = _try(fn)
        return values[member] if outcome[member] == "ok" else None

    for prop in props:
        attempt(prop, lambda p=prop: getattr(stage, p))
    if exercise.takes_symbols:
        x = np.arange(64, dtype=np.float32)
    else:
        x = np.linspace(-1.0, 1.0, 64, dtype=np.float32)
    # The methods as written, without the decorator's name scopes (which need a working `name`).
    raw = type(stage).__mro__[1] if type(stage).__name__ in DECORATED else type(stage)
    with tf.Graph().as_default():
        state = {}
        if exercise.adaptive:
            state = attempt("initial_state", lambda: raw.initial_state(stage))
            state = state if isinstance(state, dict) else {}
            params = attempt("get_params", lambda: raw.get_params(stage, state))
        else:
            params = attempt("get_params", lambda: raw.get_params(stage))
        params = params if isinstance(params, tuple) and len(params) == 2 else ({}, {})
        encoded = attempt("encode", lambda: raw.encode(stage, tf.constant(x), params[0]))
        updates = {}
        if exercise.adaptive and isinstance(encoded, tuple) and len(encoded) == 2:
            encoded, updates = encoded
        encoded = encoded if isinstance(encoded, dict) else {}
        attempt("decode", lambda: raw.decode(stage, encoded, params[1], num_summands=None,
                                             shape=tf.constant([64])))
        if exercise.adaptive:
            attempt("update_state", lambda: raw.update_state(
                stage, state, updates if isinstance(updates, dict) else {}))
    stubs = [m for m, o in outcome.items() if o in ("stub", "none")]
    if len(stubs) == len(outcome):
        raise NotAttempted(f"every method of {label} still raises NotImplementedError "
                           "(or returns None); replace the stubs with your code.")
    for member in list(props) + list(methods):
        if outcome[member] == "stub":
            raise stub_fault(values[member], member, label)
        if outcome[member] == "none":
            raise Fault(f"{label}.{member} returns None: it must return "
                        f"{_EXPECTED_RETURN[member]}.")
    for prop in props:
        if outcome[prop] == "error":
            raise Fault(f"reading {label}.{prop} raised {describe_error(values[prop])}.")
    _check_property_types(values, label, exercise)


_EXPECTED_RETURN = {
    "name": "a string", "compressible_tensors_keys": "a list of keys of the encoded tensors",
    "commutes_with_sum": "True or False", "decode_needs_input_shape": "True or False",
    "state_update_aggregation_modes": "a dict mapping state update keys to te.core.StateAggregationMode",
    "initial_state": "a dict of tensors", "get_params": "a tuple (encode_params, decode_params)",
    "encode": "a dict of encoded tensors", "decode": "the decoded tensor",
    "update_state": "the new state dict",
}


def _try(fn):
    try:
        value = fn()
    except NotImplementedError as stub:
        return "stub", stub
    except Exception as error:  # the member is written; its errors are reported later, in context
        return "error", error
    return ("none", None) if value is None else ("ok", value)


def _check_property_types(values, label, exercise):
    if not isinstance(values["name"], str) or not values["name"]:
        raise Fault(f"{label}.name must be a non-empty string, got {values['name']!r}.")
    keys = values["compressible_tensors_keys"]
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise Fault(f"{label}.compressible_tensors_keys must be a list of strings, got {keys!r}.")
    for prop in ("commutes_with_sum", "decode_needs_input_shape"):
        if not isinstance(values[prop], bool):
            raise Fault(f"{label}.{prop} must be True or False, got {values[prop]!r}.")
    if exercise.adaptive:
        modes = values["state_update_aggregation_modes"]
        if not isinstance(modes, dict) or not modes:
            raise Fault(f"{label}.state_update_aggregation_modes must be a non-empty dict from "
                        f"state update keys to te.core.StateAggregationMode, got {modes!r}.")
        for key, mode in modes.items():
            if not isinstance(mode, te.core.StateAggregationMode):
                raise Fault(f"{label}.state_update_aggregation_modes[{key!r}] must be a "
                            f"te.core.StateAggregationMode, got {mode!r}.")
            if mode == te.core.StateAggregationMode.STACK:
                raise Fault(f"{label}.state_update_aggregation_modes[{key!r}] is STACK, which the "
                            "course's aggregator does not support: use SUM, MIN or MAX.")


def _check_commutes(runner, stage, label, exercise):
    """A stage claiming ``commutes_with_sum`` must decode a sum of encodings to the sum of decodings."""
    if not stage.commutes_with_sum:
        return
    rng = seeded_rng()
    if exercise.takes_symbols:
        x1, x2 = (rng.integers(0, 256, 2000).astype(np.float32) for _ in range(2))
    else:
        x1, x2 = (update_like((40, 50), 1.0, rng) for _ in range(2))
    if runner.adaptive:  # a state whose parameters fit the data
        state = runner.initial_state
    else:
        state = None
    e1, _, _, specs = runner.encode(x1, state)
    e2, _, _, _ = runner.encode(x2, state)
    for key in e1:
        if np.shape(e1[key]) != np.shape(e2[key]):
            raise Fault(f"{label} claims commutes_with_sum=True, but encoded tensor {key!r} has a "
                        "data-dependent shape, so two encodings cannot be added: return False.")
    summed = {k: (np.asarray(e1[k]) + np.asarray(e2[k])).astype(np.asarray(e1[k]).dtype) for k in e1}
    separate = runner.decode(e1, specs, x1.shape, state) + runner.decode(e2, specs, x2.shape, state)
    try:
        together = runner.decode(summed, specs, x1.shape, state, num_summands=2)
    except Fault as fault:
        raise Fault(f"{label} claims commutes_with_sum=True, but decoding the sum of two encodings fails "
                    f"({str(fault).rstrip('.')}): return False.") from None
    if np.shape(together) != np.shape(separate):
        raise Fault(f"{label} claims commutes_with_sum=True, but decoding a sum of two encodings "
                    f"gives shape {np.shape(together)}: return False, or make decode linear.")
    gap = float(np.max(np.abs(together - separate)))
    if gap > 1e-4 * (1 + float(np.max(np.abs(separate)))):
        raise Fault(f"{label} claims commutes_with_sum=True, but decode(encode(x1) + encode(x2), "
                    f"num_summands=2) differs from decode(encode(x1)) + decode(encode(x2)) by {gap:.3g}: "
                    "return False, or make the encoding linear in x with parameters shared by all clients.")


def _course_input():
    """The update-like input [120, 100] the course's encoder is checked on."""
    return update_like((120, 100), 1e-3)


def _check_course_encoder(cls, exercise, label):
    """Run the stage inside the course's encoder through a GatherEncoder, as the mean process does."""
    try:
        encoder = exercise.course_encoder(cls)
    except KeyError as error:
        raise Fault(f"the course's encoder cannot put a stage after {label} ({error}): list the key "
                    "of the values to pack in compressible_tensors_keys.") from None
    except Exception as error:
        raise Fault(f"composing {label} into the course's encoder raised {describe_error(error)}.") from None
    return _check_encoder(encoder, f"the course's encoder with {label}")


def _check_encoder_factory(factory, exercise):
    try:
        encoder = factory()
    except NotImplementedError as stub:
        name = getattr(factory, "__name__", "the encoder factory")
        if stub_name(stub) in (name, None):
            raise NotAttempted(f"{name} still raises NotImplementedError.") from None
        raise stub_fault(stub, name) from None
    if encoder is None:
        raise NotAttempted("the encoder factory returns None.")
    if not isinstance(encoder, te.core.Encoder):
        raise Fault(f"the factory returned {type(encoder).__name__}; it must return a te.core.Encoder "
                    "(build one with te.core.EncoderComposer(...).make()).")
    bits_per_value = _check_encoder(encoder, "the encoder")
    return f"the encoder keeps shape and dtype through a GatherEncoder; bits counted: {bits_per_value:.2f} bits/value."


def _check_encoder(encoder, what):
    x = _course_input()
    spec = tf.TensorSpec(x.shape, tf.float32)
    try:
        gather = te.encoders.as_gather_encoder(encoder, spec)
    except Fault:
        raise
    except Exception as error:
        raise Fault(f"{what} fails when wrapped as a GatherEncoder: {describe_error(error)}.") from None
    state = gather.initial_state()

    @tf.function(autograph=False)
    def encode(value):
        encode_params, before_params, _ = gather.get_params(state)
        encoded, updates = gather.encode(value, encode_params)
        return encoded, updates, sizing.tensor_bits((encoded, updates))

    try:
        concrete = encode.get_concrete_function(spec)
        encoded, updates, counted = to_numpy(concrete(tf.constant(x)))
    except Exception as error:
        raise Fault(f"{what} fails to encode: {describe_error(error)}.") from None
    specs = specs_of(concrete.structured_outputs[0])

    @tf.function(autograph=False, input_signature=[specs])
    def decode(encoded):
        _, before_params, after_params = gather.get_params(state)
        part = gather.decode_before_sum(encoded, before_params)
        return gather.decode_after_sum(part, after_params, 1)

    try:
        decoded = decode(encoded).numpy()
    except Exception as error:
        raise Fault(f"{what} fails to decode: {describe_error(error)}.") from None
    check_shape_dtype(decoded, x)
    independent = independent_bits(encoded) + sum(np.asarray(u).size * np.asarray(u).dtype.itemsize * 8
                                                   for u in tf.nest.flatten(updates))
    if int(counted) != independent:
        raise Fault(f"helpers.sizing.tensor_bits counts {int(counted)} bits for {what} but its "
                    f"encoded arrays hold {independent}.")
    if not counted < 32 * x.size:
        raise Fault(f"{what} sends {int(counted) / x.size:.2f} bits per value, not fewer than "
                    "float32's 32: make sure the values are packed.")
    return int(counted) / x.size
