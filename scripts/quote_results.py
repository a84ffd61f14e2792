"""Write the from-scratch figures that INSTRUCTOR.md quotes from the committed results file (``make quotes``).

INSTRUCTOR.md holds them between two markers; this script rewrites what lies between from
``results/frontier_from_scratch.json``, and ``tests/test_quoted_figures.py`` fails when the two differ,
so no figure there outlives the run that produced it. Run it after ``make frontier`` commits new rows.
"""
import pathlib

from helpers.frontier import from_scratch, scratch_results

ROOT = pathlib.Path(__file__).resolve().parent.parent
INSTRUCTOR = ROOT / "INSTRUCTOR.md"
BEGIN = "<!-- from results/frontier_from_scratch.json: scripts/quote_results.py writes this list -->"
END = "<!-- end of the figures from results/frontier_from_scratch.json -->"


def quoted_lines(results):
    """The markdown lines INSTRUCTOR.md quotes from ``results``: where they come from, one line per row, EF's effect."""
    lines = [f"From {scratch_results.provenance_line(results)}:", ""]
    table = from_scratch.summary_table(results)
    for _, row in table.iterrows():
        change = f"{row['accuracy change (points)']:+.2f} points (95% CI {row['change CI low']:+.2f} to " \
                 f"{row['change CI high']:+.2f}, {row['seeds']} paired seeds)"
        lines.append(f"- {row['label']}: {row['test accuracy (%)']:.2f}%, {row['reduction (aggregated)']:.2f}x less "
                     f"uplink ({row['reduction (total)']:.2f}x in all), {change} against the identity of its cohort; "
                     f"{row['seconds per round']:.2f} s per round")
    for _, row in scratch_results.error_feedback_table(results).iterrows():
        lines.append(f"- error feedback on {row['compressor']}, {row['cohort']}: {row['EF change (points)']:+.2f} "
                     f"points (95% CI {row['CI low']:+.2f} to {row['CI high']:+.2f}, {row['seeds']} paired seeds)")
    return lines


def block(results):
    """The text between and including the markers."""
    return "\n".join([BEGIN, *quoted_lines(results), END])


def current_block(text):
    """The marked block of ``text`` (INSTRUCTOR.md's), or None when it has none."""
    if BEGIN not in text or END not in text:
        return None
    return text[text.index(BEGIN):text.index(END) + len(END)]


def main():
    text = INSTRUCTOR.read_text()
    old = current_block(text)
    if old is None:
        raise SystemExit(f"{INSTRUCTOR} has no block between the markers {BEGIN!r} and {END!r}: add them where "
                         "the from-scratch figures belong.")
    INSTRUCTOR.write_text(text.replace(old, block(scratch_results.committed_results())))
    print(f"wrote the from-scratch figures into {INSTRUCTOR}")


if __name__ == "__main__":
    main()
