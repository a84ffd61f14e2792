"""The cells every notebook shares, the launch badges, and a check that they have not drifted.

``python scripts/notebook_cells.py`` rewrites, from ``helpers.config`` (REPOSITORY, BRANCH, the kernel):
- each notebook's first cell, tagged ``badges``: "Open in Colab" and Binder for that notebook's own path;
- its setup cell, tagged ``setup``, from SETUP_SOURCE, and its kernel metadata from KERNELSPEC;
- every Colab, Binder and Codespaces link in README.md, so that all of them name config.REPOSITORY (and the
  Codespaces badge's image is GitHub's own, https://github.com/codespaces/badge.svg).
``--check`` exits 1 if anything differs (a test runs it).
"""
import pathlib
import re
import sys

import nbformat

from helpers import config

SETUP_SOURCE = '''\
# Setup: the runtime, the versions, fast mode and the seed (docs/running.md).
# On Colab it first fetches the course and installs it, once per runtime (docs/hosted.md, section Colab).
import os, subprocess, sys


class SetupStop(Exception):  # stops the notebook with its one-sentence message, without a traceback
    def _render_traceback_(self):
        return [str(self)]


on_colab = "google.colab" in sys.modules
if not (3, 9) <= sys.version_info[:2] <= (3, 11):
    raise SetupStop(
        f"{'Colab' if on_colab else 'This kernel'} runs Python {sys.version.split()[0]}, but TensorFlow Federated 0.87 "
        "installs only on Python 3.9-3.11. " + (
            "Choose Runtime > Change runtime type > Runtime version 2025.07 (Python 3.11), save, and run this cell "
            "again; if 2025.07 is no longer listed, open the course on Binder or Codespaces, or connect Colab to a "
            "local runtime (docs/hosted.md, section Colab)." if on_colab else "Run `make lab` in the repository (it "
            "builds .venv with Python 3.11), or open the course on Binder or Codespaces (README)."))
if on_colab:
    course = os.path.abspath("fl-compression-course")
    if not os.path.exists(os.path.join(course, "helpers", "colab.py")):
        url = os.environ.get("COURSE_REPO_URL", "https://github.com/REPOSITORY")
        if subprocess.run(["git", "clone", "--quiet", "--depth=1", url, course]).returncode:
            raise SetupStop(f"Could not clone the course from {url} into {course}: check the runtime's network "
                            "(and remove that folder if it is left half-made), then run this cell again.")
    sys.path[:0] = [] if course in sys.path else [course]
    from helpers import colab
    colab.install(course)
try:
    from helpers import setup
except ModuleNotFoundError:
    raise SetupStop("The course helpers are not installed in this kernel: run `make lab` from the repository "
                    "(or `pip install -e .` in this environment), then reopen the notebook.") from None
FAST = setup.start()'''.replace("REPOSITORY", config.REPOSITORY)

KERNELSPEC = {"display_name": config.KERNEL_DISPLAY_NAME, "language": "python", "name": config.KERNEL_NAME}

ROOT = pathlib.Path(__file__).resolve().parent.parent


COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
CODESPACES_BADGE = "https://github.com/codespaces/badge.svg"


def colab_url(path):
    """Colab's address for the notebook at ``path`` (relative to the repository) on GitHub."""
    return f"https://colab.research.google.com/github/{config.REPOSITORY}/blob/{config.BRANCH}/{path}"


def binder_url(path):
    """mybinder.org's address that opens the notebook at ``path`` in JupyterLab."""
    return f"https://mybinder.org/v2/gh/{config.REPOSITORY}/{config.BRANCH}?urlpath=lab/tree/{path}"


def codespaces_url():
    """GitHub Codespaces' address for a new codespace of the repository."""
    return f"https://codespaces.new/{config.REPOSITORY}"


def badges(path):
    """The markdown of a notebook's first cell: its Colab and Binder badges."""
    return (f"[![Open in Colab]({COLAB_BADGE})]({colab_url(path)}) "
            f"[![Open in Binder]({BINDER_BADGE})]({binder_url(path)})")


# Any launch link, whatever repository and branch it names, and the notebook path it opens.
LINKS = [(re.compile(r"https://colab\.research\.google\.com/github/[^/]+/[^/]+/blob/[^/]+/([^)\s]+)"), colab_url),
         (re.compile(r"https://mybinder\.org/v2/gh/[^/]+/[^/?]+/[^?)\s]+\?urlpath=lab/tree/([^)\s]+)"), binder_url),
         (re.compile(r"https://codespaces\.new/[^)\s]+()"), lambda _: codespaces_url()),
         (re.compile(r"(?<=\[!\[Open in GitHub Codespaces\]\()[^)\s]+()"), lambda _: CODESPACES_BADGE)]


def relink(text):
    """``text`` with every Colab, Binder and Codespaces link rebuilt from config.REPOSITORY and config.BRANCH,
    and the Codespaces badge's image at GitHub's own address."""
    for pattern, url in LINKS:
        text = pattern.sub(lambda match: url(match.group(1)), text)
    return text


def notebooks():
    return sorted((ROOT / "notebooks").glob("**/*.ipynb"))


def setup_cells(nb):
    return [c for c in nb.cells if "setup" in c.get("metadata", {}).get("tags", [])]


def badge_cell(nb, path):
    """The notebook's first cell as it should be: tagged ``badges``, with this notebook's own badges."""
    first = nb.cells[0] if nb.cells and "badges" in nb.cells[0].metadata.get("tags", []) else None
    if first is None:
        first = nbformat.v4.new_markdown_cell(metadata={"tags": ["badges"]})
        first.id = "launch-badges"
        nb.cells.insert(0, first)
    first.source = badges(path.relative_to(ROOT).as_posix())
    if path.parent.name == "solutions":  # the student copy (make exercises) gets the badges of its own path
        first.metadata["student_source"] = badges((path.parent.parent / path.name).relative_to(ROOT).as_posix())
    return first


def main(check):
    stale = []
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        cells = setup_cells(nb)
        if len(cells) != 1:
            stale.append(f"{path.relative_to(ROOT)}: {len(cells)} cells tagged 'setup' (expected 1)")
            continue
        cells[0].source = SETUP_SOURCE
        cells[0].metadata["tags"] = ["setup", "hide-input"]  # the website folds it (Jupyter Book's tag)
        nb.metadata["kernelspec"] = KERNELSPEC
        badge_cell(nb, path)
        if nbformat.writes(nb) != before:
            stale.append(f"{path.relative_to(ROOT)}: its badges, setup cell or kernelspec differ")
            if not check:
                nbformat.write(nb, path)
    readme = ROOT / "README.md"
    if relink(readme.read_text()) != readme.read_text():
        stale.append("README.md: a Colab, Binder or Codespaces link does not name config.REPOSITORY and BRANCH")
        if not check:
            readme.write_text(relink(readme.read_text()))
    if check and stale:
        print("\n".join(stale) + "\nRun `python scripts/notebook_cells.py` to rewrite them.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
