"""The literature's baselines as encoding stages, and signSGD's majority vote as an aggregation factory.

Like :mod:`helpers.frontier.research_stages`, the stages implement tfmot's
stage interface with TensorFlow graph ops only, so they run inside TFF
computations, and every bit they send is counted from the encoded tensors:

- :class:`SignEncodingStage`: the sign of every value, one bit each (packed
  into uint8), and, if ``scaled``, one float32 scale, the mean ``|x|``. The
  scaled sign is the compressor of error feedback with signs (Karimireddy et
  al. 2019, "Error Feedback Fixes SignSGD"); the bare sign is what signSGD's
  clients send (Bernstein et al. 2018).
- :class:`QSGDEncodingStage`: QSGD (Alistarh et al. 2017): in buckets of
  ``bucket_size`` values, each value's magnitude divided by the bucket's norm
  is rounded stochastically to one of ``levels`` + 1 levels ``0, 1/s, ..., 1``
  (unbiased), and sent with its sign as one integer in ``[-s, s]``, packed
  tightly; the bucket's norm goes along as one float32. With ``norm="max"``,
  one bucket and one level it is TernGrad (Wen et al. 2017).
- :class:`MajorityVoteFactory`: signSGD with majority vote (Bernstein et al.
  2018, 2019). No encoding stage can do it: tfmot's contract for a stage that
  commutes with sum is that decoding the sum equals summing the decodings,
  and the sign of a sum is not a sum. So the vote is an aggregation factory
  around the course's measured sum.

The factories return ``te.core.Encoder`` s for
:func:`helpers.compression.threshold_policy` (:data:`helpers.frontier.METHODS`).
"""
import collections
import math

import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import compression
from helpers.frontier import research_stages
from helpers.frontier.research_stages import TightBitpackingEncodingStage, pack_bits, unpack_bits

__all__ = ["SignEncodingStage", "QSGDEncodingStage", "MajorityVoteFactory", "sign_encoder", "qsgd_encoder",
           "terngrad_encoder", "packing_bits"]

NORMS = ("l2", "max")


def _pad_to(flat, multiple):
    """``flat`` (a 1-D tensor of known length) zero padded to a multiple of ``multiple``."""
    return tf.pad(flat, [[0, -flat.shape.num_elements() % multiple]])


def _values_seed(x):
    """Two int32 made from ``x``'s values (the bits of its sum and of its sum of magnitudes).

    Stochastic rounding draws from this seed, so the same values round the same way in every run
    (tfmot's stochastic rounding takes no seed), and other values, other clients, round otherwise.
    """
    return tf.stack([tf.bitcast(tf.reduce_sum(x), tf.int32), tf.bitcast(tf.reduce_sum(tf.abs(x)), tf.int32)])


# ---------------------------------------------------------------- signs --

@te.core.tf_style_encoding_stage
class SignEncodingStage(research_stages._StatelessStage):
    """A tensor -> the sign of every value (1 bit each, packed) and, if ``scaled``, one float32 scale, mean ``|x|``.

    Decoding gives ``mean(|x|) * sign(x)`` (``scaled``) or ``sign(x)``. A value of
    exactly 0 is sent as +1: one bit has no room for 0. The bits are padded to a
    whole byte. Deterministic, and the scaled sign is scale-equivariant
    (``C(a x) = a C(x)`` for ``a > 0``).
    """

    SIGNS_KEY = "packed_signs"
    SCALE_KEY = "mean_magnitude"
    NAME = "sign"
    COMPRESSIBLE_KEYS = ()
    COMMUTES_WITH_SUM = False
    NEEDS_INPUT_SHAPE = True

    def __init__(self, scaled=True):
        if not isinstance(scaled, bool):
            raise ValueError(f"scaled must be True (send mean |x| too) or False (signs only), got {scaled!r}.")
        self._scaled = scaled

    def encode(self, x, encode_params):
        del encode_params  # unused
        flat = tf.reshape(x, [-1])
        encoded = collections.OrderedDict(
            [(self.SIGNS_KEY, pack_bits(_pad_to(tf.cast(flat >= 0, tf.int32), 8), 1))])
        if self._scaled:
            encoded[self.SCALE_KEY] = tf.reduce_mean(tf.abs(flat))
        return encoded

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        del decode_params, num_summands  # unused
        bits = unpack_bits(encoded_tensors[self.SIGNS_KEY], 1)[:tf.reduce_prod(shape)]
        signs = tf.cast(2 * bits - 1, tf.float32)
        if self._scaled:
            signs = signs * encoded_tensors[self.SCALE_KEY]
        return tf.reshape(signs, shape)


# ----------------------------------------------------------------- QSGD --

def packing_bits(levels):
    """Bits per value that hold an integer in ``[-levels, levels]`` (``2 * levels + 1`` codes): 1, 2, 4 or 8."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 127:
        raise ValueError(f"levels must be an integer from 1 to 127 (so that [-levels, levels] fits in 8 bits), "
                         f"got {levels!r}.")
    return next(b for b in research_stages.PACKABLE_BITS if 2 ** b >= 2 * levels + 1)


@te.core.tf_style_encoding_stage
class QSGDEncodingStage(research_stages._StatelessStage):
    """A tensor -> in buckets, sign and stochastically rounded level of every value, and one norm per bucket.

    For a bucket ``v`` with norm ``||v||`` (``"l2"``: QSGD; ``"max"``: TernGrad's
    max ``|v|``), a value ``v_i`` becomes ``sign(v_i) * l / s`` with ``l`` the
    integer below or above ``s |v_i| / ||v||``, chosen at random with the
    probabilities that make it unbiased. The output ``levels`` holds
    ``sign * l + s``, an integer in ``[0, 2 s]`` (as float32, for a packing stage);
    ``norms`` one float32 per bucket. ``bucket_size=None``: one bucket for the
    whole tensor. The random numbers come from a seed made from the values.
    """

    LEVELS_KEY = "levels"
    NORMS_KEY = "norms"
    NAME = "qsgd"
    COMPRESSIBLE_KEYS = (LEVELS_KEY,)
    COMMUTES_WITH_SUM = False
    NEEDS_INPUT_SHAPE = True

    def __init__(self, levels=7, bucket_size=512, norm="l2"):
        packing_bits(levels)  # checks levels
        if bucket_size is not None and (isinstance(bucket_size, bool) or not isinstance(bucket_size, int)
                                        or bucket_size < 1):
            raise ValueError(f"bucket_size must be a number of values >= 1, or None for one bucket, "
                             f"got {bucket_size!r}.")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS} ('l2': QSGD, 'max': TernGrad), got {norm!r}.")
        self._levels, self._bucket_size, self._norm = levels, bucket_size, norm

    def _buckets(self, flat):
        size = self._bucket_size or flat.shape.num_elements()
        return tf.reshape(_pad_to(flat, size), [-1, size])

    def encode(self, x, encode_params):
        del encode_params  # unused
        buckets = self._buckets(tf.reshape(x, [-1]))
        norms = (tf.norm(buckets, axis=1) if self._norm == "l2" else tf.reduce_max(tf.abs(buckets), axis=1))
        scaled = tf.math.divide_no_nan(tf.abs(buckets) * self._levels, norms[:, None])
        lower = tf.floor(scaled)
        uniform = tf.random.stateless_uniform(tf.shape(buckets), seed=_values_seed(x))
        level = tf.minimum(lower + tf.cast(uniform < scaled - lower, tf.float32), self._levels)
        signed = tf.where(buckets < 0, -level, level)
        return collections.OrderedDict([(self.LEVELS_KEY, tf.reshape(signed + self._levels, [-1])),
                                        (self.NORMS_KEY, norms)])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        del decode_params, num_summands  # unused
        norms = encoded_tensors[self.NORMS_KEY]
        levels = tf.reshape(encoded_tensors[self.LEVELS_KEY], [tf.shape(norms)[0], -1]) - self._levels
        values = tf.reshape(levels / self._levels * norms[:, None], [-1])
        return tf.reshape(values[:tf.reduce_prod(shape)], shape)


# ------------------------------------------------------------ factories --

def _flatten():
    return te.stages.FlattenEncodingStage(), te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY


def sign_encoder(scaled=True):
    """``te.core.Encoder``: flatten -> signs (1 bit each) and, if ``scaled``, mean ``|x|`` (one float32)."""
    return research_stages._chain(_flatten(), (SignEncodingStage(scaled), None))


def qsgd_encoder(levels=7, bucket_size=512):
    """``te.core.Encoder``: flatten -> QSGD with ``levels`` levels per sign in buckets -> tight packing.

    ``levels=7``: 15 codes, 4 bits per value; ``levels=1``: 3 codes, 2 bits. Plus 32 bits per bucket.
    """
    stage = QSGDEncodingStage(levels, bucket_size)
    return research_stages._chain(_flatten(), (stage, stage.LEVELS_KEY),
                                  (TightBitpackingEncodingStage(packing_bits(levels)), None))


def terngrad_encoder():
    """``te.core.Encoder``: TernGrad without its gradient clipping: ``max |x| * sign * {0, 1}``, 2 bits per value."""
    stage = QSGDEncodingStage(levels=1, bucket_size=None, norm="max")
    return research_stages._chain(_flatten(), (stage, stage.LEVELS_KEY), (TightBitpackingEncodingStage(2), None))


# -------------------------------------------------------- majority vote --

class MajorityVoteFactory(tff.aggregators.WeightedAggregationFactory):
    """signSGD with majority vote for the variables above ``threshold`` values; the weighted mean below.

    Every client sends, for each voted variable, the signs of its update (1 bit
    each, :class:`SignEncodingStage`) and one float32, the mean ``|update|``;
    smaller variables as they are. It goes through the course's measured sum
    (:class:`helpers.compression.MeasuredEncodedSumFactory`), which counts it:
    the same bits as the method "1-bit sign, mean scale". The server takes
    each voted value's **sign of the summed signs** (one vote per client, whatever
    its weight; a tie gives 0) and scales it by the clients' mean magnitudes,
    averaged with their weights: the step's size is that of a typical client's
    value. A value of exactly 0 votes +1. Measurements: ``aggregated_bits``.
    """

    def __init__(self, threshold=compression.DEFAULT_THRESHOLD):
        if not isinstance(threshold, (int, float)) or threshold < 0:
            raise ValueError(f"threshold must be a number of elements >= 0, got {threshold!r}.")
        self._threshold = threshold

    def create(self, value_type, weight_type):
        specs = tf.nest.flatten(tff.types.type_to_tf_tensor_specs(value_type))
        voted = [spec.shape.num_elements() > self._threshold for spec in specs]
        structure = tff.types.type_to_tf_tensor_specs(value_type)
        message_type = tff.types.to_type((tuple(tff.TensorType(s.dtype.as_numpy_dtype, s.shape) for s in specs),
                                          tuple(tff.TensorType(tf.float32.as_numpy_dtype) for v in voted if v)))
        summed = compression.MeasuredEncodedSumFactory(
            compression.threshold_policy(lambda: sign_encoder(scaled=False), self._threshold).aggregation
        ).create(message_type)

        @tff.tensorflow.computation(value_type, weight_type)
        def message(value, weight):
            weight = tf.cast(weight, tf.float32)
            values = [x * weight for x in tf.nest.flatten(value)]  # as MeanFactory weighs a value
            scales = [tf.reduce_mean(tf.abs(x)) for x, v in zip(values, voted) if v]
            return tuple(values), tuple(scales)

        @tff.tensorflow.computation(weight_type)
        def as_float(weight):
            return tf.cast(weight, tf.float32)

        @tff.tensorflow.computation(message_type, tf.float32)
        def vote(total, weight_sum):
            values, scales = total[0], iter(total[1])
            result = [tf.sign(x) * next(scales) / weight_sum if v else x / weight_sum
                      for x, v in zip(values, voted)]
            return tf.nest.pack_sequence_as(structure, result)

        @tff.federated_computation(tff.FederatedType(summed.initialize.type_signature.result.member, tff.SERVER),
                                   tff.FederatedType(value_type, tff.CLIENTS),
                                   tff.FederatedType(weight_type, tff.CLIENTS))
        def next_fn(state, value, weight):
            output = summed.next(state, tff.federated_map(message, (value, weight)))
            weight_sum = tff.federated_sum(tff.federated_map(as_float, weight))
            return tff.templates.MeasuredProcessOutput(
                output.state, tff.federated_map(vote, (output.result, weight_sum)), output.measurements)

        return tff.templates.AggregationProcess(summed.initialize, next_fn)
