"""Paired comparisons of runs: the mean difference to a reference and its confidence interval.

Every comparison the course states is *paired*: each method trains once per
seed, and a seed gives every method the same initial model, the same clients
and the same shuffles. So for seed ``s`` the difference
``d_s = accuracy(method, s) - accuracy(reference, s)`` is free of the luck that
the seed brings to both runs, and the comparison reads the differences alone.

:func:`paired_difference` gives their mean and a two-sided Student *t*
confidence interval, ``mean ± t(1 - (1 - confidence) / 2, n - 1) · sd / √n``
over the ``n`` seeds (``sd`` with ``n - 1`` in the denominator). It says how
far the mean difference can be from the true one given how much the
differences vary between seeds; it covers the seeds' randomness only (clients,
shuffles, initial model, stochastic rounding), not other settings.
:func:`save` and :func:`load` keep a notebook's comparisons for the course report.
"""
import dataclasses
import json
import pathlib

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """The mean paired difference ``mean`` with its confidence interval ``[low, high]`` over ``n`` seeds."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE

    def at_most_below(self, margin):
        """True when the whole interval lies above ``-margin``: "at most ``margin`` below the reference"."""
        return self.low >= -margin

    def verdict(self):
        """``"higher"``, ``"lower"``, or ``"no difference shown"`` when the interval contains 0."""
        if self.low > 0:
            return "higher"
        if self.high < 0:
            return "lower"
        return "no difference shown"

    def describe(self, unit="points"):
        """Text such as ``"+0.12 points (95% CI -0.30 to +0.54, 3 paired seeds)"``."""
        return (f"{self.mean:+.2f} {unit} ({self.confidence:.0%} CI {self.low:+.2f} to {self.high:+.2f}, "
                f"{self.n} paired seeds)")


def paired_difference(values, reference, confidence=CONFIDENCE):
    """The :class:`Interval` of ``values - reference``, two sequences with one number per seed, in seed order."""
    values, reference = np.asarray(values, float), np.asarray(reference, float)
    if values.shape != reference.shape or values.ndim != 1:
        raise ValueError(f"paired values need one number per seed on both sides, got shapes "
                         f"{values.shape} and {reference.shape}; train both with the same seeds.")
    if len(values) < 2:
        raise ValueError(f"a confidence interval needs at least 2 paired seeds, got {len(values)}; "
                         "set COURSE_SEEDS=2 or more.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}.")
    differences = values - reference
    mean = float(differences.mean())
    half_width = (stats.t.ppf(1 - (1 - confidence) / 2, len(differences) - 1)
                  * differences.std(ddof=1) / np.sqrt(len(differences)))
    return Interval(mean, mean - float(half_width), mean + float(half_width), len(differences), confidence)


def accuracy_points(histories):
    """Final test accuracy in percent of each :class:`helpers.runs.history.History` in ``histories`` (one per seed)."""
    accuracies = [h.final_accuracy() for h in histories]
    if any(a is None for a in accuracies):
        raise ValueError("a run was never evaluated on the test split: give it an evaluate_fn.")
    return np.array([100 * a for a in accuracies])


def compare_to_reference(runs, reference):
    """``{name: Interval}``: each run's accuracy difference (points) to ``runs[reference]``, paired by seed.

    ``runs`` maps a name to its histories, one per seed in the same seed order
    for every name (:func:`helpers.training.train_paired`).
    """
    if reference not in runs:
        raise ValueError(f"the reference {reference!r} is not among the runs {sorted(runs)}.")
    seeds = {name: [h.config.get("seed") for h in histories] for name, histories in runs.items()}
    unpaired = [name for name, order in seeds.items() if order != seeds[reference]]
    if unpaired:
        raise ValueError(f"runs {unpaired} used other seeds than {reference!r} ({seeds[reference]}); "
                         "a paired comparison needs the same seeds, in the same order.")
    base = accuracy_points(runs[reference])
    return {name: paired_difference(accuracy_points(histories), base) for name, histories in runs.items()}


def save(changes, path):
    """Write ``{label: Interval}`` to the JSON file ``path`` (a list of dicts, in order); returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([dict(label=label, **dataclasses.asdict(change))
                                for label, change in changes.items()], indent=1))
    return path


def load(path):
    """The ``{label: Interval}`` that :func:`save` wrote to ``path``."""
    try:
        rows = json.loads(pathlib.Path(path).read_text())
        return {row.pop("label"): Interval(**row) for row in rows}
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"{path} is not a saved comparison ({error}); run its notebook again.") from None
