"""TFF's EMNIST SQLite file: where it is cached, its layout, and checking, reading and writing it.

The real federated EMNIST (``helpers.data.download``) and the offline stand-in
(``helpers.data.offline``) share this one format, the one
``tff.simulation.datasets.SqlClientData`` reads: a table ``examples``
(split_name, client_id, serialized_example_proto) and a table
``client_metadata`` (client_id, split_name, num_examples). Each example is a
``tf.train.Example`` with 784 float ``pixels`` (1.0 = white paper) and one
int64 ``label``.
"""
import collections
import contextlib
import os
import pathlib
import sqlite3

import tensorflow as tf
import tensorflow_federated as tff


SPLITS = {True: ("digits_only_train", "digits_only_test"), False: ("all_train", "all_test")}
NUM_CLASSES = 10  # digits
IMAGE_SIZE = 28  # pixels per side

_SQLITE_HEADER = b"SQLite format 3\x00"
_QUICK_CHECK_MAX_BYTES = 512 * 2**20  # PRAGMA quick_check only on files this small


class DataSourceError(RuntimeError):
    """Base class of the course's data errors (this one and ``helpers.data.download``'s)."""


class CorruptDataFileError(DataSourceError):
    """A cached data file exists but is partial or damaged."""


def data_dir(cache_dir=None):
    """The cache folder: ``cache_dir``, else ``$COURSE_DATA_DIR``, else ``~/.tff`` (as TFF uses)."""
    folder = cache_dir or os.environ.get("COURSE_DATA_DIR") or "~/.tff"
    return pathlib.Path(folder).expanduser().resolve()


def connect_read_only(path):
    """An SQLite connection that cannot change or create the file at ``path``."""
    return sqlite3.connect(f"{pathlib.Path(path).resolve().as_uri()}?mode=ro", uri=True)


# --- Reading -------------------------------------------------------------------


def read_client_data(path, splits=SPLITS[True]):
    """``(train, test)`` ClientData read from the SQLite file at ``path``.

    Each element is ``OrderedDict(label=int32 [], pixels=float32 [28, 28])``.
    """
    return tuple(
        tff.simulation.datasets.SqlClientData(str(path), split).preprocess(_parse_examples)
        for split in splits
    )


def _parse_examples(dataset):
    """Serialized ``tf.train.Example`` -> OrderedDict(label=int32 [], pixels=float32 [28, 28])."""
    spec = {
        "pixels": tf.io.FixedLenFeature(shape=(IMAGE_SIZE, IMAGE_SIZE), dtype=tf.float32),
        "label": tf.io.FixedLenFeature(shape=(), dtype=tf.int64),
    }

    def parse(proto):
        features = tf.io.parse_example(proto, spec)
        return collections.OrderedDict(
            label=tf.cast(features["label"], tf.int32), pixels=features["pixels"]
        )

    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


# --- Checking ------------------------------------------------------------------


def check_database(path, splits=None, kind="real"):
    """Checks that ``path`` is a complete EMNIST SQLite file; returns {split: writers}.

    ``splits``: split names that must hold writers (None: any split will do).
    ``kind``: "real" or "offline", only to word the advice in the error.
    Raises ``CorruptDataFileError`` naming the file and the fix; never deletes it.
    """
    path = pathlib.Path(path)
    _check_sqlite_header(path, kind)
    try:
        with contextlib.closing(connect_read_only(path)) as connection:
            _check_tables(connection, path, kind)
            if path.stat().st_size <= _QUICK_CHECK_MAX_BYTES:
                result = connection.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    raise _corrupt(path, f"SQLite integrity check failed ({result})", kind)
            clients = dict(connection.execute(
                "SELECT split_name, COUNT(DISTINCT client_id) FROM client_metadata "
                "GROUP BY split_name"
            ).fetchall())
            row = connection.execute(
                "SELECT serialized_example_proto FROM examples LIMIT 1"
            ).fetchone()
    except sqlite3.DatabaseError as err:
        raise _corrupt(path, f"SQLite cannot read it ({err})", kind) from err
    wanted = list(splits) if splits else list(clients)
    empty = [split for split in wanted if not clients.get(split)]
    if empty or not wanted or row is None:
        raise _corrupt(path, f"it holds no writers for split(s) {empty or wanted}; "
                             f"found {clients}", kind)
    _check_example(row[0], path, kind)
    return {split: clients[split] for split in wanted}


def _check_sqlite_header(path, kind):
    """Raises unless ``path`` starts with an SQLite header and is as long as it says."""
    with open(path, "rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_HEADER):
        raise _corrupt(path, "it is not an SQLite database (no SQLite header)", kind)
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    page_count = int.from_bytes(header[28:32], "big")
    count_is_valid = header[92:96] == header[24:28]  # SQLite >= 3.7.0 keeps it current
    expected = page_size * page_count
    actual = path.stat().st_size
    if count_is_valid and page_count and actual < expected:
        raise _corrupt(path, f"it is truncated: {actual:,} of {expected:,} bytes", kind)


def _check_tables(connection, path, kind):
    """Raises unless the tables and columns that TFF's SqlClientData reads exist."""
    required = {  # the columns SqlClientData queries
        "examples": {"split_name", "client_id", "serialized_example_proto"},
        "client_metadata": {"client_id", "split_name"},
    }
    for table, columns in required.items():
        found = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if not found:
            raise _corrupt(path, f"table {table!r} is missing", kind)
        if columns - found:
            raise _corrupt(path, f"table {table!r} lacks columns {sorted(columns - found)}",
                           kind)


def _check_example(blob, path, kind):
    """Raises unless ``blob`` is a tf.train.Example with 784 float pixels and one label."""
    try:
        features = tf.train.Example.FromString(blob).features.feature
    except Exception as err:  # protobuf raises its own DecodeError
        raise _corrupt(path, f"an example is not a tf.train.Example ({err})", kind) from err
    pixels = len(features["pixels"].float_list.value) if "pixels" in features else 0
    labels = len(features["label"].int64_list.value) if "label" in features else 0
    if pixels != IMAGE_SIZE * IMAGE_SIZE or labels != 1:
        raise _corrupt(path, f"an example has {pixels} float pixels and {labels} int64 "
                             "labels instead of 784 and 1", kind)


def _corrupt(path, problem, kind):
    """A ``CorruptDataFileError`` saying what is wrong with ``path`` and how to fix it."""
    if kind == "offline":
        fix = "Delete it and run again; it will be regenerated:"
        alternative = ""
    else:
        fix = "Delete it and run again to download it afresh:"
        alternative = ("\nor, to work without network, set COURSE_DATA_SOURCE=offline "
                       "(or pass source='offline').")
    return CorruptDataFileError(
        f"The data file {path} is unusable: {problem}. It is probably left over "
        f"from an interrupted download or generation, and was left in place.\n"
        f"{fix}\n    rm '{path}'{alternative}"
    )


# --- Writing -------------------------------------------------------------------


def create_tables(connection):
    """Creates the two tables of TFF's EMNIST file (as ``save_to_sql_client_data`` does)."""
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("""CREATE TABLE examples (
        split_name TEXT NOT NULL, client_id TEXT NOT NULL,
        serialized_example_proto BLOB NOT NULL)""")
    connection.execute("""CREATE TABLE client_metadata (
        client_id TEXT NOT NULL, split_name TEXT NOT NULL, num_examples INTEGER NOT NULL)""")


def insert_writer(connection, split, client_id, images, labels):
    """Adds one writer's examples of one split and its metadata row.

    ``images``: float pixels [n, 28, 28], 1.0 = paper; ``labels``: ints [n].
    """
    rows = [(split, client_id, _serialize(image, label)) for image, label in zip(images, labels)]
    connection.executemany(
        "INSERT INTO examples (split_name, client_id, serialized_example_proto) VALUES (?, ?, ?)",
        rows)
    connection.execute(
        "INSERT INTO client_metadata (client_id, split_name, num_examples) VALUES (?, ?, ?)",
        (client_id, split, len(rows)))


def _serialize(pixels, label):
    """One example as EMNIST stores it: a tf.train.Example with float pixels and int64 label."""
    example = tf.train.Example(features=tf.train.Features(feature={
        "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=pixels.ravel().tolist())),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }))
    return example.SerializeToString(deterministic=True)
