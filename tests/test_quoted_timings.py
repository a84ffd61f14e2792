"""INSTRUCTOR.md's notebook timings are those of the committed results/course_timings.json (make course-timings)."""
import pytest

from scripts import time_course

INSTRUCTOR = time_course.ROOT / "INSTRUCTOR.md"


def schedule_rows(text):
    """The schedule's timing cells by notebook number: (full size, "fast, empty / saved runs")."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and cells[1][:2].isdigit():
            rows[cells[1][:2]] = (cells[2], cells[3])
    return rows


@pytest.fixture(scope="module")
def runs():
    return time_course.read_results()


def test_the_file_holds_every_run_the_schedule_quotes_with_where_it_ran(runs):
    assert set(runs) == {label for label, *_ in time_course.RUNS}
    for run in runs.values():
        assert {"commit", "date", "machine", "load_average"} <= set(run) and run["seconds"]
    assert len(runs["full size"]["seconds"]) == len(runs["fast, empty"]["seconds"]) == 6


def test_the_schedule_quotes_the_committed_timings(runs):
    quoted = schedule_rows(INSTRUCTOR.read_text())
    expected = time_course.schedule_cells(runs)
    assert set(quoted) == set(expected)
    for number, cells in expected.items():
        assert quoted[number] == cells, (
            f"INSTRUCTOR.md's schedule quotes {quoted[number]} for notebook {number}, results/course_timings.json "
            f"holds {cells}: copy the file's figures (or rerun make course-timings)")


def test_the_text_quotes_the_committed_full_size_run(runs):
    text = " ".join(INSTRUCTOR.read_text().split())
    assert time_course.full_size_sentence(runs) in text
    assert time_course.paired_minutes(runs) in text
    assert runs["full size"]["commit"][:7] in text
