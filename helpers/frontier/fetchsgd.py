"""FetchSGD (Rothchild et al., "FetchSGD: Communication-Efficient Federated Learning with Sketching", ICML 2020).

Server-side momentum and error feedback for clients that keep no state. Each
client sends a *count sketch* of its model update: a ``rows x columns`` table
of float32 cells, far fewer than the update's ``d`` values. Every client hashes
with the same shared seed, so sketching is linear: the mean of the clients'
sketches is the sketch of their mean update. The server keeps momentum and the
accumulated error *in sketch space*, in its own state across rounds, and each
round applies only the ``k`` coordinates that the error sketch says are largest.

- :class:`CountSketchEncodingStage`: a tfmot encoding stage (TF graph ops only):
  ``d`` values -> their count sketch. Its ``decode`` is the linear estimate (the
  mean over rows of ``sign * cell``), so it commutes with sum.
- :class:`FetchSGDFactory`: a ``tff.aggregators.WeightedAggregationFactory`` that
  wraps the course's measured mean (:func:`helpers.compression.build_encoded_mean_factory`,
  identity encoders on the sketch, so ``aggregated_bits`` counts the cells the
  clients really sent). Its SERVER-placed state holds the momentum sketch ``S_u``,
  the error sketch ``S_e`` and the round. Each round, with ``S`` the clients' mean sketch::

      S_u <- rho * S_u + S                 (momentum, in sketch space)
      S_e <- S_e + lr * S_u                (error accumulation, in sketch space)
      Delta <- the k largest coordinates of the median over rows of sign * S_e
      S_u, S_e <- 0 in every cell a coordinate of Delta hashes to

  ``Delta`` (k non-zeros) is the aggregate. The paper's Algorithm 1 subtracts the
  sketch of ``Delta`` from ``S_e``; its text zeroes those cells instead, which "empirically
  stabilizes the optimization", and its authors' code zeroes them in ``S_u`` too (momentum
  masking): so do we. The paper's optional second round of communication (asking the
  clients for the exact values of the k chosen coordinates) is *not* used: ``Delta``
  holds the sketch's estimates, and every round is one upload per client.
- :func:`build_fetchsgd`: the course's FedAvg (:func:`helpers.training.build_fed_avg`) with
  this aggregator, the measured identity broadcast, and a server optimizer that only
  applies ``Delta`` (SGD at learning rate 1, no momentum): the run's server learning rate,
  its drop and its momentum live in the sketch state instead.
- :func:`train_fetchsgd`: the trainer of ``make frontier``'s FetchSGD row: the same initial
  model, clients and shuffles as FedAvg for a seed, checkpointed with the server's sketches.

Two choices are ours, not the paper's. The clients run FedAvg's local training and sketch
their model update (the paper's clients sketch one gradient). The sketch size keeps the
authors' code's proportions (``CommEfficient/utils.py``: 5 rows, k = 50,000, 500,000
columns, so 10 columns per coordinate applied) scaled to the CNN, which has fewer
coordinates than their default sketch has cells; the learning rate and momentum are the
course's long run's (FedAvgM's), not tuned for FetchSGD.

This is a method of its own, not a repair of client-side top-k. A top-k client
drops what it does not send and never tells the server what, so no server can
give it back; error feedback on the server cannot recover it either, since the server
never sees what a client dropped. A FetchSGD client drops nothing (it sketches its
whole update, in far fewer numbers), and what a round does not apply waits in the
server's error sketch, whichever clients come next, so clients need no state of their
own. What it gives up is precision: cells mix every coordinate that hashes to them, so
the applied values are estimates.
"""
import collections
import math

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import compression, config, data, runs, training
from helpers.runs import checkpoints, seeds

__all__ = ["CountSketchEncodingStage", "FetchSGDFactory", "build_fetchsgd", "train_fetchsgd",
           "uplink_bits_per_client", "AGGREGATION", "DEFAULT_ROWS", "DEFAULT_COLUMNS", "DEFAULT_FRACTION",
           "SKETCH_SEED", "SOURCES"]

# Defaults for the course's CNN (d = 1,663,370 parameters), as the authors' code has them: 5 rows, and
# 10 columns per coordinate applied a round (their k = 50,000 with 500,000 columns).
DEFAULT_ROWS = 5
DEFAULT_COLUMNS = 33_268  # 5 x 33,268 = 166,340 float32 cells: 5,322,880 bits, 1/10.0 of the update's 53,227,840
DEFAULT_FRACTION = 0.002  # k = ceil(0.2% of d) = 3,327 coordinates applied per round, columns / 10
SKETCH_SEED = 38  # the hashes that every client and the server share, every round
SOURCES = ("frontier/fetchsgd",)  # the method's code (under helpers/), in its checkpoints' fingerprint
AGGREGATION = "count sketch"  # the aggregation's name in a frontier row (helpers.frontier.from_scratch.Row)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}.")


def _check_number(name, value, inside, span):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not inside(value):
        raise ValueError(f"{name} must be a number in {span}, got {value!r}.")


# ------------------------------------------------------------------ stage --

@te.core.tf_style_encoding_stage
class CountSketchEncodingStage(te.core.EncodingStageInterface):
    """A tensor of ``d`` values -> its ``rows x columns`` count sketch (float32 cells), and back.

    Row ``r`` adds ``sign[r, i] * x[i]`` into its cell ``bucket[r, i]``. Buckets and
    signs come from ``seed`` alone (TF's stateless random ops), so every client
    and the server that build the stage with the same seed hash the same way,
    and sketches add up: the sum of two sketches is the sketch of the sum.
    ``decode`` returns the linear estimate ``mean_r sign[r, i] * cell[r, bucket[r, i]]``,
    so the stage commutes with sum. :meth:`top_k` uses the count sketch's usual
    estimate instead, the median over rows (not linear, robust to a heavy coordinate
    sharing a cell in one row).
    """

    SKETCH_KEY = "sketch"

    def __init__(self, rows=DEFAULT_ROWS, columns=DEFAULT_COLUMNS, seed=SKETCH_SEED):
        _check_int("rows", rows, 1)
        _check_int("columns", columns, 1)
        _check_int("seed", seed, 0)
        self.rows, self.columns, self.seed = rows, columns, seed

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
        del encode_params  # none: the hashes come from the shared seed
        flat = tf.reshape(x, [-1])
        cells, signs = self.hashes(tf.size(flat), flat.dtype)
        table = tf.math.unsorted_segment_sum(tf.reshape(signs * flat[None, :], [-1]), tf.reshape(cells, [-1]),
                                             self.rows * self.columns)
        return collections.OrderedDict([(self.SKETCH_KEY, tf.reshape(table, [self.rows, self.columns]))])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        del decode_params, num_summands  # the estimate is linear: a sum of sketches decodes as it is
        estimates = self.row_estimates(encoded_tensors[self.SKETCH_KEY], tf.reduce_prod(shape))
        return tf.reshape(tf.reduce_mean(estimates, axis=0), shape)

    # -- what FetchSGD's server uses besides encode and decode --
    def hashes(self, d, dtype=tf.float32):
        """``(cells, signs)``, both ``[rows, d]``: each coordinate's flat cell (``row * columns + bucket``), ±1 sign.

        ``d`` is an int or a scalar int32 tensor. One stateless draw in ``[0, 2 * columns)``
        per row and coordinate gives both: its remainder by ``columns`` is the bucket, its
        quotient the sign. The same ``d`` and seed give the same hashes in every process.
        """
        draw = tf.random.stateless_uniform([self.rows, d], seed=[self.seed, 0], minval=0,
                                           maxval=2 * self.columns, dtype=tf.int32)
        cells = draw % self.columns + self.columns * tf.range(self.rows)[:, None]
        return cells, tf.cast(1 - 2 * (draw // self.columns), dtype)

    def row_estimates(self, sketch, d):
        """``[rows, d]``: each row's estimate ``sign[r, i] * cell[r, bucket[r, i]]`` of every coordinate."""
        cells, signs = self.hashes(d, sketch.dtype)
        return signs * tf.gather(tf.reshape(sketch, [-1]), cells)

    def median_estimate(self, sketch, d):
        """The ``[d]`` estimate of every coordinate: the median over rows of :meth:`row_estimates`.

        ``sketch`` is ``[rows, columns]``: one client's, a sum, or the server's error
        sketch. With an even number of rows, the mean of the two middle values.
        """
        ordered = _sorted_rows(tf.unstack(self.row_estimates(sketch, d), num=self.rows))
        middle = self.rows // 2
        return ordered[middle] if self.rows % 2 else (ordered[middle - 1] + ordered[middle]) / 2

    def top_k(self, sketch, d, k):
        """``(indices, values)``: the ``k`` coordinates whose :meth:`median_estimate` is largest in magnitude."""
        estimate = self.median_estimate(sketch, d)
        _, indices = tf.math.top_k(tf.abs(estimate), k=k)
        return indices, tf.gather(estimate, indices)

    def zero_cells(self, sketch, d, indices):
        """``sketch`` with every cell that a coordinate of ``indices`` hashes to (in any row) set to 0."""
        cells, _ = self.hashes(d, sketch.dtype)
        touched = tf.reshape(tf.gather(cells, indices, axis=1), [-1, 1])
        flat = tf.tensor_scatter_nd_update(tf.reshape(sketch, [-1]), touched,
                                           tf.zeros(tf.shape(touched)[:1], sketch.dtype))
        return tf.reshape(flat, tf.shape(sketch))


def _sorted_rows(rows):
    """``rows`` (a list of equal-shaped tensors) sorted elementwise: ``out[0] <= out[1] <= ...`` at every position.

    Odd-even transposition sort: ``len(rows)`` passes of elementwise min/max on neighbouring rows. It
    picks the same values as ``tf.sort(..., axis=0)``, over ten times faster for the sketch's five rows
    of 1.7 million estimates, since each pass is two elementwise ops rather than a sort per coordinate.
    """
    rows = list(rows)
    for start in range(len(rows)):
        for i in range(start % 2, len(rows) - 1, 2):
            rows[i], rows[i + 1] = tf.minimum(rows[i], rows[i + 1]), tf.maximum(rows[i], rows[i + 1])
    return rows


def uplink_bits_per_client(rows=DEFAULT_ROWS, columns=DEFAULT_COLUMNS):
    """Bits one client sends per round: its sketch's ``rows * columns`` float32 cells, 32 bits each."""
    return rows * columns * 32


# ---------------------------------------------------------------- factory --

class FetchSGDFactory(tff.aggregators.WeightedAggregationFactory):
    """FetchSGD's aggregation: the clients' mean sketch; momentum and error in SERVER state; the top-k unsketched.

    - ``stage``: the :class:`CountSketchEncodingStage` every client sketches with (default: the defaults).
    - ``fraction``: the share of the update's ``d`` coordinates applied per round, ``k = ceil(fraction * d)``.
    - ``learning_rate``, ``momentum``: the server's step ``lr`` and momentum ``rho``, applied in
      sketch space; ``lr_drop``: ``(after_rounds, learning_rate)`` or None, as
      :class:`helpers.runs.RunSettings`' ``server_lr_drop``.
    - ``inner``: the weighted factory that averages the sketches and counts their bits
      (default: the course's measured mean with identity encoders).

    The process's result is the sparse update ``Delta``, in the structure of the value
    aggregated; its measurements are the inner mean's: ``aggregated_bits`` (int64), the
    bits all sampled clients sent, their sketches.
    """

    def __init__(self, stage=None, fraction=DEFAULT_FRACTION, learning_rate=1.0, momentum=0.9, lr_drop=None,
                 inner=None):
        self._stage = CountSketchEncodingStage() if stage is None else stage
        if not isinstance(self._stage, CountSketchEncodingStage):
            raise TypeError(f"stage must be a CountSketchEncodingStage, got {type(stage).__name__}.")
        _check_number("fraction (the share of coordinates applied per round)", fraction, lambda f: 0 < f <= 1,
                      "(0, 1]")
        _check_number("learning_rate", learning_rate, lambda r: r > 0, "(0, inf)")
        _check_number("momentum", momentum, lambda m: 0 <= m < 1, "[0, 1)")
        if lr_drop is not None:
            lr_drop = runs.RunSettings(rounds=1, clients_per_round=1, server_lr_drop=lr_drop).server_lr_drop
        self._inner = inner or compression.build_encoded_mean_factory(compression.identity().aggregation)
        if not isinstance(self._inner, tff.aggregators.WeightedAggregationFactory):
            raise TypeError(f"inner must be a tff.aggregators.WeightedAggregationFactory, got {inner!r}.")
        self._fraction, self._learning_rate, self._momentum, self._lr_drop = fraction, learning_rate, momentum, lr_drop

    def create(self, value_type, weight_type):
        specs = tf.nest.flatten(tff.types.type_to_tf_tensor_specs(value_type))
        for i, spec in enumerate(specs):
            if spec.dtype != tf.float32 or not spec.shape.is_fully_defined():
                raise TypeError(f"FetchSGD sketches float32 tensors of known shape; value #{i} is "
                                f"{spec.dtype.name} {spec.shape}. Cast the model's weights to float32.")
        d = sum(spec.shape.num_elements() for spec in specs)
        k = min(d, math.ceil(self._fraction * d))
        sketch_type = tff.TensorType(np.float32, [self._stage.rows, self._stage.columns])
        return self._process(self._inner.create(sketch_type, weight_type), value_type, d, k)

    def _learning_rate_of(self, round_index):
        """The server's learning rate in round ``round_index`` (0 for the first), a float32 tensor."""
        if self._lr_drop is None:
            return tf.constant(float(self._learning_rate))
        after_rounds, new_rate = self._lr_drop
        return tf.where(round_index < after_rounds, float(self._learning_rate), float(new_rate))

    def server_step(self, sketches, mean_sketch, d, k):
        """One round of the server's state: ``(new sketches, indices, values)`` of the ``k`` coordinates applied."""
        momentum = self._momentum * sketches["momentum"] + mean_sketch
        error = sketches["error"] + self._learning_rate_of(sketches["round"]) * momentum
        indices, values = self._stage.top_k(error, d, k)
        new = collections.OrderedDict(momentum=self._stage.zero_cells(momentum, d, indices),
                                      error=self._stage.zero_cells(error, d, indices), round=sketches["round"] + 1)
        return new, indices, values

    def _process(self, inner, value_type, d, k):
        """The ``AggregationProcess`` for updates of ``value_type`` (``d`` values), ``inner`` averaging the sketches."""
        stage, rows, columns = self._stage, self._stage.rows, self._stage.columns
        structure = tff.types.type_to_tf_tensor_specs(value_type)
        specs = tf.nest.flatten(structure)

        @tff.tensorflow.computation(value_type)
        def sketch_update(value):  # at each client
            flat = tf.concat([tf.reshape(v, [-1]) for v in tf.nest.flatten(value)], axis=0)
            return stage.encode(flat, collections.OrderedDict())[stage.SKETCH_KEY]

        @tff.tensorflow.computation
        def initial_sketches():
            zeros = tf.zeros([rows, columns], tf.float32)
            return collections.OrderedDict(momentum=zeros, error=zeros, round=tf.constant(0, tf.int32))

        mean_sketch_type = inner.next.type_signature.result.result.member

        @tff.tensorflow.computation(initial_sketches.type_signature.result, mean_sketch_type)
        def server_step(sketches, mean_sketch):  # at the server
            new, indices, values = self.server_step(sketches, mean_sketch, d, k)
            delta = tf.scatter_nd(indices[:, None], values, [d])
            parts = tf.split(delta, [s.shape.num_elements() for s in specs])
            return new, tf.nest.pack_sequence_as(structure, [tf.reshape(p, s.shape) for p, s in zip(parts, specs)])

        @tff.federated_computation
        def init_fn():
            return tff.federated_zip(collections.OrderedDict(
                inner=inner.initialize(), sketches=tff.federated_eval(initial_sketches, tff.SERVER)))

        @tff.federated_computation(init_fn.type_signature.result, tff.FederatedType(value_type, tff.CLIENTS),
                                   inner.next.type_signature.parameter[2])
        def next_fn(state, value, weight):
            averaged = inner.next(state.inner, tff.federated_map(sketch_update, value), weight)
            stepped = tff.federated_map(server_step, (state.sketches, averaged.result))
            new_state = tff.federated_zip(collections.OrderedDict(inner=averaged.state, sketches=stepped[0]))
            return tff.templates.MeasuredProcessOutput(new_state, stepped[1], averaged.measurements)

        return tff.templates.AggregationProcess(init_fn, next_fn)


# ------------------------------------------------------------- FedAvg --

def build_fetchsgd(model_fn, settings, *, rows=DEFAULT_ROWS, columns=DEFAULT_COLUMNS, fraction=DEFAULT_FRACTION,
                   seed=SKETCH_SEED):
    """FetchSGD as a ``tff.learning`` iterative process: the course's FedAvg, its aggregator :class:`FetchSGDFactory`.

    ``model_fn`` builds the ``tff.learning.models.VariableModel``; ``settings`` is a
    :class:`helpers.runs.RunSettings`. :func:`helpers.training.build_fed_avg` builds it: the
    clients train with SGD at ``client_lr``, as in FedAvg, and the broadcast is the course's
    measured identity broadcast. ``server_lr``, ``server_lr_drop`` and ``server_momentum``
    become the sketch state's ``lr`` (and its drop) and ``rho``: what FedAvgM's server
    optimizer does, moved into sketch space. The server optimizer itself is SGD at learning
    rate 1 without momentum, so it only applies ``Delta``. Returns the process, for
    :func:`helpers.training.run_rounds` (or, in a :class:`helpers.training.BuiltFedAvg`,
    :func:`helpers.training.train_fed_avg`).

    The defaults, for the course's CNN (d = 1,663,370): ``rows=5``, ``columns=33,268``: a
    client sends 166,340 float32 cells, :func:`uplink_bits_per_client` = 5,322,880 bits a
    round, 1/10.0 of the 53,227,840 bits of its whole update; ``fraction=0.002``: k = 3,327
    coordinates applied a round, one per 10 columns. ``seed``: the shared hashes.
    """
    if not isinstance(settings, runs.RunSettings):
        raise TypeError(f"settings must be a helpers.runs.RunSettings (runs.run_settings('long'), say), "
                        f"got {type(settings).__name__}.")
    aggregator = FetchSGDFactory(CountSketchEncodingStage(rows, columns, seed), fraction,
                                 learning_rate=settings.server_lr, momentum=settings.server_momentum,
                                 lr_drop=settings.server_lr_drop)
    applies_delta = settings.replace(server_lr=1.0, server_momentum=0.0, server_lr_drop=None)
    return training.build_fed_avg(model_fn, compression.identity(), applies_delta, aggregator=aggregator)


def train_fetchsgd(model_fn, row, settings, train, evaluate_fn=None, *, seed=None, name="run", verbose=True):
    """Train a FetchSGD row of the from-scratch frontier (a trainer of ``from_scratch.TRAINERS``); a History.

    :func:`build_fetchsgd`'s process (its defaults) trained by :func:`helpers.training.run_rounds`
    as :func:`helpers.training.train_fed_avg` trains FedAvg: the same initial model, clients and
    shuffles for the same ``seed``, sampled from ``train.client_ids`` (a ``ClientData``), and
    checkpoints inside :func:`helpers.runs.cached_history`. The checkpoints' fingerprint holds
    the digests of :data:`SOURCES`, so a checkpoint of an older FetchSGD is never resumed.
    ``row`` must have the identity broadcast and the aggregation :data:`AGGREGATION`.
    """
    if (row.broadcast, row.aggregation) != ("identity", AGGREGATION):
        raise ValueError(f"a FetchSGD row has the broadcast 'identity' and the aggregation {AGGREGATION!r}; "
                         f"row {row.label!r} has {row.broadcast!r} and {row.aggregation!r}.")
    run_seed = config.SEED if seed is None else seed
    process = build_fetchsgd(model_fn, settings)
    initial_weights = seeds.initial_model_weights(model_fn, run_seed)
    fingerprint = dict(function="train_fetchsgd", name=name, settings=settings.as_dict(), seed=run_seed,
                       model=checkpoints.describe(model_fn), evaluate=checkpoints.describe(evaluate_fn),
                       code=checkpoints.code_digests(SOURCES))
    _, history = training.run_rounds(
        process, lambda ids: data.make_federated_data(train, ids, epochs=settings.client_epochs), train.client_ids,
        settings, seed=run_seed, evaluate_fn=evaluate_fn,
        state=process.set_model_weights(process.initialize(), initial_weights),
        outputs=runs.RunOutputs(name=name, verbose=verbose,
                                checkpoint=checkpoints.for_run(name, fingerprint, verbose=verbose)))
    return history
