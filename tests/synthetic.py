"""Tiny random client datasets for tests that need real rounds but not real data."""
import numpy as np
import tensorflow as tf


def client_datasets(num_clients, examples=20, seed=0):
    """``num_clients`` preprocessed-looking datasets of ``examples`` random digits, batch 20."""
    rng = np.random.default_rng(seed)
    datasets = []
    for _ in range(num_clients):
        x = rng.random((examples, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 10, examples).astype(np.int32)
        datasets.append(tf.data.Dataset.from_tensor_slices((x, y)).batch(20))
    return datasets
