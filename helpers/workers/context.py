"""Where TFF runs its rounds: one local process (the default) or several ``worker_binary`` workers.

By default TFF runs every round in one ``worker_binary`` child process. With
this module a round's clients are cut into consecutive slices, one per worker,
each worker runs its slice and returns its *partial aggregate* to this Python
process (the driver), which has them merged and the round finished on a worker. This is TFF's
own mergeable execution context (``tff.backends.native.create_mergeable_comp_execution_context``)
over TFF's ``RemoteExecutor``; nothing here re-implements a runtime.

Choose the workers before Python starts with ``COURSE_WORKERS`` (applied by
``helpers.workers.runtime.start()``, which every notebook's setup cell, script and
test fixture calls through ``helpers.setup.start()`` or directly):

- unset or empty: rounds run in one local process, exactly as without this module;
- ``COURSE_WORKERS=4``: start 4 local workers, stop them at exit;
- ``COURSE_WORKERS=host1:8000,host2:8000``: use workers that already run there
  (start one with ``make workers PORT=8000`` on each machine).

or from Python:

- :func:`use_workers` (``4`` or ``"host1:8000,host2:8000"``) for the rest of the session;
- ``with local_workers(2) as group: ...`` / ``with workers(spec) as group: ...`` for one block;
- :func:`use_local_process` goes back to one local process;
- :func:`current_workers` is a one-line description for a notebook's setup line;
- ``group.last_call()`` tells how the last computation's clients were split, how
  long it took and how many bytes went to and came back from each worker.

Failures are bounded (:mod:`helpers.workers.connection`): every address must
answer within ``connect_timeout`` seconds when the workers are chosen, and a
worker that stops answering during a round raises ``WorkerUnavailableError``
naming its address within about ``retry_timeout`` seconds, instead of TFF's
endless retry. The other modules: :mod:`helpers.workers.spec` (the values
``COURSE_WORKERS`` takes), :mod:`helpers.workers.processes` (local workers),
:mod:`helpers.workers.serve` (``make workers``).

Security: ``worker_binary`` listens on *all* interfaces, without authentication
or encryption, and runs any TensorFlow graph it is sent. The local workers
live only as long as the Python process and use free ports picked at start;
keep the machine's firewall closed to them. docs/scaling_out.md
says how to keep remote workers private.
"""
import atexit
import collections
import contextlib
import functools
import os
import sys
import threading
import time

from helpers.workers import connection, processes, tff_compat
from helpers.workers.spec import ENV, FORMS, WorkersSpecError, parse_spec


def split_counts(num_clients, num_workers):
    """How TFF cuts ``num_clients`` clients over ``num_workers`` workers (consecutive slices, larger first)."""
    counts = []
    for left in range(num_workers, 0, -1):
        if num_clients <= 0:
            break
        take = -(-num_clients // left)  # ceil, as TFF's _split_value_into_subrounds
        counts.append(take)
        num_clients -= take
    return counts


_OPEN_GROUPS = []  # every Workers object not closed yet


class Workers:
    """The workers of one :func:`use_workers` / :func:`workers` call and TFF's mergeable context over them.

    ``addresses`` (``host:port``), ``local`` (the ``LocalWorker`` s this object
    started, stopped by :meth:`close`), ``context`` (the TFF context),
    ``description`` (one line) and ``calls`` (what :meth:`last_call` reads).
    """

    def __init__(self, spec, concurrency=-1, connect_timeout=connection.CONNECT_TIMEOUT_S,
                 retry_timeout=connection.RETRY_TIMEOUT_S, max_retries=connection.MAX_RETRIES):
        parsed = parse_spec(spec)
        self.closed = False
        self.contexts = []
        processes.register_exit_hook()  # before ours: atexit runs the last registered first
        _register_exit_hook()
        self.local = (processes.start_local_workers(parsed, concurrency)
                      if isinstance(parsed, int) else [])
        _OPEN_GROUPS.append(self)
        try:
            self.addresses = [w.address for w in self.local] or parsed
            if not self.local:
                connection.check_reachable(self.addresses, connect_timeout)
            local_by_address = {w.address: w for w in self.local}
            for address in self.addresses:  # TFF is imported only now: a bad address fails fast
                self.contexts.append(connection.connect(
                    address, self, local_by_address.get(address), retry_timeout, max_retries))
            self.stubs = [context.stub for context in self.contexts]
            self.context = _group_context_class()(self)
        except BaseException:
            self.close()
            raise
        self._lock = threading.Lock()
        self._current = None
        self.calls = collections.deque(maxlen=1000)  # the records of :meth:`last_call`, oldest first
        where = ("started by the course on this machine, listening on all interfaces"
                 if self.local else "already running")
        self.description = (f"rounds split over {len(self.addresses)} TFF worker"
                            f"{'s' if len(self.addresses) > 1 else ''} ({where}): {', '.join(self.addresses)}")

    def note_slice(self, address, comp, arg):
        """Record the clients of the first piece of work each worker gets in a call: its slice."""
        with self._lock:
            if self._current is None or address in self._current["clients"]:
                return
            self._current["clients"][address] = tff_compat.clients_in(comp, arg)

    def run(self, mergeable, comp, arg):
        """``mergeable.invoke(comp, arg)``, recording the call's split, seconds and bytes in :attr:`calls`."""
        before = [stub.traffic.totals() for stub in self.stubs]
        with self._lock:
            self._current = dict(clients={})
        start = time.perf_counter()
        try:
            return mergeable.invoke(comp, arg)
        finally:
            seconds = time.perf_counter() - start
            after = [stub.traffic.totals() for stub in self.stubs]
            with self._lock:
                clients = self._current["clients"]
                self._current = None
                self.calls.append(dict(
                    seconds=seconds,
                    clients={a: clients.get(a, 0) for a in self.addresses},
                    bytes_sent={a: s1 - s0 for a, (s0, _), (s1, _) in zip(self.addresses, before, after)},
                    bytes_received={a: r1 - r0 for a, (_, r0), (_, r1) in zip(self.addresses, before, after)}))

    def last_call(self, with_clients=True):
        """``{'seconds', 'clients', 'bytes_sent', 'bytes_received'}`` of the last computation, per address.

        With ``with_clients`` (default) the last computation that had clients
        (a round's ``process.next``), else the very last one (which may be, say,
        ``get_model_weights``). ``clients`` is each worker's slice;
        ``bytes_sent`` went from this process to the worker, ``bytes_received``
        came back (serialized protobuf sizes). None if there is none yet.
        """
        with self._lock:
            for call in reversed(self.calls):
                if not with_clients or sum(call["clients"].values()):
                    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in call.items()}
    def close(self):
        """Stop the local workers this object started and close its channels."""
        self.closed = True
        if self in _OPEN_GROUPS:
            _OPEN_GROUPS.remove(self)
        for context in self.contexts:
            context.channel.close()
        for worker in self.local:
            worker.stop()

    def __repr__(self):
        return f"Workers({self.description})"


@functools.cache
def _group_context_class():
    """``GroupContext``, defined once TFF is imported (it subclasses TFF's ``SyncContext``)."""
    import tensorflow_federated as tff

    class GroupContext(tff.framework.SyncContext):
        """TFF's mergeable context over the workers, recording each call's split, time and bytes."""

        def __init__(self, group):
            self.course_workers = group  # what :func:`active` looks for
            self._mergeable = tff.backends.native.create_mergeable_comp_execution_context(
                group.contexts)

        def invoke(self, comp, arg):
            return self.course_workers.run(self._mergeable, comp, arg)

    return GroupContext


# ------------------------------------------------------------ choosing workers --

_state = dict(active=None, previous=None, applied_env=False, exit_hook=False)


def use_workers(spec, **options):
    """Run TFF's rounds on the workers ``spec`` names, for the rest of this session; returns :class:`Workers`.

    ``spec``: a number of local workers to start (``2``, ``"2"``) or running
    workers (``"host1:8000,host2:8000"`` or a list). ``options``:
    ``concurrency`` (local workers' ``--max_concurrent_computation_calls``,
    default no limit), ``connect_timeout``, ``retry_timeout`` (seconds), ``max_retries``.
    Workers chosen by an earlier call are released (local ones stopped).
    """
    group = Workers(spec, **options)
    import tensorflow_federated as tff
    release = _state["active"]
    if release is None:
        _state["previous"] = tff.framework.get_context_stack().current
    tff.framework.set_default_context(group.context)
    _state["active"] = group
    if release is not None:
        release.close()
    return group


def use_local_process():
    """Go back to TFF's one local process; stops the workers :func:`use_workers` started."""
    import tensorflow_federated as tff
    group, previous = _state["active"], _state["previous"]
    if group is None:
        return
    tff.framework.set_default_context(previous)
    _state.update(active=None, previous=None)
    group.close()


@contextlib.contextmanager
def workers(spec, **options):
    """``with workers(spec) as group:`` runs TFF's rounds on those workers inside the block only.

    Local workers started for the block are stopped when it ends, also on an
    error or Ctrl-C. Takes the same arguments as :func:`use_workers`.
    """
    group = Workers(spec, **options)
    import tensorflow_federated as tff
    try:
        with tff.framework.get_context_stack().install(group.context):
            yield group
    finally:
        group.close()


def local_workers(count, **options):
    """``with local_workers(2) as group:`` starts ``count`` workers on this machine for the block."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise WorkersSpecError(f"local_workers takes a number of workers, got {count!r}. {FORMS}")
    return workers(count, **options)


def active():
    """The :class:`Workers` TFF runs on now (set by :func:`use_workers` or a ``with workers`` block), or None."""
    if "tensorflow_federated" not in sys.modules:
        return None
    import tensorflow_federated as tff
    return getattr(tff.framework.get_context_stack().current, "course_workers", None)


def current_workers():
    """One line saying where TFF runs its rounds now, for a notebook's setup line."""
    group = active()
    if group is not None:
        return group.description
    unset = "" if os.environ.get(ENV, "").strip() else f" ({ENV} unset)"
    return f"rounds run in one local TFF process{unset}"


def apply_environment():
    """Apply ``COURSE_WORKERS`` once per process (``helpers.workers.runtime.start`` calls this).

    Does nothing when it is unset or empty, or when :func:`use_workers` was already called.
    A bad value or an unreachable worker raises, and raises again on the next
    call, rather than quietly running in one process.
    """
    value = os.environ.get(ENV, "").strip()
    if _state["applied_env"] or not value or _state["active"] is not None:
        _state["applied_env"] = True
        return _state["active"]
    try:
        parse_spec(value)
    except WorkersSpecError as error:
        raise WorkersSpecError(f"{ENV}={value!r} is not understood: {error}") from None
    group = use_workers(value)
    _state["applied_env"] = True
    return group


def forget_workers():
    """Drop the references kept to the workers chosen and to the context before them (at exit)."""
    _state.update(active=None, previous=None)


def _close_open_groups():
    for group in list(_OPEN_GROUPS):
        group.close()


def _register_exit_hook():
    """At exit, release the groups first, so that slices still running end quietly.

    Registered when the first group opens, after :mod:`helpers.workers.processes`' hook (registered when
    it started a worker, or earlier), and atexit runs the last registered first.
    """
    if not _state["exit_hook"]:
        atexit.register(_close_open_groups)
        _state["exit_hook"] = True
