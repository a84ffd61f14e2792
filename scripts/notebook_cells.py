"""The cells every notebook shares, and a check that they have not drifted.

``python scripts/notebook_cells.py`` rewrites the setup cell of every notebook
from SETUP_SOURCE and its kernel metadata from KERNELSPEC (the course's kernel,
so JupyterLab starts it under the course's name); ``--check`` exits 1 if any
notebook differs (a test runs it). Notebooks mark the cell with the tag ``setup``.
"""
import pathlib
import sys

import nbformat

from helpers import config

SETUP_SOURCE = '''\
# Setup: the runtime, the versions, fast mode and the seed (README: "Running the course").
import sys
if not (3, 9) <= sys.version_info[:2] <= (3, 11):
    colab = "google.colab" in sys.modules
    raise SystemExit(
        f"{'Colab' if colab else 'This kernel'} runs Python {sys.version.split()[0]}, but TensorFlow Federated 0.87 "
        "installs only on Python 3.9-3.11. " + (
            "If Runtime > Change runtime type still offers a Python 3.11 runtime version, pick it; otherwise "
            "open the course on Binder or Codespaces, or connect Colab to a local runtime (README, section Colab)."
            if colab else "Run `make lab` in the repository (it builds .venv with Python 3.11), or open the "
            "course on Binder or Codespaces (README)."))
try:
    from helpers import setup
except ModuleNotFoundError:
    raise SystemExit("The course helpers are not installed in this kernel: run `make lab` from the "
                     "repository (or `pip install -e .` in this environment), then reopen the notebook.") from None
FAST = setup.start()'''

KERNELSPEC = {"display_name": config.KERNEL_DISPLAY_NAME, "language": "python", "name": config.KERNEL_NAME}

ROOT = pathlib.Path(__file__).resolve().parent.parent


def notebooks():
    return sorted((ROOT / "notebooks").glob("**/*.ipynb"))


def setup_cells(nb):
    return [c for c in nb.cells if "setup" in c.get("metadata", {}).get("tags", [])]


def main(check):
    stale = []
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        cells = setup_cells(nb)
        if len(cells) != 1:
            stale.append(f"{path.relative_to(ROOT)}: {len(cells)} cells tagged 'setup' (expected 1)")
            continue
        differs = [what for what, same in [("setup cell", cells[0].source == SETUP_SOURCE),
                                            ("kernelspec", nb.metadata.get("kernelspec") == KERNELSPEC)]
                   if not same]
        if differs:
            stale.append(f"{path.relative_to(ROOT)}: {' and '.join(differs)} differ")
            if not check:
                cells[0].source = SETUP_SOURCE
                nb.metadata["kernelspec"] = KERNELSPEC
                nbformat.write(nb, path)
    if check and stale:
        print("\n".join(stale) + "\nRun `python scripts/notebook_cells.py` to rewrite them.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
