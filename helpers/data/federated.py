"""Federated EMNIST for the course: load it, and preprocess it for FedAvg.

``load_emnist()`` returns ``(train, test)`` as TFF ``ClientData``: one client
per writer, each element an ``OrderedDict(label=int32 [], pixels=float32
[28, 28])`` with 1.0 = white background and 0.0 = ink, exactly as
``tff.simulation.datasets.emnist.load_data`` returns it. ``preprocess`` and
``make_federated_data`` batch it as the original tutorial does; ``examples_per_client``
and ``label_counts`` summarize it for notebook 01.

Two sources share one file format (``helpers.data.emnist_file``):

- ``tff``: the real federated EMNIST, downloaded once (``helpers.data.download``).
- ``offline``: scikit-learn's digits redrawn by synthetic writers, no network
  needed, generated once per seed (``helpers.data.offline``).

``auto`` (the default) uses a cached real file if there is one, else tries the
download, else falls back to ``offline`` and says so. In fast mode
(``COURSE_FAST=1``) it skips the download and uses the small offline set.

Environment variables: ``COURSE_DATA_SOURCE`` (auto, tff, offline),
``COURSE_DATA_DIR`` (cache folder, default ``~/.tff`` as TFF uses),
``COURSE_EMNIST_URL`` (where to download the real file from).
"""
import contextlib
import os

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from helpers import config
from helpers.runs import seeds
from helpers.workers import tff_compat
from helpers.data import download, emnist_file, offline
from helpers.data.emnist_file import NUM_CLASSES

SOURCES = ("auto", "tff", "offline")

# Preprocessing, as in the original tutorial.
SHUFFLE_BUFFER = 418
BATCH_SIZE = 20
# Evaluation batches. The loss and accuracy do not depend on it (each example's prediction is the same), and
# batches of 500 held 60 MiB more in the kernel while Keras evaluated (docs/memory.md).
TEST_BATCH_SIZE = 100


# --- Choosing and loading the source ------------------------------------------


def resolve_source(source=None):
    """The data source to use: ``source``, else ``$COURSE_DATA_SOURCE``, else "auto"."""
    if source is None:
        source = os.environ.get("COURSE_DATA_SOURCE", "").strip() or "auto"
    if source not in SOURCES:
        raise ValueError(
            f"Unknown data source {source!r}. Valid sources are {', '.join(SOURCES)}; "
            "pass source=... to load_emnist or set the environment variable "
            "COURSE_DATA_SOURCE."
        )
    return source


def load_emnist(only_digits=True, source=None, cache_dir=None, fast=None, seed=None):
    """Federated EMNIST as ``(train, test)`` TFF ``ClientData``, one client per writer.

    ``source``: "auto", "tff" or "offline" (default ``$COURSE_DATA_SOURCE`` or
    "auto"). ``fast``: the small offline set (default: ``COURSE_FAST``).
    ``seed``: seed of the offline set (default ``helpers.config.SEED``).
    Prints one line naming the source used.
    """
    source = resolve_source(source)
    fast = config.fast_mode() if fast is None else bool(fast)
    folder = emnist_file.data_dir(cache_dir)
    if source == "tff":
        return _load_real(folder, only_digits)
    if source == "offline":
        return _load_offline(folder, only_digits, fast, seed)
    if (folder / download.REAL_FILENAME).exists():  # auto; a damaged file raises here
        return _load_real(folder, only_digits)
    if fast:
        return _load_offline(folder, only_digits, fast, seed, why="fast mode's small set")
    try:
        download.download_emnist(folder)
    except download.DownloadError as err:
        if not only_digits:
            raise ValueError(
                "only_digits=False needs the real EMNIST, which could not be "
                f"downloaded: {err.reason}."
            ) from err
        return _load_offline(folder, only_digits, fast, seed,
                             why=f"the real EMNIST is not here and its download failed: {err.reason}")
    return _load_real(folder, only_digits)


def _load_real(folder, only_digits):
    """Reads (downloading first if missing) the real EMNIST in ``folder``."""
    path = folder / download.REAL_FILENAME
    if not path.exists():
        download.download_emnist(folder)
    splits = emnist_file.SPLITS[bool(only_digits)]
    clients = emnist_file.check_database(path, splits, kind="real")
    print(f"EMNIST source: tff (real federated EMNIST, {clients[splits[0]]:,} writers) "
          f"from {path}")
    return emnist_file.read_client_data(path, splits)


def _load_offline(folder, only_digits, fast, seed, why=None):
    """Reads (generating first if missing) the offline digits in ``folder``; ``why`` ends its one line."""
    if not only_digits:
        raise ValueError(
            "The offline source has digits only: use only_digits=True, or "
            "source='tff' for letters too (needs network)."
        )
    seed = config.SEED if seed is None else int(seed)
    num_writers = offline.FAST_WRITERS if fast else offline.FULL_WRITERS
    path = offline.offline_path(folder, num_writers, seed)
    if not path.exists():
        offline.generate_offline_emnist(path, num_writers, seed)
    splits = emnist_file.SPLITS[True]
    clients = emnist_file.check_database(path, splits, kind="offline")
    print(f"EMNIST source: offline (scikit-learn digits drawn by "
          f"{clients[splits[0]]} synthetic writers, seed {seed}) from {path}"
          + (f"; {why} (COURSE_DATA_SOURCE=tff or offline chooses, docs/data.md)" if why else ""))
    return emnist_file.read_client_data(path, splits)


# --- Preprocessing for FedAvg ----------------------------------------------------


def preprocess(dataset, epochs=1, batch_size=BATCH_SIZE, shuffle_buffer=SHUFFLE_BUFFER, seed=None):
    """One client's EMNIST elements -> shuffled, repeated batches (pixels [b, 28, 28, 1], label [b]).

    As in the original tutorial: shuffle(418), repeat(epochs), batch(20), add a channel axis.
    ``seed``: the shuffle's seeds, a pair from :func:`helpers.runs.seeds.shuffle_seeds` or one int
    (default: round 0 of ``config.SEED``); the order depends on it alone, never on TF's
    global seed or op counter (:func:`helpers.runs.seeds.shuffle`).
    """
    if seed is None:
        seed = seeds.shuffle_seeds(config.SEED, 0, "")
    return (seeds.shuffle(dataset, shuffle_buffer, seed)
            .repeat(epochs)
            .batch(batch_size)
            .map(_to_x_y))


def preprocess_test(dataset, batch_size=TEST_BATCH_SIZE):
    """EMNIST elements -> batches of (pixels [b, 28, 28, 1], label [b]) for evaluation."""
    return dataset.batch(batch_size).map(_to_x_y)


def _to_x_y(element):
    """OrderedDict(label, pixels) batch -> (pixels with a channel axis, label)."""
    return tf.expand_dims(element["pixels"], axis=-1), element["label"]


def make_federated_data(client_data, client_ids, **preprocess_kwargs):
    """Preprocessed datasets of ``client_ids``, in order (keywords go to ``preprocess``).

    Without a ``seed`` keyword each client's shuffle has its own seeds, from the
    run's seed, the round and the client id (:func:`helpers.runs.seeds.client_shuffle_seeds`:
    the round that ``training.run_rounds`` is building, or round 0 of ``config.SEED``).
    """
    if "seed" in preprocess_kwargs:
        return [preprocess(client_data.create_tf_dataset_for_client(client_id), **preprocess_kwargs)
                for client_id in client_ids]
    return [preprocess(client_data.create_tf_dataset_for_client(client_id), seed=seed, **preprocess_kwargs)
            for client_id, seed in zip(client_ids, seeds.client_shuffle_seeds(client_ids))]


# --- Summaries for notebook 01 ------------------------------------------------------


def examples_per_client(client_data):
    """Number of examples of each writer, in the order of ``client_data.client_ids`` (int array)."""
    sql = tff_compat.sql_file_of(client_data)
    if sql is not None:
        path, split = sql
        with contextlib.closing(emnist_file.connect_read_only(path)) as connection:
            columns = {row[1] for row in connection.execute("PRAGMA table_info(client_metadata)")}
            query = ("SELECT client_id, num_examples FROM client_metadata WHERE split_name = ?"
                     if "num_examples" in columns else  # TFF documents it but does not need it
                     "SELECT client_id, COUNT(*) FROM examples WHERE split_name = ? "
                     "GROUP BY client_id")
            counts = dict(connection.execute(query, (split,)).fetchall())
        return np.array([counts[client_id] for client_id in client_data.client_ids], dtype=np.int64)
    return np.array([sum(1 for _ in client_data.create_tf_dataset_for_client(client_id))
                     for client_id in client_data.client_ids], dtype=np.int64)


def label_counts(client_data, client_ids=None, num_classes=NUM_CLASSES):
    """Label histogram of each writer: int array [len(client_ids), num_classes].

    ``client_ids``: default all writers. Use ``num_classes=62`` with letters.
    """
    client_ids = list(client_data.client_ids if client_ids is None else client_ids)
    sql = tff_compat.sql_file_of(client_data)
    if sql is not None:
        labels = _labels_from_sql(*sql, client_ids)
    else:
        labels = {client_id: [int(e["label"]) for e in client_data.create_tf_dataset_for_client(
            client_id).as_numpy_iterator()] for client_id in client_ids}
    counts = np.zeros((len(client_ids), num_classes), dtype=np.int64)
    for row, client_id in enumerate(client_ids):
        found = np.bincount(np.asarray(labels.get(client_id, []), dtype=np.int64))
        if len(found) > num_classes:
            raise ValueError(f"Writer {client_id} has label {len(found) - 1}, beyond "
                             f"num_classes={num_classes}; pass num_classes=62 for letters.")
        counts[row, :len(found)] = found
    return counts


def _labels_from_sql(path, split, client_ids):
    """{client_id: [labels]} read straight from the SQLite file (one pass, no TensorFlow)."""
    labels = {client_id: [] for client_id in client_ids}
    with contextlib.closing(emnist_file.connect_read_only(path)) as connection:
        for start in range(0, len(client_ids), 500):
            chunk = client_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = connection.execute(
                "SELECT client_id, serialized_example_proto FROM examples "
                f"WHERE split_name = ? AND client_id IN ({marks})", (split, *chunk))
            for client_id, blob in rows:
                example = tf.train.Example.FromString(blob)
                labels[client_id].append(example.features.feature["label"].int64_list.value[0])
    return labels
