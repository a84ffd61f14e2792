"""Encoded, measured communication for Federated Averaging.

TFF 0.87 removed the original tutorial's ``build_encoded_broadcast_process_from_model``
and its sizing executor. This module brings both back, built from TFF's own
templates:

- :func:`build_encoded_broadcast_process` returns a ``DistributionProcess`` for
  ``build_weighted_fed_avg(model_distributor=...)``: the server encodes the
  model, broadcasts the *encoded* tensors, every client decodes them. Its
  measurement ``broadcast_bits`` is the bits of what each client received,
  summed over the sampled clients.
- :func:`build_encoded_mean_factory` returns a weighted aggregation factory for
  ``build_weighted_fed_avg(model_aggregator=...)``: ``MeanFactory`` around an
  encoded sum. Each client encodes its update; the server decodes and averages.
  Its measurement ``aggregated_bits`` is the bits of what the clients sent.

Both take an ``encoder_fn``: called once per model variable with its
``tf.TensorSpec``, it returns a ``te.core.SimpleEncoder`` (broadcast) or a
``te.core.GatherEncoder`` (aggregation). Bits are counted from the encoded tensors
themselves (:func:`helpers.sizing.tensor_bits`), never from a formula about the
method, so a new encoding stage is measured the same way as the built-in ones.
The uncompressed baseline uses the same builders with identity encoders.
"""
import collections
import math

import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import sizing

DEFAULT_THRESHOLD = 10_000

EncoderFns = collections.namedtuple("EncoderFns", ["broadcast", "aggregation"])
EncoderFns.__doc__ = ("A pair of encoder functions: ``broadcast`` (spec -> SimpleEncoder) and ``aggregation`` "
                      "(spec -> GatherEncoder, for the mean of client updates).")


# ---------------------------------------------------------------- policies --

def threshold_policy(make_encoder, threshold=DEFAULT_THRESHOLD):
    """Encoder functions that use ``make_encoder()`` above ``threshold`` elements, identity below.

    ``make_encoder`` is a no-argument callable returning a ``te.core.Encoder``
    (for example ``lambda: te.encoders.uniform_quantization(bits=8)``).
    Variables with more than ``threshold`` elements are encoded with it; the
    rest are sent as they are. Returns :class:`EncoderFns`.
    """
    if not callable(make_encoder):
        raise TypeError(f"make_encoder must be a no-argument callable returning a te.core.Encoder, "
                        f"got {make_encoder!r}.")
    if not isinstance(threshold, (int, float)) or threshold < 0:
        raise ValueError(f"threshold must be a number of elements >= 0, got {threshold!r}.")

    def core_encoder(spec):
        if spec.shape.num_elements() > threshold:
            return make_encoder()
        return te.encoders.identity()

    return EncoderFns(
        broadcast=lambda spec: te.encoders.as_simple_encoder(core_encoder(spec), spec),
        aggregation=lambda spec: te.encoders.as_gather_encoder(core_encoder(spec), spec),
    )


def uniform_quantization(bits=8, threshold=DEFAULT_THRESHOLD):
    """The original tutorial's policy: ``bits``-bit uniform quantization above ``threshold`` elements.

    Returns :class:`EncoderFns`. ``bits`` must be an integer from 1 to 16.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an integer from 1 to 16 (tfmot's uniform quantization), "
                         f"got {bits!r}.")
    return threshold_policy(lambda: te.encoders.uniform_quantization(bits=bits), threshold)


def identity():
    """No compression: every variable is sent as it is. Returns :class:`EncoderFns`."""
    return threshold_policy(te.encoders.identity, threshold=math.inf)


# ------------------------------------------------------ checking encoders --

def _describe(name, spec):
    shape = list(spec.shape) if spec.shape.rank is not None else "unknown"
    return f"variable {name} ({spec.dtype.name} {shape})"


def _encoders_for(specs, names, encoder_fn, expected_type, wrap_with):
    """Call ``encoder_fn`` on every spec and check what it returns; a list of encoders."""
    if not callable(encoder_fn):
        raise TypeError(f"encoder_fn must be a function spec -> {expected_type.__name__}, "
                        f"got {encoder_fn!r}.")
    encoders = []
    for name, spec in zip(names, specs):
        what = _describe(name, spec)
        _check_floating(name, spec)
        encoder = encoder_fn(spec)
        if encoder is None:
            raise TypeError(f"encoder_fn returned None for {what}. It must return a "
                            f"te.core.{expected_type.__name__}: did the function forget `return`?")
        if not isinstance(encoder, expected_type):
            raise TypeError(
                f"encoder_fn returned {type(encoder).__name__} for {what}; this process needs a "
                f"te.core.{expected_type.__name__}. Wrap a te.core.Encoder with "
                f"te.encoders.{wrap_with}(encoder, spec).")
        built_for = encoder.input_tensorspec
        if built_for.dtype != spec.dtype or built_for.shape != spec.shape:
            raise ValueError(
                f"encoder_fn returned an encoder built for {built_for.dtype.name} "
                f"{list(built_for.shape)} for {what}. Build it with the spec that encoder_fn "
                "receives, e.g. te.encoders." + wrap_with + "(encoder, spec).")
        encoders.append(encoder)
    return encoders


def _check_floating(name, spec):
    if not spec.dtype.is_floating:
        raise TypeError(
            f"{_describe(name, spec)} is not floating point; encoders (and averaging) only apply "
            "to float variables. Cast it to float32 in the model, or keep it out of the weights.")


def _tensor_specs(value_type):
    """Flat list of ``tf.TensorSpec`` for a TFF type (a struct of tensors)."""
    specs = tff.types.type_to_tf_tensor_specs(value_type)
    return tf.nest.flatten(specs)


def _variable_names(model_fn, count):
    """Variable names of the model built by ``model_fn``, in ModelWeights order."""
    with tf.Graph().as_default():
        model = model_fn()
        names = [v.name.split(":")[0] for v in model.trainable_variables + model.non_trainable_variables]
    return names if len(names) == count else [f"#{i}" for i in range(count)]


# ------------------------------------------------------------- broadcast --

def build_encoded_broadcast_process(model_fn, encoder_fn):
    """A ``tff.learning.templates.DistributionProcess`` that broadcasts the model encoded.

    ``model_fn`` builds the ``tff.learning.models.VariableModel`` being
    trained; ``encoder_fn`` maps each variable's ``tf.TensorSpec`` to a
    ``te.core.SimpleEncoder``. The server encodes the model weights, the
    encoded tensors are broadcast, each client decodes them. Measurements:
    ``broadcast_bits`` (int64), the bits all sampled clients received this round.
    """
    weights_type = tff.learning.models.weights_type_from_model(model_fn)
    specs = _tensor_specs(weights_type)
    names = _variable_names(model_fn, len(specs))
    encoders = _encoders_for(specs, names, encoder_fn, te.core.SimpleEncoder, "as_simple_encoder")
    structure = tff.types.type_to_tf_tensor_specs(weights_type)

    @tff.tensorflow.computation
    def initial_state():
        return tuple(e.initial_state() for e in encoders)

    state_type = initial_state.type_signature.result

    @tff.tensorflow.computation(state_type, weights_type)
    def encode(state, weights):
        pairs = [e.encode(x, s) for e, x, s in zip(encoders, tf.nest.flatten(weights), state)]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)

    encoded_type = encode.type_signature.result[0]

    @tff.tensorflow.computation(encoded_type)
    def decode(encoded):
        decoded = [e.decode(x) for e, x in zip(encoders, encoded)]
        return tf.nest.pack_sequence_as(structure, decoded)

    @tff.tensorflow.computation(encoded_type)
    def bits_received(encoded):
        return sizing.tensor_bits(encoded)

    @tff.federated_computation
    def init_fn():
        return tff.federated_eval(initial_state, tff.SERVER)

    @tff.federated_computation(tff.FederatedType(state_type, tff.SERVER),
                               tff.FederatedType(weights_type, tff.SERVER))
    def next_fn(state, weights):
        encoded, new_state = tff.federated_map(encode, (state, weights))
        encoded_at_clients = tff.federated_broadcast(encoded)
        decoded = tff.federated_map(decode, encoded_at_clients)
        bits = tff.federated_sum(tff.federated_map(bits_received, encoded_at_clients))
        measurements = tff.federated_zip(collections.OrderedDict(broadcast_bits=bits))
        return tff.templates.MeasuredProcessOutput(new_state, decoded, measurements)

    return tff.learning.templates.DistributionProcess(init_fn, next_fn)


# ------------------------------------------------------------------ mean --

class MeasuredEncodedSumFactory(tff.aggregators.UnweightedAggregationFactory):
    """Sum of client values sent through ``te.core.GatherEncoder`` s, with its bits measured.

    The same algorithm as ``tff.aggregators.EncodedSumFactory`` (encode at the
    clients, decode the part that does not commute with sum, sum, decode the
    rest at the server), plus the measurement ``aggregated_bits``: the bits of
    the encoded tensors (and encoder statistics) every client sent, summed.
    """

    def __init__(self, encoder_fn):
        self._encoder_fn = encoder_fn

    def create(self, value_type):
        specs = _tensor_specs(value_type)
        names = [f"#{i}" for i in range(len(specs))]
        encoders = _encoders_for(specs, names, self._encoder_fn, te.core.GatherEncoder,
                                 "as_gather_encoder")
        return _encoded_sum_process(encoders, value_type)


def _encoded_sum_process(encoders, value_type):
    """The ``AggregationProcess`` of :class:`MeasuredEncodedSumFactory` for a list of encoders."""
    structure = tff.types.type_to_tf_tensor_specs(value_type)
    modes = [tuple(e.state_update_aggregation_modes) for e in encoders]

    @tff.tensorflow.computation
    def initial_state():
        return tuple(e.initial_state() for e in encoders)

    state_type = initial_state.type_signature.result

    @tff.tensorflow.computation(state_type)
    def get_params(state):
        params = [e.get_params(s) for e, s in zip(encoders, state)]
        return tuple(tuple(p[i] for p in params) for i in range(3))

    encode_params_type, before_sum_params_type, after_sum_params_type = get_params.type_signature.result

    @tff.tensorflow.computation(value_type, encode_params_type, before_sum_params_type)
    def encode(value, encode_params, before_sum_params):
        pairs = [e.encode(x, p) for e, x, p in zip(encoders, tf.nest.flatten(value), encode_params)]
        encoded, statistics = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        # The client sends `encoded` and `statistics`; `before_sum_params` only
        # travels along because TFF cannot give a SERVER value to the
        # aggregator, so it is not counted.
        payload = collections.OrderedDict(
            encoded=encoded, before_sum_params=before_sum_params, statistics=statistics)
        return payload, sizing.tensor_bits((encoded, statistics))

    payload_type = encode.type_signature.result[0]

    def decode_before_sum(payload):
        return tuple(e.decode_before_sum(x, p) for e, x, p in
                     zip(encoders, payload["encoded"], payload["before_sum_params"]))

    @tff.tensorflow.computation(payload_type)
    def part_decoded_type_probe(payload):
        return decode_before_sum(payload)

    part_decoded_specs = tff.types.type_to_tf_tensor_specs(part_decoded_type_probe.type_signature.result)
    statistics_specs = tff.types.type_to_tf_tensor_specs(payload_type.statistics)

    def zeros(specs):
        return tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), specs)

    @tff.tensorflow.computation
    def zero():
        return collections.OrderedDict(
            values=zeros(part_decoded_specs), statistics=zeros(statistics_specs),
            count=tf.constant(0, tf.int32))

    accumulator_type = zero.type_signature.result

    def combine_statistics(a, b):
        return tuple(tuple(_combine(x, y, m) for x, y, m in zip(sa, sb, ma))
                     for sa, sb, ma in zip(a, b, modes))

    @tff.tensorflow.computation(accumulator_type, payload_type)
    def accumulate(acc, payload):
        values = tf.nest.map_structure(tf.add, acc["values"], decode_before_sum(payload))
        return collections.OrderedDict(
            values=values, statistics=combine_statistics(acc["statistics"], payload["statistics"]),
            count=acc["count"] + 1)

    @tff.tensorflow.computation(accumulator_type, accumulator_type)
    def merge(a, b):
        return collections.OrderedDict(
            values=tf.nest.map_structure(tf.add, a["values"], b["values"]),
            statistics=combine_statistics(a["statistics"], b["statistics"]),
            count=a["count"] + b["count"])

    @tff.tensorflow.computation(accumulator_type)
    def report(acc):
        return acc

    @tff.tensorflow.computation(accumulator_type.values, after_sum_params_type, tf.int32)
    def decode_after_sum(summed, after_sum_params, count):
        decoded = [e.decode_after_sum(x, p, count) for e, x, p in
                   zip(encoders, summed, after_sum_params)]
        return tf.nest.pack_sequence_as(structure, decoded)

    @tff.tensorflow.computation(state_type, accumulator_type.statistics)
    def update_state(state, statistics):
        return tuple(e.update_state(s, t) for e, s, t in zip(encoders, state, statistics))

    @tff.federated_computation
    def init_fn():
        return tff.federated_eval(initial_state, tff.SERVER)

    @tff.federated_computation(tff.FederatedType(state_type, tff.SERVER),
                               tff.FederatedType(value_type, tff.CLIENTS))
    def next_fn(state, value):
        encode_params, before_sum_params, after_sum_params = tff.federated_map(get_params, state)
        payload, bits = tff.federated_map(encode, (
            value, tff.federated_broadcast(encode_params), tff.federated_broadcast(before_sum_params)))
        summed = tff.federated_aggregate(payload, zero(), accumulate, merge, report)
        result = tff.federated_map(decode_after_sum, (summed.values, after_sum_params, summed.count))
        new_state = tff.federated_map(update_state, (state, summed.statistics))
        measurements = tff.federated_zip(collections.OrderedDict(aggregated_bits=tff.federated_sum(bits)))
        return tff.templates.MeasuredProcessOutput(new_state, result, measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)


def _combine(a, b, mode):
    """Combine two clients' encoder statistics as the stage's aggregation ``mode`` asks."""
    if mode == te.core.StateAggregationMode.SUM:
        return a + b
    if mode == te.core.StateAggregationMode.MIN:
        return tf.minimum(a, b)
    if mode == te.core.StateAggregationMode.MAX:
        return tf.maximum(a, b)
    raise NotImplementedError(f"state aggregation mode {mode} is not supported.")


class _MeasuredEncodedMeanFactory(tff.aggregators.WeightedAggregationFactory):
    """``MeanFactory(MeasuredEncodedSumFactory)`` whose ``aggregated_bits`` sits at the top of its measurements."""

    def __init__(self, encoder_fn):
        self._mean = tff.aggregators.MeanFactory(value_sum_factory=MeasuredEncodedSumFactory(encoder_fn))

    def create(self, value_type, weight_type):
        for i, spec in enumerate(_tensor_specs(value_type)):
            _check_floating(f"#{i}", spec)
        inner = self._mean.create(value_type, weight_type)

        @tff.tensorflow.computation(inner.next.type_signature.result.measurements.member)
        def lift(measurements):
            return collections.OrderedDict(
                aggregated_bits=measurements["mean_value"]["aggregated_bits"])

        @tff.federated_computation(inner.next.type_signature.parameter)
        def next_fn(state, value, weight):
            output = inner.next(state, value, weight)
            return tff.templates.MeasuredProcessOutput(
                output.state, output.result, tff.federated_map(lift, output.measurements))

        return tff.templates.AggregationProcess(inner.initialize, next_fn)


def build_encoded_mean_factory(encoder_fn):
    """A weighted aggregation factory averaging encoded client updates.

    ``encoder_fn`` maps each variable's ``tf.TensorSpec`` to a
    ``te.core.GatherEncoder``. Pass the result as
    ``build_weighted_fed_avg(model_aggregator=...)``. Measurements:
    ``aggregated_bits`` (int64), the bits all sampled clients sent this round.
    """
    if not callable(encoder_fn):
        raise TypeError(f"encoder_fn must be a function spec -> GatherEncoder, got {encoder_fn!r}.")
    return _MeasuredEncodedMeanFactory(encoder_fn)
