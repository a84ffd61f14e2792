"""The README a newcomer reads: short, every command it shows exists, every page it links is there.

Its reference material lives in docs/, one subject a page; the website (`make site`) shows the same pages.
"""
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
from scripts import build_site  # noqa: E402


def make_targets():
    """The targets the Makefile defines, as `make -pq` sees them."""
    out = subprocess.run(["make", "-pRrq", "-f", "Makefile", ":"], cwd=ROOT, capture_output=True, text=True).stdout
    return set(re.findall(r"^([a-z][a-z-]*):", out, re.M))


def test_readme_is_short():
    assert len(README) <= 6000, f"README.md has {len(README)} characters; move reference material to docs/"


def test_every_make_command_in_the_readme_is_a_target():
    blocks = "".join(re.findall(r"```bash\n(.*?)```", README, re.S))
    shown = set(re.findall(r"`make ([a-z][a-z-]*)", README) + re.findall(r"^make ([a-z][a-z-]*)", blocks, re.M))
    assert {"course", "test", "lab"} <= shown
    assert shown <= make_targets(), f"README shows make targets the Makefile lacks: {shown - make_targets()}"


def test_every_path_and_link_in_the_readme_exists():
    commands = [line.split("#")[0].split() for block in re.findall(r"```bash\n(.*?)```", README, re.S)
                for line in block.splitlines()]
    paths = [word for words in commands for word in words if "/" in word and not word.startswith("-")]
    links = [link.split("#")[0] for link in re.findall(r"\]\(([^)]+)\)", README) if "://" not in link]
    assert paths and links
    missing = [p for p in paths + links if not (ROOT / p).exists()]
    assert not missing, f"README names paths that do not exist: {missing}"


def test_every_docs_page_is_linked_from_the_readme_and_on_the_website():
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    assert pages == sorted(build_site.DOC_PAGES), "docs/*.md and scripts/build_site.py's DOC_PAGES differ"
    assert [p for p in pages if f"(docs/{p}.md)" not in README] == []
    for page in pages:
        text = (ROOT / "docs" / f"{page}.md").read_text()
        assert text.startswith("# "), f"docs/{page}.md has no title"
        for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if "://" not in link:
                assert (ROOT / "docs" / link).exists(), f"docs/{page}.md links {link}, which does not exist"
