"""Start TFF's runtime explicitly, and keep its helper process from outliving Python.

TFF runs every computation in a child process called ``worker_binary``. That
child survives the Python process that started it, keeps its pipes open, and so
makes ``python script.py | cat``, nbval and CI wait forever.

Nothing here runs on import. :func:`start` (which ``helpers.setup.start()``, the
scripts and the test fixtures call) does, once per process:

1. one malloc arena (:func:`helpers.config.one_malloc_arena`), before TF starts threads;
2. registers the exit hook that stops every ``worker_binary`` this process started;
3. applies ``COURSE_WORKERS`` (:mod:`helpers.workers.context`) or, without it,
   installs TFF's local C++ context (:func:`install_local_context`).

Without it TFF runs computations on the context it installs when imported, whose
worker nobody stops (scripts/check_no_workers.sh catches such a leak);
:func:`install_local_context` registers the exit hook too. The workers that
:mod:`helpers.workers.processes` starts are not "TFF's own" helper process:
:func:`tff_worker_pids` and :func:`stop_tff_workers` leave them alone unless
asked (``scale_out=True``); the exit hook stops them too.

:func:`release_finished_runs` gives back the memory of the processes run so
far (TFF's compiler cache, and TFF's worker, restarted with a fresh execution
context); :mod:`helpers.training` calls it before it builds a process. TFF's
local worker runs at most two computations at once (``COURSE_MAX_CONCURRENT_CALLS``)
with one malloc arena (``MALLOC_ARENA_MAX=1``), which holds less memory
(``docs/memory.md`` has the measurements).
"""
import atexit
import ctypes
import gc
import os
import signal
import sys
import threading
import time
import weakref

import psutil

from helpers import config
from helpers.workers import context, processes, tff_compat

_WORKER_NAME = "worker_binary"
# The local contexts installed here, held weakly: one that nothing uses any more drops out by itself.
_state = dict(started=False, exit_hook=False, local_contexts=weakref.WeakSet())


def start():
    """Make TFF run computations (``COURSE_WORKERS``' workers, or one local worker); stop its workers at exit.

    Returns the one-line description of where the rounds run. A second call changes nothing.
    """
    if not _state["started"]:
        config.one_malloc_arena()
        _register_exit_hook()
        if context.apply_environment() is None:
            install_local_context()
        _state["started"] = True
    return context.current_workers()


def _register_exit_hook():
    if not _state["exit_hook"]:
        atexit.register(_stop_all_at_exit)
        _exit_on_sigterm()
        _state["exit_hook"] = True


def _exit_on_sigterm():
    """In a script (not a Jupyter kernel) that left SIGTERM alone: exit through Python on SIGTERM, so that
    the exit hook stops TFF's workers (``kill`` or ``timeout`` would otherwise leave a ``worker_binary``)."""
    if "ipykernel" in sys.modules or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum, frame):
    raise SystemExit(128 + signum)


def tff_worker_pids(parent_pid=None, scale_out=False):
    """PIDs of TFF ``worker_binary`` processes started by ``parent_pid`` (default: this process).

    The workers :mod:`helpers.workers.processes` started are included only with ``scale_out=True``.
    """
    parent = psutil.Process(parent_pid or os.getpid())
    scale_out_pids = processes.started_pids()
    pids = []
    for child in parent.children(recursive=True):
        try:
            if _WORKER_NAME in " ".join(child.cmdline()) and (scale_out or child.pid not in scale_out_pids):
                pids.append(child.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return pids


def stop_tff_workers(timeout_seconds=5.0, scale_out=False):
    """Stop this process's TFF workers (SIGINT, then SIGKILL); returns how many were stopped.

    ``scale_out=True`` also stops the workers :mod:`helpers.workers.processes` started.
    """
    pids = tff_worker_pids(scale_out=scale_out)
    for pid in pids:
        _signal(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout_seconds
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if psutil.pid_exists(pid) and not _is_zombie(pid)]
        time.sleep(0.05)
    for pid in alive:
        _signal(pid, signal.SIGKILL)
    for pid in pids:  # reap, so no zombie is left in the process table
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    _forget_stopped_workers()
    return len(pids)


def install_local_context():
    """Make a fresh TFF worker on this machine run what comes next, at most
    :func:`helpers.config.max_concurrent_calls` computations at once.

    TFF's own local runtime (``tff.backends.native.create_sync_local_cpp_execution_context`` with TFF's
    ``max_concurrent_computation_calls``), installed as TFF's default context; its worker starts with the
    first computation. The exit hook that stops it is registered first.
    """
    import tensorflow_federated as tff
    _register_exit_hook()
    local = tff.backends.native.create_sync_local_cpp_execution_context(
        max_concurrent_computation_calls=config.max_concurrent_calls())
    tff.framework.set_default_context(local)
    _state["local_contexts"].add(local)


def release_finished_runs():
    """Give back the memory that processes run so far still hold; returns how many TFF workers were stopped.

    - TFF's compiler cache is emptied: ``CompilerPipeline.compile`` is a ``functools.lru_cache``
      (128 entries, shared by every execution context) that keeps each computation it compiled
      alive, with its TF graphs, after the process that built it is gone.
    - TFF's own ``worker_binary`` is stopped and a fresh local context installed
      (:func:`install_local_context`): the worker keeps
      what every computation it ran allocated, and gives it back only when it ends. The next
      computation starts a new worker; it compiles what it runs again (about a second), with the
      same results, since every input of a round is an argument.
    - With workers chosen by ``COURSE_WORKERS`` / :func:`helpers.workers.use_workers` (or inside a
      ``with workers(...)`` block) the context and the workers stay: only the cache is emptied.
    - Then Python's garbage is collected and glibc's ``malloc_trim(0)`` hands the heap memory that
      TF freed back to the system (glibc keeps it in its per-thread arenas otherwise).
    """
    tff_compat.clear_compiler_cache()
    stopped = 0
    if context.active() is None:
        stopped = stop_tff_workers()
        install_local_context()
    gc.collect()
    _trim_heap()
    return stopped


def _trim_heap():
    """glibc's ``malloc_trim(0)``: give freed heap pages back to the system (nothing elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _forget_stopped_workers():
    """Tell the local contexts installed here that their stopped workers are gone, so none is signalled twice."""
    for local in list(_state["local_contexts"]):
        process = tff_compat.local_worker_process(local)
        if process is not None and process.poll() is not None:
            tff_compat.forget_local_worker(local)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _is_zombie(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop_all_at_exit():
    stop_tff_workers(scale_out=True)
    _let_local_contexts_go()


def _let_local_contexts_go():
    """Free TFF's local contexts while Python still runs, once their workers are stopped (at exit).

    Each holds a ``ServiceManager`` whose ``__del__`` reads the ``subprocess`` module; run during interpreter
    shutdown, when module globals are already gone, it fails with a traceback. So TFF's default context is
    replaced (TFF's public ``set_default_context``) by one that refuses to run, and the garbage collected now.
    """
    if "tensorflow_federated" not in sys.modules:
        return
    import tensorflow_federated as tff

    class StoppedContext(tff.framework.SyncContext):
        def invoke(self, comp, arg):
            raise RuntimeError("TFF's runtime was stopped: Python is exiting.")

    tff.framework.set_default_context(StoppedContext())
    context.forget_workers()
    gc.collect()
