"""A short FedAvg run in a fresh process, for tests/test_determinism.py.

``python tests/determinism_run.py '<json options>'`` trains the course CNN
with :func:`helpers.training.train_fed_avg` on the fast-mode offline data and
writes the final weights (``<out>.npz``) and the history (``<out>.json``).
Options: ``out`` (path prefix, required), ``rounds``, ``client_lr``,
``noise`` (run unrelated TF ops, datasets and a Keras model first, as an
extra notebook cell would), ``setup`` (call ``helpers.setup.start()`` as a
notebook does, which seeds TF's global generator), ``checkpoint_dir``,
``every``, and ``pause_after`` (after saving that round's checkpoint, print
``saved round N`` and sleep, so the test can kill the process there).
"""
import contextlib
import json
import sys
import time

options = json.loads(sys.argv[1])

if options.get("setup"):
    from helpers import setup
    setup.start()
else:
    from helpers import setup
    setup.quiet_logs()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from helpers import compression, data, model, runs, training  # noqa: E402
from helpers.runs import checkpoints

if options.get("noise"):
    tf.random.uniform([5])
    list(tf.data.Dataset.range(50).shuffle(50).take(3))
    model.create_original_fedavg_cnn_model()
    np.random.rand(3)

if options.get("pause_after"):
    save = checkpoints.RunCheckpoints.save

    def save_then_pause(self, round_num, state, history):
        save(self, round_num, state, history)
        if round_num == options["pause_after"]:
            print(f"saved round {round_num}", flush=True)
            time.sleep(600)

    checkpoints.RunCheckpoints.save = save_then_pause

final = {}
run_rounds = training.run_rounds


def keep_final_state(process, *args, **kwargs):
    state, history = run_rounds(process, *args, **kwargs)
    final["weights"] = process.get_model_weights(state)
    return state, history


training.run_rounds = keep_final_state

train, test = data.load_emnist(only_digits=True)
evaluate = training.keras_evaluator(model.create_original_fedavg_cnn_model,
                                    data.preprocess_test(test.create_tf_dataset_from_all_clients()))
settings = runs.RunSettings(rounds=options.get("rounds", 3), clients_per_round=2, client_epochs=1,
                            client_lr=options.get("client_lr", 0.1), server_lr=1.0, server_momentum=0.9,
                            eval_every=2)
keeping = (checkpoints.enabled(options["checkpoint_dir"], every=options.get("every", 1))
           if options.get("checkpoint_dir") else contextlib.nullcontext())
with keeping:
    history = training.train_fed_avg(model.build_model_fn(), compression.identity(), settings, train, evaluate,
                                     outputs=runs.RunOutputs(name="determinism", verbose=False))
weights = final["weights"]
np.savez(options["out"] + ".npz", *weights.trainable, *weights.non_trainable)
with open(options["out"] + ".json", "w") as file:
    json.dump(dict(rounds=history.rounds, evals=history.evals, config=history.config), file)
print("done", flush=True)
