"""Build Federated Averaging with measured communication, run its rounds, and keep what happened.

:func:`build_fed_avg` assembles ``build_weighted_fed_avg`` from
:mod:`helpers.compression`'s encoded broadcast and mean, with the course's
optimizers. :func:`run_rounds` is the course's training loop. Each round it samples
clients with a seeded generator, runs ``process.next``, prints the seed
tutorial's per-round line (loss, accuracy, broadcast and aggregated bits, and
their running totals), writes TensorBoard scalars, and every ``eval_every``
rounds evaluates the global model on the test split. It returns a
:class:`History` that saves to and loads from a JSON file.
"""
import hashlib
import json
import math
import pathlib
import time

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from helpers import runtime  # noqa: F401  (stops TFF's worker process at exit)
from helpers import checkpoints, compression, config, data, progress, seeds, sizing

BITS_KEYS = ("broadcast_bits", "aggregated_bits")

# The two runs of the course. TUTORIAL is the seed tutorial's; LONG_RUN trains
# long enough to show real learning (notebook 03 explains the choices). In fast
# mode both shrink to a smoke size.
TUTORIAL = dict(rounds=10, clients_per_round=10, client_epochs=1, client_lr=0.02, server_lr=1.0,
                eval_every=5)
# The long run keeps its model after round 70, where its server step drops: notebooks 04 and 06
# start their short runs from there (kept_models).
LONG_RUN = dict(rounds=100, clients_per_round=10, client_epochs=1, client_lr=0.1, server_lr=0.5,
                server_momentum=0.9, server_lr_drop=[70, 0.1], eval_every=10, keep_model_after=[70])
FAST_SIZE = dict(rounds=2, clients_per_round=3, eval_every=1, keep_model_after=[1])


def run_settings(name):
    """The settings dict of ``"tutorial"`` or ``"long"``, shrunk to a smoke size in fast mode.

    The sweep's settings are :func:`helpers.frontier.sweep_settings`.
    """
    runs = {"tutorial": TUTORIAL, "long": LONG_RUN}
    if name not in runs:
        raise ValueError(f"unknown run {name!r}; choose one of {sorted(runs)}.")
    settings = dict(runs[name], fast=config.fast_mode())
    if settings["fast"]:
        settings.update(FAST_SIZE)
    return settings


class History:
    """Per-round records of one run: ``rounds`` (list of dicts) and ``evals`` (list of dicts).

    Each round record has ``round`` (1-based), ``clients``, ``seconds``,
    ``loss``, ``accuracy``, ``broadcast_bits``, ``aggregated_bits``, their
    ``cumulative_*`` totals, and every other scalar metric of the process
    under its ``section/name`` path. Each eval record has ``round``, ``loss``
    and ``accuracy`` on the test split.
    """

    def __init__(self, name, config=None, rounds=None, evals=None):
        self.name = name
        self.config = dict(config or {})
        self.rounds = list(rounds or [])
        self.evals = list(evals or [])

    def column(self, key):
        """Values of ``key`` across rounds, as a numpy array."""
        return np.array([r[key] for r in self.rounds])

    def final_accuracy(self):
        """Test accuracy of the last evaluation (a fraction), or None if never evaluated."""
        return self.evals[-1]["accuracy"] if self.evals else None

    def total_bits(self, key):
        """Bits of ``key`` (``broadcast_bits`` or ``aggregated_bits``) summed over all rounds."""
        return int(sum(r[key] for r in self.rounds))

    def save(self, path):
        """Write the history as JSON to ``path``; returns the path."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = dict(name=self.name, config=self.config, rounds=self.rounds, evals=self.evals)
        path.write_text(json.dumps(data, indent=1))
        return path

    @classmethod
    def load(cls, path):
        """Read a history written by :meth:`save`."""
        path = pathlib.Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no saved history at {path}; run the training cell first.")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a saved history (invalid JSON: {error}); "
                             "delete it and train again.") from None
        return cls(data["name"], data.get("config"), data["rounds"], data.get("evals"))

    def __repr__(self):
        return f"History({self.name!r}, {len(self.rounds)} rounds, {len(self.evals)} evals)"


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
    """The per-round line: ``round  3, loss=..., accuracy=..., broadcast=... (total ...), aggregated=...``."""
    return (f"round {record['round']:3d}, loss={record['loss']:.4f}, "
            f"accuracy={record['accuracy']:.4f}, "
            f"broadcast={sizing.format_bits(record['broadcast_bits'])} "
            f"(total {sizing.format_bits(record['cumulative_broadcast_bits'])}), "
            f"aggregated={sizing.format_bits(record['aggregated_bits'])} "
            f"(total {sizing.format_bits(record['cumulative_aggregated_bits'])}), "
            f"{record['seconds']:.1f} s")


def _write_scalars(writer, step, values):
    with writer.as_default(step=step):
        for key, value in values.items():
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                tf.summary.scalar(key, float(value))
    writer.flush()


def run_rounds(process, client_datasets_fn, client_ids, num_rounds, clients_per_round=10,
               seed=0, evaluate_fn=None, eval_every=None, logdir=None, name="run",
               verbose=True, state=None, snapshots=None, model_fn=None, checkpoint=None):
    """Train ``process`` for ``num_rounds`` rounds; returns ``(state, History)``.

    - ``client_datasets_fn(ids)`` returns the preprocessed ``tf.data`` datasets of those clients.
      It is called inside :func:`helpers.seeds.round_seeds`, so
      :func:`helpers.data.make_federated_data` shuffles each client with seeds of
      (``seed``, round, client id).
    - Round ``r``'s clients are sampled from ``client_ids`` with
      :func:`helpers.seeds.sampling_rng` (``seed``, ``r``), so the same seed gives
      the same clients every run, and a resumed run the same as an uninterrupted one.
    - ``model_fn``: when given (and ``state`` is not), the initial model is
      :func:`helpers.seeds.initial_model_weights` of ``seed`` instead of the
      weights ``process.initialize()`` drew when TFF traced it.
    - ``evaluate_fn(model_weights)`` returns ``{'loss':..., 'accuracy':...}`` on the
      test split; it runs every ``eval_every`` rounds and after the last round.
    - ``logdir``: a folder for TensorBoard scalars (none written if ``None``).
    - ``state``: continue from this state instead of ``process.initialize()``.
    - ``snapshots``: ``{round: path}``; after those rounds the global model's
      weights are saved to ``path`` with :func:`save_weights`.
    - ``checkpoint``: a :class:`helpers.checkpoints.RunCheckpoints`. The run
      resumes from its latest checkpoint and saves the state and history every
      ``checkpoint.every`` rounds and after the last one.
    """
    if isinstance(num_rounds, bool) or not isinstance(num_rounds, (int, np.integer)) or num_rounds < 1:
        raise ValueError(f"num_rounds must be a positive integer, got {num_rounds!r}.")
    snapshots = dict(snapshots or {})
    outside = [r for r in snapshots if r not in range(1, num_rounds + 1)]
    if outside:
        raise ValueError(f"snapshot rounds {outside} are outside this run's rounds 1..{num_rounds}.")
    history = History(name, dict(num_rounds=int(num_rounds), clients_per_round=int(clients_per_round),
                                 seed=seed))
    if state is None:
        state = process.initialize()
        if model_fn is not None:
            state = process.set_model_weights(state, seeds.initial_model_weights(model_fn, seed))
    done = 0
    resumed = checkpoint.resume(state) if checkpoint is not None else None
    if resumed is not None:
        state, saved, done = resumed
        history = History(saved["name"], saved["config"], saved["rounds"], saved["evals"])
    writer = tf.summary.create_file_writer(str(logdir)) if logdir else None
    rounds = range(done + 1, num_rounds + 1)
    bar = progress.progress_bar(rounds, desc=name, unit="round") if verbose else rounds
    started = time.perf_counter()
    for round_num in bar:
        clients = sample_clients(client_ids, clients_per_round, seeds.sampling_rng(seed, round_num))
        with seeds.round_seeds(seed, round_num):
            datasets = client_datasets_fn(clients)
        start = time.perf_counter()
        output = process.next(state, datasets)
        seconds = time.perf_counter() - start
        state = output.state
        record = _round_record(round_num, clients, seconds, output.metrics,
                               history.rounds[-1] if history.rounds else None)
        history.rounds.append(record)
        if verbose:
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
                print(f"          test: loss={result['loss']:.4f}, accuracy={result['accuracy']:.4f}")
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


def _with_lr_drop(optimizer, learning_rate, drop):
    """``optimizer`` whose learning rate becomes ``drop[1]`` after ``drop[0]`` rounds."""
    after_rounds, new_rate = drop
    if isinstance(after_rounds, bool) or not isinstance(after_rounds, int) or after_rounds < 0 \
            or not isinstance(new_rate, (int, float)) or new_rate <= 0:
        raise ValueError(f"server_lr_drop must be (rounds >= 0, learning rate > 0), got {drop!r}.")

    def schedule(round_index):  # 0 for the first round
        return tf.where(round_index < after_rounds, float(learning_rate), float(new_rate))

    return tff.learning.optimizers.schedule_learning_rate(optimizer, schedule)


def build_fed_avg(model_fn, encoders=None, client_learning_rate=0.02, server_learning_rate=1.0,
                  server_momentum=0.0, server_lr_drop=None):
    """``build_weighted_fed_avg`` with measured (and optionally compressed) communication.

    ``encoders`` is a :class:`helpers.compression.EncoderFns` (default
    :func:`helpers.compression.identity`: both directions uncompressed, still
    measured). Optimizers default to the seed tutorial's: client SGD 0.02,
    server SGD 1.0 without momentum (``server_momentum`` > 0 gives FedAvgM).
    ``server_lr_drop=(after_rounds, learning_rate)`` switches the server to
    ``learning_rate`` once ``after_rounds`` rounds have run.
    """
    encoders = encoders or compression.identity()
    server_optimizer = tff.learning.optimizers.build_sgdm(
        learning_rate=server_learning_rate, momentum=server_momentum or None)
    if server_lr_drop is not None:
        server_optimizer = _with_lr_drop(server_optimizer, server_learning_rate, server_lr_drop)
    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=client_learning_rate),
        server_optimizer_fn=server_optimizer,
        model_distributor=compression.build_encoded_broadcast_process(model_fn, encoders.broadcast),
        model_aggregator=compression.build_encoded_mean_factory(encoders.aggregation),
    )


def train_fed_avg(model_fn, encoders, settings, train, evaluate_fn=None, name="run", logdir=None,
                  verbose=True, initial_weights=None, seed=None, snapshots=None, checkpoint_dir=None,
                  checkpoint_every=checkpoints.DEFAULT_EVERY):
    """Build FedAvg with ``encoders`` (:class:`helpers.compression.EncoderFns`) and train it.

    ``settings`` is a dict like :data:`LONG_RUN` (rounds, clients_per_round,
    client_epochs, client_lr, server_lr, server_momentum, eval_every);
    ``train`` is the training ``ClientData``. Every random choice comes from
    ``seed`` (default ``config.SEED``), the round and the client
    (:mod:`helpers.seeds`): the initial model, the clients sampled and each
    client's shuffle, so a run with the same settings repeats bit for bit.
    ``initial_weights`` (a ``tff.learning.models.ModelWeights``) starts from a
    trained model instead of a fresh one. ``snapshots`` (``{round: path}``)
    saves the model's weights after those rounds. ``checkpoint_dir``: keep
    checkpoints every ``checkpoint_every`` rounds in a folder under it named by
    the run's fingerprint, and resume from them (:mod:`helpers.checkpoints`;
    inside :func:`cached_history` the default is ``outputs/checkpoints/``).
    Returns a :class:`History`.
    """
    run_seed = config.SEED if seed is None else seed
    process = build_fed_avg(model_fn, encoders, client_learning_rate=settings["client_lr"],
                            server_learning_rate=settings["server_lr"],
                            server_momentum=settings.get("server_momentum", 0.0),
                            server_lr_drop=settings.get("server_lr_drop"))
    if initial_weights is None:
        initial_weights = seeds.initial_model_weights(model_fn, run_seed)
    state = process.set_model_weights(process.initialize(), initial_weights)
    checkpoint = _checkpoints_for(name, settings, run_seed, model_fn, encoders, evaluate_fn,
                                  initial_weights, checkpoint_dir, checkpoint_every, verbose)
    _, history = run_rounds(
        process, lambda ids: data.make_federated_data(train, ids, epochs=settings["client_epochs"]),
        train.client_ids, settings["rounds"], settings["clients_per_round"],
        seed=run_seed, evaluate_fn=evaluate_fn,
        eval_every=settings["eval_every"], logdir=logdir, name=name, verbose=verbose, state=state,
        snapshots=snapshots, checkpoint=checkpoint)
    history.config.update(settings)
    return history


def _checkpoints_for(name, settings, seed, model_fn, encoders, evaluate_fn, initial_weights, folder,
                     every, verbose):
    """The :class:`helpers.checkpoints.RunCheckpoints` of a :func:`train_fed_avg` run, or None."""
    active = checkpoints.active()
    if folder is None and active is None:
        return None
    fingerprint = dict(function="train_fed_avg", name=name, settings=settings, seed=seed,
                       model=checkpoints.describe(model_fn), encoders=checkpoints.describe(encoders),
                       evaluate=checkpoints.describe(evaluate_fn),
                       initial_weights=checkpoints.array_digest(initial_weights))
    checkpoint = checkpoints.RunCheckpoints(folder or active["root"], name, fingerprint,
                                            every if folder is not None else active["every"],
                                            verbose=verbose)
    if active is not None:
        active["used"].append(checkpoint)
    return checkpoint


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


def settings_key(settings):
    """A 12-hex-digit hash of a JSON-serialisable settings dict, to name saved runs."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def kept_model_path(settings, round_num):
    """Where a run with ``settings`` keeps its global model after ``round_num`` rounds (``outputs/runs/*.npz``)."""
    return config.output_dir("runs") / f"model-{settings_key(settings)}-after-round-{round_num}.npz"


def kept_models(settings):
    """``{round: path}`` for each round in ``settings["keep_model_after"]``: pass it as ``snapshots``."""
    return {r: kept_model_path(settings, r) for r in settings.get("keep_model_after", ())}


def cached_history(name, settings, train_fn, checkpoint_every=checkpoints.DEFAULT_EVERY):
    """Load the saved :class:`History` of a run with exactly these ``settings``, or train and save it.

    ``settings`` is a JSON-serialisable dict describing the run (rounds,
    clients, learning rates, data, fast mode...); its hash names the file
    under ``outputs/runs/``. ``train_fn()`` returns a History. Returns
    ``(history, path)``. While ``train_fn`` runs, :func:`train_fed_avg`
    checkpoints every ``checkpoint_every`` rounds under ``outputs/checkpoints/``
    and resumes a run that was killed; the checkpoints are deleted once the
    history is saved.
    """
    path = config.output_dir("runs") / f"{name}-{settings_key(settings)}.json"
    if path.exists():
        print(f"loaded {name} from {path} (delete the file to train it again)")
        return History.load(path), path
    with checkpoints.enabled(every=checkpoint_every) as used:
        history = train_fn()
    history.config.update(settings)
    history.save(path)
    for checkpoint in used:
        if checkpoint.finished:
            checkpoint.discard()
    return history, path
