"""What notebook 06 reads from the committed from-scratch frontier (``results/frontier_from_scratch.json``).

``make frontier`` trains the headline rows (:data:`helpers.frontier.from_scratch.HEADLINE`) from a fresh
model over paired seeds and commits the file as rows finish; these functions only read it:

- :func:`committed_results`: the file, checked.
- :func:`provenance_line`: which commits, dates and machine its runs come from.
- :func:`paired_change`: the paired accuracy change (points) of one row against another, over their shared seeds.
- :func:`error_feedback_table`: what client-side error feedback changes, compressor by compressor and cohort by cohort.
- :func:`warm_against_scratch`: the same rows' change to identity after a warm start and from scratch.
"""
import pandas as pd

from helpers import config
from helpers.frontier import from_scratch
from helpers.runs import intervals

EF_TRAINER = "error_feedback"


def committed_results():
    """The results dict of ``results/frontier_from_scratch.json`` in the course's folder (also in fast mode)."""
    return from_scratch.load_results(config.repo_root() / "results" / f"{from_scratch.RESULTS_NAME}.json")


def provenance_line(results):
    """One line: how many runs, of which rows, the commits, the first and last date (UTC) and the machine."""
    entries = results["runs"]
    if not entries:
        return "the results file holds no run yet"
    commits = sorted({e["commit"][:7] for e in entries})
    dates = sorted(e["date"][:16].replace("T", " ") for e in entries)
    machine = entries[-1]["machine"]
    rows = len({e["row"] for e in entries})
    return (f"{len(entries)} runs of {rows} rows, trained at commit{'s' if len(commits) > 1 else ''} "
            f"{', '.join(commits)} from {dates[0]} to {dates[-1]} UTC on {machine['cpu']} "
            f"({machine['cores']} cores, {machine['memory_gib']} GiB); data: {results['data']}")


def _accuracy_by_seed(results, slug):
    return {e["seed"]: 100 * e["test_accuracy"] for e in results["runs"] if e["row"] == slug}


def paired_change(results, slug, reference_slug):
    """:class:`helpers.runs.intervals.Interval` of accuracy (points) of row ``slug`` minus row ``reference_slug``.

    Over the seeds both rows have (the same seed: the same initial model, clients and shuffles); None when
    fewer than 2 seeds pair up.
    """
    row, reference = _accuracy_by_seed(results, slug), _accuracy_by_seed(results, reference_slug)
    seeds = sorted(set(row) & set(reference))
    if len(seeds) < 2:
        return None
    return intervals.paired_difference([row[s] for s in seeds], [reference[s] for s in seeds])


def error_feedback_table(results):
    """A DataFrame: for each error-feedback row with a plain row of the same compressor and cohort, both mean
    accuracies (%) and the paired change error feedback brings (points, 95% CI, seeds)."""
    rows = []
    for row in from_scratch.HEADLINE:
        if row.trainer != EF_TRAINER:
            continue
        plain = from_scratch.Row(row.broadcast, row.aggregation, row.cohort)
        change = paired_change(results, row.slug, plain.slug)
        if change is None:
            continue
        with_ef, without = _accuracy_by_seed(results, row.slug), _accuracy_by_seed(results, plain.slug)
        rows.append({"compressor": row.aggregation, "cohort": row.cohort,
                     "without EF (%)": sum(without.values()) / len(without),
                     "with EF (%)": sum(with_ef.values()) / len(with_ef), "EF change (points)": change.mean,
                     "CI low": change.low, "CI high": change.high, "seeds": change.n})
    return pd.DataFrame(rows)


def warm_against_scratch(sweep_table, scratch_table):
    """The rows of both tables (same broadcast and aggregation; the sweep's FedAvg rows, cross-device), with the
    accuracy change to identity after the warm start and from scratch, each with its interval (points)."""
    scratch = scratch_table[(scratch_table["cohort"] == from_scratch.CROSS_DEVICE)
                            & (scratch_table["trainer"] == "fedavg")]
    columns = ["broadcast", "aggregation", "accuracy change (points)", "change CI low", "change CI high"]
    merged = sweep_table[columns].merge(scratch[columns + ["label"]], on=["broadcast", "aggregation"],
                                        suffixes=(" warm", " scratch"))
    merged = merged[(merged["broadcast"] != "identity") | (merged["aggregation"] != "identity")]
    return merged[["label"] + [c for c in merged.columns if c not in ("label", "broadcast", "aggregation")]]
