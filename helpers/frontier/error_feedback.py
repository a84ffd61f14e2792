"""Client-side error feedback (EF): each client adds what its compressor dropped to its next update.

EF-SGD (Seide et al. 2014; Karimireddy et al. 2019, "Error Feedback Fixes
SignSGD"): a client with update ``u`` and residual ``e`` (zeros at first) sends
``C(u + e)`` and keeps ``e <- u + e - C(u + e)``, in the units of the update. So
nothing is lost, only delayed: what a client sent over the rounds plus its
residual is the sum of its updates.

TFF keeps no state on clients between rounds. This follows TFF's "stateful
clients" example (``examples/stateful_clients`` in tensorflow-federated): a
hand-built ``tff.templates.IterativeProcess`` whose ``next(state, data,
residuals)`` takes the sampled clients' residuals at CLIENTS and returns their
new ones at CLIENTS, and the simulation keeps them between rounds by client id.

- :func:`build_error_feedback_process`: the IterativeProcess: FedAvg composed as
  ``build_weighted_fed_avg`` composes it, from the course's encoded broadcast,
  TFF's model-delta client work, the course's measured encoded mean and TFF's
  optimizer finalizer, with each client's feedback step between client work and
  mean. Bits are counted by the mean, on the encoded tensors; a residual is
  never sent (it comes back at CLIENTS, which in a real deployment is the
  device itself).
- :class:`ErrorFeedbackRounds`: the simulation side, for
  :func:`helpers.training.run_rounds`: every client's residual
  (:class:`ErrorFeedbackState`, saved whole in a run's checkpoints) and, in each
  round's record, how old the sampled clients' residuals were.
- :func:`train_error_feedback`: one run, like :func:`helpers.training.train_fed_avg`.
- :func:`staleness_summary`: how often a sampled client had been seen before,
  and how many rounds old its residual was.

Units: ``MeanFactory`` multiplies each client's value by its weight (its number
of examples) before the encoded sum, so the server receives ``C(w (u + e))``.
The compressors allowed here (:data:`COMPRESSORS`) are deterministic,
stateless and scale-equivariant, ``C(w v) = w C(v)``: in the update's units the
server receives ``C(u + e)``, exactly what the residual leaves out.
"""
import collections
import json

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from helpers import compression, config, data, training
from helpers.frontier import sweep
from helpers.runs import checkpoints, seeds
from helpers.workers import runtime

# Deterministic, stateless and scale-equivariant: C(w v) = w C(v) for a weight w > 0.
COMPRESSORS = (sweep.IDENTITY, "top-1% values + indices", "1-bit sign, mean scale")
SOURCES = ("frontier/error_feedback", "frontier/baselines", "frontier/research_stages")  # the method's code

ErrorFeedbackOutput = collections.namedtuple("ErrorFeedbackOutput", ["state", "metrics", "residuals"])
ErrorFeedbackOutput.__doc__ = ("What ``next`` returns: the server ``state``, the round's ``metrics`` (as FedAvg's) "
                               "and the sampled clients' new ``residuals`` (at CLIENTS, in their order).")

ErrorFeedbackState = collections.namedtuple("ErrorFeedbackState", ["server", "round", "clients", "last_round",
                                                                   "residuals"])
ErrorFeedbackState.__doc__ = (
    "A run's state between rounds: the process's ``server`` state, the rounds done (``round``), the ids of the "
    "clients that have a residual (``clients``, as JSON text), the round each residual was written "
    "(``last_round``, int64, one per client) and the residuals (``residuals``: one float32 array "
    "[clients, *variable shape] per variable). Flat arrays, so a checkpoint saves it as it is.")


def encoders_for(broadcast, aggregation, threshold=compression.DEFAULT_THRESHOLD):
    """The :class:`helpers.compression.EncoderFns` of an EF row; ``ValueError`` unless ``aggregation`` is in COMPRESSORS."""
    if aggregation not in COMPRESSORS:
        raise ValueError(f"error feedback needs a deterministic, stateless, scale-equivariant compressor, one of "
                         f"{list(COMPRESSORS)}; got {aggregation!r} (a stochastic one would round otherwise on the "
                         "client than in the aggregator, so the residual would not be what was dropped).")
    return sweep.encoder_fns(broadcast, aggregation, threshold)


# ---------------------------------------------------------------- process --

def _compress(encoder, x):
    """``C(x)``: ``x`` encoded and decoded by the GatherEncoder ``encoder``, as the server decodes one client."""
    encode_params, before_sum_params, after_sum_params = encoder.get_params(encoder.initial_state())
    encoded, _ = encoder.encode(x, encode_params)
    return encoder.decode_after_sum(encoder.decode_before_sum(encoded, before_sum_params), after_sum_params, 1)


def _feedback_step(encoder_fn, update_type):
    """The client's step, a TF computation ``(update, residual) -> (update + residual, what C dropped of it)``."""
    structure = tff.types.type_to_tf_tensor_specs(update_type)
    encoders = [encoder_fn(spec) for spec in tf.nest.flatten(structure)]
    stateful = [i for i, e in enumerate(encoders) if tf.nest.flatten(e.initial_state())]
    if stateful:
        raise ValueError(f"the encoders of variables {stateful} keep state between rounds; a client cannot apply "
                         "them as the aggregator does, so error feedback needs stateless encoders (COMPRESSORS).")

    @tff.tensorflow.computation(update_type, update_type)
    def feedback(update, residual):
        corrected = [u + e for u, e in zip(tf.nest.flatten(update), tf.nest.flatten(residual))]
        dropped = [v - _compress(encoder, v) for encoder, v in zip(encoders, corrected)]
        return tf.nest.pack_sequence_as(structure, corrected), tf.nest.pack_sequence_as(structure, dropped)

    return feedback


def build_error_feedback_process(model_fn, encoders, settings):
    """FedAvg with client-side error feedback, as a ``tff.templates.IterativeProcess``.

    ``encoders``: :class:`helpers.compression.EncoderFns` (:func:`encoders_for`); ``settings``: a
    :class:`helpers.runs.RunSettings` (its optimizers, :func:`helpers.training.fed_avg_optimizers`).
    ``initialize()`` gives a ``tff.learning.templates.LearningAlgorithmState`` at SERVER;
    ``next(state, data, residuals)`` takes the clients' datasets and residuals (each shaped like
    the model's trainable weights) at CLIENTS and returns an :class:`ErrorFeedbackOutput`.
    """
    runtime.release_finished_runs()
    client_optimizer, server_optimizer = training.fed_avg_optimizers(settings)

    @tff.tensorflow.computation
    def initial_weights():
        return tff.learning.models.ModelWeights.from_model(model_fn())

    weights_type = initial_weights.type_signature.result
    distributor = compression.build_encoded_broadcast_process(model_fn, encoders.broadcast)
    client_work = tff.learning.templates.build_model_delta_client_work(
        model_fn, client_optimizer, tff.learning.ClientWeighting.NUM_EXAMPLES, tff.learning.metrics.sum_then_finalize)
    result_type = client_work.next.type_signature.result.result.member
    aggregator = compression.build_encoded_mean_factory(encoders.aggregation).create(result_type.update,
                                                                                     result_type.update_weight)
    finalizer = tff.learning.templates.build_apply_optimizer_finalizer(server_optimizer, weights_type)
    feedback = _feedback_step(encoders.aggregation, result_type.update)

    @tff.federated_computation
    def init_fn():
        return tff.federated_zip(tff.learning.templates.LearningAlgorithmState(
            tff.federated_eval(initial_weights, tff.SERVER), distributor.initialize(), client_work.initialize(),
            aggregator.initialize(), finalizer.initialize()))

    @tff.federated_computation(init_fn.type_signature.result, client_work.next.type_signature.parameter[2],
                               tff.FederatedType(result_type.update, tff.CLIENTS))
    def next_fn(state, client_data, residuals):
        distributed = distributor.next(state.distributor, state.global_model_weights)
        trained = client_work.next(state.client_work, distributed.result, client_data)
        corrected, new_residuals = tff.federated_map(feedback, (trained.result.update, residuals))
        aggregated = aggregator.next(state.aggregator, corrected, trained.result.update_weight)
        finalized = finalizer.next(state.finalizer, state.global_model_weights, aggregated.result)
        new_state = tff.federated_zip(tff.learning.templates.LearningAlgorithmState(
            finalized.result, distributed.state, trained.state, aggregated.state, finalized.state))
        metrics = tff.federated_zip(collections.OrderedDict(
            distributor=distributed.measurements, client_work=trained.measurements,
            aggregator=aggregated.measurements, finalizer=finalized.measurements))
        return ErrorFeedbackOutput(new_state, metrics, new_residuals)

    return tff.templates.IterativeProcess(init_fn, next_fn)


# ------------------------------------------------------------- simulation --

class ErrorFeedbackRounds:
    """An EF ``process`` with the residuals of every client seen so far, for :func:`helpers.training.run_rounds`.

    Its state is an :class:`ErrorFeedbackState`. Each round, :meth:`next_for_clients` looks up
    the sampled clients' residuals (zeros for a client never sampled), runs ``process.next``
    and stores what comes back; each round's record gets ``residual_age`` (per sampled
    client, the rounds since its residual was written, ``None`` for a new client) and
    ``clients_seen_before``.
    """

    def __init__(self, process):
        residual_type = process.next.type_signature.parameter[2].member
        self.process = process
        self.specs = tf.nest.flatten(tff.types.type_to_tf_tensor_specs(residual_type))

    def initialize(self):
        """The state before the first round: the process's initial state and no residual."""
        return ErrorFeedbackState(self.process.initialize(), np.int64(0), "[]", np.zeros([0], np.int64),
                                  tuple(np.zeros([0, *s.shape], s.dtype.as_numpy_dtype) for s in self.specs))

    def get_model_weights(self, state):
        """The global model's ``tff.learning.models.ModelWeights``."""
        return state.server.global_model_weights

    def set_model_weights(self, state, model_weights):
        """``state`` with the global model ``model_weights``."""
        return state._replace(server=state.server._replace(global_model_weights=model_weights))

    def next_for_clients(self, state, clients, datasets):
        """One round for ``clients`` (ids, in the order of ``datasets``): ``(output, record fields)``.

        ``output.state`` is the new :class:`ErrorFeedbackState` (the residual arrays of
        ``state`` are updated in place: use the new one); ``output.metrics`` as FedAvg's.
        """
        index = {client: i for i, client in enumerate(json.loads(state.clients))}
        round_num = int(state.round) + 1
        residuals = [[table[index[c]] for table in state.residuals] if c in index else
                     [np.zeros(s.shape, s.dtype.as_numpy_dtype) for s in self.specs] for c in clients]
        ages = [round_num - int(state.last_round[index[c]]) if c in index else None for c in clients]
        output = self.process.next(state.server, datasets, residuals)
        new_state = _store(state, clients, output.residuals, output.state, round_num)
        fields = dict(residual_age=ages, clients_seen_before=sum(age is not None for age in ages))
        return tff.learning.templates.LearningProcessOutput(new_state, output.metrics), fields


def _store(state, clients, residuals, server, round_num):
    """``state`` after round ``round_num``: the new ``server`` state and ``clients``' ``residuals`` written."""
    known = json.loads(state.clients)
    new = [c for c in clients if c not in set(known)]
    tables = [t if t.flags.writeable else t.copy() for t in state.residuals]
    last_round = state.last_round if state.last_round.flags.writeable else state.last_round.copy()
    if new:
        tables = [np.concatenate([t, np.zeros([len(new), *t.shape[1:]], t.dtype)]) for t in tables]
        last_round = np.concatenate([last_round, np.zeros(len(new), np.int64)])
    index = {client: i for i, client in enumerate(known + new)}
    for client, residual in zip(clients, residuals):
        for table, value in zip(tables, tf.nest.flatten(residual)):
            table[index[client]] = value
        last_round[index[client]] = round_num
    return ErrorFeedbackState(server, np.int64(round_num), json.dumps(known + new), last_round, tuple(tables))


def residual_of(state, client):
    """The residual ``client`` keeps in ``state`` (a list of arrays, one per variable), or None if it has none."""
    known = json.loads(state.clients)
    return [table[known.index(client)] for table in state.residuals] if client in known else None


def train_error_feedback(model_fn, encoders, settings, train, evaluate_fn=None, *, seed=None, name="run",
                         verbose=True):
    """Train FedAvg with client-side error feedback on ``train`` (a ``ClientData``); returns a History.

    As :func:`helpers.training.train_fed_avg`: the same initial model, clients and shuffles for
    the same ``seed``, checkpoints inside :func:`helpers.runs.cached_history` (the residuals
    included), and each round's record also holds ``residual_age`` and ``clients_seen_before``.
    """
    run_seed = config.SEED if seed is None else seed
    rounds = ErrorFeedbackRounds(build_error_feedback_process(model_fn, encoders, settings))
    initial_weights = seeds.initial_model_weights(model_fn, run_seed)
    fingerprint = dict(function="train_error_feedback", name=name, settings=settings.as_dict(), seed=run_seed,
                       model=checkpoints.describe(model_fn), encoders=checkpoints.describe(encoders),
                       evaluate=checkpoints.describe(evaluate_fn), code=checkpoints.code_digests(SOURCES))
    _, history = training.run_rounds(
        rounds, lambda ids: data.make_federated_data(train, ids, epochs=settings.client_epochs), train.client_ids,
        settings, seed=run_seed, evaluate_fn=evaluate_fn,
        state=rounds.set_model_weights(rounds.initialize(), initial_weights), name=name, verbose=verbose,
        checkpoint=checkpoints.for_run(name, fingerprint))
    return history


# ------------------------------------------------------------- staleness --

def staleness_summary(history):
    """How stale the residuals of a run were, from its rounds' ``residual_age`` records.

    A dict: ``client_rounds`` (sampled clients, summed over rounds), ``seen_before`` (the
    fraction that had been sampled before, so had a residual), ``median_age`` and
    ``max_age`` (rounds since a returning client's residual was written; None when no
    client returned), and ``seen_before_by_round`` (the fraction, round by round).
    """
    ages = [record.get("residual_age") for record in history.rounds]
    if any(a is None for a in ages):
        raise ValueError(f"{history.name!r} has no residual ages in its rounds; train it with error feedback "
                         "(train_error_feedback) to have them.")
    returning = [a for round_ages in ages for a in round_ages if a is not None]
    total = sum(len(a) for a in ages)
    return dict(client_rounds=total, seen_before=len(returning) / total if total else 0.0,
                median_age=float(np.median(returning)) if returning else None,
                max_age=int(max(returning)) if returning else None,
                seen_before_by_round=[sum(x is not None for x in a) / len(a) for a in ages])
