"""The same short FedAvg run, several times in one fresh process, with the peak memory of each, for tests/test_memory.py.

``python tests/memory_run.py '<json options>'`` trains the course CNN with
:func:`helpers.training.train_fed_avg` (identity encoders, fast-mode offline
data, ``rounds`` rounds of 2 clients, no evaluation) ``runs`` times (default 4)
and prints one JSON line: ``{"peaks": [{key: MiB} per run], "weights_equal": bool}``,
the peaks of :class:`helpers.workers.memory.PeakSampler` (this Python process and TFF's
worker) while each run trained, and whether every run ended with bit-identical weights.
``keep`` (option, default false) leaves out the release step
(:func:`helpers.workers.runtime.release_finished_runs`), to show what it saves.
"""
import json
import sys

options = json.loads(sys.argv[1])

from helpers import setup  # noqa: E402

setup.quiet_logs()
import numpy as np  # noqa: E402

from helpers import compression, data, model, runs, training  # noqa: E402
from helpers.workers import memory, runtime  # noqa: E402

runtime.start()

if options.get("keep"):
    runtime.release_finished_runs = lambda: 0

train, _ = data.load_emnist(only_digits=True)
settings = runs.RunSettings(rounds=options.get("rounds", 2), clients_per_round=2, client_lr=0.1)
model_fn = model.build_model_fn()
final, peaks = [], []
run_rounds = training.run_rounds


def keep_final_weights(process, *args, **kwargs):
    state, history = run_rounds(process, *args, **kwargs)
    final.append(process.get_model_weights(state).trainable)
    return state, history


training.run_rounds = keep_final_weights
for _ in range(options.get("runs", 4)):
    with memory.PeakSampler() as sampler:
        training.train_fed_avg(model_fn, compression.identity(), settings, train,
                               outputs=runs.RunOutputs(name="memory", verbose=False))
    peaks.append(sampler.mib())
equal = all(all(np.array_equal(a, b) for a, b in zip(final[0], other)) for other in final[1:])
print(json.dumps(dict(peaks=peaks, weights_equal=equal)), flush=True)
