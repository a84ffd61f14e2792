"""How progress shows: plain lines in headless runs, a widget in a watched kernel, tqdm in a terminal."""
import time

import pytest

from helpers.runs import progress


def test_headless_runs_draw_no_bar(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_HEADLESS", "1")
    assert progress.display_mode() == "lines"
    bar = progress.progress_bar(range(3), desc="run", unit="round")
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert capsys.readouterr() == ("", "")  # nothing on stderr (or stdout)


def test_a_terminal_bar_draws_on_stderr(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_HEADLESS", "0")
    bar = progress.progress_bar(range(2), desc="run", unit="round")
    list(bar)
    bar.close()
    assert "run" in capsys.readouterr().err


def test_a_terminal_gets_a_text_bar(monkeypatch):
    monkeypatch.setenv("COURSE_HEADLESS", "0")
    assert progress.display_mode() == "terminal"  # pytest is not a Jupyter kernel
    bar = progress.progress_bar(range(2), desc="run", unit="round")
    assert list(bar) == [0, 1] and bar.n == 2
    bar.close()


@pytest.mark.parametrize("elapsed, done, total, expected", [
    (10.0, 2, 10, "2/10, ~40 s left"),
    (100.0, 1, 3, "1/3, ~3 min 20 s left"),
    (5.0, 4, 4, "4/4"),
    (0.0, 0, 5, "0/5"),
])
def test_time_left(monkeypatch, elapsed, done, total, expected):
    monkeypatch.setattr(time, "perf_counter", lambda: 1000.0 + elapsed)
    assert progress.time_left(1000.0, done, total) == expected
