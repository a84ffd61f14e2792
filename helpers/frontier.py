"""The compression frontier: many encoders, one training setup, what each saves and costs.

- :data:`METHODS`: method name -> a no-argument function returning a
  ``te.core.Encoder``. Every method is applied with the course's threshold
  policy (variables with more than 10,000 elements; identity below).
- :data:`SWEEP`: the sweep's rows, ``(broadcast method, aggregation method)``;
  :data:`IDENTITY` (``"identity"``) sends that direction uncompressed.
- :data:`SWEEP_RUN` and :func:`sweep_settings`: how long and with what each row trains.
- :func:`encoder_fns` turns a row into :class:`helpers.compression.EncoderFns`.
- :func:`warm_start` trains the uncompressed model for a while; every row
  starts from it.
- :func:`run_sweep` trains every row with the same seed, clients, optimizers
  and rounds, each cached on disk under a key of its configuration.
- :func:`results_table` and :func:`pareto_front` summarise the runs.
"""
import functools
import hashlib
import json
import pathlib
import time

import numpy as np
import pandas as pd
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import checkpoints, compression, config, progress, stages, training
from helpers import research_stages as research

PARAMETERS = 1_663_370  # the CNN's values, so bits per value = bits per client / PARAMETERS
IDENTITY = "identity"

# The sweep trains many runs, so each is short: every run starts from
# training.LONG_RUN after `warm_rounds` rounds (where its server step drops)
# and trains `rounds` more with the small step (notebook 06 explains).
SWEEP_RUN = dict(warm_rounds=70, rounds=20, clients_per_round=5, client_epochs=1, client_lr=0.1,
                 server_lr=0.1, server_momentum=0.9, eval_every=10)
FAST_SWEEP_SIZE = dict(warm_rounds=1, rounds=1, clients_per_round=2, eval_every=1)

METHODS = {
    IDENTITY: te.encoders.identity,
    "uniform 8-bit": functools.partial(te.encoders.uniform_quantization, bits=8),
    "uniform 4-bit": functools.partial(te.encoders.uniform_quantization, bits=4),
    "uniform 2-bit": functools.partial(te.encoders.uniform_quantization, bits=2),
    "uniform 1-bit": functools.partial(te.encoders.uniform_quantization, bits=1),
    "Hadamard 4-bit": functools.partial(te.encoders.hadamard_quantization, bits=4),
    "Kashin 4-bit": functools.partial(research.kashin_quantization_encoder, bits=4),
    "non-uniform 4-bit (05a)": functools.partial(stages.non_uniform_quantization_encoder, bits=4),
    "8-bit + Huffman (05b)": functools.partial(stages.huffman_encoder, bits=8),
    "adaptive 4-bit (05c)": functools.partial(stages.adaptive_quantization_encoder, bits=4),
    "rotated 2-bit, tight": functools.partial(research.rotated_quantization_encoder, bits=2),
    "rotated 1-bit sign (DRIVE)": research.rotated_sign_encoder,
    "top-1% values + indices": functools.partial(research.top_k_encoder, fraction=0.01),
    "nearest 4-bit, tight": functools.partial(research.tight_quantization_encoder, bits=4,
                                              stochastic=False),
    "rotated 1-bit sign, one shared rotation": functools.partial(research.rotated_sign_encoder,
                                                                 shared_seed=config.SEED),
}
# A short id of each method, for cache keys and file names; the names above are its display labels.
SLUGS = {
    IDENTITY: "identity", "uniform 8-bit": "uniform8", "uniform 4-bit": "uniform4",
    "uniform 2-bit": "uniform2", "uniform 1-bit": "uniform1", "Hadamard 4-bit": "hadamard4",
    "Kashin 4-bit": "kashin4", "non-uniform 4-bit (05a)": "nonuniform4", "8-bit + Huffman (05b)": "huffman8",
    "adaptive 4-bit (05c)": "adaptive4", "rotated 2-bit, tight": "rotated2-tight",
    "rotated 1-bit sign (DRIVE)": "drive1", "top-1% values + indices": "topk1pct",
    "nearest 4-bit, tight": "nearest4-tight", "rotated 1-bit sign, one shared rotation": "drive1-shared",
}
# Methods the sweep does not run on the aggregation alone: a broadcast encoder,
# and a comparison that `scripts/from_scratch.py` runs (notebook 06 discusses it).
NOT_SWEPT_ALONE = ("nearest 4-bit, tight", "rotated 1-bit sign, one shared rotation")

AGGREGATION_ONLY = "aggregation only"
BROADCAST_ONLY = "broadcast only"
BOTH = "both directions"

# Every method compresses the aggregation alone; a few pairs also compress the
# broadcast, from safe (8-bit) to one that should break (1-bit model).
SWEEP = [(IDENTITY, name) for name in METHODS if name not in NOT_SWEPT_ALONE] + [
    ("uniform 8-bit", IDENTITY),
    ("uniform 8-bit", "uniform 8-bit"),
    ("uniform 4-bit", "uniform 4-bit"),
    ("nearest 4-bit, tight", "rotated 1-bit sign (DRIVE)"),
    ("rotated 1-bit sign (DRIVE)", "rotated 1-bit sign (DRIVE)"),
]
# The course modules whose source defines a method, by the module of its encoder factory.
METHOD_SOURCES = {"helpers.stages": ("stages", "huffman"), "helpers.research_stages": ("research_stages",)}


def _check_method(name):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)} "
                         f"({IDENTITY!r} for an uncompressed direction).")


def encoder_fns(broadcast, aggregation, threshold=compression.DEFAULT_THRESHOLD):
    """:class:`helpers.compression.EncoderFns` for a row: two method names (:data:`IDENTITY`: uncompressed)."""
    _check_method(broadcast)
    _check_method(aggregation)

    def policy(name):
        return compression.threshold_policy(METHODS[name], threshold)

    return compression.EncoderFns(broadcast=policy(broadcast).broadcast,
                                  aggregation=policy(aggregation).aggregation)


def method_code(name):
    """16 hex digits that change whenever the code of method ``name`` changes.

    They hash the method's encoder factory with its arguments and the source of
    the course modules that define it (and of ``helpers.compression``), so a
    saved run of an older version of a method is never reused.
    """
    _check_method(name)
    factory = METHODS[name]
    module = getattr(getattr(factory, "func", factory), "__module__", "")
    files = ("compression",) + METHOD_SOURCES.get(module, ())
    text = checkpoints.describe(factory) + json.dumps(checkpoints.code_digests(files), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def row_key(settings, broadcast, aggregation):
    """What names a row's saved run: ``settings``, the two methods and their :func:`method_code`."""
    return dict(settings, broadcast=SLUGS[broadcast], aggregation=SLUGS[aggregation],
                code={"broadcast": method_code(broadcast), "aggregation": method_code(aggregation)})


def row_slug(broadcast, aggregation):
    """``"<broadcast slug>--<aggregation slug>"``: a row's id in cache keys and file names."""
    _check_method(broadcast)
    _check_method(aggregation)
    return f"{SLUGS[broadcast]}--{SLUGS[aggregation]}"


def row_name(broadcast, aggregation):
    """A run's label: ``"<aggregation>"`` alone, or ``"<broadcast> / <aggregation>"`` when the broadcast is encoded."""
    return aggregation if broadcast == IDENTITY else f"{broadcast} / {aggregation}"


def direction(broadcast, aggregation):
    """Which directions a row compresses: :data:`AGGREGATION_ONLY`, :data:`BROADCAST_ONLY` or :data:`BOTH`."""
    if broadcast == IDENTITY:
        return AGGREGATION_ONLY
    return BROADCAST_ONLY if aggregation == IDENTITY else BOTH


def sweep_settings():
    """The settings dict of every sweep row: :data:`SWEEP_RUN`, shrunk to a smoke size in fast mode."""
    settings = dict(SWEEP_RUN, fast=config.fast_mode())
    if settings["fast"]:
        settings.update(FAST_SWEEP_SIZE)
    return settings


def warm_start_settings(settings):
    """The warm start's settings: :data:`helpers.training.LONG_RUN` (shrunk in fast mode) for ``settings["warm_rounds"]`` rounds.

    The long run's server learning rate drop is left out, so the warm start
    must end before it. ``settings["clients"]`` (the number of training
    clients, when given) is kept so that another dataset gets another key.
    """
    warm = dict(_long_run(settings), rounds=settings["warm_rounds"], eval_every=None)
    warm.pop("keep_model_after", None)
    drop = warm.pop("server_lr_drop", None)  # the long run's rounds before its drop are the warm-up
    if drop is not None and drop[0] < warm["rounds"]:
        raise ValueError(f"the warm start ({warm['rounds']} rounds) must end before the long run's "
                         f"server learning rate drops (after {drop[0]} rounds).")
    return warm


def _long_run(settings):
    """Notebook 03's long run on the same data as these sweep ``settings`` (their ``clients``)."""
    return dict(training.run_settings("long"), clients=settings.get("clients"))


def warm_start_path(settings):
    """Where the long run keeps its model after ``settings["warm_rounds"]`` rounds (:func:`helpers.training.kept_model_path`)."""
    warm_start_settings(settings)  # checks that the warm start ends before the server step drops
    return training.kept_model_path(_long_run(settings), settings["warm_rounds"])


def warm_start(model_fn, settings, train, evaluate_fn=None, verbose=False):
    """Model weights after ``settings["warm_rounds"]`` rounds of the uncompressed long run.

    Notebook 03's long run keeps its model after that round at
    :func:`warm_start_path`. If it is missing, the long run's first rounds are
    trained here (the same seeds, clients and optimizers, so the same model)
    and kept there. Every sweep row
    starts from these weights, so rows are compared once training is under
    way rather than in its erratic first rounds. Loaded when saved, trained
    (and saved) otherwise. Returns a ``tff.learning.models.ModelWeights``.
    """
    warm, path = warm_start_settings(settings), warm_start_path(settings)
    if not path.exists():
        history = training.train_fed_avg(model_fn, compression.identity(), warm, train, evaluate_fn,
                                         name="warm start", verbose=verbose,
                                         snapshots={warm["rounds"]: path})
        if history.evals:
            print(f"warm start: {warm['rounds']} rounds, test accuracy {history.final_accuracy():.2%}")
    return training.load_weights(path)


def run_sweep(model_fn, settings, train, evaluate_fn, rows=SWEEP, verbose=False):
    """Train every row with ``settings``; returns ``{(broadcast, aggregation): History}``.

    Every row starts from :func:`warm_start`'s weights and trains
    ``settings["rounds"]`` rounds with the same clients (seed ``config.SEED + 1``).
    Each run is loaded from ``outputs/runs/`` when one with exactly the same
    configuration (settings, methods and :func:`method_code`) was saved,
    and trained and saved otherwise.
    """
    histories, weights = {}, []
    started = time.perf_counter()
    bar = progress.progress_bar(rows, desc="sweep", unit="row")
    for done, (broadcast, aggregation) in enumerate(bar, start=1):
        name = row_name(broadcast, aggregation)
        key = row_key(settings, broadcast, aggregation)
        encoders = encoder_fns(broadcast, aggregation)

        def train_row(encoders=encoders, name=name):
            if not weights:  # train or load the warm start only if a row needs it
                weights.append(warm_start(model_fn, settings, train, evaluate_fn, verbose))
            return training.train_fed_avg(model_fn, encoders, settings, train, evaluate_fn, name=name,
                                          verbose=verbose, initial_weights=weights[0], seed=config.SEED + 1)

        file_name = "sweep-" + row_slug(broadcast, aggregation)
        histories[(broadcast, aggregation)], _ = training.cached_history(file_name, key, train_row)
        histories[(broadcast, aggregation)].name = name
        accuracy = histories[(broadcast, aggregation)].final_accuracy()
        print(f"row {name}: test accuracy {'-' if accuracy is None else f'{accuracy:.2%}'}  "
              f"[{progress.time_left(started, done, len(rows))}]")
    bar.close()
    return histories


COLUMNS = ["direction", "broadcast", "aggregation", "broadcast bits per value",
           "aggregated bits per value", "broadcast bits", "aggregated bits", "reduction (aggregated)",
           "reduction (total)", "test accuracy (%)", "accuracy change (points)", "seconds per round"]


def results_table(histories):
    """A ``DataFrame`` with one row per run and the :data:`COLUMNS`, against the identity run.

    Bits are totals over all rounds and clients; bits per value divide one
    client's bits of one round by the CNN's 1,663,370 values.
    """
    reference = histories.get((IDENTITY, IDENTITY))
    if reference is None:
        raise ValueError("the sweep needs the identity row ('identity', 'identity') as its reference.")
    rows = []
    for (broadcast, aggregation), history in histories.items():
        client_rounds = sum(len(r["clients"]) for r in history.rounds)
        bits = {key: history.total_bits(key) for key in training.BITS_KEYS}
        rows.append({
            "direction": direction(broadcast, aggregation),
            "broadcast": broadcast,
            "aggregation": aggregation,
            "broadcast bits per value": bits["broadcast_bits"] / client_rounds / PARAMETERS,
            "aggregated bits per value": bits["aggregated_bits"] / client_rounds / PARAMETERS,
            "broadcast bits": bits["broadcast_bits"],
            "aggregated bits": bits["aggregated_bits"],
            "reduction (aggregated)": reference.total_bits("aggregated_bits") / bits["aggregated_bits"],
            "reduction (total)": _total(reference) / sum(bits.values()),
            "test accuracy (%)": 100 * history.final_accuracy(),
            "accuracy change (points)": 100 * (history.final_accuracy() - reference.final_accuracy()),
            "seconds per round": float(np.median(history.column("seconds"))),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def _total(history):
    return sum(history.total_bits(key) for key in training.BITS_KEYS)


def pareto_front(bits, accuracy):
    """Boolean mask of the points no other point beats: fewer or equal bits and higher or equal accuracy.

    ``bits`` and ``accuracy`` are equal-length sequences; a point is on the
    front unless another has ``bits <=`` and ``accuracy >=`` with one strict.
    """
    bits, accuracy = np.asarray(bits, float), np.asarray(accuracy, float)
    if bits.shape != accuracy.shape:
        raise ValueError(f"bits and accuracy differ in length: {bits.shape} vs {accuracy.shape}.")
    front = np.ones(len(bits), bool)
    for i in range(len(bits)):
        better = (bits <= bits[i]) & (accuracy >= accuracy[i]) & ((bits < bits[i]) | (accuracy > accuracy[i]))
        front[i] = not better.any()
    return front


# The frontier's targets: (label, direction, reduction column, at least this
# many times fewer bits than identity, at most this many points below it).
TARGETS = [
    ("aggregation only, >= 25x fewer uploaded bits, within 1 point", AGGREGATION_ONLY, "reduction (aggregated)", 25, 1.0),
    ("aggregation only, >= 10x fewer uploaded bits, within 0.5 points", AGGREGATION_ONLY, "reduction (aggregated)", 10, 0.5),
    ("both directions, >= 10x fewer total bits, within 1 point", BOTH, "reduction (total)", 10, 1.0),
]


def best_within(table, where, bits_column, min_reduction, max_drop):
    """The row of direction ``where`` with the largest reduction in ``bits_column`` at most ``max_drop`` points below identity and ``min_reduction``x or more; ``None`` if none."""
    rows = table[(table["direction"] == where) & (table[bits_column] >= min_reduction)
                 & (table["accuracy change (points)"] >= -max_drop)]
    return None if rows.empty else rows.sort_values(bits_column).iloc[-1]


def target_lines(table):
    """One line of text per :data:`TARGETS` entry: which row of ``table`` meets it best, or that none does."""
    lines = []
    for label, where, column, reduction, drop in TARGETS:
        best = best_within(table, where, column, reduction, drop)
        lines.append(f"{label}: " + ("not met" if best is None else
                     f"met by {best['broadcast']} / {best['aggregation']} ({best[column]:.1f}x, "
                     f"{best['accuracy change (points)']:+.2f} points)"))
    return lines


def save_results(table, folder):
    """Write ``table`` as ``results.csv`` and ``results.json`` (a list of row dicts) in ``folder``; returns both paths."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / "results.csv", folder / "results.json"
    table.to_csv(csv_path, index=False)
    table.to_json(json_path, orient="records", indent=1)
    return csv_path, json_path


def check_results_file(path, rows=SWEEP):
    """Read ``results.json`` and check it has a row for each of ``rows`` and every column of :data:`COLUMNS`.

    Returns the table as a ``DataFrame``; raises ``ValueError`` naming what is missing.
    """
    table = pd.read_json(path, orient="records")
    missing_columns = [c for c in COLUMNS if c not in table.columns]
    if missing_columns:
        raise ValueError(f"{path} lacks the columns {missing_columns}; run the sweep again.")
    have = set(zip(table["broadcast"], table["aggregation"]))
    missing = [row_name(b, a) for b, a in rows if (b, a) not in have]
    if missing:
        raise ValueError(f"{path} lacks the rows {missing}; run the sweep again.")
    if table[COLUMNS].isna().any().any():
        raise ValueError(f"{path} has empty cells:\n{table[table[COLUMNS].isna().any(axis=1)]}")
    return table
