"""The course's explanatory diagrams, drawn with matplotlib so they can be changed.

Every function draws one diagram on a matplotlib ``Axes`` (a new figure if none is given) and returns it.
They show ideas, not results: no function here computes a measured figure.
"""
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

SERVER, CLIENT, ENCODER, TRAVEL, SUM = "#dbe8f6", "#e4f2df", "#fbe3c9", "#f6d4d4", "#efe2f5"


def _canvas(ax, size, xlim, ylim):
    """``ax`` (or a new one of ``size`` inches), without axis lines, spanning ``xlim`` by ``ylim``."""
    if ax is None:
        ax = plt.subplots(figsize=size)[1]
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_axis_off()
    return ax


def _box(ax, centre, extent, text, color, size=10, weight="normal"):
    """A rounded box of ``centre`` ``(x, y)`` and ``extent`` ``(width, height)`` with ``text`` in it."""
    (x, y), (w, h) = centre, extent
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=color, edgecolor="#444444", linewidth=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, weight=weight)


def _arrow(ax, start, end, color="#333333", style="-|>", width=1.5):
    """An arrow from ``start`` to ``end`` (points in data coordinates)."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, color=color, linewidth=width))


def fedavg_round(ax=None):
    """One FedAvg round: the server, three sampled clients, what travels each way and where encoders sit.

    In: an optional ``Axes``. Out: the ``Axes`` with the diagram.
    """
    ax = _canvas(ax, (12, 6.2), (-2.4, 14.2), (0, 7.4))
    _box(ax, (6, 6.3), (11.2, 1.2), "server: holds the global model\n"
         "④ averages the updates (weighted by examples) and applies the average to the model", SERVER, 10)
    for x, name in [(2, "client 1"), (6, "client 2"), (10, "client 3")]:
        _box(ax, (x, 0.9), (3.2, 1.2), f"{name}: its own data\n② trains the model locally", CLIENT, 9.5)
        for dx, top, bottom in [(-0.75, "encode", "decode"), (0.75, "decode", "encode")]:
            _box(ax, (x + dx, 4.75), (1.1, 0.5), top, ENCODER, 9)
            _box(ax, (x + dx, 2.15), (1.1, 0.5), bottom, ENCODER, 9)
        _arrow(ax, (x - 0.75, 5.7), (x - 0.75, 5.0))
        _arrow(ax, (x - 0.75, 4.5), (x - 0.75, 2.4), color="#1f5fa8", width=2.5)
        _arrow(ax, (x - 0.75, 1.9), (x - 0.75, 1.5))
        _arrow(ax, (x + 0.75, 1.5), (x + 0.75, 1.9))
        _arrow(ax, (x + 0.75, 2.4), (x + 0.75, 4.5), color="#b8451f", width=2.5)
        _arrow(ax, (x + 0.75, 5.0), (x + 0.75, 5.7))
    ax.text(-2.3, 3.45, "① broadcast:\nthe encoded\nmodel\n(download)", color="#1f5fa8", fontsize=10,
            va="center")
    ax.text(14.1, 3.45, "③ upload:\nthe encoded\nupdate\n(model change)", color="#b8451f", fontsize=10,
            ha="right", va="center")
    for x in (4, 8):
        ax.text(x, 3.45, "network", fontsize=9, ha="center", va="center", color="#777777", style="italic")
    ax.text(-2.3, 7.2, "one round", fontsize=12, weight="bold")
    return ax


def encoder_chain(ax=None):
    """tfmot's 8-bit uniform quantization as a chain of stages, and which tensors travel.

    In: an optional ``Axes``. Out: the ``Axes`` with the diagram.
    """
    ax = _canvas(ax, (12, 4.2), (0, 13), (0, 4.6))
    steps = [("input x\nfloat32 [3136, 512]", SERVER), ("flatten\nstage", ENCODER),
             ("uniform quantization\nstage (8 bits)", ENCODER), ("bitpacking\nstage (8 bits)", ENCODER)]
    for i, (text, color) in enumerate(steps):
        _box(ax, (1.4 + 3.3 * i, 3.4), (2.5, 1.0), text, color, 10)
        if i:
            _arrow(ax, (1.4 + 3.3 * i - 2.05, 3.4), (1.4 + 3.3 * i - 1.25, 3.4))
    labels = ["1,605,632\nfloat32", "1,605,632 integers\n0..255 (as float32)"]
    for i, text in enumerate(labels):
        ax.text(6.35 + 3.3 * i, 2.55, text, ha="center", va="top", fontsize=8.5, color="#555555")
    _box(ax, (8.0, 1.0), (2.6, 0.9), "min, max\n2 float32", TRAVEL, 9.5)
    _box(ax, (11.3, 1.0), (2.6, 0.9), "packed words\n458,752 int32", TRAVEL, 9.5)
    _arrow(ax, (8.0, 2.9), (8.0, 1.45), color="#b8451f", width=2)
    _arrow(ax, (11.3, 2.9), (11.3, 1.45), color="#b8451f", width=2)
    ax.text(0.3, 1.0, "what travels\n(and what the\ncourse counts):", fontsize=10, va="center", weight="bold")
    ax.text(9.5, 0.12, "the shape [3136, 512] is known to the decoder and is not sent", fontsize=8.5,
            ha="center", color="#555555")
    ax.text(0.3, 4.35, "encode runs left to right; decode runs the same stages right to left", fontsize=9.5,
            color="#333333")
    return ax


def gather_split(ax=None):
    """The ``GatherEncoder`` in the aggregation: decode before the sum, the sum, decode after the sum.

    In: an optional ``Axes``. Out: the ``Axes`` with the diagram.
    """
    ax = _canvas(ax, (12, 5.4), (0, 13), (-0.5, 6.4))
    ax.text(0.2, 6.0, "clients", fontsize=11, weight="bold")
    ax.text(5.0, 6.0, "server", fontsize=11, weight="bold")
    ax.plot([4.6, 4.6], [0.2, 6.3], color="#aaaaaa", linestyle=":")
    for i, y in enumerate([4.8, 3.2, 1.6]):
        _box(ax, (1.1, y), (1.6, 0.8), f"update {i + 1}", CLIENT, 9.5)
        _box(ax, (3.2, y), (1.6, 0.8), "encode", ENCODER, 9.5)
        _arrow(ax, (1.9, y), (2.4, y))
        _box(ax, (6.1, y), (2.4, 0.8), "decode before sum\n(stages that do not\ncommute with sum)", ENCODER, 8)
        _arrow(ax, (4.0, y), (4.9, y), color="#b8451f", width=2)
        _arrow(ax, (7.3, y), (8.4, 3.2 + (y - 3.2) * 0.25))
    _box(ax, (9.0, 3.2), (1.2, 1.2), "Σ\nsum", SUM, 12, "bold")
    _box(ax, (11.35, 3.2), (2.4, 1.0), "decode after sum\n(commuting stages,\nonce, num_summands)", ENCODER, 8)
    _arrow(ax, (9.6, 3.2), (10.15, 3.2))
    ax.text(11.35, 1.9, "→ the sum of the\ndecoded updates", ha="center", va="top", fontsize=9)
    ax.text(4.75, 0.45, "each client separately", ha="left", fontsize=9, color="#555555")
    ax.text(10.2, 0.45, "one decode for all clients", ha="left", fontsize=9, color="#555555")
    ax.text(0.2, 0.45, "encoded tensors travel ⟶", fontsize=9, color="#b8451f")
    ax.text(0.2, -0.25, "tfmot's 8-bit encoder: unpacking and de-quantizing (each client's own min and max) come "
            "before the sum; undoing the flatten comes after it.", fontsize=9)
    return ax


def bitpacking_28_of_32(ax=None):
    """Seven 8-bit values packed into two int32 words that use 28 of their 32 bits each.

    In: an optional ``Axes``. Out: the ``Axes`` with the diagram (bit 0 on the left).
    """
    ax = _canvas(ax, (12, 3.6), (-4.2, 33), (-1.6, 5.2))
    colors = plt.get_cmap("tab10").colors
    ax.text(-4.1, 3.95, "7 values\n× 8 bits", fontsize=9.5, va="center")
    for value in range(7):
        ax.add_patch(Rectangle((value * 32 / 7, 3.5), 32 / 7, 0.9, facecolor=colors[value], alpha=0.55,
                               edgecolor="#333333"))
        ax.text(value * 32 / 7 + 16 / 7, 3.95, f"v{value + 1}", ha="center", va="center", fontsize=10)
    for word, y in [(0, 1.6), (1, 0.0)]:
        ax.text(-4.1, y + 0.45, f"int32 word {word + 1}", fontsize=9.5, va="center")
        for bit in range(32):
            stream_bit = word * 28 + bit
            color = colors[stream_bit // 8] if bit < 28 else "#dddddd"
            ax.add_patch(Rectangle((bit, y), 1, 0.9, facecolor=color, alpha=0.55 if bit < 28 else 1,
                                   edgecolor="#666666", linewidth=0.6))
        ax.text(30, y + 0.45, "unused", ha="center", va="center", fontsize=8)
    ax.text(0, -0.55, "bit 0", fontsize=8, ha="left")
    ax.text(32, -0.55, "bit 31", fontsize=8, ha="right")
    ax.text(14, -1.35, "v4 is split over the two words: 56 bits of values in 64 bits sent, "
            "64 / 7 = 9.14 bits per value", ha="center", fontsize=9.5)
    return ax
