"""Build Federated Averaging with measured communication, run its rounds, and keep what happened.

:func:`build_fed_avg` assembles ``build_weighted_fed_avg`` from
:mod:`helpers.compression`'s encoded broadcast and mean, with the course's
optimizers. :func:`run_rounds` is the course's training loop. Each round it samples
clients with a seeded generator, runs ``process.next``, prints the original
tutorial's per-round line (loss, accuracy, broadcast and aggregated bits, and
their running totals) every :func:`line_every` rounds, writes TensorBoard scalars, and every ``eval_every``
rounds evaluates the global model on the test split. It returns a
:class:`helpers.runs.history.History`. :func:`train_fed_avg` trains one run of a
:class:`helpers.runs.RunSettings`; :func:`train_paired` trains it once per seed,
for paired comparisons (:mod:`helpers.runs.intervals`).
"""
import math
import pathlib
import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from helpers import compression, config, data, runs, sizing
from helpers.runs import checkpoints, progress, seeds
from helpers.runs.history import BITS_KEYS, History
from helpers.workers import runtime

def sample_clients(client_ids, clients_per_round, rng):
    """``clients_per_round`` distinct ids drawn from ``client_ids`` with the numpy Generator ``rng``."""
    client_ids = list(client_ids)
    if isinstance(clients_per_round, bool) or not isinstance(clients_per_round, (int, np.integer)):
        raise TypeError(f"clients_per_round must be an integer, got {clients_per_round!r}.")
    if clients_per_round <= 0:
        raise ValueError(f"clients_per_round must be at least 1, got {clients_per_round}.")
    if clients_per_round > len(client_ids):
        raise ValueError(f"clients_per_round={clients_per_round} but the data has only "
                         f"{len(client_ids)} clients; sample at most {len(client_ids)}.")
    picked = rng.choice(len(client_ids), size=clients_per_round, replace=False)
    return [client_ids[i] for i in picked]


def flatten_metrics(metrics, prefix=""):
    """Nested metrics -> flat dict ``{'section/name': float}`` of the scalar leaves."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            flat.update(flatten_metrics(value, name + "/"))
        elif np.ndim(value) == 0:
            flat[name] = value.item() if hasattr(value, "item") else value
    return flat


def _round_record(round_num, clients, seconds, metrics, previous):
    flat = flatten_metrics(metrics)
    record = dict(round=round_num, clients=list(clients), seconds=seconds)
    record["loss"] = flat.get("client_work/train/loss", float("nan"))
    record["accuracy"] = flat.get("client_work/train/sparse_categorical_accuracy", float("nan"))
    record["broadcast_bits"] = int(flat.get("distributor/broadcast_bits", 0))
    record["aggregated_bits"] = int(flat.get("aggregator/aggregated_bits", 0))
    for key in BITS_KEYS:
        record["cumulative_" + key] = record[key] + (previous["cumulative_" + key] if previous else 0)
    record.update({k: v for k, v in flat.items() if k not in record})
    return record


def format_round(record):
    """The per-round line: the clients' training loss and accuracy, the bits sent this round and in all, seconds.

    ``round  10  training loss 0.412, accuracy 87.2%  sent 507.62 Mibit each way (total 4.96 Gibit)  2.1 s``;
    when the two directions differ, ``sent 146.46 Mibit down, 507.62 Mibit up (totals ..., ...)``.
    """
    broadcast, aggregated = record["broadcast_bits"], record["aggregated_bits"]
    total_broadcast, total_aggregated = record["cumulative_broadcast_bits"], record["cumulative_aggregated_bits"]
    if (broadcast, total_broadcast) == (aggregated, total_aggregated):
        sent = f"sent {sizing.format_bits(broadcast)} each way (total {sizing.format_bits(total_broadcast)})"
    else:
        sent = (f"sent {sizing.format_bits(broadcast)} down, {sizing.format_bits(aggregated)} up "
                f"(totals {sizing.format_bits(total_broadcast)}, {sizing.format_bits(total_aggregated)})")
    return (f"round {record['round']:3d}  training loss {record['loss']:.3f}, "
            f"accuracy {record['accuracy']:.1%}  {sent}  {record['seconds']:.1f} s")


def line_every(num_rounds):
    """Print every how many rounds' line: every round up to 10 rounds, then every ``num_rounds // 10``-th."""
    return max(1, num_rounds // 10)


def _write_scalars(writer, step, values):
    with writer.as_default(step=step):
        for key, value in values.items():
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                tf.summary.scalar(key, float(value))
    writer.flush()


def initial_state(process, model_fn, seed=config.SEED):
    """``process.initialize()`` with the model of ``seed`` in place of the one TF's initializers drew.

    TFF draws the initial model when it traces ``initialize``, from TensorFlow's global random state, so it
    depends on what ran before. :func:`helpers.runs.seeds.initial_model_weights` depends on ``seed`` alone.
    """
    return process.set_model_weights(process.initialize(), seeds.initial_model_weights(model_fn, seed))


def run_rounds(process, client_datasets_fn, client_ids, settings, *, seed=config.SEED, evaluate_fn=None,
               state=None, outputs=None):
    """Train ``process`` for ``settings.rounds`` rounds; returns ``(state, History)``.

    ``settings`` is a :class:`helpers.runs.RunSettings`: how many rounds and
    clients, and how often to evaluate (``eval_every``). What is per call:

    - ``client_datasets_fn(ids)`` returns the preprocessed ``tf.data`` datasets of those clients.
      It is called inside :func:`helpers.runs.seeds.round_seeds`, so
      :func:`helpers.data.make_federated_data` shuffles each client with seeds of
      (``seed``, round, client id).
    - Round ``r``'s clients are sampled from ``client_ids`` with
      :func:`helpers.runs.seeds.sampling_rng` (``seed``, ``r``), so the same seed gives
      the same clients every run, and a resumed run the same as an uninterrupted one.
    - ``evaluate_fn(model_weights)`` returns ``{'loss':..., 'accuracy':...}`` on the
      test split; it runs every ``settings.eval_every`` rounds and after the last round.
    - ``state``: start from this state (:func:`initial_state` draws the seed's model)
      instead of ``process.initialize()``.
    - ``outputs``: a :class:`helpers.runs.RunOutputs`: the run's name, progress lines,
      TensorBoard folder, model snapshots and checkpoints (default: a run named "run"
      that prints its progress and writes nothing). With a checkpoint the run resumes
      from its latest one and saves the state and history every ``checkpoint.every``
      rounds and after the last one.
    - A process with a method ``next_for_clients`` keeps state for each client
      (:func:`_next_round`); its state is whatever that method returns.
    """
    outputs = _outputs(outputs)
    name, verbose, logdir, checkpoint = outputs.name, outputs.verbose, outputs.logdir, outputs.checkpoint
    if not isinstance(settings, runs.RunSettings):
        raise TypeError(f"settings must be a helpers.runs.RunSettings (runs.run_settings('tutorial'), say), "
                        f"got {type(settings).__name__}.")
    num_rounds, clients_per_round, eval_every = settings.rounds, settings.clients_per_round, settings.eval_every
    snapshots = dict(outputs.snapshots or {})
    outside = [r for r in snapshots if r not in range(1, num_rounds + 1)]
    if outside:
        raise ValueError(f"snapshot rounds {outside} are outside this run's rounds 1..{num_rounds}.")
    history = History(name, dict(settings.as_dict(), seed=seed))
    if state is None:
        state = process.initialize()
    done = 0
    resumed = checkpoint.resume(state) if checkpoint is not None else None
    if resumed is not None:
        state, saved, done = resumed
        history = History(saved["name"], saved["config"], saved["rounds"], saved["evals"])
    writer = tf.summary.create_file_writer(str(logdir)) if logdir else None
    rounds = range(done + 1, num_rounds + 1)
    bar = progress.progress_bar(rounds, desc=name, unit="round") if verbose else rounds
    started = time.perf_counter()
    every = line_every(num_rounds)
    if verbose:
        print(f"{name}: {num_rounds} rounds of {clients_per_round} clients, "
              f"{'a line per round' if every == 1 else f'a line every {every} rounds'} "
              "(training: the clients' own data; test: the test split)")
    for round_num in bar:
        clients = sample_clients(client_ids, clients_per_round, seeds.sampling_rng(seed, round_num))
        with seeds.round_seeds(seed, round_num):
            datasets = client_datasets_fn(clients)
        start = time.perf_counter()
        output, fields = _next_round(process, state, clients, datasets)
        seconds = time.perf_counter() - start
        state = output.state
        record = _round_record(round_num, clients, seconds, output.metrics,
                               history.rounds[-1] if history.rounds else None)
        record.update(fields)
        history.rounds.append(record)
        if verbose and (round_num % every == 0 or round_num == num_rounds):
            print(f"{format_round(record)}  [{progress.time_left(started, round_num - done, num_rounds - done)}]")
        if writer:
            _write_scalars(writer, round_num, {k: v for k, v in record.items() if k != "round"})
        if round_num in snapshots:
            save_weights(process.get_model_weights(state), snapshots[round_num])
        last = round_num == num_rounds
        if evaluate_fn and (last or (eval_every and round_num % eval_every == 0)):
            result = dict(evaluate_fn(process.get_model_weights(state)), round=round_num)
            history.evals.append(result)
            if verbose:
                print(f"round {round_num:3d}  test accuracy {result['accuracy']:.2%}, test loss {result['loss']:.3f}")
            if writer:
                _write_scalars(writer, round_num, {"test/" + k: v for k, v in result.items()
                                                   if k != "round"})
        if checkpoint is not None and checkpoint.due(round_num, num_rounds):
            checkpoint.save(round_num, state, dict(name=history.name, config=history.config,
                                                   rounds=history.rounds, evals=history.evals))
    if checkpoint is not None:
        checkpoint.finished = True
    if verbose:
        bar.close()
    if writer:
        writer.close()
    return state, history


def _outputs(outputs):
    """``outputs`` checked, or the default :class:`helpers.runs.RunOutputs`."""
    if outputs is None:
        return runs.RunOutputs()
    if not isinstance(outputs, runs.RunOutputs):
        raise TypeError(f"outputs must be a helpers.runs.RunOutputs (runs.RunOutputs(name='baseline'), say), "
                        f"got {type(outputs).__name__}.")
    return outputs


def _next_round(process, state, clients, datasets):
    """One round of ``process``: ``(output, fields for the round's record)``.

    A process that keeps state for each client has a method ``next_for_clients(state, clients,
    datasets)`` (:class:`helpers.frontier.error_feedback.ErrorFeedbackRounds`): it is told the round's
    client ids and returns its own record fields too. Any other process: ``process.next(state, datasets)``.
    """
    if hasattr(process, "next_for_clients"):
        return process.next_for_clients(state, clients, datasets)
    return process.next(state, datasets), {}


def _with_lr_drop(optimizer, learning_rate, drop):
    """``optimizer`` whose learning rate becomes ``drop[1]`` after ``drop[0]`` rounds."""
    after_rounds, new_rate = drop  # checked by RunSettings

    def schedule(round_index):  # 0 for the first round
        return tf.where(round_index < after_rounds, float(learning_rate), float(new_rate))

    return tff.learning.optimizers.schedule_learning_rate(optimizer, schedule)


def fed_avg_optimizers(settings):
    """``(client optimizer, server optimizer)`` of a :class:`helpers.runs.RunSettings`, as TFF optimizers.

    Client SGD at ``client_lr``; server SGD at ``server_lr`` with ``server_momentum`` (FedAvgM when
    above 0), switched to ``server_lr_drop[1]`` after ``server_lr_drop[0]`` rounds.
    """
    server_optimizer = tff.learning.optimizers.build_sgdm(
        learning_rate=settings.server_lr, momentum=settings.server_momentum or None)
    if settings.server_lr_drop is not None:
        server_optimizer = _with_lr_drop(server_optimizer, settings.server_lr, settings.server_lr_drop)
    return tff.learning.optimizers.build_sgdm(learning_rate=settings.client_lr), server_optimizer


def build_fed_avg(model_fn, encoders=None, settings=None, aggregator=None):
    """``build_weighted_fed_avg`` with measured (and optionally compressed) communication.

    ``encoders`` is a :class:`helpers.compression.EncoderFns` (default
    :func:`helpers.compression.identity`: both directions uncompressed, still
    measured). The optimizers are those of ``settings`` (a
    :class:`helpers.runs.RunSettings`; default :data:`helpers.runs.TUTORIAL`, the
    original tutorial's client SGD 0.02 and server SGD 1.0), from
    :func:`fed_avg_optimizers`. ``aggregator``: a weighted aggregation factory
    that replaces the encoded mean of ``encoders.aggregation`` (it must measure
    ``aggregated_bits`` itself).

    First it gives back what the processes run before still hold
    (:func:`helpers.workers.runtime.release_finished_runs`: TFF's compiler cache and its
    worker), so a notebook that trains many processes holds about one at a time.
    """
    runtime.release_finished_runs()
    encoders = encoders or compression.identity()
    settings = settings or runs.TUTORIAL
    client_optimizer, server_optimizer = fed_avg_optimizers(settings)
    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=client_optimizer,
        server_optimizer_fn=server_optimizer,
        model_distributor=compression.build_encoded_broadcast_process(model_fn, encoders.broadcast),
        model_aggregator=aggregator or compression.build_encoded_mean_factory(encoders.aggregation),
    )


class BuiltFedAvg(NamedTuple):
    """A FedAvg ``process`` that :func:`build_fed_avg` built with ``encoders``, to train again without rebuilding."""

    process: object
    encoders: compression.EncoderFns


def train_fed_avg(model_fn, encoders, settings, train, evaluate_fn=None, *, seed=None, initial_weights=None,
                  outputs=None):
    """Build FedAvg with ``encoders`` (:class:`helpers.compression.EncoderFns`) and train it; a :class:`History`.

    ``settings`` is a :class:`helpers.runs.RunSettings`; ``train`` is the
    training ``ClientData``. Every random choice comes from ``seed`` (default
    ``config.SEED``), the round and the client (:mod:`helpers.runs.seeds`): the
    initial model, the clients sampled and each client's shuffle, so a run
    with the same settings repeats bit for bit. ``initial_weights`` (a
    ``tff.learning.models.ModelWeights``) starts from a trained model instead
    of a fresh one. ``outputs``: a :class:`helpers.runs.RunOutputs` (name,
    progress lines, TensorBoard folder, snapshots). Inside
    :func:`helpers.runs.checkpoints.enabled` (as inside
    :func:`helpers.runs.cached_history`) the run keeps checkpoints in a folder
    named by its fingerprint and resumes from them. ``encoders`` may also be a
    :class:`BuiltFedAvg`, whose process is reused instead of building another.
    """
    run_seed = config.SEED if seed is None else seed
    outputs = _outputs(outputs)
    if isinstance(encoders, BuiltFedAvg):
        process, encoders = encoders
    else:
        process = build_fed_avg(model_fn, encoders, settings)
    if initial_weights is None:
        initial_weights = seeds.initial_model_weights(model_fn, run_seed)
    state = process.set_model_weights(process.initialize(), initial_weights)
    fingerprint = dict(function="train_fed_avg", name=outputs.name, settings=settings.as_dict(), seed=run_seed,
                       model=checkpoints.describe(model_fn), encoders=checkpoints.describe(encoders),
                       evaluate=checkpoints.describe(evaluate_fn),
                       initial_weights=checkpoints.array_digest(initial_weights))
    _, history = run_rounds(
        process, lambda ids: data.make_federated_data(train, ids, epochs=settings.client_epochs),
        train.client_ids, settings, seed=run_seed, evaluate_fn=evaluate_fn, state=state,
        outputs=outputs.replace(checkpoint=_checkpoint_for(fingerprint, outputs)))
    return history


def train_paired(model_fn, encoders, settings, train, evaluate_fn, run_seeds, *, initial_weights=None,
                 outputs=None):
    """Train the same FedAvg once per seed of ``run_seeds``; returns one :class:`History` per seed, in order.

    Every method trained with the same ``run_seeds`` gets, seed by seed, the
    same initial model (``initial_weights``, or one drawn from the seed), the
    same clients and the same shuffles: their comparison is paired
    (:mod:`helpers.runs.intervals`). Each run is saved under ``outputs/runs/`` as
    ``<name>-seed<seed>-<hash>.json``, keyed by ``outputs.key`` (default: ``settings``),
    the seed and the source of ``encoders``, and loaded when saved (one line
    counts the loaded runs). The process is built once, when the first seed
    needs training. ``outputs`` (a :class:`helpers.runs.RunOutputs`): its ``name``
    names the runs; with ``verbose`` each seed's test accuracy is printed. The
    runs themselves print nothing.
    """
    outputs = _outputs(outputs)
    key = dict(outputs.key or settings.as_dict())
    if initial_weights is not None:
        key["initial_weights"] = checkpoints.array_digest(initial_weights)
    built, histories, started = [], [], time.perf_counter()
    with runs.one_line_for_loaded_runs():
        for done, seed in enumerate(run_seeds, start=1):
            def train_one(seed=seed):
                if not built:
                    built.append(BuiltFedAvg(build_fed_avg(model_fn, encoders, settings), encoders))
                return train_fed_avg(model_fn, built[0], settings, train, evaluate_fn, seed=seed,
                                     initial_weights=initial_weights,
                                     outputs=runs.RunOutputs(name=outputs.name, verbose=False))

            history, _ = runs.cached_history(f"{outputs.name}-seed{seed}", dict(key, seed=seed), train_one,
                                             code=encoders)
            histories.append(history)
            accuracy = history.final_accuracy()
            if outputs.verbose:
                print(f"{outputs.name}, seed {seed}: test accuracy {'-' if accuracy is None else f'{accuracy:.2%}'}  "
                      f"[{progress.time_left(started, done, len(run_seeds))}]")
    return histories


def _checkpoint_for(fingerprint, outputs):
    """The :class:`helpers.runs.checkpoints.RunCheckpoints` of a :func:`train_fed_avg` run, or None.

    ``outputs.checkpoint`` when given; else one inside :func:`helpers.runs.checkpoints.enabled`; else None.
    """
    if outputs.checkpoint is not None:
        return outputs.checkpoint
    return checkpoints.for_run(outputs.name, fingerprint, verbose=outputs.verbose)


def save_weights(model_weights, path):
    """Save a ``tff.learning.models.ModelWeights``'s trainable arrays to the ``.npz`` file ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, *model_weights.trainable)


def load_weights(path):
    """The ``tff.learning.models.ModelWeights`` saved by :func:`save_weights` at ``path``."""
    with np.load(path) as saved:
        trainable = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    return tff.learning.models.ModelWeights(trainable=trainable, non_trainable=[])


def keras_evaluator(keras_model_fn, test_dataset):
    """A function ``model_weights -> {'loss', 'accuracy'}`` evaluating on ``test_dataset`` with Keras.

    ``keras_model_fn()`` builds the uncompiled Keras model the TFF model wraps;
    ``test_dataset`` yields ``(x, y)`` or ``OrderedDict(x=, y=)`` batches. A
    fresh Keras model is built for every call: building a TFF process creates
    models in a separate graph, which invalidates Keras models made earlier.
    The loss is the exactly rounded mean (``math.fsum``) of the per-example
    cross-entropies and the accuracy a count, so neither depends on the order
    of the examples: TFF's ``create_tf_dataset_from_all_clients()`` orders the
    clients at random unless it is given a seed.
    """
    dataset = test_dataset.map(_as_tuple).cache()  # read and decoded once, kept in memory
    labels = []

    def evaluate(model_weights):
        if not labels:
            labels.append(np.concatenate([y for _, y in dataset.as_numpy_iterator()]))
        model = keras_model_fn()
        model_weights.assign_weights_to(model)
        probabilities = model.predict(dataset, verbose=0)
        losses = tf.keras.losses.sparse_categorical_crossentropy(labels[0], probabilities).numpy()
        correct = int(np.sum(np.argmax(probabilities, axis=-1) == labels[0]))
        return dict(loss=math.fsum(losses.astype(float)) / len(losses), accuracy=correct / len(losses))

    return evaluate


def _as_tuple(*batch):
    if len(batch) == 1:  # an OrderedDict(x=..., y=...)
        return batch[0]["x"], batch[0]["y"]
    return batch
