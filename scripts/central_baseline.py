"""Central baseline: how hard is the offline digits task without federation?

Trains the original FedAvg CNN (1,663,370 parameters) with plain Keras on all
writers' training examples pooled together, then prints the accuracy on the
offline test split (digits never seen in training). A useful task lands well
above chance and below 100%: roughly 93-99%.

    .venv/bin/python scripts/central_baseline.py            # full offline set
    .venv/bin/python scripts/central_baseline.py --epochs 1 --fast
"""
import argparse
import time

import numpy as np
import tensorflow as tf

from helpers import config, data, model as course_model

CNN_PARAMETERS = 1_663_370


def pooled_arrays(client_data):
    """All writers' examples -> (pixels [n, 28, 28, 1] float32, labels [n] int32)."""
    dataset = data.preprocess_test(client_data.create_tf_dataset_from_all_clients())
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fast", action="store_true", help="use the small offline set")
    parser.add_argument("--seed", type=int, default=config.SEED, help="offline data seed")
    parser.add_argument("--cache-dir", default=None, help="default: $COURSE_DATA_DIR or ~/.tff")
    args = parser.parse_args()

    train, test = data.load_emnist(source="offline", fast=args.fast, seed=args.seed,
                                   cache_dir=args.cache_dir)
    x_train, y_train = pooled_arrays(train)
    x_test, y_test = pooled_arrays(test)
    print(f"{len(train.client_ids)} writers, {len(y_train):,} train and "
          f"{len(y_test):,} test examples")

    tf.keras.utils.set_random_seed(config.SEED)
    model = course_model.create_original_fedavg_cnn_model()  # the FedAvg CNN
    assert model.count_params() == CNN_PARAMETERS, model.count_params()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    start = time.monotonic()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=2)
    _, train_accuracy = model.evaluate(x_train, y_train, batch_size=500, verbose=0)
    _, test_accuracy = model.evaluate(x_test, y_test, batch_size=500, verbose=0)
    print(f"central CNN, {args.epochs} epochs ({time.monotonic() - start:.0f} s): "
          f"train accuracy {train_accuracy:.4f}, test accuracy {test_accuracy:.4f}")


if __name__ == "__main__":
    main()
