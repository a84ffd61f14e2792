"""Encoding stages written for notebook 05: the warm-up and the solutions of its exercises.

Every stage implements tfmot's stage interface with TensorFlow graph ops only,
so it runs inside TFF computations (serialized TF graphs):

- :class:`Float16EncodingStage` (warm-up): send float32 values as float16.
- :class:`NonUniformQuantizationEncodingStage` (exercise a): ``2**bits``
  levels placed where the values are (spaced by the cube root of their
  density, refined by Lloyd iterations), each value replaced by the index of
  its nearest level. The
  level table travels with the indices and is counted.
- :class:`HuffmanEncodingStage` (exercise b): a lossless canonical Huffman
  code over integer symbols (for example the output of 8-bit uniform
  quantization). The output is the coded bit stream in int32 words, the code
  lengths (all the decoder needs to rebuild the code) and the bit offset of
  every chunk of symbols, so decoding runs on all chunks at once. The
  bit-stream code itself is in :mod:`helpers.huffman`.
- :class:`AdaptiveRangeQuantizationEncodingStage` (exercise c): uniform
  quantization on ``[-range, range]`` where ``range`` is the largest ``|x|``
  seen in the previous round. The range is shared by all clients, so the stage
  commutes with sum: the server adds the integers before decoding.

Each stage has a factory returning a ``te.core.Encoder`` (``flatten -> stage
-> ...``) for :func:`helpers.compression.threshold_policy`, e.g.
``compression.threshold_policy(lambda: stages.huffman_encoder(bits=8))``. The
factories take ``stage_cls`` so the notebook can plug in a student's class.
:func:`adaptive_ranges` reads the current range of every adaptive encoder
from a FedAvg process state.
"""
import collections

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers.huffman import huffman_code_lengths, huffman_pack, huffman_unpack

__all__ = [
    "Float16EncodingStage", "NonUniformQuantizationEncodingStage", "HuffmanEncodingStage",
    "AdaptiveRangeQuantizationEncodingStage",
    "float16_encoder", "non_uniform_quantization_encoder", "huffman_encoder",
    "adaptive_quantization_encoder",
    "companded_levels", "nearest_level",
    "adaptive_ranges",
]


# ------------------------------------------------------------ warm-up --

@te.core.tf_style_encoding_stage
class Float16EncodingStage(te.core.EncodingStageInterface):
    """Warm-up: send float32 values as float16 (16 instead of 32 bits a value).

    Lossy (float16 keeps 11 significant bits: relative error at most 2**-11)
    and not commuting with sum: summing many clients in float16 would lose
    precision, so the server decodes each client to float32 before adding.
    """

    ENCODED_VALUES_KEY = "float16_values"

    @property
    def name(self):
        return "float16"

    @property
    def compressible_tensors_keys(self):
        return []

    @property
    def commutes_with_sum(self):
        return False

    @property
    def decode_needs_input_shape(self):
        return False

    def get_params(self):
        return collections.OrderedDict(), collections.OrderedDict()

    def encode(self, x, encode_params):
        del encode_params  # unused
        return collections.OrderedDict([(self.ENCODED_VALUES_KEY, tf.cast(x, tf.float16))])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        del decode_params, num_summands, shape  # unused
        return tf.cast(encoded_tensors[self.ENCODED_VALUES_KEY], tf.float32)


# ------------------------------------------- (a) non-uniform quantization --

@te.core.tf_style_encoding_stage
class NonUniformQuantizationEncodingStage(te.core.EncodingStageInterface):
    """Quantization to ``2**bits`` levels placed where the values are.

    The levels are spaced by the cube root of the values' density (see
    :func:`companded_levels`) and refined by ``lloyd_iterations`` Lloyd steps
    (each level moves to the mean of the values nearest to it). Every value is replaced by the
    index of its nearest level, as a float32 "integer" in
    ``[0, 2**bits - 1]`` so that ``BitpackingEncodingStage(bits)`` can pack it.
    The level table (``2**bits`` float32) is sent with the indices.

    Dense regions get many close levels and sparse tails few, so on bell-shaped
    data (model updates) the error is far below uniform quantization's, whose
    levels are spread evenly between the minimum and maximum.
    """

    ENCODED_VALUES_KEY = "level_indices"
    LEVELS_KEY = "levels"

    def __init__(self, bits=8, lloyd_iterations=10):
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 12:
            raise ValueError(f"bits must be an integer from 1 to 12, got {bits!r}.")
        if not isinstance(lloyd_iterations, int) or lloyd_iterations < 0:
            raise ValueError(f"lloyd_iterations must be an integer >= 0, got {lloyd_iterations!r}.")
        self._bits = bits
        self._lloyd_iterations = lloyd_iterations

    @property
    def name(self):
        """A short name, used for TF name scopes."""
        return "non_uniform_quantization"

    @property
    def compressible_tensors_keys(self):
        """The level indices may be encoded further (bitpacked); the levels may not."""
        return [self.ENCODED_VALUES_KEY]

    @property
    def commutes_with_sum(self):
        """False: every client picks its own levels, so indices of two clients cannot be added."""
        return False

    @property
    def decode_needs_input_shape(self):
        """False: the indices keep the shape of ``x``."""
        return False

    def get_params(self):
        """No parameters: everything the decoder needs travels in the encoded tensors."""
        return collections.OrderedDict(), collections.OrderedDict()

    def encode(self, x, encode_params):
        """``{ENCODED_VALUES_KEY: nearest-level indices (x's dtype and shape), LEVELS_KEY: levels}``."""
        del encode_params  # unused
        flat = tf.reshape(x, [-1])
        levels = companded_levels(flat, 2**self._bits, self._lloyd_iterations)
        indices = nearest_level(flat, levels)
        return collections.OrderedDict([
            (self.ENCODED_VALUES_KEY, tf.reshape(tf.cast(indices, x.dtype), tf.shape(x))),
            (self.LEVELS_KEY, levels),
        ])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        """The level of every index: ``levels[indices]``."""
        del decode_params, num_summands, shape  # unused
        indices = encoded_tensors[self.ENCODED_VALUES_KEY]
        levels = encoded_tensors[self.LEVELS_KEY]
        return tf.gather(levels, tf.cast(indices, tf.int32))


@tf.autograph.experimental.do_not_convert
def companded_levels(flat, num_levels, lloyd_iterations):
    """``num_levels`` sorted levels for the values ``flat``: cube-root density, then Lloyd steps.

    At high resolution the mean squared error is smallest when the density of
    levels follows the cube root of the density of the values (Panter and
    Dite, 1951). Levels at plain quantiles follow the density itself: too
    many levels in the bulk, too few in the tails, which at 8 bits is worse
    than uniform. So: a histogram of ``16 * num_levels`` bins over [min, max],
    its cube root as a new density, and level ``i`` at the
    ``(i + 0.5) / num_levels`` quantile of that density (linear within a
    bin). Each Lloyd step then moves every level to the mean of the values
    nearest to it, which never increases the error. With the values sorted
    once, a level's values are a contiguous run (found with
    ``searchsorted``) and its mean comes from prefix sums, so a Lloyd step
    costs ``num_levels`` binary searches, not a pass over the data.
    """
    sorted_x = tf.sort(flat)
    n = tf.size(flat)
    low, high = sorted_x[0], sorted_x[-1]
    spread = high > low
    safe_high = tf.where(spread, high, low + 1)
    bins = 16 * num_levels
    histogram = tf.histogram_fixed_width(sorted_x, tf.stack([low, safe_high]), nbins=bins)
    cube_root = tf.pow(tf.cast(histogram, tf.float64), 1.0 / 3.0)
    cdf = tf.concat([tf.zeros([1], tf.float64), tf.cumsum(cube_root)], 0)
    cdf = cdf / cdf[-1]
    edges = tf.cast(low, tf.float64) + tf.cast(safe_high - low, tf.float64) * tf.linspace(
        tf.constant(0.0, tf.float64), 1.0, bins + 1)
    targets = (tf.range(num_levels, dtype=tf.float64) + 0.5) / num_levels
    bin_index = tf.clip_by_value(tf.searchsorted(cdf, targets, side="right") - 1, 0, bins - 1)
    below, above = tf.gather(cdf, bin_index), tf.gather(cdf, bin_index + 1)
    fraction = tf.math.divide_no_nan(targets - below, above - below)
    left = tf.gather(edges, bin_index)
    levels = tf.cast(left + fraction * (tf.gather(edges, bin_index + 1) - left), flat.dtype)
    levels = tf.where(spread, levels, tf.fill([num_levels], low))
    prefix = tf.concat([tf.zeros([1], tf.float64), tf.cumsum(tf.cast(sorted_x, tf.float64))], 0)
    for _ in range(lloyd_iterations):
        thresholds = (levels[:-1] + levels[1:]) / 2
        bounds = tf.concat([[0], tf.searchsorted(sorted_x, thresholds, side="right", out_type=tf.int32),
                            [n]], 0)
        first, last = bounds[:-1], bounds[1:]
        count = tf.cast(last - first, tf.float64)
        mean = (tf.gather(prefix, last) - tf.gather(prefix, first)) / tf.maximum(count, 1.0)
        levels = tf.where(count > 0, tf.cast(mean, flat.dtype), levels)
    return levels


@tf.autograph.experimental.do_not_convert
def nearest_level(flat, levels):
    """Index (int32) of the level nearest to each value of ``flat``; ``levels`` sorted ascending.

    The midpoints between consecutive levels split the line into cells; the
    number of midpoints below a value is the index of its nearest level.
    """
    thresholds = (levels[:-1] + levels[1:]) / 2
    return tf.searchsorted(thresholds, flat, side="left", out_type=tf.int32)


# ------------------------------------------------ (b) Huffman coding --

@te.core.tf_style_encoding_stage
class HuffmanEncodingStage(te.core.EncodingStageInterface):
    """Lossless canonical Huffman coding of integer symbols in ``[0, 2**input_bits)``.

    Input: float32 "integers" (the output of ``UniformQuantizationEncodingStage``),
    any shape. Encoded tensors:

    - ``huffman_words``: int32 [ceil(coded bits / 32)], the coded bit stream;
    - ``code_lengths``: uint8 [2**input_bits], each symbol's code length, from
      which the decoder rebuilds the canonical code;
    - ``chunk_starts``: int32 [ceil(n / symbols_per_chunk)], the bit offset of
      every chunk of symbols, so decoding handles all chunks at once.

    The length of ``huffman_words`` depends on the data, so it is only known
    at run time; the course counts bits at run time. Decoding needs the input
    shape (for the number of symbols), which the ``Encoder`` keeps. Does not
    commute with sum: code words cannot be added.
    """

    WORDS_KEY = "huffman_words"
    LENGTHS_KEY = "code_lengths"
    CHUNKS_KEY = "chunk_starts"

    def __init__(self, input_bits=8, max_code_length=16, symbols_per_chunk=1024):
        if isinstance(input_bits, bool) or not isinstance(input_bits, int) or not 1 <= input_bits <= 12:
            raise ValueError(f"input_bits must be an integer from 1 to 12, got {input_bits!r}.")
        if not isinstance(max_code_length, int) or not input_bits <= max_code_length <= 20:
            raise ValueError(f"max_code_length must be an integer from input_bits ({input_bits}) "
                             f"to 20, got {max_code_length!r}.")
        if not isinstance(symbols_per_chunk, int) or symbols_per_chunk < 1:
            raise ValueError(f"symbols_per_chunk must be a positive integer, got {symbols_per_chunk!r}.")
        self._input_bits = input_bits
        self._max_code_length = max_code_length
        self._symbols_per_chunk = symbols_per_chunk

    @property
    def name(self):
        """A short name, used for TF name scopes."""
        return "huffman"

    @property
    def compressible_tensors_keys(self):
        """Nothing: a bit stream cannot be compressed further."""
        return []

    @property
    def commutes_with_sum(self):
        """False: code words cannot be added."""
        return False

    @property
    def decode_needs_input_shape(self):
        """True: decode needs the number of symbols (and restores the shape)."""
        return True

    def get_params(self):
        """No parameters: the code is built from the data and its lengths are sent."""
        return collections.OrderedDict(), collections.OrderedDict()

    def encode(self, x, encode_params):
        """``{WORDS_KEY: int32 bit stream, LENGTHS_KEY: uint8 code lengths, CHUNKS_KEY: int32 offsets}``."""
        del encode_params  # unused
        if x.dtype != tf.float32:
            raise TypeError(f"HuffmanEncodingStage encodes float32 integer values, got {x.dtype.name}.")
        num_symbols = 2**self._input_bits
        symbols = tf.cast(tf.round(tf.reshape(x, [-1])), tf.int32)
        in_range = tf.debugging.assert_equal(
            tf.reduce_all((symbols >= 0) & (symbols < num_symbols)), True,
            message=f"HuffmanEncodingStage: symbols must be integers in [0, {num_symbols - 1}]")
        with tf.control_dependencies([in_range]):
            counts = tf.math.bincount(symbols, minlength=num_symbols, maxlength=num_symbols,
                                      dtype=tf.int64)
        counts = tf.ensure_shape(counts, [num_symbols])
        lengths = huffman_code_lengths(counts, self._max_code_length)
        words, chunk_starts = huffman_pack(symbols, lengths, self._max_code_length,
                                           self._symbols_per_chunk)
        return collections.OrderedDict([
            (self.WORDS_KEY, words),
            (self.LENGTHS_KEY, tf.cast(lengths, tf.uint8)),
            (self.CHUNKS_KEY, chunk_starts),
        ])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        """The symbols as float32, in ``shape``."""
        del decode_params, num_summands  # unused
        lengths = tf.ensure_shape(tf.cast(encoded_tensors[self.LENGTHS_KEY], tf.int32),
                                  [2**self._input_bits])
        num_symbols = tf.reduce_prod(tf.cast(shape, tf.int32))
        symbols = huffman_unpack(encoded_tensors[self.WORDS_KEY], encoded_tensors[self.CHUNKS_KEY],
                                 lengths, num_symbols, self._max_code_length, self._symbols_per_chunk)
        return tf.reshape(tf.cast(symbols, tf.float32), shape)


# ------------------------------------------------ (c) adaptive stage --

@te.core.tf_style_adaptive_encoding_stage
class AdaptiveRangeQuantizationEncodingStage(te.core.AdaptiveEncodingStageInterface):
    """Uniform quantization on ``[-range, range]``, ``range`` learned from earlier rounds.

    State: ``{"range": float32}``, starting at ``initial_range``. Each client
    clips its values to ``[-range, range]`` and rounds them stochastically
    (unbiased) to ``2**bits`` evenly spaced levels, and reports ``max |x|``
    (aggregated with MAX over clients). After the round, ``update_state``
    sets ``range`` to that maximum, so round ``t`` quantizes on the range
    observed in round ``t - 1``.

    Because every client uses the same range (it comes from the server's
    state, not from the client's data) the stage commutes with sum: the
    server adds the quantized integers of all clients and decodes once,
    shifting by ``range * num_summands``.
    """

    ENCODED_VALUES_KEY = "quantized_values"
    RANGE_KEY = "range"
    MAX_VALUE_KEY = "max_value"
    MAX_ABS_KEY = "max_abs"

    def __init__(self, bits=8, initial_range=1.0):
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"bits must be an integer from 1 to 16, got {bits!r}.")
        if not initial_range > 0:
            raise ValueError(f"initial_range must be positive, got {initial_range!r}.")
        self._bits = bits
        self._initial_range = float(initial_range)

    @property
    def name(self):
        """A short name, used for TF name scopes."""
        return "adaptive_range_quantization"

    @property
    def compressible_tensors_keys(self):
        """The quantized values may be encoded further (bitpacked)."""
        return [self.ENCODED_VALUES_KEY]

    @property
    def commutes_with_sum(self):
        """True: all clients share the range, so their integers can be added before decoding."""
        return True

    @property
    def decode_needs_input_shape(self):
        """False: the quantized values keep the shape of ``x``."""
        return False

    @property
    def state_update_aggregation_modes(self):
        """``max |x|`` of the clients is combined with MAX."""
        return {self.MAX_ABS_KEY: te.core.StateAggregationMode.MAX}

    def initial_state(self):
        """``{RANGE_KEY: initial_range}`` (float32)."""
        return collections.OrderedDict([(self.RANGE_KEY, tf.constant(self._initial_range, tf.float32))])

    def update_state(self, state, state_update_tensors):
        """The next range is the largest ``|x|`` the clients observed this round."""
        del state  # the new range only depends on what was just observed
        return collections.OrderedDict([(self.RANGE_KEY, state_update_tensors[self.MAX_ABS_KEY])])

    def get_params(self, state):
        """Encode and decode use the state's range and ``max_value = 2**bits - 1``."""
        params = collections.OrderedDict([
            (self.RANGE_KEY, state[self.RANGE_KEY]),
            (self.MAX_VALUE_KEY, 2**self._bits - 1),
        ])
        return params, params

    def encode(self, x, encode_params):
        """``({ENCODED_VALUES_KEY: integers in [0, max_value]}, {MAX_ABS_KEY: max |x|})``."""
        value_range = tf.cast(encode_params[self.RANGE_KEY], x.dtype)
        max_value = tf.cast(encode_params[self.MAX_VALUE_KEY], x.dtype)
        clipped = tf.clip_by_value(x, -value_range, value_range)
        scaled = tf.math.divide_no_nan(clipped + value_range, 2 * value_range) * max_value
        floor = tf.floor(scaled)
        rounded_up = tf.random.uniform(tf.shape(x), dtype=x.dtype) < scaled - floor
        quantized = floor + tf.cast(rounded_up, x.dtype)
        encoded = collections.OrderedDict([(self.ENCODED_VALUES_KEY, quantized)])
        state_update = collections.OrderedDict([(self.MAX_ABS_KEY, tf.reduce_max(tf.abs(x)))])
        return encoded, state_update

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        """Back to ``[-range, range]``; a sum of ``num_summands`` encodings shifts by ``range`` each."""
        del shape  # unused
        quantized = encoded_tensors[self.ENCODED_VALUES_KEY]
        value_range = tf.cast(decode_params[self.RANGE_KEY], quantized.dtype)
        max_value = tf.cast(decode_params[self.MAX_VALUE_KEY], quantized.dtype)
        summands = 1.0 if num_summands is None else tf.cast(num_summands, quantized.dtype)
        return quantized / max_value * 2 * value_range - value_range * summands


# ------------------------------------------------------------ factories --

def _flatten_then(composer):
    return composer.add_parent(te.stages.FlattenEncodingStage(),
                               te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY)


def float16_encoder(stage_cls=Float16EncodingStage):
    """``te.core.Encoder``: the warm-up float16 stage alone."""
    return te.core.EncoderComposer(stage_cls()).make()


def non_uniform_quantization_encoder(bits=8, stage_cls=NonUniformQuantizationEncodingStage, **kwargs):
    """``te.core.Encoder``: flatten -> non-uniform quantization -> bitpacking of the level indices."""
    return _flatten_then(
        te.core.EncoderComposer(te.stages.BitpackingEncodingStage(bits))
        .add_parent(stage_cls(bits=bits, **kwargs), stage_cls.ENCODED_VALUES_KEY)).make()


def huffman_encoder(bits=8, stage_cls=HuffmanEncodingStage, **kwargs):
    """``te.core.Encoder``: flatten -> ``bits``-bit uniform quantization -> Huffman coding.

    The same quantizer as ``te.encoders.uniform_quantization(bits)``, with the
    Huffman stage in place of bitpacking, so the two differ only in how the
    integer symbols are written.
    """
    uniform = te.stages.UniformQuantizationEncodingStage(bits)
    return _flatten_then(
        te.core.EncoderComposer(stage_cls(input_bits=bits, **kwargs))
        .add_parent(uniform, te.stages.UniformQuantizationEncodingStage.ENCODED_VALUES_KEY)).make()


def adaptive_quantization_encoder(bits=8, stage_cls=AdaptiveRangeQuantizationEncodingStage, **kwargs):
    """``te.core.Encoder``: flatten -> adaptive-range quantization -> bitpacking."""
    return _flatten_then(
        te.core.EncoderComposer(te.stages.BitpackingEncodingStage(bits))
        .add_parent(stage_cls(bits=bits, **kwargs), stage_cls.ENCODED_VALUES_KEY)).make()


# ------------------------------------------------- reading adaptive state --

def adaptive_ranges(state):
    """The range each adaptive encoder will use next round, read from a FedAvg state.

    ``state`` is the state of a process built by
    :func:`helpers.training.build_fed_avg`. Every encoded variable keeps its
    encoder's state as a flat tuple: empty for stateless encoders, one value
    (the range) for the adaptive-range encoder. Returns
    ``OrderedDict(broadcast=[...], aggregation=[...])``: one float per variable
    with a stateful encoder, in model variable order.
    """
    def values(per_variable):
        return [float(np.asarray(s[0])) for s in per_variable if len(s) == 1]

    aggregator = state.aggregator
    value_sum = aggregator["value_sum_process"] if "value_sum_process" in aggregator else aggregator
    return collections.OrderedDict(broadcast=values(state.distributor), aggregation=values(value_sum))
