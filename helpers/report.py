"""A one-page report of the course's key figures, for an instructor to read before class.

:func:`write_report` (``make course`` calls it last; ``python -m helpers.report``
on its own) reads what the notebooks saved under the output folder
(``outputs/`` by default):

- the long baseline and compressed runs of notebooks 03 and 04 (``runs/``), one seed each;
- the paired comparisons of notebook 04 (``comparisons/*.json``): mean differences to
  identity with their confidence intervals;
- the frontier sweep of notebook 06 (``frontier/results.json``, ``frontier/frontier.png``) and,
  when ``make frontier`` has run, the from-scratch frontier (``frontier_from_scratch/``);
- the notebook timings of ``make course`` (``notebooks/timings.json``), if present;

and writes ``report.md`` plus ``report_accuracy.png`` next to them. A missing
piece is reported as missing, with the notebook that makes it.
"""
import json
import platform
import time

import pandas as pd
from matplotlib.figure import Figure  # no pyplot: the report draws off screen, whatever the backend

from helpers import config, frontier, plotting, sizing
from helpers.runs import intervals
from helpers.runs.history import History

LONG_RUNS = {"baseline": "notebook 03", "8-bit both ways": "notebook 04"}


def latest_run(name):
    """The most recently saved full-size :class:`helpers.runs.history.History` called ``name``, or None."""
    paths = sorted(config.output_dir("runs").glob(f"{name}-*.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(paths):
        history = History.load(path)
        if not history.config.get("fast"):
            return history
    return None


def long_run_section(histories):
    lines = ["## Baseline and 8-bit FedAvg (notebooks 03 and 04)", ""]
    missing = [f"`{name}` (run {where})" for name, where in LONG_RUNS.items() if histories[name] is None]
    if missing:
        return lines + [f"Missing: {', '.join(missing)}.", ""]
    baseline, compressed = histories["baseline"], histories["8-bit both ways"]
    settings = {k: baseline.config[k] for k in ("rounds", "clients_per_round", "client_lr", "server_lr",
                                                "server_momentum") if k in baseline.config}
    lines += [f"Settings: {settings}.", "",
              "| run | test accuracy | broadcast | aggregated | median s per round |", "|---|---|---|---|---|"]
    for history in (baseline, compressed):
        lines.append(f"| {history.name} | {history.final_accuracy():.2%} | "
                     f"{sizing.format_bits(history.total_bits('broadcast_bits'))} | "
                     f"{sizing.format_bits(history.total_bits('aggregated_bits'))} | "
                     f"{pd.Series(history.column('seconds')).median():.2f} |")
    reduction = baseline.total_bits("aggregated_bits") / compressed.total_bits("aggregated_bits")
    lines += ["", f"- 8-bit both ways sends {reduction:.2f}x fewer bits per direction.",
              f"- Both runs use seed {baseline.config.get('seed')}: one seed cannot say whether their "
              "accuracy gap is real; the paired comparisons below can.",
              "", "![test accuracy](report_accuracy.png)", ""]
    fig = Figure(figsize=(11, 3.5))
    axes = fig.subplots(1, 2)
    plotting.plot_test_accuracy([baseline, compressed], axes[0])
    plotting.plot_accuracy_vs_bits([baseline, compressed], axes[1])
    fig.tight_layout()
    fig.savefig(config.output_dir() / "report_accuracy.png", dpi=100)
    return lines


def comparisons_section():
    """The paired comparisons notebook 04 saved (``comparisons/*.json``), each with its intervals."""
    paths = sorted(config.output_dir("comparisons").glob("*.json"))
    lines = ["## Paired comparisons (notebook 04)", "",
             f"Mean test accuracy difference to the uncompressed run, with its {intervals.CONFIDENCE:.0%} "
             "Student t confidence interval over paired seeds (`helpers.runs.intervals`).", ""]
    if not paths:
        return lines + ["Missing: no comparisons saved (run notebook 04).", ""]
    for path in paths:
        lines += [f"**{path.stem}**", ""]
        lines += [f"- {label}: {change.describe()}; {change.verdict()}"
                  for label, change in intervals.load(path).items()]
        lines.append("")
    return lines


def frontier_section(folder="frontier", title="The compression frontier (notebook 06)", make="run notebook 06",
                     rows=None):
    """The sweep's table (every one of ``rows``, default the sweep's) with the intervals, and which targets a
    whole interval meets."""
    rows = frontier.sweep_rows() if rows is None else rows
    path = config.output_dir(folder) / "results.json"
    lines = [f"## {title}", ""]
    if not path.exists():
        return lines + [f"Missing: {path} ({make}).", ""]
    table = frontier.check_results_file(path, rows)
    columns = ["broadcast", "aggregation", "aggregated bits per value", "reduction (aggregated)",
               "reduction (total)", "test accuracy (%)", "accuracy change (points)", "change CI low",
               "change CI high", "seeds", "seconds per round"]
    lines += [f"Accuracy change: mean paired difference to identity over {int(table['seeds'].min())} seeds, "
              f"with its {intervals.CONFIDENCE:.0%} confidence interval (CI low to CI high).", ""]
    lines += [_markdown_table(table[columns].round(2)), ""]
    lines += ["- " + line for line in frontier.target_lines(table)]
    return lines + ["", f"![frontier]({folder}/frontier.png)", ""]


def _markdown_table(frame):
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def timings_section():
    path = config.output_dir("notebooks") / "timings.json"
    if not path.exists():
        return []
    timings = json.loads(path.read_text())
    lines = ["## Run time of `make course`", "", "| notebook | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in timings.items()]
    return lines + [f"| total | {sum(timings.values()):.0f} |", ""]


def write_report():
    """Write ``report.md`` (and its accuracy figure) in the output folder; returns its path."""
    histories = {name: latest_run(name) for name in LONG_RUNS}
    lines = ["# Course report", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} "
             f"(Python {platform.python_version()}); outputs in `{config.output_dir()}`.", ""]
    lines += long_run_section(histories) + comparisons_section() + frontier_section()
    if (config.output_dir() / "frontier_from_scratch" / "results.json").exists():  # make frontier ran
        lines += frontier_section("frontier_from_scratch", "The frontier from scratch (make frontier)",
                                  "run make frontier", rows=[])
    lines += timings_section()
    path = config.output_dir() / "report.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    print(f"wrote {write_report()}")
