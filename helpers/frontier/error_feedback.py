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
  :func:`helpers.training.run_rounds`: every client's residual, one file per
  client and round under the run's folder (its :class:`ErrorFeedbackState`, which
  a checkpoint saves, names each client's file), and, in each round's record, how
  old the sampled clients' residuals were.
- :func:`train_error_feedback`: one run, like :func:`helpers.training.train_fed_avg`.
- :func:`staleness_summary`: how often a sampled client had been seen before,
  and how many rounds old its residual was; :func:`sampled_staleness` gives the same
  from the course's client sampling alone, and :func:`print_staleness` says it.

Units: ``MeanFactory`` multiplies each client's value by its weight (its number
of examples) before the encoded sum, so the server receives ``C(w (u + e))``.
The compressors allowed here (:data:`COMPRESSORS`) are deterministic,
stateless and scale-equivariant, ``C(w v) = w C(v)``: in the update's units the
server receives ``C(u + e)``, exactly what the residual leaves out.
"""
import collections
import contextlib
import json
import pathlib
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from helpers import compression, config, data, runs, training
from helpers.frontier import sweep
from helpers.runs import checkpoints, seeds
from helpers.workers import runtime

# Deterministic, stateless and scale-equivariant: C(w v) = w C(v) for a weight w > 0.
COMPRESSORS = (sweep.IDENTITY, "top-1% values + indices", "1-bit sign, mean scale")
SOURCES = ("frontier/error_feedback", "frontier/baselines", "frontier/research_stages")  # the method's code

ErrorFeedbackOutput = collections.namedtuple("ErrorFeedbackOutput", ["state", "metrics", "residuals"])
ErrorFeedbackOutput.__doc__ = ("What ``next`` returns: the server ``state``, the round's ``metrics`` (as FedAvg's) "
                               "and the sampled clients' new ``residuals`` (at CLIENTS, in their order).")

ErrorFeedbackState = collections.namedtuple("ErrorFeedbackState", ["server", "round", "clients", "last_round"])
ErrorFeedbackState.__doc__ = (
    "A run's state between rounds: the process's ``server`` state, the rounds done (``round``), the ids of the "
    "clients that have a residual (``clients``, as JSON text) and the round each one's residual file was written "
    "(``last_round``, int64, one per client; :class:`ErrorFeedbackRounds` keeps the files). Flat values, so a "
    "checkpoint saves it as it is.")


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


def feedback_step(encoder_fn, update_type):
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
    feedback = feedback_step(encoders.aggregation, result_type.update)

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

    The residuals are files under ``folder``, one ``.npy`` (float32, the variables flattened and
    concatenated) per client and round that wrote it: ``<client index>-r<round>.npy``. Only the
    round's clients are in memory: a full-size cross-device run touches about 430 clients of
    6.35 MiB each, 2.7 GiB that memory need not hold. A file is never changed once written, so a
    checkpoint (its state names the round of each client's file) resumes bit-identically.

    Its state is an :class:`ErrorFeedbackState`. Each round, :meth:`next_for_clients` reads the
    sampled clients' residuals (zeros for a client never sampled), runs ``process.next`` and
    writes what comes back; each round's record gets ``residual_age`` (per sampled client, the
    rounds since its residual was written, ``None`` for a new client) and ``clients_seen_before``.
    """

    def __init__(self, process, folder):
        residual_type = process.next.type_signature.parameter[2].member
        self.process = process
        self.specs = tf.nest.flatten(tff.types.type_to_tf_tensor_specs(residual_type))
        self.folder = pathlib.Path(folder)

    def initialize(self):
        """The state before the first round: the process's initial state and no residual."""
        return ErrorFeedbackState(self.process.initialize(), np.int64(0), "[]", np.zeros([0], np.int64))

    def get_model_weights(self, state):
        """The global model's ``tff.learning.models.ModelWeights``."""
        return state.server.global_model_weights

    def set_model_weights(self, state, model_weights):
        """``state`` with the global model ``model_weights``."""
        return state._replace(server=state.server._replace(global_model_weights=model_weights))

    def next_for_clients(self, state, clients, datasets):
        """One round for ``clients`` (ids, in the order of ``datasets``): ``(output, record fields)``.

        ``output.state`` is the new :class:`ErrorFeedbackState`; ``output.metrics`` as FedAvg's.
        """
        index = {client: i for i, client in enumerate(json.loads(state.clients))}
        round_num = int(state.round) + 1
        residuals = [self.residual_of(state, c) if c in index else
                     [np.zeros(s.shape, s.dtype.as_numpy_dtype) for s in self.specs] for c in clients]
        ages = [round_num - int(state.last_round[index[c]]) if c in index else None for c in clients]
        output = self.process.next(state.server, datasets, residuals)
        new_state = self._store(state, clients, output.residuals, output.state, round_num)
        fields = dict(residual_age=ages, clients_seen_before=sum(age is not None for age in ages))
        return tff.learning.templates.LearningProcessOutput(new_state, output.metrics), fields

    def residual_of(self, state, client):
        """The residual ``client`` keeps in ``state`` (a list of float32 arrays, one per variable), or None."""
        known = json.loads(state.clients)
        if client not in known:
            return None
        i = known.index(client)
        path = self._path(i, int(state.last_round[i]))
        try:
            flat = np.load(path)
        except OSError as error:
            raise FileNotFoundError(
                f"the residual of client {client!r} (written in round {int(state.last_round[i])}) is missing: "
                f"{path} ({error}). The run's residual files were moved or deleted; delete the run's "
                "checkpoint folder to train it from the start.") from None
        sizes = [s.shape.num_elements() for s in self.specs]
        return [part.reshape(s.shape) for part, s in zip(np.split(flat, np.cumsum(sizes)[:-1]), self.specs)]

    def _path(self, index, round_num):
        return self.folder / f"{index}-r{round_num}.npy"

    def _store(self, state, clients, residuals, server, round_num):
        """``state`` after round ``round_num``: the new ``server`` state and ``clients``' ``residuals`` written."""
        known = json.loads(state.clients)
        known = known + [c for c in clients if c not in set(known)]
        last_round = np.concatenate([state.last_round, np.zeros(len(known) - len(state.last_round), np.int64)])
        self.folder.mkdir(parents=True, exist_ok=True)
        for client, residual in zip(clients, residuals):
            i = known.index(client)
            flat = np.concatenate([np.asarray(v, np.float32).ravel() for v in tf.nest.flatten(residual)])
            path = self._path(i, round_num)
            partial = path.with_suffix(".partial")
            with open(partial, "wb") as file:  # written whole, then renamed: a killed run leaves no half file
                np.save(file, flat)
            partial.replace(path)
            last_round[i] = round_num
        return ErrorFeedbackState(server, np.int64(round_num), json.dumps(known), last_round)


@contextlib.contextmanager
def _residual_folder(checkpoint):
    """Where a run keeps its residual files: in its checkpoint folder (removed with it), else a temporary one."""
    if checkpoint is not None:
        yield checkpoint.folder / "residuals"
        return
    with tempfile.TemporaryDirectory(prefix="error-feedback-") as folder:
        yield pathlib.Path(folder)


def train_error_feedback(model_fn, encoders, settings, train, evaluate_fn=None, *, seed=None, outputs=None):
    """Train FedAvg with client-side error feedback on ``train`` (a ``ClientData``); returns a History.

    As :func:`helpers.training.train_fed_avg`: the same initial model, clients and shuffles for
    the same ``seed``, checkpoints inside :func:`helpers.runs.cached_history` (the residual files
    in the checkpoint's folder), and each round's record also holds ``residual_age`` and
    ``clients_seen_before``.
    """
    run_seed = config.SEED if seed is None else seed
    outputs = outputs or runs.RunOutputs()
    name = outputs.name
    process = build_error_feedback_process(model_fn, encoders, settings)
    initial_weights = seeds.initial_model_weights(model_fn, run_seed)
    fingerprint = dict(function="train_error_feedback", name=name, settings=settings.as_dict(), seed=run_seed,
                       model=checkpoints.describe(model_fn), encoders=checkpoints.describe(encoders),
                       evaluate=checkpoints.describe(evaluate_fn), code=checkpoints.code_digests(SOURCES))
    checkpoint = outputs.checkpoint or checkpoints.for_run(name, fingerprint, verbose=outputs.verbose)
    with _residual_folder(checkpoint) as folder:
        rounds = ErrorFeedbackRounds(process, folder)
        _, history = training.run_rounds(
            rounds, lambda ids: data.make_federated_data(train, ids, epochs=settings.client_epochs),
            train.client_ids, settings, seed=run_seed, evaluate_fn=evaluate_fn,
            state=rounds.set_model_weights(rounds.initialize(), initial_weights),
            outputs=outputs.replace(checkpoint=checkpoint))
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
    return _summary_of_ages(ages)


def sampled_ages(client_ids, settings, seed=config.SEED):
    """The residual ages a run of ``settings`` would meet, from the course's client sampling alone (no training).

    The same clients as :func:`helpers.training.run_rounds` samples for ``seed``. One list per
    round: for each sampled client, the rounds since it was last sampled (None: never before).
    """
    last_seen, ages = {}, []
    for round_num in range(1, settings.rounds + 1):
        clients = training.sample_clients(client_ids, settings.clients_per_round,
                                          seeds.sampling_rng(seed, round_num))
        ages.append([round_num - last_seen[c] if c in last_seen else None for c in clients])
        last_seen.update({c: round_num for c in clients})
    return ages


def sampled_staleness(client_ids, settings, seed=config.SEED):
    """:func:`staleness_summary` of :func:`sampled_ages`: how stale residuals would be, before any training."""
    return _summary_of_ages(sampled_ages(client_ids, settings, seed))


def print_staleness(summary, label):
    """Print (and return) one line on :func:`staleness_summary`'s ``summary`` of the run or cohort ``label``."""
    line = f"{label}: {summary['seen_before']:.1%} of {summary['client_rounds']:,} sampled clients had been seen before"
    if summary["median_age"] is None:
        line += ", so no residual was ever used"
    else:
        median = summary["median_age"]
        line += (f"; their residuals were {median:g} round{'' if median == 1 else 's'} old at the median "
                 f"(at most {summary['max_age']})")
    print(line)
    return line


def _summary_of_ages(ages):
    """:func:`staleness_summary` of per-round lists of residual ages (None: a new client)."""
    returning = [a for round_ages in ages for a in round_ages if a is not None]
    total = sum(len(a) for a in ages)
    return dict(client_rounds=total, seen_before=len(returning) / total if total else 0.0,
                median_age=float(np.median(returning)) if returning else None,
                max_age=int(max(returning)) if returning else None,
                seen_before_by_round=[sum(x is not None for x in a) / len(a) for a in ages])
