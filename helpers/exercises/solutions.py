"""The reference solutions of notebook 05's exercises (a), (b) and (c): the instructor's copy.

- :func:`nearest_level` and :class:`NonUniformQuantizationEncodingStage` (a);
- :func:`code_lengths` (Huffman's merges) and :class:`HuffmanEncodingStage` (b);
- :class:`AdaptiveRangeQuantizationEncodingStage` (c);
- :data:`QUESTION_ANSWERS`: the code that answers each "Check your understanding" question of notebooks
  01-04 and 06, from the variables of its notebook (``make assignment``'s graded questions are checked
  against it).

This module is the only place the answers live. A graded release (``make
assignment``) ships ``helpers/`` without it: :mod:`helpers.exercises.stages` and
:mod:`helpers.exercises.huffman` then say that the instructor withheld them, and
``exercises.solution`` prints the same. The self-study copy keeps it.
"""
import collections

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers.exercises.companding import companded_levels
from helpers.exercises.huffman import huffman_pack, huffman_unpack, limit_code_lengths

__all__ = ["nearest_level", "NonUniformQuantizationEncodingStage", "code_lengths", "HuffmanEncodingStage",
           "AdaptiveRangeQuantizationEncodingStage"]

# ------------------------------------------- (a) non-uniform quantization --

@te.core.tf_style_encoding_stage
class NonUniformQuantizationEncodingStage(te.core.EncodingStageInterface):
    """Quantization to ``2**bits`` levels placed where the values are.

    Each client places its own levels with :func:`companded_levels` (given:
    cube-root density, then ``lloyd_iterations`` Lloyd steps), replaces every
    value by the index of its nearest level, as a float32 "integer" in
    ``[0, 2**bits - 1]`` that ``BitpackingEncodingStage(bits)`` can pack,
    and sends the level table (``2**bits`` float32) with the indices.
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
        """Which keys of encode's output should a child stage (bitpacking) encode further? A list."""
        return [self.ENCODED_VALUES_KEY]  # the indices; the float32 levels stay as they are

    @property
    def commutes_with_sum(self):
        """Does the sum of two clients' encodings decode to the sum of their values? True or False."""
        return False  # every client picks its own levels: indices of two clients cannot be added

    @property
    def decode_needs_input_shape(self):
        """Does decode need the shape of encode's input to restore it? True or False."""
        return False  # the indices keep the shape of x

    def get_params(self):
        """What do encode and decode need besides x and the encoded tensors? ``(encode_params, decode_params)``."""
        return collections.OrderedDict(), collections.OrderedDict()  # nothing: it all travels encoded

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
def nearest_level(flat, levels):
    """Index (int32) of the level nearest to each value of ``flat``; ``levels`` sorted ascending.

    The midpoints between consecutive levels split the line into cells; the
    number of midpoints below a value is the index of its nearest level.
    """
    thresholds = (levels[:-1] + levels[1:]) / 2
    return tf.searchsorted(thresholds, flat, side="left", out_type=tf.int32)


# ------------------------------------------------ (b) Huffman coding --

def code_lengths(counts):
    """Huffman code length (int32 [K]) of every symbol, from the symbol counts (int [K], K static).

    Huffman's construction: merge the two lightest nodes until one is left; a
    symbol's code length is the number of merges above it. 0 for symbols that
    do not occur, 1 for the only symbol if just one occurs. No length limit
    (:func:`limit_code_lengths` adds one).
    """
    counts = tf.cast(counts, tf.int64)
    k = counts.shape[0]
    big = tf.constant(2**62, tf.int64)
    # Nodes 0..k-1 are the symbols, k..2k-2 the merged nodes (in creation order).
    weight = tf.concat([tf.where(counts > 0, counts, big), tf.fill([k - 1], big)], 0)

    def merge(i, weight, node, length):
        _, lightest = tf.math.top_k(-weight, k=2)
        a, b, new = lightest[0], lightest[1], k + i
        below = tf.equal(node, a) | tf.equal(node, b)  # the symbols under the merged nodes: one bit more
        weight = tf.tensor_scatter_nd_update(weight, tf.reshape(tf.stack([a, b, new]), [3, 1]),
                                             tf.stack([big, big, weight[a] + weight[b]]))
        return i + 1, weight, tf.where(below, new, node), length + tf.cast(below, tf.int32)

    used = tf.math.count_nonzero(counts, dtype=tf.int32)
    _, _, _, length = tf.while_loop(lambda i, *_: i < used - 1, merge,
                                    [tf.constant(0), weight, tf.range(k), tf.zeros([k], tf.int32)])
    return tf.where(counts > 0, tf.maximum(length, 1), 0)



@te.core.tf_style_encoding_stage
class HuffmanEncodingStage(te.core.EncodingStageInterface):
    """Lossless canonical Huffman coding of integer symbols in ``[0, 2**input_bits)``.

    Input: float32 "integers" (the output of ``UniformQuantizationEncodingStage``),
    any shape. Encoded tensors:

    - ``huffman_words``: int32 [ceil(coded bits / 32)], the coded bit stream
      (its length depends on the data; the course counts bits at run time);
    - ``code_lengths``: uint8 [2**input_bits], each symbol's code length, from
      which the decoder rebuilds the canonical code;
    - ``chunk_starts``: int32 [ceil(n / symbols_per_chunk)], the bit offset of
      every chunk of symbols, so decoding handles all chunks at once.
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
        """Which keys of encode's output could a child stage encode further? A list."""
        return []  # none: a bit stream does not compress further

    @property
    def commutes_with_sum(self):
        """Does the sum of two clients' encodings decode to the sum of their values? True or False."""
        return False  # added code words are no code words

    @property
    def decode_needs_input_shape(self):
        """Does decode need the shape of encode's input to restore it? True or False."""
        return True  # the bit stream does not say how many symbols it holds

    def get_params(self):
        """What do encode and decode need besides x and the encoded tensors? ``(encode_params, decode_params)``."""
        return collections.OrderedDict(), collections.OrderedDict()  # nothing: the lengths travel encoded

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
        lengths = limit_code_lengths(counts, self._max_code_length, code_lengths)
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
    observed in round ``t - 1``. The range comes from the server's state,
    not from a client's data.
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
        """Which keys of encode's output should a child stage (bitpacking) encode further? A list."""
        return [self.ENCODED_VALUES_KEY]

    @property
    def commutes_with_sum(self):
        """Does the sum of two clients' encodings decode to the sum of their values? True or False."""
        return True  # all clients share the range: their integers can be added before decoding

    @property
    def decode_needs_input_shape(self):
        """Does decode need the shape of encode's input to restore it? True or False."""
        return False  # the quantized values keep the shape of x

    @property
    def state_update_aggregation_modes(self):
        """How is each state update combined over clients? ``{key: te.core.StateAggregationMode}``."""
        return {self.MAX_ABS_KEY: te.core.StateAggregationMode.MAX}  # the largest max |x| of all clients

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



# The answer to each question of notebooks 01-04 and 06, as the lines that replace `answer = ...` in its cell
# (helpers.exercises.understanding checks them; the variables are the notebook's own).
QUESTION_ANSWERS = {
    "01.1": "answer = -(-3 * sum(1 for _ in first_client) // data.BATCH_SIZE)  # repeat 3 times, then batch",
    "01.2": ("seconds = {direction: copy_bits / (mbit * 1e6) for direction, mbit in ASSUMED_LINK_MBIT_PER_S.items()}\n"
             "answer = seconds[\"upload (update)\"] / sum(seconds.values())"),
    "02.1": 'answer = sum(row["bits"] // 2 if 512 in row["shape"] else row["bits"] for row in rows)  # 512 -> 256',
    "02.2": ("rows_62 = sizing.variable_table(model.create_original_fedavg_cnn_model(only_digits=False))\n"
             "answer = max(row[\"bits\"] for row in rows_62) / sum(row[\"bits\"] for row in rows_62)"),
    "03.1": "answer = 2 * runs.LONG_RUN.rounds * runs.LONG_RUN.clients_per_round * bits_per_copy",
    "03.2": "answer = bits_per_copy  # an update has the model's variables, whatever the local epochs",
    "04.1": ("answer = sum(32 * -(-8 * row[\"parameters\"] // 28) + 2 * 32 if row[\"parameters\"] > 1_000 else row[\"bits\"]\n"
             "             for row in rows)"),
    "04.2": ("upload = sum(32 * -(-4 * row[\"parameters\"] // 28) + 2 * 32\n"
             "             if row[\"parameters\"] > compression.DEFAULT_THRESHOLD else row[\"bits\"] for row in rows)\n"
             "answer = sum(row[\"bits\"] for row in rows) / upload"),
    "06.1": ("best = frontier.best_within(table, frontier.AGGREGATION_ONLY, \"reduction (aggregated)\", 1.0, 1.0)\n"
             "answer = None if best is None else best[\"aggregation\"]"),
    "06.2": "answer = (32 * -(-2 * 51_200 // 28) + 2 * 32) / 51_200",
}
