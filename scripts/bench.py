"""Speed figures: seconds per FedAvg round (identity and 8-bit) against plain Keras on the same examples.

Prints a table and saves outputs/bench/rounds.json. Uses the offline data so it needs no network.
"""
import json
import time

import numpy as np

from helpers import setup

setup.start()
from helpers import compression, config, data, model, training  # noqa: E402

CLIENTS, ROUNDS = 10, 5


def keras_seconds(datasets):
    """Seconds for plain Keras to train a fresh copy of the CNN on each client's dataset in turn."""
    keras_model = model.compile_for_keras(model.create_original_fedavg_cnn_model())
    keras_model.fit(datasets[0], verbose=0)  # trace once, as TFF does in its first round
    start = time.perf_counter()
    for dataset in datasets:
        keras_model.fit(dataset, verbose=0)
    return time.perf_counter() - start


def tff_seconds(encoders, client_sets):
    """Median seconds per round of FedAvg with ``encoders`` over the given rounds of datasets."""
    process = compression.build_fed_avg(model.build_model_fn(), encoders)
    state = process.initialize()
    state = process.next(state, client_sets[0]).state  # warm-up round
    times = []
    for datasets in client_sets:
        start = time.perf_counter()
        state = process.next(state, datasets).state
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    train, _ = data.load_emnist(source="offline")
    rng = np.random.default_rng(config.SEED)
    rounds = [data.make_federated_data(train, training.sample_clients(train.client_ids, CLIENTS, rng))
              for _ in range(ROUNDS)]
    results = {
        "identity_round_s": tff_seconds(compression.identity(), rounds),
        "eight_bit_round_s": tff_seconds(compression.uniform_quantization(8), rounds),
        "keras_same_examples_s": float(np.median([keras_seconds(r) for r in rounds])),
    }
    results["tff_over_keras"] = results["identity_round_s"] / results["keras_same_examples_s"]
    results["eight_bit_over_identity"] = results["eight_bit_round_s"] / results["identity_round_s"]
    for key, value in results.items():
        print(f"{key:28s} {value:8.3f}")
    path = config.output_dir("bench") / "rounds.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
