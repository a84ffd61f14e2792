"""Federated EMNIST: load it (the real data, or an offline stand-in in the same format) and preprocess it for FedAvg.

The names notebook 01 calls: ``load_emnist``, ``preprocess``, ``make_federated_data``,
``examples_per_client`` and ``label_counts``. The modules beside them:

- ``federated``   load the data, batch it as the original tutorial does, summarize it
- ``emnist_file`` TFF's EMNIST SQLite file: cache folder, layout, check, read, write
- ``download``    the real file, downloaded once (pooch) and checked before it is kept
- ``offline``     the offline stand-in: scikit-learn's digits redrawn by synthetic writers
"""
from helpers.data.federated import (BATCH_SIZE, SHUFFLE_BUFFER, SOURCES, examples_per_client, label_counts,
                                    load_emnist, make_federated_data, preprocess, preprocess_test, resolve_source)

__all__ = ["BATCH_SIZE", "SHUFFLE_BUFFER", "SOURCES", "examples_per_client", "label_counts", "load_emnist",
           "make_federated_data", "preprocess", "preprocess_test", "resolve_source"]
