"""Course-wide settings read from environment variables.

- ``COURSE_FAST=1`` switches every notebook to a smoke size (few rounds, few
  clients, a small offline dataset). ``make test`` sets it; ``make course``
  does not.
- ``COURSE_DATA_SOURCE`` forces the data source: ``auto`` (default), ``tff``
  or ``offline``.
- ``COURSE_SEEDS`` is how many paired seeds every comparison trains: 3 by
  default, 2 in fast mode; more (``COURSE_SEEDS=10``) is the research mode.
- ``COURSE_MAX_CONCURRENT_CALLS`` is how many computations TFF's local worker
  runs at once (TFF's ``max_concurrent_computation_calls``): 2 by default, so a
  round trains its clients two at a time; ``-1`` runs a whole round at once.
- ``COURSE_OUTPUT_DIR`` is where executed notebooks, TensorBoard logs and
  benchmark results go (default: ``outputs/`` in the repository, or the
  current folder's ``outputs/`` when the package is used elsewhere).

One variable is set here rather than read: :func:`one_malloc_arena` sets
``MALLOC_ARENA_MAX=1`` (unless it is set) for the processes the course starts.
"""
import ctypes
import os
import pathlib

SEED = 0

# Where the course is published: the one setting behind every Colab, Binder and Codespaces badge and the
# clone in the notebooks' setup cell (`python scripts/notebook_cells.py` writes them; a test checks them).
REPOSITORY = "OWNER/REPO"
BRANCH = "main"

# The Jupyter kernel `make env` installs into .venv, and that every notebook's metadata names. Its name is
# Jupyter's standard "python3", so that Colab opens the notebooks on its own kernel without a warning; inside
# .venv (make lab, Binder, nbval) "python3" is the course's environment, installed under this display name.
KERNEL_NAME = "python3"
KERNEL_DISPLAY_NAME = "FL compression course (Python 3.11)"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def fast_mode() -> bool:
    """True when ``COURSE_FAST`` asks for the smoke size; raises on a bad value."""
    value = os.environ.get("COURSE_FAST", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"COURSE_FAST={value!r} is not understood: use COURSE_FAST=1 for the "
        "smoke size or COURSE_FAST=0 (or unset it) for the full course."
    )


def seeds() -> tuple:
    """The run seeds every comparison trains: ``SEED, SEED + 1, ...``, as many as ``COURSE_SEEDS`` says.

    The default is 3 seeds (2 in fast mode). A confidence interval needs at
    least 2, so ``COURSE_SEEDS`` must be an integer of 2 or more.
    """
    text = os.environ.get("COURSE_SEEDS", "").strip()
    if not text:
        return tuple(range(SEED, SEED + (2 if fast_mode() else 3)))
    if not text.isdigit() or int(text) < 2:
        raise ValueError(f"COURSE_SEEDS={text!r} is not understood: give the number of paired seeds, "
                         "an integer of 2 or more (3 is the course's default), or unset it.")
    return tuple(range(SEED, SEED + int(text)))


def max_concurrent_calls() -> int:
    """How many computations TFF's local worker runs at once: ``COURSE_MAX_CONCURRENT_CALLS``, default 2.

    ``-1`` is TFF's own default, no limit: every client of a round trains at once,
    each with its own TF session and buffers. Two at a time keep two cores busy and
    hold about 100 MiB less in the worker (docs/memory.md); the weights are the same.
    """
    text = os.environ.get("COURSE_MAX_CONCURRENT_CALLS", "").strip()
    if not text:
        return 2
    if text == "-1" or (text.isdigit() and int(text) >= 1):
        return int(text)
    raise ValueError(f"COURSE_MAX_CONCURRENT_CALLS={text!r} is not understood: give how many computations "
                     "TFF's worker may run at once, an integer of 1 or more, or -1 for no limit (TFF's default).")


def pick(full, fast):
    """Return ``fast`` in fast mode and ``full`` otherwise."""
    return fast if fast_mode() else full


def repo_root() -> pathlib.Path:
    """The repository folder this package was installed from (editable install)."""
    return pathlib.Path(__file__).resolve().parent.parent


def output_dir(*parts: str) -> pathlib.Path:
    """A folder under the course's output folder, created if missing."""
    base = os.environ.get("COURSE_OUTPUT_DIR") or str(repo_root() / "outputs")
    path = pathlib.Path(base).expanduser().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def flag(name) -> bool:
    """True when the environment variable ``name`` is set to 1, true, yes or on."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def headless() -> bool:
    """True when nobody watches the notebooks run (``COURSE_HEADLESS=1``: ``make course``, ``pytest --nbval``)."""
    return flag("COURSE_HEADLESS")


def interactive() -> bool:
    """False in fast mode and in headless runs. Notebooks open TensorBoard only when this is True."""
    return not fast_mode() and not headless()


def one_malloc_arena():
    """Make glibc's malloc use one heap ("arena") in this process and in the processes it starts.

    glibc gives each thread that allocates while another holds the lock an arena of its own, up to 8 per
    core, and keeps what was freed in each. TensorFlow allocates on many threads: with one arena TFF's worker
    held 100-130 MiB less after 20 rounds of 10 clients, without growing from round to round; in the kernel
    the difference stayed within the spread between runs (docs/memory.md). ``mallopt`` acts on this process, before
    TensorFlow starts its threads; ``MALLOC_ARENA_MAX`` is read by every process started afterwards (TFF's
    ``worker_binary``). An existing ``MALLOC_ARENA_MAX`` is kept. Does nothing where there is no glibc.
    """
    os.environ.setdefault("MALLOC_ARENA_MAX", "1")
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, int(os.environ["MALLOC_ARENA_MAX"]))  # -8: M_ARENA_MAX
    except (OSError, AttributeError, ValueError):
        pass
