"""Training runs: their settings, where they are saved, their seeds, histories, checkpoints and statistics.

The names the notebooks call: :class:`RunSettings`, :class:`RunOutputs`, ``run_settings`` (the
course's named runs), ``cached_history`` and ``kept_models``
(:mod:`helpers.runs.settings`). The modules beside them:

- ``settings``    a run's settings (a frozen dataclass), the course's runs, saved runs by key
- ``seeds``       every random seed of a run, from its seed, the round and the client id
- ``history``     what happened in a run, round by round; saved as JSON
- ``checkpoints`` save a run's state every few rounds and resume it (TFF's program-state tools)
- ``intervals``   paired comparisons: mean difference to a reference, confidence interval
- ``progress``    progress of long loops: a widget in JupyterLab, plain lines headless
"""
from helpers.runs.settings import (LONG_RUN, TUTORIAL, RunOutputs, RunSettings, cached_history, kept_model_path,
                                   kept_models, one_line_for_loaded_runs, run_settings, settings_key)

__all__ = ["LONG_RUN", "TUTORIAL", "RunOutputs", "RunSettings", "cached_history", "kept_model_path", "kept_models",
           "one_line_for_loaded_runs", "run_settings", "settings_key"]
