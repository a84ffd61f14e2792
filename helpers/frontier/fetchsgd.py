"""FetchSGD (Rothchild et al., "FetchSGD: Communication-Efficient Federated Learning with Sketching", ICML 2020).

Server-side error feedback for clients that keep no state. Each client sends a
*count sketch* of its model update: a ``rows x columns`` table of float32 cells,
far smaller than the update's ``d`` values. Every client hashes with the same
shared seed, so a sketch is linear in the update: the server sums (averages)
the clients' sketches, and the sum is the sketch of the summed update. The
server keeps momentum and the error accumulation *in sketch space*, in its own
state across rounds, and each round applies only the ``k`` coordinates that
the accumulated error sketch says are largest.

- :class:`CountSketchEncodingStage`: a tfmot encoding stage (TF graph ops only): a
  tensor of ``d`` values -> its count sketch. ``decode`` is the linear estimate
  (the mean over rows of ``sign * cell``), so the stage commutes with sum;
  :meth:`~CountSketchEncodingStage.median_estimate` is the count sketch's usual
  (non-linear) estimate, the median over rows, which FetchSGD's server uses.
- :class:`FetchSGDFactory`: a ``tff.aggregators.WeightedAggregationFactory``. The
  clients sketch their updates; the course's measured mean
  (:func:`helpers.compression.build_encoded_mean_factory`, identity encoders on
  the sketch) averages the sketches and counts the bits the clients sent; the
  SERVER-placed state holds the momentum sketch ``S_u``, the error sketch ``S_e``
  and the round number. Each round, with ``S`` the clients' mean sketch::

      S_u <- rho * S_u + S              (momentum, in sketch space)
      S_e <- S_e + lr * S_u             (error accumulation, in sketch space)
      Delta <- top-k of median_estimate(S_e)
      S_u, S_e <- 0 in every cell that a coordinate of Delta hashes to

  and ``Delta`` is the aggregate (a sparse update with ``k`` non-zeros). The
  cells are zeroed as the authors' code does (their "virtual error" branch;
  subtracting the sketch of ``Delta`` instead made their model diverge). The
  paper's optional second round of communication (asking the clients for the
  exact values of the ``k`` chosen coordinates) is *not* used: ``Delta``'s
  values are the sketch's estimates.
- :func:`build_fetchsgd`: ``tff.learning.algorithms.build_weighted_fed_avg`` with
  this aggregator, the course's measured identity broadcast, and a server
  optimizer that only applies ``Delta`` (SGD at learning rate 1, no momentum):
  the momentum and the learning rate of the run's settings live in the sketch
  state instead.

This is a method of its own, not a repair of client-side top-k: a client
sends a sketch of its *whole* update and keeps nothing; what a round does not
apply stays in the server's error sketch. Nothing a client dropped is ever
recovered, because a client drops nothing (and top-k's clients, which do drop,
never tell the server what). What it gives up is precision: the sketch's
estimates mix every coordinate that shares a cell.
"""
import collections
import math

import numpy as np

import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import compression, runs
from helpers.workers import runtime

__all__ = ["CountSketchEncodingStage", "FetchSGDFactory", "build_fetchsgd", "uplink_bits_per_client",
           "DEFAULT_ROWS", "DEFAULT_COLUMNS", "DEFAULT_FRACTION", "SKETCH_SEED"]

# Defaults for the course's CNN (d = 1,663,370 parameters); the module's README-style reasoning is in
# build_fetchsgd's docstring.
DEFAULT_ROWS = 5
DEFAULT_COLUMNS = 33_268  # 5 x 33,268 cells = 166,340 float32: 1/10.0 of the update's 1,663,370 values
DEFAULT_FRACTION = 0.002  # k = ceil(0.2% of d) = 3,327 coordinates applied per round
SKETCH_SEED = 38  # the hashes every client and the server share, every round


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}.")


def _check_fraction(fraction):
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be the share of coordinates applied per round, a number in (0, 1], "
                         f"got {fraction!r}.")


# ------------------------------------------------------------------ stage --

@te.core.tf_style_encoding_stage
class CountSketchEncodingStage(te.core.EncodingStageInterface):
    """A tensor of ``d`` values -> its ``rows x columns`` count sketch (float32 cells).

    Row ``r`` adds ``sign[r, i] * x[i]`` into cell ``bucket[r, i]``; buckets and
    signs are drawn from ``seed`` with TF's stateless random ops, so every
    client (and the server) that builds the stage with the same seed hashes
    the same way, and sketches add up: the sum of sketches is the sketch of
    the sum. ``decode`` returns the linear estimate ``mean_r sign[r, i] *
    cell[r, bucket[r, i]]``, which therefore commutes with sum.
    """

    SKETCH_KEY = "sketch"

    def __init__(self, rows=DEFAULT_ROWS, columns=DEFAULT_COLUMNS, seed=SKETCH_SEED):
        _check_int("rows", rows, 1)
        _check_int("columns", columns, 1)
        _check_int("seed", seed, 0)
        self._rows, self._columns, self._seed = rows, columns, seed

    @property
    def name(self):
        return "count_sketch"

    @property
    def compressible_tensors_keys(self):
        return [self.SKETCH_KEY]

    @property
    def commutes_with_sum(self):
        return True

    @property
    def decode_needs_input_shape(self):
        return True

    def get_params(self):
        return collections.OrderedDict(), collections.OrderedDict()

    def encode(self, x, encode_params):
        del encode_params  # unused: the hashes come from the shared seed
        flat = tf.reshape(x, [-1])
        cells, signs = self.hashes(tf.size(flat), flat.dtype)
        table = tf.math.unsorted_segment_sum(tf.reshape(signs * flat[None, :], [-1]), tf.reshape(cells, [-1]),
                                             self._rows * self._columns)
        return collections.OrderedDict([(self.SKETCH_KEY, tf.reshape(table, [self._rows, self._columns]))])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        del decode_params, num_summands  # unused: the estimate is linear, a sum decodes as it is
        estimates = self._row_estimates(encoded_tensors[self.SKETCH_KEY], tf.reduce_prod(shape))
        return tf.reshape(tf.reduce_mean(estimates, axis=0), shape)

    # -- what the server uses besides encode and decode --
    def hashes(self, d, dtype=tf.float32):
        """``(cells, signs)``, both ``[rows, d]``: the flat cell index (``row * columns + bucket``) and the ±1 sign
        of every coordinate in every row. ``d`` is an int or a scalar int32 tensor; the same ``d`` and seed
        give the same hashes in every process."""
        buckets = tf.random.stateless_uniform([self._rows, d], seed=[self._seed, 1], minval=0,
                                              maxval=self._columns, dtype=tf.int32)
        signs = tf.random.stateless_uniform([self._rows, d], seed=[self._seed, 2], minval=0, maxval=2,
                                            dtype=tf.int32)
        cells = buckets + self._columns * tf.range(self._rows)[:, None]
        return cells, tf.cast(2 * signs - 1, dtype)

    def _row_estimates(self, sketch, d):
        """``[rows, d]``: each row's estimate ``sign[r, i] * cell[r, bucket[r, i]]`` of every coordinate."""
        cells, signs = self.hashes(d, sketch.dtype)
        return signs * tf.gather(tf.reshape(sketch, [-1]), cells)

    def median_estimate(self, sketch, d):
        """The count sketch's estimate of all ``d`` coordinates: the median over rows of ``sign * cell``.

        ``sketch`` is ``[rows, columns]`` (one client's, a sum, or the server's error
        sketch); returns a flat ``[d]`` tensor. With an even number of rows, the
        mean of the two middle values.
        """
        ordered = tf.sort(self._row_estimates(sketch, d), axis=0)
        middle = self._rows // 2
        if self._rows % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) / 2

    def top_k(self, sketch, d, k):
        """``(indices, values)`` of the ``k`` coordinates whose :meth:`median_estimate` is largest in magnitude."""
        estimate = self.median_estimate(sketch, d)
        _, indices = tf.math.top_k(tf.abs(estimate), k=k)
        return indices, tf.gather(estimate, indices)

    def zero_buckets(self, sketch, d, indices):
        """``sketch`` with every cell that a coordinate of ``indices`` hashes to (in any row) set to 0."""
        cells, _ = self.hashes(d, sketch.dtype)
        touched = tf.reshape(tf.gather(cells, indices, axis=1), [-1, 1])
        flat = tf.tensor_scatter_nd_update(tf.reshape(sketch, [-1]), touched,
                                           tf.zeros(tf.shape(touched)[:1], sketch.dtype))
        return tf.reshape(flat, tf.shape(sketch))


def uplink_bits_per_client(rows=DEFAULT_ROWS, columns=DEFAULT_COLUMNS):
    """Bits one client sends per round: ``rows * columns`` float32 cells, 32 bits each."""
    return rows * columns * 32


# ---------------------------------------------------------------- factory --

class FetchSGDFactory(tff.aggregators.WeightedAggregationFactory):
    """FetchSGD's aggregation: the clients' mean sketch, momentum and error in SERVER state, top-k unsketched.

    ``rows``, ``columns``, ``seed``: the count sketch (:class:`CountSketchEncodingStage`).
    ``fraction``: share of the update's ``d`` coordinates applied per round
    (``k = ceil(fraction * d)``). ``learning_rate``, ``momentum``: the server's step and
    momentum ``rho``, applied in sketch space; ``lr_drop``: ``(after_rounds, learning_rate)``
    or None, as :class:`helpers.runs.RunSettings`' ``server_lr_drop``. The process's
    result is the sparse update ``Delta``; its measurements are
    ``aggregated_bits`` (int64): the bits all sampled clients sent, their sketches.
    """

    def __init__(self, rows=DEFAULT_ROWS, columns=DEFAULT_COLUMNS, fraction=DEFAULT_FRACTION,
                 learning_rate=1.0, momentum=0.9, lr_drop=None, seed=SKETCH_SEED):
        self._stage = CountSketchEncodingStage(rows, columns, seed)  # checks rows, columns, seed
        _check_fraction(fraction)
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or learning_rate <= 0:
            raise ValueError(f"learning_rate must be a number above 0, got {learning_rate!r}.")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
        if lr_drop is not None:
            runs.RunSettings(rounds=1, clients_per_round=1, server_lr_drop=lr_drop)  # its checks, its message
        self._rows, self._columns, self._fraction = rows, columns, fraction
        self._learning_rate, self._momentum, self._lr_drop = learning_rate, momentum, lr_drop

    def create(self, value_type, weight_type):
        specs = tf.nest.flatten(tff.types.type_to_tf_tensor_specs(value_type))
        for i, spec in enumerate(specs):
            if spec.dtype != tf.float32 or not spec.shape.is_fully_defined():
                raise TypeError(f"FetchSGD sketches float32 tensors of known shape; value #{i} is "
                                f"{spec.dtype.name} {spec.shape}. Cast the model's weights to float32.")
        d = sum(spec.shape.num_elements() for spec in specs)
        k = min(d, max(1, math.ceil(self._fraction * d)))
        sketch_type = tff.TensorType(np.float32, [self._rows, self._columns])
        mean = compression.build_encoded_mean_factory(compression.identity().aggregation).create(
            sketch_type, weight_type)
        return _fetchsgd_process(self, mean, value_type, d, k)

    def learning_rate(self, round_index):
        """The server's learning rate in round ``round_index`` (0 for the first round), a float32 tensor."""
        if self._lr_drop is None:
            return tf.constant(float(self._learning_rate))
        after_rounds, new_rate = self._lr_drop
        return tf.where(round_index < after_rounds, float(self._learning_rate), float(new_rate))


def _fetchsgd_process(factory, mean, value_type, d, k):
    """The ``AggregationProcess`` of :class:`FetchSGDFactory` for updates of ``value_type`` (``d`` values)."""
    stage, rows, columns = factory._stage, factory._rows, factory._columns
    structure = tff.types.type_to_tf_tensor_specs(value_type)
    specs = tf.nest.flatten(structure)

    @tff.tensorflow.computation(value_type)
    def sketch_update(value):
        flat = tf.concat([tf.reshape(v, [-1]) for v in tf.nest.flatten(value)], axis=0)
        return stage.encode(flat, collections.OrderedDict())[stage.SKETCH_KEY]

    @tff.tensorflow.computation
    def initial_sketches():
        zeros = tf.zeros([rows, columns], tf.float32)
        return collections.OrderedDict(momentum=zeros, error=zeros, round=tf.constant(0, tf.int32))

    sketches_type = initial_sketches.type_signature.result

    @tff.tensorflow.computation(sketches_type, mean.next.type_signature.result.result.member)
    def server_step(sketches, mean_sketch):
        momentum = factory._momentum * sketches["momentum"] + mean_sketch
        error = sketches["error"] + factory.learning_rate(sketches["round"]) * momentum
        indices, values = stage.top_k(error, d, k)
        delta = tf.scatter_nd(indices[:, None], values, [d])
        new = collections.OrderedDict(momentum=stage.zero_buckets(momentum, d, indices),
                                      error=stage.zero_buckets(error, d, indices), round=sketches["round"] + 1)
        parts = tf.split(delta, [s.shape.num_elements() for s in specs])
        return new, tf.nest.pack_sequence_as(structure, [tf.reshape(p, s.shape) for p, s in zip(parts, specs)])

    @tff.federated_computation
    def init_fn():
        return tff.federated_zip(collections.OrderedDict(
            mean=mean.initialize(), sketches=tff.federated_eval(initial_sketches, tff.SERVER)))

    @tff.federated_computation(init_fn.type_signature.result, tff.FederatedType(value_type, tff.CLIENTS),
                               mean.next.type_signature.parameter[2])
    def next_fn(state, value, weight):
        averaged = mean.next(state.mean, tff.federated_map(sketch_update, value), weight)
        sketches, delta = tff.federated_map(server_step, (state.sketches, averaged.result))
        new_state = tff.federated_zip(collections.OrderedDict(mean=averaged.state, sketches=sketches))
        return tff.templates.MeasuredProcessOutput(new_state, delta, averaged.measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)


# ------------------------------------------------------------- FedAvg --

def build_fetchsgd(model_fn, settings, *, rows=DEFAULT_ROWS, columns=DEFAULT_COLUMNS, fraction=DEFAULT_FRACTION):
    """FetchSGD as a ``tff.learning`` iterative process: FedAvg whose aggregator is :class:`FetchSGDFactory`.

    ``model_fn`` builds the ``tff.learning.models.VariableModel``; ``settings`` is a
    :class:`helpers.runs.RunSettings`: client SGD at ``client_lr``; ``server_lr``,
    ``server_momentum`` and ``server_lr_drop`` become the sketch state's learning
    rate and momentum, and the server optimizer is SGD at learning rate 1 without
    momentum, which only applies the aggregate ``Delta``. The broadcast is the
    course's measured identity broadcast. Returns the process, for
    :func:`helpers.training.train_fed_avg`'s ``process=`` or :func:`helpers.training.run_rounds`.

    Defaults, for the course's CNN (d = 1,663,370): ``rows=5`` (the paper's; the
    median of 5 estimates), ``columns=33,268``, so a client sends 5 x 33,268 =
    166,340 float32 cells (5,322,880 bits), 1/10.0 of the identity's 53,227,840
    bits; ``fraction=0.002``, k = 3,327 coordinates per round, about 1/10 of the
    columns, so that the heavy coordinates rarely share a cell.
    """
    if not isinstance(settings, runs.RunSettings):
        raise TypeError(f"settings must be a helpers.runs.RunSettings (runs.run_settings('long'), say), "
                        f"got {type(settings).__name__}.")
    aggregator = FetchSGDFactory(rows, columns, fraction, learning_rate=settings.server_lr,
                                 momentum=settings.server_momentum, lr_drop=settings.server_lr_drop)
    runtime.release_finished_runs()
    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=settings.client_lr),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0),
        model_distributor=compression.build_encoded_broadcast_process(model_fn, compression.identity().broadcast),
        model_aggregator=aggregator,
    )
