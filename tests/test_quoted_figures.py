"""The from-scratch figures INSTRUCTOR.md quotes are those of the committed results file, written by scripts/quote_results.py."""
from helpers.frontier import scratch_results
from scripts import quote_results


def test_instructor_quotes_the_committed_from_scratch_results():
    text = quote_results.INSTRUCTOR.read_text()
    quoted = quote_results.current_block(text)
    assert quoted is not None, "INSTRUCTOR.md lost the markers of its from-scratch figures"
    assert quoted == quote_results.block(scratch_results.committed_results()), (
        "INSTRUCTOR.md's from-scratch figures differ from results/frontier_from_scratch.json: run "
        "`make quotes` (scripts/quote_results.py) and commit INSTRUCTOR.md")


def test_every_row_of_the_file_is_quoted_with_its_interval():
    results = scratch_results.committed_results()
    lines = quote_results.quoted_lines(results)
    rows = {e["row"] for e in results["runs"]}
    assert len([line for line in lines if line.startswith("- ") and "against the identity" in line]) == len(rows)
    assert all("95% CI" in line for line in lines if line.startswith("- "))


def test_no_from_scratch_figure_is_quoted_outside_the_block():
    text = quote_results.INSTRUCTOR.read_text()
    outside = text.replace(quote_results.current_block(text), "")
    assert "95.73%" not in outside and "three times as long a round" not in outside  # the stale ones that went
