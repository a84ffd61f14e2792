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
