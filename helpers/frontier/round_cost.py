"""The cost of a round (``make bench-rounds``): each headline method's seconds per round against identity's.

A shared machine's load moves one timing by 5% or more, and a long bench drifts
with it. So every method is timed **against identity in the same run,
interleaved**: each repeat trains one round of identity and one round of the
method on the same clients (the order alternates, identity first in even
repeats), and the ratio method / identity is taken per repeat. Load that
lasts longer than two rounds cancels in the ratio; the file reports its
median and range over the repeats.

- :func:`methods`: the distinct methods of :data:`helpers.frontier.from_scratch.HEADLINE`
  (a cohort changes which clients train, not what a round costs), identity first.
- :func:`time_methods`: times them, each method's process built once by its
  trainer's builder (:func:`helpers.frontier.from_scratch.build_process`), its
  rounds run by :func:`helpers.training.run_rounds` (which times the round
  itself, not the building of its clients' datasets).
- :func:`compare`: the ratio arithmetic of one method's repeats.
- :func:`save_results` / :func:`load_results`: ``results/round_cost.json`` and
  ``results/round_cost.csv``, written atomically, with the commit, date and machine.
"""
import contextlib
import json
import pathlib
import tempfile

import numpy as np
import pandas as pd

from helpers import config, data, runs, training
from helpers.frontier import from_scratch
from helpers.runs import files

RESULTS_NAME = "round_cost"
FORMAT = 1  # the file's layout; a file of another layout is refused, not misread
WARM_UP_SEED = 1_000  # the clients of the untimed rounds that compile a process in a fresh worker
CSV_COLUMNS = ["method", "rows", "trainer", "broadcast", "aggregation", "repeats", "seconds_median",
               "seconds_min", "seconds_max", "identity_seconds_median", "identity_seconds_min",
               "identity_seconds_max", "ratio_median", "ratio_min", "ratio_max"]


def methods(rows=None):
    """``[(row, slugs)]``: one row per distinct method of ``rows`` (default: the headline), identity first.

    ``slugs`` lists every row of ``rows`` that trains that method (cross-silo rows share their
    cross-device row's process: the cohort picks the clients, not the round's computation).
    """
    rows = from_scratch.HEADLINE if rows is None else rows
    found = {}
    for row in [from_scratch.IDENTITY_ROW] + list(rows):
        key = (row.broadcast, row.aggregation, row.trainer)
        found.setdefault(key, (row, []))
        if row in rows and row.slug not in found[key][1]:
            found[key][1].append(row.slug)
    return [(row, slugs) for row, slugs in found.values()]


def compare(seconds, identity_seconds):
    """The summary of one method's repeats: seconds per round of it and of identity, and their ratio per repeat.

    ``seconds[i]`` and ``identity_seconds[i]`` are the seconds of one round of the method and of
    identity in repeat ``i``. Returns a dict: the lists, ``ratios`` (``seconds[i] / identity_seconds[i]``),
    the median, min and max of each, and ``repeats``. ``ValueError`` if the lists differ in length,
    are empty, or hold a time that is not above 0.
    """
    seconds, identity_seconds = [float(s) for s in seconds], [float(s) for s in identity_seconds]
    if len(seconds) != len(identity_seconds) or not seconds:
        raise ValueError(f"a method and identity need the same number of timed repeats, at least 1; got "
                         f"{len(seconds)} and {len(identity_seconds)}.")
    if min(seconds + identity_seconds) <= 0:
        raise ValueError(f"a round takes more than 0 seconds; got {seconds} and {identity_seconds}.")
    ratios = [s / i for s, i in zip(seconds, identity_seconds)]
    summary = dict(repeats=len(seconds), seconds=seconds, identity_seconds=identity_seconds, ratios=ratios)
    for name, values in (("seconds", seconds), ("identity_seconds", identity_seconds), ("ratio", ratios)):
        summary.update({f"{name}_median": float(np.median(values)), f"{name}_min": min(values),
                        f"{name}_max": max(values)})
    return summary


# ------------------------------------------------------------------ timing --

@contextlib.contextmanager
def _runnable(model_fn, row, settings):
    """The process of ``row`` that :func:`helpers.training.run_rounds` trains, as its trainer builds it.

    Error feedback's :class:`helpers.frontier.error_feedback.ErrorFeedbackRounds` keeps its residual
    files in a temporary folder, removed afterwards.
    """
    process = from_scratch.build_process(model_fn, row, settings)
    if row.trainer != "error_feedback":
        yield process
        return
    from helpers.frontier import error_feedback
    with tempfile.TemporaryDirectory(prefix="round-cost-residuals-") as folder:
        yield error_feedback.ErrorFeedbackRounds(process, folder)


def _one_round(runnable, state, train, settings, seed):
    """``(state, seconds)``: one round of ``runnable`` from ``state`` on the clients that ``seed`` samples."""
    state, history = training.run_rounds(
        runnable, lambda ids: data.make_federated_data(train, ids, epochs=settings.client_epochs),
        train.client_ids, settings.replace(rounds=1, eval_every=None, keep_model_after=()), seed=seed,
        state=state, outputs=runs.RunOutputs(name="round cost", verbose=False))
    return state, history.rounds[0]["seconds"]


def time_method(model_fn, row, settings, train, identity, repeats):
    """One method against identity: :func:`compare` of ``repeats`` interleaved rounds of each.

    ``identity`` is ``(process, state)`` of identity, built once by the caller; ``row``'s process is
    built here (which gives back the TFF worker of what ran before, so both compile again in an untimed
    warm-up round each). Repeat ``i`` trains the clients that seed ``i`` samples, identity first when ``i``
    is even. Returns ``(summary, identity state)``.
    """
    identity_process, identity_state = identity
    with _runnable(model_fn, row, settings) as runnable:
        state = training.initial_state(runnable, model_fn, config.SEED)
        identity_state, _ = _one_round(identity_process, identity_state, train, settings, WARM_UP_SEED)
        state, _ = _one_round(runnable, state, train, settings, WARM_UP_SEED)
        seconds, identity_seconds = [], []
        for repeat in range(repeats):
            for which in ((0, 1) if repeat % 2 == 0 else (1, 0)):
                if which == 0:
                    identity_state, took = _one_round(identity_process, identity_state, train, settings, repeat)
                    identity_seconds.append(took)
                else:
                    state, took = _one_round(runnable, state, train, settings, repeat)
                    seconds.append(took)
    return compare(seconds, identity_seconds), identity_state


def time_methods(model_fn, settings, train, repeats, rows=None, report=print):
    """Every method of :func:`methods` (``rows``) timed against identity; a list of entries for the results file.

    ``settings``: the frontier's :class:`helpers.runs.RunSettings`; ``train``: the training
    ``ClientData``; ``repeats``: timed rounds of each method (and as many of identity beside
    them). Identity is timed against itself too (two rounds of one process per repeat), which
    shows how far the ratio moves when nothing differs. ``report(line)`` says each result.
    """
    identity_process = from_scratch.build_process(model_fn, from_scratch.IDENTITY_ROW, settings)
    identity = (identity_process, training.initial_state(identity_process, model_fn, config.SEED))
    entries = []
    for row, slugs in methods(rows):
        if row == from_scratch.IDENTITY_ROW:
            summary, state = _identity_against_itself(identity, train, settings, repeats)
        else:
            summary, state = time_method(model_fn, row, settings, train, identity, repeats)
        identity = (identity_process, state)
        entry = dict(method=row.label.removesuffix(", cross-silo"), rows=slugs, trainer=row.trainer,
                     broadcast=row.broadcast, aggregation=row.aggregation, **summary)
        entries.append(entry)
        report(f"{entry['method']:58s} {entry['seconds_median']:6.2f} s/round, identity "
               f"{entry['identity_seconds_median']:5.2f}: {entry['ratio_median']:.2f}x "
               f"({entry['ratio_min']:.2f}-{entry['ratio_max']:.2f}x over {entry['repeats']} repeats)")
    return entries


def _identity_against_itself(identity, train, settings, repeats):
    """:func:`compare` of identity's rounds against identity's, two per repeat (one warm-up round first)."""
    process, state = identity
    state, _ = _one_round(process, state, train, settings, WARM_UP_SEED)
    first, second = [], []
    for repeat in range(repeats):
        state, took = _one_round(process, state, train, settings, repeat)
        first.append(took)
        state, took = _one_round(process, state, train, settings, repeat)
        second.append(took)
    return compare(second, first), state


# ----------------------------------------------------------------- results --

def new_results(entries, settings, data_line, provenance):
    """The results dict: ``entries`` (:func:`time_methods`), the settings, the data and where it ran."""
    return dict(format=FORMAT, about=__doc__.splitlines()[0], settings=settings.as_dict(),
                clients_per_round=settings.clients_per_round, data=data_line,
                order="per repeat: one round of identity and one of the method, on the same clients; identity "
                      "first in even repeats", **provenance, methods=list(entries))


def save_results(results, path):
    """Write ``results`` to ``path`` (JSON) and the CSV beside it (one line per method); returns both paths.

    Each file is written to a temporary file and renamed, so an interrupted write leaves the old one whole.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    csv_path = path.with_suffix(".csv")
    table = pd.DataFrame([dict({c: e[c] for c in CSV_COLUMNS}, rows=" ".join(e["rows"]), commit=results["commit"],
                               date=results["date"]) for e in results["methods"]])
    for target, write in ((path, lambda p: p.write_text(json.dumps(results, indent=1) + "\n")),
                          (csv_path, lambda p: table.to_csv(p, index=False))):
        temporary = target.with_name(target.name + ".partial")
        write(temporary)
        temporary.replace(target)
    return path, csv_path


def load_results(path):
    """The results dict saved at ``path``; ``FileNotFoundError`` or ``ValueError`` saying what to do otherwise."""
    results = files.read_json(path, f"no round-cost results at {path}: run `make bench-rounds` to make them.",
                              "a round-cost results file",
                              "; restore it with git checkout, or run `make bench-rounds` again.")
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise ValueError(f"{path} is not a round-cost results file of format {FORMAT}; restore it with git "
                         "checkout, or run `make bench-rounds` again.")
    return results


def ratio_of(results, method):
    """``(median, min, max)`` of ``method``'s cost ratio to identity in ``results``; ``KeyError`` naming the known."""
    entry = next((e for e in results["methods"] if e["method"] == method or method in e["rows"]), None)
    if entry is None:
        raise KeyError(f"no method {method!r} in the round-cost results; known: "
                       f"{[e['method'] for e in results['methods']]}.")
    return entry["ratio_median"], entry["ratio_min"], entry["ratio_max"]


def default_path():
    """``results/round_cost.json`` at full size; under ``outputs/`` in fast mode (a smoke run, not a result)."""
    if config.fast_mode():
        return config.output_dir("results") / f"{RESULTS_NAME}.json"
    return config.repo_root() / "results" / f"{RESULTS_NAME}.json"


__all__ = ["methods", "compare", "time_method", "time_methods", "new_results", "save_results", "load_results",
           "ratio_of", "default_path", "RESULTS_NAME", "FORMAT"]
