"""Where TFF runs its rounds: one local process (the default) or several ``worker_binary`` workers.

By default TFF runs every round in one ``worker_binary`` child process. With
this module a round's clients are cut into consecutive slices, one per worker,
each worker runs its slice and returns its *partial aggregate* to this Python
process (the driver), which has them merged and the round finished on a worker. This is TFF's
own mergeable execution context (``tff.backends.native.set_mergeable_comp_execution_context``)
over TFF's ``RemoteExecutor``; nothing here re-implements a runtime.

Choose the workers before Python starts with ``COURSE_WORKERS`` (the course's
helpers apply it when ``helpers.runtime`` is imported, which every notebook,
script and test helper does through ``helpers.training`` or ``helpers.compression``):

- unset or empty: rounds run in one local process, exactly as without this module;
- ``COURSE_WORKERS=4``: start 4 local workers, stop them at exit;
- ``COURSE_WORKERS=host1:8000,host2:8000``: use workers that already run there
  (start one with ``make workers PORT=8000`` on each machine).

or from Python:

- :func:`use_workers` (``4`` or ``"host1:8000,host2:8000"``) for the rest of the session;
- ``with local_workers(2): ...`` / ``with workers(spec): ...`` for one block;
- :func:`use_local_process` goes back to one local process;
- :func:`current_workers` is a one-line description for a notebook's setup line;
- :func:`last_call` tells how the last computation's clients were split, how
  long it took and how many bytes went to and came back from each worker;
- ``python -m helpers.workers --port 8000`` (``make workers``) runs one worker for another
  machine's driver and prints what it exposes.

Failures are bounded: every address must answer within ``connect_timeout``
seconds when the workers are chosen, and a worker that stops answering during
a round raises :class:`WorkerUnavailableError` naming its address within about
``retry_timeout`` seconds, instead of TFF's endless retry.

Security: ``worker_binary`` has no option to choose its network interface. It
listens on *all* interfaces, without authentication or encryption, and runs any
TensorFlow graph it is sent. The workers this module starts live only as long
as the Python process (they also die with it if it is killed) and use free
ports picked at start; keep the machine's firewall closed to them. The README
section "Scaling out" says how to keep remote workers private.
"""
import asyncio
import atexit
import collections
import contextlib
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

ENV = "COURSE_WORKERS"
MAX_LOCAL_WORKERS = 64
GRPC_MAX_MESSAGE_MEGABYTES = 2000  # the worker's default (10000) overflows an int
CONNECT_TIMEOUT_S = 10.0   # a chosen remote address must answer within this
START_TIMEOUT_S = 60.0     # a local worker must be ready within this (it loads TensorFlow first)
RETRY_TIMEOUT_S = 20.0     # a worker that stops answering must be back within this
MAX_RETRIES = 3            # ... and may fail this many times in a row before we give up

FORMS = ("COURSE_WORKERS expects either a number of local workers to start (for example "
         "COURSE_WORKERS=2) or a comma-separated list of running workers as host:port "
         "(for example COURSE_WORKERS=127.0.0.1:8000,127.0.0.1:8001); unset it to run in one "
         "local process.")


class WorkersSpecError(ValueError):
    """A ``COURSE_WORKERS`` value (or :func:`use_workers` argument) that is not understood."""


class WorkerUnavailableError(RuntimeError):
    """A worker that cannot be reached, did not start, or stopped answering; the message names it."""


# --------------------------------------------------------------- parsing --

_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]+)$")


def parse_spec(spec):
    """``spec`` -> an ``int`` (local workers to start) or a list of ``"host:port"`` addresses.

    Accepts an int, a string such as ``"4"`` or ``"host1:8000,host2:8000"``, or
    a list of addresses. Raises :class:`WorkersSpecError` naming the expected forms.
    """
    if isinstance(spec, bool):
        raise WorkersSpecError(f"{spec!r} is not a number of workers. {FORMS}")
    if isinstance(spec, int):
        return _check_count(spec, repr(spec))
    if isinstance(spec, (list, tuple)):
        items = list(spec)
    elif isinstance(spec, str):
        text = spec.strip()
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return _check_count(int(text), repr(spec))
        items = text.split(",")
    else:
        raise WorkersSpecError(f"{spec!r} ({type(spec).__name__}) is not a worker spec. {FORMS}")
    addresses = [str(item).strip() for item in items]
    if not addresses or not any(addresses):
        raise WorkersSpecError(f"{spec!r} names no worker. {FORMS}")
    for address in addresses:
        match = _ADDRESS.match(address)
        where = "" if len(addresses) == 1 else f" in {spec!r}"
        if not match:
            raise WorkersSpecError(f"{address!r}{where} is not host:port. {FORMS}")
        if not 1 <= int(match["port"]) <= 65535:
            raise WorkersSpecError(f"{address!r}{where}: the port must be 1 to 65535. {FORMS}")
    duplicates = sorted({a for a in addresses if addresses.count(a) > 1})
    if duplicates:
        raise WorkersSpecError(f"{spec!r} names {', '.join(duplicates)} more than once; each worker "
                               f"gets its own slice of clients, so list each once. {FORMS}")
    return addresses


def _check_count(count, shown):
    if not 1 <= count <= MAX_LOCAL_WORKERS:
        raise WorkersSpecError(f"{shown}: the number of local workers must be 1 to {MAX_LOCAL_WORKERS}. "
                               f"{FORMS}")
    return count


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


# --------------------------------------------------------- local workers --

def worker_binary_path():
    """The ``worker_binary`` shipped in the installed TFF wheel (found without importing TFF)."""
    import importlib.util
    spec = importlib.util.find_spec("tensorflow_federated")
    if spec is None or not spec.origin:
        raise ModuleNotFoundError("tensorflow_federated is not installed; create the environment with make env.")
    path = pathlib.Path(spec.origin).parent / "data" / "worker_binary"
    if not path.exists():
        raise FileNotFoundError(f"TFF's worker_binary is missing at {path}; reinstall the environment "
                                "(make env).")
    return path


def worker_command(port, concurrency=-1):
    """The command line that starts one worker on ``port`` (``concurrency`` <= 0: no limit)."""
    return [str(worker_binary_path()), f"--port={int(port)}",
            f"--max_concurrent_computation_calls={int(concurrency)}",
            f"--grpc_max_message_length_megabytes={GRPC_MAX_MESSAGE_MEGABYTES}"]


def _with_parent_death_signal(command):
    """``command`` run through util-linux ``setpriv --pdeathsig KILL`` when available (Linux).

    The worker then dies with the thread that started it, even when Python is
    killed and no exit hook runs. (Setting it in a ``preexec_fn`` instead
    crashes the forked child of a process that has loaded TensorFlow.)
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return command
    return [setpriv, "--pdeathsig", "KILL", "--"] + command


class LocalWorker:
    """One ``worker_binary`` started by this module on ``127.0.0.1:port``; :meth:`stop` ends it."""

    def __init__(self, port, concurrency=-1):
        self.port = int(port)
        self.address = f"127.0.0.1:{self.port}"
        # The worker's output goes to a file without a name, which we read by its descriptor:
        # nothing is left on disk however this process ends.
        self._log = tempfile.TemporaryFile(prefix=f"tff-worker-{self.port}-")
        self.process = subprocess.Popen(
            _with_parent_death_signal(worker_command(self.port, concurrency)), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, close_fds=True)
        from helpers import runtime
        runtime.register_scale_out_worker(self.process.pid)
        _STARTED.append(self)

    def exit_code(self):
        """None while running, else the process's exit code."""
        return self.process.poll()

    def log_tail(self, lines=5):
        """`` Its last output: ...`` (the log's last ``lines`` lines), or "" if it printed nothing."""
        try:
            fd = self._log.fileno()
            size = os.fstat(fd).st_size
            start = max(0, size - 65536)
            # pread leaves the offset the worker writes at alone
            text = os.pread(fd, size - start, start).decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return " Its last output:\n" + "\n".join(text[-lines:]) if text else ""

    def how_it_ended(self):
        """``exited with code 1`` or ``was killed by signal 9`` (None while running)."""
        code = self.exit_code()
        if code is None:
            return None
        return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"

    def stop(self, timeout_seconds=5.0):
        """SIGTERM (SIGINT may be ignored, as in a background job), then SIGKILL after ``timeout_seconds``."""
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            except ProcessLookupError:
                pass
        from helpers import runtime
        runtime.forget_scale_out_worker(self.process.pid)
        if self in _STARTED:
            _STARTED.remove(self)
        self._log.close()

    def __repr__(self):
        state = "running" if self.exit_code() is None else f"exited {self.exit_code()}"
        return f"LocalWorker({self.address}, pid {self.process.pid}, {state})"


_STARTED = []  # every LocalWorker this process started and has not stopped yet
_OPEN_GROUPS = []  # every Workers object not closed yet


def start_local_workers(count, concurrency=-1, timeout=START_TIMEOUT_S):
    """Start ``count`` workers on free ports of this machine; returns them once all answer.

    Raises :class:`WorkerUnavailableError` (after stopping them all) if one
    exits or does not answer within ``timeout`` seconds.
    """
    import portpicker
    count = _check_count(count, repr(count))
    started = []
    try:
        for _ in range(count):
            started.append(LocalWorker(portpicker.pick_unused_port(), concurrency))
        deadline = time.monotonic() + timeout
        for i in range(len(started)):
            for attempt in range(3):
                try:
                    _wait_local_ready(started[i], deadline, timeout)
                    break
                except WorkerUnavailableError as error:
                    # Another program took the free port between picking and binding: pick again.
                    if "Address already in use" not in str(error) or attempt == 2:
                        raise
                    started[i].stop()
                    started[i] = LocalWorker(portpicker.pick_unused_port(), concurrency)
    except BaseException:
        for worker in started:
            worker.stop()
        raise
    return started


def _wait_local_ready(worker, deadline, timeout):
    import grpc
    channel = grpc.insecure_channel(worker.address)
    ready = grpc.channel_ready_future(channel)
    try:
        while True:
            if worker.exit_code() is not None:
                raise WorkerUnavailableError(
                    f"the local TFF worker for {worker.address} {worker.how_it_ended()} while "
                    f"starting.{worker.log_tail()}")
            try:
                ready.result(timeout=0.25)
                return
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    raise WorkerUnavailableError(
                        f"the local TFF worker for {worker.address} did not answer within {timeout:.0f} s "
                        f"of starting (machine overloaded?).{worker.log_tail()}") from None
    finally:
        ready.cancel()  # stop its polling thread before the channel closes under it
        channel.close()


def stop_started_workers():
    """Stop every worker this process started; returns how many. Registered to run at exit."""
    for group in list(_OPEN_GROUPS):
        group.close()  # first, so that slices still running end quietly
    stopped = list(_STARTED)
    for worker in stopped:
        worker.stop()
    return len(stopped)


# ------------------------------------------------------- remote contexts --

def check_reachable(addresses, timeout=CONNECT_TIMEOUT_S):
    """Raise :class:`WorkerUnavailableError` naming every address that does not answer within ``timeout`` s."""
    import grpc
    channels = {a: grpc.insecure_channel(a) for a in addresses}
    futures = {a: grpc.channel_ready_future(c) for a, c in channels.items()}
    deadline = time.monotonic() + timeout
    silent = []
    try:
        for address, future in futures.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except grpc.FutureTimeoutError:
                silent.append(address)
    finally:
        for future in futures.values():
            future.cancel()
        for channel in channels.values():
            channel.close()
    if silent:
        raise WorkerUnavailableError(
            f"no TFF worker answered at {', '.join(silent)} within {timeout:g} s. Start one there "
            f"(on that machine: make workers PORT=<port>), or fix the address. {FORMS}")


class _Traffic:
    """Bytes sent to and received from one worker, per gRPC method (serialized protobuf sizes)."""

    def __init__(self):
        self.sent = collections.Counter()
        self.received = collections.Counter()
        self._lock = threading.Lock()

    def add(self, method, request, response):
        with self._lock:
            self.sent[method] += request.ByteSize()
            if response is not None:
                self.received[method] += response.ByteSize()

    def totals(self):
        with self._lock:
            return sum(self.sent.values()), sum(self.received.values())


def _make_bounded_stub_class():
    import grpc
    import tensorflow_federated as tff
    from tensorflow_federated.python.core.impl.executors import executors_errors

    class BoundedStub(tff.framework.RemoteExecutorStub):
        """TFF's gRPC stub for one worker, with its traffic counted and its retries bounded.

        TFF's ``AsyncExecutionContext`` retries every ``RetryableError``
        (gRPC ``UNAVAILABLE``) forever. This stub lets TFF retry only while the
        worker answers again within ``retry_timeout`` seconds and at most
        ``max_retries`` times in a row; otherwise it raises
        :class:`WorkerUnavailableError`, which TFF does not retry.
        """

        def __init__(self, address, channel, local_worker=None, retry_timeout=RETRY_TIMEOUT_S,
                     max_retries=MAX_RETRIES):
            self.address = address
            self.traffic = _Traffic()
            self._channel = channel
            self._inner = tff.framework.RemoteExecutorGrpcStub(channel)
            self._local = local_worker
            self._retry_timeout = retry_timeout
            self._max_retries = max_retries
            self._failures = 0

        def _call(self, method, request):
            try:
                response = getattr(self._inner, method)(request)
            except executors_errors.RetryableError as error:
                if method in ("dispose", "dispose_executor"):
                    raise  # clean-up after a failure: TFF ignores these errors, do not wait
                raise self._unavailable(method, error) from None
            self._failures = 0
            self.traffic.add(method, request, response)
            return response

        def _unavailable(self, method, error):
            """The error to raise: ``error`` itself (TFF retries) or a WorkerUnavailableError."""
            self._failures += 1
            detail = f"{method}: {getattr(error, 'code', lambda: '')()} {getattr(error, 'details', lambda: '')()}"
            if self._local is not None and self._local.exit_code() is not None:
                return WorkerUnavailableError(
                    f"the local TFF worker at {self.address} (pid {self._local.process.pid}) "
                    f"{self._local.how_it_ended()}, so this computation cannot finish ({detail.strip()}). "
                    f"Start the workers again (use_workers / COURSE_WORKERS).{self._local.log_tail()}")
            if self._failures > self._max_retries:
                return WorkerUnavailableError(
                    f"the TFF worker at {self.address} failed {self._failures} times in a row "
                    f"({detail.strip()}); giving up instead of retrying forever. Check that worker "
                    f"(restart it with make workers) or remove it from {ENV}.")
            try:
                grpc.channel_ready_future(self._channel).result(timeout=self._retry_timeout)
            except grpc.FutureTimeoutError:
                return WorkerUnavailableError(
                    f"the TFF worker at {self.address} stopped answering ({detail.strip()}) and was not "
                    f"reachable again within {self._retry_timeout:g} s. Restart it (make workers on "
                    f"that machine) or remove it from {ENV}; the round did not finish.")
            return error  # it answers again: let TFF retry the slice

        def get_executor(self, request):
            return self._call("get_executor", request)

        def create_value(self, request):
            return self._call("create_value", request)

        def create_struct(self, request):
            return self._call("create_struct", request)

        def create_call(self, request):
            return self._call("create_call", request)

        def create_selection(self, request):
            return self._call("create_selection", request)

        def compute(self, request):
            return self._call("compute", request)

        def dispose(self, request):
            return self._call("dispose", request)

        def dispose_executor(self, request):
            return self._call("dispose_executor", request)

        @property
        def is_ready(self):
            return self._inner.is_ready

    return BoundedStub


def _make_context_classes():
    import tensorflow_federated as tff
    from tensorflow_federated.python.common_libs import async_utils
    from tensorflow_federated.python.core.impl.executors import cardinalities_utils

    class WorkerContext(tff.framework.AsyncContext):
        """TFF's ``AsyncExecutionContext`` for one worker, run on its own thread.

        TFF's ``RemoteExecutor`` makes blocking gRPC calls inside coroutines, so
        under one event loop the workers would run one after the other. Each
        worker gets its own event loop thread, and the slices run in parallel.
        """

        def __init__(self, inner, stub, group):
            self._inner = inner
            self.stub = stub
            self._group = group
            self._runner = async_utils.AsyncThreadRunner()

        async def invoke(self, comp, arg):
            self._group.note_slice(self.stub.address, comp, arg, cardinalities_utils)
            try:
                return await self._runner.await_coro_and_return_result(self._inner.invoke(comp, arg))
            except Exception:
                if self._group.closed:
                    # The workers were released while this slice still ran (after another
                    # worker's error, or Ctrl-C): nobody waits for it, so end it quietly.
                    raise asyncio.CancelledError() from None
                raise

    class GroupContext(tff.framework.SyncContext):
        """TFF's mergeable context over the workers, recording each call's split, time and bytes."""

        def __init__(self, group):
            self._group = group
            self.course_workers = group
            self._mergeable = tff.backends.native.create_mergeable_comp_execution_context(
                group.contexts)

        def invoke(self, comp, arg):
            return self._group.run(self._mergeable, comp, arg)

    return WorkerContext, GroupContext


class Workers:
    """The workers of one :func:`use_workers` / :func:`workers` call and TFF's context over them.

    ``addresses`` (``host:port``), ``local`` (the :class:`LocalWorker` s this
    object started, stopped by :meth:`close`), ``context`` (the TFF context) and
    ``description`` (one line).
    """

    def __init__(self, spec, concurrency=-1, connect_timeout=CONNECT_TIMEOUT_S,
                 retry_timeout=RETRY_TIMEOUT_S, max_retries=MAX_RETRIES):
        import grpc

        parsed = parse_spec(spec)
        self.closed = False
        self.local = start_local_workers(parsed, concurrency) if isinstance(parsed, int) else []
        _OPEN_GROUPS.append(self)
        try:
            self.addresses = [w.address for w in self.local] or parsed
            if not self.local:
                check_reachable(self.addresses, connect_timeout)
            import tensorflow_federated as tff  # only now: a bad address fails fast
            stub_class = _make_bounded_stub_class()
            worker_context, group_context = _make_context_classes()
            local_by_address = {w.address: w for w in self.local}
            self.stubs, self.contexts = [], []
            self._channels = []
            for address in self.addresses:
                channel = grpc.insecure_channel(address, _CHANNEL_OPTIONS)
                self._channels.append(channel)
                stub = stub_class(address, channel, local_by_address.get(address), retry_timeout, max_retries)
                inner = tff.framework.AsyncExecutionContext(
                    tff.framework.ResourceManagingExecutorFactory(_stack_fn(stub)),
                    compiler_fn=tff.backends.native.desugar_and_transform_to_native,
                    transform_args=tff.tensorflow.transform_args,
                    transform_result=tff.tensorflow.transform_result)
                self.stubs.append(stub)
                self.contexts.append(worker_context(inner, stub, self))
            self.context = group_context(self)
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

    # -- bookkeeping of each call ------------------------------------------
    def note_slice(self, address, comp, arg, cardinalities_utils):
        """Record the clients of the first piece of work each worker gets in a call: its slice."""
        with self._lock:
            if self._current is None or address in self._current["clients"]:
                return
            clients = 0
            if arg is not None and comp.type_signature.parameter is not None:
                with contextlib.suppress(Exception):
                    found = cardinalities_utils.infer_cardinalities(arg, comp.type_signature.parameter)
                    import tensorflow_federated as tff
                    clients = int(found.get(tff.CLIENTS, 0))
            self._current["clients"][address] = clients

    def run(self, mergeable, comp, arg):
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
        return None

    def close(self):
        """Stop the local workers this object started and close its channels."""
        self.closed = True
        if self in _OPEN_GROUPS:
            _OPEN_GROUPS.remove(self)
        for channel in getattr(self, "_channels", []):
            channel.close()
        for worker in getattr(self, "local", []):
            worker.stop()

    def __repr__(self):
        return f"Workers({self.description})"


_GRPC_MAX_BYTES = 2 * 1000 * 1000 * 1000  # as TFF's own local executor factory
_CHANNEL_OPTIONS = [("grpc.max_message_length", _GRPC_MAX_BYTES),
                    ("grpc.max_receive_message_length", _GRPC_MAX_BYTES),
                    ("grpc.max_send_message_length", _GRPC_MAX_BYTES)]


def _stack_fn(stub):
    import tensorflow_federated as tff

    def stack_fn(cardinalities):
        cardinalities.setdefault(tff.CLIENTS, 0)  # as TFF's local factory: no clients-placed argument
        executor = tff.framework.RemoteExecutor(stub)
        executor.set_cardinalities(cardinalities)
        return executor

    return stack_fn


# ------------------------------------------------------------ public API --

_state = dict(active=None, previous=None, applied_env=False)


def use_workers(spec, **options):
    """Run TFF's rounds on the workers ``spec`` names, for the rest of this session; returns :class:`Workers`.

    ``spec``: a number of local workers to start (``2``, ``"2"``) or running
    workers (``"host1:8000,host2:8000"`` or a list). ``options``:
    ``concurrency`` (local workers' ``--max_concurrent_computation_calls``,
    default no limit), ``connect_timeout``, ``retry_timeout``, ``max_retries``.
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
    import sys
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


def last_call(with_clients=True):
    """:meth:`Workers.last_call` of the workers in use, or None when rounds run in one local process."""
    group = active()
    return group.last_call(with_clients) if group is not None else None


def apply_environment():
    """Apply ``COURSE_WORKERS`` once per process (``helpers.runtime`` calls this on import).

    Does nothing when it is unset or empty, or when :func:`use_workers` was already called.
    A bad value or an unreachable worker raises, and raises again on the next
    import (Python retries a failed import), rather than quietly running in one process.
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


atexit.register(stop_started_workers)


# ------------------------------------------------------ make workers (CLI) --

def exposure_notice(port):
    """What a worker on ``port`` exposes, and how the driver reaches it: printed by ``make workers``."""
    import getpass
    import socket
    addresses = []
    with contextlib.suppress(OSError):
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)
                            if info[0] in (socket.AF_INET, socket.AF_INET6)})
    addresses = [a for a in addresses if not a.startswith("127.") and a != "::1"]
    shown = ", ".join(addresses + ["127.0.0.1"])
    return (
        f"Starting a TFF worker on port {port} of {socket.gethostname()}.\n"
        f"  It listens on ALL network interfaces ({shown}, 127.0.0.1), with no authentication and no\n"
        f"  encryption, and runs any TensorFlow graph it is sent: whoever reaches port {port} can run code\n"
        f"  here as {getpass.getuser()}. Reach it only through a private network, an SSH tunnel\n"
        f"  (on the driver: ssh -N -L {port}:127.0.0.1:{port} <this machine>, then COURSE_WORKERS=127.0.0.1:{port})\n"
        f"  or a host firewall that admits only the driver (README, section Scaling out).\n"
        f"  On the driver: COURSE_WORKERS=<this machine>:{port}[,<other>:<port>...]. Ctrl-C stops the worker.")


def main(argv=None):
    """``python -m helpers.workers --port 8000 --concurrency -1``: run one worker in the foreground (make workers)."""
    import argparse
    import socket
    parser = argparse.ArgumentParser(description="Run one TFF worker for another machine's driver.")
    parser.add_argument("--port", default="8000", help="TCP port to listen on (1-65535)")
    parser.add_argument("--concurrency", default="-1",
                        help="most client computations run at once; 0 or less: no limit")
    args = parser.parse_args(argv)
    try:
        port, concurrency = int(args.port), int(args.concurrency)
    except ValueError:
        parser.error(f"PORT={args.port!r} and CONCURRENCY={args.concurrency!r} must be whole numbers, "
                     "e.g. make workers PORT=8000 CONCURRENCY=2.")
    if not 1 <= port <= 65535:
        parser.error(f"PORT={port} is not a TCP port; use 1 to 65535, e.g. make workers PORT=8000.")
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as probe:
        try:
            probe.bind(("::" if socket.has_ipv6 else "0.0.0.0", port))
        except OSError as error:
            parser.error(f"port {port} is not free on this machine ({error.strerror}); pick another, "
                         f"e.g. make workers PORT={port + 1 if port < 65535 else 8000}.")
    command = worker_command(port, concurrency)
    print(exposure_notice(port), flush=True)
    print("  " + " ".join(command), flush=True)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
