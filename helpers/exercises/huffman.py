"""Huffman coding of integer symbols as TensorFlow graph ops, the building blocks of notebook 05's exercise (b).

A canonical Huffman code is fully determined by every symbol's code length,
so the lengths are all a decoder needs besides the bits:

- ``code_lengths``: histogram in, code length of every symbol out (Huffman's
  merges: the part notebook 05's exercise (b) asks the student to write). Its
  reference solution lives in :mod:`helpers.exercises.solutions` (a graded release withholds it), which
  imports this module, never the other way round;
- :func:`limit_code_lengths`: the same, limited to ``max_code_length`` bits, so
  the decoder's table stays small;
- :func:`canonical_code`: lengths in, the canonical code words out;
- :func:`huffman_pack`: symbols in, the coded bit stream in int32 words and
  the bit offset of every chunk of ``symbols_per_chunk`` symbols out;
- :func:`huffman_unpack`: the inverse, decoding all chunks at once.

Everything is graph ops (``tf.while_loop``, scatter, gather), so it runs
inside TFF computations. ``helpers.exercises.stages.HuffmanEncodingStage`` wraps
it as a tfmot encoding stage.
"""
import functools

import tensorflow as tf


def _graph_when_eager(fn):
    """Run ``fn`` as a ``tf.function`` when called eagerly, as it is.

    ``GatherEncoder`` runs its encoder once eagerly when it is built; a
    ``tf.while_loop`` is slow op by op, so the Huffman helpers compile
    themselves then. Inside a TFF computation (a graph) they are plain ops.
    """
    compiled = tf.function(fn, autograph=False)  # static shapes: code lengths need them

    @functools.wraps(fn)
    @tf.autograph.experimental.do_not_convert
    def call(*args):
        return compiled(*args) if tf.executing_eagerly() else fn(*args)

    return call


@_graph_when_eager
def limit_code_lengths(counts, max_code_length, lengths_fn):
    """``lengths_fn(counts)`` with no code longer than ``max_code_length`` bits: int32 [K].

    ``counts``: int [K] symbol histogram (K static); ``lengths_fn``: counts ->
    int32 [K] code lengths (e.g. :func:`code_lengths`). While the longest code
    is too long, the counts are halved (rare symbols stay at 1, so the
    distribution gets flatter) and the code rebuilt: a little less
    compression, but the decoder's table stays at ``2**max_code_length``.
    """
    counts = tf.cast(counts, tf.int64)
    if counts.shape[0] is None:
        raise ValueError("limit_code_lengths needs a histogram of static length.")

    def build(c):
        return tf.ensure_shape(tf.cast(lengths_fn(c), tf.int32), c.shape)

    def flatten(c, lengths):
        c = tf.where(c > 0, (c + 1) // 2, 0)
        return c, build(c)

    _, lengths = tf.while_loop(lambda c, lengths: tf.reduce_max(lengths) > max_code_length, flatten,
                               [counts, build(counts)], maximum_iterations=64)
    fits = tf.debugging.assert_less_equal(
        tf.reduce_max(lengths), max_code_length,
        message=f"code lengths stay above max_code_length={max_code_length}: is lengths_fn a Huffman code?")
    with tf.control_dependencies([fits]):
        return tf.identity(lengths)


@_graph_when_eager
def canonical_code(lengths, max_code_length):
    """The canonical prefix code for code ``lengths`` (int [K], 0 = unused symbol).

    Symbols are ordered by (length, symbol). Written left-aligned on
    ``max_code_length`` bits, the codes are the running sum of ``2**(L -
    length)`` in that order, so the code is fully determined by the lengths:
    that is all the decoder needs. Returns ``(codes, order, sorted_lengths,
    starts)``: int32 code of each symbol, the symbols in canonical order, their
    lengths, and their left-aligned codes (ascending, used by the decoder).
    """
    lengths = tf.cast(lengths, tf.int32)
    k = lengths.shape[0]
    top = max_code_length
    key = tf.where(lengths > 0, lengths * k, (top + 1) * k) + tf.range(k)
    order = tf.argsort(key, stable=True)
    sorted_lengths = tf.gather(lengths, order)
    span = tf.where(sorted_lengths > 0, tf.bitwise.left_shift(1, top - sorted_lengths), 0)
    starts = tf.cumsum(span, exclusive=True)
    sorted_codes = tf.bitwise.right_shift(starts, tf.maximum(top - sorted_lengths, 0))
    codes = tf.scatter_nd(order[:, None], sorted_codes, [k])
    return codes, order, sorted_lengths, starts


@_graph_when_eager
def huffman_pack(symbols, lengths, max_code_length, symbols_per_chunk):
    """Write the code of every symbol into one bit stream.

    ``symbols``: int32 [n]; ``lengths``: code lengths from
    :func:`limit_code_lengths`. Returns ``(words, chunk_starts)``: the bit
    stream, most significant bit first, in int32 words (``ceil(total bits /
    32)`` of them), and the bit offset (int32) where every chunk of
    ``symbols_per_chunk`` symbols starts.

    Each symbol's bit offset is the exclusive cumulative sum of the code
    lengths. A code (at most 24 bits) starting at bit ``b`` of word ``w`` ends
    in word ``w`` or ``w + 1``: it is placed in a 56-bit window whose top 32
    bits are added to word ``w`` and the low 24 bits to word ``w + 1``. Codes
    never overlap, so adding is the same as OR-ing the bits in.
    """
    codes, _, _, _ = canonical_code(lengths, max_code_length)
    code = tf.cast(tf.gather(codes, symbols), tf.int64)
    length = tf.cast(tf.gather(lengths, symbols), tf.int64)
    offset = tf.cumsum(length, exclusive=True)
    num_words = tf.cast((tf.reduce_sum(length) + 31) // 32, tf.int32)
    word = tf.cast(offset // 32, tf.int32)
    window = tf.bitwise.left_shift(code, 56 - offset % 32 - length)
    high = tf.bitwise.right_shift(window, 24)
    low = tf.bitwise.left_shift(tf.bitwise.bitwise_and(window, 0xFFFFFF), 8)
    words = (tf.math.unsorted_segment_sum(high, word, num_words + 1)
             + tf.math.unsorted_segment_sum(low, word + 1, num_words + 1))[:num_words]
    words = tf.where(words >= 2**31, words - 2**32, words)  # the uint32 bit pattern as int32
    chunk_starts = tf.cast(offset[::symbols_per_chunk], tf.int32)
    return tf.cast(words, tf.int32), chunk_starts


@_graph_when_eager
def huffman_unpack(words, chunk_starts, lengths, num_symbols, max_code_length, symbols_per_chunk):
    """Inverse of :func:`huffman_pack`: the int32 [num_symbols] symbols.

    A table over all ``2**max_code_length`` bit patterns gives the symbol and
    code length starting with that pattern (canonical codes are sorted, so
    ``searchsorted`` over their left-aligned starts builds it). Chunks are
    independent: one ``tf.while_loop`` of ``symbols_per_chunk`` steps decodes
    one symbol of every chunk per step, reading ``max_code_length`` bits at
    each chunk's position and moving it on by the decoded code length.
    """
    top = max_code_length
    _, order, sorted_lengths, starts = canonical_code(lengths, top)
    k = lengths.shape[0]
    entry = tf.clip_by_value(tf.searchsorted(starts, tf.range(2**top), side="right") - 1, 0, k - 1)
    symbol_table = tf.gather(order, entry)
    length_table = tf.maximum(tf.gather(sorted_lengths, entry), 1)
    unsigned = tf.bitwise.bitwise_and(tf.cast(words, tf.int64), 0xFFFFFFFF)
    unsigned = tf.concat([unsigned, tf.zeros([2], tf.int64)], 0)
    last_word = tf.size(words)  # words past the stream read as zeros
    steps = tf.minimum(symbols_per_chunk, num_symbols)

    def step(i, position, decoded):
        word = tf.minimum(tf.bitwise.right_shift(position, 5), last_word)
        bit = tf.cast(tf.bitwise.bitwise_and(position, 31), tf.int64)
        window = tf.bitwise.bitwise_or(tf.bitwise.left_shift(tf.gather(unsigned, word), 24),
                                       tf.bitwise.right_shift(tf.gather(unsigned, word + 1), 8))
        pattern = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(window, 56 - bit - top),
                                                 2**top - 1), tf.int32)
        decoded = decoded.write(i, tf.gather(symbol_table, pattern))
        return i + 1, position + tf.gather(length_table, pattern), decoded

    decoded = tf.TensorArray(tf.int32, size=steps, element_shape=chunk_starts.shape)
    _, _, decoded = tf.while_loop(lambda i, p, d: i < steps, step, [tf.constant(0), chunk_starts, decoded])
    by_chunk = tf.reshape(tf.transpose(tf.reshape(decoded.stack(), [steps, tf.size(chunk_starts)])), [-1])
    return by_chunk[:num_symbols]
