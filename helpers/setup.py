"""The first step of every notebook: check versions, quiet the logs, seed, report fast mode.

Call ``FAST = setup.start()`` at the top of a notebook, before anything imports
TensorFlow. It fails with one clear sentence when the environment is not the one
the course was built for. Importing this module does nothing else than define
its names; :func:`start` does the work, in this order:

1. hide TensorFlow's C++ start-up noise (``TF_CPP_MIN_LOG_LEVEL=3`` unless set:
   TensorFlow reads it when it is first imported) and use one malloc arena
   (:func:`helpers.config.one_malloc_arena`, before TensorFlow starts its threads);
2. check the versions, quiet the Python logs, seed, show figures inline;
3. start TFF's runtime (:func:`helpers.workers.runtime.start`: ``COURSE_WORKERS``
   or one local worker, and the exit hook that stops it);
4. print one status line.
"""
import importlib.metadata
import logging
import os
import random
import sys
import warnings

from helpers import config


def _pinned_prefix(name, lock_input):
    """The version prefix that ``name==X.Y.*`` or ``name==X.Y.Z`` in a lock input of the repository allows.

    The bounds live only in the lock inputs requirements-tff-deps.in and requirements-tff.in
    (docs/environment.md); this check reads them from there instead of repeating them.
    """
    import pathlib
    import re
    path = pathlib.Path(__file__).resolve().parent.parent / lock_input
    try:
        text = path.read_text()
    except OSError:
        raise RuntimeError(f"{path} is missing: the course helpers must be installed from a clone of the "
                           "repository (`pip install --no-deps -e .`), which holds the version bounds.") from None
    for line in text.splitlines():
        match = re.match(rf"\s*{re.escape(name)}\s*==\s*([0-9][0-9.]*?)(\.\*)?\s*(#|$)", line)
        if match:
            return match.group(1) + ("." if match.group(2) else "")
    raise RuntimeError(f"{path} has no line `{name}==<version>`; restore it (git checkout {lock_input}).")


# The lock inputs this check reads (a copy of the helpers elsewhere, such as a graded release, needs them too).
LOCK_INPUTS = ("requirements-tff-deps.in", "requirements-tff.in")
EXPECTED = {
    "tensorflow-federated": _pinned_prefix("tensorflow-federated", "requirements-tff.in"),
    "tensorflow-model-optimization": _pinned_prefix("tensorflow-model-optimization", "requirements-tff-deps.in"),
    "tensorflow": _pinned_prefix("tensorflow", "requirements-tff-deps.in"),
}


def versions(names):
    """``{package: version or None}`` for the distributions ``names`` as installed now (None if missing)."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def installed_versions():
    """``{package: version}`` for the packages in :data:`EXPECTED` (None if missing)."""
    return versions(EXPECTED)


def check_versions():
    """Raise ``RuntimeError`` naming every package whose version the course was not built for."""
    problems = [f"{name} {got or 'is missing'} (expected {want}{'x' if want.endswith('.') else ''})"
                for name, got in installed_versions().items()
                for want in [EXPECTED[name]] if not (got or "").startswith(want)]
    if problems:
        raise RuntimeError("This kernel's environment is not the course's: " + "; ".join(problems)
                           + ". Run `make lab` from the repository, which builds and uses .venv.")


def _not_tfmot_bitpacking_notice(record):
    """False for tfmot's notice that bit packing to 1-5 bits may use extra memory (b/161433177).

    tfmot logs it each time such an encoder is traced, so a sweep would print it hundreds of times.
    """
    return "b/161433177" not in record.getMessage()


def quiet_logs():
    """Silence TensorFlow's and TFF's informational logging, deprecation warnings and tfmot's bit packing notice."""
    import absl.logging
    import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger().addFilter(_not_tfmot_bitpacking_notice)  # added once, however often this runs
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)


def seed_everything(seed=config.SEED):
    """Seed Python, numpy and TensorFlow so a notebook gives the same numbers twice."""
    import numpy as np
    import tensorflow as tf
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


def show_figures_inline():
    """In a Jupyter kernel, render matplotlib figures as images from the first one on.

    Without this, the first figure of a notebook comes out as the text ``<Figure size ...>``
    with this set of packages (IPython 9, ipykernel 6, matplotlib 3.8). Outside Jupyter it does nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):
        shell.run_line_magic("matplotlib", "inline")


def start(seed=config.SEED):
    """Check, quiet, seed, start TFF's runtime and print one status line; returns True in fast mode."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported: hides its CUDA-plugin noise
    config.one_malloc_arena()
    check_versions()
    quiet_logs()
    seed_everything(seed)
    show_figures_inline()
    import nest_asyncio
    nest_asyncio.apply()  # TFF's synchronous calls inside Jupyter's event loop
    fast = config.fast_mode()
    versions = installed_versions()
    mode = "FAST smoke size (COURSE_FAST=1)" if fast else "full size"
    from helpers.workers import runtime
    where = runtime.start()
    print(f"TFF {versions['tensorflow-federated']}, TF {versions['tensorflow']}, "
          f"tfmot {versions['tensorflow-model-optimization']} | {mode} | seed {seed} | {where}")
    if "google.colab" in sys.modules:
        print(colab_outputs_notice(config.output_dir()))
    return fast


def colab_outputs_notice(outputs):
    """One line on Colab: where saved runs go, that deleting the runtime loses them, and how to keep them."""
    return (f"Colab: saved runs and figures go to {outputs}, which is lost when the runtime is deleted or times "
            "out; to keep them, mount Google Drive and set COURSE_OUTPUT_DIR to a folder there before this cell "
            "(docs/hosted.md, section Colab).")
