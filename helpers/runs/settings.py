"""What a training run is: its settings, the course's named runs, and where a run is saved.

- :class:`RunSettings`: how a FedAvg run trains (rounds, clients, learning
  rates...), a frozen dataclass that checks its values.
- :data:`TUTORIAL` and :data:`LONG_RUN`, the two runs of notebooks 03 and 04;
  :func:`run_settings` gives one, shrunk to a smoke size in fast mode.
- :func:`settings_key`: the hash that names a saved run; :func:`cached_history`
  loads a run saved under ``outputs/runs/`` with exactly these settings, or
  trains and saves it.
- :class:`RunOutputs`: what a run prints, writes and saves besides the History it returns.
- :func:`kept_models`: where a run keeps its global model after given rounds.
"""
import contextlib
import contextvars
import dataclasses
import hashlib
import json
from typing import Optional, Tuple

from helpers import config
from helpers.runs import checkpoints
from helpers.runs.history import History


def _is_int(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The settings of one FedAvg run.

    - ``rounds``, ``clients_per_round``, ``client_epochs``: how much it trains.
    - ``client_lr``, ``server_lr``, ``server_momentum``: client SGD and server SGD(M).
    - ``server_lr_drop``: ``(after_rounds, learning_rate)``, or None for a constant server step.
    - ``eval_every``: rounds between test evaluations (None: after the last round only).
    - ``keep_model_after``: rounds after which the global model is saved (:func:`kept_models`).
    - ``warm_rounds``: a sweep's rows start from :data:`LONG_RUN`'s model after this many rounds
      (0: from a fresh model).
    - ``clients``: the number of training clients of the data, so that other data gets other keys.
    - ``fast``: True for the smoke size of fast mode.
    """

    rounds: int
    clients_per_round: int
    client_epochs: int = 1
    client_lr: float = 0.02
    server_lr: float = 1.0
    server_momentum: float = 0.0
    server_lr_drop: Optional[Tuple[int, float]] = None
    eval_every: Optional[int] = None
    keep_model_after: Tuple[int, ...] = ()
    warm_rounds: int = 0
    clients: Optional[int] = None
    fast: bool = False

    def __post_init__(self):
        if self.server_lr_drop is not None:
            object.__setattr__(self, "server_lr_drop", tuple(self.server_lr_drop))
        object.__setattr__(self, "keep_model_after", tuple(self.keep_model_after))
        for problem in self._problems():
            raise ValueError(f"bad run settings: {problem}.")

    def _problems(self):
        for name in ("rounds", "clients_per_round", "client_epochs"):
            if not _is_int(getattr(self, name), 1):
                yield f"{name} must be an integer of at least 1, got {getattr(self, name)!r}"
        for name in ("client_lr", "server_lr"):
            if not isinstance(getattr(self, name), (int, float)) or not getattr(self, name) > 0:
                yield f"{name} must be a number above 0, got {getattr(self, name)!r}"
        if not isinstance(self.server_momentum, (int, float)) or not 0 <= self.server_momentum < 1:
            yield f"server_momentum must be in [0, 1), got {self.server_momentum!r}"
        drop = self.server_lr_drop
        if drop is not None and (len(drop) != 2 or not _is_int(drop[0], 0)
                                 or not isinstance(drop[1], (int, float)) or drop[1] <= 0):
            yield f"server_lr_drop must be (rounds >= 0, learning rate > 0), got {drop!r}"
        if self.eval_every is not None and not _is_int(self.eval_every, 1):
            yield f"eval_every must be None or an integer of at least 1, got {self.eval_every!r}"
        outside = [r for r in self.keep_model_after if not _is_int(r, 1) or r > self.rounds]
        if outside:
            yield f"keep_model_after rounds {outside} are outside rounds 1..{self.rounds}"
        if not _is_int(self.warm_rounds, 0):
            yield f"warm_rounds must be an integer of at least 0, got {self.warm_rounds!r}"

    def replace(self, **changes):
        """A copy with ``changes`` (field names as keywords); the course's settings never change in place."""
        return dataclasses.replace(self, **changes)

    def as_dict(self):
        """The settings as a plain dict (what a saved run's ``config`` records)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RunOutputs:
    """What a training run prints, writes and saves, besides the History it returns.

    - ``name``: labels the progress lines and the History (and names a saved run).
    - ``key``: the values that name a saved run (:func:`cached_history`), when
      they are more than its settings (a sweep adds its methods and their code).
    - ``verbose``: print progress lines (False: nothing).
    - ``logdir``: a folder for TensorBoard scalars (None: none written).
    - ``snapshots``: ``{round: path}``: the global model's weights are saved to
      ``path`` after that round (:func:`kept_models`).
    - ``checkpoint``: a :class:`helpers.runs.checkpoints.RunCheckpoints` the loop
      resumes from and saves to. ``train_fed_avg`` makes one inside
      :func:`helpers.runs.checkpoints.enabled` (and :func:`cached_history`).
    """

    name: str = "run"
    key: Optional[dict] = None
    verbose: bool = True
    logdir: Optional[object] = None
    snapshots: Optional[dict] = None
    checkpoint: Optional[object] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}.")
        if self.snapshots is not None and not isinstance(self.snapshots, dict):
            raise TypeError(f"snapshots must be a dict {{round: path}} (runs.kept_models(settings), say), "
                            f"got {type(self.snapshots).__name__}.")

    def replace(self, **changes):
        """A copy with ``changes`` (field names as keywords)."""
        return dataclasses.replace(self, **changes)


# The two runs of the course. TUTORIAL is the original tutorial's; LONG_RUN trains long enough to show
# real learning (notebook 03 explains the choices). The long run keeps its model after round 70,
# where its server step drops: notebooks 04 and 06 start their short runs from there.
TUTORIAL = RunSettings(rounds=10, clients_per_round=10, client_lr=0.02, server_lr=1.0, eval_every=5)
LONG_RUN = RunSettings(rounds=100, clients_per_round=10, client_lr=0.1, server_lr=0.5, server_momentum=0.9,
                       server_lr_drop=(70, 0.1), eval_every=10, keep_model_after=(70,))
FAST_SIZE = dict(rounds=2, clients_per_round=3, eval_every=1, keep_model_after=(1,), fast=True)


def run_settings(name, **changes):
    """The :class:`RunSettings` of ``"tutorial"`` or ``"long"``, shrunk to a smoke size in fast mode, with ``changes``."""
    named = {"tutorial": TUTORIAL, "long": LONG_RUN}
    if name not in named:
        raise ValueError(f"unknown run {name!r}; choose one of {sorted(named)}.")
    settings = named[name].replace(**FAST_SIZE) if config.fast_mode() else named[name]
    return settings.replace(**changes)


def _as_dict(settings):
    return settings.as_dict() if isinstance(settings, RunSettings) else dict(settings)


def settings_key(settings):
    """12 hex digits hashing ``settings`` (a :class:`RunSettings` or a JSON-serialisable dict), to name saved runs."""
    return hashlib.sha256(json.dumps(_as_dict(settings), sort_keys=True).encode()).hexdigest()[:12]


def kept_model_path(settings, round_num):
    """Where a run with ``settings`` keeps its global model after ``round_num`` rounds (``outputs/runs/*.npz``)."""
    return config.output_dir("runs") / f"model-{settings_key(settings)}-after-round-{round_num}.npz"


def kept_models(settings):
    """``{round: path}`` for each round of ``settings.keep_model_after``: pass it as ``snapshots``."""
    return {r: kept_model_path(settings, r) for r in settings.keep_model_after}


_loaded = contextvars.ContextVar("course_loaded_runs", default=None)


@contextlib.contextmanager
def one_line_for_loaded_runs():
    """Within this block :func:`cached_history` loads saved runs silently; at its end one line counts them."""
    if _loaded.get() is not None:  # an enclosing block prints the line
        yield
        return
    names = []
    token = _loaded.set(names)
    try:
        yield
    finally:
        _loaded.reset(token)
        if names:
            print(f"loaded {len(names)} saved run{'s' if len(names) > 1 else ''} from "
                  f"{config.output_dir('runs')} (delete a file to train that run again)")


def cached_history(name, settings, train_fn, code=None, checkpoint_every=checkpoints.DEFAULT_EVERY):
    """Load the saved :class:`helpers.runs.history.History` of a run with exactly these ``settings``, or train and save it.

    ``settings`` (a :class:`RunSettings`, or a dict that also names the
    methods, seed...) is hashed into the file name under ``outputs/runs/``;
    so is ``code`` when given (the encoders the run trains with, say): the
    hash of its source (:func:`helpers.runs.checkpoints.describe`), so that
    editing it trains again. ``train_fn()`` returns a History. Returns ``(history, path)``. While
    ``train_fn`` runs, :func:`helpers.training.train_fed_avg` checkpoints every
    ``checkpoint_every`` rounds under ``outputs/checkpoints/`` and resumes a
    run that was killed; the checkpoints are deleted once the history is saved.
    """
    if code is not None:
        digest = hashlib.sha256(checkpoints.describe(code).encode()).hexdigest()[:16]
        settings = dict(_as_dict(settings), code=digest)
    path = config.output_dir("runs") / f"{name}-{settings_key(settings)}.json"
    if path.exists():
        if _loaded.get() is None:
            print(f"loaded {name} from {path} (delete the file to train it again)")
        else:
            _loaded.get().append(name)
        return History.load(path), path
    others = sorted(path.parent.glob(f"{name}-{'?' * len(path.stem.rsplit('-', 1)[1])}.json"))
    if others:
        print(f"training {name}: its saved run{'s' if len(others) > 1 else ''} ({others[-1].name}"
              f"{f' and {len(others) - 1} more' if len(others) > 1 else ''}) had other settings or code")
    with checkpoints.enabled(every=checkpoint_every) as used:
        history = train_fn()
    history.config.update(_as_dict(settings))
    history.save(path)
    for checkpoint in used:
        if checkpoint.finished:
            checkpoint.discard()
    return history, path
