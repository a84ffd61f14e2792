"""Where the extra time of the costliest methods goes (``make bench-rounds``): each part timed alone, at full size.

``make bench-rounds`` (:mod:`helpers.frontier.round_cost`) finds three methods above 1.5 times
identity's round: FetchSGD and the two error-feedback rows. This module times, in TFF's own
runtime on the CNN's 1,663,370 weights, the parts those methods add to a FedAvg round, each
beside a control that does the same with nothing added:

- FetchSGD: one client's count sketch of its update (against passing the same update in and
  summing it), and the server's step on the sketches (median estimate, top-k, zeroed cells);
- error feedback: the sampled clients' residuals moved into TFF and back out (a round's
  ``next`` takes them at CLIENTS and returns them, TFF's stateful-clients pattern), their
  ``.npy`` files written and read, and one client's ``C(v)`` for each compressor.

:func:`time_parts` returns one entry per part (median, min and max of its repeats, in seconds);
:func:`save_parts` / :func:`load_parts` keep them in ``results/round_parts.json``.
"""
import collections
import pathlib
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from helpers import config
from helpers.frontier import error_feedback, fetchsgd
from helpers.runs import files

RESULTS_NAME = "round_parts"
FORMAT = 1


def seconds_of(call, repeats):
    """``[seconds]`` of ``repeats`` calls of ``call()`` after one untimed call (which compiles it)."""
    call()
    timed = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timed.append(time.perf_counter() - started)
    return timed


def summary(seconds):
    """``{seconds, median, min, max}`` of a list of timings in seconds."""
    return dict(seconds=list(seconds), median=float(np.median(seconds)), min=min(seconds), max=max(seconds))


def _flat_type(d):
    return tff.TensorType(np.float32, [d])


def fetchsgd_parts(d):
    """``{part: call}``: a client's sketch of a ``d``-value update, its control, and the server's step."""
    stage = fetchsgd.CountSketchEncodingStage()
    factory = fetchsgd.FetchSGDFactory(stage, learning_rate=1.0, momentum=0.9)
    k = int(np.ceil(fetchsgd.DEFAULT_FRACTION * d))
    update = np.random.default_rng(0).normal(scale=1e-3, size=d).astype(np.float32)

    @tff.tensorflow.computation(_flat_type(d))
    def sketch(value):
        return stage.encode(value, collections.OrderedDict())[stage.SKETCH_KEY]

    @tff.tensorflow.computation(_flat_type(d))
    def pass_through(value):
        return tf.reduce_sum(value)

    table = np.asarray(sketch(update))
    sketch_type = tff.TensorType(np.float32, table.shape)

    @tff.tensorflow.computation(sketch_type, sketch_type)
    def server_step(momentum, error):
        sketches = collections.OrderedDict(momentum=momentum, error=error, round=tf.constant(1))
        new, indices, values = factory.server_step(sketches, momentum, d, k)
        return new["error"], indices, values

    return {"fetchsgd: a client's count sketch": lambda: sketch(update),
            "control: a client's update passed in and summed": lambda: pass_through(update),
            "fetchsgd: the server's step": lambda: server_step(table, table)}


def residual_parts(specs, clients, folder):
    """``{part: call}``: ``clients`` residuals shaped as ``specs`` moved in and out of TFF, and their files."""
    residual_type = tff.StructWithPythonType([tff.TensorType(np.float32, s.shape) for s in specs], list)
    residuals = [[np.zeros(s.shape, np.float32) for s in specs] for _ in range(clients)]

    @tff.tensorflow.computation(residual_type)
    def plus_one(residual):
        return [r + 1 for r in residual]

    @tff.federated_computation(tff.FederatedType(residual_type, tff.CLIENTS))
    def in_and_out(values):
        return tff.federated_map(plus_one, values)

    def files_round():
        for i, residual in enumerate(residuals):
            path = pathlib.Path(folder) / f"{i}.npy"
            np.save(path, np.concatenate([r.ravel() for r in residual]))
            np.load(path)

    return {f"error feedback: {clients} residuals into TFF and back out": lambda: in_and_out(residuals),
            f"error feedback: {clients} residual files written and read": files_round}


def compress_parts(specs, aggregations):
    """``{part: call}``: one client's error-feedback step (``v = u + e``, then ``v - C(v)``) per compressor."""
    update_type = tff.StructWithPythonType([tff.TensorType(np.float32, s.shape) for s in specs], list)
    update = [np.random.default_rng(i).normal(scale=1e-3, size=s.shape).astype(np.float32)
              for i, s in enumerate(specs)]

    @tff.tensorflow.computation(update_type, update_type)
    def no_compressor(update, residual):  # the step with C(v) = v: what is left is moving the values
        corrected = [u + e for u, e in zip(update, residual)]
        return corrected, [v - v for v in corrected]

    parts = {"control: a client's feedback step without a compressor": lambda: no_compressor(update, update)}
    for aggregation in aggregations:
        step = error_feedback.feedback_step(error_feedback.encoders_for("identity", aggregation).aggregation,
                                            update_type)
        parts[f"error feedback: a client's feedback step, {aggregation}"] = (lambda step=step: step(update, update))
    return parts


def time_parts(model_fn, clients, repeats):
    """``[entry]``: every part of :func:`fetchsgd_parts`, :func:`residual_parts` and :func:`compress_parts`.

    ``model_fn`` builds the course's model (its trainable weights set the shapes); ``clients``: the
    clients a round samples; ``repeats``: timed calls of each part. An entry is ``{part, ...}`` of
    :func:`summary`, in seconds.
    """
    specs = [tf.TensorSpec(v.shape, v.dtype) for v in model_fn().trainable_variables]
    d = sum(s.shape.num_elements() for s in specs)
    entries = []
    with tempfile.TemporaryDirectory(prefix="round-parts-") as folder:
        parts = dict(fetchsgd_parts(d), **residual_parts(specs, clients, folder),
                     **compress_parts(specs, error_feedback.COMPRESSORS[1:]))
        for name, call in parts.items():
            entries.append(dict(part=name, **summary(seconds_of(call, repeats))))
    return entries


def save_parts(entries, provenance, path):
    """Write ``results/round_parts.json`` (``entries`` with the commit, date and machine) atomically; its path."""
    return files.write_json(path, dict(format=FORMAT, about=__doc__.splitlines()[0], **provenance, parts=entries))


def load_parts(path):
    """The parts file at ``path``; ``FileNotFoundError`` or ``ValueError`` saying what to do otherwise."""
    results = files.read_json(path, f"no round-parts file at {path}: run `make bench-rounds` to make it.",
                              "a round-parts file", "; restore it with git checkout, or run `make bench-rounds`.")
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise ValueError(f"{path} is not a round-parts file of format {FORMAT}; restore it with git checkout, or "
                         "run `make bench-rounds` again.")
    return results


def part_of(results, name):
    """The entry of part ``name`` in ``results``; ``KeyError`` naming the parts it holds."""
    entry = next((e for e in results["parts"] if e["part"] == name), None)
    if entry is None:
        raise KeyError(f"no part {name!r} in the round-parts file; it holds {[e['part'] for e in results['parts']]}.")
    return entry


def default_path():
    """``results/round_parts.json`` at full size; under ``outputs/`` in fast mode."""
    base = config.output_dir("results") if config.fast_mode() else config.repo_root() / "results"
    return base / f"{RESULTS_NAME}.json"


__all__ = ["seconds_of", "summary", "fetchsgd_parts", "residual_parts", "compress_parts", "time_parts",
           "save_parts", "load_parts", "part_of", "default_path", "RESULTS_NAME", "FORMAT"]
