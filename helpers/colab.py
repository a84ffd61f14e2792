"""On Colab: install the course into Colab's Python 3.11 runtime, once per runtime.

Every notebook's setup cell, on Colab, clones the repository and calls :func:`install`. It installs
``colab/requirements.txt`` (TF 2.14, tfmot 0.7.5 and TFF's other pins, hash-checked, ``--no-deps`` so that
no other Colab package moves), then TFF 0.87.0 (``requirements-tff.txt``, ``--no-deps``) and the helpers. It
checks that Colab's kernel and notebook stack kept Colab's versions, and restarts the session once if a
package it replaced (numpy, TensorFlow, ...) was already imported. A second call goes straight on.

Only the standard library and ``helpers.setup`` are imported here: this runs before TensorFlow is installed.
"""
import hashlib
import importlib.metadata
import pathlib
import re
import subprocess
import sys
import time

from helpers.setup import versions

# Colab's kernel and notebook stack: google.colab's kernel runs on exactly these versions (Colab 2025.07:
# ipykernel 6.17.1, IPython 7.34.0, jupyter-client 6.1.12, ...). The install must leave them as they are.
KERNEL_STACK = ("ipykernel", "ipython", "jupyter-client", "jupyter-server", "notebook", "tornado", "traitlets",
                "ipywidgets", "matplotlib-inline", "pyzmq", "jupyter-core", "widgetsnbextension")
STAMP = ".colab-installed"
LOCKS = ("colab/requirements.txt", "requirements-tff.txt", "pyproject.toml")


class SetupError(Exception):
    """A set-up problem said in one sentence; Jupyter shows the message without a traceback."""

    def _render_traceback_(self):
        return [str(self)]


def locked_versions(course):
    """``{package: version}`` pinned in the course's Colab lock (names in lower case, ``-`` for ``_`` and ``.``)."""
    text = (pathlib.Path(course) / "colab" / "requirements.txt").read_text()
    return {re.sub(r"[-_.]+", "-", name).lower(): version
            for name, version in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)", text, re.M)}


def fingerprint(course):
    """A short hash of the lock files and this Python: the stamp of an install that is still current."""
    digest = hashlib.sha256(sys.version.encode())
    for name in LOCKS:
        digest.update((pathlib.Path(course) / name).read_bytes())
    return digest.hexdigest()[:16]


def is_installed(course):
    """True when this runtime already holds the course's install for the current lock files."""
    stamp = pathlib.Path(course) / STAMP
    return stamp.exists() and stamp.read_text().strip() == fingerprint(course)


def pip(log, *args):
    """Run ``python -m pip install args`` with its output appended to ``log``; raise SetupError if it fails."""
    with open(log, "a") as out:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                               "--no-input", *args], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = pathlib.Path(log).read_text().strip().splitlines()[-1:]
        raise SetupError(f"Installing the course failed (pip install {' '.join(args)}: {' '.join(tail)}); the full "
                         f"output is in {log}. Check the runtime's network, then run this cell again.")


def changed(before, after):
    """``{package: (old, new)}`` for the packages whose installed version differs between two snapshots."""
    return {name: (before[name], after[name]) for name in before if before[name] != after[name]}


def kernel_stack_moves(before, after):
    """``{package: (old, new)}`` for Colab's kernel packages whose version ``after`` changes (absent: unchanged)."""
    return {name: (before.get(name), after[name]) for name in KERNEL_STACK
            if name in after and after[name] != before.get(name)}


def imported(packages):
    """The packages among ``packages`` (distribution names) with a module already imported in this process."""
    modules = importlib.metadata.packages_distributions()
    wanted = {name.lower().replace("_", "-") for name in packages}
    return sorted({dist for module, dists in modules.items() if module in sys.modules
                   for dist in dists if dist.lower().replace("_", "-") in wanted})


def install(course):
    """Install the course into this Colab runtime unless it is there; restart the session once if needed.

    ``course`` is the folder of the repository's clone. Prints one line per step; pip's output goes to
    ``<course>/colab-install.log``. Raises :class:`SetupError` if pip fails or Colab's kernel stack moved.
    """
    course = pathlib.Path(course).resolve()
    if is_installed(course):
        return
    log = course / "colab-install.log"
    log.write_text("")
    pinned = locked_versions(course)
    before = versions([*pinned, *KERNEL_STACK])
    moving = kernel_stack_moves(before, pinned)
    if moving:
        raise SetupError(f"The course's Colab lock would change Colab's kernel packages {moving}, which can crash "
                         "the runtime; nothing was installed. Check that this is Colab's runtime version 2025.07.")
    start = time.perf_counter()
    print(f"Colab: installing TensorFlow 2.14, tfmot 0.7.5 and TFF 0.87.0 into this runtime, once (log: {log})...")
    pip(log, "--no-deps", "--require-hashes", "-r", str(course / "colab" / "requirements.txt"))
    pip(log, "--no-deps", "--require-hashes", "-r", str(course / "requirements-tff.txt"))
    pip(log, "--no-deps", "-e", str(course))
    after = versions([*pinned, *KERNEL_STACK])
    moved = kernel_stack_moves(before, after)
    if moved:
        raise SetupError(f"The install changed Colab's kernel packages {moved}, which can crash the runtime: "
                         "choose Runtime > Disconnect and delete runtime, and report this to the course's authors.")
    (course / STAMP).write_text(fingerprint(course))
    replaced = changed(before, after)
    print(f"Colab: installed in {time.perf_counter() - start:.0f} s; {len(replaced)} packages added or replaced.")
    stale = imported(replaced)
    if stale:
        restart(stale)


def restart(stale):
    """Restart the Python session, as Colab's own "Restart session" does, and stop this cell with one line.

    ``stale`` names the replaced packages that were already imported. Raises :class:`SetupError`, so that
    Run all stops here instead of running the next cells on a session that is going away.
    """
    reason = (f"Colab: restarting the session once, because {', '.join(stale)} was imported before the install. "
              "When Colab has reconnected, run this cell again (or Runtime > Run all): it goes straight on.")
    from IPython import get_ipython
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):
        shell.kernel.do_shutdown(True)  # the kernel stops once this cell ends; Colab starts a fresh one
    raise SetupError(reason)
