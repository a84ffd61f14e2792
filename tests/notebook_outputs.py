"""What a student reads below a notebook cell: its printed lines, counted the same way by every test.

A cell may show at most :data:`MAX_LINES` lines (stdout, stderr, and the text of a result that has no image):
more is a wall that nobody reads. conftest.py applies it to every cell that `pytest --nbval` runs (fast mode),
tests/test_notebook_outputs.py to the executed copies that `make course` keeps (full size).
"""
MAX_LINES = 40


def output_text(output):
    """The text a student sees for one output of a cell (an image or HTML counts as none)."""
    if output.get("output_type") == "stream":
        return _joined(output.get("text", ""))
    data = output.get("data", {})
    if any(key in data for key in ("image/png", "text/html", "application/vnd.jupyter.widget-view+json")):
        return ""
    return _joined(data.get("text/plain", ""))


def _joined(text):
    """A saved notebook may store text as a list of lines (nbformat's multiline strings)."""
    return "".join(text) if isinstance(text, list) else str(text)


def cell_lines(outputs):
    """The number of lines a cell's ``outputs`` print (error tracebacks not counted: those fail on their own)."""
    return sum(len(output_text(output).splitlines()) for output in outputs or [])
