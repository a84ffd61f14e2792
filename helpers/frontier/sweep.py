"""The compression frontier: many encoders, one training setup, what each saves and costs.

- :data:`METHODS`: method name -> a no-argument function returning a
  ``te.core.Encoder``. Every method is applied with the course's threshold
  policy (variables with more than 10,000 elements; identity below).
- :data:`SWEEP`: the sweep's rows, ``(broadcast method, aggregation method)``; :func:`sweep_rows`,
  :func:`available_methods` and :func:`left_out` leave out notebook 05's methods in a graded release;
  :data:`IDENTITY` (``"identity"``) sends that direction uncompressed.
- :data:`SWEEP_RUN` and :func:`sweep_settings`: how long and with what each
  row trains in the course (from a warm start); :data:`FROM_SCRATCH_RUN`: the
  opt-in protocol of ``make frontier`` (every row from a fresh model).
- :func:`encoder_fns` turns a row into :class:`helpers.compression.EncoderFns`.
- :func:`warm_start` trains the uncompressed model for a while; every row
  of the course's sweep starts from it.
- :func:`run_sweep` trains every row once per seed, with the same clients,
  optimizers and rounds for every row of a seed (paired), each run cached on
  disk under a key of its configuration.
- :func:`results_table` summarises the runs, with each row's accuracy
  difference to identity and its confidence interval (:mod:`helpers.runs.intervals`);
  :func:`pareto_front` and :func:`best_within` read the table.
"""
import functools
import hashlib
import json
import pathlib
import time

import numpy as np
import pandas as pd
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import compression, config, runs, training
from helpers.exercises import stages
from helpers.runs import checkpoints, intervals, progress
from helpers.frontier import baselines
from helpers.frontier import research_stages as research
from helpers.runs.history import BITS_KEYS

PARAMETERS = 1_663_370  # the CNN's values, so bits per value = bits per client / PARAMETERS
IDENTITY = "identity"

# The sweep trains every row once per seed, so each run is short: it starts from
# runs.LONG_RUN after `warm_rounds` rounds (where its server step drops) and
# trains `rounds` more with the small step (notebook 06 explains).
SWEEP_RUN = runs.RunSettings(warm_rounds=70, rounds=20, clients_per_round=5, client_lr=0.1, server_lr=0.1,
                             server_momentum=0.9)
FAST_SWEEP_SIZE = dict(warm_rounds=1, rounds=1, clients_per_round=2, fast=True)
# `make frontier`: every row from a fresh model, trained as long as notebook 03's long run.
FROM_SCRATCH_RUN = runs.LONG_RUN.replace(eval_every=None, keep_model_after=())
FAST_FROM_SCRATCH_SIZE = dict(rounds=2, clients_per_round=2, server_lr_drop=(1, 0.1), fast=True)

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
    # The literature's baselines (helpers/frontier/baselines.py), for the from-scratch frontier.
    "1-bit sign, mean scale": baselines.sign_encoder,
    "QSGD 4-bit": functools.partial(baselines.qsgd_encoder, levels=7),
    "QSGD 2-bit": functools.partial(baselines.qsgd_encoder, levels=1),
    "TernGrad": baselines.terngrad_encoder,
}
# Notebook 05's reference stages: a graded release withholds them, so its sweep leaves their rows out
# (available_methods, sweep_rows, left_out).
EXERCISE_METHODS = ("non-uniform 4-bit (05a)", "8-bit + Huffman (05b)", "adaptive 4-bit (05c)")
# A short id of each method, for cache keys and file names; the names above are its display labels.
SLUGS = {
    IDENTITY: "identity", "uniform 8-bit": "uniform8", "uniform 4-bit": "uniform4",
    "uniform 2-bit": "uniform2", "uniform 1-bit": "uniform1", "Hadamard 4-bit": "hadamard4",
    "Kashin 4-bit": "kashin4", "non-uniform 4-bit (05a)": "nonuniform4", "8-bit + Huffman (05b)": "huffman8",
    "adaptive 4-bit (05c)": "adaptive4", "rotated 2-bit, tight": "rotated2-tight",
    "rotated 1-bit sign (DRIVE)": "drive1", "top-1% values + indices": "topk1pct",
    "nearest 4-bit, tight": "nearest4-tight", "rotated 1-bit sign, one shared rotation": "drive1-shared",
    "1-bit sign, mean scale": "sign1-mean", "QSGD 4-bit": "qsgd4", "QSGD 2-bit": "qsgd2", "TernGrad": "terngrad",
}
# Methods the sweep does not run on the aggregation alone: a broadcast encoder,
# and a comparison that `scripts/from_scratch.py` runs (notebook 06 discusses it).
NOT_SWEPT_ALONE = ("nearest 4-bit, tight", "rotated 1-bit sign, one shared rotation")
# The baselines train in the from-scratch frontier (helpers.frontier.from_scratch.HEADLINE), not in the sweep,
# which keeps notebook 06's time and memory as they were.
BASELINES = ("1-bit sign, mean scale", "QSGD 4-bit", "QSGD 2-bit", "TernGrad")

AGGREGATION_ONLY = "aggregation only"
BROADCAST_ONLY = "broadcast only"
BOTH = "both directions"

# Every method compresses the aggregation alone; a few pairs also compress the
# broadcast, from safe (8-bit) to one that should break (1-bit model).
SWEEP = [(IDENTITY, name) for name in METHODS if name not in NOT_SWEPT_ALONE + BASELINES] + [
    ("uniform 8-bit", IDENTITY),
    ("uniform 8-bit", "uniform 8-bit"),
    ("uniform 4-bit", "uniform 4-bit"),
    ("nearest 4-bit, tight", "rotated 1-bit sign (DRIVE)"),
    ("rotated 1-bit sign (DRIVE)", "rotated 1-bit sign (DRIVE)"),
]


def _withheld():
    """The methods this copy of the course cannot run: notebook 05's, in a graded release that withholds them."""
    return () if stages.solutions_available() else EXERCISE_METHODS


def available_methods():
    """:data:`METHODS` without the ones a graded release withholds (all of them in the self-study course)."""
    return {name: make for name, make in METHODS.items() if name not in _withheld()}


def sweep_rows():
    """The rows of :data:`SWEEP` this copy can run: in a graded release, without notebook 05's methods."""
    return [row for row in SWEEP if not set(row) & set(_withheld())]


def left_out():
    """The sentence saying which rows a graded release leaves out and why, or None when none is."""
    if not _withheld():
        return None
    return (f"The rows {', '.join(EXERCISE_METHODS)} are left out: they run notebook 05's reference "
            "solutions, which the instructor withheld in this graded release.")
# The course modules whose source defines a method, by the module of its encoder factory.
METHOD_SOURCES = {"helpers.exercises.stages": ("exercises/stages", "exercises/solutions", "exercises/companding",
                                               "exercises/huffman"),
                  "helpers.frontier.research_stages": ("frontier/research_stages",),
                  "helpers.frontier.baselines": ("frontier/baselines", "frontier/research_stages")}


def _check_method(name):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)} "
                         f"({IDENTITY!r} for an uncompressed direction).")


def parse_row(text):
    """``"BROADCAST/AGGREGATION"`` (two method names) -> ``(broadcast, aggregation)``; ValueError naming the problem."""
    parts = [part.strip() for part in text.split("/")]
    if len(parts) != 2:
        raise ValueError(f"a row is BROADCAST/AGGREGATION, e.g. 'identity/uniform 8-bit', got {text!r}")
    for name in parts:
        _check_method(name)
    return tuple(parts)


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
    return dict(settings.as_dict(), broadcast=SLUGS[broadcast], aggregation=SLUGS[aggregation],
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


def sweep_settings(clients=None):
    """The :class:`helpers.runs.RunSettings` of every sweep row (:data:`SWEEP_RUN`), shrunk in fast mode.

    ``clients``: the number of training clients of the data, part of the key.
    """
    settings = SWEEP_RUN.replace(**FAST_SWEEP_SIZE) if config.fast_mode() else SWEEP_RUN
    return settings.replace(clients=clients)


def from_scratch_settings(clients=None):
    """The settings of ``make frontier`` (:data:`FROM_SCRATCH_RUN`), shrunk in fast mode."""
    settings = FROM_SCRATCH_RUN.replace(**FAST_FROM_SCRATCH_SIZE) if config.fast_mode() else FROM_SCRATCH_RUN
    return settings.replace(clients=clients)


def warm_start_settings(settings):
    """The warm start's settings: notebook 03's long run on the same data, for ``settings.warm_rounds`` rounds.

    The long run's server learning rate drop is left out, so the warm start
    must end before it.
    """
    long = _long_run(settings)
    if long.server_lr_drop is not None and long.server_lr_drop[0] < settings.warm_rounds:
        raise ValueError(f"the warm start ({settings.warm_rounds} rounds) must end before the long run's "
                         f"server learning rate drops (after {long.server_lr_drop[0]} rounds).")
    return long.replace(rounds=settings.warm_rounds, eval_every=None, keep_model_after=(), server_lr_drop=None)


def _long_run(settings):
    """Notebook 03's long run on the same data as these sweep ``settings`` (their ``clients``)."""
    return runs.run_settings("long", clients=settings.clients)


def warm_start_path(settings):
    """Where the long run keeps its model after ``settings.warm_rounds`` rounds (:func:`helpers.runs.kept_model_path`)."""
    warm_start_settings(settings)  # checks that the warm start ends before the server step drops
    return runs.kept_model_path(_long_run(settings), settings.warm_rounds)


def warm_start(model_fn, settings, train, evaluate_fn=None, verbose=False):
    """Model weights after ``settings.warm_rounds`` rounds of the uncompressed long run.

    Notebook 03's long run keeps its model after that round at
    :func:`warm_start_path`. If it is missing, the long run's first rounds are
    trained here (the same seed, clients and optimizers, so the same model)
    and kept there. Every sweep row starts from these weights, so rows are
    compared once training is under way rather than in its erratic first
    rounds. Returns a ``tff.learning.models.ModelWeights``.
    """
    warm, path = warm_start_settings(settings), warm_start_path(settings)
    if not path.exists():
        history = training.train_fed_avg(
            model_fn, compression.identity(), warm, train, evaluate_fn,
            outputs=runs.RunOutputs(name="warm start", verbose=verbose, snapshots={warm.rounds: path}))
        if history.evals:
            print(f"warm start: {warm.rounds} rounds, test accuracy {history.final_accuracy():.2%}")
    return training.load_weights(path)


def run_sweep(model_fn, settings, train, evaluate_fn, rows=None, run_seeds=None, verbose=False):
    """Train every row once per seed with ``settings``; returns ``{(broadcast, aggregation): [History per seed]}``.

    ``run_seeds`` defaults to :func:`helpers.config.seeds`. Within a seed every
    row gets the same initial model, clients and shuffles, so rows compare in
    pairs. With ``settings.warm_rounds`` every row starts from
    :func:`warm_start`'s weights; with 0, from the seed's fresh model. Each run
    is loaded from ``outputs/runs/`` when one with exactly the same
    configuration (settings, seed, methods and :func:`method_code`) was saved,
    and trained and saved otherwise. ``rows`` defaults to :func:`sweep_rows`.
    """
    rows = sweep_rows() if rows is None else rows
    run_seeds = tuple(config.seeds() if run_seeds is None else run_seeds)
    with runs.one_line_for_loaded_runs():  # one line for all the saved runs loaded, not one per run
        return _sweep_rows(model_fn, settings, train, evaluate_fn, rows, run_seeds, verbose)


def _sweep_rows(model_fn, settings, train, evaluate_fn, rows, run_seeds, verbose):
    """:func:`run_sweep`'s loop: one line per row, with every seed's test accuracy."""
    histories, weights, started = {}, [], time.perf_counter()
    bar = progress.progress_bar(rows, desc="sweep", unit="row")
    for done, (broadcast, aggregation) in enumerate(bar, start=1):
        if settings.warm_rounds and not weights:
            weights.append(warm_start(model_fn, settings, train, evaluate_fn, verbose))
        name = row_name(broadcast, aggregation)
        outputs = runs.RunOutputs(name=("sweep-" if settings.warm_rounds else "scratch-")
                                  + row_slug(broadcast, aggregation),
                                  key=row_key(settings, broadcast, aggregation), verbose=False)
        runs_of_row = training.train_paired(
            model_fn, encoder_fns(broadcast, aggregation), settings, train, evaluate_fn, run_seeds,
            initial_weights=weights[0] if weights else None, outputs=outputs)
        for history in runs_of_row:
            history.name = name
        histories[(broadcast, aggregation)] = runs_of_row
        accuracies = ", ".join(f"{h.final_accuracy():.2%}" for h in runs_of_row)
        print(f"row {name}: test accuracy {accuracies} (seeds {', '.join(map(str, run_seeds))})  "
              f"[{progress.time_left(started, done, len(rows))}]")
    bar.close()
    return histories


COLUMNS = ["direction", "broadcast", "aggregation", "broadcast bits per value",
           "aggregated bits per value", "broadcast bits", "aggregated bits", "reduction (aggregated)",
           "reduction (total)", "test accuracy (%)", "accuracy change (points)", "change CI low",
           "change CI high", "seeds", "seconds per round"]


def results_table(histories):
    """A ``DataFrame`` with one row per sweep row and the :data:`COLUMNS`, against the identity row.

    ``histories`` is :func:`run_sweep`'s result (one History per seed). Bits
    are totals over all rounds and clients of one run (the mean over seeds);
    bits per value divide one client's bits of one round by the CNN's
    1,663,370 values. Test accuracy is the mean over seeds; the accuracy
    change is the mean paired difference to identity, with its confidence
    interval (``change CI low`` to ``change CI high``, :mod:`helpers.runs.intervals`).
    """
    reference = (IDENTITY, IDENTITY)
    if reference not in histories:
        raise ValueError("the sweep needs the identity row ('identity', 'identity') as its reference.")
    changes = intervals.compare_to_reference(histories, reference)
    reference_bits = _mean_bits(histories[reference])
    rows = []
    for (broadcast, aggregation), seed_runs in histories.items():
        bits, change = _mean_bits(seed_runs), changes[(broadcast, aggregation)]
        client_rounds = np.mean([sum(len(r["clients"]) for r in h.rounds) for h in seed_runs])
        rows.append({
            "direction": direction(broadcast, aggregation),
            "broadcast": broadcast,
            "aggregation": aggregation,
            "broadcast bits per value": bits["broadcast_bits"] / client_rounds / PARAMETERS,
            "aggregated bits per value": bits["aggregated_bits"] / client_rounds / PARAMETERS,
            "broadcast bits": bits["broadcast_bits"],
            "aggregated bits": bits["aggregated_bits"],
            "reduction (aggregated)": reference_bits["aggregated_bits"] / bits["aggregated_bits"],
            "reduction (total)": sum(reference_bits.values()) / sum(bits.values()),
            "test accuracy (%)": float(np.mean(intervals.accuracy_points(seed_runs))),
            "accuracy change (points)": change.mean,
            "change CI low": change.low,
            "change CI high": change.high,
            "seeds": change.n,
            "seconds per round": float(np.median(np.concatenate([h.column("seconds") for h in seed_runs]))),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def _mean_bits(seed_runs):
    """``{bits key: mean over seeds of the run's total}``; the same for every seed unless the method's size varies."""
    return {key: float(np.mean([h.total_bits(key) for h in seed_runs])) for key in BITS_KEYS}


def change_interval(row):
    """The :class:`helpers.runs.intervals.Interval` of one row of :func:`results_table`."""
    return intervals.Interval(row["accuracy change (points)"], row["change CI low"], row["change CI high"],
                              int(row["seeds"]))


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
    ("aggregation only, >= 25x fewer uploaded bits, at most 1 point below identity", AGGREGATION_ONLY,
     "reduction (aggregated)", 25, 1.0),
    ("aggregation only, >= 10x fewer uploaded bits, at most 0.5 points below identity", AGGREGATION_ONLY,
     "reduction (aggregated)", 10, 0.5),
    ("both directions, >= 10x fewer total bits, at most 1 point below identity", BOTH, "reduction (total)", 10, 1.0),
]


def best_within(table, where, bits_column, min_reduction, max_drop):
    """The row of direction ``where`` that cuts ``bits_column`` the most, ``min_reduction``x or more, while
    its whole confidence interval lies above ``-max_drop`` points; ``None`` if no row does.

    A row whose mean change is within budget but whose interval reaches below
    it is not counted: the seeds cannot show that it stays within budget. A
    row must cut something (a reduction above 1x), whatever ``min_reduction``
    says, so the identity row (1x, its interval 0 to 0) never qualifies.
    """
    rows = table[(table["direction"] == where) & (table[bits_column] >= min_reduction) & (table[bits_column] > 1)
                 & (table["change CI low"] >= -max_drop)]  # Interval.at_most_below, on the table's columns
    return None if rows.empty else rows.sort_values(bits_column).iloc[-1]


def target_lines(table):
    """One line of text per :data:`TARGETS` entry: which row of ``table`` meets it best, or that none does."""
    lines = []
    for label, where, column, reduction, drop in TARGETS:
        best = best_within(table, where, column, reduction, drop)
        lines.append(f"{label}: " + ("not shown by any row" if best is None else
                     f"met by {best['broadcast']} / {best['aggregation']} ({best[column]:.1f}x, "
                     f"{change_interval(best).describe()})"))
    return lines


def save_results(table, folder):
    """Write ``table`` as ``results.csv`` and ``results.json`` (a list of row dicts) in ``folder``; returns both paths."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / "results.csv", folder / "results.json"
    table.to_csv(csv_path, index=False)
    table.to_json(json_path, orient="records", indent=1)
    return csv_path, json_path


def check_results_file(path, rows=None):
    """Read ``results.json`` and check it has a row for each of ``rows`` (default :func:`sweep_rows`) and every
    column of :data:`COLUMNS`.

    Returns the table as a ``DataFrame``; raises ``ValueError`` naming what is missing.
    """
    rows = sweep_rows() if rows is None else rows
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
