"""A script stopped by SIGTERM (``kill``, ``timeout``, a CI runner) stops TFF's worker on its way out."""
import signal
import subprocess
import sys
import time

from tests.test_check_no_workers import HOLD_A_WORKER, running, stop

# A course script: helpers.setup.start(), then the check's script (one TFF computation, which starts a
# worker_binary, then a long wait), so the worker is the course's to stop.
SCRIPT = "from helpers import setup\nsetup.start()\n" + HOLD_A_WORKER


def test_sigterm_ends_the_script_and_its_worker():
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, "600"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    worker = None
    try:
        worker = next(int(line.split()[1]) for line in process.stdout if line.startswith("worker "))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while running(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running(worker), f"worker_binary {worker} outlived the script stopped by SIGTERM"
    finally:
        process.kill()
        if worker is not None:
            stop(worker)
