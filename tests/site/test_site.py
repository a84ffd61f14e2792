"""The course's website in a real browser: `make site` after a fast-mode course run, then every page in Chromium.

Run with `make test-site` (``pytest --site tests/site``). It executes the numbered notebooks in fast mode with
scripts/run_course.py (as `make course` does, smaller) into a temporary output folder, runs `make site` there,
serves the HTML on 127.0.0.1 and opens every page in headless Chromium: no console error (other than the
badges' images from other hosts, which this offline machine cannot fetch), no broken internal link, every
figure of a notebook page a loaded image, Colab and Binder launch buttons to that notebook's own path, and a
search that finds a page. It also checks that these checks catch a broken link and a missing figure.
Screenshots go to the output folder's site-browser/.
"""
import functools
import http.server
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
from scripts import notebook_cells  # noqa: E402

from tests.browser.test_jupyterlab import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SCREENSHOTS = ROOT / "outputs" / "site-browser"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A fast-mode course run, then `make site`; yields the HTML folder and the seconds `make site` took."""
    outputs = tmp_path_factory.mktemp("course")
    env = dict(os.environ, COURSE_OUTPUT_DIR=str(outputs), COURSE_FAST="1")
    notebooks = [f"notebooks/{name}.ipynb" for name in NOTEBOOKS]
    run = subprocess.run([sys.executable, "scripts/run_course.py", *notebooks], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    start = time.perf_counter()
    built = subprocess.run(["make", "--no-print-directory", "site"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=1200)
    seconds = time.perf_counter() - start
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    html = outputs / "site" / "html"
    assert (html / "index.html").exists() and "site:" in built.stdout
    (SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "make-site-seconds.txt").write_text(f"{seconds:.1f}\n")
    return html


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: run `apt-get install chromium`, then `make test-site` again.")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Served:
    """A folder served over HTTP on 127.0.0.1 for the time of a ``with`` block; ``.url`` is its address."""

    def __init__(self, folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *args: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def pages(html):
    """The site's own HTML pages (not Sphinx's generated index pages or static files)."""
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if "_static" not in p.parts and p.name not in ("genindex.html", "search.html"))


def page_problems(browser, base, html, page_path, screenshot=None):
    """What is wrong with one page: console errors, broken internal links, figures that did not load."""
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    failed_local = []
    page.on("requestfailed", lambda r: failed_local.append(r.url) if r.url.startswith(base) else None)
    problems = []
    try:
        page.goto(base + page_path, wait_until="load")
        page.wait_for_timeout(300)
        offline = [e for e in errors if "ERR_" in e and "net::" in e]  # other hosts' badge images, offline here
        problems += [f"{page_path}: console error {e}" for e in errors if e not in offline]
        problems += [f"{page_path}: could not load {u}" for u in failed_local]
        for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)"):
            parsed = urllib.parse.urlparse(href)
            if href.startswith(base) and parsed.path:
                target = html / urllib.parse.unquote(parsed.path[len(urllib.parse.urlparse(base).path):])
                if not (target.is_file() or (target / "index.html").is_file()):
                    problems.append(f"{page_path}: broken link {href}")
        if page_path.startswith("notebooks/"):
            images = page.eval_on_selector_all("main img", "is => is.map(i => [i.src, i.naturalWidth])")
            local = [(src, width) for src, width in images if src.startswith(base)]
            if not local:
                problems.append(f"{page_path}: no figure")
            problems += [f"{page_path}: figure not loaded {src}" for src, width in local if width == 0]
        if screenshot:
            page.screenshot(path=str(screenshot), full_page=False)
    finally:
        page.close()
    return problems


def test_every_page_loads_with_its_links_and_figures(site, browser):
    with Served(site) as served:
        problems = []
        for page_path in pages(site):
            shot = SCREENSHOTS / (page_path.replace("/", "_").removesuffix(".html") + ".png")
            problems += page_problems(browser, served.url, site, page_path, shot)
    assert not problems, "\n".join(problems)
    assert {f"notebooks/{name}.html" for name in NOTEBOOKS} <= set(pages(site))
    assert not (site / "notebooks" / "solutions").exists()  # not published unless the instructor asks


def test_launch_buttons_open_each_notebooks_own_path(site, browser):
    repository, branch = notebook_cells.config.REPOSITORY, notebook_cells.config.BRANCH
    with Served(site) as served:
        for name in NOTEBOOKS:
            page = browser.new_page()
            try:
                page.goto(f"{served.url}notebooks/{name}.html", wait_until="load")
                buttons = page.eval_on_selector_all(".dropdown-launch-buttons a", "as => as.map(a => a.href)")
            finally:
                page.close()
            path = f"notebooks/{name}.ipynb"
            colab = [b for b in buttons if b.startswith("https://colab.research.google.com/")]
            binder = [b for b in buttons if b.startswith("https://mybinder.org/")]
            assert colab == [notebook_cells.colab_url(path)], (name, buttons)
            assert len(binder) == 1 and binder[0].endswith(f"{repository}/{branch}?urlpath=lab/tree/{path}"), (
                name, buttons)


def test_search_finds_the_notebooks(site, browser):
    with Served(site) as served:
        page = browser.new_page()
        try:
            page.goto(served.url + "search.html?q=quantization", wait_until="load")
            page.wait_for_selector("#search-results li", timeout=20000)
            assert page.locator("#search-results li a").count() >= 2
            page.screenshot(path=str(SCREENSHOTS / "search.png"))
        finally:
            page.close()


def test_execution_times_page_and_report(site):
    times = (site / "timings.html").read_text()
    assert all(f"{name}.ipynb" in times for name in NOTEBOOKS)
    title = (site.parent.parent / "report.md").read_text().splitlines()[0].lstrip("# ")
    assert title and title in (site / "report.html").read_text()  # make course's report, not a placeholder


def test_the_checks_catch_a_broken_link_and_a_missing_figure(site, browser, tmp_path):
    broken = tmp_path / "html"
    shutil.copytree(site, broken)
    first = broken / "notebooks" / f"{NOTEBOOKS[0]}.html"
    first.write_text(first.read_text().replace("</main>", '<a href="../no-such-page.html">x</a></main>', 1))
    figure = next(p for p in (broken / "_images").iterdir() if p.suffix == ".png")
    figure.unlink()
    with Served(broken) as served:
        problems = page_problems(browser, served.url, broken, f"notebooks/{NOTEBOOKS[0]}.html")
        for name in NOTEBOOKS[1:]:  # the removed figure may belong to any notebook
            problems += page_problems(browser, served.url, broken, f"notebooks/{name}.html")
    assert any("broken link" in p and "no-such-page" in p for p in problems), problems
    assert any(figure.name in p for p in problems), problems
