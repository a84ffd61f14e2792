"""The offline stand-in for federated EMNIST: real digits redrawn by synthetic writers.

No network needed. Real handwritten digits from scikit-learn (``load_digits``,
1,797 images of 8x8 pixels) are redrawn at 28x28 by hundreds of synthetic
writers, each with its own slant, size, stroke and label mix, so the data is
non-IID like EMNIST. ``generate_offline_emnist`` writes them once per seed into
a file in TFF's EMNIST layout (``helpers.data.emnist_file``), which
``helpers.data.load_emnist(source="offline")`` then reads.
"""
import contextlib
import dataclasses
import os
import pathlib
import sqlite3
import tempfile

import numpy as np
import scipy.ndimage
from sklearn.datasets import load_digits

from helpers.data import emnist_file
from helpers.data.emnist_file import IMAGE_SIZE, NUM_CLASSES, SPLITS
from helpers.runs.progress import progress_bar

# Size and writer style. Changing a style value changes the data, so bump
# OFFLINE_VERSION with it (the cache file name contains it).
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
    return emnist_file.data_dir(cache_dir) / name


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
            emnist_file.create_tables(connection)
            shown = progress_bar(plans, desc="Generating offline digits", unit="writer") if progress else plans
            for index, plan in enumerate(shown):
                rng = np.random.default_rng([seed, 1, index])
                for split, count, pool in zip(SPLITS[True], (plan.num_train, plan.num_test), pools):
                    labels = rng.choice(NUM_CLASSES, size=count, p=plan.label_probs)
                    picks = np.array([pool[label][rng.integers(len(pool[label]))]
                                      for label in labels], dtype=int)
                    images = _draw(ink[picks], plan.style, rng)
                    emnist_file.insert_writer(connection, split, plan.writer_id, images, labels)
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


def _publish(partial, path):
    """Renames the finished temporary file ``partial`` to ``path``, readable as umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o666 & ~umask)  # temporary files are created private (0600)
    os.replace(partial, path)
