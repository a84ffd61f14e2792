"""Start and stop TFF ``worker_binary`` processes on this machine: the local workers of ``COURSE_WORKERS=N``.

:func:`start_local_workers` starts them on free ports and returns once each
answers; :meth:`LocalWorker.stop` ends one, and every worker still running is
stopped when Python exits (and dies with it when it is killed, through
``setpriv --pdeathsig``). :func:`worker_command` is the command line of one
worker, also run by ``make workers``.

Security: ``worker_binary`` listens on all network interfaces, without
authentication, and runs any TensorFlow graph it is sent (docs/scaling_out.md).
"""
import atexit
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

from helpers.workers import spec

GRPC_MAX_MESSAGE_MEGABYTES = 2000  # the worker's default (10000) overflows an int
START_TIMEOUT_S = 60.0     # a local worker must be ready within this (it loads TensorFlow first)


class WorkerUnavailableError(RuntimeError):
    """A worker that cannot be reached, did not start, or stopped answering; the message names it."""


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
    """One ``worker_binary`` started on ``127.0.0.1:port``; :meth:`stop` ends it."""

    def __init__(self, port, concurrency=-1):
        self.port = int(port)
        self.address = f"127.0.0.1:{self.port}"
        # The worker's output goes to a file without a name, which we read by its descriptor:
        # nothing is left on disk however this process ends.
        self._log = tempfile.TemporaryFile(prefix=f"tff-worker-{self.port}-")
        self.process = subprocess.Popen(
            _with_parent_death_signal(worker_command(self.port, concurrency)), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, close_fds=True)
        register_exit_hook()
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
        if self in _STARTED:
            _STARTED.remove(self)
        self._log.close()

    def __repr__(self):
        state = "running" if self.exit_code() is None else f"exited {self.exit_code()}"
        return f"LocalWorker({self.address}, pid {self.process.pid}, {state})"


_STARTED = []  # every LocalWorker this process started and has not stopped yet


def started_pids():
    """The process ids of the workers this process started and has not stopped (helpers.workers.runtime skips them)."""
    return {worker.process.pid for worker in _STARTED}


def start_local_workers(count, concurrency=-1, timeout=START_TIMEOUT_S):
    """Start ``count`` workers on free ports of this machine; returns them once all answer.

    Raises :class:`WorkerUnavailableError` (after stopping them all) if one
    exits or does not answer within ``timeout`` seconds.
    """
    import portpicker
    count = spec.check_count(count)
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
    """Return once ``worker`` answers; :class:`WorkerUnavailableError` if it exits or ``deadline`` passes."""
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
    """Stop every worker this process started and has not stopped yet. Runs at exit."""
    for worker in list(_STARTED):
        worker.stop()


_exit_hook = []


def register_exit_hook():
    """Stop the workers started here when Python exits (registered once, before the first worker starts)."""
    if not _exit_hook:
        atexit.register(stop_started_workers)
        _exit_hook.append(True)
