"""Federated EMNIST for the course: the real data set or an offline stand-in.

``load_emnist()`` returns ``(train, test)`` as TFF ``ClientData``: one client
per writer, each element an ``OrderedDict(label=int32 [], pixels=float32
[28, 28])`` with 1.0 = white background and 0.0 = ink, exactly as
``tff.simulation.datasets.emnist.load_data`` returns it.

Two sources share one file format (TFF's SQLite layout) and one reading path:

- ``tff``: the real federated EMNIST, downloaded once (163 MiB, 4.4 GiB
  unpacked). Unlike TFF's own loader, this one checks the file before use and
  never mistakes an interrupted download for a complete one.
- ``offline``: no network needed. Real handwritten digits from scikit-learn
  (``load_digits``, 1,797 images of 8x8 pixels) redrawn at 28x28 by hundreds of
  synthetic writers, each with its own slant, size, stroke and label mix, so
  the data is non-IID like EMNIST. Generated once per seed into a cache file.

``auto`` (the default) uses a cached real file if there is one, else tries the
download, else falls back to ``offline`` and says so. In fast mode
(``COURSE_FAST=1``) it skips the download and uses the small offline set.

Environment variables: ``COURSE_DATA_SOURCE`` (auto, tff, offline),
``COURSE_DATA_DIR`` (cache folder, default ``~/.tff`` as TFF uses),
``COURSE_EMNIST_URL`` (where to download the real file from).
"""
import collections
import contextlib
import dataclasses
import http.client
import lzma
import os
import pathlib
import shutil
import sqlite3
import tempfile
import urllib.error
import urllib.request

import numpy as np
import scipy.ndimage
import tensorflow as tf
import tensorflow_federated as tff
import tqdm
from sklearn.datasets import load_digits

from helpers import config, seeds
from helpers import runtime  # noqa: F401  (stops TFF's worker_binary at exit)

# --- Constants -------------------------------------------------------------

EMNIST_URL = "https://storage.googleapis.com/tff-datasets-public/emnist_all.sqlite.lzma"
REAL_FILENAME = "emnist_all.sqlite"
REAL_SIZE_BYTES = 4_700_000_000  # the unpacked real file is about 4.4 GiB
SOURCES = ("auto", "tff", "offline")
SPLITS = {True: ("digits_only_train", "digits_only_test"), False: ("all_train", "all_test")}

# Preprocessing, as in the seed tutorial.
SHUFFLE_BUFFER = 418
BATCH_SIZE = 20
TEST_BATCH_SIZE = 500
NUM_CLASSES = 10
IMAGE_SIZE = 28

# Offline data: size and writer style. Changing a style value changes the data,
# so bump OFFLINE_VERSION with it (the cache file name contains it).
OFFLINE_VERSION = 1
FULL_WRITERS = 500
FAST_WRITERS = 40
TEST_POOL_FRACTION = 0.2  # share of the scikit-learn digits kept for testing
LABEL_ALPHA = 1.0  # Dirichlet concentration of each writer's label mix
MEDIAN_TRAIN_EXAMPLES = 90  # per writer; the mean is about 105 (EMNIST: 101)
TEST_FRACTION = 0.12  # test examples per train example (EMNIST: 0.12)
MIN_TEST_EXAMPLES = 3
WRITER_STYLE = dict(  # spread of each writer's persistent style (std devs)
    rotation_deg=10.0, shear=0.2, log_scale=0.08, log_aspect=0.08, shift_px=1.0,
    stroke=0.5, log_gamma=0.3,
)
EXAMPLE_JITTER = dict(rotation_deg=4.0, shear=0.05, log_scale=0.04, shift_px=0.6)
INK_NOISE = 0.1  # relative noise on the ink of every pixel

DOWNLOAD_TIMEOUT_S = 30
_CHUNK_BYTES = 2**20
_SQLITE_HEADER = b"SQLite format 3\x00"
_QUICK_CHECK_MAX_BYTES = 512 * 2**20  # PRAGMA quick_check only on files this small


# --- Errors ----------------------------------------------------------------


class DataSourceError(RuntimeError):
    """Base class of the data errors below."""


class DownloadError(DataSourceError):
    """The real EMNIST could not be downloaded (``auto`` then falls back to offline)."""

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason  # a short phrase for one-line notices


class NoNetworkError(DownloadError):
    """The download server could not be reached."""


class CorruptDataFileError(DataSourceError):
    """A cached data file exists but is partial or damaged."""


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


def data_dir(cache_dir=None):
    """The cache folder: ``cache_dir``, else ``$COURSE_DATA_DIR``, else ``~/.tff``."""
    folder = cache_dir or os.environ.get("COURSE_DATA_DIR") or "~/.tff"
    return pathlib.Path(folder).expanduser().resolve()


def load_emnist(only_digits=True, source=None, cache_dir=None, fast=None, seed=None):
    """Federated EMNIST as ``(train, test)`` TFF ``ClientData``, one client per writer.

    ``source``: "auto", "tff" or "offline" (default ``$COURSE_DATA_SOURCE`` or
    "auto"). ``fast``: the small offline set (default: ``COURSE_FAST``).
    ``seed``: seed of the offline set (default ``helpers.config.SEED``).
    Prints one line naming the source used.
    """
    source = resolve_source(source)
    fast = config.fast_mode() if fast is None else bool(fast)
    folder = data_dir(cache_dir)
    if source == "tff":
        return _load_real(folder, only_digits)
    if source == "offline":
        return _load_offline(folder, only_digits, fast, seed)
    if (folder / REAL_FILENAME).exists():  # auto; a damaged file raises here
        return _load_real(folder, only_digits)
    if fast:
        print("Data: fast mode uses the small offline set without downloading "
              "(set COURSE_DATA_SOURCE=tff for the real EMNIST).")
        return _load_offline(folder, only_digits, fast, seed)
    try:
        download_emnist(folder)
    except DownloadError as err:
        if not only_digits:
            raise ValueError(
                "only_digits=False needs the real EMNIST, which could not be "
                f"downloaded: {err.reason}."
            ) from err
        print(f"Data: could not download EMNIST ({err.reason}); using the offline "
              "digits instead (set COURSE_DATA_SOURCE=offline or tff to choose).")
        return _load_offline(folder, only_digits, fast, seed)
    return _load_real(folder, only_digits)


def _load_real(folder, only_digits):
    """Reads (downloading first if missing) the real EMNIST in ``folder``."""
    path = folder / REAL_FILENAME
    if not path.exists():
        download_emnist(folder)
    splits = SPLITS[bool(only_digits)]
    clients = check_database(path, splits, kind="real")
    print(f"EMNIST source: tff (real federated EMNIST, {clients[splits[0]]:,} writers) "
          f"from {path}")
    return read_client_data(path, splits)


def _load_offline(folder, only_digits, fast, seed):
    """Reads (generating first if missing) the offline digits in ``folder``."""
    if not only_digits:
        raise ValueError(
            "The offline source has digits only: use only_digits=True, or "
            "source='tff' for letters too (needs network)."
        )
    seed = config.SEED if seed is None else int(seed)
    num_writers = FAST_WRITERS if fast else FULL_WRITERS
    path = offline_path(folder, num_writers, seed)
    if not path.exists():
        generate_offline_emnist(path, num_writers, seed)
    splits = SPLITS[True]
    clients = check_database(path, splits, kind="offline")
    print(f"EMNIST source: offline (scikit-learn digits drawn by "
          f"{clients[splits[0]]} synthetic writers, seed {seed}) from {path}")
    return read_client_data(path, splits)


# --- Reading the SQLite file -------------------------------------------------


def read_client_data(path, splits=SPLITS[True]):
    """``(train, test)`` ClientData read from the SQLite file at ``path``."""
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


def check_database(path, splits=None, kind="real"):
    """Checks that ``path`` is a complete EMNIST SQLite file; returns {split: writers}.

    ``splits``: split names that must hold writers (None: any split will do).
    ``kind``: "real" or "offline", only to word the advice in the error.
    Raises ``CorruptDataFileError`` naming the file and the fix; never deletes it.
    """
    path = pathlib.Path(path)
    _check_sqlite_header(path, kind)
    try:
        with contextlib.closing(_connect_read_only(path)) as connection:
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


def _connect_read_only(path):
    """An SQLite connection that cannot change or create the file at ``path``."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


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


# --- Downloading the real EMNIST ----------------------------------------------


def emnist_url():
    """Where the real EMNIST comes from: ``$COURSE_EMNIST_URL`` or ``EMNIST_URL``."""
    return os.environ.get("COURSE_EMNIST_URL") or EMNIST_URL


def download_emnist(cache_dir=None, url=None):
    """Downloads and unpacks the real EMNIST into ``cache_dir``; returns the file's path.

    ``url``: an LZMA-compressed SQLite file (default ``emnist_url()``). A file
    already in place is checked and reused, never overwritten. The file is
    unpacked into a temporary file that is renamed only once it is complete and
    valid. Raises ``NoNetworkError`` or ``DownloadError`` when it cannot be fetched.
    """
    url = url or emnist_url()
    folder = data_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / REAL_FILENAME
    if target.exists():
        check_database(target, kind="real")
        return target
    if url == EMNIST_URL:
        _check_free_space(folder, REAL_SIZE_BYTES)
    handle, partial = tempfile.mkstemp(dir=folder, prefix=REAL_FILENAME + ".", suffix=".part")
    partial = pathlib.Path(partial)
    try:
        with os.fdopen(handle, "wb") as out:
            _fetch_lzma(url, out)
        try:
            check_database(partial, kind="real")
        except CorruptDataFileError as err:
            raise DownloadError(
                f"The file downloaded from {url} is not a usable EMNIST database "
                f"({err}). Nothing was saved.",
                reason="the downloaded file is not an EMNIST database",
            ) from err
        _publish(partial, target)
    finally:
        partial.unlink(missing_ok=True)  # our own temporary file, if still there
    return target


def _publish(partial, path):
    """Renames the finished temporary file ``partial`` to ``path``, readable as umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o666 & ~umask)  # temporary files are created private (0600)
    os.replace(partial, path)


def _fetch_lzma(url, out):
    """Streams the LZMA file at ``url`` into the open binary file ``out``, unpacked."""
    try:
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"The server at {url} answered HTTP {err.code} {err.reason}.",
                            reason=f"HTTP {err.code} from {url}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise NoNetworkError(
            f"No network: could not reach {url} ({reason}). The offline data needs "
            "no network: set COURSE_DATA_SOURCE=offline (or pass source='offline').",
            reason=f"no network, {url} unreachable",
        ) from err
    with response:
        size = int(response.headers.get("Content-Length") or 0) or None
        received = _unpack_stream(response, out, size, url)
    if size is not None and received != size:
        raise DownloadError(f"The download of {url} stopped after {received:,} of "
                            f"{size:,} bytes.", reason="the download broke off")


def _unpack_stream(response, out, size, url):
    """Reads ``response`` in chunks, writes the unpacked bytes to ``out``; returns bytes read."""
    unpacker = lzma.LZMADecompressor()
    received = 0
    with tqdm.tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=f"Downloading {url.rsplit('/', 1)[-1]}") as progress:
        while True:
            try:
                chunk = response.read(_CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as err:
                raise NoNetworkError(
                    f"The network connection to {url} broke off after "
                    f"{received:,} bytes ({err!r}). Run again, or set "
                    "COURSE_DATA_SOURCE=offline to work without network.",
                    reason="the download broke off",
                ) from err
            if not chunk:
                break
            try:
                out.write(unpacker.decompress(chunk))
            except (lzma.LZMAError, EOFError) as err:
                raise DownloadError(f"{url} did not send a single LZMA file ({err}).",
                                    reason=f"{url} is not an LZMA file") from err
            received += len(chunk)
            progress.update(len(chunk))
    if not unpacker.eof:
        raise DownloadError(f"The download of {url} ended early, after {received:,} "
                            "bytes (the LZMA stream is incomplete).",
                            reason="the download broke off")
    return received


def _check_free_space(folder, needed_bytes):
    """Raises ``DownloadError`` if ``folder`` has less than ``needed_bytes`` free."""
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise DownloadError(
            f"The real EMNIST needs about {needed_bytes / 2**30:.1f} GiB in {folder}, "
            f"which has {free / 2**30:.1f} GiB free. Free some space, set "
            "COURSE_DATA_DIR to another folder, or set COURSE_DATA_SOURCE=offline.",
            reason=f"not enough disk space in {folder}",
        )


# --- The offline data set ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WriterPlan:
    """One synthetic writer: id, label mix (10 probabilities), example counts, style."""

    writer_id: str
    label_probs: np.ndarray
    num_train: int
    num_test: int
    style: dict


def offline_path(cache_dir, num_writers, seed):
    """Cache path of the offline file for these generation parameters."""
    name = f"fl_course_offline_digits_v{OFFLINE_VERSION}_{num_writers}writers_seed{seed}.sqlite"
    return data_dir(cache_dir) / name


def offline_plan(num_writers, seed):
    """The writers of the offline set: a list of ``WriterPlan``, fixed by ``seed``."""
    rng = np.random.default_rng([seed, 0])
    plans = []
    for index in range(num_writers):
        label_probs = rng.dirichlet([LABEL_ALPHA] * NUM_CLASSES)
        num_train = int(np.clip(round(rng.lognormal(np.log(MEDIAN_TRAIN_EXAMPLES), 0.55)),
                                10, 400))
        num_test = max(MIN_TEST_EXAMPLES, round(TEST_FRACTION * num_train))
        style = {name: float(rng.normal(0.0, spread)) for name, spread in WRITER_STYLE.items()
                 if name != "shift_px"}
        style["shift_px"] = tuple(rng.normal(0.0, WRITER_STYLE["shift_px"], size=2))
        style["darkness"] = float(rng.uniform(0.8, 1.0))
        plans.append(WriterPlan(f"writer_{index:04d}", label_probs, num_train, num_test, style))
    return plans


def generate_offline_emnist(path, num_writers, seed, progress=True):
    """Writes the offline data set (TFF's EMNIST SQLite layout) to ``path``; returns it.

    Same ``num_writers`` and ``seed`` give byte-identical examples. The file is
    written under a temporary name and renamed when complete.
    """
    path = pathlib.Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; delete it first or choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    plans = offline_plan(num_writers, seed)
    ink, pools = _base_digits(seed)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    os.close(handle)
    partial = pathlib.Path(partial)
    try:
        with contextlib.closing(sqlite3.connect(partial)) as connection:
            _create_tables(connection)
            for index, plan in enumerate(tqdm.tqdm(
                    plans, desc="Generating offline digits", unit="writer", disable=not progress)):
                rng = np.random.default_rng([seed, 1, index])
                for split, count, pool in zip(SPLITS[True], (plan.num_train, plan.num_test), pools):
                    labels = rng.choice(NUM_CLASSES, size=count, p=plan.label_probs)
                    picks = np.array([pool[label][rng.integers(len(pool[label]))]
                                      for label in labels], dtype=int)
                    images = _draw(ink[picks], plan.style, rng)
                    _insert(connection, split, plan.writer_id, images, labels)
            connection.execute(
                "CREATE INDEX examples_by_client ON examples (client_id, split_name)")
            connection.commit()
        _publish(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # our own temporary file, if still there
    return path


def _base_digits(seed):
    """scikit-learn's digits as ink maps; returns (ink [1797, 28, 28], (train_pool, test_pool)).

    Ink is 0 (paper) to 1 (full ink); each pool maps a label to image indices,
    split per label so test digits are never seen in training.
    """
    digits = load_digits()
    ink = np.stack([_upsample(image / 16.0) for image in digits.images])
    rng = np.random.default_rng([seed, 2])
    train_pool, test_pool = {}, {}
    for label in range(NUM_CLASSES):
        indices = rng.permutation(np.flatnonzero(digits.target == label))
        num_test = round(TEST_POOL_FRACTION * len(indices))
        test_pool[label], train_pool[label] = indices[:num_test], indices[num_test:]
    return ink, (train_pool, test_pool)


def _upsample(image):
    """An 8x8 ink image -> 28x28, smoothly (bicubic) into the centred 20x20 box."""
    box = scipy.ndimage.zoom(image, 20 / 8, order=3, grid_mode=True, mode="grid-constant")
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
    canvas[4:24, 4:24] = np.clip(box, 0.0, 1.0)
    return canvas


def _draw(ink, style, rng):
    """Ink maps [n, 28, 28] redrawn in a writer's ``style`` -> float32 pixels, 1.0 = paper."""
    count = len(ink)
    jitter = {name: rng.normal(0.0, spread, size=count) for name, spread in EXAMPLE_JITTER.items()}
    matrices = _affine(
        rotation_deg=style["rotation_deg"] + jitter["rotation_deg"],
        shear=style["shear"] + jitter["shear"],
        scale=np.exp(style["log_scale"] + jitter["log_scale"]),
        aspect=np.exp(style["log_aspect"]),
    )
    shifts = np.asarray(style["shift_px"]) + rng.normal(0.0, EXAMPLE_JITTER["shift_px"],
                                                        size=(count, 2))
    ink = _warp(ink, matrices, shifts)
    ink = _thicken(ink, style["stroke"])
    ink = np.clip(ink, 0.0, 1.0) ** np.exp(style["log_gamma"])
    ink = np.clip(ink * (1.0 + INK_NOISE * rng.standard_normal(ink.shape)), 0.0, 1.0)
    return (1.0 - style["darkness"] * ink).astype(np.float32)


def _affine(rotation_deg, shear, scale, aspect):
    """2x2 matrices [n, 2, 2] (row, column) that rotate, shear and scale about the centre."""
    angle = np.deg2rad(rotation_deg)
    cos, sin = np.cos(angle), np.sin(angle)
    rotate = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    ones, zeros = np.ones_like(shear), np.zeros_like(shear)
    shear_m = np.stack([np.stack([ones, zeros], -1), np.stack([shear, ones], -1)], -2)
    stretch = np.stack([np.stack([scale * aspect, zeros], -1),
                        np.stack([zeros, scale / aspect], -1)], -2)
    return rotate @ shear_m @ stretch


def _warp(ink, matrices, shifts):
    """Images [n, 28, 28] moved by their matrices [n, 2, 2] about the centre, then shifted (px)."""
    centre = (IMAGE_SIZE - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE), indexing="ij")
    out = np.stack([rows.ravel(), cols.ravel()]) - centre  # [2, 784] output pixels
    source = np.linalg.inv(matrices) @ (out[None] - shifts[:, :, None]) + centre  # [n, 2, 784]
    image = np.broadcast_to(np.arange(len(ink))[:, None, None], (len(ink), 1, out.shape[1]))
    coords = np.concatenate([image, source], axis=1).transpose(1, 0, 2)
    coords = coords.reshape(3, len(ink), IMAGE_SIZE, IMAGE_SIZE)
    return scipy.ndimage.map_coordinates(ink, coords, order=1, mode="constant", cval=0.0)


def _thicken(ink, stroke):
    """Thicker strokes for ``stroke`` > 0, thinner for < 0 (a blend with a 3x3 dilation/erosion)."""
    weight = min(abs(stroke), 1.0)
    if stroke > 0:
        grown = scipy.ndimage.grey_dilation(ink, size=(1, 3, 3))
    else:
        grown = scipy.ndimage.grey_erosion(ink, size=(1, 3, 3))
    return (1.0 - weight) * ink + weight * grown


def _create_tables(connection):
    """Creates the two tables of TFF's EMNIST file (as ``save_to_sql_client_data`` does)."""
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("""CREATE TABLE examples (
        split_name TEXT NOT NULL, client_id TEXT NOT NULL,
        serialized_example_proto BLOB NOT NULL)""")
    connection.execute("""CREATE TABLE client_metadata (
        client_id TEXT NOT NULL, split_name TEXT NOT NULL, num_examples INTEGER NOT NULL)""")


def _insert(connection, split, client_id, images, labels):
    """Adds one writer's examples of one split and its metadata row."""
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


# --- Preprocessing for FedAvg ----------------------------------------------------


def preprocess(dataset, epochs=1, batch_size=BATCH_SIZE, shuffle_buffer=SHUFFLE_BUFFER, seed=None):
    """One client's EMNIST elements -> shuffled, repeated batches (pixels [b, 28, 28, 1], label [b]).

    As in the seed tutorial: shuffle(418), repeat(epochs), batch(20), add a channel axis.
    ``seed``: the shuffle's seeds, a pair from :func:`helpers.seeds.shuffle_seeds` or one int
    (default: round 0 of ``config.SEED``); the order depends on it alone, never on TF's
    global seed or op counter (:func:`helpers.seeds.shuffle`).
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
    run's seed, the round and the client id (:func:`helpers.seeds.client_shuffle_seeds`:
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
    sql = _sql_file(client_data)
    if sql is not None:
        path, split = sql
        with contextlib.closing(_connect_read_only(pathlib.Path(path))) as connection:
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
    sql = _sql_file(client_data)
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
    with contextlib.closing(_connect_read_only(pathlib.Path(path))) as connection:
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


def _sql_file(client_data):
    """(path, split) of the SQLite file behind ``client_data``, or None if it has none."""
    while isinstance(client_data, tff.simulation.datasets.ClientData):
        if isinstance(client_data, tff.simulation.datasets.SqlClientData):
            # pylint: disable=protected-access
            split, path = client_data._split_name, client_data._filepath
            return None if split is None else (path, split)
        client_data = getattr(client_data, "_underlying_client_data", None)
    return None
