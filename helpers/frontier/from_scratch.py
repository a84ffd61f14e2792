"""The frontier from scratch (``make frontier``): the headline rows trained from a fresh model over paired seeds.

Notebook 06's sweep starts every row from a warm start and trains it briefly.
This protocol trains every row from a fresh model, as long as notebook 03's long
run (:data:`helpers.frontier.sweep.FROM_SCRATCH_RUN`), once per seed; within a
seed every row gets the same initial model, clients and shuffles, so rows
compare in pairs (:mod:`helpers.runs.intervals`).

- :class:`Row`: one headline row: what the broadcast and the aggregation send,
  which cohort of clients trains (:data:`CROSS_DEVICE`: the course's sampling
  from every client; :data:`CROSS_SILO`: the same clients every round) and how it
  trains (:data:`TRAINERS`: plain FedAvg, or a method with state of its own).
- :data:`HEADLINE`: the rows ``make frontier`` trains by default.
- :func:`train_rows`: trains what the results file lacks, one run at a time, and
  writes the file after each run, so an interrupted ``make frontier`` loses at
  most the run in progress (which itself resumes from its checkpoints).
- The results file (``results/frontier_from_scratch.json`` plus CSVs) holds one
  entry per row and seed: test accuracy, the exact bits of every round in each
  direction, seconds per round, and the commit, date and machine that trained it;
  and a summary per row: the paired difference to its cohort's identity row with
  its 95% confidence interval. :func:`load_results` and :func:`summary_table`
  read it back (notebook 06 shows it).
"""
import contextlib
import dataclasses
import datetime
import io
import json
import os
import pathlib
import platform
import subprocess

import numpy as np
import pandas as pd

from helpers import config, runs, training
from helpers.frontier import fetchsgd, sweep
from helpers.runs import checkpoints, files, intervals

CROSS_DEVICE, CROSS_SILO = "cross-device", "cross-silo"
COHORTS = (CROSS_DEVICE, CROSS_SILO)
RESULTS_NAME = "frontier_from_scratch"
FORMAT = 1  # the results file's layout; a file of another layout is refused, not misread


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the from-scratch frontier.

    - ``broadcast``, ``aggregation``: method names (:data:`helpers.frontier.METHODS`, or a name
      the row's trainer knows, such as a server-side method).
    - ``cohort``: :data:`CROSS_DEVICE` (clients sampled from all, the course's default) or
      :data:`CROSS_SILO` (one seeded pool of ``clients_per_round`` clients, all of them every round).
    - ``trainer``: a key of :data:`TRAINERS`: how the row trains ("fedavg": FedAvg with these encoders).
    - ``label``: what tables and plots call it (default: built from the fields).
    """

    broadcast: str
    aggregation: str
    cohort: str = CROSS_DEVICE
    trainer: str = "fedavg"
    label: str = ""

    def __post_init__(self):
        if self.cohort not in COHORTS:
            raise ValueError(f"unknown cohort {self.cohort!r}; choose {CROSS_DEVICE!r} or {CROSS_SILO!r}.")
        if not self.label:
            name = sweep.row_name(self.broadcast, self.aggregation) if self.trainer == "fedavg" \
                else f"{self.aggregation} ({self.trainer})"
            object.__setattr__(self, "label", name + ("" if self.cohort == CROSS_DEVICE else f", {self.cohort}"))

    @property
    def slug(self):
        """The row's id in file names and the results file: methods, trainer and cohort."""
        slugs = [sweep.SLUGS.get(self.broadcast, self.broadcast), sweep.SLUGS.get(self.aggregation, self.aggregation)]
        extra = ([] if self.trainer == "fedavg" else [self.trainer]) + \
            ([] if self.cohort == CROSS_DEVICE else [self.cohort])
        return "--".join(s.replace(" ", "_") for s in slugs + extra)

    @property
    def reference(self):
        """The identity row of the same cohort: what this row's accuracy change is measured against."""
        return Row(sweep.IDENTITY, sweep.IDENTITY, self.cohort)


def _fedavg(model_fn, row, settings, train, evaluate_fn, *, seed, name, verbose):
    """Train plain FedAvg with the row's encoders (:func:`helpers.training.train_fed_avg`); a History."""
    return training.train_fed_avg(model_fn, sweep.encoder_fns(row.broadcast, row.aggregation), settings, train,
                                  evaluate_fn, seed=seed, outputs=runs.RunOutputs(name=name, verbose=verbose))


def _majority_vote(model_fn, row, settings, train, evaluate_fn, *, seed, name, verbose):
    """Train signSGD with majority vote: FedAvg whose mean is :class:`helpers.frontier.baselines.MajorityVoteFactory`.

    The clients send the row's aggregation encoding (1-bit signs and a mean magnitude per variable above
    the threshold); the server takes the sign of the summed signs. A History.
    """
    built = training.BuiltFedAvg(build_process(model_fn, row, settings),
                                 sweep.encoder_fns(row.broadcast, row.aggregation))
    return training.train_fed_avg(model_fn, built, settings, train, evaluate_fn, seed=seed,
                                  outputs=runs.RunOutputs(name=name, verbose=verbose))


def _error_feedback(model_fn, row, settings, train, evaluate_fn, *, seed, name, verbose):
    """Train FedAvg with client-side error feedback (:func:`helpers.frontier.error_feedback.train_error_feedback`).

    Each client sends the row's aggregation encoding of its update plus its residual, and keeps what
    the encoding dropped. The residuals live in the run's state (and checkpoints). A History.
    """
    from helpers.frontier import error_feedback
    return error_feedback.train_error_feedback(model_fn, error_feedback.encoders_for(row.broadcast, row.aggregation),
                                               settings, train, evaluate_fn, seed=seed,
                                               outputs=runs.RunOutputs(name=name, verbose=verbose))


# How each kind of row trains: (model_fn, row, settings, train, evaluate_fn, *, seed, name, verbose) -> History.
TRAINERS = {"fedavg": _fedavg, "majority_vote": _majority_vote, "error_feedback": _error_feedback,
            "fetchsgd": fetchsgd.train_fetchsgd}
# The source (modules under helpers/) of trainers whose method is more than their encoders: part of their
# runs' keys (:func:`run_key`), so a saved run of an older version is not reused. Other trainers' keys are as before.
TRAINER_SOURCES = {"error_feedback": ("frontier/error_feedback", "training"),
                   "fetchsgd": ("frontier/fetchsgd", "compression", "training")}



def build_process(model_fn, row, settings):
    """The process that ``row``'s trainer (:data:`TRAINERS`) trains, built as that trainer builds it.

    For the benchmark of a round (:mod:`helpers.frontier.round_cost`), which times the same
    computation. "fedavg": :func:`helpers.training.build_fed_avg` with the row's encoders;
    "majority_vote": the same with :class:`helpers.frontier.baselines.MajorityVoteFactory`;
    "fetchsgd": :func:`helpers.frontier.fetchsgd.build_fetchsgd`; "error_feedback": the
    ``IterativeProcess`` of :func:`helpers.frontier.error_feedback.build_error_feedback_process`
    (whose residuals :class:`helpers.frontier.error_feedback.ErrorFeedbackRounds` keeps).
    """
    if row.trainer == "fedavg":
        return training.build_fed_avg(model_fn, sweep.encoder_fns(row.broadcast, row.aggregation), settings)
    if row.trainer == "majority_vote":
        from helpers.frontier import baselines
        return training.build_fed_avg(model_fn, sweep.encoder_fns(row.broadcast, row.aggregation), settings,
                                      aggregator=baselines.MajorityVoteFactory())
    if row.trainer == "fetchsgd":
        return fetchsgd.build_fetchsgd(model_fn, settings)
    if row.trainer == "error_feedback":
        from helpers.frontier import error_feedback
        return error_feedback.build_error_feedback_process(
            model_fn, error_feedback.encoders_for(row.broadcast, row.aggregation), settings)
    raise ValueError(f"row {row.label!r} names the trainer {row.trainer!r}; known: {sorted(TRAINERS)}.")


IDENTITY_ROW = Row(sweep.IDENTITY, sweep.IDENTITY)
HEADLINE = [
    IDENTITY_ROW,
    Row("uniform 8-bit", "uniform 8-bit", label="tutorial 8-bit policy, both directions"),
    Row(sweep.IDENTITY, "rotated 1-bit sign (DRIVE)"),
    Row(sweep.IDENTITY, "top-1% values + indices"),
    Row(sweep.IDENTITY, sweep.IDENTITY, CROSS_SILO),
    Row(sweep.IDENTITY, "top-1% values + indices", CROSS_SILO),
    Row(sweep.IDENTITY, "QSGD 4-bit"),
    Row(sweep.IDENTITY, "1-bit sign, mean scale", trainer="majority_vote", label="signSGD with majority vote"),
    Row(sweep.IDENTITY, "top-1% values + indices", trainer="error_feedback", label="top-1% + error feedback"),
    Row(sweep.IDENTITY, "top-1% values + indices", CROSS_SILO, trainer="error_feedback",
        label="top-1% + error feedback, cross-silo"),
    Row(sweep.IDENTITY, "1-bit sign, mean scale", trainer="error_feedback", label="1-bit sign + error feedback"),
    Row(sweep.IDENTITY, fetchsgd.AGGREGATION, trainer="fetchsgd",
        label="FetchSGD (count sketch, momentum and error on the server)"),
]


def cohort_clients(client_ids, row, settings, seed):
    """The client ids ``row``'s runs sample from: all of them, or (cross-silo) a pool fixed by ``seed``.

    The cross-silo pool is ``settings.clients_per_round`` clients drawn once per seed, the same for every
    row of that seed, so every round trains exactly them (in an order sampled per round).
    """
    client_ids = list(client_ids)
    if row.cohort == CROSS_DEVICE:
        return client_ids
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4]))  # stream 4: the silo pool
    picked = sorted(rng.choice(len(client_ids), size=settings.clients_per_round, replace=False))
    return [client_ids[i] for i in picked]


def _subset(train, client_ids):
    """A ``ClientData`` of ``train``'s clients ``client_ids`` (TFF's ``from_clients_and_tf_fn``)."""
    if list(client_ids) == list(train.client_ids):
        return train
    import tensorflow_federated as tff
    return tff.simulation.datasets.ClientData.from_clients_and_tf_fn(list(client_ids),
                                                                    train.serializable_dataset_fn)


def run_key(row, settings, seed):
    """What names one run's saved History under ``outputs/runs/``: settings, methods, their code, cohort, trainer.

    A trainer of :data:`TRAINER_SOURCES` adds the digests of its modules' source (``trainer_code``).
    """
    codes = {side: sweep.method_code(method) if method in sweep.METHODS else method
             for side, method in (("broadcast", row.broadcast), ("aggregation", row.aggregation))}
    key = dict(settings.as_dict(), broadcast=row.broadcast, aggregation=row.aggregation, code=codes,
               cohort=row.cohort, trainer=row.trainer, seed=seed, from_scratch=True)
    if row.trainer in TRAINER_SOURCES:
        key["trainer_code"] = checkpoints.code_digests(TRAINER_SOURCES[row.trainer])
    return key


def train_run(model_fn, row, settings, train, evaluate_fn, seed, verbose=False):
    """One run of ``row`` from the seed's fresh model; ``(History, loaded)``, loaded from ``outputs/runs/`` if saved.

    The run checkpoints every few rounds while it trains (:func:`helpers.runs.cached_history`), so a
    killed run resumes where it was.
    """
    if row.trainer not in TRAINERS:
        raise ValueError(f"row {row.label!r} names the trainer {row.trainer!r}; known: {sorted(TRAINERS)}.")
    cohort = _subset(train, cohort_clients(train.client_ids, row, settings, seed))
    trainer = TRAINERS[row.trainer]
    trained = []

    def train_fn():
        history = trainer(model_fn, row, settings, cohort, evaluate_fn, seed=seed, name=row.label, verbose=verbose)
        history.config["provenance"] = provenance()  # saved with the run: where and when it trained
        trained.append(history)
        return history

    history, _ = runs.cached_history(f"scratch-{row.slug}-seed{seed}", run_key(row, settings, seed), train_fn)
    return history, not trained


# ------------------------------------------------------------------ results --

def provenance():
    """Where a run was trained: commit (with ``+changes`` when the tree differs), date, machine and versions."""
    from helpers import setup
    return dict(commit=_git_commit(), date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                machine=machine(), versions=setup.installed_versions())


def _git_commit():
    root = config.repo_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "helpers", "scripts"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("+changes" if dirty else "")


def machine():
    """The machine's processor, cores, memory (GiB) and OS, and how many computations TFF's worker ran at once."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (OSError, ValueError):
        memory = None
    return dict(cpu=cpu, cores=os.cpu_count(), memory_gib=None if memory is None else round(memory, 1),
                os=platform.platform(terse=True), max_concurrent_calls=config.max_concurrent_calls())


def _per_round(values):
    """One int when every round sent the same number of bits, else the list of every round's bits."""
    values = [int(v) for v in values]
    return values[0] if len(set(values)) == 1 else values


def run_entry(row, seed, history, where):
    """The results file's entry of one run: the row, the seed, what it reached, sent and took, and ``where``."""
    seconds = history.column("seconds")
    last = history.evals[-1] if history.evals else {}
    return dict(row=row.slug, label=row.label, broadcast=row.broadcast, aggregation=row.aggregation,
                cohort=row.cohort, trainer=row.trainer, seed=seed, rounds=len(history.rounds),
                test_accuracy=last.get("accuracy"), test_loss=last.get("loss"),
                broadcast_bits_per_round=_per_round(history.column("broadcast_bits")),
                aggregated_bits_per_round=_per_round(history.column("aggregated_bits")),
                seconds_per_round_median=float(np.median(seconds)), seconds_per_round_mean=float(np.mean(seconds)),
                **where)


def bits_per_round(entry, direction):
    """Every round's bits of ``direction`` ("broadcast" or "aggregated") of one results entry, as a list."""
    value = entry[f"{direction}_bits_per_round"]
    return [value] * entry["rounds"] if isinstance(value, int) else list(value)


def empty_results(settings, data_line):
    """A results dict with no run yet, for ``settings`` on the data that ``data_line`` names."""
    return dict(format=FORMAT, about=__doc__.splitlines()[0], settings=settings.as_dict(),
                settings_key=runs.settings_key(settings), data=data_line, runs=[], summary=[])


def load_results(path):
    """The results dict saved at ``path``; ``ValueError`` naming the problem if it is not one."""
    results = files.read_json(path, f"no from-scratch results at {path}: run `make frontier` to make them.",
                              "a results file", "; restore it with git checkout, or delete it and run `make frontier`.")
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise ValueError(f"{path} is not a from-scratch results file of format {FORMAT}; restore it with git "
                         "checkout, or delete it and run `make frontier`.")
    return results


def find_run(results, row, seed):
    """The entry of ``row`` and ``seed`` in ``results``, or None."""
    return next((e for e in results["runs"] if e["row"] == row.slug and e["seed"] == seed), None)


def summarise(results):
    """One dict per row of ``results``: mean accuracy, bits per round, its paired change to its cohort's identity.

    The change (points) is the mean over the seeds both rows have of ``accuracy(row) - accuracy(identity)``,
    with its 95% confidence interval when at least 2 seeds pair up.
    """
    by_row = {}
    for entry in results["runs"]:
        by_row.setdefault(entry["row"], []).append(entry)
    summary = []
    for slug, entries in by_row.items():
        first = entries[0]
        reference_slug = Row(sweep.IDENTITY, sweep.IDENTITY, first["cohort"]).slug
        reference = {e["seed"]: e for e in by_row.get(reference_slug, [])}
        paired = sorted(e["seed"] for e in entries if e["seed"] in reference)
        accuracy = {e["seed"]: 100 * e["test_accuracy"] for e in entries}
        row = dict(row=slug, label=first["label"], cohort=first["cohort"], trainer=first["trainer"],
                   broadcast=first["broadcast"], aggregation=first["aggregation"],
                   seeds=sorted(accuracy), test_accuracy_mean=float(np.mean(list(accuracy.values()))),
                   reference=reference_slug, paired_seeds=paired,
                   broadcast_bits_per_round=float(np.mean([np.mean(bits_per_round(e, "broadcast")) for e in entries])),
                   aggregated_bits_per_round=float(np.mean([np.mean(bits_per_round(e, "aggregated")) for e in entries])),
                   seconds_per_round_median=float(np.median([e["seconds_per_round_median"] for e in entries])),
                   commits=sorted({e["commit"] for e in entries}))
        if len(paired) >= 2:
            change = intervals.paired_difference([accuracy[s] for s in paired],
                                                 [100 * reference[s]["test_accuracy"] for s in paired])
            row.update(change=change.mean, change_low=change.low, change_high=change.high)
        summary.append(row)
    for row in summary:  # reductions against the cohort's identity
        reference = next((r for r in summary if r["row"] == row["reference"]), None)
        if reference is not None:
            row["reduction_aggregated"] = reference["aggregated_bits_per_round"] / row["aggregated_bits_per_round"]
            total = row["broadcast_bits_per_round"] + row["aggregated_bits_per_round"]
            row["reduction_total"] = (reference["broadcast_bits_per_round"]
                                      + reference["aggregated_bits_per_round"]) / total
    return summary


def save_results(results, path):
    """Write ``results`` (summary refreshed) to ``path`` (JSON) and its two CSVs beside it; returns the three paths.

    ``<name>.csv``: one line per row and seed (bits as the mean per round); ``<name>_summary.csv``: one per row.
    The JSON is written to a temporary file and renamed, so an interrupted write leaves the old file whole.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    results["summary"] = summarise(results)
    temporary = path.with_suffix(".json.partial")
    temporary.write_text(json.dumps(results, indent=1) + "\n")
    temporary.replace(path)
    runs_csv, summary_csv = path.with_suffix(".csv"), path.with_name(path.stem + "_summary.csv")
    flat = [dict(e, broadcast_bits_per_round=float(np.mean(bits_per_round(e, "broadcast"))),
                 aggregated_bits_per_round=float(np.mean(bits_per_round(e, "aggregated"))),
                 machine=json.dumps(e["machine"], sort_keys=True), versions=json.dumps(e["versions"], sort_keys=True))
            for e in results["runs"]]
    pd.DataFrame(flat).to_csv(runs_csv, index=False)
    pd.DataFrame([dict(r, seeds=" ".join(map(str, r["seeds"])), paired_seeds=" ".join(map(str, r["paired_seeds"])),
                       commits=" ".join(r["commits"])) for r in results["summary"]]).to_csv(summary_csv, index=False)
    return path, runs_csv, summary_csv


def summary_table(results):
    """The summary of ``results`` as a DataFrame in the columns of :func:`helpers.frontier.results_table`.

    So :func:`helpers.plotting.plot_frontier` and :func:`helpers.frontier.best_within` read it too. Bits are
    a run's totals over all its rounds and clients (the mean over seeds), as in the sweep's table; a
    ``label`` column names each row. Rows without a paired interval (fewer than 2 seeds) are left out.
    """
    rounds = results["settings"]["rounds"]
    rows = []
    for row in summarise(results):
        if "change" not in row:
            continue
        rows.append({
            "direction": sweep.direction(row["broadcast"], row["aggregation"]), "label": row["label"],
            "broadcast": row["broadcast"], "aggregation": row["aggregation"], "cohort": row["cohort"],
            "trainer": row["trainer"], "broadcast bits": rounds * row["broadcast_bits_per_round"],
            "aggregated bits": rounds * row["aggregated_bits_per_round"],
            "reduction (aggregated)": row.get("reduction_aggregated"), "reduction (total)": row.get("reduction_total"),
            "test accuracy (%)": row["test_accuracy_mean"], "accuracy change (points)": row["change"],
            "change CI low": row["change_low"], "change CI high": row["change_high"],
            "seeds": len(row["paired_seeds"]), "seconds per round": row["seconds_per_round_median"]})
    return pd.DataFrame(rows)


def train_rows(model_fn, rows, settings, data, run_seeds, path, after_row=None):
    """Train every run of ``rows`` x ``run_seeds`` that the results file at ``path`` lacks; returns the results.

    ``data`` is ``(train, evaluate_fn, data_line)``: the training ``ClientData``, the test evaluation and
    the line naming the data source. Runs already in the file with the same settings are kept (one line
    says how many); the file is written after every run. ``after_row(row, results)`` runs when a row's
    seeds are all in the file (``make frontier COMMIT=1`` commits the file there).
    """
    train, evaluate_fn, data_line = data
    results = load_results(path) if pathlib.Path(path).exists() else empty_results(settings, data_line)
    if results["settings_key"] != runs.settings_key(settings) or results["data"] != data_line:
        raise ValueError(f"{path} holds runs of other settings or data ({results['settings']}, {results['data']}); "
                         f"this run has {settings.as_dict()} on {data_line}. Move the file away to start a new "
                         "frontier, or run with the settings it holds.")
    kept = [(row, seed) for row in rows for seed in run_seeds if find_run(results, row, seed) is not None]
    if kept:
        print(f"kept {len(kept)} run{'s' if len(kept) > 1 else ''} already in {path} (move the file away to train "
              "them again)")
    for row in rows:
        for seed in run_seeds:
            if find_run(results, row, seed) is not None:
                continue
            history, loaded = train_run(model_fn, row, settings, train, evaluate_fn, seed)
            where = dict(history.config["provenance"])
            if loaded:
                where["note"] = "loaded from a run saved under outputs/runs/"
            results["runs"].append(run_entry(row, seed, history, where))
            save_results(results, path)
            print(f"{row.label}, seed {seed}: test accuracy {history.final_accuracy():.2%}, "
                  f"{np.median(history.column('seconds')):.2f} s per round", flush=True)
        if after_row is not None:
            after_row(row, results)
    return results


def data_line(train_and_test_loader):
    """``(train, test, line)``: the data ``train_and_test_loader()`` loads and the line it printed naming its source."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train, test = train_and_test_loader()
    line = printed.getvalue().strip().splitlines()[-1] if printed.getvalue().strip() else "unknown source"
    print(line)
    return train, test, line.split(" from ")[0]


def default_path():
    """``results/frontier_from_scratch.json`` in the repository at full size; under ``outputs/`` in fast mode.

    Fast mode never writes into ``results/``: its runs are smoke runs.
    """
    if config.fast_mode():
        return config.output_dir("results") / f"{RESULTS_NAME}.json"
    return config.repo_root() / "results" / f"{RESULTS_NAME}.json"
