"""Colab's packages (runtime version 2025.07) and what the course's Colab install may change among them.

- ``colab/pip-freeze-2025.07.txt`` is Colab's published package list (googlecolab/backend-info).
- ``colab/requirements.in`` names, on its ``# replace:`` lines, the Colab packages the course replaces.

``python scripts/colab_packages.py held FILE`` writes the pins of every other Colab package, as constraints
for scripts/lock.sh (colab/held-at-colab-versions.txt), so the Colab lock keeps them at Colab's versions.
tests/colab/standin.py builds its stand-in for Colab from the same list.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FREEZE = ROOT / "colab" / "pip-freeze-2025.07.txt"
LOCK_INPUT = ROOT / "colab" / "requirements.in"
LOCK = ROOT / "colab" / "requirements.txt"

# Colab ships IPython without jedi (its own completer); the course's lock must not add it.
NOT_ON_COLAB = ("jedi",)


def canonical(name):
    """A package name as pip compares them: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def colab_versions():
    """``{package: version}`` of every package that Colab's list pins with ``==`` (not those from URLs or files)."""
    versions = {}
    for line in FREEZE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "==" in line and "@" not in line:
            name, version = line.split("==", 1)
            versions[canonical(name)] = version
    return versions


def replaced():
    """The Colab packages the course may replace: the names on colab/requirements.in's ``# replace:`` lines."""
    names = set()
    for line in LOCK_INPUT.read_text().splitlines():
        match = re.match(r"#\s*replace:\s*(.*?)(\s{2,}|$)", line)
        if match:
            names.update(canonical(name) for name in match.group(1).split())
    return names


def held():
    """``{package: version}`` of the Colab packages the course must leave at Colab's version."""
    return {name: version for name, version in colab_versions().items() if name not in replaced()}


def locked():
    """``{package: version}`` pinned in colab/requirements.txt."""
    from helpers import colab
    return colab.locked_versions(ROOT)


if __name__ == "__main__":
    if sys.argv[1:2] != ["held"] or len(sys.argv) != 3:
        sys.exit("usage: python scripts/colab_packages.py held FILE")
    pathlib.Path(sys.argv[2]).write_text("".join(f"{n}=={v}\n" for n, v in sorted(held().items())))
