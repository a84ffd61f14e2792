"""Unpack tfmot's 8-bit values from their 28-bit words in half the time, with the same result.

``te.encoders.uniform_quantization(bits=8)`` ends with tfmot's
``BitpackingEncodingStage``. It packs every seven 8-bit values v0 ... v6 into
two int32 words, using 28 bits of each::

    word 0 = v0 + v1 * 2**8 + v2 * 2**16 + (v3 % 2**4) * 2**24
    word 1 = v3 // 2**4 + v4 * 2**4 + v5 * 2**12 + v6 * 2**20

tfmot's decoder takes the values apart again with seven columns of ``mod`` and
``floordiv``. But the two words side by side are one 56-bit number,
``word 0 + word 1 * 2**28``, and its seven bytes are exactly v0 ... v6. So
:func:`unpack_8_from_28` joins each pair into an int64 and reads its bytes
with ``tf.bitcast``. That decodes the 8-bit updates in about half the time of
tfmot's unpacking (``make bench`` prints both times), and the server decodes
every client's update, every round.

:func:`install` puts it in place of tfmot's ``tf_utils.unpack_from_int`` for
8-bit values in 28-bit words only; every other bit width still goes to tfmot's
own code. The packed format, the bits sent and the decoded values do not
change: ``tests/test_fast_unpacking.py`` compares both decoders on every way
the last words can be padded.
"""
import sys

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal.tensor_encoding.utils import tf_utils

TFMOT_UNPACK = tf_utils.unpack_from_int  # tfmot's own function, kept for other bit widths


def unpack_8_from_28(value, shape):
    """int32 tensor of ``shape`` holding the 8-bit values that tfmot packed into ``value`` (28-bit words)."""
    words = tf.reshape(value, [-1])
    words = tf.pad(words, [[0, tf.math.mod(tf.size(words), 2)]])  # tfmot drops an all-padding last word
    pairs = tf.cast(tf.reshape(words, [-1, 2]), tf.int64)
    joined = tf.bitwise.bitwise_or(pairs[:, 0], tf.bitwise.left_shift(pairs[:, 1], 28))
    values = tf.reshape(tf.bitcast(joined, tf.uint8)[:, :7], [-1])  # bytes 0-6; byte 7 is 0
    values = tf.cast(values[:tf.reduce_prod(shape)], tf.int32)
    return tf.reshape(values, shape)


def unpack_from_int(value, original_bitrange, target_bitrange, shape):
    """tfmot's ``tf_utils.unpack_from_int``, through :func:`unpack_8_from_28` for 8-bit values in 28-bit words."""
    if (original_bitrange, target_bitrange) == (8, 28):
        return unpack_8_from_28(value, shape)
    return TFMOT_UNPACK(value, original_bitrange, target_bitrange, shape)


def install():
    """Make tfmot's bit-packing stage unpack with :func:`unpack_from_int`; returns True if it does.

    Reading bytes with ``tf.bitcast`` assumes a little-endian machine (x86, ARM);
    elsewhere tfmot's code is left in place and this returns False.
    """
    if sys.byteorder != "little":
        return False
    tf_utils.unpack_from_int = unpack_from_int
    return True


def uninstall():
    """Put tfmot's own ``tf_utils.unpack_from_int`` back, e.g. to time it against :func:`install`'s."""
    tf_utils.unpack_from_int = TFMOT_UNPACK


def installed():
    """True if tfmot's bit-packing stage currently unpacks with :func:`unpack_from_int`."""
    return tf_utils.unpack_from_int is unpack_from_int
