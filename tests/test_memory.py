"""Memory stays flat: the same short FedAvg run twice more adds little to the peaks (issue 24, docs/memory.md).

``tests/memory_run.py`` trains the same short run three times in one fresh
process (``train_fed_avg``: identity encoders, 2 rounds of 2 clients, fast-mode
data) and reports each run's peak RSS of the Python process and of TFF's
``worker_binary``. Every run builds its own process, as every row of a sweep
does; ``build_fed_avg`` first gives back what the runs before hold
(:func:`helpers.runtime.release_finished_runs`).

The bounds, in MiB of RSS (PSS would move with whatever else maps the same
libraries, such as other tests' processes):

- **worker, 48 MiB**: with the release each run gets a fresh worker that runs
  exactly the same computations, so its peak repeats to within the sampler's
  jitter (measured: within 3 MiB over four runs). Without it the one worker
  keeps every process it ran and its peak grows by 150-250 MiB per extra run.
- **Python, 64 MiB**: TF keeps part of what each build traces in this process
  whatever TFF releases (measured 15-40 MiB per run with the release, so up to
  about 40 MiB for two more runs plus jitter); without the release the
  compiled computations stay in TFF's cache too and the Python peak grows by
  85-100 MiB for two more runs.

Remove the ``runtime.release_finished_runs()`` line of
``helpers.training.build_fed_avg`` and this test fails on both bounds.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("memory_run.py")
REPO = SCRIPT.parent.parent
BOUND_MIB = dict(python_rss=64, worker_rss=48)


def _three_runs(tmp_path, **options):
    env = dict(os.environ, COURSE_FAST="1", COURSE_OUTPUT_DIR=str(tmp_path / "outputs"),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, str(SCRIPT), json.dumps(dict(options, runs=3))], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_same_run_twice_more_adds_less_than_the_bound_to_either_peak(tmp_path):
    result = _three_runs(tmp_path)
    assert result["weights_equal"], "the three runs of the same settings must end with bit-identical weights"
    first, *later = result["peaks"]
    assert first["worker_rss"] > 100, f"no TFF worker was measured: {first}"
    growth = {key: max(run[key] for run in later) - first[key] for key in BOUND_MIB}
    print("peaks (MiB):", result["peaks"], "growth (MiB):", growth)
    for key, bound in BOUND_MIB.items():
        assert growth[key] < bound, (f"two more runs raised the {key} peak by {growth[key]:.0f} MiB "
                                     f"(bound {bound} MiB): {result['peaks']}")
