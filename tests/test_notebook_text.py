"""The notebooks' text speaks to students: no development history, takeaways at the end, a course ending."""
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NUMBERED = sorted((ROOT / "notebooks").glob("0*.ipynb"))
HISTORY = ["earlier version", "earlier revision", "make bench", "make course", "from_scratch.py",
           "target met", "targets met", "not met", "missed", "this machine is shared", "runs we made",
           "keeps its output", "bootstrap interval", "cpu-seconds", "cpu seconds"]


def cells(path):
    return json.loads(path.read_text())["cells"]


def markdown(path):
    """The text of a notebook's markdown cells, without its first cell of launch badges."""
    return ["".join(c["source"]) for c in cells(path)
            if c["cell_type"] == "markdown" and "badges" not in c["metadata"].get("tags", [])]


def test_there_are_six_numbered_notebooks():
    assert [p.name[:2] for p in NUMBERED] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NUMBERED, ids=lambda p: p.name)
def test_no_development_history_in_the_markdown(path):
    for text in markdown(path):
        found = [phrase for phrase in HISTORY if phrase in text.lower()]
        assert not found, f"{path.name}: {found} in a markdown cell starting {text[:60]!r}"


@pytest.mark.parametrize("path", NUMBERED, ids=lambda p: p.name)
def test_no_cell_prints_a_target_as_met_or_missed(path):
    for cell in cells(path):
        source = "".join(cell["source"])
        if cell["cell_type"] == "code":
            assert "target_lines" not in source and not re.search(r'"target[: ]', source), source[:80]


@pytest.mark.parametrize("path", NUMBERED, ids=lambda p: p.name)
def test_ends_with_takeaways(path):
    all_cells = cells(path)
    last_code = max(i for i, c in enumerate(all_cells) if c["cell_type"] == "code")
    after = ["".join(c["source"]) for c in all_cells[last_code + 1:]]
    assert after and any("## Takeaways" in text for text in after), f"{path.name} has no closing takeaways"


def test_the_course_ends_with_a_reading_list():
    text = "\n".join(markdown(ROOT / "notebooks" / "06_compression_frontier.ipynb"))
    links = set(re.findall(r"\]\((https?://[^)\s]+)\)", text.split("## Reading list")[-1]))
    assert "## Reading list" in text and len(links) >= 5, sorted(links)
    for paper in ["1602.05629", "1610.05492", "1611.00429", "1812.07210", "2105.08339", "2108.08842",
                  "math/0611343", "1901.09847"]:
        assert f"arxiv.org/abs/{paper})" in text, paper
    assert "your exercise (" not in text


def test_the_student_copy_of_05_does_not_call_itself_solved():
    student = markdown(ROOT / "notebooks" / "05_custom_encoding_stages.ipynb")[0]
    solved = markdown(ROOT / "notebooks" / "solutions" / "05_custom_encoding_stages.ipynb")[0]
    assert "solved" not in student.lower() and "NotImplementedError" in student
    assert "solved copy" in solved
