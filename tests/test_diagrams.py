"""The explanatory diagrams draw what they promise: boxes, arrows and labels on one Axes."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

from helpers import diagrams  # noqa: E402


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def _count(ax, kind):
    return sum(isinstance(p, kind) for p in ax.patches)


def test_round_has_server_three_clients_and_both_directions():
    ax = diagrams.fedavg_round()
    texts = " ".join(_texts(ax))
    assert "server" in texts and texts.count("client") == 3
    assert "broadcast" in texts and "upload" in texts
    assert _count(ax, FancyBboxPatch) == 1 + 3 + 3 * 4  # server, clients, an encoder and a decoder each way
    assert _count(ax, FancyArrowPatch) == 3 * 6
    plt.close(ax.figure)


def test_encoder_chain_shows_three_stages_and_the_travelling_tensors():
    ax = diagrams.encoder_chain()
    texts = _texts(ax)
    assert sum("\nstage" in t for t in texts) == 3
    assert any("458,752 int32" in t for t in texts) and any("min, max" in t for t in texts)
    plt.close(ax.figure)


def test_gather_split_decodes_before_and_after_one_sum():
    ax = diagrams.gather_split()
    texts = _texts(ax)
    assert sum(t.startswith("decode before sum") for t in texts) == 3
    assert sum(t.startswith("decode after sum") for t in texts) == 1
    assert sum("sum" == t.split("\n")[-1] for t in texts) == 1
    plt.close(ax.figure)


def test_bitpacking_packs_seven_values_into_28_of_32_bits_of_two_words():
    ax = diagrams.bitpacking_28_of_32()
    cells = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() == 1]
    grey = [p for p in cells if matplotlib.colors.to_hex(p.get_facecolor()) == "#dddddd"]
    assert len(cells) == 64 and len(grey) == 8
    assert sum(t.startswith("v") and len(t) == 2 for t in _texts(ax)) == 7
    plt.close(ax.figure)


@pytest.mark.parametrize("name", ["fedavg_round", "encoder_chain", "gather_split", "bitpacking_28_of_32"])
def test_each_diagram_draws_on_the_axes_it_is_given(name):
    fig, ax = plt.subplots()
    assert getattr(diagrams, name)(ax) is ax
    plt.close(fig)
