"""Encoding stages from the compression literature, used by the frontier sweep (notebook 06).

They implement tfmot's stage interface with TensorFlow graph ops only, like
the stages of notebook 05, so they run inside TFF computations:

- :class:`BlockReshapeEncodingStage`: a flat vector -> rows of ``block_size``
  values (zero padded to a whole number of rows). Put before a Hadamard
  rotation, the rotation works block by block, so a
  tensor is padded to a multiple of the block size, not to the next power of
  two of its length (1,605,632 values would become 2,097,152: 31% more bits).
- :class:`ClientRotationEncodingStage`: random signs and a Hadamard
  transform of every row, with a rotation of each client's own (its seed is
  sent along), so later errors are independent across clients.
- :class:`TightBitpackingEncodingStage`: ``bits``-bit integers packed into
  uint8 bytes with no wasted bit (tfmot's bitpacking uses 28 of 32 bits).
- :class:`OneBitSignEncodingStage`: in the spirit of DRIVE (Vargaftik et al.,
  2021): after a random rotation, send only the sign of every value, one bit
  each, and one float32 scale per row, ``||x||^2 / ||x||_1``.
- :class:`TopKEncodingStage`: keep the ``fraction`` of values largest in
  magnitude; send them (float32) and their positions (int32), 64 bits each.

The factories at the end return ``te.core.Encoder`` s for
:func:`helpers.compression.threshold_policy`.
"""
import collections
import math

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

__all__ = [
    "BlockReshapeEncodingStage", "ClientRotationEncodingStage", "TightBitpackingEncodingStage", "OneBitSignEncodingStage",
    "TopKEncodingStage", "pack_bits", "unpack_bits",
    "rotated_sign_encoder", "rotated_quantization_encoder", "kashin_quantization_encoder",
    "top_k_encoder", "tight_quantization_encoder",
]

PACKABLE_BITS = (1, 2, 4, 8)


def _no_params():
    return collections.OrderedDict(), collections.OrderedDict()


class _StatelessStage(te.core.EncodingStageInterface):
    """The stage interface's declarations, read from class attributes; no parameters.

    A subclass sets ``NAME``, ``COMPRESSIBLE_KEYS`` (outputs a later stage may
    encode further), ``COMMUTES_WITH_SUM`` and ``NEEDS_INPUT_SHAPE``, and
    writes ``encode`` and ``decode``. (Notebook 05 spells these properties out
    one by one; here they are shared to keep each stage short.)
    """

    NAME = "stage"
    COMPRESSIBLE_KEYS = ()
    COMMUTES_WITH_SUM = False
    NEEDS_INPUT_SHAPE = False

    @property
    def name(self):
        return self.NAME

    @property
    def compressible_tensors_keys(self):
        return list(self.COMPRESSIBLE_KEYS)

    @property
    def commutes_with_sum(self):
        return self.COMMUTES_WITH_SUM

    @property
    def decode_needs_input_shape(self):
        return self.NEEDS_INPUT_SHAPE

    def get_params(self):
        return _no_params()


# ------------------------------------------------------------ blocking --

@te.core.tf_style_encoding_stage
class BlockReshapeEncodingStage(_StatelessStage):
    """Any tensor -> ``[rows, block_size]``, zero padded to a whole number of rows. Lossless."""

    ENCODED_VALUES_KEY = "blocks"
    NAME = "block_reshape"
    COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)
    COMMUTES_WITH_SUM = True
    NEEDS_INPUT_SHAPE = True

    def __init__(self, block_size=1024):
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1 \
                or block_size & (block_size - 1):
            raise ValueError(f"block_size must be a power of two (the Hadamard transform needs one), "
                             f"got {block_size!r}.")
        self._block_size = block_size

    def encode(self, x, encode_params):
        del encode_params  # unused
        flat = tf.reshape(x, [-1])
        padding = -flat.shape.num_elements() % self._block_size
        blocks = tf.reshape(tf.pad(flat, [[0, padding]]), [-1, self._block_size])
        return collections.OrderedDict([(self.ENCODED_VALUES_KEY, blocks)])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        del decode_params, num_summands  # unused
        flat = tf.reshape(encoded_tensors[self.ENCODED_VALUES_KEY], [-1])
        return tf.reshape(flat[:tf.reduce_prod(shape)], shape)


# ------------------------------------------------------------ rotation --

@te.core.tf_style_encoding_stage
class ClientRotationEncodingStage(_StatelessStage):
    """Rows ``[b, d]`` (``d`` a power of two) -> random signs, then a Hadamard transform of each row.

    Unlike tfmot's ``HadamardEncodingStage``, whose seed the server shares with
    every client, each client draws its own rotation: the seed is derived from
    the client's values and sent with them (two int32, 64 bits). Independent
    rotations make the errors of a later lossy stage independent across
    clients, so they shrink when the server averages. The transform is
    orthonormal, so decoding applies it again and undoes the signs.
    """

    ENCODED_VALUES_KEY = "rotated_values"
    SEED_KEY = "rotation_seed"
    NAME = "client_rotation"
    COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)
    COMMUTES_WITH_SUM = False
    NEEDS_INPUT_SHAPE = False

    def __init__(self, shared_seed=None):
        """``shared_seed=None``: each client its own rotation. An int: one rotation for every client
        and round, which nobody needs to send (a comparison: its errors are alike across clients)."""
        if shared_seed is not None and (isinstance(shared_seed, bool) or not isinstance(shared_seed, int)):
            raise ValueError(f"shared_seed must be None or an int, got {shared_seed!r}.")
        self._shared_seed = shared_seed

    def encode(self, x, encode_params):
        del encode_params  # unused
        if x.shape.rank != 2 or not x.shape.is_fully_defined():
            raise ValueError(f"ClientRotationEncodingStage needs rows [b, d] of known shape "
                             f"(put BlockReshapeEncodingStage first), got shape {x.shape}.")
        if self._shared_seed is None:
            seed = tf.stack([tf.bitcast(tf.reduce_sum(x), tf.int32),
                             tf.bitcast(tf.reduce_sum(tf.abs(x)), tf.int32)])
        else:
            seed = tf.constant([self._shared_seed, 0], tf.int32)
        encoded = collections.OrderedDict(
            [(self.ENCODED_VALUES_KEY, hadamard_rows(x * _signs(x.shape, seed, x.dtype)))])
        if self._shared_seed is None:
            encoded[self.SEED_KEY] = seed
        return encoded

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        del decode_params, num_summands, shape  # unused
        rotated = encoded_tensors[self.ENCODED_VALUES_KEY]
        if self._shared_seed is None:
            seed = encoded_tensors[self.SEED_KEY]
        else:
            seed = tf.constant([self._shared_seed, 0], tf.int32)
        return hadamard_rows(rotated) * _signs(rotated.shape, seed, rotated.dtype)


def _hadamard_matrix(n):
    """The ``n x n`` Sylvester Hadamard matrix (``n`` a power of two) divided by ``sqrt(n)``: orthonormal."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def hadamard_rows(x):
    """Orthonormal Walsh-Hadamard transform of every row of ``x`` ``[b, d]`` (``d`` a power of two); its own inverse.

    ``H_d = H_a (x) H_c`` (Kronecker product, ``a * c = d``), so a row
    reshaped to an ``a x c`` matrix ``X`` becomes ``H_a X H_c``: two small
    matrix products. Same result as tfmot's ``fast_walsh_hadamard_transform``,
    about 5x faster on the CNN's rows of 1,024.
    """
    d = x.shape[1]
    a = 2 ** (int(math.log2(d)) // 2)
    h_a = tf.constant(_hadamard_matrix(a), x.dtype)
    h_c = tf.constant(_hadamard_matrix(d // a), x.dtype)
    return tf.reshape(tf.matmul(tf.matmul(h_a, tf.reshape(x, [-1, a, d // a])), h_c), [-1, d])


def _signs(shape, seed, dtype):
    return tf.reshape(te.utils.random_signs(shape.num_elements(), seed, dtype), shape)


# ------------------------------------------------------- tight packing --

def pack_bits(values, bits):
    """Integers in ``[0, 2**bits - 1]`` (any dtype, length a multiple of ``8 // bits``) -> uint8 bytes."""
    per_byte = 8 // bits
    values = tf.reshape(tf.cast(values, tf.int32), [-1, per_byte])
    shifts = tf.constant([1 << (bits * i) for i in range(per_byte)], tf.int32)
    return tf.cast(tf.reduce_sum(values * shifts, axis=1), tf.uint8)


def unpack_bits(packed, bits):
    """uint8 bytes from :func:`pack_bits` -> the int32 values, ``8 // bits`` per byte, in order."""
    per_byte = 8 // bits
    shifts = tf.constant([bits * i for i in range(per_byte)], tf.int32)
    words = tf.cast(packed, tf.int32)[:, None]
    return tf.reshape(tf.bitwise.bitwise_and(tf.bitwise.right_shift(words, shifts), (1 << bits) - 1),
                      [-1])


@te.core.tf_style_encoding_stage
class TightBitpackingEncodingStage(_StatelessStage):
    """``bits``-bit integers (as floats, e.g. from uniform quantization) -> uint8, no bit wasted.

    ``bits`` is 1, 2, 4 or 8 so that whole values fit in a byte. Lossless.
    """

    ENCODED_VALUES_KEY = "packed_bytes"
    NAME = "tight_bitpacking"
    COMPRESSIBLE_KEYS = ()
    COMMUTES_WITH_SUM = False
    NEEDS_INPUT_SHAPE = True

    def __init__(self, bits):
        if bits not in PACKABLE_BITS:
            raise ValueError(f"bits must be one of {PACKABLE_BITS} to pack whole values into bytes, "
                             f"got {bits!r}.")
        self._bits = bits

    def encode(self, x, encode_params):
        del encode_params  # unused
        flat = tf.reshape(x, [-1])
        padding = -flat.shape.num_elements() % (8 // self._bits)
        packed = pack_bits(tf.pad(tf.round(flat), [[0, padding]]), self._bits)
        return collections.OrderedDict([(self.ENCODED_VALUES_KEY, packed)])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        del decode_params, num_summands  # unused
        values = unpack_bits(encoded_tensors[self.ENCODED_VALUES_KEY], self._bits)
        return tf.reshape(tf.cast(values[:tf.reduce_prod(shape)], tf.float32), shape)


# ------------------------------------------------------------- signs --

@te.core.tf_style_encoding_stage
class OneBitSignEncodingStage(_StatelessStage):
    """Rows ``[b, d]`` -> the sign of every value (1 bit, packed) and one scale per row.

    Decoding gives ``scale * sign(x)`` with ``scale = ||x||^2 / ||x||_1`` per row,
    DRIVE's unbiased scale: after a random rotation the decoded vector, rotated
    back, is the original in expectation. ``d`` must be a multiple of 8.
    """

    SIGNS_KEY = "packed_signs"
    SCALES_KEY = "row_scales"
    NAME = "one_bit_sign"
    COMPRESSIBLE_KEYS = ()
    COMMUTES_WITH_SUM = False
    NEEDS_INPUT_SHAPE = False

    def encode(self, x, encode_params):
        del encode_params  # unused
        if x.shape.rank != 2 or x.shape[1] is None or x.shape[1] % 8:
            raise ValueError(f"OneBitSignEncodingStage needs rows [b, d] with d a multiple of 8 "
                             f"(put BlockReshapeEncodingStage first), got shape {x.shape}.")
        l1 = tf.reduce_sum(tf.abs(x), axis=1)
        scales = tf.math.divide_no_nan(tf.reduce_sum(tf.square(x), axis=1), l1)
        signs = pack_bits(tf.cast(x >= 0, tf.int32), 1)
        return collections.OrderedDict([(self.SIGNS_KEY, signs), (self.SCALES_KEY, scales)])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        del decode_params, num_summands, shape  # unused
        scales = encoded_tensors[self.SCALES_KEY]
        bits = unpack_bits(encoded_tensors[self.SIGNS_KEY], 1)
        signs = tf.reshape(tf.cast(2 * bits - 1, scales.dtype), [tf.shape(scales)[0], -1])
        return signs * scales[:, None]


# -------------------------------------------------------------- top-k --

@te.core.tf_style_encoding_stage
class TopKEncodingStage(_StatelessStage):
    """A flat vector -> its ``ceil(fraction * n)`` largest-magnitude values and their int32 indices.

    Decoding puts the values back at their indices and zeros elsewhere. The
    indices are counted at 32 bits each, so a kept value costs 64 bits (or
    32 + the bits of a later stage that compresses the values).
    """

    VALUES_KEY = "top_values"
    INDICES_KEY = "top_indices"
    NAME = "top_k"
    COMPRESSIBLE_KEYS = (VALUES_KEY,)
    COMMUTES_WITH_SUM = False
    NEEDS_INPUT_SHAPE = True

    def __init__(self, fraction=0.01):
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                or not 0 < fraction <= 1:
            raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}.")
        self._fraction = fraction

    def encode(self, x, encode_params):
        del encode_params  # unused
        flat = tf.reshape(x, [-1])
        k = max(1, math.ceil(self._fraction * flat.shape.num_elements()))
        _, indices = tf.math.top_k(tf.abs(flat), k=k, sorted=False)
        return collections.OrderedDict([(self.VALUES_KEY, tf.gather(flat, indices)),
                                        (self.INDICES_KEY, indices)])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        del decode_params, num_summands  # unused
        values = encoded_tensors[self.VALUES_KEY]
        indices = encoded_tensors[self.INDICES_KEY]
        flat = tf.scatter_nd(indices[:, None], values, tf.reshape(tf.reduce_prod(shape), [1]))
        return tf.reshape(flat, shape)


# ------------------------------------------------------------ factories --

def _chain(*stages_and_keys):
    """``te.core.Encoder`` from ``(stage, key)`` pairs, first stage first; the last key is unused."""
    *parents, (last, _) = stages_and_keys
    composer = te.core.EncoderComposer(last)
    for stage, key in reversed(parents):
        composer = composer.add_parent(stage, key)
    return composer.make()


def _flatten():
    return te.stages.FlattenEncodingStage(), te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY


def _rotate(block_size, shared_seed=None):
    return [(BlockReshapeEncodingStage(block_size), BlockReshapeEncodingStage.ENCODED_VALUES_KEY),
            (ClientRotationEncodingStage(shared_seed), ClientRotationEncodingStage.ENCODED_VALUES_KEY)]


def _uniform(bits, stochastic=True):
    return (te.stages.UniformQuantizationEncodingStage(bits, stochastic=stochastic),
            te.stages.UniformQuantizationEncodingStage.ENCODED_VALUES_KEY)


def rotated_sign_encoder(block_size=1024, shared_seed=None):
    """``te.core.Encoder``: flatten -> blocks -> random Hadamard rotation -> 1-bit signs + scales.

    ``shared_seed`` (an int) gives every client the same rotation instead of its own.
    """
    return _chain(_flatten(), *_rotate(block_size, shared_seed), (OneBitSignEncodingStage(), None))


def rotated_quantization_encoder(bits, block_size=1024):
    """``te.core.Encoder``: flatten -> blocks -> random rotation -> uniform ``bits`` -> tight packing."""
    return _chain(_flatten(), *_rotate(block_size), _uniform(bits),
                  (TightBitpackingEncodingStage(bits), None))


def tight_quantization_encoder(bits, stochastic=True):
    """``te.core.Encoder``: flatten -> uniform ``bits`` -> tight packing (``bits`` in 1, 2, 4, 8).

    ``stochastic=False`` rounds to the nearest level: biased, but half the
    error; better for the broadcast, whose error is not averaged over clients.
    """
    return _chain(_flatten(), _uniform(bits, stochastic), (TightBitpackingEncodingStage(bits), None))


def kashin_quantization_encoder(bits):
    """``te.core.Encoder``: tfmot's research Kashin representation -> uniform ``bits`` -> bitpacking."""
    stage = te.stages.research.KashinHadamardEncodingStage()
    return _chain(_flatten(), (stage, stage.ENCODED_VALUES_KEY), _uniform(bits),
                  (te.stages.BitpackingEncodingStage(bits), None))


def top_k_encoder(fraction=0.01):
    """``te.core.Encoder``: flatten -> top-k (float32 values + int32 indices)."""
    return _chain(_flatten(), (TopKEncodingStage(fraction), None))
