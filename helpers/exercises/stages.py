"""Encoding stages written for notebook 05: the warm-up, and the encoders around every exercise's stage.

Every stage implements tfmot's stage interface with TensorFlow graph ops only,
so it runs inside TFF computations (serialized TF graphs):

- :class:`Float16EncodingStage` (warm-up): float32 values sent as float16.
- The reference solutions of exercises (a), (b) and (c) live in
  :mod:`helpers.exercises.solutions` and are readable here under their names
  (``stages.NonUniformQuantizationEncodingStage``, ...). In a graded release,
  whose ``helpers/exercises/solutions.py`` is a stub, reading one raises an
  ``ImportError`` saying that the instructor withheld the solutions.

Each stage has a factory returning a ``te.core.Encoder`` (``flatten -> stage
-> ...``) for :func:`helpers.compression.threshold_policy`; ``stage_cls`` lets
the notebook plug in a student's class (the reference solution by default). :func:`adaptive_ranges` reads the
ranges of the adaptive encoders from a FedAvg process state.
"""
import collections
import importlib

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers.exercises.companding import companded_levels  # noqa: F401 (re-exported: notebook 05's building block)

WITHHELD = ("nearest_level", "NonUniformQuantizationEncodingStage", "code_lengths", "HuffmanEncodingStage",
            "AdaptiveRangeQuantizationEncodingStage")

__all__ = [
    "Float16EncodingStage", "float16_encoder", "non_uniform_quantization_encoder", "huffman_encoder",
    "adaptive_quantization_encoder", "companded_levels", "adaptive_ranges",
    *WITHHELD,  # read from helpers.exercises.solutions on first use (module __getattr__ below)
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


# ------------------------------------------------- the reference solutions --

def solutions_available():
    """True in the self-study copy and the instructor's; False in a graded release.

    A graded release's ``helpers/exercises/solutions.py`` is a stub that raises
    ``ImportError`` (``make assignment`` writes it), so that no import reaches
    the reference solutions, not even an editable install of the repository.
    """
    try:
        importlib.import_module("helpers.exercises.solutions")
    except ImportError:
        return False
    return True


def reference(name):
    """The reference solution ``name`` (one of :data:`WITHHELD`) from :mod:`helpers.exercises.solutions`.

    Raises ``ImportError`` naming what to do in a graded release, where the
    instructor withheld the solutions.
    """
    if name not in WITHHELD:
        raise AttributeError(f"helpers.exercises.stages has no {name!r}; the reference solutions are {', '.join(WITHHELD)}.")
    try:
        solutions = importlib.import_module("helpers.exercises.solutions")
    except ImportError:
        raise ImportError(f"{name} is a reference solution, and the instructor withheld the solutions in this "
                          "graded release: use your own stage from notebook 05 (pass it as stage_cls=...).") from None
    return getattr(solutions, name)


def __getattr__(name):
    """``stages.HuffmanEncodingStage`` and the other reference solutions, read from :mod:`helpers.exercises.solutions`."""
    if name in WITHHELD:
        return reference(name)
    raise AttributeError(f"module 'helpers.exercises.stages' has no attribute {name!r}")


# ------------------------------------------------------------ factories --

def _flatten_then(composer):
    return composer.add_parent(te.stages.FlattenEncodingStage(),
                               te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY)


def float16_encoder(stage_cls=Float16EncodingStage):
    """``te.core.Encoder``: the warm-up float16 stage alone."""
    return te.core.EncoderComposer(stage_cls()).make()


def non_uniform_quantization_encoder(bits=8, stage_cls=None, **kwargs):
    """``te.core.Encoder``: flatten -> non-uniform quantization -> bitpacking of the level indices."""
    stage_cls = stage_cls or reference("NonUniformQuantizationEncodingStage")
    return _flatten_then(
        te.core.EncoderComposer(te.stages.BitpackingEncodingStage(bits))
        .add_parent(stage_cls(bits=bits, **kwargs), stage_cls.ENCODED_VALUES_KEY)).make()


def huffman_encoder(bits=8, stage_cls=None, **kwargs):
    """``te.core.Encoder``: flatten -> ``bits``-bit uniform quantization -> Huffman coding.

    The same quantizer as ``te.encoders.uniform_quantization(bits)``, with the
    Huffman stage in place of bitpacking, so the two differ only in how the
    integer symbols are written.
    """
    stage_cls = stage_cls or reference("HuffmanEncodingStage")
    uniform = te.stages.UniformQuantizationEncodingStage(bits)
    return _flatten_then(
        te.core.EncoderComposer(stage_cls(input_bits=bits, **kwargs))
        .add_parent(uniform, te.stages.UniformQuantizationEncodingStage.ENCODED_VALUES_KEY)).make()


def adaptive_quantization_encoder(bits=8, stage_cls=None, **kwargs):
    """``te.core.Encoder``: flatten -> adaptive-range quantization -> bitpacking."""
    stage_cls = stage_cls or reference("AdaptiveRangeQuantizationEncodingStage")
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
