"""Notebook 06's compression frontier: many encoders on one training setup, what each saves and what it costs.

The names notebooks 04 and 06 call come from :mod:`helpers.frontier.sweep`:
the methods and the sweep's rows, ``run_sweep``, ``results_table`` and what
reads it. Beside it:

- ``research_stages``: stages from the literature (rotation blocks, 1-bit signs, top-k) that the sweep
  compares with the original tutorial's 8-bit quantization and notebook 05's stages;
- ``baselines``: the literature's baselines (sign, QSGD, TernGrad stages; signSGD's majority vote);
- ``error_feedback``: client-side error feedback, residuals kept per client across rounds;
- ``fetchsgd``: FetchSGD, a count sketch with momentum and error kept on the server;
- ``from_scratch``: the headline rows trained from a fresh model (``make frontier``) and their results file;
- ``scratch_results``: what notebook 06 reads from the committed results file.
"""
from helpers.frontier.sweep import (AGGREGATION_ONLY, BOTH, BROADCAST_ONLY, IDENTITY, METHODS, SWEEP,
                                    available_methods, best_within, change_interval, check_results_file, encoder_fns,
                                    from_scratch_settings, pareto_front, parse_row, results_table, row_key,
                                    left_out, row_name, row_slug, run_sweep, save_results, sweep_rows, sweep_settings,
                                    target_lines, warm_start, warm_start_path)

__all__ = ["AGGREGATION_ONLY", "BOTH", "BROADCAST_ONLY", "IDENTITY", "METHODS", "SWEEP", "available_methods", "best_within",
           "change_interval", "check_results_file", "encoder_fns", "from_scratch_settings", "pareto_front",
           "parse_row", "results_table", "row_key", "left_out", "row_name", "row_slug", "run_sweep", "save_results",
           "sweep_rows", "sweep_settings", "target_lines", "warm_start", "warm_start_path"]
