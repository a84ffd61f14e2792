"""How many bits a structure of tensors occupies on the wire.

Bits are counted from each tensor's dtype and number of elements, nothing else:
``bits = elements x bits-per-element``. A float32 tensor of 1,000 values is
32,000 bits, whatever it encodes. Units printed by :func:`format_bits` are bit
units (1 Kibit = 1,024 bits, 1 Mibit = 2**20 bits): the original tutorial labelled
bits as "MiB", which overstates them eight times.
"""
import numpy as np
import tensorflow as tf

_UNITS = ["bit", "Kibit", "Mibit", "Gibit", "Tibit"]


def bits_per_element(dtype):
    """Bits one element of ``dtype`` occupies (float32 -> 32, int8 -> 8, bool -> 8)."""
    dtype = tf.as_dtype(dtype)
    if dtype == tf.string or dtype == tf.variant or dtype == tf.resource:
        raise TypeError(f"cannot count the bits of a {dtype.name} tensor: its size is not fixed.")
    return dtype.size * 8


def spec_bits(spec):
    """Bits of one tensor described by a ``tf.TensorSpec`` (or anything with shape and dtype)."""
    num_elements = tf.TensorShape(spec.shape).num_elements()
    if num_elements is None:
        raise ValueError(f"spec {spec} has an unknown dimension; count its bits at run time "
                         "with tensor_bits().")
    return num_elements * bits_per_element(spec.dtype)


def structure_spec_bits(structure):
    """Total bits (int) of a nested structure of specs, tensors or numpy arrays."""
    return sum(spec_bits(leaf) for leaf in tf.nest.flatten(structure))


def tensor_bits(structure):
    """Total bits of a nested structure of tensors, as an int64 tensor computed at run time.

    Works inside a TFF/TF graph, also for tensors whose size is only known when
    they are computed (a variable-length code, a top-k selection).
    """
    total = tf.constant(0, tf.int64)
    for leaf in tf.nest.flatten(structure):
        leaf = tf.convert_to_tensor(leaf)
        total += tf.size(leaf, out_type=tf.int64) * bits_per_element(leaf.dtype)
    return total


def variable_table(model):
    """Per-variable rows for a Keras model: name, shape, parameters, bits per client.

    Returns a list of dicts with keys ``variable``, ``shape``, ``parameters``
    and ``bits`` (float32 bits sent once, uncompressed).
    """
    rows = []
    for variable in model.trainable_variables + model.non_trainable_variables:
        rows.append(dict(
            variable=variable.name,
            shape=tuple(variable.shape.as_list()),
            parameters=int(np.prod(variable.shape.as_list())),
            bits=spec_bits(variable),
        ))
    return rows


def format_bits(bits, digits=2):
    """``53227840`` -> ``'50.76 Mibit'``: bits in binary bit units."""
    bits = float(bits)
    if bits < 0:
        raise ValueError(f"a number of bits cannot be negative, got {bits}.")
    unit = 0
    while bits >= 1024 and unit < len(_UNITS) - 1:
        bits /= 1024
        unit += 1
    if unit == 0:
        return f"{int(bits)} bit"
    return f"{bits:.{digits}f} {_UNITS[unit]}"
