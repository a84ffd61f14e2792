"""The course's figures. Every function draws on a matplotlib ``Axes`` and returns it.

Bits are plotted in Mibit (2**20 bits) and labelled so; several runs
(:class:`helpers.runs.history.History`) can be overlaid, each labelled by its name.
"""
import matplotlib.pyplot as plt
import numpy as np

from helpers import frontier, sizing
from helpers.runs import intervals


def _axes(ax):
    return ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]


def plot_metric(histories, key, ax=None, ylabel=None):
    """A per-round metric (e.g. ``'loss'``, ``'accuracy'``) of each run against round."""
    ax = _axes(ax)
    for history in histories:
        ax.plot(history.column("round"), history.column(key), marker=".", label=history.name)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel or key)
    ax.legend()
    return ax


def plot_test_accuracy(histories, ax=None):
    """Test accuracy (%) of each run at its evaluation rounds."""
    ax = _axes(ax)
    for history in histories:
        rounds = [e["round"] for e in history.evals]
        ax.plot(rounds, [100 * e["accuracy"] for e in history.evals], marker="o", label=history.name)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    return ax


def plot_cumulative_bits(histories, key="broadcast_bits", ax=None):
    """Running total of ``key`` (``broadcast_bits`` or ``aggregated_bits``), in Mibit, against round."""
    ax = _axes(ax)
    for history in histories:
        ax.plot(history.column("round"), history.column("cumulative_" + key) / 2**20,
                marker=".", label=history.name)
    ax.set_xlabel("round")
    ax.set_ylabel(f"cumulative {key.replace('_', ' ')} (Mibit)")
    ax.legend()
    return ax


def plot_accuracy_vs_bits(histories, ax=None, log=False):
    """Test accuracy (%) against cumulative bits in both directions (Mibit) at each evaluation."""
    ax = _axes(ax)
    for history in histories:
        by_round = {r["round"]: r for r in history.rounds}
        totals = [(by_round[e["round"]]["cumulative_broadcast_bits"]
                   + by_round[e["round"]]["cumulative_aggregated_bits"]) / 2**20 for e in history.evals]
        ax.plot(totals, [100 * e["accuracy"] for e in history.evals], marker="o", label=history.name)
    ax.set_xlabel("cumulative bits, broadcast + aggregated (Mibit)")
    ax.set_ylabel("test accuracy (%)")
    if log:
        ax.set_xscale("log")
    ax.legend()
    return ax


def compare_runs(histories):
    """A 2x2 figure: training loss, training accuracy, cumulative broadcast and aggregated bits."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
    plot_metric(histories, "loss", axes[0, 0], "training loss")
    plot_metric(histories, "accuracy", axes[0, 1], "training accuracy")
    plot_cumulative_bits(histories, "broadcast_bits", axes[1, 0])
    plot_cumulative_bits(histories, "aggregated_bits", axes[1, 1])
    fig.tight_layout()
    return fig


def plot_bits_by_variable(rows, ax=None):
    """Horizontal bars of each variable's bits per client per round (rows from ``sizing.variable_table``)."""
    ax = ax if ax is not None else plt.subplots(figsize=(7, 3))[1]
    names = [r["variable"] for r in rows]
    mib = np.array([r["bits"] for r in rows]) / 2**20
    total = mib.sum()
    bars = ax.barh(names, mib)
    for bar, value in zip(bars, mib):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {value:.2f} Mibit ({100 * value / total:.1f}%)", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("bits per client per round, uncompressed (Mibit)")
    ax.set_xlim(0, mib.max() * 1.35)
    ax.set_title(f"where the {sizing.format_bits(total * 2**20)} of one model go")
    return ax


def plot_examples_per_client(counts, ax=None):
    """Histogram of the number of training examples per client."""
    ax = _axes(ax)
    ax.hist(counts, bins=40)
    ax.set_xlabel("training examples per client")
    ax.set_ylabel("clients")
    return ax


def plot_label_mix(label_counts, ax=None, max_clients=60):
    """Heatmap of each client's label distribution (rows: clients, columns: labels)."""
    ax = ax if ax is not None else plt.subplots(figsize=(7, 4))[1]
    counts = np.asarray(label_counts, dtype=float)[:max_clients]
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(fractions.T, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel(f"client (first {len(counts)})")
    ax.set_ylabel("label")
    ax.set_yticks(range(fractions.shape[1]))
    plt.colorbar(image, ax=ax, label="fraction of the client's examples")
    return ax


def plot_digits(images_by_writer, max_per_writer=8):
    """A grid of digits: one row per writer. ``images_by_writer`` maps writer id to (images, labels)."""
    writers = list(images_by_writer)
    fig, axes = plt.subplots(len(writers), max_per_writer,
                             figsize=(1.1 * max_per_writer, 1.25 * len(writers)), squeeze=False)
    for row, writer in zip(axes, writers):
        images, labels = images_by_writer[writer]
        for col, ax in enumerate(row):
            ax.axis("off")
            if col < len(images):
                ax.imshow(np.squeeze(images[col]), cmap="gray", vmin=0, vmax=1)
                ax.set_title(str(labels[col]), fontsize=8)
        row[0].text(-4, 14, str(writer)[-10:], ha="right", va="center", fontsize=7)
    fig.tight_layout()
    return fig


def plot_frontier(table, bits_column, ax=None, title=None):
    """Accuracy change against identity (points, with confidence intervals) against ``bits_column`` of every row.

    ``table`` is :func:`helpers.frontier.results_table`'s DataFrame;
    ``bits_column`` is ``"aggregated bits"`` or ``"total bits"`` (broadcast +
    aggregated), in Mibit on a log scale. Each point is the mean paired
    difference over seeds; its error bar is the confidence interval. Points on
    the Pareto front of the means (no other point has fewer bits and a higher
    mean) are joined by a line; each point is labelled (by its ``label`` column, when the table has one).
    """
    ax = ax if ax is not None else plt.subplots(figsize=(7, 4.5))[1]
    bits = (table["broadcast bits"] + table["aggregated bits"] if bits_column == "total bits"
            else table[bits_column]).to_numpy() / 2**20
    change = table["accuracy change (points)"].to_numpy()
    errors = [change - table["change CI low"].to_numpy(), table["change CI high"].to_numpy() - change]
    front = frontier.pareto_front(bits, change)
    ax.errorbar(bits, change, yerr=errors, fmt="none", ecolor="tab:gray", alpha=0.6, capsize=2)
    ax.scatter(bits[~front], change[~front], color="tab:gray", label="dominated", zorder=3)
    order = np.argsort(bits[front])
    ax.plot(bits[front][order], change[front][order], "o-", color="tab:red", label="Pareto front (means)", zorder=3)
    ax.axhline(0, color="black", linewidth=0.8)
    for x, y, (_, row) in zip(bits, change, table.iterrows()):
        label = row.get("label") or (row["aggregation"] if row["direction"] == frontier.AGGREGATION_ONLY else
                                     f"{row['broadcast']} / {row['aggregation']}")  # broadcast / aggregation
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(f"{bits_column}, all rounds and clients of one run (Mibit, log scale)")
    ax.set_ylabel(f"accuracy change vs identity (points)\nmean and {intervals.CONFIDENCE:.0%} CI, {_seeds(table)}")
    ax.set_title(title or bits_column)
    ax.legend(loc="lower right")
    return ax


def plot_changes(labels, changes, ax=None, title=None):
    """One horizontal bar per comparison: the mean paired difference and its confidence interval.

    ``labels`` names each row; ``changes`` holds their
    :class:`helpers.runs.intervals.Interval` (in points). A vertical line marks no
    difference: an interval crossing it shows no difference at its confidence.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(7, 0.45 * len(labels) + 1.2))[1]
    y = np.arange(len(labels))[::-1]
    means = np.array([c.mean for c in changes])
    errors = [means - [c.low for c in changes], [c.high for c in changes] - means]
    colors = ["tab:red" if c.high < 0 else "tab:green" if c.low > 0 else "tab:blue" for c in changes]
    for row, mean, low, high, color in zip(y, means, errors[0], errors[1], colors):
        ax.errorbar(mean, row, xerr=[[low], [high]], fmt="o", color=color, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels)
    first = changes[0] if changes else None
    ax.set_xlabel("test accuracy change (points), mean and "
                  + (f"{first.confidence:.0%} CI over {first.n} paired seeds" if first else "CI"))
    ax.set_title(title or "difference to the reference")
    return ax


def _seeds(table):
    seeds = sorted(set(int(n) for n in table["seeds"]))
    return f"{seeds[0]} paired seeds" if len(seeds) == 1 else f"{seeds} paired seeds"
