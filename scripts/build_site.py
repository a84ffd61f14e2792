"""`make site`: the course as a website, built with Jupyter Book from what `make course` wrote, executing nothing.

It stages a book under <outputs>/site/source: the README as the home page, the executed notebooks of
<outputs>/notebooks/ (each with Colab and Binder launch buttons to its own path in the repository), the pages of
docs/, INSTRUCTOR.md, the report <outputs>/report.md and a page of execution times from timings.json. Then
`jupyter-book build` writes the HTML to <outputs>/site/html/ (open index.html). The solutions notebook is left
out unless the instructor asks for it: COURSE_SITE_SOLUTIONS=1.

Usage: python scripts/build_site.py
"""
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time

from helpers import config

ROOT = config.repo_root()
# The docs pages in reading order; every docs/*.md must be listed (a test checks it).
DOC_PAGES = ["running", "environment", "data", "hosted", "scaling_out", "benchmarks", "memory", "grading", "architecture"]


def executed_notebooks(folder):
    """The numbered notebooks that `make course` executed into ``folder``; raise if one is missing."""
    wanted = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    missing = [name for name in wanted if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"error: {folder} lacks the executed notebooks {', '.join(missing)}: run `make course` "
                         "first (it executes them; `make site` executes nothing).")
    return [folder / name for name in wanted]


def timings_page(timings_file):
    """A markdown page: each notebook's wall time in seconds, from make course's timings.json."""
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    rows = "\n".join(f"| `{name}` | {seconds:,.0f} |" for name, seconds in sorted(timings.items()))
    total = sum(timings.values())
    return ("# Execution times\n\nWall time of each notebook in the `make course` run this site was built from "
            f"(`timings.json`), on the machine that ran it.\n\n| notebook | seconds |\n|---|---|\n{rows}\n"
            f"| all | {total:,.0f} |\n")


def toc(notebooks, with_solutions):
    """The book's _toc.yml: home page, notebooks, guides, the instructor's guide and the results."""
    chapters = [f"notebooks/{p.stem}" for p in notebooks]
    if with_solutions:
        chapters.append("notebooks/solutions/05_custom_encoding_stages")
    parts = {"The notebooks": chapters,
             "Guides": [f"docs/{page}" for page in DOC_PAGES if (ROOT / "docs" / f"{page}.md").exists()],
             "For instructors": ["INSTRUCTOR"], "Results": ["report", "timings"]}
    lines = ["format: jb-book", "root: README", "parts:"]
    for caption, files in parts.items():
        if files:
            lines += [f"- caption: {caption}", "  chapters:", *[f"    - file: {name}" for name in files]]
    return "\n".join(lines) + "\n"


def copy_report(outputs, source):
    """Copy make course's report.md, and the figures it shows (paths relative to the output folder), into ``source``."""
    report = outputs / "report.md"
    text = report.read_text() if report.exists() else "# Report\n\n`make course` wrote no report for this run.\n"
    for figure in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):
        if (outputs / figure).is_file():
            (source / figure).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(outputs / figure, source / figure)
    (source / "report.md").write_text(text)


def stage(outputs, source, with_solutions):
    """Copy everything the book shows into ``source``; returns it."""
    shutil.rmtree(source, ignore_errors=True)
    (source / "notebooks").mkdir(parents=True)
    notebooks = executed_notebooks(outputs / "notebooks")
    for path in notebooks:
        shutil.copy2(path, source / "notebooks" / path.name)
    if with_solutions:
        solutions = ROOT / "notebooks" / "solutions"
        shutil.copytree(solutions, source / "notebooks" / "solutions", ignore=shutil.ignore_patterns(".*"))
    shutil.copytree(ROOT / "docs", source / "docs", ignore=shutil.ignore_patterns("_*.yml"))
    for name in ("README.md", "INSTRUCTOR.md"):
        shutil.copy2(ROOT / name, source / name)
    copy_report(outputs, source)
    (source / "timings.md").write_text(timings_page(outputs / "notebooks" / "timings.json"))
    settings = (ROOT / "docs" / "_config.yml").read_text()
    (source / "_config.yml").write_text(settings.replace("REPOSITORY", config.REPOSITORY)
                                        .replace("BRANCH", config.BRANCH))
    (source / "_toc.yml").write_text(toc(notebooks, with_solutions))
    return source


def build(source, html):
    """Run `jupyter-book build` on ``source`` and move its HTML to ``html``; raise with its log if it fails."""
    work = source.parent / "build"
    shutil.rmtree(work, ignore_errors=True)
    jupyter_book = pathlib.Path(sys.executable).parent / "jupyter-book"
    done = subprocess.run([str(jupyter_book), "build", str(source), "--path-output", str(work),
                           "--warningiserror", "--keep-going", "--quiet"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"error: jupyter-book could not build the site:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    shutil.rmtree(html, ignore_errors=True)
    shutil.move(str(work / "_build" / "html"), str(html))
    write_favicon_ico(ROOT / "docs" / "favicon.png", html / "favicon.ico")
    return html / "index.html"


def write_favicon_ico(png, ico):
    """The site's icon as /favicon.ico too: browsers ask for it on pages that name no icon (index.html)."""
    from PIL import Image
    Image.open(png).save(ico, sizes=[(32, 32), (64, 64)])


def main():
    outputs = config.output_dir()
    with_solutions = config.flag("COURSE_SITE_SOLUTIONS")
    start = time.perf_counter()
    index = build(stage(outputs, outputs / "site" / "source", with_solutions), outputs / "site" / "html")
    print(f"site: {index} ({time.perf_counter() - start:.0f} s; solutions "
          f"{'shown' if with_solutions else 'not published (COURSE_SITE_SOLUTIONS=1 shows them)'})")


if __name__ == "__main__":
    main()
