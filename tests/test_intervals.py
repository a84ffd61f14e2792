"""Paired differences and their Student t confidence intervals, checked against values worked by hand."""
import numpy as np
import pytest

from helpers.runs import intervals
from tests.test_frontier import seed_runs

T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (tables)
T_975_9 = 2.262157162740992  # ... 9 degrees of freedom


def test_interval_of_three_paired_seeds_matches_the_textbook_formula():
    change = intervals.paired_difference([91.0, 92.5, 90.0], [90.0, 91.0, 90.0])  # differences 1.0, 1.5, 0.0
    half = T_975_2 * np.std([1.0, 1.5, 0.0], ddof=1) / np.sqrt(3)
    assert (change.mean, change.n) == (pytest.approx(2.5 / 3), 3)
    assert (change.low, change.high) == pytest.approx((2.5 / 3 - half, 2.5 / 3 + half))
    assert change.verdict() == "no difference shown" and change.low < 0 < change.high


def test_more_seeds_narrow_the_interval_and_can_show_a_difference():
    rng = np.random.default_rng(0)
    differences = -0.5 + 0.1 * rng.standard_normal(10)
    change = intervals.paired_difference(differences, np.zeros(10))
    half = T_975_9 * differences.std(ddof=1) / np.sqrt(10)
    assert change.high - change.low == pytest.approx(2 * half)
    assert change.verdict() == "lower" and change.high < 0
    assert intervals.paired_difference(-differences, np.zeros(10)).verdict() == "higher"


def test_a_shared_offset_cancels_in_the_pairs():
    """A seed that is lucky for both methods moves both accuracies, not their difference."""
    luck = np.array([5.0, -3.0, 0.5])
    change = intervals.paired_difference(80 + luck - 0.2, 80 + luck)
    assert (change.mean, change.low, change.high) == pytest.approx((-0.2, -0.2, -0.2))


def test_at_most_below_needs_the_whole_interval():
    change = intervals.Interval(mean=-0.3, low=-0.9, high=0.3, n=3)
    assert change.at_most_below(1.0) and not change.at_most_below(0.8)
    assert change.describe() == "-0.30 points (95% CI -0.90 to +0.30, 3 paired seeds)"


@pytest.mark.parametrize("values, reference, message", [
    ([1.0, 2.0], [1.0], "one number per seed on both sides"),
    ([1.0], [1.0], "at least 2 paired seeds"),
])
def test_unpaired_or_too_few_values_are_refused(values, reference, message):
    with pytest.raises(ValueError, match=message):
        intervals.paired_difference(values, reference)


def test_compare_to_reference_pairs_runs_by_seed_and_refuses_other_seeds():
    runs = {"identity": seed_runs("identity", (1, 1), [0.90, 0.91, 0.92]),
            "8-bit": seed_runs("8-bit", (1, 1), [0.89, 0.91, 0.90])}
    changes = intervals.compare_to_reference(runs, "identity")
    assert changes["identity"].mean == 0 and changes["8-bit"].mean == pytest.approx(-1.0)
    runs["8-bit"] = runs["8-bit"][::-1]
    with pytest.raises(ValueError, match=r"runs \['8-bit'\] used other seeds than 'identity'"):
        intervals.compare_to_reference(runs, "identity")
    with pytest.raises(ValueError, match="the reference 'none' is not among"):
        intervals.compare_to_reference(runs, "none")


def test_saved_comparisons_load_as_they_were(tmp_path):
    changes = {"broadcast only": intervals.paired_difference([1.0, 2.0, 2.5], [1.0, 1.0, 1.0])}
    path = intervals.save(changes, tmp_path / "c.json")
    assert intervals.load(path) == changes
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not a saved comparison"):
        intervals.load(path)
