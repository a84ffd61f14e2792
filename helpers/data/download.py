"""Downloads the real federated EMNIST once into the cache folder, checked before it is kept.

``download_emnist()`` fetches TFF's LZMA-packed SQLite file (163 MiB, 4.4 GiB
unpacked) with pooch, unpacks it in a scratch folder next to the cache, checks
it with ``helpers.data.emnist_file.check_database`` and only then moves it into
place: an interrupted or damaged download never looks like a complete one.
Failures raise ``NoNetworkError`` or ``DownloadError`` with a message that
says what to do, and a short ``reason`` for one-line notices.

No content hash is pinned: TFF publishes none for this file. The LZMA stream's
end marker and the database check catch partial and damaged files instead.

Environment variable: ``COURSE_EMNIST_URL`` (where to download from).
"""
import contextlib
import logging
import lzma
import os
import pathlib
import shutil
import tempfile

import pooch
import requests

from helpers.data import emnist_file

EMNIST_URL = "https://storage.googleapis.com/tff-datasets-public/emnist_all.sqlite.lzma"
REAL_FILENAME = "emnist_all.sqlite"
REAL_SIZE_BYTES = 4_700_000_000  # the unpacked real file is about 4.4 GiB
PACKED_SIZE_BYTES = 171_000_000  # the download is about 163 MiB
DOWNLOAD_TIMEOUT_S = 30  # to connect, and between two chunks


class DownloadError(emnist_file.DataSourceError):
    """The real EMNIST could not be downloaded (``auto`` then falls back to offline)."""

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason  # a short phrase for one-line notices


class NoNetworkError(DownloadError):
    """The download server could not be reached, or the connection broke off."""


def emnist_url():
    """Where the real EMNIST comes from: ``$COURSE_EMNIST_URL`` or ``EMNIST_URL``."""
    return os.environ.get("COURSE_EMNIST_URL") or EMNIST_URL


def download_emnist(cache_dir=None, url=None):
    """Downloads and unpacks the real EMNIST into ``cache_dir``; returns the file's path.

    ``url``: an LZMA-compressed SQLite file (default ``emnist_url()``). A file
    already in place is checked and reused, never overwritten. Nothing is left
    in ``cache_dir`` unless the unpacked file is complete and valid. Raises
    ``NoNetworkError`` or ``DownloadError`` when it cannot be fetched.
    """
    url = url or emnist_url()
    folder = emnist_file.data_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / REAL_FILENAME
    if target.exists():
        emnist_file.check_database(target, kind="real")
        return target
    if url == EMNIST_URL:
        _check_free_space(folder, REAL_SIZE_BYTES + PACKED_SIZE_BYTES)
    with tempfile.TemporaryDirectory(dir=folder, prefix=REAL_FILENAME + ".") as scratch:
        unpacked = _fetch_and_unpack(url, pathlib.Path(scratch))
        try:
            emnist_file.check_database(unpacked, kind="real")
        except emnist_file.CorruptDataFileError as err:
            raise DownloadError(
                f"The file downloaded from {url} is not a usable EMNIST database "
                f"({err}). Nothing was saved.",
                reason="the downloaded file is not an EMNIST database",
            ) from err
        os.replace(unpacked, target)
    return target


def _fetch_and_unpack(url, scratch):
    """Downloads the LZMA file at ``url`` into the folder ``scratch`` and unpacks it there.

    Returns the unpacked file's path. Turns pooch's, requests' and lzma's
    errors into ``DownloadError`` and ``NoNetworkError``.
    """
    downloader = pooch.HTTPDownloader(progressbar=True, timeout=DOWNLOAD_TIMEOUT_S)
    unpack = pooch.Decompress(method="lzma", name=REAL_FILENAME)
    try:
        with _quiet_pooch():
            return pathlib.Path(pooch.retrieve(url, known_hash=None, fname=REAL_FILENAME + ".lzma",
                                               path=scratch, processor=unpack,
                                               downloader=downloader))
    except requests.HTTPError as err:
        code, why = err.response.status_code, err.response.reason
        raise DownloadError(f"The server at {url} answered HTTP {code} {why}.",
                            reason=f"HTTP {code} from {url}") from err
    except requests.ConnectionError as err:
        raise NoNetworkError(
            f"No network: could not reach {url} ({err}). The offline data needs "
            "no network: set COURSE_DATA_SOURCE=offline (or pass source='offline').",
            reason=f"no network, {url} unreachable",
        ) from err
    except requests.RequestException as err:  # a timeout or a body cut short
        raise NoNetworkError(
            f"The network connection to {url} broke off ({err!r}). Run again, or set "
            "COURSE_DATA_SOURCE=offline to work without network.",
            reason="the download broke off",
        ) from err
    except EOFError as err:
        raise DownloadError(f"The download of {url} ended early (the LZMA stream is "
                            "incomplete).", reason="the download broke off") from err
    except lzma.LZMAError as err:
        raise DownloadError(f"{url} did not send a single LZMA file ({err}).",
                            reason=f"{url} is not an LZMA file") from err


@contextlib.contextmanager
def _quiet_pooch():
    """Hides pooch's info lines (file names, the advice to pin a hash) while in the block."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


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
