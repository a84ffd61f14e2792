"""Tests of helpers.data and the modules behind it: emnist_file (file checks), offline
(generation), download; loading and preprocessing."""
import collections
import contextlib
import functools
import hashlib
import http.server
import lzma
import os
import shutil
import socket
import sqlite3
import threading

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from helpers import data
from helpers.data import download, emnist_file, offline

SMALL_WRITERS = 6
EMNIST_SPEC = collections.OrderedDict(
    label=tf.TensorSpec(shape=(), dtype=tf.int32),
    pixels=tf.TensorSpec(shape=(28, 28), dtype=tf.float32),
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in ("COURSE_DATA_SOURCE", "COURSE_DATA_DIR", "COURSE_EMNIST_URL", "COURSE_FAST"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    """A 6-writer offline file in the real schema."""
    path = tmp_path_factory.mktemp("small") / "small.sqlite"
    return offline.generate_offline_emnist(path, SMALL_WRITERS, seed=0, progress=False)


@pytest.fixture(scope="module")
def fast_data(tmp_path_factory):
    """The fast-mode offline set, loaded through load_emnist: (train, test, cache folder)."""
    folder = tmp_path_factory.mktemp("fast")
    train, test = data.load_emnist(source="offline", cache_dir=folder, fast=True)
    return train, test, folder


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve(tmp_path):
    """Serves files over HTTP on 127.0.0.1: call serve({name: bytes}) -> base URL."""
    servers = []

    def start(files):
        folder = tmp_path / "www"
        folder.mkdir()
        for name, content in files.items():
            (folder / name).write_bytes(content)

        class QuietHandler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _all_examples(client_data):
    return list(client_data.create_tf_dataset_from_all_clients().as_numpy_iterator())


# --- source selection --------------------------------------------------------------


def test_unknown_source_names_it_and_the_valid_ones(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="'sql'.*auto, tff, offline.*COURSE_DATA_SOURCE"):
        data.load_emnist(source="sql", cache_dir=tmp_path)
    monkeypatch.setenv("COURSE_DATA_SOURCE", "Offline")
    with pytest.raises(ValueError, match="'Offline'"):
        data.load_emnist(cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_offline_has_digits_only(tmp_path):
    with pytest.raises(ValueError, match="digits only"):
        data.load_emnist(only_digits=False, source="offline", cache_dir=tmp_path, fast=True)


# --- the offline file ----------------------------------------------------------------


def test_offline_file_opens_with_tff_sql_client_data(small_db):
    for split in emnist_file.SPLITS[True]:
        raw = tff.simulation.datasets.SqlClientData(str(small_db), split)
        assert raw.client_ids == [f"writer_{i:04d}" for i in range(SMALL_WRITERS)]
    train, test = emnist_file.read_client_data(small_db)
    assert train.element_type_structure == EMNIST_SPEC
    assert test.element_type_structure == EMNIST_SPEC
    synthetic = tff.simulation.datasets.emnist.get_synthetic()
    assert train.element_type_structure == synthetic.element_type_structure


def test_tffs_own_emnist_loader_reads_the_offline_file(small_db, tmp_path):
    shutil.copy(small_db, tmp_path / download.REAL_FILENAME)  # TFF reuses any file in place
    tff_train, tff_test = tff.simulation.datasets.emnist.load_data(cache_dir=str(tmp_path))
    train, test = emnist_file.read_client_data(small_db)
    assert tff_train.client_ids == train.client_ids
    for ours, theirs in ((train, tff_train), (test, tff_test)):
        client = ours.client_ids[1]
        a = list(ours.create_tf_dataset_for_client(client).as_numpy_iterator())
        b = list(theirs.create_tf_dataset_for_client(client).as_numpy_iterator())
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            assert x["label"] == y["label"]
            np.testing.assert_array_equal(x["pixels"], y["pixels"])


def test_pixels_follow_the_emnist_convention(fast_data):
    train, test, _ = fast_data
    for client_data in (train, test):
        examples = _all_examples(client_data)
        pixels = np.stack([e["pixels"] for e in examples])
        labels = np.array([e["label"] for e in examples])
        assert pixels.dtype == np.float32 and pixels.shape[1:] == (28, 28)
        assert labels.dtype == np.int32 and set(labels) == set(range(10))
        assert pixels.min() >= 0.0 and pixels.max() <= 1.0
        assert np.median(pixels) > 0.999 and np.mean(pixels >= 0.99) > 0.5  # white paper
        border = np.concatenate([pixels[:, :2].ravel(), pixels[:, -2:].ravel()])
        assert border.mean() > 0.99
        darkest = pixels.min(axis=(1, 2))  # every digit has ink; a few writers write faintly
        assert darkest.max() < 0.8 and np.mean(darkest < 0.5) > 0.99
    # EMNIST's own convention, as in TFF's synthetic data: 1.0 is background.
    synthetic = next(iter(tff.simulation.datasets.emnist.get_synthetic()
                          .create_tf_dataset_for_client("synthetic1")))
    assert float(synthetic["pixels"][0, 0]) == 1.0


def test_fast_set_is_generated_as_planned(fast_data):
    train, test, _ = fast_data
    plan = offline.offline_plan(offline.FAST_WRITERS, seed=0)
    assert len(plan) == 40
    assert train.client_ids == test.client_ids == [w.writer_id for w in plan]
    train_counts = data.examples_per_client(train)
    test_counts = data.examples_per_client(test)
    np.testing.assert_array_equal(train_counts, [w.num_train for w in plan])
    np.testing.assert_array_equal(test_counts, [w.num_test for w in plan])
    assert (train_counts.sum(), test_counts.sum()) == (4013, 483)
    assert test_counts.min() >= 3
    assert len(_all_examples(test)) == 483


def test_full_plan_has_hundreds_of_writers_each_with_test_examples():
    plan = offline.offline_plan(offline.FULL_WRITERS, seed=0)
    assert len(plan) == 500
    assert sum(w.num_train for w in plan) == 51779
    assert sum(w.num_test for w in plan) == 6226
    assert min(w.num_test for w in plan) >= 3
    assert min(w.num_train for w in plan) >= 10
    # The fast set is the first writers of the full set.
    fast = offline.offline_plan(offline.FAST_WRITERS, seed=0)
    assert [w.num_train for w in fast] == [w.num_train for w in plan[:40]]


def test_test_digits_are_never_seen_in_training():
    _, (train_pool, test_pool) = offline._base_digits(seed=0)
    train_ids = np.concatenate(list(train_pool.values()))
    test_ids = np.concatenate(list(test_pool.values()))
    assert len(train_ids) + len(test_ids) == 1797
    assert len(test_ids) == 359
    assert not set(train_ids) & set(test_ids)


def test_same_seed_same_bytes_other_seed_other_data(small_db, tmp_path):
    again = offline.generate_offline_emnist(tmp_path / "again.sqlite", SMALL_WRITERS, seed=0,
                                         progress=False)
    assert _sha256(again) == _sha256(small_db)
    umask = os.umask(0)
    os.umask(umask)
    assert again.stat().st_mode & 0o777 == 0o666 & ~umask  # not left private like a temp file
    other = offline.generate_offline_emnist(tmp_path / "other.sqlite", SMALL_WRITERS, seed=1,
                                         progress=False)
    first = _all_examples(emnist_file.read_client_data(small_db)[0])
    second = _all_examples(emnist_file.read_client_data(other)[0])
    assert len(first) != len(second) or any(
        not np.array_equal(a["pixels"], b["pixels"]) for a, b in zip(first, second))
    assert not list(tmp_path.glob("*.part"))


def test_cache_file_is_keyed_by_size_and_seed_and_reused(fast_data, capsys):
    _, _, folder = fast_data
    path = offline.offline_path(folder, offline.FAST_WRITERS, 0)
    assert path.name == "fl_course_offline_digits_v1_40writers_seed0.sqlite"
    assert path.exists()
    before = path.stat().st_mtime_ns
    data.load_emnist(source="offline", cache_dir=folder, fast=True)
    assert path.stat().st_mtime_ns == before
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"EMNIST source: offline (scikit-learn digits drawn by 40 synthetic "
                   f"writers, seed 0) from {path}"]


def test_label_mix_differs_between_writers(fast_data):
    train, _, _ = fast_data
    counts = data.label_counts(train, train.client_ids)
    assert counts.shape == (40, 10)
    np.testing.assert_array_equal(counts.sum(axis=1), data.examples_per_client(train))
    per_client = counts / counts.sum(axis=1, keepdims=True)
    overall = counts.sum(axis=0) / counts.sum()
    total_variation = 0.5 * np.abs(per_client - overall).sum(axis=1)
    assert total_variation.mean() > 0.2


def test_summaries_agree_with_a_pass_over_the_datasets(small_db, tmp_path):
    train, _ = emnist_file.read_client_data(small_db)
    ids = train.client_ids[:3]
    plain = tff.simulation.datasets.ClientData.from_clients_and_tf_fn(
        ids, train.create_tf_dataset_for_client)  # not SQL-backed: the slow path
    np.testing.assert_array_equal(data.label_counts(train, ids), data.label_counts(plain))
    counts = data.examples_per_client(train)
    np.testing.assert_array_equal(counts[:3], data.examples_per_client(plain))
    # A file without client_metadata.num_examples (TFF does not need it) is counted too.
    copy = tmp_path / "copy.sqlite"
    shutil.copy(small_db, copy)
    with contextlib.closing(sqlite3.connect(copy)) as connection:
        connection.execute("ALTER TABLE client_metadata DROP COLUMN num_examples")
        connection.commit()
    np.testing.assert_array_equal(data.examples_per_client(emnist_file.read_client_data(copy)[0]),
                                  counts)


def test_generation_never_overwrites_a_file(small_db):
    before = _sha256(small_db)
    with pytest.raises(FileExistsError, match="already exists"):
        offline.generate_offline_emnist(small_db, SMALL_WRITERS, seed=1, progress=False)
    assert _sha256(small_db) == before


# --- damaged files ---------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "random_bytes", "no_tables"])
def test_damaged_real_file_raises_a_clear_error_and_stays(small_db, tmp_path, damage):
    path = tmp_path / download.REAL_FILENAME
    if damage == "truncated":
        path.write_bytes(small_db.read_bytes()[: small_db.stat().st_size // 2])
        problem = "truncated"
    elif damage == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(50_000))
        problem = "not an SQLite database"
    else:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute("CREATE TABLE other (x)")
            connection.commit()
        problem = "table 'examples' is missing"
    size = path.stat().st_size
    for source in ("tff", "auto"):
        with pytest.raises(emnist_file.CorruptDataFileError) as error:
            data.load_emnist(source=source, cache_dir=tmp_path)
        message = str(error.value)
        assert str(path) in message and problem in message
        assert f"rm '{path}'" in message and "COURSE_DATA_SOURCE=offline" in message
        assert path.stat().st_size == size  # left in place, untouched


def test_damaged_offline_file_raises_and_stays(small_db, tmp_path, monkeypatch):
    monkeypatch.setattr(offline, "FAST_WRITERS", SMALL_WRITERS)
    path = offline.offline_path(tmp_path, SMALL_WRITERS, 0)
    path.write_bytes(small_db.read_bytes()[:-4096])
    with pytest.raises(emnist_file.CorruptDataFileError, match="(?s)truncated.*regenerated"):
        data.load_emnist(source="offline", cache_dir=tmp_path, fast=True)
    assert path.stat().st_size == small_db.stat().st_size - 4096


# --- downloading -----------------------------------------------------------------


def test_download_fetches_unpacks_checks_and_reads(small_db, tmp_path, serve, monkeypatch,
                                                   capsys):
    url = serve({"emnist_all.sqlite.lzma": lzma.compress(small_db.read_bytes(), preset=1)})
    monkeypatch.setenv("COURSE_EMNIST_URL", f"{url}/emnist_all.sqlite.lzma")
    cache = tmp_path / "cache"
    train, test = data.load_emnist(source="tff", cache_dir=cache)
    path = cache / download.REAL_FILENAME
    assert _sha256(path) == _sha256(small_db)
    assert [p.name for p in cache.iterdir()] == [download.REAL_FILENAME]  # no temporary left
    assert train.client_ids == test.client_ids and len(train.client_ids) == SMALL_WRITERS
    assert train.element_type_structure == EMNIST_SPEC
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"EMNIST source: tff (real federated EMNIST, {SMALL_WRITERS} writers) from {path}")
    # auto now finds the cached real file and does not download again
    monkeypatch.setenv("COURSE_EMNIST_URL", "http://127.0.0.1:9/nothing.lzma")
    data.load_emnist(cache_dir=cache, fast=True)
    assert "EMNIST source: tff" in capsys.readouterr().out


def test_broken_download_leaves_nothing(small_db, tmp_path, serve):
    packed = lzma.compress(small_db.read_bytes(), preset=1)
    url = serve({"half.lzma": packed[: len(packed) // 2], "html.lzma": b"<html>proxy</html>"})
    with pytest.raises(download.DownloadError, match="ended early"):
        download.download_emnist(tmp_path, url=f"{url}/half.lzma")
    with pytest.raises(download.DownloadError, match="LZMA"):
        download.download_emnist(tmp_path, url=f"{url}/html.lzma")
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        download.download_emnist(tmp_path, url=f"{url}/missing.lzma")
    assert [p.name for p in tmp_path.iterdir()] == ["www"]


def test_no_server_is_reported_as_no_network(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}/emnist_all.sqlite.lzma"
    monkeypatch.setenv("COURSE_EMNIST_URL", url)
    for load in (lambda: data.load_emnist(source="tff", cache_dir=tmp_path),
                 lambda: download.download_emnist(tmp_path)):
        with pytest.raises(download.NoNetworkError) as error:
            load()
        message = str(error.value)
        assert message.startswith("No network") and url in message
        assert "COURSE_DATA_SOURCE=offline" in message
    assert list(tmp_path.iterdir()) == []


def test_auto_falls_back_to_offline_with_one_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(offline, "FULL_WRITERS", SMALL_WRITERS)
    url = f"http://127.0.0.1:{_free_port()}/emnist_all.sqlite.lzma"
    monkeypatch.setenv("COURSE_EMNIST_URL", url)
    train, _ = data.load_emnist(cache_dir=tmp_path, fast=False)
    assert len(train.client_ids) == SMALL_WRITERS
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # one calm line: the source used, and why
    assert out[0].startswith("EMNIST source: offline") and "could not" not in out[0].lower()
    assert "download failed: no network" in out[0] and url in out[0] and "COURSE_DATA_SOURCE" in out[0]
    assert not (tmp_path / download.REAL_FILENAME).exists()


def test_auto_in_fast_mode_does_not_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(offline, "FAST_WRITERS", SMALL_WRITERS)
    monkeypatch.setenv("COURSE_FAST", "1")

    def no_download(*args, **kwargs):
        raise AssertionError("fast mode must not download")

    monkeypatch.setattr(download, "download_emnist", no_download)
    train, _ = data.load_emnist(cache_dir=tmp_path)
    assert len(train.client_ids) == SMALL_WRITERS
    assert "offline" in capsys.readouterr().out


# --- preprocessing ------------------------------------------------------------------


def test_preprocess_batches_like_the_seed_tutorial(small_db):
    train, _ = emnist_file.read_client_data(small_db)
    counts = data.examples_per_client(train)
    client = train.client_ids[int(np.argmax(counts >= 20))]
    count = int(counts[train.client_ids.index(client)])
    assert count >= 20
    dataset = data.preprocess(train.create_tf_dataset_for_client(client), epochs=2, seed=1)
    assert dataset.element_spec == (
        tf.TensorSpec(shape=(None, 28, 28, 1), dtype=tf.float32),
        tf.TensorSpec(shape=(None,), dtype=tf.int32),
    )
    sizes = [len(y) for _, y in dataset.as_numpy_iterator()]
    assert sizes[0] == data.BATCH_SIZE == 20
    assert sum(sizes) == 2 * count
    assert (data.SHUFFLE_BUFFER, data.BATCH_SIZE) == (418, 20)
    federated = data.make_federated_data(train, train.client_ids[:3])
    assert len(federated) == 3
    assert all(ds.element_spec == dataset.element_spec for ds in federated)
    test_batches = data.preprocess_test(train.create_tf_dataset_for_client(client))
    assert [len(y) for _, y in test_batches.as_numpy_iterator()] == [count]
