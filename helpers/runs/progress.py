"""Progress of the course's long loops: a widget bar in JupyterLab, plain lines in headless runs.

- In a Jupyter kernel that a person watches (JupyterLab, Colab), :func:`progress_bar` is a
  tqdm widget bar (ipywidgets), and the loop's own lines print below it on stdout.
- In headless notebook runs (``COURSE_HEADLESS=1``: ``pytest --nbval``, ``make course``) there
  is no bar: a bar drawn on stderr would break into one fragment per update. The loop's own
  stdout lines, with :func:`time_left`, show the progress.
- In a terminal (scripts), it is tqdm's text bar on stderr.
"""
import importlib.util
import time

from helpers import config


def display_mode():
    """``"widget"``, ``"lines"`` (headless notebook runs) or ``"terminal"``: how progress shows here."""
    if config.headless():
        return "lines"
    try:
        from IPython import get_ipython
    except ImportError:
        return "terminal"
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return "terminal"
    return "widget" if importlib.util.find_spec("ipywidgets") else "lines"


def progress_bar(iterable, desc, unit, total=None):
    """``iterable`` with a progress bar of ``total`` steps named ``desc``, as this place shows progress.

    Returns a tqdm iterable (with ``close()``); in ``"lines"`` mode it is disabled and draws nothing.
    """
    mode = display_mode()
    if mode == "widget":
        from tqdm.notebook import tqdm
        return tqdm(iterable, desc=desc, unit=unit, total=total)
    from tqdm.std import tqdm
    return tqdm(iterable, desc=desc, unit=unit, total=total, leave=False, mininterval=1.0,
                disable=mode == "lines")


def time_left(start, done, total):
    """``"3/10, ~42 s left"``: steps done of ``total`` and the time left at the mean pace since ``start``.

    ``start`` is a :func:`time.perf_counter` reading taken before the first step.
    """
    if done <= 0:
        return f"0/{total}"
    left = (time.perf_counter() - start) / done * (total - done)
    return f"{done}/{total}, ~{_format_seconds(left)} left" if done < total else f"{done}/{total}"


def _format_seconds(seconds):
    """``"42 s"`` or ``"3 min 5 s"``."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"

