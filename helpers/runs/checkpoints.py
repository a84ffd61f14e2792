"""Save a training run's state every few rounds, and resume it after a crash, with TFF's program-state tools.

One job: :class:`RunCheckpoints` keeps one run's checkpoints in a folder of
its own, written by ``tff.program.FileProgramStateManager``: each version is
a SavedModel holding the whole TFF server state (model, optimizer and
encoder states), the round number and the run's history so far (as JSON
text). A version is written to a temporary folder and renamed when
complete, so a run killed while saving leaves the previous version intact.

The folder is named by a hash of the run's *fingerprint*: its settings, seed,
name, what its encoders, model and evaluation are (:func:`describe`, which
reads their source), and the source of the course modules that define the
method (:data:`CODE_MODULES`). A ``manifest.json`` in the folder repeats it.
Checkpoints of the same run name from other settings or code are reported
(what differs) and never loaded. A checkpoint that cannot be read stops the
run with :class:`CheckpointError`, naming the folder and what to delete;
nothing is deleted for you.

``helpers.runs.cached_history`` turns checkpoints on for the long runs
(:func:`enabled`): under ``outputs/checkpoints/`` every
:data:`DEFAULT_EVERY` rounds, removed once the run's history is saved.
"""
import asyncio
import contextlib
import contextvars
import functools
import hashlib
import inspect
import json
import pathlib
import re
import shutil

import numpy as np
import tree

from helpers import config

DEFAULT_EVERY = 10
KEEP = 2  # versions kept per run: the latest and the one before
PREFIX = "round_"
MANIFEST = "manifest.json"
# The modules whose source defines how a run trains: a change to any of them
# makes earlier checkpoints "other code".
CODE_MODULES = ("training", "compression", "data/federated", "model", "runs/seeds", "sizing", "runs/checkpoints")

_enabled = contextvars.ContextVar("course_checkpoints", default=None)


class CheckpointError(RuntimeError):
    """A checkpoint that exists but cannot be used: unreadable, or not of this run."""


# --------------------------------------------------------------- fingerprints --

def _source_of_file(path):
    try:
        return pathlib.Path(path).read_text()
    except OSError:
        return ""


def _strip_addresses(text):
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def describe(obj, depth=0):
    """A text naming what ``obj`` (a function, partial, namedtuple of functions...) computes.

    Functions are described by their source (or compiled code when there is no
    source), their default arguments and, recursively, the values their
    closures capture: two encoder policies made by the same factory with other
    bit widths differ. Memory addresses are left out, so the text is the same
    in every process.
    """
    if depth > 6:
        return "..."
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return repr(obj)
    if isinstance(obj, functools.partial):
        return (f"partial({describe(obj.func, depth + 1)}, args={[describe(a, depth + 1) for a in obj.args]}, "
                f"kwargs={sorted((k, describe(v, depth + 1)) for k, v in obj.keywords.items())})")
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return f"{type(obj).__name__}({', '.join(describe(v, depth + 1) for v in obj)})"
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(describe(v, depth + 1) for v in obj) + "]"
    if inspect.isfunction(obj):
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            code = obj.__code__
            source = hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()
        # Captured functions and settings count; captured data and mutable containers (a cache
        # the function fills as it runs) only by their type, so the text does not change as it runs.
        cells = [describe(c.cell_contents, depth + 1) if _is_setting(c.cell_contents)
                 else type(c.cell_contents).__qualname__
                 for c in (obj.__closure__ or ()) if _cell_filled(c)]
        defaults = [describe(d, depth + 1) for d in (obj.__defaults__ or ())]
        return f"{obj.__module__}.{obj.__qualname__}<{source}> defaults={defaults} closure={cells}"
    if inspect.isclass(obj) or inspect.ismethod(obj) or callable(obj):
        name = getattr(obj, "__qualname__", type(obj).__qualname__)
        return f"{getattr(obj, '__module__', '')}.{name}"
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):  # arrays and tensors: what, not their values
        return f"{type(obj).__qualname__}{list(obj.shape)}:{obj.dtype}"
    return _strip_addresses(f"{type(obj).__qualname__}:{obj!r}")[:2000]


def _is_setting(value):
    if value is None or isinstance(value, (bool, int, float, str, functools.partial)) or callable(value):
        return True
    return isinstance(value, tuple) and all(_is_setting(v) for v in value)


def _cell_filled(cell):
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def array_digest(model_weights):
    """sha256 of a ``ModelWeights``' (or list of arrays') values, shapes and dtypes."""
    digest = hashlib.sha256()
    arrays = (list(model_weights.trainable) + list(model_weights.non_trainable)
              if hasattr(model_weights, "trainable") else list(model_weights))
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def code_digests(modules=CODE_MODULES):
    """``{"helpers/<module>.py": sha256 of its source}`` for the modules (paths under helpers/) that define the method."""
    folder = pathlib.Path(__file__).resolve().parent.parent
    return {f"helpers/{m}.py": hashlib.sha256(_source_of_file(folder / f"{m}.py").encode()).hexdigest()[:16]
            for m in modules}


def _key(fingerprint, code):
    text = json.dumps(dict(fingerprint=fingerprint, code=code), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _slug(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


# ------------------------------------------------------------------- async --

def _run(coroutine):
    """Run one of FileProgramStateManager's coroutines to its end, in a notebook's running loop too."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    import nest_asyncio  # Jupyter's loop is running: helpers.setup applies this already
    nest_asyncio.apply(loop)
    return loop.run_until_complete(coroutine)


# -------------------------------------------------------------- checkpoints --

class RunCheckpoints:
    """The checkpoints of one run, under ``root/<name>-<key>/``, written every ``every`` rounds.

    ``fingerprint`` is a JSON-serialisable dict of everything that makes the
    run what it is (settings, seed, :func:`describe` of its functions); the
    source of :data:`CODE_MODULES` is added to it. ``helpers.training.run_rounds``
    calls :meth:`resume` before its first round and :meth:`save` after each.
    """

    def __init__(self, root, name, fingerprint, every=DEFAULT_EVERY, keep=KEEP, verbose=True):
        import tensorflow_federated as tff
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"checkpoint every must be a number of rounds >= 1, got {every!r}.")
        self.name, self.every, self.verbose = name, every, verbose
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=repr))
        self.code = code_digests()
        self.key = _key(self.fingerprint, self.code)
        self.root = pathlib.Path(root)
        self.folder = self.root / f"{_slug(name)}-{self.key}"
        self.finished = False
        self._report_others()
        self._check_manifest()
        self.manager = tff.program.FileProgramStateManager(
            str(self.folder), prefix=PREFIX, keep_total=keep, keep_first=False)
        self._write_manifest()

    # -- what is in the folder --
    def _manifest(self):
        return dict(name=self.name, key=self.key, fingerprint=self.fingerprint, code=self.code)

    def _write_manifest(self):
        path = self.folder / MANIFEST
        if path.exists():
            return
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(self._manifest(), indent=1, sort_keys=True))
        partial.replace(path)

    def _check_manifest(self):
        """Our folder's manifest must be ours; anything else is reported and moved aside, never loaded."""
        path = self.folder / MANIFEST
        if not self.folder.exists() or not path.exists():
            if self.folder.exists() and any(self.folder.glob(PREFIX + "*")):
                self._set_aside(f"has checkpoints but no {MANIFEST}")
            return
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(
                f"{path} cannot be read ({error}). Delete the folder {self.folder} to start this run "
                "over; nothing else needs to go.") from None
        if saved != json.loads(json.dumps(self._manifest(), sort_keys=True)):
            self._set_aside("was written for other settings or code: " + ", ".join(_differences(saved, self._manifest())))

    def _set_aside(self, why):
        number = 1
        while self.folder.with_name(f"{self.folder.name}-ignored-{number}").exists():
            number += 1
        aside = self.folder.with_name(f"{self.folder.name}-ignored-{number}")
        self.folder.rename(aside)
        print(f"checkpoint {self.folder} {why}; not used, moved to {aside} (delete it when you no longer need it)")

    def _report_others(self):
        """Report (never load) checkpoints of the same run name from other settings or code."""
        for other in sorted(self.root.glob(f"{_slug(self.name)}-*")) if self.root.exists() else []:
            if other == self.folder or not other.is_dir() or "-ignored-" in other.name:
                continue
            try:
                saved = json.loads((other / MANIFEST).read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if saved.get("name") != self.name:
                continue
            print(f"checkpoint {other} is of run {self.name!r} with other "
                  f"{', '.join(_differences(saved, self._manifest()))}; not used "
                  "(delete it when you no longer need it)")

    # -- resume and save --
    def resume(self, state):
        """``(state, history dict, round)`` of the latest checkpoint, or None when there is none.

        ``state`` is the run's initial server state; it gives the structure to load.
        Raises :class:`CheckpointError` when the latest checkpoint cannot be read.
        """
        versions = _run(self.manager.get_versions()) or []
        if not versions:
            return None
        latest = max(versions)
        path = self.folder / f"{PREFIX}{latest}"
        template = [np.int64(0), ""] + tree.flatten(state)
        try:
            saved, version = _run(self.manager.load_latest(template))
            history = json.loads(_text(saved[1]))
            if int(saved[0]) != version or version != latest:
                raise ValueError(f"it says round {int(saved[0])}, its name says {version}")
            state = tree.unflatten_as(state, saved[2:])
        except Exception as error:  # a damaged SavedModel raises many kinds of errors
            earlier = [v for v in versions if v < latest]
            what = (f"delete {path} to resume from round {max(earlier)}" if earlier else
                    f"delete {self.folder} to start this run over")
            raise CheckpointError(
                f"the checkpoint of round {latest} of run {self.name!r} at {path} cannot be read "
                f"({type(error).__name__}: {str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}). "
                f"Nothing was deleted: {what}.") from None
        print(f"{self.name}: resuming after round {latest} from {path}")
        return state, history, latest

    def due(self, round_num, last_round):
        """True when round ``round_num`` should be saved: every ``every`` rounds and the last one."""
        return round_num % self.every == 0 or round_num == last_round

    def save(self, round_num, state, history):
        """Save the server ``state`` after ``round_num`` with the ``history`` dict so far."""
        # A flat list: TF 2.14's SavedModel fails on dicts in the saved value with this
        # typing_extensions ("__dict__ descriptor does not support '_DictWrapper'").
        program_state = [np.int64(round_num), json.dumps(history, sort_keys=True)] + tree.flatten(state)
        _run(self.manager.save(program_state, int(round_num)))

    def discard(self):
        """Delete this run's checkpoint folder (once the finished run's results are saved elsewhere)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _text(value):
    value = value.item() if hasattr(value, "item") else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _differences(saved, ours):
    """Readable names of what differs between two manifests: settings keys and code files."""
    found = []
    a, b = saved.get("fingerprint", {}), ours["fingerprint"]
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                inner = sorted(k for k in set(a[key]) | set(b[key]) if a[key].get(k) != b[key].get(k))
                found.append(f"{key} ({', '.join(inner)})")
            else:
                found.append(key)
    code_a, code_b = saved.get("code", {}), ours["code"]
    found += [f"code of {f}" for f in sorted(set(code_a) | set(code_b)) if code_a.get(f) != code_b.get(f)]
    return found or ["manifest"]


# --------------------------------------------------- turned on for a block --

@contextlib.contextmanager
def enabled(root=None, every=DEFAULT_EVERY):
    """Within this block, ``training.train_fed_avg`` checkpoints its runs under ``root`` every ``every`` rounds.

    ``root`` defaults to ``config.output_dir("checkpoints")``. Yields a list
    that collects the :class:`RunCheckpoints` used in the block, so the caller
    can :meth:`~RunCheckpoints.discard` them once the results are saved.
    """
    used = []
    token = _enabled.set(dict(root=pathlib.Path(root) if root else config.output_dir("checkpoints"),
                              every=every, used=used))
    try:
        yield used
    finally:
        _enabled.reset(token)


def active():
    """``{"root", "every", "used"}`` inside :func:`enabled`, else None."""
    return _enabled.get()


def for_run(name, fingerprint, verbose=True):
    """The :class:`RunCheckpoints` of one run inside :func:`enabled` (under its root, at its interval), or None.

    The checkpoints are listed in the block's ``used``, so the caller can discard them once the run is saved.
    """
    found = active()
    if found is None:
        return None
    checkpoint = RunCheckpoints(found["root"], name, fingerprint, found["every"], verbose=verbose)
    found["used"].append(checkpoint)
    return checkpoint
