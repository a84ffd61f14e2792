"""Connect the driver to one TFF worker: TFF's ``RemoteExecutor`` over a gRPC stub that counts bytes and bounds retries.

:func:`check_reachable` fails fast on addresses that do not answer.
:func:`connect` returns TFF's execution context for one worker, run on its own
thread; its ``stub`` counts the bytes sent and received (``stub.traffic``) and
turns TFF's endless retry of a silent worker into :class:`WorkerUnavailableError`.
:mod:`helpers.workers` merges these contexts into one.
"""
import asyncio
import collections
import functools
import threading
import time

from helpers.workers import tff_compat
from helpers.workers.processes import WorkerUnavailableError
from helpers.workers.spec import ENV, FORMS

CONNECT_TIMEOUT_S = 10.0   # a chosen remote address must answer within this
RETRY_TIMEOUT_S = 20.0     # a worker that stops answering must be back within this
MAX_RETRIES = 3            # ... and may fail this many times in a row before we give up

_GRPC_MAX_BYTES = 2 * 1000 * 1000 * 1000  # as TFF's own local executor factory
_CHANNEL_OPTIONS = [("grpc.max_message_length", _GRPC_MAX_BYTES),
                    ("grpc.max_receive_message_length", _GRPC_MAX_BYTES),
                    ("grpc.max_send_message_length", _GRPC_MAX_BYTES)]


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


class Traffic:
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
        """(bytes sent, bytes received) so far."""
        with self._lock:
            return sum(self.sent.values()), sum(self.received.values())


def connect(address, group, local_worker=None, retry_timeout=RETRY_TIMEOUT_S, max_retries=MAX_RETRIES):
    """TFF's execution context for the worker at ``address`` (``host:port``), on its own thread.

    The context has ``stub`` (``stub.traffic``: bytes) and ``channel`` (close
    it when done). ``group`` is told of each slice (``note_slice``) and says
    whether it was released (``closed``). ``local_worker``: the
    :class:`~helpers.workers.processes.LocalWorker` at that address, if any.
    A worker silent for ``retry_timeout`` s or ``max_retries`` failures in a
    row raises :class:`WorkerUnavailableError`.
    """
    import grpc
    import tensorflow_federated as tff
    channel = grpc.insecure_channel(address, _CHANNEL_OPTIONS)
    try:
        stub = _bounded_stub_class()(address, channel, local_worker, retry_timeout, max_retries)
        inner = tff.framework.AsyncExecutionContext(
            tff.framework.ResourceManagingExecutorFactory(_stack_fn(stub)),
            compiler_fn=tff.backends.native.desugar_and_transform_to_native,
            transform_args=tff.tensorflow.transform_args,
            transform_result=tff.tensorflow.transform_result)
        context = _worker_context_class()(inner, stub, group)
    except BaseException:
        channel.close()
        raise
    context.channel = channel
    return context


def _stack_fn(stub):
    """TFF's executor stack for one worker: a ``RemoteExecutor`` over ``stub``."""
    import tensorflow_federated as tff

    def stack_fn(cardinalities):
        cardinalities.setdefault(tff.CLIENTS, 0)  # as TFF's local factory: no clients-placed argument
        executor = tff.framework.RemoteExecutor(stub)
        executor.set_cardinalities(cardinalities)
        return executor

    return stack_fn


@functools.cache
def _bounded_stub_class():
    """``BoundedStub``, defined once TFF is imported (it subclasses TFF's stub)."""
    import grpc
    import tensorflow_federated as tff

    class BoundedStub(tff.framework.RemoteExecutorStub):
        """TFF's gRPC stub for one worker, with its traffic counted and its retries bounded.

        TFF's ``AsyncExecutionContext`` retries every ``RetryableError``
        (gRPC ``UNAVAILABLE``) forever. This stub lets TFF retry only while the
        worker answers again within ``retry_timeout`` seconds and at most
        ``max_retries`` times in a row; otherwise it raises
        :class:`WorkerUnavailableError`, which TFF does not retry.
        """

        def __init__(self, address, channel, local_worker, retry_timeout, max_retries):
            self.address = address
            self.traffic = Traffic()
            self._channel = channel
            self._inner = tff.framework.RemoteExecutorGrpcStub(channel)
            self._local = local_worker
            self._retry_timeout = retry_timeout
            self._max_retries = max_retries
            self._failures = 0

        def _call(self, method, request):
            try:
                response = getattr(self._inner, method)(request)
            except tff.framework.RetryableError as error:
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
                    f"Start the workers again (use_workers / {ENV}).{self._local.log_tail()}")
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


@functools.cache
def _worker_context_class():
    """``WorkerContext``, defined once TFF is imported (it subclasses TFF's ``AsyncContext``)."""
    import tensorflow_federated as tff

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
            self._runner = tff_compat.async_thread_runner()

        async def invoke(self, comp, arg):
            self._group.note_slice(self.stub.address, comp, arg)
            try:
                return await self._runner.await_coro_and_return_result(self._inner.invoke(comp, arg))
            except Exception:
                if self._group.closed:
                    # The workers were released while this slice still ran (after another
                    # worker's error, or Ctrl-C): nobody waits for it, so end it quietly.
                    raise asyncio.CancelledError() from None
                raise

    return WorkerContext
