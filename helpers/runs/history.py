"""What happened in a training run, round by round: the :class:`History` notebooks plot and save.

A History holds one record per round (clients, seconds, loss, accuracy, bits
sent each way and their running totals) and one per test evaluation, with the
run's settings in ``config``. It saves to and loads from a JSON file.
"""
import json
import pathlib

import numpy as np

from helpers.runs import files

BITS_KEYS = ("broadcast_bits", "aggregated_bits")


class History:
    """Per-round records of one run: ``rounds`` (list of dicts) and ``evals`` (list of dicts).

    Each round record has ``round`` (1-based), ``clients``, ``seconds``,
    ``loss``, ``accuracy``, ``broadcast_bits``, ``aggregated_bits``, their
    ``cumulative_*`` totals, and every other scalar metric of the process
    under its ``section/name`` path. Each eval record has ``round``, ``loss``
    and ``accuracy`` on the test split.
    """

    def __init__(self, name, config=None, rounds=None, evals=None):
        self.name = name
        self.config = dict(config or {})
        self.rounds = list(rounds or [])
        self.evals = list(evals or [])

    def column(self, key):
        """Values of ``key`` across rounds, as a numpy array."""
        return np.array([r[key] for r in self.rounds])

    def final_accuracy(self):
        """Test accuracy of the last evaluation (a fraction), or None if never evaluated."""
        return self.evals[-1]["accuracy"] if self.evals else None

    def total_bits(self, key):
        """Bits of ``key`` (``broadcast_bits`` or ``aggregated_bits``) summed over all rounds."""
        return int(sum(r[key] for r in self.rounds))

    def save(self, path):
        """Write the history as JSON to ``path``; returns the path."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = dict(name=self.name, config=self.config, rounds=self.rounds, evals=self.evals)
        path.write_text(json.dumps(data, indent=1))
        return path

    @classmethod
    def load(cls, path):
        """Read a history written by :meth:`save`."""
        data = files.read_json(path, f"no saved history at {path}; run the training cell first.",
                               "a saved history", "; delete it and train again.")
        return cls(data["name"], data.get("config"), data["rounds"], data.get("evals"))

    def __repr__(self):
        return f"History({self.name!r}, {len(self.rounds)} rounds, {len(self.evals)} evals)"
