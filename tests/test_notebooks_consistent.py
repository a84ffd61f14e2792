"""Notebooks share one setup cell, are committed without stray outputs, and the student notebook matches its solution."""
import json
import re
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_setup_cells_identical():
    result = subprocess.run([sys.executable, "scripts/notebook_cells.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_notebooks_committed_without_outputs_except_kept_references():
    for path in ROOT.glob("notebooks/**/*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code" and cell.get("outputs"):
                assert "keep_output" in cell["metadata"].get("tags", []), f"{path.name}: stray outputs"


def _launch_links(text):
    """Every Colab, Binder and Codespaces address in ``text``."""
    return re.findall(r"https://(?:colab\.research\.google\.com/github|mybinder\.org/v2/gh|codespaces\.new)/[^)\s]+",
                      text)


def test_every_launch_badge_opens_its_own_notebook_from_the_one_repository_setting():
    from scripts import notebook_cells
    from helpers import config
    readme = (ROOT / "README.md").read_text()
    numbered = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    for path in [*numbered, *sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))]:
        relative = path.relative_to(ROOT).as_posix()
        first = json.loads(path.read_text())["cells"][0]
        assert "badges" in first["metadata"].get("tags", []), f"{relative}: the first cell holds no badges"
        assert _launch_links("".join(first["source"])) == [notebook_cells.colab_url(relative),
                                                           notebook_cells.binder_url(relative)], relative
    rows = {name: _launch_links(rest) for name, rest in re.findall(r"^\| `(\w+)` \|(.*)$", readme, re.M)}
    for path in numbered:
        assert rows.get(path.stem) == [notebook_cells.colab_url(path.relative_to(ROOT).as_posix())], (
            f"README's row for {path.stem} must carry the Colab badge of that notebook: {rows.get(path.stem)}")
    links = _launch_links(readme) + [link for path in ROOT.glob("notebooks/**/*.ipynb")
                                     for link in _launch_links(path.read_text())]
    assert len(links) >= 3 * len(numbered) + 2
    for link in links:
        assert f"/{config.REPOSITORY}/" in link or link.endswith(f"/{config.REPOSITORY}"), link
        target = link.split(f"/{config.BRANCH}/", 1)[-1].split("urlpath=lab/tree/")[-1]
        assert "codespaces" in link or (ROOT / target).is_file(), f"{link} opens {target}, which does not exist"


# --- The course's own address (issue 35): its clone, badges and site point at GitHub itself -------------------

COURSE_HOST = "https://github.com/"
LAUNCHERS = ("https://colab.research.google.com/github/", "https://mybinder.org/v2/gh/", "https://codespaces.new/")


def _scanned_texts():
    """``{path: text}`` of the README, every notebook's cells, docs/ and scripts/: where the course's address is."""
    texts = {ROOT / "README.md": (ROOT / "README.md").read_text()}
    for path in sorted(ROOT.glob("notebooks/**/*.ipynb")):
        texts[path] = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    for folder in ("docs", "scripts"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".md", ".yml", ".yaml", ".py", ".sh", ".toml", ".cfg", ""):
                texts[path] = path.read_text()
    return texts


def _urls(text):
    return re.findall(r"https?://[^\s)\"'<>\]\\`]+", text)


def course_urls(text):
    """Every URL in ``text`` that names the course's repository (config.REPOSITORY, or the template's REPOSITORY)
    or GitHub's Codespaces badge."""
    from helpers import config
    return [url for url in _urls(text) if re.search(rf"/({re.escape(config.REPOSITORY)}|REPOSITORY)(/|$|\?)", url)
            or "codespaces/badge" in url]


def test_the_course_is_cloned_badged_and_published_from_its_own_github_address():
    from helpers import config
    texts = _scanned_texts()
    elsewhere = [(path.relative_to(ROOT).as_posix(), url) for path, text in texts.items() for url in course_urls(text)
                 if not url.startswith((COURSE_HOST, *LAUNCHERS))]
    assert not elsewhere, f"the course's own clone, badge or site URL at another host than {COURSE_HOST}: {elsewhere}"
    lookalikes = sorted({(path.relative_to(ROOT).as_posix(), url.split("/")[2]) for path, text in texts.items()
                         for url in _urls(text) if "github" in url.split("/")[2]
                         and url.split("/")[2] not in ("github.com", "codespaces.new")})
    assert not lookalikes, f"hosts that look like GitHub but are not github.com: {lookalikes}"
    sys.path.insert(0, str(ROOT / "scripts"))
    import notebook_cells
    clone = f'os.environ.get("COURSE_REPO_URL", "https://github.com/{config.REPOSITORY}")'
    assert clone in notebook_cells.SETUP_SOURCE, "the setup cell must clone the course from its GitHub address"
    assert notebook_cells.CODESPACES_BADGE == "https://github.com/codespaces/badge.svg"
    assert f"[![Open in GitHub Codespaces]({notebook_cells.CODESPACES_BADGE})]" in texts[ROOT / "README.md"]
    assert "url: https://github.com/REPOSITORY\n" in texts[ROOT / "docs" / "_config.yml"]  # build_site fills it in
    counted = [url for text in texts.values() for url in course_urls(text)]
    assert len(counted) >= 3 * 6 + 7, counted  # every notebook's badges and clone, the README's, the site's
