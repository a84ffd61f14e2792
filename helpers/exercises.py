"""Checkers, hints and solutions for notebook 05 (custom encoding stages).

``check(stage, kind)`` runs a stage (a class, an instance, or a no-argument
factory returning a ``te.core.Encoder``) through the tests of one exercise and
prints one line: that it passed, that it is not attempted yet (an untouched
stub: every method raises ``NotImplementedError`` or returns ``None``), or the
first thing that is wrong, in one sentence. It never raises, so a notebook
with untouched stubs still runs top to bottom.

Kinds (an exercise letter works too):

- ``"warmup"``: the float16 warm-up stage.
- ``"nonuniform"`` (``"a"``): non-uniform quantization; nearest-level
  rounding, at most ``2**bits`` levels, lower MSE than uniform quantization.
- ``"lossless"`` (``"b"``): lossless coding of integer symbols; exact on
  random, skewed and degenerate streams, fewer bits than 8-bit packing.
- ``"adaptive"`` (``"c"``): an ``AdaptiveEncodingStageInterface`` stage whose
  parameters follow the statistics of earlier rounds.

Every kind also checks the interface (all members implemented, the
``tf_style`` decorator), that ``decode(encode(x))`` keeps shape and dtype when
encoding and decoding run in separate graphs (as in TFF), that a stage
claiming ``commutes_with_sum`` really does, and that its bits are counted:
``helpers.sizing.tensor_bits`` of the encoded tensors equals a count made
independently from the returned arrays, everything sent is a tensor, and the
course's encoder built from it uses fewer bits than float32.

``hint(exercise)`` prints a hint; ``solution(exercise)`` prints the source of
the reference solution in :mod:`helpers.stages`. :func:`ready` tells a
notebook whether an exercise's stage passes (so training cells can skip);
:func:`client_update` makes a real client update of the FedAvg CNN, and
:func:`mse_figures`, :func:`huffman_figures` compute the notebook's figures.
"""
import collections
import inspect
import re
import textwrap

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import huffman, sizing, stages

KINDS = ("warmup", "nonuniform", "lossless", "adaptive")
_ALIASES = {"a": "nonuniform", "b": "lossless", "c": "adaptive", "float16": "warmup",
            "warm-up": "warmup", "warm_up": "warmup"}
_TITLES = {"warmup": "Warm-up", "nonuniform": "Exercise (a)", "lossless": "Exercise (b)",
           "adaptive": "Exercise (c)"}
_LETTERS = {"warmup": "warm-up", "nonuniform": "a", "lossless": "b", "adaptive": "c"}

# Constructor arguments each kind's stage is built with, and the course factory composing it.
_CTOR = {"warmup": {}, "nonuniform": {"bits": 4}, "lossless": {"input_bits": 8}, "adaptive": {"bits": 8}}
_FACTORY = {
    "warmup": lambda cls: stages.float16_encoder(stage_cls=cls),
    "nonuniform": lambda cls: stages.non_uniform_quantization_encoder(bits=8, stage_cls=cls),
    "lossless": lambda cls: stages.huffman_encoder(bits=8, stage_cls=cls),
    "adaptive": lambda cls: stages.adaptive_quantization_encoder(bits=8, stage_cls=cls),
}
_DECORATED = ("TFStyleEncodingStage", "TFStyleAdaptiveEncodingStage")
_PROPERTIES = ("name", "compressible_tensors_keys", "commutes_with_sum", "decode_needs_input_shape")
_ADAPTIVE_PROPERTIES = ("state_update_aggregation_modes",)


class CheckResult(collections.namedtuple("CheckResult", ["kind", "status", "message"])):
    """What :func:`evaluate` found: ``status`` is "passed", "not attempted" or "failed"."""

    @property
    def passed(self):
        return self.status == "passed"

    def line(self):
        """The one line :func:`check` prints."""
        title = _TITLES[self.kind]
        if self.status == "passed":
            return f"{title} passed: {self.message}"
        if self.status == "not attempted":
            return f"{title} not attempted yet: {self.message}"
        return f"{title} not passed yet: {self.message}"


class _Fault(Exception):
    """A fault in the student's stage, described in one sentence."""


class _NotAttempted(Exception):
    """Every member of the stage is still a stub."""


_LAST = {}


# ------------------------------------------------------------------- API --

def check(stage, kind):
    """Check ``stage`` for exercise ``kind`` and print one line; never raises.

    ``stage``: a stage class (preferred), a stage instance, or a no-argument
    function returning a ``te.core.Encoder``. ``kind``: "warmup",
    "nonuniform" (a), "lossless" (b) or "adaptive" (c).
    """
    result = evaluate(stage, kind)
    print(result.line())


def evaluate(stage, kind):
    """Like :func:`check` but silent: returns a :class:`CheckResult`."""
    kind = _kind(kind)
    try:
        message = _check(stage, kind)
        result = CheckResult(kind, "passed", message)
    except _NotAttempted as stub:
        result = CheckResult(kind, "not attempted", str(stub))
    except _Fault as fault:
        result = CheckResult(kind, "failed", str(fault))
    except Exception as error:  # the student's code failed in a way not foreseen: say where
        result = CheckResult(kind, "failed", f"running the stage raised {_describe_error(error)}.")
    _LAST[kind] = (stage, result)
    return result


def ready(kind, stage):
    """True if ``stage`` passes exercise ``kind`` (reuses the last :func:`check` of that stage)."""
    kind = _kind(kind)
    last = _LAST.get(kind)
    if last is None or last[0] is not stage:
        evaluate(stage, kind)
    return _LAST[kind][1].passed


def skip_message(kind, what="training"):
    """The line a training (or figures) cell prints when the exercise's stage is not ready."""
    kind = _kind(kind)
    last = _LAST.get(kind)
    name = "the warm-up" if kind == "warmup" else f"exercise ({_LETTERS[kind]})"
    if last is None or last[1].status == "not attempted":
        return f"{name} not attempted yet — skipping {what}"
    return f"{name} does not pass its check yet — skipping {what}"


HINTS = {
    "warmup": "Cast in encode (tf.cast(x, tf.float16)) and cast back to float32 in decode; "
              "nothing else is needed.",
    "nonuniform": textwrap.dedent("""\
        1. Where to put the levels: at high resolution the MSE is lowest when the density of
           levels follows the cube root of the density of the values. Plain quantiles follow
           the density itself and leave the tails almost empty: at 8 bits that is worse than
           uniform. So: h = tf.histogram_fixed_width(x, [min, max], nbins=16 * 2**bits),
           w = h ** (1/3), cdf = cumsum(w) / sum(w), and level i where cdf reaches
           (i + 0.5) / 2**bits (tf.searchsorted(cdf, targets), linear within the bin).
        2. Optional, lowers the MSE further: a Lloyd step moves every level to the mean of the
           values nearest to it. With sorted values (tf.sort) each level's values are a
           contiguous run: tf.searchsorted(sorted_x, midpoints) gives the run boundaries and
           prefix sums (tf.cumsum) the means.
        3. The nearest level of each value: tf.searchsorted(midpoints, x) where midpoints are
           the (2**bits - 1) points halfway between consecutive levels.
        4. encode returns the indices as float32 (so BitpackingEncodingStage(bits) can pack them,
           hence ENCODED_VALUES_KEY in compressible_tensors_keys) and the levels; decode is
           tf.gather(levels, tf.cast(indices, tf.int32)). Keep x's shape for the indices."""),
    "lossless": textwrap.dedent("""\
        1. encode: symbols = tf.cast(tf.round(tf.reshape(x, [-1])), tf.int32);
           counts = tf.math.bincount(symbols, minlength=K, maxlength=K, dtype=tf.int64) with
           K = 2**input_bits (tf.ensure_shape(counts, [K]) gives it a static length).
        2. lengths = huffman_code_lengths(counts, max_code_length), then
           words, chunk_starts = huffman_pack(symbols, lengths, max_code_length, symbols_per_chunk).
        3. Return words, chunk_starts and the lengths (as tf.uint8: 8 bits each): the decoder
           rebuilds the canonical code from the lengths alone.
        4. decode_needs_input_shape is True: decode gets `shape`, the number of symbols is
           tf.reduce_prod(shape); huffman_unpack(...) returns int32 symbols: cast to float32
           and reshape to `shape`. A code cannot be added, so commutes_with_sum is False."""),
    "adaptive": textwrap.dedent("""\
        1. initial_state: {"range": tf.constant(initial_range)}; get_params(state) returns the
           range (and max_value = 2**bits - 1) for both encode and decode.
        2. encode clips x to [-range, range], maps it to [0, max_value], rounds stochastically
           (floor + (uniform < fraction)) and also returns {"max_abs": tf.reduce_max(tf.abs(x))}
           as state update; state_update_aggregation_modes = {"max_abs": StateAggregationMode.MAX}.
        3. update_state(state, updates) returns {"range": updates["max_abs"]}.
        4. All clients share the range, so the integers can be summed before decoding:
           commutes_with_sum is True and decode subtracts range * num_summands (1 if None)."""),
}

_SOLUTIONS = {
    "warmup": ["Float16EncodingStage"],
    "nonuniform": ["companded_levels", "nearest_level", "NonUniformQuantizationEncodingStage"],
    "lossless": ["huffman_code_lengths", "canonical_code", "huffman_pack", "huffman_unpack",
                 "HuffmanEncodingStage"],
    "adaptive": ["AdaptiveRangeQuantizationEncodingStage"],
}


def hint(kind):
    """Print a hint for exercise ``kind``."""
    kind = _kind(kind)
    print(f"Hint for {_TITLES[kind].lower()}:\n{HINTS[kind]}")


def solution_source(kind):
    """Source code of the reference solution of ``kind`` (:mod:`helpers.stages`; Huffman blocks: :mod:`helpers.huffman`)."""
    kind = _kind(kind)
    return "\n\n".join(source_of(getattr(stages if hasattr(stages, name) else huffman, name))
                        for name in _SOLUTIONS[kind])


def solution(kind):
    """Print the reference solution of exercise ``kind``."""
    print(solution_source(kind))


def source_of(obj):
    """Source of a function or stage class, looking through the ``tf_style`` decorators."""
    if inspect.isclass(obj) and obj.__name__ in _DECORATED:
        obj = obj.__mro__[1]
    return inspect.getsource(inspect.unwrap(obj))


def _kind(kind):
    name = _ALIASES.get(str(kind).lower(), str(kind).lower())
    if name not in KINDS:
        raise ValueError(f"unknown exercise kind {kind!r}; use one of {', '.join(KINDS)} "
                         "(or the exercise letters a, b, c).")
    return name


# ----------------------------------------------------------- the checks --

def _check(stage, kind):
    if _is_encoder_factory(stage):
        return _check_encoder_factory(stage, kind)
    instance, cls = _instantiate(stage, kind)
    label = cls.__mro__[1].__name__ if cls.__name__ in _DECORATED else cls.__name__
    _probe_interface(instance, kind, label)
    runner = _Runner(instance, adaptive=(kind == "adaptive"), dynamic=(kind == "lossless"))
    details = _KIND_CHECKS[kind](runner, instance, label)
    _check_commutes(runner, instance, label, kind)
    bits_per_value = _check_course_encoder(cls, kind, label)
    return f"{label} {details}; bits counted: {bits_per_value:.2f} bits/value in the course's encoder."


def _is_encoder_factory(stage):
    return (callable(stage) and not inspect.isclass(stage)
            and not isinstance(stage, (te.core.EncodingStageInterface, te.core.AdaptiveEncodingStageInterface)))


def _instantiate(stage, kind):
    interface = te.core.AdaptiveEncodingStageInterface if kind == "adaptive" else te.core.EncodingStageInterface
    other = te.core.EncodingStageInterface if kind == "adaptive" else te.core.AdaptiveEncodingStageInterface
    cls = stage if inspect.isclass(stage) else type(stage)
    name = cls.__mro__[1].__name__ if cls.__name__ in _DECORATED else cls.__name__
    if not issubclass(cls, interface):
        if issubclass(cls, other):
            raise _Fault(f"{name} subclasses te.core.{other.__name__}, but this exercise needs "
                         f"te.core.{interface.__name__}.")
        raise _Fault(f"{name} must subclass te.core.{interface.__name__}.")
    if cls.__name__ not in _DECORATED:
        decorator = "tf_style_adaptive_encoding_stage" if kind == "adaptive" else "tf_style_encoding_stage"
        raise _Fault(f"{name} needs the @te.core.{decorator} decorator: the Encoder calls "
                     "get_params, encode and decode with a `name` argument that it adds.")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise _Fault(f"{name} does not define {', '.join(missing)}: every abstract method and "
                     "property of the interface must be implemented.")
    if not inspect.isclass(stage):
        return stage, cls
    kwargs = _CTOR[kind]
    try:
        return stage(**kwargs), cls
    except NotImplementedError:
        raise _NotAttempted(f"{name}() still raises NotImplementedError.") from None
    except TypeError as error:
        call = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise _Fault(f"{name}({call}) failed ({error}): the constructor must accept "
                     f"{call or 'no arguments'}.") from None


def _members(kind):
    props = _PROPERTIES + (_ADAPTIVE_PROPERTIES if kind == "adaptive" else ())
    methods = (("initial_state",) if kind == "adaptive" else ()) + ("get_params", "encode", "decode") + (
        ("update_state",) if kind == "adaptive" else ())
    return props, methods


def _probe_interface(stage, kind, label):
    """Find stub members (NotImplementedError or None), then check the properties' types."""
    props, methods = _members(kind)
    outcome = collections.OrderedDict()
    values = {}
    for prop in props:
        outcome[prop], values[prop] = _try(lambda p=prop: getattr(stage, p))
    x = np.linspace(-1.0, 1.0, 64, dtype=np.float32) if kind != "lossless" else np.arange(64, dtype=np.float32)
    # The methods as written, without the decorator's name scopes (which need a working `name`).
    raw = type(stage).__mro__[1] if type(stage).__name__ in _DECORATED else type(stage)
    with tf.Graph().as_default():
        state = {}
        if kind == "adaptive":
            outcome["initial_state"], state = _try(lambda: raw.initial_state(stage))
            state = state if isinstance(state, dict) else {}
            outcome["get_params"], params = _try(lambda: raw.get_params(stage, state))
        else:
            outcome["get_params"], params = _try(lambda: raw.get_params(stage))
        params = params if isinstance(params, tuple) and len(params) == 2 else ({}, {})
        outcome["encode"], encoded = _try(lambda: raw.encode(stage, tf.constant(x), params[0]))
        updates = {}
        if kind == "adaptive" and isinstance(encoded, tuple) and len(encoded) == 2:
            encoded, updates = encoded
        encoded = encoded if isinstance(encoded, dict) else {}
        outcome["decode"], _ = _try(lambda: raw.decode(stage, encoded, params[1], num_summands=None,
                                                       shape=tf.constant([64])))
        if kind == "adaptive":
            outcome["update_state"], _ = _try(lambda: raw.update_state(
                stage, state, updates if isinstance(updates, dict) else {}))
    stubs = [m for m, o in outcome.items() if o in ("stub", "none")]
    if len(stubs) == len(outcome):
        raise _NotAttempted(f"every method of {label} still raises NotImplementedError "
                            "(or returns None); replace the stubs with your code.")
    for member in list(props) + list(methods):
        if outcome[member] == "stub":
            raise _Fault(f"{label}.{member} still raises NotImplementedError: implement it.")
        if outcome[member] == "none":
            raise _Fault(f"{label}.{member} returns None: it must return "
                         f"{_EXPECTED_RETURN[member]}.")
    for prop in props:
        if outcome[prop] == "error":
            raise _Fault(f"reading {label}.{prop} raised {_describe_error(values[prop])}.")
    _check_property_types(values, label, kind)


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
    except NotImplementedError:
        return "stub", None
    except Exception as error:  # the member is written; its errors are reported later, in context
        return "error", error
    return ("none", None) if value is None else ("ok", value)


def _check_property_types(values, label, kind):
    if not isinstance(values["name"], str) or not values["name"]:
        raise _Fault(f"{label}.name must be a non-empty string, got {values['name']!r}.")
    keys = values["compressible_tensors_keys"]
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise _Fault(f"{label}.compressible_tensors_keys must be a list of strings, got {keys!r}.")
    for prop in ("commutes_with_sum", "decode_needs_input_shape"):
        if not isinstance(values[prop], bool):
            raise _Fault(f"{label}.{prop} must be True or False, got {values[prop]!r}.")
    if kind == "adaptive":
        modes = values["state_update_aggregation_modes"]
        if not isinstance(modes, dict) or not modes:
            raise _Fault(f"{label}.state_update_aggregation_modes must be a non-empty dict from "
                         f"state update keys to te.core.StateAggregationMode, got {modes!r}.")
        for key, mode in modes.items():
            if not isinstance(mode, te.core.StateAggregationMode):
                raise _Fault(f"{label}.state_update_aggregation_modes[{key!r}] must be a "
                             f"te.core.StateAggregationMode, got {mode!r}.")
            if mode == te.core.StateAggregationMode.STACK:
                raise _Fault(f"{label}.state_update_aggregation_modes[{key!r}] is STACK, which the "
                             "course's aggregator does not support: use SUM, MIN or MAX.")


class _Runner:
    """Encodes in one graph and decodes in another, as TFF does, with numpy values in between."""

    def __init__(self, stage, adaptive, dynamic=False):
        self.stage = stage
        self.adaptive = adaptive
        self.dynamic = dynamic  # unknown static shapes: one trace serves inputs of any length
        self._encoders = {}
        self._decoders = {}
        self.initial_state = None
        if adaptive:
            self.initial_state = _numpy(tf.function(stage.initial_state, autograph=False)())
            if not isinstance(self.initial_state, dict) or not self.initial_state:
                raise _Fault(f"initial_state must return a non-empty dict of tensors, got "
                             f"{self.initial_state!r}.")

    def _state_spec(self, state):
        return {k: tf.TensorSpec(np.shape(v), tf.as_dtype(np.asarray(v).dtype)) for k, v in state.items()}

    def encode(self, x, state=None):
        """-> (encoded numpy dict, state updates numpy dict, tensor_bits of encoded, output specs)."""
        x = np.asarray(x)
        state = self.initial_state if state is None and self.adaptive else state
        key = (x.ndim if self.dynamic else x.shape, x.dtype.str)
        if key not in self._encoders:
            self._encoders[key] = self._trace_encode(x, state)
        function = self._encoders[key]
        args = (x, state) if self.adaptive else (x,)
        encoded, updates, bits = _run(function, args, "encode")
        return encoded, updates, int(bits), _specs(function.structured_outputs[0])

    def _trace_encode(self, x, state):
        stage, adaptive = self.stage, self.adaptive

        def encode(x, state=None):
            params = stage.get_params(state)[0] if adaptive else stage.get_params()[0]
            output = stage.encode(x, params)
            if adaptive:
                if not (isinstance(output, tuple) and len(output) == 2):
                    raise _Fault("an adaptive stage's encode must return a tuple "
                                 "(encoded_tensors, state_update_tensors).")
                encoded, updates = output
            else:
                encoded, updates = output, {}
            if not isinstance(encoded, dict):
                raise _Fault(f"encode must return a dict of tensors, got {type(encoded).__name__}.")
            for name, value in list(encoded.items()) + list(dict(updates or {}).items()):
                if not tf.is_tensor(value):
                    raise _Fault(f"encode returns a {type(value).__name__} under {name!r}, not a tensor: "
                                 "the encoders strip Python values, so it would travel uncounted; "
                                 "return tf tensors only.")
            return dict(encoded), dict(updates or {}), sizing.tensor_bits(dict(encoded))

        x_spec = tf.TensorSpec([None] * x.ndim if self.dynamic else x.shape, tf.as_dtype(x.dtype))
        if adaptive:
            function = tf.function(encode, input_signature=[x_spec, self._state_spec(state)], autograph=False)
        else:
            function = tf.function(lambda x: encode(x), input_signature=[x_spec], autograph=False)
        try:
            return function.get_concrete_function()
        except _Fault:
            raise
        except NotImplementedError:
            raise _Fault("encode (or get_params) still raises NotImplementedError.") from None
        except Exception as error:
            raise _Fault(f"encode raised {_describe_error(error)}.") from None

    def decode(self, encoded, specs, shape, state=None, num_summands=None):
        """Decode numpy ``encoded`` in a fresh graph; ``specs`` from :meth:`encode`."""
        stage, adaptive = self.stage, self.adaptive
        state = self.initial_state if state is None and adaptive else state
        shape = tuple(int(d) for d in shape)
        static_shape = None if self.dynamic else shape
        key = (tuple(sorted((k, tuple(s.shape.as_list()) if s.shape.rank is not None else None,
                             s.dtype.name) for k, s in specs.items())),
               len(shape) if self.dynamic else shape, num_summands)
        if key not in self._decoders:
            def decode(encoded, shape_tensor, state=None):
                params = stage.get_params(state)[1] if adaptive else stage.get_params()[1]
                if not stage.decode_needs_input_shape:
                    shape_arg = None
                elif static_shape is not None:
                    shape_arg = tf.constant(list(static_shape), tf.int32)
                else:
                    shape_arg = shape_tensor
                return stage.decode(encoded, params, num_summands=num_summands, shape=shape_arg)

            shape_spec = tf.TensorSpec([len(shape)], tf.int32)
            if adaptive:
                function = tf.function(decode, input_signature=[dict(specs), shape_spec,
                                                                self._state_spec(state)],
                                       autograph=False)
            else:
                function = tf.function(lambda encoded, shape_tensor: decode(encoded, shape_tensor),
                                       input_signature=[dict(specs), shape_spec], autograph=False)
            try:
                self._decoders[key] = function.get_concrete_function()
            except NotImplementedError:
                raise _Fault("decode still raises NotImplementedError.") from None
            except Exception as error:
                raise _Fault(f"decode raised {_describe_error(error)} when given only the encoded "
                             "tensors in a separate graph (decode may use its arguments only, "
                             "not values kept on self during encode).") from None
        shape_value = np.array(shape, np.int32)
        args = (dict(encoded), shape_value, state) if adaptive else (dict(encoded), shape_value)
        return _run(self._decoders[key], args, "decode")

    def roundtrip(self, x, state=None):
        encoded, updates, bits, specs = self.encode(x, state)
        decoded = self.decode(encoded, specs, np.shape(x), state)
        _check_shape_dtype(decoded, x)
        _check_bits(encoded, bits)
        return decoded, encoded, updates, bits

    def update_state(self, state, updates):
        function = tf.function(self.stage.update_state, autograph=False)
        new_state = _numpy(_run(function, (state, updates), "update_state", raw=True))
        if not isinstance(new_state, dict) or set(new_state) != set(state):
            raise _Fault(f"update_state must return a dict with the same keys as initial_state "
                         f"({sorted(state)}), got {new_state!r}.")
        for k in state:
            if np.shape(new_state[k]) != np.shape(state[k]) or \
                    np.asarray(new_state[k]).dtype != np.asarray(state[k]).dtype:
                raise _Fault(f"update_state changes the shape or dtype of state[{k!r}]: keep them "
                             "as in initial_state.")
        return new_state


def _run(function, args, what, raw=False):
    try:
        result = function(*args)
    except _Fault:
        raise
    except NotImplementedError:
        raise _Fault(f"{what} still raises NotImplementedError.") from None
    except Exception as error:
        raise _Fault(f"{what} raised {_describe_error(error)}.") from None
    return result if raw else _numpy(result)


def _specs(structure):
    return tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), structure)


def _numpy(structure):
    return tf.nest.map_structure(lambda t: t.numpy() if tf.is_tensor(t) else t, structure)


def _describe_error(error):
    text = str(error).strip().splitlines()
    first = next((line for line in text if line.strip() and not line.startswith("Graph execution")), "")
    first = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", first).strip()
    if len(first) > 160:
        first = first[:157] + "..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _check_shape_dtype(decoded, x):
    decoded = np.asarray(decoded)
    if decoded.dtype != np.asarray(x).dtype:
        raise _Fault(f"decode returns {decoded.dtype} values for {np.asarray(x).dtype} input: "
                     "cast back to the input's dtype.")
    if decoded.shape != np.shape(x):
        raise _Fault(f"decode returns shape {decoded.shape} for an input of shape {np.shape(x)}: "
                     "restore the input's shape.")


def _independent_bits(encoded):
    return sum(np.asarray(v).size * np.asarray(v).dtype.itemsize * 8 for v in encoded.values())


def _check_bits(encoded, counted):
    independent = _independent_bits(encoded)
    if independent != counted:
        raise _Fault(f"helpers.sizing.tensor_bits counts {counted} bits but the encoded arrays hold "
                     f"{independent}: some encoded value is not what it seems.")


# ------------------------------------------------------- kind-specific --

def _rng():
    return np.random.default_rng(20240605)


def _update_like(shape, scale=1e-3, rng=None):
    """Heavy-tailed values like a model update (Student t with 3 degrees of freedom)."""
    rng = rng or _rng()
    return (scale * rng.standard_t(3, size=shape)).astype(np.float32)


def _check_warmup(runner, stage, label):
    x = _update_like((40, 50), scale=1.0)
    decoded, _, _, bits = runner.roundtrip(x)
    error = np.abs(decoded - x)
    bound = np.abs(x) * 2.0**-10 + 1e-7
    if np.any(error > bound):
        i = int(np.argmax(error - bound))
        raise _Fault(f"value {x.flat[i]:.6g} decodes to {decoded.flat[i]:.6g}, further than float16 "
                     "rounding allows.")
    if bits >= 32 * x.size:
        raise _Fault(f"the encoding uses {bits / x.size:.1f} bits per value, not fewer than float32's 32.")
    return f"keeps shape and dtype, error within float16 rounding, {bits / x.size:.0f} bits/value"


def _check_nonuniform(runner, stage, label):
    bits = _CTOR["nonuniform"]["bits"]
    x = _update_like((40, 500))
    decoded, _, _, _ = runner.roundtrip(x)
    levels = np.unique(decoded)
    if levels.size > 2**bits:
        raise _Fault(f"decoded values take {levels.size} different values; with bits={bits} there "
                     f"may be at most {2**bits} levels.")
    error = np.abs(decoded - x)
    nearest = np.min(np.abs(x.reshape(-1, 1) - levels.reshape(1, -1)), axis=1).reshape(x.shape)
    slack = 1e-6 * np.max(np.abs(x))
    if np.any(error > nearest + slack):
        i = int(np.argmax(error - nearest))
        better = levels[np.argmin(np.abs(levels - x.flat[i]))]
        raise _Fault(f"x={x.flat[i]:.4g} decodes to {decoded.flat[i]:.4g} but level {better:.4g} "
                     "is nearer: encode must pick the nearest level.")
    mse = float(np.mean((decoded - x) ** 2))
    uniform = _uniform_mse(x, bits)
    if not mse < uniform:
        raise _Fault(f"MSE {mse:.3g} is not lower than uniform quantization's {uniform:.3g} at "
                     f"{bits} bits: place the levels where the values are (spaced by the cube root of "
                     "their density; see hint('a')).")
    return (f"keeps shape and dtype, rounds to the nearest of at most {2**bits} levels, "
            f"MSE {mse:.3g} < {uniform:.3g} uniform at {bits} bits")


def _uniform_mse(x, bits):
    """MSE of tfmot's uniform quantization (deterministic rounding) of ``x`` at ``bits``."""
    uniform = te.stages.UniformQuantizationEncodingStage(bits, stochastic=False)

    @tf.function(autograph=False)
    def roundtrip(v):
        encode_params, decode_params = uniform.get_params()
        return uniform.decode(uniform.encode(v, encode_params), decode_params)

    return float(np.mean((roundtrip(tf.constant(x)).numpy() - x) ** 2))


def _symbol_streams():
    rng = _rng()
    return collections.OrderedDict([
        ("random", rng.integers(0, 256, 5000)),
        ("skewed", np.minimum(rng.geometric(0.25, 20000) - 1, 255)),
        ("all equal", np.full(1000, 17)),
        ("a single element", np.array([200])),
        ("two symbols", rng.choice([3, 250], size=3000, p=[0.9, 0.1])),
        ("2-D", rng.integers(0, 256, (30, 40))),
    ])


def _entropy_bits(symbols):
    counts = np.bincount(np.ravel(symbols).astype(np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _check_lossless(runner, stage, label):
    skewed = None
    for name, symbols in _symbol_streams().items():
        x = symbols.astype(np.float32)
        decoded, _, _, bits = runner.roundtrip(x)
        wrong = int(np.count_nonzero(decoded != x))
        if wrong:
            raise _Fault(f"decode(encode(x)) differs from x in {wrong} of {x.size} symbols on a "
                         f"{name} stream: a lossless stage must return exactly its input.")
        if name == "skewed":
            skewed = (x.size, bits, _entropy_bits(symbols))
    n, bits, entropy = skewed
    per_value = bits / n
    if per_value >= 8:
        raise _Fault(f"on a skewed stream (entropy {entropy:.2f} bits) the encoding uses "
                     f"{per_value:.2f} bits per value, not fewer than 8-bit packing: use short codes "
                     "for frequent symbols.")
    if bits < n * entropy - 256 * np.log2(n):
        raise _Fault(f"the encoding uses {per_value:.2f} bits per value, below the entropy "
                     f"{entropy:.2f} of the symbols: information must be travelling uncounted "
                     "(in params or on self).")
    return (f"is exact on random, skewed and degenerate streams, {per_value:.2f} bits/value on a skewed "
            f"stream of entropy {entropy:.2f}")


def _aggregate(updates_list, modes):
    combined = {}
    for key, mode in modes.items():
        values = [np.asarray(u[key]) for u in updates_list]
        if mode == te.core.StateAggregationMode.SUM:
            combined[key] = np.sum(values, axis=0).astype(values[0].dtype)
        elif mode == te.core.StateAggregationMode.MIN:
            combined[key] = np.min(values, axis=0)
        else:
            combined[key] = np.max(values, axis=0)
    return combined


def _check_adaptive(runner, stage, label):
    bits = _CTOR["adaptive"]["bits"]
    modes = stage.state_update_aggregation_modes
    initial = runner.initial_state
    changed = False
    for scale in (1e-3, 10.0):
        rng = _rng()
        first = _update_like((40, 50), scale, rng)
        second = -0.5 * first[::-1]  # a second client, with a smaller largest |x|
        state = initial
        for _ in range(2):  # two rounds of two clients
            _, updates_1, _, _ = runner.encode(first, state)
            _, updates_2, _, _ = runner.encode(second, state)
            if set(updates_1) != set(modes):
                raise _Fault(f"encode returns state updates {sorted(updates_1)} but "
                             f"state_update_aggregation_modes has {sorted(modes)}: the keys must match.")
            state = runner.update_state(state, _aggregate([updates_1, updates_2], modes))
        changed |= any(not np.array_equal(np.asarray(state[k]), np.asarray(initial[k])) for k in initial)
        decoded, _, _, _ = runner.roundtrip(first, state)
        error = float(np.max(np.abs(decoded - first)))
        bound = 4 * float(np.max(np.abs(first))) / (2**bits - 1) * (1 + 1e-5)
        if error > bound:
            raise _Fault(f"after two rounds on values of scale {scale:g} the largest error is "
                         f"{error:.3g}, more than 4·max|x|/(2**bits - 1) = {bound:.3g}: update_state "
                         "should move the parameter (e.g. the range) to what encode observed.")
    if not changed:
        raise _Fault("update_state returns the initial state after two rounds: the parameters "
                     "never adapt.")
    return (f"keeps shape and dtype, adapts its state to values of scale 0.001 and 10 "
            f"(error within 4·max|x|/{2**bits - 1} after two rounds)")


_KIND_CHECKS = {"warmup": _check_warmup, "nonuniform": _check_nonuniform,
                "lossless": _check_lossless, "adaptive": _check_adaptive}


def _check_commutes(runner, stage, label, kind):
    """A stage claiming ``commutes_with_sum`` must decode a sum of encodings to the sum of decodings."""
    if not stage.commutes_with_sum:
        return
    rng = _rng()
    if kind == "lossless":
        x1, x2 = (rng.integers(0, 256, 2000).astype(np.float32) for _ in range(2))
    else:
        x1, x2 = (_update_like((40, 50), 1.0, rng) for _ in range(2))
    if runner.adaptive:  # a state whose parameters fit the data
        state = runner.initial_state
    else:
        state = None
    e1, _, _, specs = runner.encode(x1, state)
    e2, _, _, _ = runner.encode(x2, state)
    for key in e1:
        if np.shape(e1[key]) != np.shape(e2[key]):
            raise _Fault(f"{label} claims commutes_with_sum=True, but encoded tensor {key!r} has a "
                         "data-dependent shape, so two encodings cannot be added: return False.")
    summed = {k: (np.asarray(e1[k]) + np.asarray(e2[k])).astype(np.asarray(e1[k]).dtype) for k in e1}
    separate = runner.decode(e1, specs, x1.shape, state) + runner.decode(e2, specs, x2.shape, state)
    try:
        together = runner.decode(summed, specs, x1.shape, state, num_summands=2)
    except _Fault as fault:
        raise _Fault(f"{label} claims commutes_with_sum=True, but decoding the sum of two encodings fails "
                     f"({str(fault).rstrip('.')}): return False.") from None
    if np.shape(together) != np.shape(separate):
        raise _Fault(f"{label} claims commutes_with_sum=True, but decoding a sum of two encodings "
                     f"gives shape {np.shape(together)}: return False, or make decode linear.")
    gap = float(np.max(np.abs(together - separate)))
    if gap > 1e-4 * (1 + float(np.max(np.abs(separate)))):
        raise _Fault(f"{label} claims commutes_with_sum=True, but decode(encode(x1) + encode(x2), "
                     f"num_summands=2) differs from decode(encode(x1)) + decode(encode(x2)) by {gap:.3g}: "
                     "return False, or make the encoding linear in x with parameters shared by all clients.")


def _course_input(kind):
    return _update_like((120, 100), 1e-3)


def _check_course_encoder(cls, kind, label):
    """Run the stage inside the course's encoder through a GatherEncoder, as the mean process does."""
    try:
        encoder = _FACTORY[kind](cls)
    except KeyError as error:
        raise _Fault(f"the course's encoder cannot put a stage after {label} ({error}): list the key "
                     "of the values to pack in compressible_tensors_keys.") from None
    except Exception as error:
        raise _Fault(f"composing {label} into the course's encoder raised {_describe_error(error)}.") from None
    return _check_encoder(encoder, kind, f"the course's encoder with {label}")


def _check_encoder_factory(factory, kind):
    try:
        encoder = factory()
    except NotImplementedError:
        raise _NotAttempted("the encoder factory still raises NotImplementedError.") from None
    if encoder is None:
        raise _NotAttempted("the encoder factory returns None.")
    if not isinstance(encoder, te.core.Encoder):
        raise _Fault(f"the factory returned {type(encoder).__name__}; it must return a te.core.Encoder "
                     "(build one with te.core.EncoderComposer(...).make()).")
    bits_per_value = _check_encoder(encoder, kind, "the encoder")
    return f"the encoder keeps shape and dtype through a GatherEncoder; bits counted: {bits_per_value:.2f} bits/value."


def _check_encoder(encoder, kind, what):
    x = _course_input(kind)
    spec = tf.TensorSpec(x.shape, tf.float32)
    try:
        gather = te.encoders.as_gather_encoder(encoder, spec)
    except _Fault:
        raise
    except Exception as error:
        raise _Fault(f"{what} fails when wrapped as a GatherEncoder: {_describe_error(error)}.") from None
    state = gather.initial_state()

    @tf.function(autograph=False)
    def encode(value):
        encode_params, before_params, _ = gather.get_params(state)
        encoded, updates = gather.encode(value, encode_params)
        return encoded, updates, sizing.tensor_bits((encoded, updates))

    try:
        concrete = encode.get_concrete_function(spec)
        encoded, updates, counted = _numpy(concrete(tf.constant(x)))
    except Exception as error:
        raise _Fault(f"{what} fails to encode: {_describe_error(error)}.") from None
    specs = _specs(concrete.structured_outputs[0])

    @tf.function(autograph=False, input_signature=[specs])
    def decode(encoded):
        _, before_params, after_params = gather.get_params(state)
        part = gather.decode_before_sum(encoded, before_params)
        return gather.decode_after_sum(part, after_params, 1)

    try:
        decoded = decode(encoded).numpy()
    except Exception as error:
        raise _Fault(f"{what} fails to decode: {_describe_error(error)}.") from None
    _check_shape_dtype(decoded, x)
    independent = _independent_bits(encoded) + sum(np.asarray(u).size * np.asarray(u).dtype.itemsize * 8
                                                   for u in tf.nest.flatten(updates))
    if int(counted) != independent:
        raise _Fault(f"helpers.sizing.tensor_bits counts {int(counted)} bits for {what} but its "
                     f"encoded arrays hold {independent}.")
    if not counted < 32 * x.size:
        raise _Fault(f"{what} sends {int(counted) / x.size:.2f} bits per value, not fewer than "
                     "float32's 32: make sure the values are packed.")
    return int(counted) / x.size


# ---------------------------------------------------------------- figures --

def client_update(dataset, epochs=1, learning_rate=0.02, seed=0):
    """A real client update of the FedAvg CNN: weights after minus before local SGD.

    Builds the CNN (:func:`helpers.model.create_original_fedavg_cnn_model`)
    with seed ``seed``, trains it with Keras SGD (the FedAvg client's learning
    rate 0.02) for ``epochs`` passes over ``dataset`` (batches of ``(x, y)``,
    e.g. one client's preprocessed data) and returns an ``OrderedDict`` from
    variable name to the update (numpy float32).
    """
    from helpers import model as course_model

    tf.keras.utils.set_random_seed(seed)
    keras_model = course_model.compile_for_keras(course_model.create_original_fedavg_cnn_model(),
                                                 learning_rate)
    before = [v.numpy().copy() for v in keras_model.trainable_variables]
    keras_model.fit(dataset, epochs=epochs, verbose=0)
    return collections.OrderedDict(
        (v.name, v.numpy() - b) for v, b in zip(keras_model.trainable_variables, before))


def dense_update(update):
    """The update of the 3,136 x 512 dense kernel (1,605,632 values) from :func:`client_update`."""
    for name, value in update.items():
        if value.shape == (3136, 512):
            return value
    raise ValueError("no (3136, 512) dense kernel in this update.")


def _stage_roundtrip(stage, x):
    @tf.function(autograph=False)
    def roundtrip(v):
        encode_params, decode_params = stage.get_params()
        encoded = stage.encode(v, encode_params)
        return stage.decode(encoded, decode_params, shape=tf.shape(v)), sizing.tensor_bits(encoded)

    decoded, bits = roundtrip(tf.constant(x))
    return decoded.numpy(), int(bits)


def mse_figures(x, bits=8, stage_cls=stages.NonUniformQuantizationEncodingStage):
    """MSE of ``stage_cls(bits)`` vs tfmot's uniform quantization of ``x`` at the same ``bits``.

    Returns a dict: ``non_uniform`` (MSE), ``uniform`` (deterministic rounding),
    ``uniform_stochastic`` (tfmot's default), ``ratio`` = uniform / non_uniform
    and ``levels`` (distinct decoded values).
    """
    x = np.asarray(x, np.float32).reshape(-1)
    decoded, _ = _stage_roundtrip(stage_cls(bits=bits), x)
    stochastic, _ = _stage_roundtrip(te.stages.UniformQuantizationEncodingStage(bits), x)
    non_uniform = float(np.mean((decoded - x) ** 2))
    uniform = _uniform_mse(x, bits)
    return dict(bits=bits, non_uniform=non_uniform, uniform=uniform,
                uniform_stochastic=float(np.mean((stochastic - x) ** 2)),
                ratio=uniform / non_uniform if non_uniform else float("inf"),
                levels=int(np.unique(decoded).size))


def huffman_figures(x, bits=8, stage_cls=stages.HuffmanEncodingStage):
    """Bits per value of Huffman coding of ``x``'s ``bits``-bit uniform quantization.

    Quantizes ``x`` with tfmot's ``UniformQuantizationEncodingStage(bits)``
    (deterministic rounding, so the symbols are reproducible), codes the
    symbols with ``stage_cls``, decodes and checks exactness. Returns a dict:
    ``bits_per_value`` (all encoded tensors counted), ``stream_bits_per_value``
    (the code words alone), ``packed_bits_per_value`` (tfmot's bitpacking of
    the same symbols, 9.14 for 8 bits), ``entropy`` (empirical entropy of the
    symbols, bits) and ``exact``.
    """
    x = np.asarray(x, np.float32).reshape(-1)
    quantizer = te.stages.UniformQuantizationEncodingStage(bits, stochastic=False)

    @tf.function(autograph=False)
    def quantize(v):
        return quantizer.encode(v, quantizer.get_params()[0])[quantizer.ENCODED_VALUES_KEY]

    symbols = quantize(tf.constant(x)).numpy()
    stage = stage_cls(input_bits=bits)

    @tf.function(autograph=False)
    def encode(v):
        return stage.encode(v, stage.get_params()[0])

    encoded = _numpy(encode(tf.constant(symbols)))

    @tf.function(autograph=False)
    def decode(e):
        return stage.decode(e, stage.get_params()[1], shape=tf.constant([x.size]))

    decoded = decode(encoded).numpy()
    packer = te.stages.BitpackingEncodingStage(bits)

    @tf.function(autograph=False)
    def pack(v):
        return sizing.tensor_bits(packer.encode(v, packer.get_params()[0]))

    total = _independent_bits(encoded)
    stream = next((np.asarray(v).size * 32 for k, v in encoded.items() if "word" in k), total)
    return dict(bits=bits, values=int(x.size), bits_per_value=total / x.size,
                stream_bits_per_value=stream / x.size,
                packed_bits_per_value=int(pack(tf.constant(symbols))) / x.size,
                entropy=_entropy_bits(symbols), exact=bool(np.array_equal(decoded, symbols)))
