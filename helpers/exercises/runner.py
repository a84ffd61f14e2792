"""Runs a student's encoding stage as TFF does: encode in one graph, decode in another.

:class:`Runner` traces ``encode`` and ``decode`` as separate ``tf.function``
graphs, passes numpy values between them (so ``decode`` can use only what was
sent), and counts the bits of what ``encode`` returns. Whatever goes wrong
becomes a :class:`Fault`: one sentence saying what is wrong. Also the
model-update-like inputs the checks feed it (:func:`update_like`).
"""
import os
import re
import traceback

import numpy as np
import tensorflow as tf

from helpers import sizing
from helpers.workers import tff_compat

PYTHON_OPS = ("EagerPyFunc", "PyFunc", "PyFuncStateless")  # tf.py_function, tf.numpy_function
# The stateful ops decode may use: control flow, assertions and logging; random ops are allowed by their prefix.
DECODE_STATEFUL = ("While", "If", "Case", "StatefulPartitionedCall", "Assert", "PrintV2")


class Fault(Exception):
    """A fault in the student's stage, described in one sentence."""


class Runner:
    """Encodes in one graph and decodes in another, as TFF does, with numpy values in between."""

    def __init__(self, stage, adaptive, dynamic=False):
        self.stage = stage
        self.adaptive = adaptive
        self.dynamic = dynamic  # unknown static shapes: one trace serves inputs of any length
        self._encoders = {}
        self._decoders = {}
        self.initial_state = None
        if adaptive:
            self.initial_state = to_numpy(tf.function(stage.initial_state, autograph=False)())
            if not isinstance(self.initial_state, dict) or not self.initial_state:
                raise Fault(f"initial_state must return a non-empty dict of tensors, got "
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
        return encoded, updates, int(bits), specs_of(function.structured_outputs[0])

    def _trace_encode(self, x, state):
        stage, adaptive = self.stage, self.adaptive

        def encode(x, state=None):
            params = stage.get_params(state)[0] if adaptive else stage.get_params()[0]
            output = stage.encode(x, params)
            if adaptive:
                if not (isinstance(output, tuple) and len(output) == 2):
                    raise Fault("an adaptive stage's encode must return a tuple "
                                "(encoded_tensors, state_update_tensors).")
                encoded, updates = output
            else:
                encoded, updates = output, {}
            if not isinstance(encoded, dict):
                raise Fault(f"encode must return a dict of tensors, got {type(encoded).__name__}.")
            for name, value in list(encoded.items()) + list(dict(updates or {}).items()):
                if not tf.is_tensor(value):
                    raise Fault(f"encode returns a {type(value).__name__} under {name!r}, not a tensor: "
                                "the encoders strip Python values, so it would travel uncounted; "
                                "return tf tensors only.")
            return dict(encoded), dict(updates or {}), sizing.tensor_bits(dict(encoded))

        x_spec = tf.TensorSpec([None] * x.ndim if self.dynamic else x.shape, tf.as_dtype(x.dtype))
        if adaptive:
            function = tf.function(encode, input_signature=[x_spec, self._state_spec(state)], autograph=False)
        else:
            function = tf.function(lambda x: encode(x), input_signature=[x_spec], autograph=False)
        try:
            concrete = function.get_concrete_function()
        except Fault:
            raise
        except NotImplementedError as stub:
            raise stub_fault(stub, "encode (or get_params)") from None
        except Exception as error:
            raise Fault(f"encode raised {describe_error(error)}.") from None
        check_sends_only_tensors(concrete, "encode")
        return concrete

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
            except NotImplementedError as stub:
                raise stub_fault(stub, "decode") from None
            except Exception as error:
                raise Fault(f"decode raised {describe_error(error)} when given only the encoded "
                            "tensors in a separate graph (decode may use its arguments only, "
                            "not values kept on self during encode).") from None
            check_sends_only_tensors(self._decoders[key], "decode", decode=True)
        shape_value = np.array(shape, np.int32)
        args = (dict(encoded), shape_value, state) if adaptive else (dict(encoded), shape_value)
        return _run(self._decoders[key], args, "decode")

    def roundtrip(self, x, state=None):
        encoded, updates, bits, specs = self.encode(x, state)
        decoded = self.decode(encoded, specs, np.shape(x), state)
        check_shape_dtype(decoded, x)
        _check_bits(encoded, bits)
        return decoded, encoded, updates, bits

    def check_same_in_a_session(self, x, encoded):
        """Raises ``Fault`` unless encode in a TF1 graph and session (as TFF runs it) gives ``encoded``.

        For stages whose output is exact (integer ops), so that the two must
        agree to the bit; ``encoded`` is what :meth:`encode` (a
        ``tf.function``) returned for ``x``.
        """
        graph = tf.Graph()
        with graph.as_default():
            output = self.stage.encode(tf.constant(x), self.stage.get_params()[0])
            with tf.compat.v1.Session(graph=graph) as session:
                in_session = session.run(dict(output))
        if any(not np.array_equal(in_session[k], encoded[k]) for k in encoded):
            raise Fault("encode gives other tensors in a TF1 graph, as TFF runs it, than in a tf.function: "
                        "`==` on graph tensors compares the objects, not their values; use tf.equal.")

    def update_state(self, state, updates):
        function = tf.function(self.stage.update_state, autograph=False)
        new_state = to_numpy(_run(function, (state, updates), "update_state", raw=True))
        if not isinstance(new_state, dict) or set(new_state) != set(state):
            raise Fault(f"update_state must return a dict with the same keys as initial_state "
                        f"({sorted(state)}), got {new_state!r}.")
        for k in state:
            if np.shape(new_state[k]) != np.shape(state[k]) or \
                    np.asarray(new_state[k]).dtype != np.asarray(state[k]).dtype:
                raise Fault(f"update_state changes the shape or dtype of state[{k!r}]: keep them "
                            "as in initial_state.")
        return new_state


def _graph_nodes(concrete):
    """The nodes of a concrete function's graph and of every function it calls (loop bodies, branches)."""
    graph_def = concrete.graph.as_graph_def()
    return list(graph_def.node) + [node for function in graph_def.library.function for node in function.node_def]


def _stateful(op_type):
    """True if ``op_type`` is a registered op that keeps or reads state (False for a call of a graph function)."""
    return tff_compat.op_is_stateful(op_type)


def check_sends_only_tensors(concrete, what, decode=False):
    """Raises ``Fault`` if the traced ``concrete`` function can pass values beside its inputs and outputs.

    Never: Python calls (``tf.py_function``, ``tf.numpy_function``) or files
    written. For ``decode``: no tensor captured from outside its arguments and
    no stateful op but control flow, assertions, logging and random numbers, so
    that it can use only what encode sent. ``what``: how the fault names it.
    """
    if tf.config.functions_run_eagerly():
        raise Fault(f"{what} ran eagerly (tf.config.run_functions_eagerly(True)): TFF runs stages as graphs; "
                    "remove that call.")
    for node in _graph_nodes(concrete):
        if node.op in PYTHON_OPS:
            raise Fault(f"{what} calls Python (tf.py_function or tf.numpy_function): TFF runs the stage as a "
                        "serialized TensorFlow graph, without Python; use TensorFlow ops only.")
        if node.op == "WriteFile" or node.op == "PrintV2" and node.attr["output_stream"].s.startswith(b"file://"):
            raise Fault(f"{what} writes to a file ({node.op}): a stage may send only its encoded tensors.")
        if decode and _stateful(node.op) and node.op not in DECODE_STATEFUL and "Random" not in node.op:
            raise Fault(f"{what} uses {node.op}, which keeps or reads state beside the encoded tensors: decode "
                        "may use only what encode sent.")
    if decode and concrete.captured_inputs:
        raise Fault(f"{what} reads {len(concrete.captured_inputs)} tensor(s) from outside its arguments (a "
                    "variable, or a value kept on self): decode may use only what encode sent.")


def _run(function, args, what, raw=False):
    """``function(*args)`` as numpy (unless ``raw``); a failure becomes a ``Fault`` naming ``what``."""
    try:
        result = function(*args)
    except Fault:
        raise
    except NotImplementedError as stub:
        raise stub_fault(stub, what) from None
    except Exception as error:
        raise Fault(f"{what} raised {describe_error(error)}.") from None
    return result if raw else to_numpy(result)


def stub_name(error):
    """Name of the function that raised ``error``: the innermost frame outside Python and its packages."""
    library = (os.path.dirname(os.__file__), "site-packages")
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(library[0])
              and library[1] not in f.filename]
    return frames[-1].name if frames else None


def stub_fault(error, member, label=None):
    """A :class:`Fault` for a ``NotImplementedError`` from ``member``: names the stub it came from."""
    name = stub_name(error)
    where = f"{label}.{member}" if label else member
    if name is None or name == "<lambda>" or name in member.replace("(", " ").split():
        return Fault(f"{where} still raises NotImplementedError: implement it.")
    return Fault(f"{name} (called by {where}) still raises NotImplementedError: implement it.")


def specs_of(structure):
    """``tf.TensorSpec`` of every tensor in ``structure``."""
    return tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), structure)


def to_numpy(structure):
    """``structure`` with every tensor replaced by its numpy value."""
    return tf.nest.map_structure(lambda t: t.numpy() if tf.is_tensor(t) else t, structure)


def describe_error(error):
    """``"TypeError: <first line of the message>"``, without TensorFlow's graph noise."""
    text = str(error).strip().splitlines()
    first = next((line for line in text if line.strip() and not line.startswith("Graph execution")), "")
    first = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", first).strip()
    if len(first) > 160:
        first = first[:157] + "..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def check_shape_dtype(decoded, x):
    """Raises ``Fault`` unless ``decoded`` has ``x``'s shape and dtype."""
    decoded = np.asarray(decoded)
    if decoded.dtype != np.asarray(x).dtype:
        raise Fault(f"decode returns {decoded.dtype} values for {np.asarray(x).dtype} input: "
                    "cast back to the input's dtype.")
    if decoded.shape != np.shape(x):
        raise Fault(f"decode returns shape {decoded.shape} for an input of shape {np.shape(x)}: "
                    "restore the input's shape.")


def independent_bits(encoded):
    """Bits of the arrays in the dict ``encoded``, counted from their own sizes and dtypes."""
    return sum(np.asarray(v).size * np.asarray(v).dtype.itemsize * 8 for v in encoded.values())


def _check_bits(encoded, counted):
    """Raises ``Fault`` unless ``counted`` (tensor_bits) equals :func:`independent_bits`."""
    independent = independent_bits(encoded)
    if independent != counted:
        raise Fault(f"helpers.sizing.tensor_bits counts {counted} bits but the encoded arrays hold "
                    f"{independent}: some encoded value is not what it seems.")



def seeded_rng():
    """The checks' random generator, the same on every run."""
    return np.random.default_rng(20240605)


def update_like(shape, scale=1e-3, rng=None):
    """Heavy-tailed values like a model update (Student t with 3 degrees of freedom)."""
    rng = rng or seeded_rng()
    return (scale * rng.standard_t(3, size=shape)).astype(np.float32)
