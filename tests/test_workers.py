"""helpers.workers: the same FedAvg round on 2 local workers as in one process, bounded failures, bad values.

One module fixture starts 2 local workers once and runs a round with identity
and with the seed's 8-bit policy (deterministic rounding: tfmot's stochastic
rounding draws unseeded random numbers, so two runs never agree) on both the
single process and the workers, from the same initial state.
"""
import os
import subprocess
import sys
import time

import numpy as np
import portpicker
import psutil
import pytest
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import compression, config, model, training, workers
from helpers.workers import context, processes, runtime, spec
from tests.synthetic import client_datasets

IDENTITY_BITS = 53_227_840       # per client, as in tests/test_compression.py
EIGHT_BIT_BITS = 15_357_536
CLIENTS = 3                      # TFF cuts them 2 + 1 over 2 workers
POLICIES = {
    "identity": compression.identity,
    "8-bit": lambda: compression.threshold_policy(
        lambda: te.encoders.uniform_quantization(bits=8, stochastic=False)),
}
BITS = {"identity": IDENTITY_BITS, "8-bit": EIGHT_BIT_BITS}

# These tests compare workers with one local process and switch between them.
pytestmark = pytest.mark.skipif(
    workers.active() is not None,
    reason="COURSE_WORKERS is set, so rounds already run on workers; run these tests without it.")


def trainable(process, state):
    return [np.asarray(w) for w in process.get_model_weights(state).trainable]


@pytest.fixture(scope="module")
def rounds():
    """Per policy: the initial weights, and (metrics, weights) after one round in one process and on 2 workers."""
    model_fn = model.build_model_fn()
    datasets = client_datasets(CLIENTS)
    processes = {name: training.build_fed_avg(model_fn, policy()) for name, policy in POLICIES.items()}
    states = {name: p.initialize() for name, p in processes.items()}
    results = {name: dict(initial=trainable(processes[name], states[name])) for name in POLICIES}
    for name, process in processes.items():
        output = process.next(states[name], datasets)
        results[name]["single"] = (output.metrics, trainable(process, output.state))
    with workers.local_workers(2) as group:
        inside = workers.current_workers()
        for name, process in processes.items():
            output = process.next(states[name], datasets)
            results[name]["split"] = group.last_call()["clients"]
            results[name]["workers"] = (output.metrics, trainable(process, output.state))
    return dict(results=results, group=group, inside=inside, outside=workers.current_workers())


@pytest.mark.parametrize("policy", list(POLICIES))
def test_same_bits_as_one_process(rounds, policy):
    for where in ("single", "workers"):
        metrics, _ = rounds["results"][policy][where]
        assert metrics["distributor"]["broadcast_bits"] == CLIENTS * BITS[policy], where
        assert metrics["aggregator"]["aggregated_bits"] == CLIENTS * BITS[policy], where


@pytest.mark.parametrize("policy", list(POLICIES))
def test_same_weights_as_one_process(rounds, policy):
    result = rounds["results"][policy]
    single, on_workers = result["single"][1], result["workers"][1]
    assert len(single) == len(on_workers) == 8
    moved = max(np.abs(a - b).max() for a, b in zip(result["initial"], single))
    assert moved > 1e-3  # the round really trained
    assert max(np.abs(a - b).max() for a, b in zip(single, on_workers)) <= 1e-6


@pytest.mark.parametrize("policy", list(POLICIES))
def test_both_workers_received_clients(rounds, policy):
    split = rounds["results"][policy]["split"]
    assert list(split) == rounds["group"].addresses
    assert list(split.values()) == workers.split_counts(CLIENTS, 2) == [2, 1]


def test_setup_line_names_the_workers(rounds):
    addresses = rounds["group"].addresses
    assert rounds["inside"].startswith("rounds split over 2 TFF workers (started by the course")
    assert all(a in rounds["inside"] for a in addresses)
    assert rounds["outside"] == "rounds run in one local TFF process (COURSE_WORKERS unset)"


def test_workers_are_stopped_when_the_block_ends(rounds):
    local = rounds["group"].local
    assert len(local) == 2
    assert all(w.exit_code() is not None for w in local)
    assert not set(w.process.pid for w in local) & set(runtime.tff_worker_pids(scale_out=True))
    assert processes._STARTED == []


# ------------------------------------------------------------------ failures --

def run_start_with(value, timeout):
    """Start TFF's runtime (as the setup cell does) in a fresh Python with ``COURSE_WORKERS=value``."""
    env = dict(os.environ, COURSE_WORKERS=value, PYTHONPATH=str(config.repo_root()))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", "from helpers.workers import runtime; runtime.start()"], env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - start


def test_no_worker_at_the_port_is_a_clear_error_within_60_seconds():
    port = portpicker.pick_unused_port()
    done, seconds = run_start_with(f"127.0.0.1:{port}", timeout=60)
    assert done.returncode != 0
    assert f"WorkerUnavailableError: no TFF worker answered at 127.0.0.1:{port} within 10 s" in done.stderr
    assert "make workers" in done.stderr
    assert seconds < 60


@pytest.mark.parametrize("value, problem", [
    ("abc", "'abc' is not host:port"),
    ("0", "must be 1 to 64"),
    ("-2", "must be 1 to 64"),
    ("65", "must be 1 to 64"),
    ("1.5", "'1.5' is not host:port"),
    ("127.0.0.1", "'127.0.0.1' is not host:port"),
    ("127.0.0.1:0", "the port must be 1 to 65535"),
    ("127.0.0.1:70000", "the port must be 1 to 65535"),
    ("127.0.0.1:8000,,127.0.0.1:8001", "'' in '127.0.0.1:8000,,127.0.0.1:8001' is not host:port"),
    ("127.0.0.1:8000,127.0.0.1:8000", "names 127.0.0.1:8000 more than once"),
    (",", "names no worker"),
])
def test_bad_values_name_the_expected_forms(monkeypatch, value, problem):
    monkeypatch.setenv("COURSE_WORKERS", value)
    monkeypatch.setitem(context._state, "applied_env", False)
    with pytest.raises(spec.WorkersSpecError) as error:
        workers.apply_environment()
    message = str(error.value)
    assert message.startswith(f"COURSE_WORKERS={value!r} is not understood")
    assert problem in message
    assert "COURSE_WORKERS expects either a number of local workers to start" in message
    assert workers.active() is None
    with pytest.raises(spec.WorkersSpecError):  # a second import fails too, never runs silently
        workers.apply_environment()


@pytest.mark.parametrize("value", [True, 2.0, None, [], ["127.0.0.1:8000", 5]])
def test_bad_python_specs_are_refused(value):
    with pytest.raises(spec.WorkersSpecError, match="COURSE_WORKERS expects either"):
        spec.parse_spec(value)


def test_unset_or_empty_runs_in_one_local_process(monkeypatch):
    for value in (None, "", "  "):
        if value is None:
            monkeypatch.delenv("COURSE_WORKERS", raising=False)
        else:
            monkeypatch.setenv("COURSE_WORKERS", value)
        monkeypatch.setitem(context._state, "applied_env", False)
        before = tff.framework.get_context_stack().current
        assert workers.apply_environment() is None
        assert tff.framework.get_context_stack().current is before


@tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
def _sum_at_server(values):
    return tff.federated_sum(values)


def test_a_running_worker_that_dies_is_named_within_a_bounded_time():
    """A worker started outside Python (as by make workers) answers, is killed, and the next call fails fast."""
    port = portpicker.pick_unused_port()
    address = f"127.0.0.1:{port}"
    outside = subprocess.Popen(processes.worker_command(port), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        default = tff.framework.get_context_stack().current
        group = workers.use_workers(address, connect_timeout=30, retry_timeout=3)
        try:
            assert workers.current_workers() == f"rounds split over 1 TFF worker (already running): {address}"
            assert _sum_at_server([1, 2, 3]) == 6
            assert group.last_call()["clients"] == {address: 3}
            outside.kill()
            outside.wait()
            start = time.monotonic()
            with pytest.raises(processes.WorkerUnavailableError,
                               match=rf"the TFF worker at {address} stopped answering .* within 3 s"):
                _sum_at_server([1, 2, 3])
            assert time.monotonic() - start < 30
        finally:
            workers.use_local_process()
        assert tff.framework.get_context_stack().current is default
        assert _sum_at_server([4, 5]) == 9  # back in one local process
    finally:
        outside.kill()
        outside.wait()


def test_a_killed_local_worker_is_named(monkeypatch):
    with workers.local_workers(2) as group:
        victim = group.local[1]
        victim.process.kill()
        victim.process.wait()
        with pytest.raises(processes.WorkerUnavailableError,
                           match=rf"the local TFF worker at {victim.address} \(pid \d+\) was killed by signal 9"):
            _sum_at_server([1, 2, 3])
    assert all(w.exit_code() is not None for w in group.local)


def test_no_worker_the_course_started_is_left_running():
    started_here = [p for p in psutil.Process().children(recursive=True)
                    if p.pid in processes.started_pids() and p.status() != psutil.STATUS_ZOMBIE]
    assert started_here == []
    assert processes._STARTED == []


@pytest.mark.parametrize("args, problem", [
    (["--port", "0"], "PORT=0 is not a TCP port"),
    (["--port", "x"], "must be whole numbers, e.g. make workers PORT=8000"),
])
def test_make_workers_refuses_a_bad_port(args, problem):
    done = subprocess.run([sys.executable, "-m", "helpers.workers.serve", *args], cwd=config.repo_root(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert problem in done.stderr


def _worker_flags_and_environment():
    """The command-line flags and the environment of this process's TFF worker, after one computation."""
    assert _sum_at_server([1, 2]) == 3
    [pid] = runtime.tff_worker_pids()
    process = psutil.Process(pid)
    return process.cmdline()[1:], process.environ()


@pytest.mark.parametrize("value, calls", [(None, 2), ("1", 1), ("-1", -1)])
def test_the_local_worker_runs_at_most_max_concurrent_calls_with_one_malloc_arena(monkeypatch, value, calls):
    if value is None:
        monkeypatch.delenv("COURSE_MAX_CONCURRENT_CALLS", raising=False)
    else:
        monkeypatch.setenv("COURSE_MAX_CONCURRENT_CALLS", value)
    try:
        runtime.release_finished_runs()  # stops the worker; the next computation starts one with these settings
        flags, environment = _worker_flags_and_environment()
        assert f"--max_concurrent_computation_calls={calls}" in flags
        assert environment.get("MALLOC_ARENA_MAX") == "1"
    finally:
        monkeypatch.undo()
        runtime.release_finished_runs()


@pytest.mark.parametrize("value", ["0", "two", "-2", "1.5"])
def test_a_bad_max_concurrent_calls_is_refused_with_the_forms(monkeypatch, value):
    monkeypatch.setenv("COURSE_MAX_CONCURRENT_CALLS", value)
    with pytest.raises(ValueError, match=f"COURSE_MAX_CONCURRENT_CALLS='{value}' is not understood.*-1 for no limit"):
        config.max_concurrent_calls()
