"""scripts/check_no_workers.sh judges only the workers of its own run, and leaves everyone else's alone."""
import os
import pathlib
import subprocess
import sys
import time
import uuid

import psutil
import pytest

CHECK = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "check_no_workers.sh"

# Runs one TFF computation (which starts a worker_binary), prints that worker's pid, then sleeps.
# It does not import helpers.workers.runtime, so its worker outlives it, as a leaked worker would.
HOLD_A_WORKER = """
import sys, time
import psutil
import tensorflow_federated as tff

@tff.tensorflow.computation
def one():
    return 1

assert one() == 1
workers = [c.pid for c in psutil.Process().children(recursive=True) if c.name() == "worker_binary"]
print("worker", workers[0], flush=True)
time.sleep(float(sys.argv[1]))
"""


def start_holding_a_worker(run_id, seconds):
    """(Python process, pid of its TFF worker): a process started with ``COURSE_RUN_ID=run_id`` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "COURSE_RUN_ID"}
    if run_id:
        env["COURSE_RUN_ID"] = run_id
    process = subprocess.Popen([sys.executable, "-c", HOLD_A_WORKER, str(seconds)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith("worker "):
            return process, int(line.split()[1])
    raise AssertionError(f"the process holding a worker ended (status {process.wait()}) before starting one")


def check(run_id):
    env = dict(os.environ, COURSE_RUN_ID=run_id) if run_id else {k: v for k, v in os.environ.items()
                                                                  if k != "COURSE_RUN_ID"}
    return subprocess.run([str(CHECK)], env=env, capture_output=True, text=True, timeout=60)


def running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop(pid):
    try:
        psutil.Process(pid).kill()
    except psutil.NoSuchProcess:
        pass


@pytest.fixture
def foreign_worker():
    """A long-lived process that holds a TFF worker and belongs to no run, like an open course kernel."""
    process, worker = start_holding_a_worker(None, seconds=600)
    yield worker
    process.kill()
    process.wait()
    stop(worker)


def test_a_worker_left_by_this_run_is_reported_and_a_foreign_one_is_not_touched(foreign_worker):
    run_id = f"test-{uuid.uuid4().hex}"
    process, leaked = start_holding_a_worker(run_id, seconds=0)
    process.wait()
    try:
        assert running(leaked)  # the marked process exited and left its worker behind
        result = check(run_id)
        assert result.returncode == 1, result
        assert f"pids: {leaked})" in result.stderr
        assert str(foreign_worker) not in result.stdout + result.stderr
        time.sleep(0.5)
        assert not running(leaked)
        assert running(foreign_worker)
    finally:
        stop(leaked)


def test_a_run_that_left_nothing_passes_while_another_process_holds_a_worker(foreign_worker):
    result = check(f"test-{uuid.uuid4().hex}")
    assert result.returncode == 0, result
    assert result.stdout.strip() == "OK: this run left no TFF worker_binary running."
    assert running(foreign_worker)


def test_without_a_run_id_it_refuses_to_judge():
    result = check(None)
    assert result.returncode == 2
    assert "COURSE_RUN_ID is not set" in result.stderr
